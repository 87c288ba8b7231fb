//! What is kept and sent about an event whose delivery ended: dead-letter entries and
//! Lambda's destination invocation records.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::{
    QueueError,
    event::{self, Event, EventId},
};

/// The largest payload of an asynchronous invocation, Lambda's limit (1 MB). A
/// destination's invocation record is an asynchronous invocation too: one that would be
/// larger goes without its payloads.
pub const MAX_EVENT_PAYLOAD: usize = 1024 * 1024;

/// Why an event's delivery ended, as Lambda's invocation records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The function returned a response.
    Success,
    /// Every attempt failed (`max_retries + 1` of them).
    RetriesExhausted,
    /// The event grew older than `max_event_age` before it could succeed.
    EventAgeExceeded,
}

impl Condition {
    /// Lambda's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }

    fn code(self) -> u8 {
        match self {
            Condition::Success => 0,
            Condition::RetriesExhausted => 1,
            Condition::EventAgeExceeded => 2,
        }
    }

    fn from_code(code: u8) -> Option<Condition> {
        match code {
            0 => Some(Condition::Success),
            1 => Some(Condition::RetriesExhausted),
            2 => Some(Condition::EventAgeExceeded),
            _ => None,
        }
    }
}

/// ISO 8601 in UTC with milliseconds, as Lambda writes timestamps in records.
pub fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// JSON bytes as a JSON value, or as a string when they are not JSON.
fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// An event that failed for good, kept in the dead-letter store until it is redriven or
/// deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event as it last stood: payload, attempts, first and last attempt times and
    /// the last error.
    pub event: Event,
    /// Why it was given up.
    pub condition: Condition,
    /// When it was given up (ms since the epoch).
    pub dead_ms: u64,
}

impl DeadLetter {
    /// The entry's id: its event's.
    pub fn id(&self) -> EventId {
        self.event.id
    }

