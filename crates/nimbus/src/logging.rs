//! Log output: human-readable on a terminal, JSON on request.
//!
//! Lines are formatted on the thread that logs them and written to stderr by a thread of
//! their own ([`crate::log_writer`]), so that a request never waits on the terminal or
//! the pipe; nothing is dropped. The guard [`LogArgs::init`] returns writes what is left
//! when it is dropped. In JSON, the lines every request writes are encoded by
//! [`crate::json_lines`].
//!
//! Function log lines (`START`, the function's output, `END`, `REPORT`) do not travel as
//! `tracing` events: the parts hand them to the [`FunctionLog`] installed here, which
//! writes them to the node's log (encoded directly in JSON; as events for the text
//! formatter) and to the node's log store (`nimbus logs`) once the node has attached it to
//! [`nimbus_telemetry::logs::LogCapture::global`]. Several lines of an invocation go at
//! once.

use std::{cell::RefCell, io::IsTerminal, time::SystemTime};

use clap::{Args, ValueEnum};
use nimbus_core::logging::{FUNCTION_TARGET, FunctionLines, FunctionLog};
use nimbus_telemetry::logs::LogCapture;
use nimbus_telemetry::traces::{TraceSettings, Traces};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, LevelFilter, filter_fn},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging flags shared by every command.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "NIMBUS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `nimbus_gateway=debug,info`); defaults to
    /// `RUST_LOG`, then `info`.
    #[arg(long, global = true, env = "NIMBUS_LOG_LEVEL")]
    log_level: Option<String>,
    /// Export OpenTelemetry traces over OTLP/HTTP to this base URL (spans go to
    /// `/v1/traces` below it); defaults to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`. Without any, no trace is recorded.
    #[arg(long, global = true, env = "NIMBUS_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Share of new traces to record, 0 to 1 (requests that arrive with a `traceparent`
    /// follow their caller's decision); defaults to `OTEL_TRACES_SAMPLER`, then all.
    #[arg(
        long,
        global = true,
        env = "NIMBUS_TRACE_SAMPLE_RATIO",
        value_name = "RATIO",
        value_parser = sample_ratio
    )]
    trace_sample_ratio: Option<f64>,
}

fn sample_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a ratio between 0 and 1")),
    }
}

/// What must live as long as the program: the log writer and the trace exporter.
/// Dropping it exports the last spans, then writes the last lines.
pub(crate) struct LogGuard {
    _traces: Option<Traces>,
    _writer: crate::log_writer::WriterGuard,
}

/// How the node's log takes function lines.
enum NodeLog {
    /// Encoded here and handed to the writer (the JSON format).
    Json(crate::log_writer::LineWriter),
    /// As `tracing` events, for the text formatter.
    Events,
    /// Not at all: the log level leaves them out.
    Off,
}

/// The node's function log: the node's log and its log store.
struct NodeFunctionLog {
    log: NodeLog,
    store: &'static LogCapture,
}

thread_local! {
    static RECORDS: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

impl FunctionLog for NodeFunctionLog {
    fn write(&self, lines: &FunctionLines<'_>) {
        self.store.write(lines);
        match &self.log {
            NodeLog::Json(writer) => RECORDS.with_borrow_mut(|records| {
                records.clear();
                crate::json_lines::encode_function_lines(records, SystemTime::now(), lines);
                writer.write_lines(records);
            }),
            NodeLog::Events => lines.emit_events(),
            NodeLog::Off => {}
        }
    }
}

/// The node's subscriber: the formatter, and in JSON the direct encoder of per-request
/// lines, each filtered for itself.
///
/// Each filter also says the most verbose level it lets through, so that the subscriber
/// as a whole does: `tracing` and the `log` crate (which wasmtime and others log through)
/// then skip a disabled `debug!` or `trace!` at a glance instead of asking every layer.
fn subscriber(
    spec: &str,
    json: bool,
    writer: &crate::log_writer::LineWriter,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    // Two layers filter by the level, so the filter is made from its text twice.
    let level = || EnvFilter::new(spec);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer.clone());
    let fmt = if json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal()).boxed()
    };
    // Each layer filters for itself: the log level says what reaches stderr, not what
    // reaches the function log store, which takes every function line.
    // In JSON, the lines every request writes (function lines, access lines) take the
    // direct encoder; the formatter writes the rest. These filters only narrow the level
    // filter, hence their hint of TRACE (the level filter's own hint wins).
    let fmt_filter = level().and(
        filter_fn(move |meta| {
            !(json && meta.is_event() && crate::json_lines::writes(meta.target()))
        })
        .with_max_level_hint(LevelFilter::TRACE),
    );
    let per_request = json.then(|| {
        crate::json_lines::JsonLines::new(writer.clone()).with_filter(
            level().and(
                filter_fn(|meta| meta.is_event() && crate::json_lines::writes(meta.target()))
                    .with_max_level_hint(LevelFilter::TRACE),
            ),
        )
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(fmt_filter))
        .with(per_request)
}

