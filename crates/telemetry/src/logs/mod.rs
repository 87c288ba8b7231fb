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
    /// The time as RFC 3339 with milliseconds (`2024-05-01T12:00:00.123Z`); times after
    /// the year 9999 as its last millisecond.
    pub fn rfc3339(&self) -> String {
        // A line read back from a damaged segment may carry any time, and one past the
        // year 9999 has no four-digit year: humantime fails to write it, which
        // `to_string` turns into a panic.
        humantime::format_rfc3339_millis(from_millis(self.time.min(LAST_RFC3339_MILLIS)))
            .to_string()
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

/// The last millisecond RFC 3339 can write, 9999-12-31T23:59:59.999Z, in epoch ms.
const LAST_RFC3339_MILLIS: u64 = 253_402_300_799_999;

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
/// (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.5+02:00`; UTC without an offset), a
/// duration before `now` (`10m`, `1h 30m`), or epoch milliseconds.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(from_millis(ms));
    }
    if let Some(t) = parse_rfc3339(text) {
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

/// An RFC 3339 time with any offset, or without one (then UTC, as `2024-05-01 12:00:00`
/// always was here); `None` when `text` is not one or is before 1970.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    // Everything after `YYYY-MM-DDTHH:MM:SS` is an optional fraction, then the offset.
    let offsetless = text.as_bytes().get(19..).is_some_and(|rest| match rest {
        [] => true,
        [b'.', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    });
    let utc;
    let text = if offsetless {
        utc = format!("{text}Z");
        &utc
    } else {
        text
    };
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let seconds = u64::try_from(t.unix_timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::new(seconds, t.nanosecond()))
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
    fn times_parse_with_any_offset() {
        let now = from_millis(1_700_000_000_000);
        // 2024-05-01T10:00:00Z.
        let ten = 1_714_557_600_000;
        for (text, ms) in [
            ("2024-05-01T12:00:00+02:00", ten),
            ("2024-05-01T12:00:00.000+02:00", ten),
            ("2024-05-01T05:30:00.250-04:30", ten + 250),
            ("2024-05-01t10:00:00.25z", ten + 250),
            ("2024-05-01T10:00:00.123456789Z", ten + 123),
            ("2024-05-01T10:00:00+00:00", ten),
            ("2024-05-01T10:00:00-00:00", ten),
            ("2024-05-01 10:00:00", ten),
            ("2024-05-01T10:00:00.5", ten + 500),
            ("2024-05-02T00:30:00+14:30", ten),
        ] {
            assert_eq!(parse_time(text, now).map(to_millis), Ok(ms), "{text}");
        }
        for bad in [
            "2024-05-01T12:00:00+2",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01T12:00:00.000+02:00x",
            "2024-05-01T12:00:00 +02:00",
            "2024-05-01T12:00:00.",
            "2024-05-01T12:00:00.+02:00",
            "2024-05-01T12:00",
            "2024-13-01T12:00:00Z",
            "2024-02-30T12:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T01:00:00+02:00",
            "2024-05-01T12:00:00Zulu",
            "2024-05-01T12:00:00é",
        ] {
            let err = parse_time(bad, now).unwrap_err();
            assert!(err.contains("not a time"), "{bad}: {err}");
        }
    }

    #[test]
    fn any_stored_time_can_be_written() {
        let line = |time| LogLine {
            time,
            request_id: None,
            message: "m".to_owned(),
        };
        assert_eq!(
            line(1_700_000_000_123).rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(line(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        for time in [253_402_300_800_000, u64::MAX] {
            assert_eq!(line(time).rfc3339(), "9999-12-31T23:59:59.999Z");
            assert_eq!(line(time).to_json()["timestamp"], time);
        }
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
