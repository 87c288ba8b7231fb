//! The embedded engine: one redb file in the data directory.
//!
//! Reads run on redb's MVCC read transactions, on the blocking pool. Writes go to one
//! writer thread that takes every write waiting for it, applies them in one write
//! transaction and commits once with an fsync (group commit): many writers share one
//! durable commit, and a write is acknowledged only after that commit.

use std::{
    collections::HashMap,
    ops::Bound,
    path::Path,
    sync::{Arc, mpsc},
};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use tokio::sync::oneshot;

use super::{
    BoxFuture, EngineError, ItemWrite, Page, RangeRead, StreamRecord, TableEngine, TableStats,
    WriteAction, WriteFailure, Written,
};
use crate::{
    error::ApiError,
    schema::{IndexDef, TableDef},
    value::{Item, item_from_json, item_size, item_to_json},
};

/// Table definitions by table name.
const CATALOG: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("catalog");

/// The last sequence number given to a record of each table's stream, by table id: the
/// stream table itself may have been trimmed empty.
const STREAM_SEQUENCES: TableDefinition<'static, &str, u64> =
    TableDefinition::new("stream_sequences");

/// Most write requests committed together.
const MAX_GROUP: usize = 512;

/// The writer thread's copy of the catalog, by table name. The writer applies every
/// table change, so its copy is the catalog as of each write; a caller's definition may be
/// older (read before an UpdateTable or DeleteTable that was queued ahead of its write).
type Catalog = HashMap<String, Arc<TableDef>>;

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError::from_display(e)
}

fn items_table(def: &TableDef) -> String {
    format!("items/{}", def.id)
}

/// A table's stream records by sequence number (every stream label of the table).
fn stream_table(def: &TableDef) -> String {
    format!("stream/{}", def.id)
}

fn index_table(def: &TableDef, index: &str) -> String {
    format!("index/{}/{index}", def.id)
}

fn encode_item(item: &Item) -> Vec<u8> {
    serde_json::to_vec(&item_to_json(item)).expect("serialising JSON values cannot fail")
}

fn decode_item(bytes: &[u8]) -> Result<Item, EngineError> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(EngineError::from_display)?;
    item_from_json(&json).map_err(EngineError::from_display)
}

enum Job {
    /// The writes, with the trace context of the request that made them.
    Write(
        (Vec<ItemWrite>, Option<String>),
        oneshot::Sender<Result<Vec<Written>, WriteFailure>>,
    ),
    Ddl(Box<Ddl>, oneshot::Sender<Result<(), EngineError>>),
}

enum Ddl {
    Create(TableDef),
    Update(TableDef),
    Delete(Arc<TableDef>),
    /// Delete stream records created before the time (epoch seconds).
    Trim(Arc<TableDef>, f64),
}

/// The embedded engine.
pub struct Embedded {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
}

impl Embedded {
    /// Opens (or creates) the database file at `path` and starts the writer thread.
    ///
    /// # Errors
    /// When the file cannot be opened or is not a valid database.
    pub fn open(path: &Path) -> Result<Embedded, EngineError> {
        Embedded::start(Database::create(path).map_err(err)?)
    }

    /// An engine that keeps everything in memory (for tests and fuzzing; nothing is
    /// durable).
    ///
    /// # Errors
    /// When the writer thread cannot start.
    pub fn in_memory() -> Result<Embedded, EngineError> {
        Embedded::start(
            Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(err)?,
        )
    }

    fn start(db: Database) -> Result<Embedded, EngineError> {
        let db = Arc::new(db);
        let mut catalog = Catalog::new();
        {
            let txn = db.begin_write().map_err(EngineError::from_display)?;
            let table = txn.open_table(CATALOG).map_err(EngineError::from_display)?;
            for entry in table.iter().map_err(err)? {
                let (name, value) = entry.map_err(err)?;
                let def: TableDef = serde_json::from_slice(value.value()).map_err(err)?;
                catalog.insert(name.value().to_owned(), Arc::new(def));
            }
            drop(table);
            txn.commit().map_err(EngineError::from_display)?;
        }
        let (jobs, rx) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        std::thread::Builder::new()
            .name("nimbus-tables-writer".to_owned())
            .spawn(move || writer(&writer_db, &rx, catalog))
            .map_err(EngineError::from_display)?;
        Ok(Embedded { db, jobs })
    }

