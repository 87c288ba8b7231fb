//! The PostgreSQL engine, for clusters: every node of a cluster reads and writes the same
//! tables through one PostgreSQL database, with the semantics of the embedded engine.
//!
//! It owns four relations, created on connect when missing, in the first schema of the
//! connection's `search_path` (so an operator can give Nimbus its own schema with
//! `?options=-c%20search_path%3Dnimbus` in the URL):
//!
//! | relation | primary key | holds |
//! |---|---|---|
//! | `nimbus_tables_meta` | `name` | `schema_version`, checked on connect |
//! | `nimbus_tables_catalog` | `name` | each table's [`TableDef`] as `jsonb`, with its `id` |
//! | `nimbus_tables_items` | `(table_id, key)` | every item of every table, with its size |
//! | `nimbus_tables_index_entries` | `(table_id, index_name, key)` | every index entry |
//!
//! Keys are the order-preserving encodings of [`crate::key`] stored as `bytea`, which
//! PostgreSQL compares with `memcmp`, so a B-tree range over `(table_id, key)` is a key
//! range in DynamoDB's order. Items are stored as the same JSON bytes the embedded engine
//! stores, so both engines decode exactly what they encoded.
//!
//! Why shared relations rather than one per table: creating and dropping a table is then
//! a catalog row and a range of rows, inside an ordinary transaction, with no DDL (which
//! takes exclusive catalog locks and bloats `pg_class`) and no identifier quoting; every
//! statement is one of a fixed set, prepared once per connection; and a write group that
//! spans tables is one set of statements. The composite primary keys put each table's rows
//! in their own contiguous range of the index, so reads cost what they would in a table of
//! their own.
//!
//! Concurrency: a write group runs in one `READ COMMITTED` transaction that first takes
//! transaction-scoped advisory locks, a shared lock per table and then an exclusive lock
//! per item key (a 64-bit hash of table id and key, so keys that do not exist yet are
//! locked too), each set in ascending order, so that two groups can never wait on each
//! other in a cycle. Only then does it read the current items: each statement of a
//! `READ COMMITTED` transaction sees everything committed before it started, and a lock is
//! released only after its holder's commit is visible, so every decision sees the state it
//! changes, as in the embedded engine's single writer. Table changes (`update_table`,
//! `delete_table`) take the table's lock exclusively, so an index backfill sees every write
//! and no write lands in the middle of it. Index entries are maintained from the index
//! list in the catalog as of the write, not from the caller's copy of the definition,
//! so a node whose cached definition is stale still maintains the indexes that exist.
//!
//! Reads: `get`, `get_many` and `stats` are single statements, so each reads one
//! snapshot. A range with a small limit is one statement with that limit; any other range
//! pages through a cursor (a portal, fetched in growing batches) inside a `REPEATABLE READ`
//! read-only transaction, so that a read stopping at its byte budget does not pull the
//! rest of the range. The parallel-scan segment filter and the byte budget are applied
//! here, on decoded items, exactly as the embedded engine applies them. Item sizes are
//! computed when an item is written and summed by `stats`.
//!
//! Differences from the embedded engine, none visible through the API: reading a table or
//! index that has no storage yields nothing where the embedded engine reports an error.
//! In both, a write to a table no longer in the catalog is refused
//! (`ResourceNotFoundException`) rather than storing items no table owns.
//!
//! Durability: a write is acknowledged after its `COMMIT` returns; every connection starts
//! with `synchronous_commit=on` (a setting in the URL's `options` still overrides it, for
//! example to ask for `remote_apply`).

mod ddl;
mod migrate;
mod read;
mod write;