impl LogArgs {
    /// Installs the subscriber (with the trace exporter, when one is configured); keep
    /// the guard until the program ends.
    ///
    /// # Errors
    /// When traces are configured but cannot be exported (a bad endpoint).
    pub(crate) fn init(&self) -> anyhow::Result<LogGuard> {
        let traces = Traces::start(&TraceSettings {
            endpoint: self.otlp_endpoint.clone(),
            sample_ratio: self.trace_sample_ratio,
        })?;
        // Two layers filter by the level, so the filter is made from its text twice.
        let spec = self
            .log_level
            .clone()
            .or_else(|| std::env::var(EnvFilter::DEFAULT_ENV).ok())
            .unwrap_or_else(|| "info".to_owned());
        let spec = match EnvFilter::try_new(&spec) {
            Ok(_) => spec,
            Err(e) => {
                eprintln!("warning: bad log filter ({e}); using `info`");
                "info".to_owned()
            }
        };
        let (writer, guard) = crate::log_writer::start(std::io::stderr());
        let json = matches!(self.log_format, LogFormat::Json);
        subscriber(&spec, json, &writer).init();
        install_panic_hook(writer.clone());
        // Function lines reach the node's log when its level lets their events through.
        let log = if !tracing::event_enabled!(target: FUNCTION_TARGET, tracing::Level::INFO) {
            NodeLog::Off
        } else if json {
            NodeLog::Json(writer)
        } else {
            NodeLog::Events
        };
        nimbus_core::logging::install_function_log(Box::new(NodeFunctionLog {
            log,
            store: LogCapture::global(),
        }));
        Ok(LogGuard {
            _traces: traces,
            _writer: guard,
        })
    }
}

/// The target of the node log's line for a panic.
const PANIC_TARGET: &str = "nimbus::panic";

thread_local! {
    /// Set while this thread's panic is being logged: a panic inside the logging itself
    /// then takes Rust's default report instead of looping.
    static REPORTING_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes a panic a line of the node's log (an `error` with its message, place, thread
/// and, under `RUST_BACKTRACE`, the backtrace) instead of Rust's default text on stderr,
/// which would break a JSON log's one object per line. A panic is caught where a fault can
/// be contained (a wasm guest's host call, a connection's task), so the node goes on and
/// the line is what is left of it. The log writer's own thread, a panic while one is being
/// logged, and a log that lets no error through keep the default report.
fn install_panic_hook(writer: crate::log_writer::LineWriter) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        // A thread whose locals are gone (a panic in their destructors) cannot say it is
        // already reporting: the default report then.
        let own = name != crate::log_writer::THREAD_NAME
            && tracing::event_enabled!(target: PANIC_TARGET, tracing::Level::ERROR)
            && REPORTING_PANIC
                .try_with(|r| !r.replace(true))
                .unwrap_or(false);
        if !own {
            return default(info);
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message");
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(target: PANIC_TARGET, thread = name, location, %backtrace, "panicked: {message}");
        } else {
            tracing::error!(target: PANIC_TARGET, thread = name, location, "panicked: {message}");
        }
        // Out before an abort that may follow (a panic while unwinding), as the default
        // report would be; bounded, so that a stalled stderr does not hold the panic.
        writer.flush_within(std::time::Duration::from_millis(100));
        let _ = REPORTING_PANIC.try_with(|r| r.set(false));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's subscriber says how verbose it is, so that disabled `debug!` and
    /// `trace!` calls (and the `log` crate's) are skipped without asking each layer.
    #[test]
    fn the_subscriber_hints_its_most_verbose_level() {
        let (writer, _guard) = crate::log_writer::start(std::io::sink());
        for (spec, json, hint) in [
            ("info", true, LevelFilter::INFO),
            ("info", false, LevelFilter::INFO),
            ("warn,nimbus_gateway=debug", true, LevelFilter::DEBUG),
            ("error", false, LevelFilter::ERROR),
        ] {
            let subscriber = subscriber(spec, json, &writer);
            assert_eq!(
                tracing::Subscriber::max_level_hint(&subscriber),
                Some(hint),
                "{spec} json={json}"
            );
        }
    }
}
