//! Prometheus metrics.
//!
//! The parts of Nimbus record through the [`metrics`](::metrics) facade (`counter!`,
//! `gauge!`, `histogram!`), each where the thing happens: the dispatcher (invocations,
//! durations, cold starts, admission waits), the gateway (requests by route and status),
//! the table store (operations by table and outcome) and the async worker (retries, dead
//! letters). This module installs the one recorder a process has ([`install`]), gives
//! every metric its `HELP` text and its histogram buckets (seconds), and renders the
//! Prometheus text format, exposition version 0.0.4 ([`Metrics::render`]), to which it
//! adds the process's own CPU, memory, descriptors and start time read from `/proc`
//! ([`ProcessStats`]). The server serves that on `GET /metrics`.
//!
//! Gauges that describe state rather than events (warm and busy instances, queue
//! lengths, the async backlog) are set by the server just before it renders, from the
//! parts' own counts: nothing on a request's path keeps them.
//!
//! Names follow Prometheus's conventions: a `nimbus_` prefix, `_total` on counters, base
//! units (`_seconds`, `_bytes`). Labels have bounded values: function and table names
//! come from the app, routes are the manifest's patterns, never raw paths.
//!
//! ```
//! let metrics = nimbus_telemetry::metrics::Metrics::local(|| {
//!     metrics::counter!(
//!         "nimbus_invocations_total",
//!         "function" => "hello", "runtime" => "wasm", "outcome" => "success"
//!     )
//!     .increment(1);
//! });
//! let text = metrics.render();
//! assert!(text.contains(r#"nimbus_invocations_total{function="hello",runtime="wasm",outcome="success"} 1"#));
//! ```

mod process;

use std::sync::OnceLock;

use ::metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use process::{ProcError, ProcessStats};

/// The content type of [`Metrics::render`]'s text: Prometheus's text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The upper bounds (seconds) of every histogram's buckets: from half a millisecond (a
/// warm wasm invocation, a table read) to fifteen minutes (Lambda's longest timeout).
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
];

/// Every metric Nimbus records, with its kind and `HELP` text. The process metrics are
/// not here: [`ProcessStats::render`] writes those.
pub const CATALOG: &[(&str, Kind, &str)] = &[
    (
        "nimbus_invocations_total",
        Kind::Counter,
        "Invocations of each function, by outcome: success, error (the function failed or no instance could start), timeout, throttled (refused at the concurrency limit).",
    ),
    (
        "nimbus_invocation_duration_seconds",
        Kind::Histogram,
        "How long each invocation ran in its instance (REPORT's Duration), whatever its outcome.",
    ),
    (
        "nimbus_init_duration_seconds",
        Kind::Histogram,
        "Cold starts: how long starting the instance took (REPORT's Init Duration). Its _count is the number of cold starts.",
    ),
    (
        "nimbus_concurrent_executions",
        Kind::Gauge,
        "Invocations of each function admitted and not yet finished (cold starts included).",
    ),
    (
        "nimbus_instances",
        Kind::Gauge,
        "Instances of each function: warm (idle, ready for the next invocation) and busy (running one).",
    ),
    (
        "nimbus_queue_length",
        Kind::Gauge,
        "Invocations of each function waiting for admission at its concurrency limit.",
    ),
    (
        "nimbus_queue_wait_seconds",
        Kind::Histogram,
        "How long invocations waited for admission at the concurrency limit (0 when there was room); those throttled after waiting count too.",
    ),
    (
        "nimbus_async_backlog",
        Kind::Gauge,
        "Async events queued for each function (those being delivered included), dead letters excluded.",
    ),
    (
        "nimbus_async_oldest_event_age_seconds",
        Kind::Gauge,
        "Age of each function's oldest queued async event (0 when none is queued).",
    ),
    (
        "nimbus_async_retries_total",
        Kind::Counter,
        "Failed async attempts that were scheduled to be retried.",
    ),
    (
        "nimbus_async_dead_letters_total",
        Kind::Counter,
        "Async events given up (retries exhausted or too old) and moved to the dead-letter store.",
    ),
    (
        "nimbus_gateway_requests_total",
        Kind::Counter,
        "Requests the gateway answered, by route (the manifest's route key, - when none matched), method and status.",
    ),
    (
        "nimbus_gateway_request_duration_seconds",
        Kind::Histogram,
        "How long the gateway took to answer, from the request's headers to the response's start.",
    ),
    (
        "nimbus_table_operations_total",
        Kind::Counter,
        "DynamoDB operations, by table (- when none or not an existing table), operation and outcome (success or the error type).",
    ),
    (
        "nimbus_table_operation_duration_seconds",
        Kind::Histogram,
        "How long DynamoDB operations took, by table and operation.",
    ),
];

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// Why metrics could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

