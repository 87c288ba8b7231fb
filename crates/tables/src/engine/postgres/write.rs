//! Write groups: lock, read, decide, apply, commit, in one transaction.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Pool;
use tokio_postgres::IsolationLevel;

use super::{
    LOCK_CLASS, decode_def, encode_item, err, key_lock, lock_order, read::SELECT_KEYS,
    read::keyed_row, table_lock,
};
use crate::{
    engine::{EngineError, ItemWrite, StreamRecord, WriteAction, WriteFailure, Written},
    schema::TableDef,
    value::{Item, item_size},
};

const LOCK_TABLES: &str =
    "SELECT count(pg_advisory_xact_lock_shared($1::int4, t)) FROM unnest($2::int4[]) AS t";

/// Rows of a function scan are produced, and the lock taken, in array order.
const LOCK_KEYS: &str = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::int8[]) AS k";

/// Serialises writers of one table's stream, so that sequence numbers follow commit order
/// and a reader never skips a record committed after a later one.
const LOCK_STREAMS: &str = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::int8[]) AS k";

/// The last sequence number of each table's stream: its counter, which outlives
/// trimming, or (for a stream written before the counter existed) its newest record.
const LAST_SEQUENCES: &str = "SELECT t, greatest(
        coalesce((SELECT last_seq FROM nimbus_tables_stream_sequences WHERE table_id = t), 0),
        coalesce((SELECT max(seq) FROM nimbus_tables_stream WHERE table_id = t), 0))
    FROM unnest($1::text[]) AS t";

const SAVE_SEQUENCES: &str = "INSERT INTO nimbus_tables_stream_sequences (table_id, last_seq)
    SELECT t, max(s) FROM unnest($1::text[], $2::int8[]) AS r(t, s) GROUP BY t
    ON CONFLICT (table_id) DO UPDATE SET last_seq = EXCLUDED.last_seq";

const INSERT_RECORDS: &str =
    "INSERT INTO nimbus_tables_stream (table_id, seq, label, created, record)
    SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::float8[], $5::bytea[])";

const SELECT_DEFS: &str =
    "SELECT id, def::text FROM nimbus_tables_catalog WHERE id = ANY($1::text[])";

const DELETE_ITEMS: &str = "DELETE FROM nimbus_tables_items AS i
    USING unnest($1::text[], $2::bytea[]) AS d(table_id, key)
    WHERE i.table_id = d.table_id AND i.key = d.key";

const UPSERT_ITEMS: &str = "INSERT INTO nimbus_tables_items (table_id, key, size, item)
    SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[], $4::bytea[])
    ON CONFLICT (table_id, key) DO UPDATE SET size = EXCLUDED.size, item = EXCLUDED.item";

const DELETE_ENTRIES: &str = "DELETE FROM nimbus_tables_index_entries AS e
    USING unnest($1::text[], $2::text[], $3::bytea[]) AS d(table_id, index_name, key)
    WHERE e.table_id = d.table_id AND e.index_name = d.index_name AND e.key = d.key";

/// Inserts or replaces index entries given as arrays of table ids, index names, keys and
/// projected items.
pub(super) const UPSERT_ENTRIES: &str =
    "INSERT INTO nimbus_tables_index_entries (table_id, index_name, key, item)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])
    ON CONFLICT (table_id, index_name, key) DO UPDATE SET item = EXCLUDED.item";

fn storage(e: impl std::fmt::Display) -> WriteFailure {
    WriteFailure::Storage(err(e))
}

/// An item as stored, with its size.
struct Stored {
    size: i64,
    item: Vec<u8>,
}

/// The rows a group changes, each row's last change winning, as if applied one by one.
#[derive(Default)]
struct Changes {
    /// `(table id, key)` to the stored item, or `None` to delete.
    items: BTreeMap<(String, Vec<u8>), Option<Stored>>,
    /// `(table id, index, key)` to the projected item, or `None` to delete.
    entries: BTreeMap<(String, String, Vec<u8>), Option<Vec<u8>>>,
}

impl Changes {
    /// Records one item's change and its index entries' (as the embedded engine's
    /// `update_indexes`: an old entry is removed unless the new one has the same key).
    fn record(
        &mut self,
        def: &TableDef,
        key: Vec<u8>,
        old: Option<&Item>,
        new: Option<&Item>,
    ) -> Result<(), EngineError> {
        let stored = match new {
            Some(item) => Some(Stored {
                size: i64::try_from(item_size(item)).map_err(err)?,
                item: encode_item(item),
            }),
            None => None,
        };
        self.items.insert((def.id.clone(), key), stored);
        for index in def.global_indexes.iter().chain(&def.local_indexes) {
            let old_entry = old.and_then(|item| def.index_entry(index, item));
            let new_entry = new.and_then(|item| def.index_entry(index, item));
            if let Some((key, _)) = &old_entry
                && new_entry.as_ref().is_none_or(|(k, _)| k != key)
            {
                self.entries
                    .insert((def.id.clone(), index.name.clone(), key.clone()), None);
            }
            if let Some((key, projected)) = new_entry {
                self.entries.insert(
                    (def.id.clone(), index.name.clone(), key),
                    Some(encode_item(&projected)),
                );
            }
        }
        Ok(())
    }
}

