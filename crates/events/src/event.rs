//! Queued events and their compact binary encoding.
//!
//! An event is written once per enqueue and rewritten on every lease and settle, so its
//! encoding is a flat run of fixed-width integers and length-prefixed byte strings, with
//! the payload last and unprefixed: no field names and no parsing of the payload.

use std::{fmt, str::FromStr};

use crate::QueueError;

/// Identifies an event: its request id, which the function sees as `awsRequestId` on
/// every attempt and which the caller got with its `202`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(u128);

impl EventId {
    /// A fresh id: a UUID v7, whose leading bits are the time, so that new events are
    /// appended to the store's B-tree instead of dirtying a page anywhere in it.
    pub fn random() -> EventId {
        EventId(uuid::Uuid::now_v7().as_u128())
    }

    /// The id as a number, as the store keys it.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The id from its number.
    pub fn from_u128(n: u128) -> EventId {
        EventId(n)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

/// Text that is not an event id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event id (a UUID such as 0b7c4c1e-2a4f-4a8e-9a3e-6f4f2a1b9c10): {0:?}")]
pub struct BadEventId(pub String);

impl FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s)
            .map(|u| EventId(u.as_u128()))
            .map_err(|_| BadEventId(s.to_owned()))
    }
}

/// What a caller may attach to an event besides its payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// The trace header to pass on to the function.
    pub trace_id: Option<String>,
    /// The client context (base64 JSON) to pass on.
    pub client_context: Option<String>,
}

/// Why an attempt failed: Lambda's error type and the error document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// Lambda's error type (`Runtime.ExitError`, `Error`, `TooManyRequestsException`...).
    pub error_type: String,
    /// The error document (JSON bytes, usually `{"errorType":..,"errorMessage":..}`).
    pub payload: Vec<u8>,
}

impl AttemptError {
    /// The error's type and message as the error document gives them (the document's
    /// `errorType` and `errorMessage`), falling back on the outcome's type and the raw
    /// document.
    pub fn type_and_message(&self) -> (String, String) {
        let doc: Option<serde_json::Value> = serde_json::from_slice(&self.payload).ok();
        let field = |name: &str| {
            doc.as_ref()
                .and_then(|d| d.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let error_type = field("errorType").unwrap_or_else(|| self.error_type.clone());
        let message =
            field("errorMessage").unwrap_or_else(|| String::from_utf8_lossy(&self.payload).into());
        (error_type, message)
    }
}

/// An event in the queue, as a worker leases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The function it is for.
    pub function: String,
    /// The payload (JSON bytes).
    pub payload: Vec<u8>,
    /// What the caller attached.
    pub meta: EventMeta,
    /// When it was accepted (ms since the Unix epoch).
    pub enqueued_ms: u64,
    /// Attempts made so far: invocations that ran and failed and, while the event is
    /// leased, the attempt its lease is for (counted when leased, so that an attempt that
    /// outlives its lease still counts).
    pub attempts: u32,
    /// When the first attempt started.
    pub first_attempt_ms: Option<u64>,
    /// When the last attempt started.
    pub last_attempt_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<AttemptError>,
    /// When it is next due (ms since the epoch): the end of its lease while leased.
    pub(crate) due_ms: u64,
    /// Whether a worker holds it.
    pub(crate) leased: bool,
    /// How many times it was leased: a settle names the lease it ends, so that a worker
    /// whose lease expired cannot overwrite a later one's outcome.
    pub(crate) lease: u32,
}

impl Event {
    pub(crate) fn new(
        id: EventId,
        function: &str,
        payload: Vec<u8>,
        meta: EventMeta,
        now_ms: u64,
    ) -> Event {
        Event {
            id,
            function: function.to_owned(),
            payload,
            meta,
            enqueued_ms: now_ms,
            attempts: 0,
            first_attempt_ms: None,
            last_attempt_ms: None,
            last_error: None,
            due_ms: now_ms,
            leased: false,
            lease: 0,
        }
    }
}

const VERSION: u8 = 1;
const NONE: u32 = u32::MAX;

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths above u32 never reach here: payloads are capped far below.
    put_u32(out, u32::try_from(b.len()).unwrap_or(NONE - 1));
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => put_bytes(out, b),
        None => put_u32(out, NONE),
    }
}

/// Encodes an event: version, times, counters, flags, then the strings, then the
/// payload to the end.
pub(crate) fn encode(e: &Event) -> Vec<u8> {
    let error_len = e
        .last_error
        .as_ref()
        .map_or(0, |err| err.error_type.len() + err.payload.len() + 8);
    let mut out = Vec::with_capacity(
        64 + e.function.len()
            + e.meta.trace_id.as_ref().map_or(0, String::len)
            + e.meta.client_context.as_ref().map_or(0, String::len)
            + error_len
            + e.payload.len(),
    );
    out.push(VERSION);
    out.push(u8::from(e.leased));
    put_u32(&mut out, e.lease);
    put_u32(&mut out, e.attempts);
    put_u64(&mut out, e.enqueued_ms);
    put_u64(&mut out, e.due_ms);
    put_u64(&mut out, e.first_attempt_ms.unwrap_or(u64::MAX));
    put_u64(&mut out, e.last_attempt_ms.unwrap_or(u64::MAX));
    put_bytes(&mut out, e.function.as_bytes());
    put_opt(&mut out, e.meta.trace_id.as_deref().map(str::as_bytes));
    put_opt(
        &mut out,
        e.meta.client_context.as_deref().map(str::as_bytes),
    );
    put_opt(
        &mut out,
        e.last_error.as_ref().map(|err| err.error_type.as_bytes()),
    );
    put_opt(
        &mut out,
        e.last_error.as_ref().map(|err| err.payload.as_slice()),
    );
    out.extend_from_slice(&e.payload);
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
}

