//! Reading a function's log back.

use std::{collections::VecDeque, io, path::Path, time::Duration};

use super::{LogLine, from_millis, segment};

/// Which lines a query wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Lines logged at or after this time (epoch ms).
    pub since: Option<u64>,
    /// Lines logged at or before this time (epoch ms).
    pub until: Option<u64>,
    /// Lines of this invocation only.
    pub request_id: Option<String>,
    /// Lines containing this text (case-sensitive).
    pub filter: Option<String>,
    /// Most lines answered: the newest that match, still oldest first. Fewer when their
    /// text exceeds [`Query::MAX_BYTES`].
    pub limit: usize,
}

impl Query {
    /// The default and largest limit.
    pub const DEFAULT_LIMIT: usize = 10_000;
    /// Most bytes of message text one answer holds (CloudWatch Logs answers at most 1 MB
    /// a call; lines are up to 256 KiB, so 10,000 of them would be 2.5 GB): the newest
    /// lines that fit.
    pub const MAX_BYTES: usize = 8 * 1024 * 1024;

    /// Whether `line` is one the query wants.
    pub fn matches(&self, line: &LogLine) -> bool {
        self.since.is_none_or(|since| line.time >= since)
            && self.until.is_none_or(|until| line.time <= until)
            && self
                .request_id
                .as_deref()
                .is_none_or(|id| line.request_id.as_deref() == Some(id))
            && self
                .filter
                .as_deref()
                .is_none_or(|text| line.message.contains(text))
    }

    /// Whether a raw stored line may match: a cheap look before parsing it. Only text
    /// that JSON stores as it is can be looked for in the raw line.
    fn may_match(&self, raw: &[u8]) -> bool {
        let stored_verbatim = |s: &str| {
            !s.bytes()
                .any(|b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f)
        };
        [self.request_id.as_deref(), self.filter.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| stored_verbatim(s))
            .all(|s| contains(raw, s.as_bytes()))
    }
}

impl Default for Query {
    fn default() -> Self {
        Query {
            since: None,
            until: None,
            request_id: None,
            filter: None,
            limit: Query::DEFAULT_LIMIT,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Where a line ends in a function's log: its segment and the byte offset after it.
/// Later lines have greater positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The segment's number.
    pub segment: u64,
    /// The offset just after the line.
    pub offset: u64,
}

/// What a query found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// The matching lines, oldest first.
    pub lines: Vec<LogLine>,
    /// The end of the log as the query read it: lines followed after it are new.
    pub end: Position,
}

/// A segment last written this long before `since` holds no line the query wants (the
/// margin covers lines stamped a little before they were written).
const MTIME_MARGIN: Duration = Duration::from_secs(60);

/// Runs `query` over the function log in `dir`.
pub(crate) fn run(dir: &Path, query: &Query) -> io::Result<QueryResult> {
    let segments = segment::list(dir)?;
    let limit = query.limit.clamp(1, Query::DEFAULT_LIMIT);
    let mut lines: VecDeque<LogLine> = VecDeque::new();
    let mut bytes = 0;
    let mut end = Position::default();
    let last = segments.len().saturating_sub(1);
    for (i, (seq, path)) in segments.iter().enumerate() {
        if i < last
            && let Some(since) = query.since
            && let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified())
            && modified + MTIME_MARGIN < from_millis(since)
        {
            continue;
        }
        let data = match std::fs::read(path) {
            Ok(data) => data,
            // Removed for retention since it was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // A last line without its newline is still being written: it is not there yet.
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        end = Position {
            segment: *seq,
            offset: complete as u64,
        };
        for raw in data[..complete].split(|&b| b == b'\n') {
            if raw.is_empty() || !query.may_match(raw) {
                continue;
            }
            let Ok(line) = serde_json::from_slice::<LogLine>(raw) else {
                continue;
            };
            if query.matches(&line) {
                bytes += line.message.len();
                lines.push_back(line);
                while lines.len() > limit || (bytes > Query::MAX_BYTES && lines.len() > 1) {
                    if let Some(old) = lines.pop_front() {
                        bytes -= old.message.len();
                    }
                }
            }
        }
    }
    Ok(QueryResult {
        lines: lines.into(),
        end,
    })
}
