//! The table store's metrics: DynamoDB operations by table, operation and outcome, and
//! their latency.
//!
//! Labels stay bounded whatever clients send: the operation is one Nimbus serves (else
//! `unknown`), the table one that exists and one of the first [`MAX_TABLE_LABELS`]
//! labelled (else `-`, see `Tables::metrics_table`), the outcome `success` or the short
//! name of one of DynamoDB's error types.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use metrics::SharedString;
use serde_json::Value as Json;

use crate::error::ApiError;

/// The operations [`crate::api::Tables::handle`] serves.
const OPERATIONS: &[&str] = &[
    "CreateTable",
    "DescribeTable",
    "ListTables",
    "DeleteTable",
    "UpdateTable",
    "UpdateTimeToLive",
    "DescribeTimeToLive",
    "TagResource",
    "UntagResource",
    "ListTagsOfResource",
    "DescribeLimits",
    "DescribeEndpoints",
    "PutItem",
    "GetItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
];

/// The operations [`crate::api::Tables::handle_streams`] serves.
const STREAMS_OPERATIONS: &[&str] = &[
    "ListStreams",
    "DescribeStream",
    "GetShardIterator",
    "GetRecords",
];

/// The operation label of an `X-Amz-Target` (`DynamoDB_20120810.PutItem`): the
/// operation's name when Nimbus serves it in that API, else `unknown`.
pub fn operation_label(target: &str) -> &'static str {
    let (served, operation) =
        if let Some(operation) = target.strip_prefix(crate::api::TARGET_PREFIX) {
            (OPERATIONS, operation)
        } else if let Some(operation) = target.strip_prefix(crate::api::STREAMS_TARGET_PREFIX) {
            (STREAMS_OPERATIONS, operation)
        } else {
            return "unknown";
        };
    served
        .iter()
        .find(|o| **o == operation)
        .copied()
        .unwrap_or("unknown")
}

/// The outcome label: `success`, or the error type without its namespace
/// (`ConditionalCheckFailedException`).
pub(crate) fn outcome_label(result: &Result<Json, ApiError>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(e) => {
            let full = e.kind.type_name();
            full.rsplit_once('#').map_or(full, |(_, short)| short)
        }
    }
}

/// Most distinct tables that get a `table` label of their own in a node's life: a
/// Prometheus series is kept until the node stops, also for a table deleted since.
/// DynamoDB's default quota of tables a region is 2,500.
pub(crate) const MAX_TABLE_LABELS: usize = 2_500;

/// The table names given a label so far.
#[derive(Default)]
pub(crate) struct TableLabels(Mutex<HashSet<String>>);

impl TableLabels {
    /// The label for table `name`: its name, unless [`MAX_TABLE_LABELS`] other tables
    /// have had one.
    pub(crate) fn label(&self, name: &str) -> Option<SharedString> {
        let mut labelled = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !labelled.contains(name) {
            if labelled.len() >= MAX_TABLE_LABELS {
                return None;
            }
            labelled.insert(name.to_owned());
        }
        Some(SharedString::from(name.to_owned()))
    }
}

/// The one table a request names: `TableName`, the single table of a batch's
/// `RequestItems`, the table every action of a transaction names, or a tagging
/// request's table ARN. `None` when it names none or several.
pub(crate) fn named_table(body: &Json) -> Option<&str> {
    if let Some(name) = body.get("TableName").and_then(Json::as_str) {
        return Some(name);
    }
    if let Some(items) = body.get("RequestItems").and_then(Json::as_object) {
        let mut names = items.keys();
        return match (names.next(), names.next()) {
            (Some(one), None) => Some(one.as_str()),
            _ => None,
        };
    }
    if let Some(actions) = body.get("TransactItems").and_then(Json::as_array) {
        let mut one: Option<&str> = None;
        for action in actions {
            let name = action
                .as_object()?
                .values()
                .next()?
                .get("TableName")?
                .as_str()?;
            if one.is_some_and(|o| o != name) {
                return None;
            }
            one = Some(name);
        }
        return one;
    }
    // A table ARN, a stream ARN (`...:table/NAME/stream/LABEL`), or a shard iterator,
    // which begins with its stream's ARN.
    ["ResourceArn", "StreamArn", "ShardIterator"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Json::as_str))
        .and_then(|arn| arn.split_once(":table/"))
        .map(|(_, rest)| rest.split_once('/').map_or(rest, |(name, _)| name))
}

