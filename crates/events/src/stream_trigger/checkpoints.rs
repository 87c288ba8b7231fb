//! Where each stream trigger is in its stream, in its own redb file: a row per trigger,
//! the sequence number of the last record it is done with.

use std::{path::Path, sync::Arc};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::TriggerError;

const CHECKPOINTS: TableDefinition<'static, &str, u64> = TableDefinition::new("checkpoints");

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

    /// Stores trigger `id`'s checkpoint; returns once it is on disk.
    ///
    /// # Errors
    /// When the commit fails (the checkpoint is unchanged).
    pub async fn set(&self, id: &str, sequence: u64) -> Result<(), TriggerError> {
        let db = Arc::clone(&self.db);
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            {
                let mut table = txn.open_table(CHECKPOINTS).map_err(storage)?;
                table.insert(id.as_str(), sequence).map_err(storage)?;
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
        c.set("Users/project", 7).await.unwrap();
        c.set("Users/project", 9).await.unwrap();
        c.set("Orders/project", 0).await.unwrap();
        drop(c);
        let c = Checkpoints::open(&path).unwrap();
        assert_eq!(c.get("Users/project").unwrap(), Some(9));
        assert_eq!(c.get("Orders/project").unwrap(), Some(0));
    }
}
