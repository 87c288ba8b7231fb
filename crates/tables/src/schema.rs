//! Table definitions: key schema, indexes, streams and TTL, as stored and as described.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::{
    key,
    value::{AttributeValue, Item},
};

/// A key attribute's scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

impl KeyType {
    /// DynamoDB's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::S => "S",
            KeyType::N => "N",
            KeyType::B => "B",
        }
    }

    /// Parses `S`, `N` or `B`.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "S" => Some(KeyType::S),
            "N" => Some(KeyType::N),
            "B" => Some(KeyType::B),
            _ => None,
        }
    }

    /// Whether `value` has this type.
    pub fn matches(self, value: &AttributeValue) -> bool {
        matches!(
            (self, value),
            (KeyType::S, AttributeValue::S(_))
                | (KeyType::N, AttributeValue::N(_))
                | (KeyType::B, AttributeValue::B(_))
        )
    }
}

/// A key attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAttr {
    /// Attribute name.
    pub name: String,
    /// Its type.
    pub ty: KeyType,
}

/// A primary or index key schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySchema {
    /// HASH key.
    pub partition: KeyAttr,
    /// RANGE key.
    pub sort: Option<KeyAttr>,
}

impl KeySchema {
    /// The key attributes, partition first.
    pub fn attrs(&self) -> impl Iterator<Item = &KeyAttr> {
        std::iter::once(&self.partition).chain(self.sort.as_ref())
    }

    /// DynamoDB's `KeySchema` JSON.
    pub fn describe(&self) -> Json {
        let mut out = vec![json!({ "AttributeName": self.partition.name, "KeyType": "HASH" })];
        if let Some(sort) = &self.sort {
            out.push(json!({ "AttributeName": sort.name, "KeyType": "RANGE" }));
        }
        Json::Array(out)
    }

    /// The key values of `item` under this schema, when it has them with the right types.
    pub fn key_of<'a>(&self, item: &'a Item) -> Option<Vec<&'a AttributeValue>> {
        self.attrs()
            .map(|attr| item.get(&attr.name).filter(|v| attr.ty.matches(v)))
            .collect()
    }

    /// The item's key as its own item.
    pub fn key_item(&self, item: &Item) -> Item {
        self.attrs()
            .filter_map(|attr| item.get(&attr.name).map(|v| (attr.name.clone(), v.clone())))
            .collect()
    }
}

/// What an index copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectionType {
    /// Every attribute.
    All,
    /// Keys only.
    KeysOnly,
    /// Keys and the listed attributes.
    Include(Vec<String>),
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Its name.
    pub name: String,
    /// Its key.
    pub key: KeySchema,
    /// What it copies.
    pub projection: ProjectionType,
    /// Provisioned throughput as given (GSIs), echoed back.
    pub throughput: Option<(u64, u64)>,
}

impl IndexDef {
    /// Whether `other` holds the same entries: same name, key and projection (their
    /// throughput may differ). An index changed otherwise must be built again.
    #[must_use]
    pub fn same_entries(&self, other: &IndexDef) -> bool {
        self.name == other.name && self.key == other.key && self.projection == other.projection
    }
}

/// Stream settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDef {
    /// `KEYS_ONLY`, `NEW_IMAGE`, `OLD_IMAGE` or `NEW_AND_OLD_IMAGES`.
    pub view_type: String,
    /// The stream's label (a timestamp), part of its ARN.
    pub label: String,
    /// When the stream was turned off (epoch ms): it stays readable, DISABLED, for the
    /// 24 hours its records are kept. `None` for the table's current stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
}

