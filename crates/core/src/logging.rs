//! How a function's invocations log, as Lambda's `LoggingConfig` says: plain text lines
//! (`START`, `END`, `REPORT`) or Lambda's JSON format with application and system log
//! levels, and the JSON records of that format.
//!
//! It is also where function log lines leave the part that makes them (the dispatcher's
//! `START`/`END`/`REPORT`, a runtime's copy of the function's output): [`write_lines`]
//! hands them to the [`FunctionLog`] the node installed, which puts them in the node's
//! log and its log store directly, several lines at once. Without one (a library user, a
//! test) they are `tracing` events with the target [`FUNCTION_TARGET`] and the fields
//! `function` and `request_id` (`-` for none), as [`FunctionLines::emit_events`] makes
//! them.

use std::{fmt, str::FromStr, sync::OnceLock, time::SystemTime};

use serde::Serialize;
use serde_json::json;

/// The format of a function's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lambda's text lines: `START RequestId: ...`, the function's output as it prints
    /// it, `END`, `REPORT`.
    #[default]
    Text,
    /// Lambda's JSON format: platform records (`platform.start`, `platform.report`) and
    /// the function's lines as JSON objects.
    Json,
}

/// Levels of a function's own log lines (Lambda's `ApplicationLogLevel`), least severe
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApplicationLogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// The default.
    Info,
    /// Warnings.
    Warn,
    /// Errors.
    Error,
    /// Fatal errors only.
    Fatal,
}

/// Levels of the platform's records (Lambda's `SystemLogLevel`), least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SystemLogLevel {
    /// Everything the platform records.
    Debug,
    /// The default: `platform.start` and `platform.report` among them.
    Info,
    /// Warnings only: no per-invocation records.
    Warn,
}

/// A level name that is not one of the enum's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLevel;

impl ApplicationLogLevel {
    /// Every level, least severe first.
    pub const ALL: [ApplicationLogLevel; 6] = [
        ApplicationLogLevel::Trace,
        ApplicationLogLevel::Debug,
        ApplicationLogLevel::Info,
        ApplicationLogLevel::Warn,
        ApplicationLogLevel::Error,
        ApplicationLogLevel::Fatal,
    ];

    /// The name Lambda uses (`INFO`).
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationLogLevel::Trace => "TRACE",
            ApplicationLogLevel::Debug => "DEBUG",
            ApplicationLogLevel::Info => "INFO",
            ApplicationLogLevel::Warn => "WARN",
            ApplicationLogLevel::Error => "ERROR",
            ApplicationLogLevel::Fatal => "FATAL",
        }
    }
}

/// `FromStr` (any case) and `Display` by the names `as_str` gives, for a level enum with
/// an `ALL` list.
macro_rules! level_names {
    ($level:ident) => {
        impl FromStr for $level {
            type Err = UnknownLevel;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|l| l.as_str().eq_ignore_ascii_case(s))
                    .ok_or(UnknownLevel)
            }
        }

        impl fmt::Display for $level {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

level_names!(ApplicationLogLevel);

impl SystemLogLevel {
    /// Every level, least severe first.
    pub const ALL: [SystemLogLevel; 3] = [
        SystemLogLevel::Debug,
        SystemLogLevel::Info,
        SystemLogLevel::Warn,
    ];

    /// The name Lambda uses (`INFO`).
    pub fn as_str(self) -> &'static str {
        match self {
            SystemLogLevel::Debug => "DEBUG",
            SystemLogLevel::Info => "INFO",
            SystemLogLevel::Warn => "WARN",
        }
    }
}

level_names!(SystemLogLevel);

/// How a function logs (Lambda's `LoggingConfig`). Levels apply to the JSON format only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LoggingConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// The least severe of the function's own lines that are kept (JSON only; default
    /// `INFO`).
    pub application_level: Option<ApplicationLogLevel>,
    /// The least severe platform records kept (JSON only; default `INFO`).
    pub system_level: Option<SystemLogLevel>,
}

impl LoggingConfig {
    /// Whether the log is JSON.
    pub fn is_json(&self) -> bool {
        self.format == LogFormat::Json
    }

    /// The application level in effect (`INFO` unless set).
    pub fn application_level(&self) -> ApplicationLogLevel {
        self.application_level.unwrap_or(ApplicationLogLevel::Info)
    }

    /// Whether the per-invocation platform lines (`START`/`REPORT` or their records,
    /// logged at INFO) are kept.
    pub fn keeps_invocation_records(&self) -> bool {
        !self.is_json() || self.system_level.unwrap_or(SystemLogLevel::Info) <= SystemLogLevel::Info
    }