pub(super) async fn write(
    pool: &Pool,
    writes: Vec<ItemWrite>,
    trace: Option<String>,
) -> Result<Vec<Written>, WriteFailure> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = pool.get().await.map_err(storage)?;
    // READ COMMITTED whatever the server's default: each statement must see what was
    // committed before it, in particular before the locks it waited for were released.
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(storage)?;

    let (defs, mut current) = {
        let table_locks = lock_order(writes.iter().map(|w| table_lock(&w.table.id)));
        let key_locks = lock_order(writes.iter().map(|w| key_lock(&w.table.id, &w.key)));
        let table_ids = lock_order(writes.iter().map(|w| w.table.id.as_str()));
        let ids: Vec<&str> = writes.iter().map(|w| w.table.id.as_str()).collect();
        let keys: Vec<&[u8]> = writes.iter().map(|w| w.key.as_slice()).collect();
        let (lock_tables, lock_keys, select_defs, select_items) = tokio::try_join!(
            txn.prepare_cached(LOCK_TABLES),
            txn.prepare_cached(LOCK_KEYS),
            txn.prepare_cached(SELECT_DEFS),
            txn.prepare_cached(SELECT_KEYS),
        )
        .map_err(storage)?;
        // Sent together; the server runs them in order, so both reads start once every
        // lock is held.
        let (_, _, def_rows, item_rows) = tokio::try_join!(
            async {
                txn.execute(&lock_tables, &[&LOCK_CLASS, &table_locks])
                    .await
            },
            async { txn.execute(&lock_keys, &[&key_locks]).await },
            async { txn.query(&select_defs, &[&table_ids]).await },
            async { txn.query(&select_items, &[&ids, &keys]).await },
        )
        .map_err(storage)?;
        let mut defs = HashMap::with_capacity(def_rows.len());
        for row in def_rows {
            let id: String = row.try_get(0).map_err(storage)?;
            let def =
                decode_def(row.try_get(1).map_err(storage)?).map_err(WriteFailure::Storage)?;
            defs.insert(id, def);
        }
        let mut current: Vec<Option<Item>> = vec![None; writes.len()];
        for row in item_rows {
            let (position, item) = keyed_row(&row).map_err(WriteFailure::Storage)?;
            if let Some(slot) = current.get_mut(position) {
                *slot = Some(item);
            }
        }
        (defs, current)
    };

    // A write to a table no longer in the catalog (deleted, or deleted and made again,
    // on another node) is refused as the embedded engine refuses it.
    if writes.iter().any(|w| !defs.contains_key(&w.table.id)) {
        let _ = txn.rollback().await;
        return Err(WriteFailure::Rejected(
            writes
                .iter()
                .map(|w| {
                    (!defs.contains_key(&w.table.id)).then(crate::error::ApiError::table_not_found)
                })
                .collect(),
        ));
    }

    // Every decision is taken against the state before the group, as in the embedded
    // engine; any refusal leaves everything as it was.
    let decided = match crate::engine::decide_all(writes.into_iter().zip(current.drain(..))) {
        Ok(decided) => decided,
        Err(refusals) => {
            // Nothing was written; a failed rollback only means the connection is gone.
            let _ = txn.rollback().await;
            return Err(WriteFailure::Rejected(refusals));
        }
    };

    let mut changes = Changes::default();
    let mut written = Vec::with_capacity(decided.len());
    let mut records: Vec<(String, StreamRecord)> = Vec::new();
    let created = crate::engine::stream::now();
    for crate::engine::Decided {
        table,
        key,
        old,
        action,
    } in decided
    {
        let by_ttl = matches!(action, WriteAction::Expire);
        let new = match action {
            WriteAction::Keep => {
                written.push(Written {
                    new: old.clone(),
                    old,
                });
                continue;
            }
            WriteAction::Put(item) => Some(item),
            WriteAction::Delete | WriteAction::Expire => None,
        };
        // The catalog's definition as of this transaction, which lists the indexes that
        // exist now even when the caller's copy is stale.
        let def = defs.get(&table.id).ok_or_else(|| {
            WriteFailure::Storage(EngineError(format!(
                "table {} is not in the catalog",
                table.name
            )))
        })?;
        changes
            .record(def, key, old.as_ref(), new.as_ref())
            .map_err(WriteFailure::Storage)?;
        if let Some(mut record) = StreamRecord::for_write(def, old.as_ref(), new.as_ref(), created)
        {
            record.trace.clone_from(&trace);
            record.by_ttl = by_ttl;
            records.push((def.id.clone(), record));
        }
        written.push(Written { old, new });
    }
    apply(&txn, &changes).await.map_err(storage)?;
    if !records.is_empty() {
        append_records(&txn, records).await.map_err(storage)?;
    }
    txn.commit().await.map_err(storage)?;
    Ok(written)
}

