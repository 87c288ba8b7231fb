//! Who fires a schedule's ticks, and the durable record of what has fired.
//!
//! A tick is identified by its schedule's key and its fire time. Before firing one, the
//! scheduler [claims](ScheduleLease::claim) it: only the holder of the schedule's lease may
//! fire, and only a tick later than the schedule's record. After the event is durably in
//! the queue, it [settles](ScheduleLease::settle) the tick, moving the record forward. A
//! crash between the enqueue and the settle leaves the tick unsettled, so it fires again
//! after the restart (a duplicate, never a loss).
//!
//! [`LocalLease`] is the embedded, single-node lease: the node that holds the data
//! directory holds every lease, and the record is a row per schedule in its own redb file.
//! A cluster lease (a PostgreSQL row with an expiry, or a NATS KV entry) implements the
//! same trait; see `docs/architecture.md`.

use std::{path::Path, sync::Arc};

use nimbus_core::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::ScheduleError;

const SCHEDULES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("schedules");

/// What is recorded about a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The expression as written: a schedule whose expression changed starts afresh.
    pub expression: String,
    /// When the schedule was first seen (ms since the epoch): a rate counts from here.
    pub anchor_ms: u64,
    /// Every fire time at or before this (ms since the epoch) is settled: fired, or
    /// covered by a later tick that fired once for several.
    pub done_until_ms: u64,
    /// The fire time of the last tick this schedule fired.
    pub last_fired_ms: Option<u64>,
}

impl ScheduleState {
    /// A schedule first seen at `now_ms`.
    pub fn new(expression: &str, now_ms: u64) -> ScheduleState {
        ScheduleState {
            expression: expression.to_owned(),
            anchor_ms: now_ms,
            done_until_ms: now_ms,
            last_fired_ms: None,
        }
    }
}

/// The lease on schedules and the record of their ticks.
pub trait ScheduleLease: Send + Sync + 'static {
    /// The schedule's record, made (anchored at `now_ms`) when the schedule is new or its
    /// expression is not the recorded one.
    fn open<'a>(
        &'a self,
        key: &'a str,
        expression: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<ScheduleState, ScheduleError>>;

    /// Whether this node may fire the tick at `tick_ms`: it holds the schedule's lease and
    /// the tick is later than every settled one.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        tick_ms: u64,
    ) -> BoxFuture<'a, Result<bool, ScheduleError>>;

    /// Records that every fire time up to `tick_ms` is settled; `fired` says whether the
    /// tick's event was enqueued (a disabled schedule's ticks are settled unfired).
    fn settle<'a>(
        &'a self,
        key: &'a str,
        tick_ms: u64,
        fired: bool,
    ) -> BoxFuture<'a, Result<(), ScheduleError>>;
}

fn storage(e: impl std::fmt::Display) -> ScheduleError {
    ScheduleError::Storage(e.to_string())
}

/// The single-node lease: every schedule's record in one redb file, all leases held by
/// this node (which holds the data directory).
#[derive(Clone)]
pub struct LocalLease {
    db: Arc<Database>,
}

impl std::fmt::Debug for LocalLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLease").finish_non_exhaustive()
    }
}

impl LocalLease {
    /// Opens (or creates) the schedule file at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or is not a schedule file.
    pub fn open(path: &Path) -> Result<LocalLease, ScheduleError> {
        let db = Database::create(path).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(SCHEDULES).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(LocalLease { db: Arc::new(db) })
    }

    /// Every recorded schedule, by key.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn states(&self) -> Result<Vec<(String, ScheduleState)>, ScheduleError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SCHEDULES).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            out.push((key.value().to_owned(), decode(value.value())?));
        }
        Ok(out)
    }

    /// Runs `f` on a blocking thread: redb commits wait for an fsync.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, ScheduleError> + Send + 'static,
    ) -> Result<T, ScheduleError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(storage)?
    }
}

fn decode(bytes: &[u8]) -> Result<ScheduleState, ScheduleError> {
    serde_json::from_slice(bytes).map_err(|e| storage(format!("a schedule record is corrupt: {e}")))
}

