//! The store: a writer thread that owns the files, and handles that spool lines to it.

use std::{
    collections::HashMap,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use nimbus_core::logging::push_json_str;
use tokio::sync::broadcast;

use super::{
    Clock, LogLine, Position, Query, QueryResult, Retention, SystemClock, is_function_name, query,
    segment::FunctionLog, to_millis,
};
use crate::spool::Spool;

/// Bytes of spooled lines waiting for the writer before loggers wait for it.
const SPOOLED_BYTES: usize = 16 * 1024 * 1024;
/// New lines a follower may fall behind by before it misses some.
const FOLLOW_BUFFER: usize = 4096;
/// How long [`LogStore::flush`] waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(10);
/// How long the writer lets lines gather after writing what it took: resting, it is
/// woken by no line, and a line reaches the store and its followers within this much of
/// the last take.
const GATHER: Duration = Duration::from_millis(20);

/// A line as a follower gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The line.
    pub line: LogLine,
    /// Where it ends in the function's log (compare with [`QueryResult::end`]).
    pub position: Position,
}

/// Lines of one function's log, stamped with one time, as they wait in the spool: the
/// function's name, the time, the request id and each line, every string after its
/// length (`u64`, little-endian; `u64::MAX` for no request id).
struct Spooled<'a> {
    function: &'a str,
    time: u64,
    request_id: Option<&'a str>,
    lines: SpooledLines<'a>,
}

/// A record's lines, read as they are iterated, without a vector per record.
struct SpooledLines<'a> {
    bytes: &'a [u8],
    left: u64,
}

impl<'a> Iterator for SpooledLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = u64_of(&mut self.bytes)?;
        str_of(&mut self.bytes, len)
    }
}

fn u64_of(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*head))
}

fn str_of<'a>(bytes: &mut &'a [u8], len: u64) -> Option<&'a str> {
    let (s, rest) = bytes.split_at_checked(usize::try_from(len).ok()?)?;
    *bytes = rest;
    std::str::from_utf8(s).ok()
}

const NO_REQUEST_ID: u64 = u64::MAX;

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

impl<'a> Spooled<'a> {
    /// Appends a record to `buf`.
    fn encode<'l>(
        buf: &mut Vec<u8>,
        function: &str,
        time: u64,
        request_id: Option<&str>,
        lines: impl IntoIterator<Item = &'l str>,
    ) {
        put_str(buf, function);
        buf.extend_from_slice(&time.to_le_bytes());
        match request_id {
            Some(id) => put_str(buf, id),
            None => buf.extend_from_slice(&NO_REQUEST_ID.to_le_bytes()),
        }
        let count_at = buf.len();
        buf.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        for line in lines {
            put_str(buf, line);
            count += 1;
        }
        buf[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    }

    /// The next record of `bytes`, advancing past it; `None` at the end.
    fn decode(bytes: &mut &'a [u8]) -> Option<Spooled<'a>> {
        let len = u64_of(bytes)?;
        let function = str_of(bytes, len)?;
        let time = u64_of(bytes)?;
        let request_id = match u64_of(bytes)? {
            NO_REQUEST_ID => None,
            len => Some(str_of(bytes, len)?),
        };
        let count = u64_of(bytes)?;
        let start = *bytes;
        // Stepped over here, read (and checked as UTF-8) as they are iterated.
        for _ in 0..count {
            let len = u64_of(bytes)?;
            *bytes = bytes.get(usize::try_from(len).ok()?..)?;
        }
        let lines = SpooledLines {
            bytes: &start[..start.len() - bytes.len()],
            left: count,
        };
        Some(Spooled {
            function,
            time,
            request_id,
            lines,
        })
    }
}

/// Appends a line as it is kept on disk: [`LogLine`]'s JSON form, the fields in its
/// order, the request id left out when there is none.
fn encode_line(out: &mut Vec<u8>, time: u64, request_id: Option<&str>, message: &str) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"time\":{time}");
    if let Some(id) = request_id {
        out.extend_from_slice(b",\"request_id\":");
        push_json_str(out, id);
    }
    out.extend_from_slice(b",\"message\":");
    push_json_str(out, message);
    out.extend_from_slice(b"}\n");
}

