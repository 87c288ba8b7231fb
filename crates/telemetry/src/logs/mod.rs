//! The per-function log store: every line a function's invocations log (Lambda's `START`,
//! `END` and `REPORT` lines and the function's own output), kept per function in the data
//! directory, queried by time, request id and text, and followed live.
//!
//! - [`LogStore`] owns `DATA/logs/<function>/`: append-only segment files of JSON lines,
//!   written by a thread of its own (a request never waits on the disk), rotated by size,
//!   and bounded per function by total size and age ([`Retention`]).
//! - [`LogStore::query`] reads a function's lines back, oldest first;
//!   [`LogStore::subscribe`] follows the lines written from now on.
//! - [`LogCapture`] puts function log lines ([`nimbus_core::logging::FunctionLines`], as
//!   the node's [`nimbus_core::logging::FunctionLog`] hands them on) into the store
//!   attached to it. It exists before the data directory is known; the node attaches its
//!   store once it has opened it.
//!
//! The store knows nothing of HTTP: the admin API and `nimbus logs` are built on it
//! elsewhere.
//!
//! ```no_run
//! use nimbus_telemetry::logs::{LogStore, Query, Retention};
//!
//! let store = LogStore::open("/tmp/nimbus-data/logs".as_ref(), Retention::default())?;
//! store.append("hello", Some("req-1"), "START RequestId: req-1 Version: $LATEST");
//! store.flush();
//! let found = store.query("hello", &Query { request_id: Some("req-1".into()), ..Query::default() })?;
//! assert_eq!(found.lines.len(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

mod capture;
mod query;
mod segment;
mod store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use capture::LogCapture;
pub use query::{Position, Query, QueryResult};
pub use store::{Followed, LogStore};

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was logged, in milliseconds since the Unix epoch.
    pub time: u64,
    /// The invocation it belongs to; `None` for lines logged outside one (a process
    /// function's output while it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The line.
    pub message: String,
}

impl LogLine {
    /// The time as RFC 3339 with milliseconds (`2024-05-01T12:00:00.123Z`).
    pub fn rfc3339(&self) -> String {
        humantime::format_rfc3339_millis(from_millis(self.time)).to_string()
    }

    /// The line as the admin API answers it: `{"time", "timestamp", "request_id",
    /// "message"}` with `time` in RFC 3339 and `timestamp` in epoch milliseconds.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "time": self.rfc3339(),
            "timestamp": self.time,
            "request_id": self.request_id,
            "message": self.message,
        })
    }
}

/// How much of each function's log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most bytes a function's log may hold; the oldest segments go first. The newest
    /// segment is never removed for size, so a function's directory holds at most this
    /// plus one segment.
    pub max_bytes: u64,
    /// Lines older than this are removed (a whole segment at a time, once its newest line
    /// is older).
    pub max_age: Duration,
}

impl Retention {
    /// The default size bound per function: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    /// The default age bound: 7 days.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Largest segment file.
    const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
    /// Smallest segment file, so that a tiny bound does not mean a file per line.
    const MIN_SEGMENT_BYTES: u64 = 1024;

    /// Bytes after which a segment is closed and a new one started: an eighth of the size
    /// bound, between 1 KiB and 8 MiB.
    pub fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(Self::MIN_SEGMENT_BYTES, Self::MAX_SEGMENT_BYTES)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }
}

/// Where the store reads the time: the system clock, or a test's.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Whether `name` can be a function's directory: Lambda's function names (letters,
/// digits, `-`, `_`), 1 to 64 of them. Anything else is never a path.
pub(crate) fn is_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A point in time as `--since` and `--until` take it: an RFC 3339 time
/// (`2024-05-01T12:00:00Z`), a duration before `now` (`10m`, `1h 30m`), or epoch
/// milliseconds.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(from_millis(ms));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(text) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("{text:?} reaches back before 1970"));
    }
    Err(format!(
        "{text:?} is not a time: expected a duration before now such as 10m or 2h, an RFC 3339 time such as 2024-05-01T12:00:00Z, or epoch milliseconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_three_ways() {
        let now = from_millis(1_700_000_000_000);
        assert_eq!(
            parse_time("10m", now),
            Ok(from_millis(1_700_000_000_000 - 600_000))
        );
        assert_eq!(
            parse_time("1700000000123", now),
            Ok(from_millis(1_700_000_000_123))
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now),
            Ok(from_millis(1_700_000_000_000))
        );
        let err = parse_time("yesterday", now).unwrap_err();
        assert!(err.contains("not a time"), "{err}");
    }

    #[test]
    fn segments_scale_with_the_bound() {
        let r = |max_bytes| Retention {
            max_bytes,
            ..Retention::default()
        };
        assert_eq!(r(64 * 1024 * 1024).segment_bytes(), 8 * 1024 * 1024);
        assert_eq!(r(16 * 1024).segment_bytes(), 2048);
        assert_eq!(r(100).segment_bytes(), 1024);
    }

    #[test]
    fn only_function_names_are_directories() {
        assert!(is_function_name("my-fn_2"));
        for bad in ["", "..", "a/b", "a.b", "a b"] {
            assert!(!is_function_name(bad), "{bad}");
        }
    }
}
