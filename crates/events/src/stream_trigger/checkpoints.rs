//! Where each stream trigger is in its stream, in its own redb file: a row per trigger,
//! the sequence number of the last record it is done with, and a row naming the stream
//! (its ARN) that number is in. A table deleted and created again, or whose stream is
//! turned off and on, has a new stream numbered from 1 again; the ARN tells them apart.
//! (Files written before the ARN was kept have none; the trigger adopts the stream it
//! reads next.)

use std::{path::Path, sync::Arc};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::TriggerError;

const CHECKPOINTS: TableDefinition<'static, &str, u64> = TableDefinition::new("checkpoints");
const STREAMS: TableDefinition<'static, &str, &str> = TableDefinition::new("checkpoint_streams");

fn storage(e: impl std::fmt::Display) -> TriggerError {
    TriggerError::Storage(e.to_string())
}

/// The durable positions of stream triggers.
pub struct Checkpoints {
    db: Arc<Database>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints").finish_non_exhaustive()
    }
}

impl Checkpoints {
    /// Opens (or creates) the checkpoint file at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or is not a checkpoint file.
    pub fn open(path: &Path) -> Result<Checkpoints, TriggerError> {
        let db = Database::create(path).map_err(storage)?;
        // Create the table, so that reads never meet a missing one.
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(CHECKPOINTS).map_err(storage)?;
        txn.open_table(STREAMS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Checkpoints { db: Arc::new(db) })
    }

    /// Trigger `id`'s checkpoint: the sequence number of the last record it is done
    /// with, `None` before it has one.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn get(&self, id: &str) -> Result<Option<u64>, TriggerError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(CHECKPOINTS).map_err(storage)?;
        Ok(table.get(id).map_err(storage)?.map(|v| v.value()))
    }

    /// The ARN of the stream trigger `id`'s checkpoint is in, `None` when none is kept.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn stream(&self, id: &str) -> Result<Option<String>, TriggerError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(STREAMS).map_err(storage)?;
        Ok(table
            .get(id)
            .map_err(storage)?
            .map(|v| v.value().to_owned()))
    }

    /// Stores trigger `id`'s checkpoint, `sequence` of stream `stream` (kept as it was
    /// when `None`); returns once it is on disk.
    ///
    /// # Errors
    /// When the commit fails (the checkpoint is unchanged).
    pub async fn set(
        &self,
        id: &str,
        sequence: u64,
        stream: Option<&str>,
    ) -> Result<(), TriggerError> {
        let db = Arc::clone(&self.db);
        let id = id.to_owned();
        let stream = stream.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            {
                let mut table = txn.open_table(CHECKPOINTS).map_err(storage)?;
                table.insert(id.as_str(), sequence).map_err(storage)?;
                if let Some(stream) = &stream {
                    let mut streams = txn.open_table(STREAMS).map_err(storage)?;
                    streams
                        .insert(id.as_str(), stream.as_str())
                        .map_err(storage)?;
                }
            }
            txn.commit().map_err(storage)
        })
        .await
        .map_err(storage)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checkpoints_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("triggers.redb");
        let c = Checkpoints::open(&path).unwrap();
        assert_eq!(c.get("Users/project").unwrap(), None);
        c.set("Users/project", 7, Some("arn-1")).await.unwrap();
        c.set("Users/project", 9, None).await.unwrap();
        c.set("Orders/project", 0, None).await.unwrap();
        drop(c);
        let c = Checkpoints::open(&path).unwrap();
        assert_eq!(c.get("Users/project").unwrap(), Some(9));
        assert_eq!(c.stream("Users/project").unwrap().as_deref(), Some("arn-1"));
        assert_eq!(c.get("Orders/project").unwrap(), Some(0));
        assert_eq!(c.stream("Orders/project").unwrap(), None);
    }
}
