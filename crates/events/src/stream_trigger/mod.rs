//! Table stream triggers: `[[events]] source = "table:NAME"`, Lambda's event source
//! mapping for DynamoDB Streams.
//!
//! A trigger reads its table's change records in sequence order from its checkpoint,
//! gathers them into batches of up to `batch_size` (waiting up to `batching_window` for
//! a batch to fill), and invokes its function *synchronously* through
//! [`nimbus_core::Invoke`] (the dispatcher, which starts an instance of a function scaled
//! to zero) with Lambda's DynamoDB stream event, `{"Records": [...]}`.
//!
//! - Order: one batch of a trigger is in flight at a time (Lambda's default
//!   `ParallelizationFactor` of 1 on the stream's single shard), so records reach the
//!   function in commit order, which keeps the order of every partition key.
//! - Checkpoints: after a batch succeeds, the sequence number of its last record is
//!   stored durably ([`Checkpoints`]); a restart resumes after it. A batch in flight when
//!   the node stops or crashes is delivered again: delivery is at least once.
//! - Starting position: `TRIM_HORIZON` reads from the oldest retained record; `LATEST`
//!   starts after the newest record at the trigger's first start, stored at once as its
//!   first checkpoint so that a restart does not skip what came in between.
//! - Failures (a function error, a timeout): the batch is tried again after a backoff,
//!   up to `max_retries` retries; records older than `max_event_age` are not sent again.
//!   A throttled invocation uses up no retry, as on Lambda: the batch is tried again
//!   until its records are too old. With `bisect_on_error`, a batch that fails with a
//!   function error is split in two and each half tried (splitting uses up no retry).
//!   Records given up go, as Lambda's on-failure record (where they lie in the stream),
//!   to the trigger's `on_failure` function through the async queue; then the trigger
//!   moves past them.
//! - Partial failures: a function that returns `{"batchItemFailures":[{"itemIdentifier":
//!   "<SequenceNumber>"}]}` has the records before the first failed one checkpointed and
//!   the rest retried (Lambda's `ReportBatchItemFailures`, here on whenever the response
//!   has that shape).
//! - A trigger that is not enabled does not run, and its checkpoint stays as it was.
//! - A checkpoint belongs to one stream (its ARN, kept beside it). When the table is
//!   deleted and created again, or its stream turned off and on, the new stream is
//!   numbered from 1 again: the trigger sees the new ARN and reads the new stream from
//!   its oldest record, whatever its starting position (every record of the new stream
//!   came after the trigger started).
//!
//! The trigger reads through [`ChangeSource`], which the server implements on the table
//! store: this crate does not depend on the tables. A source tells of new commits
//! ([`ChangeSource::commits`]) so that a trigger starts within milliseconds of a write;
//! it also polls, every [`TriggerConfig::poll_interval`], for writes nobody told it of.

mod checkpoints;
mod payload;
mod runner;
#[cfg(test)]
mod tests;
mod trace;

use std::{sync::Arc, time::Duration};

use nimbus_core::{BoxFuture, EventSource, EventSpec, Invoke};
use tokio::{sync::watch, task::JoinSet};

use crate::AsyncQueue;

pub use checkpoints::Checkpoints;
pub use payload::{BatchResponse, LastAttempt, batch_response, on_failure_record, stream_event};

/// A change record of a table's stream, as a trigger hands it to its function.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Its sequence number: strictly increasing in commit order, without gaps.
    pub sequence: u64,
    /// When the change was committed, ms since the Unix epoch.
    pub created_ms: u64,
    /// The record as Lambda's DynamoDB stream event carries it (`eventID`, `eventName`,
    /// `dynamodb`, `eventSourceARN`...).
    pub record: serde_json::Value,
    /// The trace context (W3C `traceparent`) of the request that made the change, if
    /// it was traced.
    pub trace: Option<String>,
}

impl Change {
    /// The ARN of the stream the record is in (its `eventSourceARN`).
    pub fn stream_arn(&self) -> Option<&str> {
        self.record.get("eventSourceARN")?.as_str()
    }
}

/// A table's current stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamName {
    /// The stream's ARN.
    pub arn: String,
    /// The id of its shard.
    pub shard_id: String,
}

/// Why a change source could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the table stream: {0}")]
pub struct ChangeError(pub String);

