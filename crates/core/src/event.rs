//! Event sources that invoke functions.

use std::time::Duration;

use serde::Serialize;

use crate::function::duration_secs;

/// Where a table stream trigger starts reading when it first runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPosition {
    /// Only changes made after the trigger starts.
    Latest,
    /// The oldest change the stream still holds.
    TrimHorizon,
}

/// When a schedule fires, in EventBridge Scheduler's expression syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleExpression {
    /// `rate(5 minutes)`: every period, starting when the app starts.
    Rate {
        /// The period.
        #[serde(with = "duration_secs")]
        every: Duration,
    },
    /// `cron(0 12 * * ? *)`: minutes, hours, day of month, month, day of week, year (UTC).
    Cron {
        /// The six fields as written.
        fields: [String; 6],
    },
}

/// What produces the events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EventSource {
    /// Changes to a table with a stream, in batches.
    Table {
        /// The table.
        table: String,
        /// Where reading starts the first time.
        starting_position: StartingPosition,
        /// Most records per invocation.
        batch_size: u32,
        /// Longest a batch waits to fill.
        #[serde(with = "duration_secs")]
        batching_window: Duration,
        /// Split a failing batch in two and retry each half.
        bisect_on_error: bool,
        /// A function of the app invoked asynchronously with Lambda's on-failure record
        /// (where the discarded records lie in the stream) for every batch given up.
        on_failure: Option<String>,
    },
    /// A schedule.
    Schedule(ScheduleExpression),
    /// Events on an event bus that match a pattern.
    Bus {
        /// The bus name (`default` is always there).
        bus: String,
        /// An EventBridge event pattern.
        pattern: serde_json::Value,
    },
    /// Messages on a queue, in batches.
    Queue {
        /// The queue name.
        queue: String,
        /// Most messages per invocation.
        batch_size: u32,
        /// Longest a batch waits to fill.
        #[serde(with = "duration_secs")]
        batching_window: Duration,
    },
}

impl EventSource {
    /// The source's kind as written before the colon in the manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            EventSource::Table { .. } => "table",
            EventSource::Schedule(_) => "schedule",
            EventSource::Bus { .. } => "bus",
            EventSource::Queue { .. } => "queue",
        }
    }
}

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Events older than this are not retried but dead-lettered.
    #[serde(with = "duration_secs")]
    pub max_event_age: Duration,
}

/// An event trigger the app declares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventSpec {
    /// What produces the events.
    pub source: EventSource,
    /// The function invoked with them.
    pub function: String,
    /// Retries of failed invocations.
    pub retry: RetryPolicy,
    /// Whether the trigger runs; a disabled trigger keeps its position.
    pub enabled: bool,
}
