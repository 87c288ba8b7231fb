//! The dispatcher's metrics. Each function's handles are registered once, when its pool
//! is made, so that an invocation's updates are a few atomic operations: no name lookup,
//! no label formatting, no lock.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use metrics::{Counter, Histogram};
use nimbus_core::RuntimeKind;

/// One function's counters and histograms.
pub(crate) struct PoolMetrics {
    success: Counter,
    error: Counter,
    timeout: Counter,
    throttled: Counter,
    duration: Histogram,
    init: Histogram,
    queue_wait: Histogram,
    /// Invocations admitted and not finished.
    pub(crate) concurrent: AtomicUsize,
    /// Invocations holding an instance.
    pub(crate) busy: AtomicUsize,
}

impl PoolMetrics {
    /// Registers `function`'s handles in the current recorder.
    pub(crate) fn new(function: &str, runtime: RuntimeKind) -> PoolMetrics {
        let invocations = |outcome: &'static str| {
            metrics::counter!(
                "nimbus_invocations_total",
                "function" => function.to_owned(),
                "runtime" => runtime.as_str(),
                "outcome" => outcome
            )
        };
        PoolMetrics {
            success: invocations("success"),
            error: invocations("error"),
            timeout: invocations("timeout"),
            throttled: invocations("throttled"),
            duration: metrics::histogram!(
                "nimbus_invocation_duration_seconds",
                "function" => function.to_owned(),
                "runtime" => runtime.as_str()
            ),
            init: metrics::histogram!(
                "nimbus_init_duration_seconds",
                "function" => function.to_owned(),
                "runtime" => runtime.as_str()
            ),
            queue_wait: metrics::histogram!(
                "nimbus_queue_wait_seconds",
                "function" => function.to_owned()
            ),
            concurrent: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    /// An invocation that ran: `outcome` is `success`, `timeout` or `error`; `init` is
    /// the start's duration when it was a cold start.
    pub(crate) fn ran(&self, outcome: &str, duration: Duration, init: Option<Duration>) {
        match outcome {
            "success" => self.success.increment(1),
            "timeout" => self.timeout.increment(1),
            _ => self.error.increment(1),
        }
        self.duration.record(duration.as_secs_f64());
        if let Some(init) = init {
            self.init.record(init.as_secs_f64());
        }
    }

    /// An invocation that could not get an instance.
    pub(crate) fn failed_to_start(&self) {
        self.error.increment(1);
    }

    /// An invocation refused at the concurrency limit.
    pub(crate) fn throttled(&self) {
        self.throttled.increment(1);
    }

    /// How long an invocation waited for admission.
    pub(crate) fn waited(&self, wait: Duration) {
        self.queue_wait.record(wait.as_secs_f64());
    }
}

/// Counts one in `count` for as long as it lives.
pub(crate) struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    pub(crate) fn new(count: &'a AtomicUsize) -> Held<'a> {
        Held::counted(count).0
    }

    /// Raises `count` until dropped, and says what it was before.
    pub(crate) fn counted(count: &'a AtomicUsize) -> (Held<'a>, usize) {
        let before = count.fetch_add(1, Ordering::Relaxed);
        (Held(count), before)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A function's instances and invocations at one moment ([`crate::Dispatcher::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// The function.
    pub function: String,
    /// Idle instances, ready for the next invocation.
    pub warm: usize,
    /// Instances running an invocation.
    pub busy: usize,
    /// Invocations admitted and not finished (those starting an instance included).
    pub concurrent: usize,
    /// Invocations waiting for admission at the function's concurrency limit.
    pub waiting: usize,
}
