//! What a stream trigger sends and reads: Lambda's DynamoDB stream event, its partial
//! batch response, and its on-failure record.

use serde_json::{Value, json};

use super::{Change, StreamName};
use crate::record::timestamp;

/// The largest event a batch makes: Lambda's 6 MB invocation payload, which also bounds
/// its stream batches.
pub(crate) const MAX_BATCH_BYTES: usize = 6 * 1024 * 1024;

/// How many of `changes`, from the first, fit in one event of at most
/// [`MAX_BATCH_BYTES`]; at least one.
pub(crate) fn fitting(changes: &[Change]) -> usize {
    // `{"Records":[` and `]}`, and a comma between records.
    let mut size = 14;
    for (n, change) in changes.iter().enumerate() {
        size += serde_json::to_vec(&change.record).map_or(0, |r| r.len()) + usize::from(n > 0);
        if size > MAX_BATCH_BYTES {
            return n.max(1);
        }
    }
    changes.len()
}

/// Lambda's DynamoDB stream event for `changes`: `{"Records": [...]}`.
pub fn stream_event(changes: &[Change]) -> Vec<u8> {
    let records: Vec<&Value> = changes.iter().map(|c| &c.record).collect();
    serde_json::to_vec(&json!({ "Records": records })).expect("serialising JSON values cannot fail")
}

/// What a function's response says of the batch it was given (Lambda's
/// `ReportBatchItemFailures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchResponse {
    /// Every record succeeded.
    Succeeded,
    /// The record at this index of the batch is the first that failed; it and those after
    /// it are to be retried.
    FailedFrom(usize),
    /// The response reports failures it does not identify, which Lambda takes as the
    /// whole batch failing.
    Failed,
}

/// Reads a function's response to a batch of `changes`.
///
/// A response without `batchItemFailures` (or with it `null` or empty) is a success. An
/// item whose `itemIdentifier` is missing, empty, not a string or not the sequence number
/// of a record of the batch fails the whole batch. Of several failed items, the one
/// earliest in the stream counts: everything from it on is retried.
pub fn batch_response(response: &[u8], changes: &[Change]) -> BatchResponse {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(response) else {
        return BatchResponse::Succeeded;
    };
    let items = match doc.get("batchItemFailures") {
        None | Some(Value::Null) => return BatchResponse::Succeeded,
        Some(Value::Array(items)) => items,
        Some(_) => return BatchResponse::Failed,
    };
    let mut first: Option<usize> = None;
    for item in items {
        let index = item
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .and_then(|id| index_of(id, changes));
        let Some(index) = index else {
            return BatchResponse::Failed;
        };
        first = Some(first.map_or(index, |f| f.min(index)));
    }
    first.map_or(BatchResponse::Succeeded, BatchResponse::FailedFrom)
}

/// The index of the change whose sequence number `id` is (with or without leading
/// zeros).
fn index_of(id: &str, changes: &[Change]) -> Option<usize> {
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = id.trim_start_matches('0');
    let seq: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    changes.iter().position(|c| c.sequence == seq)
}

/// A change's sequence number as its record prints it.
fn sequence_string(change: &Change) -> String {
    change.record["dynamodb"]["SequenceNumber"]
        .as_str()
        .map_or_else(|| change.sequence.to_string(), str::to_owned)
}

/// ISO 8601 in UTC to the second, as Lambda writes arrival times.
fn arrival(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// How the last attempt at a batch ended, for its on-failure record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastAttempt {
    /// The request id of the invocation.
    pub request_id: String,
    /// The HTTP status Lambda's `Invoke` would have answered (200 when the function ran).
    pub status: u16,
    /// `Some("Unhandled")` when the function failed.
    pub function_error: Option<&'static str>,
}