#[derive(Default)]
struct Followers {
    closed: bool,
    by_function: HashMap<String, broadcast::Sender<Arc<Followed>>>,
}

impl Followers {
    /// What [`LogStore::subscribe`] does, under the lock.
    fn subscribe(&mut self, function: &str) -> broadcast::Receiver<Arc<Followed>> {
        if self.closed {
            return broadcast::channel(1).0.subscribe();
        }
        self.by_function
            .entry(function.to_owned())
            .or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Inner {
    dir: PathBuf,
    spool: Arc<Spool>,
    followers: Arc<Mutex<Followers>>,
    clock: Arc<dyn Clock>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    /// Waits (up to [`FLUSH_WAIT`]) for the writer to write what is left and stop, so
    /// that a store opened on the same directory next does not meet its last sweep
    /// removing segments while it reads them.
    fn drop(&mut self) {
        self.spool.close();
        let Some(writer) = self.writer.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        while !writer.is_finished() {
            if std::time::Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = writer.join();
    }
}

/// The per-function log store in a directory (`DATA/logs`). Cloning gives another handle
/// to the same store; its writer thread ends when the last handle is dropped, after
/// writing every line it was given, and dropping the last handle waits for that.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating it if needed) the store in `dir`, applies `retention` to what is
    /// there, and starts its writer thread.
    ///
    /// # Errors
    /// When the directory cannot be created or read.
    pub fn open(dir: &Path, retention: Retention) -> io::Result<LogStore> {
        LogStore::open_with_clock(dir, retention, Arc::new(SystemClock))
    }

    /// [`LogStore::open`] with the time read from `clock`.
    ///
    /// # Errors
    /// When the directory cannot be created or read.
    pub fn open_with_clock(
        dir: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let mut logs = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_function_name(&name) && entry.file_type()?.is_dir() {
                logs.insert(name, FunctionLog::load(entry.path())?);
            }
        }
        let spool = Arc::new(Spool::new(SPOOLED_BYTES));
        let followers = Arc::new(Mutex::new(Followers::default()));
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            retention,
            clock: Arc::clone(&clock),
            logs,
            followers: Arc::clone(&followers),
            failing: false,
        };
        writer.sweep();
        writer.trim();
        let writer = std::thread::Builder::new()
            .name("nimbus-log-store".to_owned())
            .spawn({
                let spool = Arc::clone(&spool);
                move || writer.run(&spool)
            })?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                spool,
                followers,
                clock,
                writer: Some(writer),
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> std::time::SystemTime {
        self.inner.clock.now()
    }

    /// Queues a line of `function`'s log, stamped now. It is on disk and sent to
    /// followers within a few milliseconds. Lines of names that cannot be functions are
    /// dropped. Waits only when the writer is [`SPOOLED_BYTES`] behind.
    pub fn append(&self, function: &str, request_id: Option<&str>, message: &str) {
        self.append_lines(function, request_id, [message]);
    }

    /// Queues several lines of `function`'s log, in order, stamped now: what
    /// [`LogStore::append`] does for each, handed to the writer at once.
    pub fn append_lines<'a>(
        &self,
        function: &str,
        request_id: Option<&str>,
        lines: impl IntoIterator<Item = &'a str>,
    ) {
        if !is_function_name(function) {
            return;
        }
        let mut lines = lines.into_iter().peekable();
        if lines.peek().is_none() {
            return;
        }
        let time = to_millis(self.inner.clock.now());
        self.inner
            .spool
            .append(|buf| Spooled::encode(buf, function, time, request_id, lines));
    }

    /// Waits until every line queued before this call is on disk and retention has been
    /// applied (or up to 10 s).
    pub fn flush(&self) {
        let _ = self.inner.spool.flush().recv_timeout(FLUSH_WAIT);
    }

    /// Reads `function`'s lines that `query` wants, oldest first. Reads files: call it
    /// off the async runtime's threads.
    ///
    /// # Errors
    /// When a segment cannot be read.
    pub fn query(&self, function: &str, query: &Query) -> io::Result<QueryResult> {
        if !is_function_name(function) {
            return Ok(QueryResult::default());
        }
        query::run(&self.inner.dir.join(function), query)
    }