    fn submit<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Job,
    ) -> Result<oneshot::Receiver<T>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(make(tx))
            .map_err(|_| EngineError("the table writer has stopped".to_owned()))?;
        Ok(rx)
    }

    /// Runs a short read (a few point lookups) on the calling task: redb's read
    /// transactions are cheap and mostly served from cache, and a thread hand-off would
    /// cost more than the read.
    fn read_inline<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, EngineError>,
    ) -> BoxFuture<'_, Result<T, EngineError>> {
        let result = f(&self.db);
        Box::pin(async move { result })
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, EngineError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, EngineError>> {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(EngineError::from_display)?
        })
    }
}

/// The writer thread: group commit.
fn writer(db: &Database, rx: &mpsc::Receiver<Job>, mut catalog: Catalog) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(db, group, &mut catalog);
    }
}

/// How one job of a group ends, sent once the group's commit is known.
enum Done {
    Write(
        oneshot::Sender<Result<Vec<Written>, WriteFailure>>,
        Result<Vec<Written>, Vec<Option<ApiError>>>,
    ),
    Ddl(oneshot::Sender<Result<(), EngineError>>),
}

fn run_group(db: &Database, group: Vec<Job>, catalog: &mut Catalog) {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let e = err(e);
            tracing::error!(error = %e, "cannot begin a table write transaction");
            fail_all(
                group.into_iter().map(|job| match job {
                    Job::Write(_, tx) => Done::Write(tx, Ok(Vec::new())),
                    Job::Ddl(_, tx) => Done::Ddl(tx),
                }),
                &e,
            );
            return;
        }
    };
    let mut txn = txn;
    if let Err(e) = txn.set_durability(Durability::Immediate) {
        tracing::warn!(error = %e, "cannot set durability; using the database default");
    }
    // Replies wait for the commit: nothing is acknowledged before it is durable. A
    // storage error anywhere abandons the whole transaction, so no job is half-applied.
    let mut done = Vec::with_capacity(group.len());
    let mut jobs = group.into_iter();
    let mut failure = None;
    // A group's table changes go to a copy of the catalog, kept only if the group commits.
    let mut staged: Option<Catalog> = None;
    for job in jobs.by_ref() {
        let (d, outcome) = match job {
            Job::Write((writes, trace), tx) => {
                match apply_writes(&txn, writes, trace, staged.as_ref().unwrap_or(catalog)) {
                    Ok(result) => (Done::Write(tx, result), Ok(())),
                    Err(e) => (Done::Write(tx, Ok(Vec::new())), Err(e)),
                }
            }
            Job::Ddl(ddl, tx) => {
                let staged = staged.get_or_insert_with(|| catalog.clone());
                (Done::Ddl(tx), apply_ddl(&txn, *ddl, staged))
            }
        };
        done.push(d);
        if let Err(e) = outcome {
            failure = Some(e);
            break;
        }
    }
    let failure = match failure {
        Some(e) => {
            drop(txn);
            Some(e)
        }
        None => txn.commit().err().map(err),
    };
    match failure {
        None => {
            if let Some(staged) = staged {
                *catalog = staged;
            }
            for d in done {
                match d {
                    Done::Write(tx, result) => {
                        let _ = tx.send(result.map_err(WriteFailure::Rejected));
                    }
                    Done::Ddl(tx) => {
                        let _ = tx.send(Ok(()));
                    }
                }
            }
        }
        Some(e) => {
            tracing::error!(error = %e, "table write transaction failed; nothing was written");
            let rest = jobs.map(|job| match job {
                Job::Write(_, tx) => Done::Write(tx, Ok(Vec::new())),
                Job::Ddl(_, tx) => Done::Ddl(tx),
            });
            fail_all(done.into_iter().chain(rest), &e);
        }
    }
}