/// Lambda's on-failure record for a batch of a stream trigger given up: where the
/// records lie in the stream (not the records themselves), why they were given up
/// (`condition`: `RetryAttemptsExhausted` or `RecordAgeExceeded`), and how the last
/// attempt ended (`None` when none ran).
pub fn on_failure_record(
    changes: &[Change],
    stream: &StreamName,
    function_arn: &str,
    condition: &str,
    invoke_count: u32,
    last: Option<&LastAttempt>,
    now_ms: u64,
) -> Vec<u8> {
    let (first, last_change) = match (changes.first(), changes.last()) {
        (Some(first), Some(last)) => (first, last),
        _ => return Vec::new(),
    };
    let mut record = json!({
        "requestContext": {
            "requestId": last.map_or_else(|| uuid::Uuid::new_v4().to_string(), |l| l.request_id.clone()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "version": "1.0",
        "timestamp": timestamp(now_ms),
        "DDBStreamBatchInfo": {
            "shardId": stream.shard_id,
            "startSequenceNumber": sequence_string(first),
            "endSequenceNumber": sequence_string(last_change),
            "approximateArrivalOfFirstRecord": arrival(first.created_ms),
            "approximateArrivalOfLastRecord": arrival(last_change.created_ms),
            "batchSize": changes.len(),
            "streamArn": stream.arn,
        },
    });
    if let Some(last) = last {
        let mut context = json!({ "statusCode": last.status, "executedVersion": "$LATEST" });
        if let Some(error) = last.function_error {
            context["functionError"] = json!(error);
        }
        record["responseContext"] = context;
    }
    serde_json::to_vec(&record).expect("serialising JSON values cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: u64) -> Change {
        Change {
            sequence: seq,
            created_ms: 1_700_000_000_000 + seq * 1000,
            record: json!({
                "eventID": format!("id{seq}"),
                "dynamodb": { "SequenceNumber": format!("{seq:021}") },
            }),
            trace: None,
        }
    }

    #[test]
    fn events_carry_the_records_in_order() {
        let event: Value = serde_json::from_slice(&stream_event(&[change(1), change(2)])).unwrap();
        assert_eq!(event["Records"][0]["eventID"], "id1");
        assert_eq!(event["Records"][1]["eventID"], "id2");
        assert_eq!(event["Records"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_batch_is_cut_to_lambdas_payload_limit() {
        // Records of 800 KB (an item's old and new images at DynamoDB's 400 KB each).
        let big = |seq: u64| {
            let mut c = change(seq);
            c.record["dynamodb"]["NewImage"] = json!({ "pad": { "S": "x".repeat(800 * 1024) } });
            c
        };
        let batch: Vec<Change> = (1..=10).map(big).collect();
        let n = fitting(&batch);
        assert_eq!(n, 7);
        assert!(stream_event(&batch[..n]).len() <= MAX_BATCH_BYTES);
        assert!(stream_event(&batch[..=n]).len() > MAX_BATCH_BYTES);
        // Small records all fit; one record alone always makes a batch.
        assert_eq!(fitting(&[change(1), change(2)]), 2);
        let huge = {
            let mut c = change(1);
            c.record["pad"] = json!("x".repeat(MAX_BATCH_BYTES));
            c
        };
        assert_eq!(fitting(&[huge, change(2)]), 1);
    }

    #[test]
    fn partial_batch_responses_follow_lambda() {
        let batch = [change(5), change(6), change(7)];
        let f = |s: &str| batch_response(s.as_bytes(), &batch);
        use BatchResponse::{Failed, FailedFrom, Succeeded};
        assert_eq!(f(""), Succeeded);
        assert_eq!(f("null"), Succeeded);
        assert_eq!(f(r#""done""#), Succeeded);
        assert_eq!(f(r#"{"ok":true}"#), Succeeded);
        assert_eq!(f(r#"{"batchItemFailures":null}"#), Succeeded);
        assert_eq!(f(r#"{"batchItemFailures":[]}"#), Succeeded);
        assert_eq!(
            f(r#"{"batchItemFailures":[{"itemIdentifier":"000000000000000000006"}]}"#),
            FailedFrom(1)
        );
        assert_eq!(
            f(r#"{"batchItemFailures":[{"itemIdentifier":"7"},{"itemIdentifier":"6"}]}"#),
            FailedFrom(1),
            "the earliest failed record counts"
        );
        for whole in [
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemId":"6"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"99"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"x6"}]}"#,
            r#"{"batchItemFailures":"6"}"#,
        ] {
            assert_eq!(f(whole), Failed, "{whole}");
        }
    }

    #[test]
    fn on_failure_records_have_lambdas_shape() {
        let stream = StreamName {
            arn: "arn:aws:dynamodb:us-east-1:000000000000:table/Users/stream/1700000000000"
                .to_owned(),
            shard_id: "shardId-00000001700000000000-0badf00d".to_owned(),
        };
        let last = LastAttempt {
            request_id: "req-1".to_owned(),
            status: 200,
            function_error: Some("Unhandled"),
        };
        let bytes = on_failure_record(
            &[change(3), change(4)],
            &stream,
            "arn:aws:lambda:us-east-1:000000000000:function:project",
            "RetryAttemptsExhausted",
            2,
            Some(&last),
            1_700_000_100_000,
        );
        let record: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            record,
            json!({
                "requestContext": {
                    "requestId": "req-1",
                    "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:project",
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": 2,
                },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled",
                },
                "version": "1.0",
                "timestamp": "2023-11-14T22:15:00.000Z",
                "DDBStreamBatchInfo": {
                    "shardId": "shardId-00000001700000000000-0badf00d",
                    "startSequenceNumber": "000000000000000000003",
                    "endSequenceNumber": "000000000000000000004",
                    "approximateArrivalOfFirstRecord": "2023-11-14T22:13:23Z",
                    "approximateArrivalOfLastRecord": "2023-11-14T22:13:24Z",
                    "batchSize": 2,
                    "streamArn": "arn:aws:dynamodb:us-east-1:000000000000:table/Users/stream/1700000000000",
                },
            })
        );
    }
}
