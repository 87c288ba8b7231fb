//! DynamoDB's JSON 1.0 API over a [`TableEngine`]: one function per operation, each
//! validating its request as DynamoDB does, then reading or writing through the engine.
//! The DynamoDB Streams API, which reads the tables' change records, lives beside it.

mod batch;
mod capacity;
mod catalog_ops;
mod exprs;
mod items;
mod keys;
mod read;
mod request;
mod streams;
mod transact;
mod ttl;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use serde_json::Value as Json;
use tokio::sync::watch;

use crate::{
    engine::{EngineError, ItemWrite, TableEngine, WriteFailure, Written},
    error::{ApiError, ErrorKind},
    schema::TableDef,
};

pub use catalog_ops::table_def_from_spec;
pub use streams::{STREAMS_TARGET_PREFIX, StreamChange, StreamInfo};

/// The `X-Amz-Target` prefix of DynamoDB operations.
pub const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// The table store's API: the engine and the catalog of table definitions.
pub struct Tables {
    engine: Arc<dyn TableEngine>,
    catalog: RwLock<HashMap<String, Arc<TableDef>>>,
    /// Serialises table-level changes, so that a check and the change it guards are one step.
    ddl: tokio::sync::Mutex<()>,
    /// Recent transaction tokens.
    tokens: transact::Tokens,
    /// When the catalog was last read from a shared engine (ms since the Unix epoch).
    refreshed: std::sync::atomic::AtomicU64,
    /// When a request naming an unknown table last had the catalog read again.
    refreshed_on_miss: std::sync::atomic::AtomicU64,
    /// Per table: a counter bumped after each committed write group that may have added
    /// stream records, so that stream triggers wake at once ([`Tables::stream_commits`]).
    commits: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// The tables given a `table` label in the metrics so far.
    labels: crate::op_metrics::TableLabels,
}

impl Tables {
    /// Loads the catalog from `engine`.
    ///
    /// # Errors
    /// When the engine cannot read its catalog.
    pub async fn open(engine: Arc<dyn TableEngine>) -> Result<Tables, EngineError> {
        let defs = engine.catalog().await?;
        let catalog = defs
            .into_iter()
            .map(|def| (def.name.clone(), Arc::new(def)))
            .collect();
        Ok(Tables {
            engine,
            catalog: RwLock::new(catalog),
            ddl: tokio::sync::Mutex::new(()),
            tokens: transact::Tokens::default(),
            refreshed: std::sync::atomic::AtomicU64::new(now_millis()),
            refreshed_on_miss: std::sync::atomic::AtomicU64::new(0),
            commits: Mutex::new(HashMap::new()),
            labels: crate::op_metrics::TableLabels::default(),
        })
    }

    /// Applies a group of item writes through the engine and, once it has committed,
    /// tells those watching the streams of the tables it wrote
    /// ([`Tables::stream_commits`]). Every item write of the API goes through here, so
    /// both engines notify alike.
    pub(crate) async fn write(&self, writes: Vec<ItemWrite>) -> Result<Vec<Written>, WriteFailure> {
        let streamed = streamed(&writes);
        let result = self.engine.write(writes).await;
        if result.is_ok() {
            self.notify_commits(streamed);
        }
        result
    }

    /// [`Tables::write`] on a task of its own: the writes run to their end, and `ended`
    /// learns how, even when the caller stops waiting (a client that disconnects), as a
    /// transaction's idempotency token needs.
    pub(crate) async fn write_detached(
        &self,
        writes: Vec<ItemWrite>,
        ended: impl FnOnce(&Result<Vec<Written>, WriteFailure>) + Send + 'static,
    ) -> Result<Vec<Written>, WriteFailure> {
        let streamed = streamed(&writes);
        let engine = Arc::clone(&self.engine);
        // In the caller's trace, so that the engine's stream records carry it.
        let task = nimbus_core::trace::Span::none().in_scope(async move {
            let result = engine.write(writes).await;
            ended(&result);
            result
        });
        let result = match tokio::spawn(task).await {
            Ok(result) => result,
            Err(e) => Err(WriteFailure::Storage(EngineError::from_display(e))),
        };
        if result.is_ok() {
            self.notify_commits(streamed);
        }
        result
    }