fn read(db: &Database, key: &str) -> Result<Option<ScheduleState>, ScheduleError> {
    let txn = db.begin_read().map_err(storage)?;
    let table = txn.open_table(SCHEDULES).map_err(storage)?;
    let Some(value) = table.get(key).map_err(storage)? else {
        return Ok(None);
    };
    decode(value.value()).map(Some)
}

/// Changes `key`'s record in one durable commit; returns the record as written.
fn update(
    db: &Database,
    key: &str,
    change: impl FnOnce(Option<ScheduleState>) -> ScheduleState,
) -> Result<ScheduleState, ScheduleError> {
    let txn = db.begin_write().map_err(storage)?;
    let state = {
        let mut table = txn.open_table(SCHEDULES).map_err(storage)?;
        let current = match table.get(key).map_err(storage)? {
            Some(value) => Some(decode(value.value())?),
            None => None,
        };
        let state = change(current);
        let bytes = serde_json::to_vec(&state).map_err(storage)?;
        table.insert(key, bytes.as_slice()).map_err(storage)?;
        state
    };
    txn.commit().map_err(storage)?;
    Ok(state)
}

impl ScheduleLease for LocalLease {
    fn open<'a>(
        &'a self,
        key: &'a str,
        expression: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<ScheduleState, ScheduleError>> {
        let (key, expression) = (key.to_owned(), expression.to_owned());
        Box::pin(self.blocking(move |db| {
            if let Some(state) = read(db, &key)?
                && state.expression == expression
            {
                return Ok(state);
            }
            update(db, &key, |_| ScheduleState::new(&expression, now_ms))
        }))
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
        tick_ms: u64,
    ) -> BoxFuture<'a, Result<bool, ScheduleError>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |db| {
            Ok(read(db, &key)?.is_some_and(|state| state.done_until_ms < tick_ms))
        }))
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        tick_ms: u64,
        fired: bool,
    ) -> BoxFuture<'a, Result<(), ScheduleError>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |db| {
            update(db, &key, |state| {
                let mut state = state.unwrap_or_else(|| ScheduleState::new("", tick_ms));
                state.done_until_ms = state.done_until_ms.max(tick_ms);
                if fired {
                    state.last_fired_ms = Some(tick_ms);
                }
                state
            })
            .map(drop)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_reopening_and_claims_follow_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedules.redb");
        let lease = LocalLease::open(&path).unwrap();
        let state = lease
            .open("app-f-1", "rate(1 minute)", 1_000)
            .await
            .unwrap();
        assert_eq!(state, ScheduleState::new("rate(1 minute)", 1_000));
        assert!(lease.claim("app-f-1", 61_000).await.unwrap());
        assert!(!lease.claim("app-f-1", 1_000).await.unwrap());
        assert!(!lease.claim("unknown", 61_000).await.unwrap());
        lease.settle("app-f-1", 61_000, true).await.unwrap();
        assert!(!lease.claim("app-f-1", 61_000).await.unwrap());
        drop(lease);

        let lease = LocalLease::open(&path).unwrap();
        let state = lease
            .open("app-f-1", "rate(1 minute)", 500_000)
            .await
            .unwrap();
        assert_eq!(state.anchor_ms, 1_000, "the anchor is kept");
        assert_eq!(state.done_until_ms, 61_000);
        assert_eq!(state.last_fired_ms, Some(61_000));
        // A disabled tick moves the record without counting as fired.
        lease.settle("app-f-1", 121_000, false).await.unwrap();
        let (key, state) = lease.states().unwrap().remove(0);
        assert_eq!(key, "app-f-1");
        assert_eq!(
            (state.done_until_ms, state.last_fired_ms),
            (121_000, Some(61_000))
        );
        // A changed expression starts afresh.
        let state = lease
            .open("app-f-1", "rate(5 minutes)", 900_000)
            .await
            .unwrap();
        assert_eq!(state, ScheduleState::new("rate(5 minutes)", 900_000));
    }
}
