//! The app's table stream triggers, reading the table store.
//!
//! [`TablesSource`] is the [`ChangeSource`] of `nimbus-events` over [`Tables`]: records
//! come from the engines' change streams, rendered by the tables crate exactly as the
//! DynamoDB Streams API renders them (plus `eventSourceARN`), and every committed write
//! to a table with a stream wakes its triggers at once. Triggers are prepared when the
//! node binds (their checkpoints are `triggers.redb` in the data directory) and run while
//! it serves. On-failure records go into the async queue, so the async worker delivers
//! them.
//!
//! Checkpoints are the node's own: a cluster of nodes on one PostgreSQL store would each
//! run every trigger. Until triggers hold a cluster-wide lease (as schedules do), run
//! table triggers on one node.

use std::{sync::Arc, time::Duration};

use nimbus_core::{AppSpec, BoxFuture, EventSource, EventSpec, Invoke};
use nimbus_events::{
    AsyncQueue, Change, ChangeError, ChangeSource, Checkpoints, StreamName, StreamTriggers,
    TriggerConfig, TriggerError,
};
use nimbus_tables::api::Tables;
use tokio::sync::watch;

use crate::DataDir;

/// The table store as stream triggers read it.
pub(crate) struct TablesSource {
    tables: Arc<Tables>,
}

impl TablesSource {
    /// Reads `tables`.
    pub(crate) fn new(tables: Arc<Tables>) -> TablesSource {
        TablesSource { tables }
    }
}

fn change_error(e: impl std::fmt::Display) -> ChangeError {
    ChangeError(e.to_string())
}

impl ChangeSource for TablesSource {
    fn stream(&self, table: &str) -> Option<StreamName> {
        self.tables.stream_info(table).map(|s| StreamName {
            arn: s.arn,
            shard_id: s.shard_id,
        })
    }

    fn read<'a>(
        &'a self,
        table: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Change>, ChangeError>> {
        Box::pin(async move {
            let changes = self
                .tables
                .stream_changes(table, after, limit)
                .await
                .map_err(change_error)?;
            Ok(changes
                .into_iter()
                .map(|c| Change {
                    sequence: c.sequence,
                    created_ms: c.created_ms,
                    record: c.record,
                    trace: c.trace,
                })
                .collect())
        })
    }

    fn latest<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<u64>, ChangeError>> {
        Box::pin(async move { self.tables.stream_latest(table).await.map_err(change_error) })
    }

    fn commits(&self, table: &str) -> watch::Receiver<u64> {
        self.tables.stream_commits(table)
    }
}

/// The triggers of an app, ready to start.
pub(crate) struct Prepared {
    events: Vec<EventSpec>,
    source: Arc<dyn ChangeSource>,
    invoker: Arc<dyn Invoke>,
    queue: Arc<AsyncQueue>,
    checkpoints: Arc<Checkpoints>,
    config: TriggerConfig,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("triggers", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// Prepares the table triggers `app` declares, or `None` when it declares none.
///
/// # Errors
/// When the checkpoint file cannot be opened.
pub(crate) fn prepare(
    app: Option<&AppSpec>,
    data: &DataDir,
    tables: &Arc<Tables>,
    invoker: &Arc<dyn Invoke>,
    queue: &Arc<AsyncQueue>,
    region: &str,
) -> Result<Option<Prepared>, TriggerError> {
    let events: Vec<EventSpec> = app
        .iter()
        .flat_map(|app| app.events.iter())
        .filter(|e| matches!(e.source, EventSource::Table { .. }))
        .cloned()
        .collect();
    if events.is_empty() {
        return Ok(None);
    }
    let checkpoints = Checkpoints::open(&data.triggers_file())?;
    Ok(Some(Prepared {
        events,
        source: Arc::new(TablesSource::new(Arc::clone(tables))),
        invoker: Arc::clone(invoker),
        queue: Arc::clone(queue),
        checkpoints: Arc::new(checkpoints),
        config: TriggerConfig {
            region: region.to_owned(),
            ..TriggerConfig::default()
        },
    }))
}

/// Starts the prepared triggers.
pub(crate) fn start(prepared: Option<Prepared>) -> Option<StreamTriggers> {
    prepared.map(|p| {
        StreamTriggers::start(
            &p.events,
            p.source,
            p.invoker,
            p.queue,
            p.checkpoints,
            p.config,
        )
    })
}

/// Stops the triggers, letting batches in flight finish within `grace`.
pub(crate) async fn stop(triggers: Option<StreamTriggers>, grace: Duration) {
    if let Some(triggers) = triggers {
        triggers.stop(grace).await;
    }
}

#[cfg(test)]
mod tests {
    use nimbus_tables::engine::Embedded;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_table_store_is_a_change_source() {
        let tables = Arc::new(
            Tables::open(Arc::new(Embedded::in_memory().unwrap()))
                .await
                .unwrap(),
        );
        let dynamodb = |op: &str, body: serde_json::Value| {
            let tables = Arc::clone(&tables);
            let op = format!("DynamoDB_20120810.{op}");
            async move {
                tables
                    .handle(&op, body.to_string().as_bytes())
                    .await
                    .unwrap()
            }
        };
        dynamodb(
            "CreateTable",
            json!({
                "TableName": "Users",
                "AttributeDefinitions": [{ "AttributeName": "email", "AttributeType": "S" }],
                "KeySchema": [{ "AttributeName": "email", "KeyType": "HASH" }],
                "BillingMode": "PAY_PER_REQUEST",
                "StreamSpecification": { "StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES" },
            }),
        )
        .await;
        let source = TablesSource::new(Arc::clone(&tables));
        let stream = source.stream("Users").unwrap();
        assert!(
            stream
                .arn
                .starts_with("arn:aws:dynamodb:us-east-1:000000000000:table/Users/stream/")
        );
        assert_eq!(source.latest("Users").await.unwrap(), None);
        let mut commits = source.commits("Users");
        commits.borrow_and_update();
        dynamodb(
            "PutItem",
            json!({ "TableName": "Users", "Item": { "email": { "S": "a@example.com" } } }),
        )
        .await;
        assert!(commits.has_changed().unwrap());
        let changes = source.read("Users", None, 10).await.unwrap();
        assert_eq!(changes.len(), 1);
        let record = &changes[0].record;
        assert_eq!(record["eventName"], "INSERT");
        assert_eq!(record["eventSource"], "aws:dynamodb");
        assert_eq!(record["eventVersion"], "1.1");
        assert_eq!(record["eventSourceARN"], json!(stream.arn));
        assert_eq!(
            record["dynamodb"]["NewImage"]["email"],
            json!({ "S": "a@example.com" })
        );
        assert_eq!(
            source.latest("Users").await.unwrap(),
            Some(changes[0].sequence)
        );
        assert!(source.stream("Missing").is_none());
    }
}
