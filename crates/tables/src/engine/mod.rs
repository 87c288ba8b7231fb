//! The storage beneath the API: a [`TableEngine`] keeps the catalog and the items of every
//! table with their secondary indexes, applies groups of item writes atomically and
//! durably, and reads keys and key ranges. Expressions, validation and the wire format
//! live above it, in [`crate::api`], so every engine behaves the same.

mod embedded;
mod postgres;
mod stream;

use std::{future::Future, ops::Bound, pin::Pin, sync::Arc};

pub use embedded::Embedded;
pub use postgres::Postgres;
pub use stream::{RETENTION_SECONDS, StreamEvent, StreamRecord};

use crate::{error::ApiError, schema::TableDef, value::Item};

/// A boxed future, so that engines can be used as `dyn TableEngine`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failure of the storage itself (I/O, corruption); answered as an internal error.
#[derive(Debug, thiserror::Error)]
#[error("table storage failed: {0}")]
pub struct EngineError(pub String);

impl EngineError {
    /// Wraps any error.
    pub fn from_display(e: impl std::fmt::Display) -> EngineError {
        EngineError(e.to_string())
    }
}

/// What a write does to its item, decided from the item's current state.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteAction {
    /// Store this item (it carries the key).
    Put(Item),
    /// Delete the item.
    Delete,
    /// Delete the item as DynamoDB's TTL service does: its stream record names the
    /// service as the one who deleted it.
    Expire,
    /// Leave it as it is (a condition check).
    Keep,
}

/// Decides a write from the current item (`None` when absent), inside the engine's write
/// transaction, so that conditions and updates see exactly the state they change.
pub type Decide = Box<dyn FnOnce(Option<&Item>) -> Result<WriteAction, ApiError> + Send>;

/// One item write of a group.
pub struct ItemWrite {
    /// The table.
    pub table: Arc<TableDef>,
    /// The item's encoded primary key.
    pub key: Vec<u8>,
    /// What to do, given the current item.
    pub decide: Decide,
}

/// A write whose decision let it through.
pub(crate) struct Decided {
    pub(crate) table: Arc<TableDef>,
    pub(crate) key: Vec<u8>,
    pub(crate) old: Option<Item>,
    pub(crate) action: WriteAction,
}

/// Takes every write's decision against its current item, every engine the same way:
/// all go through, or none does and each gets its refusal (`None` for those that would
/// have passed).
pub(crate) fn decide_all(
    writes: impl IntoIterator<Item = (ItemWrite, Option<Item>)>,
) -> Result<Vec<Decided>, Vec<Option<ApiError>>> {
    let mut decided = Vec::new();
    let mut refusals = Vec::new();
    let mut refused = false;
    for (write, old) in writes {
        match (write.decide)(old.as_ref()) {
            Ok(action) => {
                refusals.push(None);
                decided.push(Decided {
                    table: write.table,
                    key: write.key,
                    old,
                    action,
                });
            }
            Err(e) => {
                refused = true;
                refusals.push(Some(e));
            }
        }
    }
    if refused { Err(refusals) } else { Ok(decided) }
}

/// The item before and after a write that went through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// Before.
    pub old: Option<Item>,
    /// After.
    pub new: Option<Item>,
}

/// Why a group of writes was not applied.
#[derive(Debug)]
pub enum WriteFailure {
    /// One or more decisions refused; nothing was written. One entry per write, `None`
    /// for the writes that would have gone through.
    Rejected(Vec<Option<ApiError>>),
    /// The storage failed; nothing was written.
    Storage(EngineError),
}

/// A read of a key range of a table or index.
#[derive(Debug, Clone)]
pub struct RangeRead {
    /// The table.
    pub table: Arc<TableDef>,
    /// The index, or `None` for the table itself.
    pub index: Option<String>,
    /// Lower bound of encoded keys.
    pub start: Bound<Vec<u8>>,
    /// Upper bound of encoded keys.
    pub end: Bound<Vec<u8>>,
    /// Ascending (`true`) or descending.
    pub forward: bool,
    /// Most items to read.
    pub limit: Option<usize>,
    /// Stop once this many bytes of items have been read (DynamoDB's 1 MB page).
    pub max_bytes: usize,
    /// For a parallel scan: `(segment, total)`; only items whose partition key hashes to
    /// `segment` are read ([`TableDef::segment_of`]).
    pub segment: Option<(u32, u32)>,
}

/// Items read from a range, in key order.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The items (as the index projects them, for an index).
    pub items: Vec<Item>,
    /// Whether reading stopped at the limit or the byte budget rather than the range end.
    pub truncated: bool,
}

/// A table's item count and size in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Items.
    pub item_count: u64,
    /// Bytes, as DynamoDB counts item sizes.
    pub size_bytes: u64,
}

/// Storage for tables. Every method is atomic; writes are durable when they return.
pub trait TableEngine: Send + Sync + 'static {
    /// Every table definition, at startup.
    fn catalog(&self) -> BoxFuture<'_, Result<Vec<TableDef>, EngineError>>;

    /// Stores a new table's definition and creates its storage.
    fn create_table(&self, def: TableDef) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Replaces a table's definition; new indexes are built from the items, removed ones
    /// dropped.
    fn update_table(&self, def: TableDef) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Deletes a table with its items and indexes.
    fn delete_table(&self, def: Arc<TableDef>) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Reads one item by encoded primary key.
    fn get(
        &self,
        table: Arc<TableDef>,
        key: Vec<u8>,
    ) -> BoxFuture<'_, Result<Option<Item>, EngineError>>;

    /// Reads several items by encoded primary key, all from one snapshot.
    fn get_many(
        &self,
        keys: Vec<(Arc<TableDef>, Vec<u8>)>,
    ) -> BoxFuture<'_, Result<Vec<Option<Item>>, EngineError>>;

    /// Reads a key range.
    fn range(&self, read: RangeRead) -> BoxFuture<'_, Result<Page, EngineError>>;

    /// Applies a group of item writes atomically: each write's decision is taken against
    /// the current state; if any refuses, nothing is written.
    fn write(&self, writes: Vec<ItemWrite>) -> BoxFuture<'_, Result<Vec<Written>, WriteFailure>>;

    /// Records of a table's stream `label` with sequence numbers above `after`, in
    /// order, at most `limit`, ending with the record whose size
    /// ([`StreamRecord::size_bytes`]) takes their sum past `max_bytes` (so at least one):
    /// a reader's page is bounded by bytes as well as records.
    fn stream_records(
        &self,
        table: Arc<TableDef>,
        label: String,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<StreamRecord>, EngineError>>;

    /// The last sequence number given to a record of the table's streams (0 for none):
    /// the counter outlives trimming, so that a reader can tell records trimmed away
    /// from records never written.
    fn stream_last_sequence(&self, table: Arc<TableDef>)
    -> BoxFuture<'_, Result<u64, EngineError>>;

    /// Deletes a table's stream records created before `before` (epoch seconds), in
    /// every stream of the table.
    fn trim_streams(
        &self,
        table: Arc<TableDef>,
        before: f64,
    ) -> BoxFuture<'_, Result<(), EngineError>>;

    /// A table's item count and size.
    fn stats(&self, table: Arc<TableDef>) -> BoxFuture<'_, Result<TableStats, EngineError>>;

    /// Whether other nodes may change the catalog (a cluster on one database), so that a
    /// node's copy of it must be read again.
    fn shared(&self) -> bool {
        false
    }
}