use std::{str::FromStr, sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{
    BoxFuture, EngineError, ItemWrite, Page, RangeRead, StreamRecord, TableEngine, TableStats,
    WriteFailure, Written,
};
use crate::{
    schema::TableDef,
    value::{Item, item_from_json, item_to_json},
};

/// Connections kept open by [`Postgres::connect`].
const DEFAULT_POOL_SIZE: usize = 16;

/// How long one connection attempt may take unless the URL says otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first key of every advisory lock this engine takes in PostgreSQL's two-key form,
/// so that its table and schema locks cannot meet other users' locks.
const LOCK_CLASS: i32 = 0x4e54_0001;

/// The second key of the lock that serialises schema creation across nodes.
const SCHEMA_LOCK: i32 = 0;

/// The PostgreSQL engine: a pool of connections to one database.
#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
}

impl Postgres {
    /// Connects to the database at `url` (`postgres://user@host:5432/db`, without TLS),
    /// and creates the engine's relations when they are missing.
    ///
    /// # Errors
    /// When the URL is invalid, the database cannot be reached, or its schema was made by
    /// a newer Nimbus.
    pub async fn connect(url: &str) -> Result<Postgres, EngineError> {
        Postgres::connect_with_pool_size(url, DEFAULT_POOL_SIZE).await
    }

    /// Like [`Postgres::connect`], keeping at most `max_connections` connections open.
    ///
    /// # Errors
    /// As [`Postgres::connect`].
    pub async fn connect_with_pool_size(
        url: &str,
        max_connections: usize,
    ) -> Result<Postgres, EngineError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| EngineError(format!("invalid PostgreSQL URL: {e}")))?;
        let options = match config.get_options() {
            Some(given) => format!("-c synchronous_commit=on {given}"),
            None => "-c synchronous_commit=on".to_owned(),
        };
        config.options(options);
        if config.get_application_name().is_none() {
            config.application_name("nimbus-tables");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()
            .map_err(err)?;
        let mut client = pool.get().await.map_err(err)?;
        migrate::create(&mut client).await?;
        drop(client);
        Ok(Postgres { pool })
    }
}

/// Wraps any error with its text.
/// Stream records read per statement.
const STREAM_READ_BATCH: usize = 32;

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError::from_display(e)
}

/// An item as stored: its JSON form, as the embedded engine stores it.
fn encode_item(item: &Item) -> Vec<u8> {
    serde_json::to_vec(&item_to_json(item)).expect("serialising JSON values cannot fail")
}

fn decode_item(bytes: &[u8]) -> Result<Item, EngineError> {
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(err)?;
    item_from_json(&json).map_err(err)
}

fn decode_def(json: &str) -> Result<TableDef, EngineError> {
    serde_json::from_str(json).map_err(|e| EngineError(format!("unreadable table definition: {e}")))
}

/// The second key of a table's advisory lock. A stable hash (the same on every node and
/// every build); two tables that share one merely wait for each other's table changes.
fn table_lock(table_id: &str) -> i32 {
    i32::from_ne_bytes(crc32fast::hash(table_id.as_bytes()).to_ne_bytes())
}

