//! A guest's stdout and stderr: split into lines, written into the node's log tagged with
//! the function and request id, and kept as the invocation's log tail. With Lambda's JSON
//! log format each line becomes `{"timestamp","level","requestId","message"}` (a guest's
//! output is at level INFO, the platform's details at ERROR), and lines under the
//! function's application log level are dropped.

use std::{
    borrow::Cow,
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use nimbus_core::{
    ApplicationLogLevel, LoggingConfig,
    logging::{self, FunctionLines, application_line},
};
use tokio::io::AsyncWrite;
use wasmtime_wasi::{
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamResult},
};

/// How much of an invocation's output is kept for `X-Amz-Log-Type: Tail` (Lambda's 4 KB).
pub const LOG_TAIL_BYTES: usize = 4096;
/// Most output one invocation may write; the rest is dropped, so that a guest printing
/// in a loop cannot flood the node's log.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Longest line kept whole; a longer one is cut into lines of this size.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most capacity a stream's line buffer keeps between lines.
const KEPT_LINE_BYTES: usize = 1024;

#[derive(Default)]
struct State {
    function: String,
    /// With the JSON format, the least severe level kept.
    json: Option<ApplicationLogLevel>,
    request_id: Option<String>,
    /// The last invocation's request id, kept for its buffer.
    spare_id: String,
    /// Unfinished lines of stdout and stderr.
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
    tail_bytes: usize,
    written: usize,
    dropped: usize,
}

impl State {
    /// The line as the function's log format writes it, or `None` when its level is not
    /// kept.
    fn render<'a>(&self, level: ApplicationLogLevel, line: &'a str) -> Option<Cow<'a, str>> {
        match self.json {
            None => Some(Cow::Borrowed(line)),
            Some(least) if level < least => None,
            Some(_) => Some(Cow::Owned(application_line(
                std::time::SystemTime::now(),
                level,
                self.request_id.as_deref(),
                line,
            ))),
        }
    }

    fn log(&self, line: &str) {
        logging::write_lines(&FunctionLines {
            function: &self.function,
            request_id: self.request_id.as_deref(),
            lines: &[line],
            report: None,
        });
    }

    fn emit(&mut self, raw: &[u8]) {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches(['\n', '\r']);
        let Some(line) = self.render(ApplicationLogLevel::Info, line) else {
            return;
        };
        self.log(&line);
        self.tail_bytes += line.len() + 1;
        self.tail.push_back(line.into_owned());
        while self.tail_bytes > LOG_TAIL_BYTES && self.tail.len() > 1 {
            if let Some(front) = self.tail.pop_front() {
                self.tail_bytes -= front.len() + 1;
            }
        }
    }

    fn write(&mut self, stream: usize, mut bytes: &[u8]) {
        let room = MAX_OUTPUT_BYTES.saturating_sub(self.written);
        if bytes.len() > room {
            self.dropped += bytes.len() - room;
            bytes = &bytes[..room];
        }
        self.written += bytes.len();
        while !bytes.is_empty() {
            let (chunk, rest, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            let mut line = std::mem::take(&mut self.partial[stream]);
            line.extend_from_slice(chunk);
            while line.len() > MAX_LINE_BYTES {
                let rest = line.split_off(MAX_LINE_BYTES);
                self.emit(&line);
                line = rest;
            }
            if complete {
                self.emit(&line);
                self.keep_buffer(stream, line);
            } else {
                self.partial[stream] = line;
            }
        }
    }

    fn flush_partial(&mut self) {
        for stream in 0..2 {
            if !self.partial[stream].is_empty() {
                let line = std::mem::take(&mut self.partial[stream]);
                self.emit(&line);
                self.keep_buffer(stream, line);
            }
        }
    }

    /// Keeps an emitted line's buffer, emptied, for the stream's next line, so that a
    /// line written whole costs no allocation; one grown past [`KEPT_LINE_BYTES`] by a
    /// long line is shrunk.
    fn keep_buffer(&mut self, stream: usize, mut line: Vec<u8>) {
        line.clear();
        line.shrink_to(KEPT_LINE_BYTES);
        self.partial[stream] = line;
    }
}

/// The output of one instance, shared by its stdout and stderr.
#[derive(Clone)]
pub(crate) struct LogSink {
    state: Arc<Mutex<State>>,
}

