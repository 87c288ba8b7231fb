//! Tables declared by an app.

use serde::Serialize;

/// A DynamoDB scalar type usable in a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScalarType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

impl ScalarType {
    /// DynamoDB's one-letter name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalarType::S => "S",
            ScalarType::N => "N",
            ScalarType::B => "B",
        }
    }
}

/// An attribute that is part of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyAttribute {
    /// The attribute's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ScalarType,
}

/// Which attributes a secondary index copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// Every attribute.
    All,
    /// The table's and the index's keys only.
    KeysOnly,
    /// The keys and these attributes.
    Include(Vec<String>),
}

/// A global or local secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexSpec {
    /// The index name, unique within its table.
    pub name: String,
    /// The index's partition key (for a local index, the table's).
    pub partition_key: KeyAttribute,
    /// The index's sort key.
    pub sort_key: Option<KeyAttribute>,
    /// The attributes the index copies.
    pub projection: Projection,
}

/// What a table's change stream records for each write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamView {
    /// The key attributes of the changed item.
    KeysOnly,
    /// The item as it is after the change.
    NewImage,
    /// The item as it was before the change.
    OldImage,
    /// Both.
    NewAndOldImages,
}

impl StreamView {
    /// DynamoDB's `StreamViewType` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamView::KeysOnly => "KEYS_ONLY",
            StreamView::NewImage => "NEW_IMAGE",
            StreamView::OldImage => "OLD_IMAGE",
            StreamView::NewAndOldImages => "NEW_AND_OLD_IMAGES",
        }
    }
}

/// A table the app declares; `nimbus up` creates it when missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    /// The table name (DynamoDB's rules).
    pub name: String,
    /// The partition (hash) key.
    pub partition_key: KeyAttribute,
    /// The sort (range) key, if the primary key is composite.
    pub sort_key: Option<KeyAttribute>,
    /// Global secondary indexes.
    pub global_indexes: Vec<IndexSpec>,
    /// Local secondary indexes (they share the table's partition key).
    pub local_indexes: Vec<IndexSpec>,
    /// The attribute holding an item's expiry time in epoch seconds, if TTL is on.
    pub ttl_attribute: Option<String>,
    /// The change stream, if on.
    pub stream: Option<StreamView>,
}