/// A table as stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// Name.
    pub name: String,
    /// Unique id, fixed at creation.
    pub id: String,
    /// Primary key.
    pub key: KeySchema,
    /// Declared attribute types (keys of the table and its indexes).
    pub attribute_definitions: BTreeMap<String, KeyType>,
    /// Global secondary indexes.
    pub global_indexes: Vec<IndexDef>,
    /// Local secondary indexes.
    pub local_indexes: Vec<IndexDef>,
    /// `PROVISIONED` or `PAY_PER_REQUEST`.
    pub billing_mode: String,
    /// Provisioned (read, write) capacity as given.
    pub throughput: Option<(u64, u64)>,
    /// The stream, when enabled.
    pub stream: Option<StreamDef>,
    /// Streams turned off in the last 24 hours, oldest first: their records can still
    /// be read, as DynamoDB keeps a disabled stream readable until they expire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub old_streams: Vec<StreamDef>,
    /// The TTL attribute, when TTL is enabled.
    pub ttl_attribute: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Creation time, epoch seconds.
    pub created: f64,
    /// Whether DeleteTable is refused.
    pub deletion_protection: bool,
}

/// The region and account Nimbus reports in ARNs.
pub const REGION: &str = "us-east-1";
/// The account id Nimbus reports in ARNs.
pub const ACCOUNT: &str = "000000000000";

impl StreamDef {
    /// A label for a stream created at `ms` (epoch milliseconds): the time in ISO 8601
    /// with milliseconds and without a zone (UTC), as DynamoDB labels streams
    /// (`2024-01-01T00:00:00.000`).
    #[must_use]
    pub fn label_at(ms: u64) -> String {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        let mut label = humantime::format_rfc3339_millis(time).to_string();
        label.pop(); // the `Z`
        label
    }

    /// When the stream was created (epoch milliseconds), read from its label.
    #[must_use]
    pub fn created_ms(&self) -> Option<u64> {
        label_created_ms(&self.label)
    }
}