    /// Follows `function`'s log: every line written from now on. To follow after a
    /// history, subscribe first, then query, then skip followed lines at or before the
    /// query's [`end`](QueryResult::end). The receiver ends when the store stops
    /// following ([`LogStore::close_followers`]).
    pub fn subscribe(&self, function: &str) -> broadcast::Receiver<Arc<Followed>> {
        lock(&self.inner.followers).subscribe(function)
    }

    /// Ends every follow, now and later: at shutdown, so that open follows do not hold
    /// the node up.
    pub fn close_followers(&self) {
        let mut followers = lock(&self.inner.followers);
        followers.closed = true;
        followers.by_function.clear();
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    retention: Retention,
    clock: Arc<dyn Clock>,
    logs: HashMap<String, FunctionLog>,
    followers: Arc<Mutex<Followers>>,
    /// Set after a failure was logged, until a write succeeds again (one warning per
    /// outage, not one per line).
    failing: bool,
}

impl Writer {
    /// How often retention is applied when nothing asks for it.
    fn sweep_interval(&self) -> Duration {
        (self.retention.max_age / 16).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    fn run(mut self, spool: &Spool) {
        let _exit = spool.writer_exit();
        let interval = self.sweep_interval();
        let mut last_sweep = self.clock.now();
        let mut taken = Vec::new();
        loop {
            let took = spool.take(&mut taken, interval);
            if !taken.is_empty() {
                self.write(&taken);
            }
            let now = self.clock.now();
            let due = now
                .duration_since(last_sweep)
                .is_ok_and(|since| since >= interval);
            if due || !took.flushes.is_empty() {
                self.sweep();
                last_sweep = now;
            }
            for done in took.flushes {
                let _ = done.send(());
            }
            if took.closed {
                break;
            }
            if !taken.is_empty() {
                spool.rest(GATHER);
            }
        }
    }

    /// Writes the spooled records in `batch`, flushes them, then sends them to followers.
    fn write(&mut self, mut batch: &[u8]) {
        // Every written line, borrowed from the batch, until the followers are known.
        let mut fresh = Vec::new();
        let mut encoded = Vec::with_capacity(256);
        while let Some(record) = Spooled::decode(&mut batch) {
            let Spooled {
                function,
                time,
                request_id,
                lines,
            } = record;
            // Checked when spooled; checked again before it names a directory.
            if !is_function_name(function) {
                continue;
            }
            if !self.logs.contains_key(function) {
                let log = FunctionLog::new(self.dir.join(function));
                self.logs.insert(function.to_owned(), log);
            }
            let Some(log) = self.logs.get_mut(function) else {
                continue;
            };
            let mut failed = None;
            for message in lines {
                encoded.clear();
                encode_line(&mut encoded, time, request_id, message);
                match log.append(&encoded, time, &self.retention) {
                    Ok(position) => fresh.push((function, time, request_id, message, position)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                self.failed(function, &e);
            }
        }
        self.flush_all();
        // The followers are looked up only now that the lines are on disk. A follower
        // subscribes (under this lock) before it reads its history: one not found here
        // subscribed after this lookup, so after the flush, and its history holds these
        // lines; one found here gets them here as well, and skips by position those its
        // history held. Looked up before the lines were written, a follower subscribing
        // in between would get them neither way.
        let mut followers = lock(&self.followers);
        followers
            .by_function
            .retain(|_, sender| sender.receiver_count() > 0);
        for (function, time, request_id, message, position) in fresh {
            let Some(sender) = followers.by_function.get(function) else {
                continue;
            };
            let line = LogLine {
                time,
                request_id: request_id.map(str::to_owned),
                message: message.to_owned(),
            };
            let _ = sender.send(Arc::new(Followed { line, position }));
        }
    }

    fn flush_all(&mut self) {
        let mut failed = None;
        for (function, log) in &mut self.logs {
            if let Err(e) = log.flush() {
                failed = Some((function.clone(), e));
            }
        }
        match failed {
            Some((function, e)) => self.failed(&function, &e),
            None => self.failing = false,
        }
    }

    fn failed(&mut self, function: &str, e: &io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::error!(function, error = %e, dir = %self.dir.display(), "cannot write a function's log; its lines are being lost");
        }
    }

    /// Removes lines past the age bound.
    fn sweep(&mut self) {
        let cutoff = self
            .clock
            .now()
            .checked_sub(self.retention.max_age)
            .map_or(0, to_millis);
        for (function, log) in &mut self.logs {
            if let Err(e) = log.sweep(cutoff) {
                tracing::warn!(function, error = %e, "cannot remove old log segments");
            }
        }
    }

    /// Removes the oldest segments past the size bound. Appends keep to it as they
    /// rotate; this applies it at start, to what a node with a larger bound left.
    fn trim(&mut self) {
        for (function, log) in &mut self.logs {
            if let Err(e) = log.trim(self.retention.max_bytes) {
                tracing::warn!(function, error = %e, "cannot remove old log segments");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::logs::from_millis;

    #[test]
    fn a_line_is_kept_as_log_lines_json_form() {
        for (request_id, message) in [
            (Some("8c1f-77"), "START RequestId: 8c1f-77 Version: $LATEST"),
            (None, "a \"quoted\"\ttab and \u{1} control"),
        ] {
            let mut ours = Vec::new();
            encode_line(&mut ours, 1_700_000_000_123, request_id, message);
            let line = LogLine {
                time: 1_700_000_000_123,
                request_id: request_id.map(str::to_owned),
                message: message.to_owned(),
            };
            let mut theirs = serde_json::to_vec(&line).unwrap();
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap()
            );
        }
    }

    /// A clock the test moves.
    struct TestClock(Mutex<SystemTime>);

    impl Clock for TestClock {
        fn now(&self) -> SystemTime {
            *lock(&self.0)
        }
    }

    impl TestClock {
        fn advance(&self, by: Duration) {
            *lock(&self.0) += by;
        }
    }

    fn dir_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn lines_come_back_by_request_text_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(Mutex::new(SystemTime::now())));
        let store =
            LogStore::open_with_clock(dir.path(), Retention::default(), clock.clone()).unwrap();
        let t0 = to_millis(clock.now());
        store.append("f", Some("r1"), "START RequestId: r1");
        store.append("f", Some("r1"), "hello \"world\"");
        clock.advance(Duration::from_secs(60));
        store.append("f", Some("r2"), "START RequestId: r2");
        store.append("g", Some("r3"), "other function");
        store.append("../x", None, "never stored");
        store.flush();

        let all = store.query("f", &Query::default()).unwrap();
        let messages: Vec<&str> = all.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "START RequestId: r1",
                "hello \"world\"",
                "START RequestId: r2"
            ]
        );
        assert_eq!(all.lines[0].time, t0);
        let by_id = Query {
            request_id: Some("r1".into()),
            ..Query::default()
        };
        assert_eq!(store.query("f", &by_id).unwrap().lines.len(), 2);
        let by_text = Query {
            filter: Some("\"world\"".into()),
            ..Query::default()
        };
        assert_eq!(
            store.query("f", &by_text).unwrap().lines[0].message,
            "hello \"world\""
        );
        let since = Query {
            since: Some(t0 + 30_000),
            ..Query::default()
        };
        assert_eq!(store.query("f", &since).unwrap().lines.len(), 1);
        let until = Query {
            until: Some(t0 + 30_000),
            ..Query::default()
        };
        assert_eq!(store.query("f", &until).unwrap().lines.len(), 2);
        let newest = Query {
            limit: 1,
            ..Query::default()
        };
        assert_eq!(
            store.query("f", &newest).unwrap().lines[0].message,
            "START RequestId: r2"
        );
        assert!(
            store
                .query("nope", &Query::default())
                .unwrap()
                .lines
                .is_empty()
        );
        let mut dirs: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        assert_eq!(dirs, ["f", "g"]);
    }