impl LogSink {
    /// A sink for an instance of `function`, which logs as `logging` says.
    pub(crate) fn new(function: &str, logging: &LoggingConfig) -> LogSink {
        LogSink {
            state: Arc::new(Mutex::new(State {
                function: function.to_owned(),
                json: logging.is_json().then(|| logging.application_level()),
                ..State::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts collecting the output of invocation `request_id`.
    pub(crate) fn begin(&self, request_id: &str) {
        let mut state = self.lock();
        state.flush_partial();
        let mut id = std::mem::take(&mut state.spare_id);
        id.clear();
        id.push_str(request_id);
        state.request_id = Some(id);
        state.tail.clear();
        state.tail_bytes = 0;
        state.written = 0;
        state.dropped = 0;
    }

    /// Writes lines of the platform's own into the node's log only: details (a trap's
    /// backtrace) that would crowd the guest's own output out of the tail.
    pub(crate) fn detail(&self, text: &str) {
        let state = self.lock();
        for line in text.lines() {
            if let Some(line) = state.render(ApplicationLogLevel::Error, line) {
                state.log(&line);
            }
        }
    }

    /// Writes a line of the platform's own (a denied request) into the invocation's log.
    /// Notes count against the invocation's output limit like the guest's own output:
    /// a guest can make the host note something in a loop.
    pub(crate) fn note(&self, text: &str) {
        let mut state = self.lock();
        if text.len() > MAX_OUTPUT_BYTES.saturating_sub(state.written) {
            state.dropped += text.len();
            return;
        }
        state.written += text.len();
        for line in text.lines() {
            state.emit(line.as_bytes());
        }
    }

    /// Ends the invocation: flushes unfinished lines and returns the tail.
    pub(crate) fn end(&self) -> String {
        let mut state = self.lock();
        state.flush_partial();
        if state.dropped > 0 {
            let note = format!(
                "nimbus: {} bytes of output dropped (limit {MAX_OUTPUT_BYTES} bytes per invocation)",
                state.dropped
            );
            state.emit(note.as_bytes());
        }
        if let Some(id) = state.request_id.take() {
            state.spare_id = id;
        }
        let mut tail = String::with_capacity(state.tail_bytes);
        for (i, line) in state.tail.iter().enumerate() {
            if i > 0 {
                tail.push('\n');
            }
            tail.push_str(line);
        }
        if tail.len() > LOG_TAIL_BYTES {
            let mut cut = tail.len() - LOG_TAIL_BYTES;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
        tail
    }

    /// The guest's stdout.
    pub(crate) fn stdout(&self) -> GuestOutput {
        GuestOutput {
            sink: self.clone(),
            stream: 0,
        }
    }

    /// The guest's stderr.
    pub(crate) fn stderr(&self) -> GuestOutput {
        GuestOutput {
            sink: self.clone(),
            stream: 1,
        }
    }
}

/// One of a guest's output streams. Writes complete at once (they only append to
/// memory), so output is in the log before the invocation's report.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    sink: LogSink,
    stream: usize,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.sink.lock().write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE_BYTES)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.sink.lock().write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_tailed_and_bounded() {
        let sink = LogSink::new("f", &LoggingConfig::default());
        sink.begin("r1");
        let mut out = sink.stdout();
        let mut err = sink.stderr();
        OutputStream::write(&mut out, Bytes::from_static(b"one\ntw")).unwrap();
        OutputStream::write(&mut err, Bytes::from_static(b"err\n")).unwrap();
        OutputStream::write(&mut out, Bytes::from_static(b"o\nthree")).unwrap();
        assert_eq!(sink.end(), "one\nerr\ntwo\nthree");

        sink.begin("r2");
        let line = vec![b'x'; 1000];
        for _ in 0..2000 {
            OutputStream::write(&mut out, Bytes::from(line.clone())).unwrap();
            OutputStream::write(&mut out, Bytes::from_static(b"\n")).unwrap();
        }
        let tail = sink.end();
        assert!(tail.len() <= LOG_TAIL_BYTES);
        assert!(tail.ends_with("bytes per invocation)"), "{tail}");
        assert!(tail.contains("nimbus: "));

        // Notes the host writes for the guest count against the same limit.
        sink.begin("r3");
        let note = "n".repeat(1000);
        for _ in 0..2000 {
            sink.note(&note);
        }
        let state = sink.lock();
        assert!(state.written <= MAX_OUTPUT_BYTES, "{}", state.written);
        assert!(state.dropped >= 2000 * 1000 - MAX_OUTPUT_BYTES);
    }

    #[test]
    fn json_lines_are_wrapped_and_filtered_by_level() {
        let logging = |level| LoggingConfig {
            format: nimbus_core::LogFormat::Json,
            application_level: Some(level),
            system_level: None,
        };
        let sink = LogSink::new("f", &logging(ApplicationLogLevel::Info));
        sink.begin("r1");
        OutputStream::write(&mut sink.stdout(), Bytes::from_static(b"hello\n")).unwrap();
        let tail = sink.end();
        let line: serde_json::Value = serde_json::from_str(&tail).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["requestId"], "r1");
        assert_eq!(line["message"], "hello");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        // The next invocation's lines carry its own id, a longer one included.
        sink.begin("r2-longer-than-the-first");
        OutputStream::write(&mut sink.stdout(), Bytes::from_static(b"again\n")).unwrap();
        let line: serde_json::Value = serde_json::from_str(&sink.end()).unwrap();
        assert_eq!(line["requestId"], "r2-longer-than-the-first");
        assert_eq!(line["message"], "again");

        let quiet = LogSink::new("f", &logging(ApplicationLogLevel::Warn));
        quiet.begin("r2");
        OutputStream::write(&mut quiet.stdout(), Bytes::from_static(b"hidden\n")).unwrap();
        assert_eq!(quiet.end(), "");
    }
}
