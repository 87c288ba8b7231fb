//! The node log's writer: lines are formatted on the thread that logs them and written
//! to stderr by a thread of its own, so that a request never waits on the terminal or
//! the pipe.
//!
//! Loggers append their lines to a [`Spool`], and the writer takes them in bulk: under
//! load it writes every waiting line at once, then rests for [`REST`] while new lines
//! gather, so that a logging thread hands its line over without waking anyone and
//! without a heap object per line. Nothing is dropped: when [`SPOOLED_BYTES`] wait,
//! loggers wait for the writer. Dropping the [`WriterGuard`] writes what is left.

use std::{
    io::{self, Write},
    sync::Arc,
    time::Duration,
};

use nimbus_telemetry::spool::Spool;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes waiting for the writer before loggers wait.
const SPOOLED_BYTES: usize = 16 * 1024 * 1024;
/// How long the writer rests after writing what it took.
const REST: Duration = Duration::from_millis(5);
/// How long the writer waits for a line when the log is quiet before checking again.
const IDLE: Duration = Duration::from_secs(1);
/// How long dropping the guard waits for the last lines to be written.
const LAST_WRITE: Duration = Duration::from_secs(5);

/// The writer's spool; when the last handle goes, the writer writes what is left and
/// stops.
struct Handle {
    spool: Arc<Spool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.spool.close();
    }
}

/// Where loggers hand their lines; cheap to clone.
#[derive(Clone)]
pub(crate) struct LineWriter {
    handle: Arc<Handle>,
}

/// Keeps the writer thread; dropping it writes the queued lines.
pub(crate) struct WriterGuard {
    handle: Arc<Handle>,
}

/// The writer thread's name.
pub(crate) const THREAD_NAME: &str = "nimbus-log";

/// Starts a writer thread writing to `out`.
pub(crate) fn start<W: Write + Send + 'static>(out: W) -> (LineWriter, WriterGuard) {
    let spool = Arc::new(Spool::new(SPOOLED_BYTES));
    let started = std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn({
            let spool = Arc::clone(&spool);
            move || run(out, &spool)
        });
    if started.is_err() {
        // Without the thread lines are dropped, as the spool drops them once its
        // writer is gone; nobody waits for them.
        drop(spool.writer_exit());
    }
    let handle = Arc::new(Handle { spool });
    let writer = LineWriter {
        handle: Arc::clone(&handle),
    };
    (writer, WriterGuard { handle })
}

fn run<W: Write>(mut out: W, spool: &Spool) {
    let _exit = spool.writer_exit();
    let mut taken = Vec::new();
    loop {
        let took = spool.take(&mut taken, IDLE);
        if !taken.is_empty() {
            let _ = out.write_all(&taken);
            let _ = out.flush();
        }
        for done in took.flushes {
            let _ = done.send(());
        }
        if took.closed {
            break;
        }
        if !taken.is_empty() {
            spool.rest(REST);
        }
    }
}

impl LineWriter {
    /// Queues `lines`: one or more whole lines, written together.
    pub(crate) fn write_lines(&self, lines: &[u8]) {
        self.handle
            .spool
            .append(|spooled| spooled.extend_from_slice(lines));
    }

    /// Waits until the lines queued before this call are written (or `wait` has passed).
    pub(crate) fn flush_within(&self, wait: Duration) {
        let _ = self.handle.spool.flush().recv_timeout(wait);
    }
}

impl Write for LineWriter {
    /// Takes `buf` as one line (or several whole lines): the formatters write each event
    /// with one call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_lines(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        self.clone()
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // The subscriber keeps writers until the process ends, so the thread is not
        // joined: it is asked to write everything queued so far, and waited for.
        LineWriter {
            handle: Arc::clone(&self.handle),
        }
        .flush_within(LAST_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_from_each_thread() {
        let out = Shared::default();
        let (writer, guard) = start(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 200));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        writer.flush_within(Duration::from_secs(10));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("thread"));
            let t: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("line"));
            let i: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "{line}");
            assert_eq!(words.next().unwrap(), "x".repeat(i % 200));
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4]);
        drop(guard);
    }

    #[test]
    fn dropping_the_guard_writes_what_is_queued() {
        let out = Shared::default();
        let (writer, guard) = start(out.clone());
        for i in 0..100 {
            writer
                .make_writer()
                .write_all(format!("{i}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 100);
    }
}
