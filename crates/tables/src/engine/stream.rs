//! Table change streams: every write that changes an item of a table with a stream
//! enabled appends a record, in the same commit as the write, so that the log is exact
//! and gap-free. Records are kept per stream (a table's stream label), in sequence order,
//! and trimmed after 24 hours.

use serde_json::{Value as Json, json};

use crate::{
    schema::TableDef,
    value::{Item, item_from_json, item_size, item_to_json},
};

/// How long records are kept (DynamoDB Streams' 24 hours).
pub const RETENTION_SECONDS: f64 = 24.0 * 3600.0;

/// What happened to the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// A new item.
    Insert,
    /// An existing item changed.
    Modify,
    /// An item was deleted.
    Remove,
}

impl StreamEvent {
    /// DynamoDB's `eventName`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamEvent::Insert => "INSERT",
            StreamEvent::Modify => "MODIFY",
            StreamEvent::Remove => "REMOVE",
        }
    }

    fn parse(s: &str) -> Option<StreamEvent> {
        match s {
            "INSERT" => Some(StreamEvent::Insert),
            "MODIFY" => Some(StreamEvent::Modify),
            "REMOVE" => Some(StreamEvent::Remove),
            _ => None,
        }
    }
}

/// One change on a table's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// Position in the stream; strictly increasing in commit order.
    pub sequence: u64,
    /// The stream (its label) the record belongs to.
    pub stream_label: String,
    /// What happened.
    pub event: StreamEvent,
    /// The item's primary key.
    pub keys: Item,
    /// The item after the change, when the view type records it.
    pub new_image: Option<Item>,
    /// The item before the change, when the view type records it.
    pub old_image: Option<Item>,
    /// When the change was committed, epoch seconds.
    pub created: f64,
    /// The record's size (keys and images), as DynamoDB reports `SizeBytes`.
    pub size_bytes: usize,
    /// The trace context (W3C `traceparent`) of the request that made the change, so
    /// that a stream trigger's run joins its trace; not part of DynamoDB's record.
    pub trace: Option<String>,
    /// Whether DynamoDB's TTL service made the change (an expired item's deletion), which
    /// the record's `userIdentity` says.
    pub by_ttl: bool,
}

impl StreamRecord {
    /// The record's change for a write of `def` from `old` to `new`, without its sequence
    /// number; `None` when the table has no stream or nothing changed.
    pub fn for_write(
        def: &TableDef,
        old: Option<&Item>,
        new: Option<&Item>,
        created: f64,
    ) -> Option<StreamRecord> {
        let stream = def.stream.as_ref()?;
        let event = match (old, new) {
            (None, Some(_)) => StreamEvent::Insert,
            (Some(o), Some(n)) if o != n => StreamEvent::Modify,
            (Some(_), None) => StreamEvent::Remove,
            _ => return None,
        };
        let keys = def.key.key_item(new.or(old)?);
        let (with_new, with_old) = match stream.view_type.as_str() {
            "NEW_IMAGE" => (true, false),
            "OLD_IMAGE" => (false, true),
            "NEW_AND_OLD_IMAGES" => (true, true),
            _ => (false, false),
        };
        let new_image = new.filter(|_| with_new).cloned();
        let old_image = old.filter(|_| with_old).cloned();
        let size_bytes = item_size(&keys)
            + new_image.as_ref().map_or(0, item_size)
            + old_image.as_ref().map_or(0, item_size);
        Some(StreamRecord {
            sequence: 0,
            stream_label: stream.label.clone(),
            event,
            keys,
            new_image,
            old_image,
            created,
            size_bytes,
            trace: None,
            by_ttl: false,
        })
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut j = json!({
            "seq": self.sequence,
            "label": self.stream_label,
            "event": self.event.as_str(),
            "keys": item_to_json(&self.keys),
            "created": self.created,
            "size": self.size_bytes,
        });
        if let Some(new) = &self.new_image {
            j["new"] = item_to_json(new);
        }
        if let Some(old) = &self.old_image {
            j["old"] = item_to_json(old);
        }
        if let Some(trace) = &self.trace {
            j["trace"] = Json::from(trace.as_str());
        }
        if self.by_ttl {
            j["ttl"] = Json::Bool(true);
        }
        serde_json::to_vec(&j).expect("serialising JSON values cannot fail")
    }

    /// Reads the stored form.
    ///
    /// # Errors
    /// When the bytes are not a stored record.
    pub fn from_bytes(bytes: &[u8]) -> Result<StreamRecord, String> {
        let j: Json = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let item = |key: &str| -> Result<Option<Item>, String> {
            j.get(key)
                .map(|v| item_from_json(v).map_err(|e| e.to_string()))
                .transpose()
        };
        Ok(StreamRecord {
            sequence: j["seq"].as_u64().ok_or("no sequence")?,
            stream_label: j["label"].as_str().ok_or("no label")?.to_owned(),
            event: j["event"]
                .as_str()
                .and_then(StreamEvent::parse)
                .ok_or("no event")?,
            keys: item("keys")?.ok_or("no keys")?,
            new_image: item("new")?,
            old_image: item("old")?,
            created: j["created"].as_f64().ok_or("no time")?,
            size_bytes: j["size"]
                .as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or("no size")?,
            // Records written before traces were kept have none.
            trace: j.get("trace").and_then(Json::as_str).map(str::to_owned),
            by_ttl: j.get("ttl").and_then(Json::as_bool).unwrap_or(false),
        })
    }
}

/// Now, in epoch seconds.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(trace: Option<&str>) -> StreamRecord {
        let keys = item_from_json(&json!({ "pk": { "S": "a" } })).unwrap();
        StreamRecord {
            sequence: 7,
            stream_label: "2024-01-01T00:00:00.000".to_owned(),
            event: StreamEvent::Insert,
            size_bytes: item_size(&keys),
            new_image: Some(keys.clone()),
            old_image: None,
            keys,
            created: 1_700_000_000.5,
            trace: trace.map(str::to_owned),
            by_ttl: false,
        }
    }

    #[test]
    fn the_trace_context_is_stored_with_the_record() {
        let r = record(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(StreamRecord::from_bytes(&r.to_bytes()).unwrap(), r);
        let r = record(None);
        assert_eq!(StreamRecord::from_bytes(&r.to_bytes()).unwrap(), r);
        let r = StreamRecord {
            by_ttl: true,
            ..record(None)
        };
        assert_eq!(StreamRecord::from_bytes(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn records_stored_before_traces_read_without_one() {
        let old = br#"{"seq":3,"label":"l","event":"MODIFY","keys":{"pk":{"S":"a"}},"created":1.0,"size":2}"#;
        let r = StreamRecord::from_bytes(old).unwrap();
        assert_eq!(r.sequence, 3);
        assert_eq!(r.trace, None);
        assert!(!r.by_ttl);
    }
}