fn fail_all(done: impl Iterator<Item = Done>, e: &EngineError) {
    for d in done {
        match d {
            Done::Write(tx, _) => {
                let _ = tx.send(Err(WriteFailure::Storage(EngineError(e.0.clone()))));
            }
            Done::Ddl(tx) => {
                let _ = tx.send(Err(EngineError(e.0.clone())));
            }
        }
    }
}

/// Decides every write of one request against the current state, then applies them all,
/// or none when a decision refuses (`Ok(Err(reasons))`). `Err` is a storage failure, which
/// abandons the whole transaction.
///
/// Indexes and streams are maintained from `catalog`'s definitions, not the callers':
/// a write made while an UpdateTable was applied reaches the indexes that exist now, and a
/// write to a table deleted meanwhile is refused (`ResourceNotFoundException`) rather than
/// storing items no table owns.
fn apply_writes(
    txn: &WriteTransaction,
    mut writes: Vec<ItemWrite>,
    trace: Option<String>,
    catalog: &Catalog,
) -> Result<Result<Vec<Written>, Vec<Option<ApiError>>>, EngineError> {
    let mut gone = false;
    let refusals: Vec<Option<ApiError>> = writes
        .iter_mut()
        .map(|write| {
            match catalog
                .get(&write.table.name)
                .filter(|def| def.id == write.table.id)
            {
                Some(def) => {
                    write.table = Arc::clone(def);
                    None
                }
                None => {
                    gone = true;
                    Some(ApiError::table_not_found())
                }
            }
        })
        .collect();
    if gone {
        return Ok(Err(refusals));
    }
    let mut current = Vec::with_capacity(writes.len());
    for write in writes {
        let name = items_table(&write.table);
        let table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .map_err(err)?;
        let old = match table.get(write.key.as_slice()).map_err(err)? {
            Some(bytes) => Some(decode_item(bytes.value())?),
            None => None,
        };
        current.push((write, old));
    }
    let decided = match super::decide_all(current) {
        Ok(decided) => decided,
        Err(refusals) => return Ok(Err(refusals)),
    };
    let mut written = Vec::with_capacity(decided.len());
    let created = super::stream::now();
    for super::Decided {
        table: def,
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
        let name = items_table(&def);
        let mut table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .map_err(err)?;
        match &new {
            Some(item) => {
                table
                    .insert(key.as_slice(), encode_item(item).as_slice())
                    .map_err(err)?;
            }
            None => {
                table.remove(key.as_slice()).map_err(err)?;
            }
        }
        drop(table);
        update_indexes(txn, &def, old.as_ref(), new.as_ref())?;
        if let Some(mut record) = StreamRecord::for_write(&def, old.as_ref(), new.as_ref(), created)
        {
            record.trace.clone_from(&trace);
            record.by_ttl = by_ttl;
            let name = stream_table(&def);
            let mut stream = txn
                .open_table(TableDefinition::<u64, &[u8]>::new(&name))
                .map_err(err)?;
            let last = stream.last().map_err(err)?.map(|(seq, _)| seq.value());
            let mut counters = txn.open_table(STREAM_SEQUENCES).map_err(err)?;
            let counted = counters
                .get(def.id.as_str())
                .map_err(err)?
                .map(|v| v.value());
            // The counter outlives trimming: numbering never restarts.
            record.sequence = last.max(counted).map_or(1, |seq| seq + 1);
            counters
                .insert(def.id.as_str(), record.sequence)
                .map_err(err)?;
            stream
                .insert(record.sequence, record.to_bytes().as_slice())
                .map_err(err)?;
        }
        written.push(Written { old, new });
    }
    Ok(Ok(written))
}