/// When a stream labelled `label` was created (epoch milliseconds): its label is an ISO
/// 8601 time, or the number of milliseconds older catalogs used.
#[must_use]
pub fn label_created_ms(label: &str) -> Option<u64> {
    if let Ok(ms) = label.parse::<u64>() {
        return Some(ms);
    }
    let time = humantime::parse_rfc3339(&format!("{label}Z")).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

impl TableDef {
    /// Turns the current stream off at `now_ms` (it joins [`TableDef::old_streams`]),
    /// and forgets old streams whose records have all expired.
    pub fn end_stream(&mut self, now_ms: u64) {
        if let Some(mut stream) = self.stream.take() {
            stream.ended_ms = Some(now_ms);
            self.old_streams.push(stream);
        }
        let retention_ms = (crate::engine::RETENTION_SECONDS * 1000.0) as u64;
        self.old_streams.retain(|s| {
            s.ended_ms
                .is_some_and(|ended| now_ms.saturating_sub(ended) < retention_ms)
        });
    }

    /// The table's stream labelled `label`: the current one, or one turned off in the
    /// last 24 hours.
    pub fn stream_by_label(&self, label: &str, now_ms: u64) -> Option<&StreamDef> {
        let retention_ms = (crate::engine::RETENTION_SECONDS * 1000.0) as u64;
        self.stream
            .iter()
            .chain(self.old_streams.iter().filter(|s| {
                s.ended_ms
                    .is_some_and(|ended| now_ms.saturating_sub(ended) < retention_ms)
            }))
            .find(|s| s.label == label)
    }

    /// The table's ARN.
    pub fn arn(&self) -> String {
        format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", self.name)
    }

    /// An index by name.
    pub fn index(&self, name: &str) -> Option<(&IndexDef, bool)> {
        self.global_indexes
            .iter()
            .map(|i| (i, true))
            .chain(self.local_indexes.iter().map(|i| (i, false)))
            .find(|(i, _)| i.name == name)
    }

    /// The parallel-scan segment of `item` among `total`: a stable hash of its
    /// partition key, so that every item of a partition is in one segment.
    pub fn segment_of(&self, item: &Item, total: u32) -> u32 {
        let hash = item
            .get(&self.key.partition.name)
            .map_or(0, |v| crc32fast::hash(&key::encode(&[v])));
        hash % total.max(1)
    }

    /// The encoded primary key of `item`, when it has its key attributes.
    pub fn encoded_key(&self, item: &Item) -> Option<Vec<u8>> {
        self.key.key_of(item).map(|values| key::encode(&values))
    }

    /// The encoded key of `item` in `index` (index key, then table key), and the item as
    /// the index projects it; `None` when the item lacks the index's key attributes (a
    /// sparse index).
    pub fn index_entry(&self, index: &IndexDef, item: &Item) -> Option<(Vec<u8>, Item)> {
        let index_values = index.key.key_of(item)?;
        let table_values = self.key.key_of(item)?;
        let mut encoded = key::encode(&index_values);
        for v in table_values {
            key::encode_into(&mut encoded, v);
        }
        let projected = match &index.projection {
            ProjectionType::All => item.clone(),
            ProjectionType::KeysOnly | ProjectionType::Include(_) => {
                let extra: &[String] = match &index.projection {
                    ProjectionType::Include(attrs) => attrs,
                    _ => &[],
                };
                item.iter()
                    .filter(|(name, _)| {
                        self.key.attrs().any(|a| &a.name == *name)
                            || index.key.attrs().any(|a| &a.name == *name)
                            || extra.contains(name)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
        };
        Some((encoded, projected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableDef {
        TableDef {
            name: "T".into(),
            id: "id".into(),
            key: KeySchema {
                partition: KeyAttr {
                    name: "pk".into(),
                    ty: KeyType::S,
                },
                sort: Some(KeyAttr {
                    name: "sk".into(),
                    ty: KeyType::N,
                }),
            },
            attribute_definitions: BTreeMap::new(),
            global_indexes: vec![],
            local_indexes: vec![],
            billing_mode: "PAY_PER_REQUEST".into(),
            throughput: None,
            stream: None,
            old_streams: Vec::new(),
            ttl_attribute: None,
            tags: BTreeMap::new(),
            created: 0.0,
            deletion_protection: false,
        }
    }

    #[test]
    fn sparse_index_and_projection() {
        let t = table();
        let index = IndexDef {
            name: "g".into(),
            key: KeySchema {
                partition: KeyAttr {
                    name: "status".into(),
                    ty: KeyType::S,
                },
                sort: None,
            },
            projection: ProjectionType::Include(vec!["total".into()]),
            throughput: None,
        };
        let mut item: Item = [
            ("pk".to_owned(), AttributeValue::S("a".into())),
            ("sk".to_owned(), AttributeValue::N("1".parse().unwrap())),
            ("total".to_owned(), AttributeValue::N("5".parse().unwrap())),
            ("other".to_owned(), AttributeValue::Bool(true)),
        ]
        .into();
        assert!(
            t.index_entry(&index, &item).is_none(),
            "no status: not indexed"
        );
        item.insert("status".into(), AttributeValue::S("open".into()));
        let (_, projected) = t.index_entry(&index, &item).unwrap();
        let names: Vec<&str> = projected.keys().map(String::as_str).collect();
        assert_eq!(names, ["pk", "sk", "status", "total"]);
        item.insert("status".into(), AttributeValue::N("1".parse().unwrap()));
        assert!(
            t.index_entry(&index, &item).is_none(),
            "wrong type: not indexed"
        );
    }

    #[test]
    fn stream_labels_are_iso_times_and_older_numeric_ones_still_read() {
        let label = StreamDef::label_at(1_700_000_000_123);
        assert_eq!(label, "2023-11-14T22:13:20.123");
        let stream = |label: &str| StreamDef {
            view_type: "KEYS_ONLY".into(),
            label: label.into(),
            ended_ms: None,
        };
        assert_eq!(stream(&label).created_ms(), Some(1_700_000_000_123));
        assert_eq!(
            stream("1700000000123").created_ms(),
            Some(1_700_000_000_123)
        );
        assert_eq!(stream("garbage").created_ms(), None);
    }
}