/// Numbers the group's stream records after each table's last one and stores them,
/// holding each stream's lock until the commit.
async fn append_records(
    txn: &deadpool_postgres::Transaction<'_>,
    mut records: Vec<(String, StreamRecord)>,
) -> Result<(), tokio_postgres::Error> {
    let tables = lock_order(records.iter().map(|(id, _)| id.clone()));
    let locks = lock_order(tables.iter().map(|id| key_lock(id, STREAM_LOCK_KEY)));
    let lock = txn.prepare_cached(LOCK_STREAMS).await?;
    txn.execute(&lock, &[&locks]).await?;
    let last = txn.prepare_cached(LAST_SEQUENCES).await?;
    let mut next: HashMap<String, i64> = HashMap::new();
    for row in txn.query(&last, &[&tables]).await? {
        next.insert(row.try_get(0)?, row.try_get::<_, i64>(1)? + 1);
    }
    let (mut ids, mut seqs, mut labels, mut times, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, record) in &mut records {
        let seq = next.entry(id.clone()).or_insert(1);
        record.sequence = u64::try_from(*seq).unwrap_or(0);
        *seq += 1;
        ids.push(id.as_str());
        seqs.push(i64::try_from(record.sequence).unwrap_or(i64::MAX));
        labels.push(record.stream_label.as_str());
        times.push(record.created);
        bytes.push(record.to_bytes());
    }
    let insert = txn.prepare_cached(INSERT_RECORDS).await?;
    txn.execute(&insert, &[&ids, &seqs, &labels, &times, &bytes])
        .await?;
    let save = txn.prepare_cached(SAVE_SEQUENCES).await?;
    txn.execute(&save, &[&ids, &seqs]).await?;
    Ok(())
}

/// The key whose lock stands for a table's stream (no item key is empty, so it is never
/// an item's).
const STREAM_LOCK_KEY: &[u8] = b"";

/// Rows of one statement, as the parallel arrays it takes.
#[derive(Default)]
struct Rows<'a> {
    ids: Vec<&'a str>,
    names: Vec<&'a str>,
    keys: Vec<&'a [u8]>,
    sizes: Vec<i64>,
    items: Vec<&'a [u8]>,
}

/// Applies the changes with at most four statements, sent together.
async fn apply(
    txn: &deadpool_postgres::Transaction<'_>,
    changes: &Changes,
) -> Result<(), tokio_postgres::Error> {
    let (mut deleted_items, mut stored_items) = (Rows::default(), Rows::default());
    for ((table_id, key), change) in &changes.items {
        let rows = if change.is_some() {
            &mut stored_items
        } else {
            &mut deleted_items
        };
        rows.ids.push(table_id);
        rows.keys.push(key);
        if let Some(stored) = change {
            rows.sizes.push(stored.size);
            rows.items.push(&stored.item);
        }
    }
    let (mut deleted_entries, mut stored_entries) = (Rows::default(), Rows::default());
    for ((table_id, index, key), change) in &changes.entries {
        let rows = if change.is_some() {
            &mut stored_entries
        } else {
            &mut deleted_entries
        };
        rows.ids.push(table_id);
        rows.names.push(index);
        rows.keys.push(key);
        if let Some(item) = change {
            rows.items.push(item);
        }
    }
    let (delete_items, upsert_items, delete_entries, upsert_entries) = tokio::try_join!(
        txn.prepare_cached(DELETE_ITEMS),
        txn.prepare_cached(UPSERT_ITEMS),
        txn.prepare_cached(DELETE_ENTRIES),
        txn.prepare_cached(UPSERT_ENTRIES),
    )?;
    // The four statements touch disjoint rows, so their order does not matter.
    tokio::try_join!(
        async {
            if deleted_items.ids.is_empty() {
                return Ok(0);
            }
            let rows = &deleted_items;
            txn.execute(&delete_items, &[&rows.ids, &rows.keys]).await
        },
        async {
            if stored_items.ids.is_empty() {
                return Ok(0);
            }
            let rows = &stored_items;
            txn.execute(
                &upsert_items,
                &[&rows.ids, &rows.keys, &rows.sizes, &rows.items],
            )
            .await
        },
        async {
            if deleted_entries.ids.is_empty() {
                return Ok(0);
            }
            let rows = &deleted_entries;
            txn.execute(&delete_entries, &[&rows.ids, &rows.names, &rows.keys])
                .await
        },
        async {
            if stored_entries.ids.is_empty() {
                return Ok(0);
            }
            let rows = &stored_entries;
            txn.execute(
                &upsert_entries,
                &[&rows.ids, &rows.names, &rows.keys, &rows.items],
            )
            .await
        },
    )?;
    Ok(())
}