    #[test]
    fn the_size_bound_holds_and_drops_the_oldest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_bytes: 16 * 1024,
            ..Retention::default()
        };
        let store = LogStore::open(dir.path(), retention).unwrap();
        for i in 0..2000 {
            store.append("f", Some("r"), &format!("line {i:05} {}", "x".repeat(40)));
        }
        store.flush();
        let bytes = dir_bytes(&dir.path().join("f"));
        assert!(
            bytes <= retention.max_bytes + retention.segment_bytes() + 200,
            "{bytes} bytes kept"
        );
        let lines = store.query("f", &Query::default()).unwrap().lines;
        assert!(lines.len() < 2000);
        assert_eq!(
            lines.last().unwrap().message,
            format!("line 01999 {}", "x".repeat(40))
        );
        assert!(!lines[0].message.starts_with("line 00000"));
    }

    #[test]
    fn the_age_bound_removes_old_segments_now_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(Mutex::new(from_millis(1_600_000_000_000))));
        let retention = Retention {
            max_bytes: 8 * 1024,
            max_age: Duration::from_secs(3600),
        };
        let store = LogStore::open_with_clock(dir.path(), retention, clock.clone()).unwrap();
        // Several segments of old lines, then newer ones.
        for i in 0..100 {
            store.append("f", None, &format!("old {i} {}", "x".repeat(40)));
        }
        store.append("idle", None, "only line");
        clock.advance(Duration::from_secs(1800));
        for i in 0..10 {
            store.append("f", None, &format!("new {i}"));
        }
        store.flush();
        assert!(
            store.query("f", &Query::default()).unwrap().lines[0]
                .message
                .starts_with("old")
        );

        // Forty minutes on, the old lines are past the hour; the newer ones are not.
        clock.advance(Duration::from_secs(2400));
        store.flush();
        // Whole segments go: old lines that share the newest lines' segment stay.
        let lines = store.query("f", &Query::default()).unwrap().lines;
        let old = lines
            .iter()
            .filter(|l| l.message.starts_with("old"))
            .count();
        assert!(old < 30, "{old} old lines kept");
        assert_eq!(lines.len() - old, 10);
        assert!(
            store
                .query("idle", &Query::default())
                .unwrap()
                .lines
                .is_empty()
        );
        assert_eq!(dir_bytes(&dir.path().join("idle")), 0);
        drop(store);

        // A restart applies the bound to what it finds.
        clock.advance(Duration::from_secs(3600));
        let store = LogStore::open_with_clock(dir.path(), retention, clock.clone()).unwrap();
        assert!(
            store
                .query("f", &Query::default())
                .unwrap()
                .lines
                .is_empty()
        );
        store.append("f", None, "after restart");
        store.flush();
        assert_eq!(store.query("f", &Query::default()).unwrap().lines.len(), 1);
    }

    #[test]
    fn an_answer_holds_the_newest_lines_that_fit_its_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), Retention::default()).unwrap();
        let third = Query::MAX_BYTES / 3 + 1;
        for n in 0..4 {
            store.append("f", Some("r"), &format!("{n}{}", "x".repeat(third)));
        }
        store.flush();
        let lines = store.query("f", &Query::default()).unwrap().lines;
        let first: Vec<char> = lines
            .iter()
            .filter_map(|l| l.message.chars().next())
            .collect();
        assert_eq!(first, ['2', '3']);
        // A line larger than the bound on its own is still answered.
        store.append("f", Some("r"), &"y".repeat(Query::MAX_BYTES + 1));
        store.flush();
        let lines = store.query("f", &Query::default()).unwrap().lines;
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message.len(), Query::MAX_BYTES + 1);
    }

    #[test]
    fn followers_get_new_lines_after_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), Retention::default()).unwrap();
        store.append("f", Some("r1"), "before");
        store.flush();
        let mut follow = store.subscribe("f");
        store.append("f", Some("r2"), "between");
        let history = store.query("f", &Query::default()).unwrap();
        store.append("f", Some("r3"), "after");
        store.append("g", Some("r4"), "elsewhere");
        store.flush();
        let mut seen: Vec<String> = history.lines.iter().map(|l| l.message.clone()).collect();
        while let Ok(followed) = follow.try_recv() {
            if followed.position > history.end {
                seen.push(followed.line.message.clone());
            }
        }
        assert_eq!(seen, ["before", "between", "after"]);
        store.close_followers();
        assert!(matches!(
            follow.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert!(matches!(
            store.subscribe("f").try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_restart_starts_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), Retention::default()).unwrap();
        store.append("f", None, "one");
        store.flush();
        drop(store);
        let first = dir
            .path()
            .join("f")
            .join(crate::logs::segment::file_name(1));
        let mut data = std::fs::read(&first).unwrap();
        data.extend_from_slice(b"{\"time\":1,\"mess");
        std::fs::write(&first, data).unwrap();
        let store = LogStore::open(dir.path(), Retention::default()).unwrap();
        store.append("f", None, "two");
        store.flush();
        let lines = store.query("f", &Query::default()).unwrap();
        let messages: Vec<&str> = lines.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["one", "two"]);
        assert_eq!(lines.end.segment, 2);
    }

    #[test]
    fn a_line_longer_than_the_tail_read_at_start_keeps_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(Mutex::new(from_millis(1_600_000_000_000))));
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            ..Retention::default()
        };
        let store = LogStore::open_with_clock(dir.path(), retention, clock.clone()).unwrap();
        store.append("f", None, "short");
        // The segment's newest line is this one, not its first, and far longer than the
        // 64 KiB first read back at start.
        clock.advance(Duration::from_secs(7200));
        let long = "x".repeat(70_000);
        store.append("f", None, &long);
        store.flush();
        drop(store);

        clock.advance(Duration::from_secs(1800));
        let store = LogStore::open_with_clock(dir.path(), retention, clock.clone()).unwrap();
        let lines = store.query("f", &Query::default()).unwrap().lines;
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["short", long.as_str()]);
    }

    #[test]
    fn positions_keep_growing_after_the_age_bound_empties_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(Mutex::new(from_millis(1_600_000_000_000))));
        let retention = Retention {
            max_bytes: 8 * 1024,
            max_age: Duration::from_secs(3600),
        };
        let store = LogStore::open_with_clock(dir.path(), retention, clock.clone()).unwrap();
        // Longer than the line after, so that a log numbered afresh ends before it.
        store.append("f", None, &"before ".repeat(100));
        store.flush();
        let history = store.query("f", &Query::default()).unwrap();
        let mut follow = store.subscribe("f");

        clock.advance(Duration::from_secs(7200));
        store.flush();
        assert!(
            store
                .query("f", &Query::default())
                .unwrap()
                .lines
                .is_empty()
        );
        store.append("f", None, "after");
        store.flush();
        let followed = follow.try_recv().unwrap();
        assert_eq!(followed.line.message, "after");
        assert!(
            followed.position > history.end,
            "{:?} is not after {:?}",
            followed.position,
            history.end
        );
        assert_eq!(
            store.query("f", &Query::default()).unwrap().end,
            followed.position
        );
    }

    #[test]
    fn a_follower_arriving_while_a_batch_is_written_gets_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), Retention::default()).unwrap();
        // Holding the followers' lock holds the writer where it looks for followers.
        let mut followers = lock(&store.inner.followers);
        store.append("f", None, "racing");
        // The writer has the line on disk before it looks for followers, so it shows up
        // while the writer waits for the lock. (Looking first, the writer would wait with
        // nothing written, and this wait would fail.)
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        while store
            .query("f", &Query::default())
            .unwrap()
            .lines
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer looks for followers before it writes"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // A follower arrives now: it subscribes, then reads its history.
        let mut follow = followers.subscribe("f");
        let history = store.query("f", &Query::default()).unwrap();
        drop(followers);
        store.flush();

        let mut seen: Vec<String> = history.lines.iter().map(|l| l.message.clone()).collect();
        while let Ok(followed) = follow.try_recv() {
            if followed.position > history.end {
                seen.push(followed.line.message.clone());
            }
        }
        assert_eq!(seen, ["racing"]);
    }

    #[test]
    fn a_restart_with_a_smaller_size_bound_applies_it() {
        let dir = tempfile::tempdir().unwrap();
        let large = Retention {
            max_bytes: 64 * 1024,
            ..Retention::default()
        };
        let store = LogStore::open(dir.path(), large).unwrap();
        for i in 0..1000 {
            store.append("f", None, &format!("line {i:04} {}", "x".repeat(40)));
        }
        store.flush();
        drop(store);
        assert!(dir_bytes(&dir.path().join("f")) > 32 * 1024);

        let small = Retention {
            max_bytes: 16 * 1024,
            ..Retention::default()
        };
        let store = LogStore::open(dir.path(), small).unwrap();
        assert!(dir_bytes(&dir.path().join("f")) <= small.max_bytes);
        let lines = store.query("f", &Query::default()).unwrap().lines;
        assert_eq!(
            lines.last().unwrap().message,
            format!("line 0999 {}", "x".repeat(40))
        );
    }
}