fn corrupt() -> QueueError {
    QueueError::Storage("a queued event is corrupt".to_owned())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QueueError> {
        if self.bytes.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, QueueError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, QueueError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, QueueError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn opt_time(&mut self) -> Result<Option<u64>, QueueError> {
        Ok(Some(self.u64()?).filter(|t| *t != u64::MAX))
    }

    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, QueueError> {
        match self.u32()? {
            NONE => Ok(None),
            n => Ok(Some(self.take(n as usize)?)),
        }
    }

    fn string(&mut self) -> Result<String, QueueError> {
        let b = self.opt_bytes()?.ok_or_else(corrupt)?;
        String::from_utf8(b.to_vec()).map_err(|_| corrupt())
    }

    fn opt_string(&mut self) -> Result<Option<String>, QueueError> {
        self.opt_bytes()?
            .map(|b| String::from_utf8(b.to_vec()).map_err(|_| corrupt()))
            .transpose()
    }
}

/// Decodes what [`encode`] wrote.
pub(crate) fn decode(id: EventId, bytes: &[u8]) -> Result<Event, QueueError> {
    let mut r = Reader { bytes };
    if r.u8()? != VERSION {
        return Err(QueueError::Storage(
            "a queued event was written by a newer version of Nimbus".to_owned(),
        ));
    }
    let leased = r.u8()? != 0;
    let lease = r.u32()?;
    let attempts = r.u32()?;
    let enqueued_ms = r.u64()?;
    let due_ms = r.u64()?;
    let first_attempt_ms = r.opt_time()?;
    let last_attempt_ms = r.opt_time()?;
    let function = r.string()?;
    let trace_id = r.opt_string()?;
    let client_context = r.opt_string()?;
    let error_type = r.opt_string()?;
    let error_payload = r.opt_bytes()?;
    let last_error = match (error_type, error_payload) {
        (Some(error_type), Some(payload)) => Some(AttemptError {
            error_type,
            payload: payload.to_vec(),
        }),
        _ => None,
    };
    Ok(Event {
        id,
        function,
        payload: r.bytes.to_vec(),
        meta: EventMeta {
            trace_id,
            client_context,
        },
        enqueued_ms,
        attempts,
        first_attempt_ms,
        last_attempt_ms,
        last_error,
        due_ms,
        leased,
        lease,
    })
}

/// Whether an encoded event is leased, without decoding the rest.
pub(crate) fn is_leased(bytes: &[u8]) -> bool {
    bytes.get(1).is_some_and(|b| *b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let mut e = Event::new(
            EventId::random(),
            "orders",
            br#"{"a":1}"#.to_vec(),
            EventMeta {
                trace_id: Some("Root=1-abc".to_owned()),
                client_context: None,
            },
            1_700_000_000_000,
        );
        assert_eq!(decode(e.id, &encode(&e)).unwrap(), e);
        e.attempts = 3;
        e.lease = 4;
        e.leased = true;
        e.first_attempt_ms = Some(1);
        e.last_attempt_ms = Some(2);
        e.last_error = Some(AttemptError {
            error_type: "Error".to_owned(),
            payload: br#"{"errorType":"TypeError","errorMessage":"nope"}"#.to_vec(),
        });
        e.payload = Vec::new();
        let bytes = encode(&e);
        assert!(is_leased(&bytes));
        assert_eq!(decode(e.id, &bytes).unwrap(), e);
        assert!(decode(e.id, &bytes[..10]).is_err());
    }

    #[test]
    fn ids_print_as_uuids() {
        let id = EventId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<EventId>().unwrap(), id);
        assert!("nope".parse::<EventId>().is_err());
    }

    #[test]
    fn error_documents_give_type_and_message() {
        let err = AttemptError {
            error_type: "Unhandled".to_owned(),
            payload: br#"{"errorType":"TypeError","errorMessage":"nope","trace":[]}"#.to_vec(),
        };
        assert_eq!(
            err.type_and_message(),
            ("TypeError".to_owned(), "nope".to_owned())
        );
        let raw = AttemptError {
            error_type: "Runtime.ExitError".to_owned(),
            payload: b"exit 1".to_vec(),
        };
        assert_eq!(
            raw.type_and_message(),
            ("Runtime.ExitError".to_owned(), "exit 1".to_owned())
        );
    }
}