    /// Tells those watching the streams of tables `streamed` that a write committed.
    fn notify_commits(&self, mut streamed: Vec<String>) {
        if streamed.is_empty() {
            return;
        }
        streamed.sort();
        streamed.dedup();
        let commits = self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for name in &streamed {
            if let Some(tx) = commits.get(name) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// A receiver that changes after every committed write group that may have added
    /// records to table `name`'s stream (a write that changed nothing may also notify).
    /// This is the fast path of stream triggers: they read the stream when it changes
    /// instead of polling it. Writes made by another node (a cluster on PostgreSQL) do
    /// not notify; readers poll for those.
    pub fn stream_commits(&self, name: &str) -> watch::Receiver<u64> {
        self.commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(name.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Runs the operation named by `target` (`DynamoDB_20120810.PutItem`) on a JSON body.
    ///
    /// # Errors
    /// The [`ApiError`] to answer, in DynamoDB's shape.
    pub async fn handle(&self, target: &str, body: &[u8]) -> Result<Json, ApiError> {
        let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
            return Err(unknown_operation());
        };
        let started = std::time::Instant::now();
        let body = parse_body(body);
        let table = body.as_ref().ok().and_then(|b| self.metrics_table(b));
        let result = match &body {
            Ok(body) => self.run(operation, body).await,
            Err(e) => Err(e.clone()),
        };
        let table = table.or_else(|| body.as_ref().ok().and_then(|b| self.metrics_table(b)));
        crate::op_metrics::record(target, table, &result, started.elapsed());
        result
    }

    /// Runs one operation on its parsed body. On an engine other nodes share, the
    /// catalog is read again every [`CATALOG_REFRESH_MS`] and when a request names a table
    /// or index this node does not know (another node may have just made it); the
    /// request then runs once more.
    async fn run(&self, operation: &str, body: &Json) -> Result<Json, ApiError> {
        if !self.engine.shared() {
            return self.run_once(operation, body).await;
        }
        self.refresh_if_stale().await;
        match self.run_once(operation, body).await {
            Err(e) if unknown_to_this_node(&e) && self.refresh_on_miss() => {
                // Not while this node changes a table (its change sets the catalog), nor
                // when the catalog cannot be read: the miss stands as it was.
                let refreshed = match self.ddl.try_lock() {
                    Ok(_ddl) => self.refresh().await.map_err(|failure| {
                        tracing::warn!(error = %failure, "cannot read the table catalog");
                    }),
                    Err(_) => Err(()),
                };
                match refreshed {
                    Ok(()) => self.run_once(operation, body).await,
                    Err(()) => Err(e),
                }
            }
            other => other,
        }
    }

    /// On an engine other nodes share, reads the catalog again if the last read is older
    /// than [`CATALOG_REFRESH_MS`] (one caller at a time does; the rest go on).
    pub(crate) async fn refresh_if_stale(&self) {
        if !self.engine.shared() || !claim_interval(&self.refreshed, CATALOG_REFRESH_MS) {
            return;
        }
        // Skipped while this node changes a table: the change sets its own result.
        if let Ok(_ddl) = self.ddl.try_lock()
            && let Err(e) = self.refresh().await
        {
            tracing::warn!(error = %e, "cannot read the table catalog");
        }
    }

    /// Whether a request that named an unknown table or index may read the catalog again
    /// now: at most every [`MISS_REFRESH_MS`], so that clients asking for a table that
    /// does not exist (a waiter, a misspelt name) do not read the catalog at every request.
    fn refresh_on_miss(&self) -> bool {
        claim_interval(&self.refreshed_on_miss, MISS_REFRESH_MS)
    }

    /// Reads the catalog from the engine again.
    async fn refresh(&self) -> Result<(), EngineError> {
        let defs = self.engine.catalog().await?;
        let catalog = defs
            .into_iter()
            .map(|def| (def.name.clone(), Arc::new(def)))
            .collect();
        *self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = catalog;
        self.refreshed
            .store(now_millis(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Takes the lock of table changes; on a shared engine the catalog is then read
    /// again, so that the change starts from what other nodes have done.
    async fn lock_ddl(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ApiError> {
        let guard = self.ddl.lock().await;
        if self.engine.shared() {
            self.refresh().await.map_err(internal)?;
        }
        Ok(guard)
    }

    async fn run_once(&self, operation: &str, body: &Json) -> Result<Json, ApiError> {
        let req = request::Req::parse(body)?;
        match operation {
            "CreateTable" => catalog_ops::create_table(self, &req).await,
            "DescribeTable" => catalog_ops::describe_table(self, &req).await,
            "ListTables" => catalog_ops::list_tables(self, &req),
            "DeleteTable" => catalog_ops::delete_table(self, &req).await,
            "UpdateTable" => catalog_ops::update_table(self, &req).await,
            "UpdateTimeToLive" => catalog_ops::update_time_to_live(self, &req).await,
            "DescribeTimeToLive" => catalog_ops::describe_time_to_live(self, &req),
            "TagResource" => catalog_ops::tag_resource(self, &req).await,
            "UntagResource" => catalog_ops::untag_resource(self, &req).await,
            "ListTagsOfResource" => catalog_ops::list_tags_of_resource(self, &req),
            "DescribeLimits" => Ok(catalog_ops::describe_limits()),
            "DescribeEndpoints" => Ok(catalog_ops::describe_endpoints()),
            "PutItem" => items::put_item(self, &req).await,
            "GetItem" => items::get_item(self, &req).await,
            "UpdateItem" => items::update_item(self, &req).await,
            "DeleteItem" => items::delete_item(self, &req).await,
            "Query" => read::query(self, &req).await,
            "Scan" => read::scan(self, &req).await,
            "BatchGetItem" => batch::batch_get_item(self, &req).await,
            "BatchWriteItem" => batch::batch_write_item(self, &req).await,
            "TransactWriteItems" => transact::transact_write_items(self, &req, body).await,
            "TransactGetItems" => transact::transact_get_items(self, &req).await,
            _ => Err(unknown_operation()),
        }
    }

    /// The table a request names, for its metrics' `table` label: only a table that
    /// exists (so that names made up by clients add no series), only one (a batch
    /// across tables has none), and only among the first tables labelled (tables
    /// created and deleted in a loop would otherwise add series without end).
    fn metrics_table(&self, body: &Json) -> Option<metrics::SharedString> {
        let name = crate::op_metrics::named_table(body)?;
        let def = self.table(name).ok()?;
        self.labels.label(&def.name)
    }

    /// A table's definition, by its name or ARN.
    pub(crate) fn table(&self, name: &str) -> Result<Arc<TableDef>, ApiError> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(request::table_name_of(name))
            .cloned()
            .ok_or_else(ApiError::table_not_found)
    }

    /// The names of every table, sorted.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn set_table(&self, def: TableDef) -> Arc<TableDef> {
        let def = Arc::new(def);
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(def.name.clone(), Arc::clone(&def));
        def
    }

    /// Stores a changed definition of an existing table (the engine builds and drops
    /// indexes as it differs) and makes it the one requests see.
    async fn replace_table(&self, def: TableDef) -> Result<Arc<TableDef>, ApiError> {
        self.engine
            .update_table(def.clone())
            .await
            .map_err(internal)?;
        Ok(self.set_table(def))
    }

    fn remove_table(&self, name: &str) {
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// Creates a table declared in a manifest unless one of that name exists; says
    /// whether it created it.
    ///
    /// # Errors
    /// When the engine fails.
    pub async fn ensure_table(&self, spec: &nimbus_core::TableSpec) -> Result<bool, ApiError> {
        let _ddl = self.lock_ddl().await?;
        let def = table_def_from_spec(spec);
        if let Ok(existing) = self.table(&spec.name) {
            // A table's key cannot change; say so rather than serve a table the app does
            // not expect.
            if existing.key != def.key {
                return Err(ApiError::validation(format!(
                    "table {} exists with key {}, but nimbus.toml declares {}; delete the table to recreate it",
                    spec.name,
                    describe_key(&existing.key),
                    describe_key(&def.key)
                )));
            }
            let names = |d: &TableDef| -> Vec<String> {
                let mut n: Vec<String> = d
                    .global_indexes
                    .iter()
                    .chain(&d.local_indexes)
                    .map(|i| i.name.clone())
                    .collect();
                n.sort();
                n
            };
            if names(&existing) != names(&def) {
                tracing::warn!(
                    table = %spec.name,
                    existing = ?names(&existing),
                    declared = ?names(&def),
                    "the table's indexes differ from nimbus.toml; change them with UpdateTable"
                );
            }
            // A stream or TTL the manifest declares is turned on (stream triggers read
            // the stream; without it they would never fire). One it no longer declares
            // is left on: turning it off would end the stream its readers are reading.
            let mut changed = (*existing).clone();
            let view = |d: &TableDef| d.stream.as_ref().map(|s| s.view_type.clone());
            if def.stream.is_some() && view(&existing) != view(&def) {
                changed.end_stream(now_millis());
                changed.stream.clone_from(&def.stream);
            } else if def.stream.is_none() && existing.stream.is_some() {
                tracing::warn!(
                    table = %spec.name,
                    "the table has a stream nimbus.toml does not declare; turn it off with UpdateTable"
                );
            }
            if def.ttl_attribute.is_some() && existing.ttl_attribute != def.ttl_attribute {
                changed.ttl_attribute.clone_from(&def.ttl_attribute);
            }
            if changed != *existing {
                tracing::info!(
                    table = %spec.name,
                    stream = ?view(&changed),
                    ttl_attribute = ?changed.ttl_attribute,
                    "applying the stream and TTL nimbus.toml declares to the existing table"
                );
                self.replace_table(changed).await?;
            }
            return Ok(false);
        }
        if let Err(e) = self.engine.create_table(def.clone()).await {
            // Another node starting with the same manifest made it first.
            return if self.created_elsewhere(&spec.name).await {
                Ok(false)
            } else {
                Err(internal(e))
            };
        }
        self.set_table(def);
        Ok(true)
    }

    /// After a creation failed: whether another node sharing the engine has created a
    /// table of that name (the catalog is read again to see).
    async fn created_elsewhere(&self, name: &str) -> bool {
        self.engine.shared() && self.refresh().await.is_ok() && self.table(name).is_ok()
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("tables", &self.table_names())
            .finish_non_exhaustive()
    }
}

fn describe_key(key: &crate::schema::KeySchema) -> String {
    key.attrs()
        .map(|a| format!("{} ({})", a.name, a.ty.as_str()))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// How often (ms) a node reads the catalog of an engine other nodes share.
const CATALOG_REFRESH_MS: u64 = 2_000;
/// How often (ms), at most, a request naming an unknown table has the catalog read.
const MISS_REFRESH_MS: u64 = 200;

/// Whether `interval_ms` has passed since the time in `last` (ms since the Unix epoch),
/// in which case it becomes now: one caller of many wins each interval.
fn claim_interval(last: &std::sync::atomic::AtomicU64, interval_ms: u64) -> bool {
    let now = now_millis();
    let seen = last.load(std::sync::atomic::Ordering::Relaxed);
    now.saturating_sub(seen) >= interval_ms
        && last
            .compare_exchange(
                seen,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
}

/// Now, in epoch milliseconds.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether an error says a table or index is unknown here (and may exist on a node that
/// shares the engine).
fn unknown_to_this_node(e: &ApiError) -> bool {
    e.kind == ErrorKind::ResourceNotFound
        || (e.kind == ErrorKind::Validation
            && e.message
                .starts_with("The table does not have the specified index"))
}

/// The tables with a stream that `writes` write.
fn streamed(writes: &[ItemWrite]) -> Vec<String> {
    writes
        .iter()
        .filter(|w| w.table.stream.is_some())
        .map(|w| w.table.name.clone())
        .collect()
}

/// A request body: a JSON document, `{}` when empty.
fn parse_body(body: &[u8]) -> Result<Json, ApiError> {
    if body.is_empty() {
        return Ok(Json::Object(Default::default()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorKind::Serialization, format!("Malformed JSON: {e}")))
}

fn unknown_operation() -> ApiError {
    ApiError::new(ErrorKind::UnknownOperation, "")
}

/// Logs an engine failure where it is handled and answers an internal error.
pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "table engine failed");
    ApiError::internal()
}