/// An item key's advisory lock: FNV-1a over the table id, a byte that UTF-8 never
/// contains, and the key. Stable across nodes and builds, unlike `std`'s hashers.
fn key_lock(table_id: &str, key: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in table_id.as_bytes().iter().chain(&[0xff]).chain(key) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Lock ids in the order every transaction takes them.
fn lock_order<T: Ord>(ids: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut ids: Vec<T> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl TableEngine for Postgres {
    fn catalog(&self) -> BoxFuture<'_, Result<Vec<TableDef>, EngineError>> {
        Box::pin(ddl::catalog(&self.pool))
    }

    fn create_table(&self, def: TableDef) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move { ddl::create_table(&self.pool, &def).await })
    }

    fn update_table(&self, def: TableDef) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move { ddl::update_table(&self.pool, &def).await })
    }

    fn delete_table(&self, def: Arc<TableDef>) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move { ddl::delete_table(&self.pool, &def).await })
    }

    fn get(
        &self,
        table: Arc<TableDef>,
        key: Vec<u8>,
    ) -> BoxFuture<'_, Result<Option<Item>, EngineError>> {
        Box::pin(async move { read::get(&self.pool, &table, &key).await })
    }

    fn get_many(
        &self,
        keys: Vec<(Arc<TableDef>, Vec<u8>)>,
    ) -> BoxFuture<'_, Result<Vec<Option<Item>>, EngineError>> {
        Box::pin(async move { read::get_many(&self.pool, &keys).await })
    }

    fn range(&self, read: RangeRead) -> BoxFuture<'_, Result<Page, EngineError>> {
        Box::pin(async move { read::range(&self.pool, &read).await })
    }

    fn write(&self, writes: Vec<ItemWrite>) -> BoxFuture<'_, Result<Vec<Written>, WriteFailure>> {
        let trace = nimbus_core::trace::current().map(|cx| cx.traceparent());
        Box::pin(write::write(&self.pool, writes, trace))
    }

    fn shared(&self) -> bool {
        true
    }

    fn stats(&self, table: Arc<TableDef>) -> BoxFuture<'_, Result<TableStats, EngineError>> {
        Box::pin(async move { read::stats(&self.pool, &table).await })
    }

    fn stream_records(
        &self,
        table: Arc<TableDef>,
        label: String,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<StreamRecord>, EngineError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let statement = client
                .prepare_cached(
                    "SELECT record FROM nimbus_tables_stream
                     WHERE table_id = $1 AND label = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                )
                .await
                .map_err(err)?;
            // Read in small batches, so that a page of large records stops at its byte
            // budget instead of loading `limit` of them first.
            let mut after = i64::try_from(after.unwrap_or(0)).map_err(err)?;
            let mut out: Vec<StreamRecord> = Vec::new();
            let mut bytes = 0;
            while out.len() < limit && bytes <= max_bytes {
                let batch = (limit - out.len()).min(STREAM_READ_BATCH);
                let rows = client
                    .query(
                        &statement,
                        &[
                            &table.id,
                            &label,
                            &after,
                            &i64::try_from(batch).map_err(err)?,
                        ],
                    )
                    .await
                    .map_err(err)?;
                for row in &rows {
                    if bytes > max_bytes {
                        break;
                    }
                    let record = StreamRecord::from_bytes(row.try_get(0).map_err(err)?)
                        .map_err(EngineError)?;
                    bytes += record.size_bytes;
                    after = i64::try_from(record.sequence).map_err(err)?;
                    out.push(record);
                }
                if rows.len() < batch {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn stream_last_sequence(
        &self,
        table: Arc<TableDef>,
    ) -> BoxFuture<'_, Result<u64, EngineError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let row = client
                .query_one(
                    "SELECT greatest(
                        coalesce((SELECT last_seq FROM nimbus_tables_stream_sequences WHERE table_id = $1), 0),
                        coalesce((SELECT max(seq) FROM nimbus_tables_stream WHERE table_id = $1), 0))",
                    &[&table.id],
                )
                .await
                .map_err(err)?;
            let last: i64 = row.try_get(0).map_err(err)?;
            u64::try_from(last).map_err(err)
        })
    }

    fn trim_streams(
        &self,
        table: Arc<TableDef>,
        before: f64,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            client
                .execute(
                    "DELETE FROM nimbus_tables_stream WHERE table_id = $1 AND created < $2",
                    &[&table.id, &before],
                )
                .await
                .map_err(err)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable_and_separate_tables() {
        // Nodes of one cluster must agree on lock ids: these values are fixed.
        assert_eq!(
            key_lock("", b""),
            i64::from_ne_bytes(0xaf64_724c_8602_eb6e_u64.to_ne_bytes())
        );
        assert_ne!(key_lock("ab", b"c"), key_lock("a", b"bc"));
        assert_eq!(table_lock("t"), table_lock("t"));
        assert_eq!(lock_order([3, 1, 3, 2]), [1, 2, 3]);
    }
}