    /// The variables Lambda sets for the runtime's own logging: with the JSON format,
    /// `AWS_LAMBDA_LOG_FORMAT=JSON` and `AWS_LAMBDA_LOG_LEVEL`.
    pub fn environment(&self) -> Vec<(&'static str, &'static str)> {
        if self.is_json() {
            vec![
                ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
                ("AWS_LAMBDA_LOG_LEVEL", self.application_level().as_str()),
            ]
        } else {
            Vec::new()
        }
    }
}

/// The figures of a `platform.report` record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportMetrics {
    /// How long the invocation ran, in milliseconds.
    pub duration_ms: f64,
    /// The billed duration: `duration_ms` rounded up.
    pub billed_duration_ms: u64,
    /// The function's memory size.
    pub memory_size_mb: u32,
    /// Peak memory, when measured.
    pub max_memory_used_mb: Option<u64>,
    /// The cold start's init duration.
    pub init_duration_ms: Option<f64>,
}

/// Milliseconds to two decimals, as Lambda reports them.
fn ms(value: f64) -> serde_json::Value {
    json!((value * 100.0).round() / 100.0)
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// The `platform.start` record of an invocation.
pub fn platform_start(time: SystemTime, request_id: &str, version: &str) -> String {
    json!({
        "time": rfc3339(time),
        "type": "platform.start",
        "record": { "requestId": request_id, "version": version },
    })
    .to_string()
}

/// The `platform.report` record of an invocation: `status` is `success`, `error` or
/// `timeout`; failures name their `errorType`.
pub fn platform_report(
    time: SystemTime,
    request_id: &str,
    metrics: &ReportMetrics,
    status: &str,
    error_type: Option<&str>,
) -> String {
    let mut figures = serde_json::Map::new();
    figures.insert("durationMs".into(), ms(metrics.duration_ms));
    figures.insert("billedDurationMs".into(), json!(metrics.billed_duration_ms));
    figures.insert("memorySizeMB".into(), json!(metrics.memory_size_mb));
    if let Some(used) = metrics.max_memory_used_mb {
        figures.insert("maxMemoryUsedMB".into(), json!(used));
    }
    if let Some(init) = metrics.init_duration_ms {
        figures.insert("initDurationMs".into(), ms(init));
    }
    let mut record = json!({
        "requestId": request_id,
        "metrics": figures,
        "status": status,
    });
    if let Some(error_type) = error_type {
        record["errorType"] = json!(error_type);
    }
    json!({
        "time": rfc3339(time),
        "type": "platform.report",
        "record": record,
    })
    .to_string()
}

/// A line of a function's own output as Lambda's JSON format writes one the runtime did
/// not format itself: `{"timestamp","level","requestId","message"}`.
pub fn application_line(
    time: SystemTime,
    level: ApplicationLogLevel,
    request_id: Option<&str>,
    message: &str,
) -> String {
    json!({
        "timestamp": rfc3339(time),
        "level": level.as_str(),
        "requestId": request_id,
        "message": message,
    })
    .to_string()
}

/// Appends `text` to `out` as a JSON string, as `serde_json` writes it. Log lines rarely
/// hold anything to escape, so those are checked (a branch-free pass the compiler does
/// many bytes at a time) and copied whole; the rest go through `serde_json`'s escaper,
/// which steps byte by byte.
pub fn push_json_str(out: &mut Vec<u8>, text: &str) {
    let plain = text.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// The `tracing` target of function log lines as events.
pub const FUNCTION_TARGET: &str = "function";

/// The figures of an invocation's `REPORT` line, which the node's log also carries as
/// fields of that line's record, for machines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportFields<'a> {
    /// The error type of a failed invocation.
    pub error_type: Option<&'a str>,
    /// How long the invocation ran, in milliseconds.
    pub duration_ms: f64,
    /// The cold start's init duration, in milliseconds.
    pub init_ms: Option<f64>,
    /// Whether the invocation started its instance.
    pub cold: bool,
    /// `success`, `error` or `timeout`.
    pub outcome: &'a str,
}

/// Lines of one function's log, in order, from one invocation (or from none: a process
/// function's output while it starts).
#[derive(Debug, Clone, Copy)]
pub struct FunctionLines<'a> {
    /// The function.
    pub function: &'a str,
    /// The invocation the lines belong to.
    pub request_id: Option<&'a str>,
    /// The lines, without line ends.
    pub lines: &'a [&'a str],
    /// A last line, the invocation's report, with its figures.
    pub report: Option<(&'a str, ReportFields<'a>)>,
}