/// Where triggers read table changes from.
pub trait ChangeSource: Send + Sync + 'static {
    /// Table `table`'s current stream, `None` when it has none.
    fn stream(&self, table: &str) -> Option<StreamName>;

    /// Up to `limit` changes of table `table` with sequence numbers above `after` (from
    /// the oldest retained one for `None`), in order.
    fn read<'a>(
        &'a self,
        table: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Change>, ChangeError>>;

    /// The sequence number of table `table`'s newest change, `None` when there is none.
    fn latest<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<u64>, ChangeError>>;

    /// A receiver that changes when a write to table `table` commits.
    fn commits(&self, table: &str) -> watch::Receiver<u64>;
}

/// Why triggers could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The checkpoint file could not be read or written.
    #[error("stream trigger checkpoints: {0}")]
    Storage(String),
}

/// How triggers retry and poll.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// The first retry's longest delay; each later one doubles it, up to `retry_cap`.
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_cap: Duration,
    /// How often a trigger reads its stream when no commit is announced.
    pub poll_interval: Duration,
    /// The region in the function ARNs of on-failure records.
    pub region: String,
}

impl TriggerConfig {
    /// The default first retry delay bound.
    pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
    /// The default longest delay between attempts.
    pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(60);
    /// The default poll interval.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            retry_base: Self::DEFAULT_RETRY_BASE,
            retry_cap: Self::DEFAULT_RETRY_CAP,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            region: "us-east-1".to_owned(),
        }
    }
}

/// What every trigger of a node shares.
struct Shared {
    source: Arc<dyn ChangeSource>,
    invoker: Arc<dyn Invoke>,
    /// Where on-failure records are enqueued.
    queue: Arc<AsyncQueue>,
    checkpoints: Arc<Checkpoints>,
    config: TriggerConfig,
}

/// The running stream triggers of an app.
pub struct StreamTriggers {
    ids: Vec<String>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for StreamTriggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTriggers")
            .field("triggers", &self.ids)
            .finish()
    }
}

/// Each table trigger of `events` with its checkpoint key: `TABLE/FUNCTION`, with `#2`,
/// `#3`... for further triggers of the same table and function, in manifest order.
pub fn trigger_ids(events: &[EventSpec]) -> Vec<(String, &EventSpec)> {
    let mut out: Vec<(String, &EventSpec)> = Vec::new();
    for spec in events {
        let EventSource::Table { table, .. } = &spec.source else {
            continue;
        };
        let base = format!("{table}/{}", spec.function);
        let n = out
            .iter()
            .filter(|(id, _)| id.split('#').next() == Some(base.as_str()))
            .count();
        let id = if n == 0 {
            base
        } else {
            format!("{base}#{}", n + 1)
        };
        out.push((id, spec));
    }
    out
}

impl StreamTriggers {
    /// Starts a task for each enabled table trigger of `events` (other sources are
    /// ignored): it reads through `source`, invokes through `invoker`, enqueues
    /// on-failure records in `queue` and keeps its position in `checkpoints`. Must be
    /// called inside a tokio runtime.
    pub fn start(
        events: &[EventSpec],
        source: Arc<dyn ChangeSource>,
        invoker: Arc<dyn Invoke>,
        queue: Arc<AsyncQueue>,
        checkpoints: Arc<Checkpoints>,
        config: TriggerConfig,
    ) -> StreamTriggers {
        let shared = Arc::new(Shared {
            source,
            invoker,
            queue,
            checkpoints,
            config,
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut ids = Vec::new();
        for (id, spec) in trigger_ids(events) {
            if !spec.enabled {
                tracing::info!(trigger = %id, "stream trigger disabled; its checkpoint is kept");
                continue;
            }
            let Some(trigger) = runner::Trigger::new(id.clone(), spec, Arc::clone(&shared)) else {
                continue;
            };
            ids.push(id);
            tasks.spawn(trigger.run(stop_rx.clone()));
        }
        StreamTriggers { ids, stop, tasks }
    }

    /// The checkpoint keys of the running triggers.
    pub fn running(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// Stops every trigger: a batch being delivered may finish within `grace` (its
    /// checkpoint is then kept); past it, the batch is cut off and delivered again after
    /// the restart.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                "stream triggers still delivering at the end of the grace period; their batches will be delivered again"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}