    /// The entry as the admin API shows it.
    pub fn to_json(&self) -> Value {
        let e = &self.event;
        let error = e.last_error.as_ref().map(|err| {
            let (error_type, message) = err.type_and_message();
            json!({ "errorType": error_type, "errorMessage": message })
        });
        json!({
            "id": e.id.to_string(),
            "function": e.function,
            "condition": self.condition.as_str(),
            "attempts": e.attempts,
            "error": error,
            "enqueuedAt": timestamp(e.enqueued_ms),
            "firstAttemptAt": e.first_attempt_ms.map(timestamp),
            "lastAttemptAt": e.last_attempt_ms.map(timestamp),
            "deadLetteredAt": timestamp(self.dead_ms),
            "payload": as_json(&e.payload),
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let event = event::encode(&self.event);
        let mut out = Vec::with_capacity(9 + event.len());
        out.push(self.condition.code());
        out.extend_from_slice(&self.dead_ms.to_be_bytes());
        out.extend_from_slice(&event);
        out
    }

    pub(crate) fn decode(id: EventId, bytes: &[u8]) -> Result<DeadLetter, QueueError> {
        let corrupt = || QueueError::Storage("a dead-letter entry is corrupt".to_owned());
        if bytes.len() < 9 {
            return Err(corrupt());
        }
        let condition = Condition::from_code(bytes[0]).ok_or_else(corrupt)?;
        let mut dead = [0; 8];
        dead.copy_from_slice(&bytes[1..9]);
        Ok(DeadLetter {
            event: event::decode(id, &bytes[9..])?,
            condition,
            dead_ms: u64::from_be_bytes(dead),
        })
    }
}

/// How an attempt ended, for an invocation record.
#[derive(Debug, Clone, Copy)]
pub enum Response<'a> {
    /// The function's response.
    Returned(&'a [u8]),
    /// The error document of the last failed attempt.
    Failed(&'a [u8]),
    /// No attempt ran.
    None,
}

/// Lambda's invocation record for a destination: the request, the condition, and the
/// response of the last attempt.
///
/// `function_arn` is the invoked function's unqualified ARN; the record names
/// `$LATEST` as Lambda does for unversioned functions.
pub fn invocation_record(
    event: &Event,
    function_arn: &str,
    condition: Condition,
    response: Response<'_>,
    now_ms: u64,
) -> Vec<u8> {
    let mut record = json!({
        "version": "1.0",
        "timestamp": timestamp(now_ms),
        "requestContext": {
            "requestId": event.id.to_string(),
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": condition.as_str(),
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": as_json(&event.payload),
    });
    let (context, payload) = match response {
        Response::Returned(body) => (
            json!({ "statusCode": 200, "executedVersion": "$LATEST" }),
            if body.is_empty() {
                Value::Null
            } else {
                as_json(body)
            },
        ),
        Response::Failed(doc) => (
            json!({ "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" }),
            as_json(doc),
        ),
        Response::None => return within_limit(&mut record),
    };
    record["responseContext"] = context;
    record["responsePayload"] = payload;
    within_limit(&mut record)
}

/// The record's bytes; above [`MAX_EVENT_PAYLOAD`] without its request and response
/// payloads, as Lambda drops them from a record too large for its destination. Otherwise
/// a cycle of destinations (A's success goes to B, B's to A) would double the record at
/// every hop.
fn within_limit(record: &mut Value) -> Vec<u8> {
    let bytes = record.to_string().into_bytes();
    if bytes.len() <= MAX_EVENT_PAYLOAD {
        return bytes;
    }
    if let Some(fields) = record.as_object_mut() {
        fields.remove("requestPayload");
        fields.remove("responsePayload");
    }
    record.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AttemptError, EventMeta};

    fn event() -> Event {
        let mut e = Event::new(
            EventId::random(),
            "orders",
            br#"{"order":7}"#.to_vec(),
            EventMeta::default(),
            1_574_000_000_000,
        );
        e.attempts = 3;
        e
    }

    #[test]
    fn failure_records_have_lambdas_shape() {
        let e = event();
        let record = invocation_record(
            &e,
            "arn:aws:lambda:us-east-1:000000000000:function:orders",
            Condition::RetriesExhausted,
            Response::Failed(br#"{"errorType":"Error","errorMessage":"boom"}"#),
            1_573_755_365_568,
        );
        let v: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(
            v,
            json!({
                "version": "1.0",
                "timestamp": "2019-11-14T18:16:05.568Z",
                "requestContext": {
                    "requestId": e.id.to_string(),
                    "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": 3
                },
                "requestPayload": { "order": 7 },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled"
                },
                "responsePayload": { "errorType": "Error", "errorMessage": "boom" }
            })
        );
    }

    #[test]
    fn success_records_carry_the_response_without_function_error() {
        let mut e = event();
        e.attempts = 1;
        let record = invocation_record(
            &e,
            "arn:aws:lambda:us-east-1:000000000000:function:orders",
            Condition::Success,
            Response::Returned(b"\"done\""),
            0,
        );
        let v: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(v["requestContext"]["condition"], "Success");
        assert_eq!(v["requestContext"]["approximateInvokeCount"], 1);
        assert_eq!(
            v["responseContext"],
            json!({ "statusCode": 200, "executedVersion": "$LATEST" })
        );
        assert_eq!(v["responsePayload"], "done");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        // An event that never ran has no response.
        let record = invocation_record(&e, "arn", Condition::EventAgeExceeded, Response::None, 0);
        let v: Value = serde_json::from_slice(&record).unwrap();
        assert!(v.get("responseContext").is_none());
        assert_eq!(v["requestContext"]["condition"], "EventAgeExceeded");
    }

    #[test]
    fn a_record_over_the_payload_limit_goes_without_its_payloads() {
        // A payload that (as in a cycle of destinations) is itself a record: request and
        // response together are over the limit although each is under it.
        let half = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_EVENT_PAYLOAD / 2));
        let mut e = Event::new(
            EventId::random(),
            "orders",
            half.clone().into_bytes(),
            EventMeta::default(),
            0,
        );
        e.attempts = 1;
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:orders";
        let response = Response::Returned(half.as_bytes());
        let record = invocation_record(&e, arn, Condition::Success, response, 0);
        assert!(record.len() <= MAX_EVENT_PAYLOAD, "{}", record.len());
        let v: Value = serde_json::from_slice(&record).unwrap();
        assert!(v.get("requestPayload").is_none());
        assert!(v.get("responsePayload").is_none());
        assert_eq!(v["requestContext"]["condition"], "Success");
        assert_eq!(v["responseContext"]["statusCode"], 200);
        // Under the limit, both stay.
        let small = invocation_record(&e, arn, Condition::Success, Response::Returned(b"1"), 0);
        let v: Value = serde_json::from_slice(&small).unwrap();
        assert_eq!(
            v["requestPayload"]["pad"].as_str().map(str::len),
            Some(MAX_EVENT_PAYLOAD / 2)
        );
        assert_eq!(v["responsePayload"], 1);
    }

    #[test]
    fn dead_letters_round_trip_and_show_the_error() {
        let mut e = event();
        e.first_attempt_ms = Some(1_574_000_000_000);
        e.last_attempt_ms = Some(1_574_000_001_000);
        e.last_error = Some(AttemptError {
            error_type: "Unhandled".to_owned(),
            payload: br#"{"errorType":"Error","errorMessage":"always fails"}"#.to_vec(),
        });
        let dead = DeadLetter {
            event: e.clone(),
            condition: Condition::RetriesExhausted,
            dead_ms: 1_574_000_002_000,
        };
        assert_eq!(DeadLetter::decode(e.id, &dead.encode()).unwrap(), dead);
        let v = dead.to_json();
        assert_eq!(v["error"]["errorType"], "Error");
        assert_eq!(v["error"]["errorMessage"], "always fails");
        assert_eq!(v["attempts"], 3);
        assert_eq!(v["payload"], json!({ "order": 7 }));
        assert_eq!(v["condition"], "RetriesExhausted");
        assert_eq!(v["firstAttemptAt"], "2019-11-17T14:13:20.000Z");
    }
}