/// The installed recorder's view: renders what was recorded.
#[derive(Debug, Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .expect("the bucket list is not empty")
}

/// Gives every metric in [`CATALOG`] its `HELP` text in the current recorder.
fn describe() {
    for &(name, kind, help) in CATALOG {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, help),
        }
    }
}

static INSTALLED: OnceLock<Result<Metrics, MetricsError>> = OnceLock::new();

/// Installs the process's recorder (once: later calls return the same one). Metrics
/// recorded before this are lost, and handles registered before it record nothing, so a
/// node installs it before it builds its parts.
///
/// # Errors
/// When another recorder was installed in this process first.
pub fn install() -> Result<Metrics, MetricsError> {
    INSTALLED
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let metrics = Metrics {
                handle: recorder.handle(),
            };
            ::metrics::set_global_recorder(recorder).map_err(|e| MetricsError(e.to_string()))?;
            describe();
            Ok(metrics)
        })
        .clone()
}

impl Metrics {
    /// A recorder of its own, not installed, that records what `record` records (for
    /// tests and examples).
    pub fn local(record: impl FnOnce()) -> Metrics {
        let recorder: PrometheusRecorder = builder().build_recorder();
        ::metrics::with_local_recorder(&recorder, || {
            describe();
            record();
        });
        Metrics {
            handle: recorder.handle(),
        }
    }

    /// Everything recorded, in Prometheus's text format ([`CONTENT_TYPE`]), followed by
    /// the process's own figures when `/proc` can be read.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        match ProcessStats::read() {
            Ok(stats) => stats.render(&mut text),
            Err(e) => tracing::debug!(error = %e, "process metrics are not available"),
        }
        text
    }

    /// Folds recorded histogram samples into their buckets. A node runs this every few
    /// seconds so that samples do not pile up between scrapes ([`render`](Self::render)
    /// does it too).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_name_follows_the_conventions() {
        for &(name, kind, help) in CATALOG {
            assert!(name.starts_with("nimbus_"), "{name}");
            assert_eq!(name.ends_with("_total"), kind == Kind::Counter, "{name}");
            if kind == Kind::Histogram {
                assert!(name.ends_with("_seconds"), "{name}");
            }
            assert!(!help.is_empty() && !help.contains('\n'), "{name}");
        }
    }

    #[test]
    fn histograms_render_as_buckets_in_seconds_with_help() {
        let metrics = Metrics::local(|| {
            let h = ::metrics::histogram!("nimbus_invocation_duration_seconds", "function" => "f", "runtime" => "wasm");
            h.record(0.003);
            h.record(2.0);
        });
        let text = metrics.render();
        assert!(
            text.contains("# HELP nimbus_invocation_duration_seconds How long"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE nimbus_invocation_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(r#"nimbus_invocation_duration_seconds_bucket{function="f",runtime="wasm",le="0.005"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"nimbus_invocation_duration_seconds_bucket{function="f",runtime="wasm",le="+Inf"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"nimbus_invocation_duration_seconds_count{function="f",runtime="wasm"} 2"#
            ),
            "{text}"
        );
        // The process's own figures follow.
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn install_is_idempotent() {
        let a = install().unwrap();
        let b = install().unwrap();
        ::metrics::counter!("nimbus_async_retries_total", "function" => "g").increment(2);
        assert!(
            a.render()
                .contains(r#"nimbus_async_retries_total{function="g"} 2"#)
        );
        assert!(
            b.render()
                .contains(r#"nimbus_async_retries_total{function="g"} 2"#)
        );
    }
}