impl FunctionLines<'_> {
    /// Every line, the report last.
    pub fn all(&self) -> impl Iterator<Item = &str> + '_ {
        self.lines
            .iter()
            .copied()
            .chain(self.report.as_ref().map(|(line, _)| *line))
    }

    /// The lines as `tracing` events (target [`FUNCTION_TARGET`], INFO, fields
    /// `function` and `request_id`, `-` for none; the report with its figures too).
    pub fn emit_events(&self) {
        let function = self.function;
        let request_id = self.request_id.unwrap_or("-");
        for line in self.lines {
            tracing::info!(target: FUNCTION_TARGET, function, request_id, "{line}");
        }
        if let Some((line, fields)) = &self.report {
            tracing::info!(
                target: FUNCTION_TARGET,
                function,
                request_id,
                error_type = fields.error_type,
                duration_ms = fields.duration_ms,
                init_ms = fields.init_ms,
                cold = fields.cold,
                outcome = fields.outcome,
                "{line}"
            );
        }
    }
}

/// Where function log lines go on a node: its log and its log store.
pub trait FunctionLog: Send + Sync + 'static {
    /// Takes lines of one function's log; must not block for long (it is called on the
    /// request's path).
    fn write(&self, lines: &FunctionLines<'_>);
}

static FUNCTION_LOG: OnceLock<Box<dyn FunctionLog>> = OnceLock::new();

/// Installs the process's function log; `false` when one already was.
pub fn install_function_log(log: Box<dyn FunctionLog>) -> bool {
    FUNCTION_LOG.set(log).is_ok()
}

/// Writes function log lines: to the installed [`FunctionLog`], or as `tracing` events
/// when none is installed.
pub fn write_lines(lines: &FunctionLines<'_>) {
    if lines.lines.is_empty() && lines.report.is_none() {
        return;
    }
    match FUNCTION_LOG.get() {
        Some(log) => log.write(lines),
        None => lines.emit_events(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn json_strings_are_written_as_serde_json_writes_them() {
        let long_plain = "START RequestId: 8c1f Version: $LATEST é ✓ ".repeat(9);
        let texts = [
            "",
            "plain",
            long_plain.as_str(),
            "a \"quote\"",
            "back\\slash",
            "tab\tand\nnewline\r",
            "\u{0}\u{1f} controls, \u{7f} kept",
            "ends in a quote\"",
        ];
        for text in texts {
            let mut ours = b"prefix".to_vec();
            push_json_str(&mut ours, text);
            let mut theirs = b"prefix".to_vec();
            serde_json::to_writer(&mut theirs, text).unwrap();
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn records_have_lambdas_shape() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let start: serde_json::Value =
            serde_json::from_str(&platform_start(t, "r1", "$LATEST")).unwrap();
        assert_eq!(
            start,
            json!({"time": "2023-11-14T22:13:20.123Z", "type": "platform.start",
                   "record": {"requestId": "r1", "version": "$LATEST"}})
        );
        let metrics = ReportMetrics {
            duration_ms: 12.345,
            billed_duration_ms: 13,
            memory_size_mb: 128,
            max_memory_used_mb: Some(40),
            init_duration_ms: Some(101.0),
        };
        let report: serde_json::Value = serde_json::from_str(&platform_report(
            t,
            "r1",
            &metrics,
            "timeout",
            Some("Sandbox.Timedout"),
        ))
        .unwrap();
        assert_eq!(report["type"], "platform.report");
        assert_eq!(
            report["record"],
            json!({"requestId": "r1", "status": "timeout", "errorType": "Sandbox.Timedout",
                   "metrics": {"durationMs": 12.35, "billedDurationMs": 13, "memorySizeMB": 128,
                               "maxMemoryUsedMB": 40, "initDurationMs": 101.0}})
        );
        let line: serde_json::Value = serde_json::from_str(&application_line(
            t,
            ApplicationLogLevel::Info,
            Some("r1"),
            "hi",
        ))
        .unwrap();
        assert_eq!(
            line,
            json!({"timestamp": "2023-11-14T22:13:20.123Z", "level": "INFO", "requestId": "r1", "message": "hi"})
        );
    }

    #[test]
    fn levels_and_environment() {
        assert_eq!("warn".parse(), Ok(ApplicationLogLevel::Warn));
        assert_eq!("VERBOSE".parse::<SystemLogLevel>(), Err(UnknownLevel));
        let text = LoggingConfig::default();
        assert!(text.environment().is_empty());
        assert!(text.keeps_invocation_records());
        let json = LoggingConfig {
            format: LogFormat::Json,
            application_level: Some(ApplicationLogLevel::Debug),
            system_level: Some(SystemLogLevel::Warn),
        };
        assert_eq!(
            json.environment(),
            [
                ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
                ("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
            ]
        );
        assert!(!json.keeps_invocation_records());
    }
}