fn update_indexes(
    txn: &WriteTransaction,
    def: &TableDef,
    old: Option<&Item>,
    new: Option<&Item>,
) -> Result<(), EngineError> {
    for index in def.global_indexes.iter().chain(&def.local_indexes) {
        let name = index_table(def, &index.name);
        let mut table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .map_err(EngineError::from_display)?;
        let old_entry = old.and_then(|item| def.index_entry(index, item));
        let new_entry = new.and_then(|item| def.index_entry(index, item));
        if let Some((key, _)) = &old_entry
            && new_entry.as_ref().is_none_or(|(k, _)| k != key)
        {
            table
                .remove(key.as_slice())
                .map_err(EngineError::from_display)?;
        }
        if let Some((key, projected)) = new_entry {
            table
                .insert(key.as_slice(), encode_item(&projected).as_slice())
                .map_err(EngineError::from_display)?;
        }
    }
    Ok(())
}

fn apply_ddl(txn: &WriteTransaction, ddl: Ddl, defs: &mut Catalog) -> Result<(), EngineError> {
    match ddl {
        Ddl::Create(def) => {
            let mut catalog = txn.open_table(CATALOG).map_err(err)?;
            let json = serde_json::to_vec(&def).map_err(err)?;
            catalog
                .insert(def.name.as_str(), json.as_slice())
                .map_err(err)?;
            drop(catalog);
            txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&items_table(&def)))
                .map_err(err)?;
            for index in def.global_indexes.iter().chain(&def.local_indexes) {
                txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&index_table(
                    &def,
                    &index.name,
                )))
                .map_err(err)?;
            }
            defs.insert(def.name.clone(), Arc::new(def));
            Ok(())
        }
        Ddl::Update(def) => {
            let mut catalog = txn.open_table(CATALOG).map_err(err)?;
            let previous: TableDef = match catalog.get(def.name.as_str()).map_err(err)? {
                Some(bytes) => serde_json::from_slice(bytes.value()).map_err(err)?,
                None => {
                    return Err(EngineError(format!(
                        "table {} is not in the catalog",
                        def.name
                    )));
                }
            };
            let json = serde_json::to_vec(&def).map_err(err)?;
            catalog
                .insert(def.name.as_str(), json.as_slice())
                .map_err(err)?;
            drop(catalog);
            // An index whose key or projection changed is dropped and built again.
            let kept = |index: &IndexDef| {
                def.global_indexes
                    .iter()
                    .chain(&def.local_indexes)
                    .any(|i| i.same_entries(index))
            };
            let existed = |index: &IndexDef| {
                previous
                    .global_indexes
                    .iter()
                    .chain(&previous.local_indexes)
                    .any(|i| i.same_entries(index))
            };
            for index in previous
                .global_indexes
                .iter()
                .chain(&previous.local_indexes)
            {
                if !kept(index) {
                    txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&index_table(
                        &previous,
                        &index.name,
                    )))
                    .map_err(err)?;
                }
            }
            // New indexes are backfilled from the items in the same transaction.
            let items = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&items_table(&def)))
                .map_err(err)?;
            for index in def.global_indexes.iter().chain(&def.local_indexes) {
                if existed(index) {
                    continue;
                }
                let mut table = txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&index_table(
                        &def,
                        &index.name,
                    )))
                    .map_err(err)?;
                for entry in items.iter().map_err(err)? {
                    let (_, value) = entry.map_err(err)?;
                    let item = decode_item(value.value())?;
                    if let Some((key, projected)) = def.index_entry(index, &item) {
                        table
                            .insert(key.as_slice(), encode_item(&projected).as_slice())
                            .map_err(err)?;
                    }
                }
            }
            defs.insert(def.name.clone(), Arc::new(def));
            Ok(())
        }
        Ddl::Trim(def, before) => {
            let name = stream_table(&def);
            let mut stream = txn
                .open_table(TableDefinition::<u64, &[u8]>::new(&name))
                .map_err(err)?;
            let mut old = Vec::new();
            for entry in stream.iter().map_err(err)? {
                let (seq, value) = entry.map_err(err)?;
                let record = StreamRecord::from_bytes(value.value()).map_err(EngineError)?;
                if record.created >= before {
                    break;
                }
                old.push(seq.value());
            }
            for seq in old {
                stream.remove(seq).map_err(err)?;
            }
            Ok(())
        }
        Ddl::Delete(def) => {
            let mut catalog = txn.open_table(CATALOG).map_err(err)?;
            catalog.remove(def.name.as_str()).map_err(err)?;
            drop(catalog);
            txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&items_table(&def)))
                .map_err(err)?;
            txn.delete_table(TableDefinition::<u64, &[u8]>::new(&stream_table(&def)))
                .map_err(err)?;
            txn.open_table(STREAM_SEQUENCES)
                .map_err(err)?
                .remove(def.id.as_str())
                .map_err(err)?;
            for index in def.global_indexes.iter().chain(&def.local_indexes) {
                txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&index_table(
                    &def,
                    &index.name,
                )))
                .map_err(err)?;
            }
            defs.remove(&def.name);
            Ok(())
        }
    }
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl TableEngine for Embedded {
    fn catalog(&self) -> BoxFuture<'_, Result<Vec<TableDef>, EngineError>> {
        self.read(|db| {
            let txn = db.begin_read().map_err(err)?;
            let catalog = txn.open_table(CATALOG).map_err(err)?;
            let mut defs = Vec::new();
            for entry in catalog.iter().map_err(err)? {
                let (_, value) = entry.map_err(err)?;
                defs.push(serde_json::from_slice(value.value()).map_err(err)?);
            }
            Ok(defs)
        })
    }

    fn create_table(&self, def: TableDef) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let rx = self.submit(|tx| Job::Ddl(Box::new(Ddl::Create(def)), tx))?;
            rx.await.map_err(EngineError::from_display)?
        })
    }

    fn update_table(&self, def: TableDef) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let rx = self.submit(|tx| Job::Ddl(Box::new(Ddl::Update(def)), tx))?;
            rx.await.map_err(EngineError::from_display)?
        })
    }

    fn delete_table(&self, def: Arc<TableDef>) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let rx = self.submit(|tx| Job::Ddl(Box::new(Ddl::Delete(def)), tx))?;
            rx.await.map_err(EngineError::from_display)?
        })
    }

    fn get(
        &self,
        table: Arc<TableDef>,
        key: Vec<u8>,
    ) -> BoxFuture<'_, Result<Option<Item>, EngineError>> {
        self.read_inline(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let name = items_table(&table);
            let items = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .map_err(err)?;
            match items.get(key.as_slice()).map_err(err)? {
                Some(bytes) => Ok(Some(decode_item(bytes.value())?)),
                None => Ok(None),
            }
        })
    }

    fn get_many(
        &self,
        keys: Vec<(Arc<TableDef>, Vec<u8>)>,
    ) -> BoxFuture<'_, Result<Vec<Option<Item>>, EngineError>> {
        self.read_inline(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let mut out = Vec::with_capacity(keys.len());
            for (table, key) in keys {
                let name = items_table(&table);
                let items = txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                    .map_err(err)?;
                out.push(match items.get(key.as_slice()).map_err(err)? {
                    Some(bytes) => Some(decode_item(bytes.value())?),
                    None => None,
                });
            }
            Ok(out)
        })
    }

    fn range(&self, read: RangeRead) -> BoxFuture<'_, Result<Page, EngineError>> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let name = match &read.index {
                Some(index) => index_table(&read.table, index),
                None => items_table(&read.table),
            };
            let table = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .map_err(err)?;
            let range = table
                .range::<&[u8]>((bound_ref(&read.start), bound_ref(&read.end)))
                .map_err(err)?;
            let mut iter: Box<dyn Iterator<Item = _>> = if read.forward {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            let mut page = Page::default();
            let mut bytes = 0;
            loop {
                if read.limit.is_some_and(|limit| page.items.len() >= limit)
                    || bytes >= read.max_bytes
                {
                    page.truncated = iter.next().is_some();
                    // DynamoDB reports a LastEvaluatedKey whenever it stops at the limit.
                    page.truncated |= read.limit.is_some_and(|limit| page.items.len() >= limit);
                    break;
                }
                let Some(entry) = iter.next() else { break };
                let (_, value) = entry.map_err(err)?;
                let item = decode_item(value.value())?;
                if let Some((segment, total)) = read.segment
                    && read.table.segment_of(&item, total) != segment
                {
                    continue;
                }
                bytes += item_size(&item);
                page.items.push(item);
            }
            Ok(page)
        })
    }

    fn write(&self, writes: Vec<ItemWrite>) -> BoxFuture<'_, Result<Vec<Written>, WriteFailure>> {
        let trace = nimbus_core::trace::current().map(|cx| cx.traceparent());
        Box::pin(async move {
            let rx = self
                .submit(|tx| Job::Write((writes, trace), tx))
                .map_err(WriteFailure::Storage)?;
            rx.await
                .map_err(|e| WriteFailure::Storage(EngineError::from_display(e)))?
        })
    }

    fn stream_records(
        &self,
        table: Arc<TableDef>,
        label: String,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<StreamRecord>, EngineError>> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let name = stream_table(&table);
            let stream = match txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)) {
                Ok(stream) => stream,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(err(e)),
            };
            let start = after.map_or(0, |a| a.saturating_add(1));
            let mut out = Vec::new();
            let mut bytes = 0;
            // A table's streams follow one another, each a run of the numbering: a
            // record of a later stream (or of another after this one's) ends the read,
            // so that reading a disabled stream does not decode the newer one's records.
            let created = crate::schema::label_created_ms(&label);
            for entry in stream.range(start..).map_err(err)? {
                if out.len() >= limit || bytes > max_bytes {
                    break;
                }
                let (_, value) = entry.map_err(err)?;
                let record = StreamRecord::from_bytes(value.value()).map_err(EngineError)?;
                if record.stream_label == label {
                    bytes += record.size_bytes;
                    out.push(record);
                } else if !out.is_empty()
                    || created.is_some_and(|ms| {
                        crate::schema::label_created_ms(&record.stream_label)
                            .is_some_and(|other| other > ms)
                    })
                {
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
        self.read_inline(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let counted = match txn.open_table(STREAM_SEQUENCES) {
                Ok(counters) => counters
                    .get(table.id.as_str())
                    .map_err(err)?
                    .map_or(0, |v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(err(e)),
            };
            let newest =
                match txn.open_table(TableDefinition::<u64, &[u8]>::new(&stream_table(&table))) {
                    Ok(stream) => stream
                        .last()
                        .map_err(err)?
                        .map_or(0, |(seq, _)| seq.value()),
                    Err(redb::TableError::TableDoesNotExist(_)) => 0,
                    Err(e) => return Err(err(e)),
                };
            Ok(counted.max(newest))
        })
    }

    fn trim_streams(
        &self,
        table: Arc<TableDef>,
        before: f64,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            // Most sweeps find nothing to trim: look first, so that they cost no commit.
            let check = Arc::clone(&table);
            let oldest = self
                .read(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let name = stream_table(&check);
                    let stream = match txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)) {
                        Ok(stream) => stream,
                        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                        Err(e) => return Err(err(e)),
                    };
                    match stream.first().map_err(err)? {
                        Some((_, value)) => StreamRecord::from_bytes(value.value())
                            .map(|r| Some(r.created))
                            .map_err(EngineError),
                        None => Ok(None),
                    }
                })
                .await?;
            if oldest.is_none_or(|created| created >= before) {
                return Ok(());
            }
            let rx = self.submit(|tx| Job::Ddl(Box::new(Ddl::Trim(table, before)), tx))?;
            rx.await.map_err(EngineError::from_display)?
        })
    }

    fn stats(&self, table: Arc<TableDef>) -> BoxFuture<'_, Result<TableStats, EngineError>> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let name = items_table(&table);
            let items = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .map_err(err)?;
            let mut stats = TableStats {
                item_count: items.len().map_err(err)?,
                size_bytes: 0,
            };
            for entry in items.iter().map_err(err)? {
                let (_, value) = entry.map_err(err)?;
                stats.size_bytes += item_size(&decode_item(value.value())?) as u64;
            }
            Ok(stats)
        })
    }
}
