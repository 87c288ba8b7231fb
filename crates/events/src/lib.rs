//! Durable event queues and the workers that deliver them to functions.
//!
//! `nimbus-events` owns asynchronous invocations (`InvocationType: Event`): the
//! [`AsyncQueue`], a durable queue with a dead-letter store in its own redb file, and the
//! [`AsyncWorker`], which delivers queued events through [`nimbus_core::Invoke`] (the
//! dispatcher), retries failed attempts as Lambda does, and sends Lambda's invocation
//! records to a function's `on_success` and `on_failure` destinations. It knows nothing
//! of HTTP (the Lambda API and the admin API live in the server) or of runtimes.
//!
//! An enqueue returns only once the event is on disk (one fsync shared by every enqueue
//! waiting at the time: group commit). Delivery is at least once: an event that was
//! being delivered when the node crashed is delivered again after the restart, so a
//! function may see the same request id twice; an accepted event is never lost.
//!
//! ```no_run
//! # async fn demo(invoker: std::sync::Arc<dyn nimbus_core::Invoke>, app: nimbus_core::AppSpec) -> Result<(), nimbus_events::QueueError> {
//! use std::{sync::Arc, time::Duration};
//! use nimbus_events::{AsyncQueue, AsyncWorker, EventMeta, WorkerConfig};
//!
//! let queue = Arc::new(AsyncQueue::open("events.redb".as_ref())?);
//! let mut worker = AsyncWorker::new(
//!     Arc::clone(&queue),
//!     invoker,
//!     app.functions.values().cloned(),
//!     WorkerConfig::default(),
//! );
//! worker.start();
//! let id = queue.enqueue("orders", br#"{"order":1}"#.to_vec(), EventMeta::default()).await?;
//! println!("accepted {id}");
//! worker.stop(Duration::from_secs(4)).await;
//! # Ok(()) }
//! ```

mod event;
mod queue;
mod record;
mod schedule;
mod stream_trigger;
mod worker;

pub use event::{AttemptError, BadEventId, Event, EventId, EventMeta};
pub use queue::{AsyncQueue, FollowUp, Settlement, now_ms};
pub use record::{
    Condition, DeadLetter, MAX_EVENT_PAYLOAD, Response, invocation_record, timestamp,
};
pub use schedule::{
    Clock, Cron, CronError, Fired, LocalLease, ScheduleError, ScheduleLease, ScheduleState,
    Scheduler, Schedules, SystemClock, Timetable, describe, rule_arn, scheduled_event, tick_id,
};
pub use stream_trigger::{
    BatchResponse, Change, ChangeError, ChangeSource, Checkpoints, LastAttempt, StreamName,
    StreamTriggers, TriggerConfig, TriggerError, batch_response, on_failure_record, stream_event,
    trigger_ids,
};
pub use worker::{
    AsyncWorker, WorkerConfig, WorkerSettings, async_share, backoff, backoff_ceiling,
    function_error_delay,
};

/// Why the queue could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The file could not be read or written; nothing changed.
    #[error("async event store: {0}")]
    Storage(String),
    /// The queue's writer has stopped (the node is shutting down).
    #[error("the async event store has stopped")]
    Stopped,
}