/// Records one operation.
pub(crate) fn record(
    target: &str,
    table: Option<SharedString>,
    result: &Result<Json, ApiError>,
    elapsed: Duration,
) {
    let operation = operation_label(target);
    let table = table.unwrap_or(SharedString::const_str("-"));
    metrics::histogram!(
        "nimbus_table_operation_duration_seconds",
        "table" => table.clone(),
        "operation" => operation
    )
    .record(elapsed.as_secs_f64());
    metrics::counter!(
        "nimbus_table_operations_total",
        "table" => table,
        "operation" => operation,
        "outcome" => outcome_label(result)
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn operations_and_outcomes_are_bounded() {
        assert_eq!(operation_label("DynamoDB_20120810.PutItem"), "PutItem");
        assert_eq!(
            operation_label("DynamoDB_20120810.StealEverything"),
            "unknown"
        );
        assert_eq!(
            operation_label("DynamoDBStreams_20120810.GetRecords"),
            "GetRecords"
        );
        // Each API's own operations only.
        assert_eq!(operation_label("DynamoDB_20120810.GetRecords"), "unknown");
        assert_eq!(
            operation_label("DynamoDBStreams_20120810.PutItem"),
            "unknown"
        );
        assert_eq!(operation_label("PutItem"), "unknown");
        assert_eq!(outcome_label(&Ok(json!({}))), "success");
        let failed = Err(ApiError::new(ErrorKind::ConditionalCheckFailed, "no"));
        assert_eq!(outcome_label(&failed), "ConditionalCheckFailedException");
        assert_eq!(
            outcome_label(&Err(ApiError::internal())),
            "InternalServerError"
        );
    }

    #[test]
    fn table_labels_are_bounded_in_number() {
        let labels = TableLabels::default();
        for n in 0..MAX_TABLE_LABELS {
            assert_eq!(
                labels.label(&format!("t{n}")).as_deref(),
                Some(format!("t{n}").as_str())
            );
        }
        // Tables labelled before keep their label; a new one gets none.
        assert_eq!(labels.label("t0").as_deref(), Some("t0"));
        assert_eq!(labels.label("one-too-many"), None);
    }

    #[test]
    fn the_named_table_is_found_in_every_request_shape() {
        assert_eq!(named_table(&json!({"TableName": "Users"})), Some("Users"));
        assert_eq!(
            named_table(&json!({"RequestItems": {"Users": {}}})),
            Some("Users")
        );
        assert_eq!(
            named_table(&json!({"RequestItems": {"Users": {}, "Orders": {}}})),
            None
        );
        let transact = |a: &str, b: &str| {
            json!({"TransactItems": [
                {"Put": {"TableName": a, "Item": {}}},
                {"ConditionCheck": {"TableName": b}},
            ]})
        };
        assert_eq!(named_table(&transact("T", "T")), Some("T"));
        assert_eq!(named_table(&transact("T", "U")), None);
        assert_eq!(
            named_table(
                &json!({"ResourceArn": "arn:aws:dynamodb:us-east-1:000000000000:table/Users"})
            ),
            Some("Users")
        );
        let stream = "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/1700000000000";
        assert_eq!(named_table(&json!({ "StreamArn": stream })), Some("Orders"));
        assert_eq!(
            named_table(&json!({ "ShardIterator": format!("{stream}|1|AAAA") })),
            Some("Orders")
        );
        assert_eq!(named_table(&json!({"Limit": 3})), None);
        assert_eq!(named_table(&json!({"TableName": 7})), None);
    }
}
