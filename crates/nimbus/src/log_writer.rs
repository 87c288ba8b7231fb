//! The node log's writer: lines are formatted on the thread that logs them and written
//! to stderr by a thread of its own, so that a request never waits on the terminal or
//! the pipe.
//!
//! Under load the writer takes turns: it writes every waiting line at once, then rests
//! for [`REST`] while new lines queue up. A logging thread then hands its line over
//! without waking anyone (waking the writer for each line, as a writer blocked on its
//! queue needs, costs a system call and a context switch per line: several per request
//! on a busy node). Nothing is dropped: when [`QUEUED_LINES`] wait, loggers wait for
//! the writer. Dropping the [`WriterGuard`] writes what is left.

use std::{
    io::{self, Write},
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for the writer before loggers wait.
const QUEUED_LINES: usize = 64 * 1024;
/// How long the writer rests after writing a batch.
const REST: Duration = Duration::from_millis(5);
/// How long the writer waits for a line when the log is quiet before checking again.
const IDLE: Duration = Duration::from_secs(1);

enum Message {
    Line(Vec<u8>),
    /// Write everything queued so far, then answer.
    Flush(SyncSender<()>),
}

/// Where loggers hand their lines; cheap to clone.
#[derive(Clone)]
pub(crate) struct LineWriter {
    queue: SyncSender<Message>,
}

/// Keeps the writer thread; dropping it writes the queued lines and stops the thread.
pub(crate) struct WriterGuard {
    queue: SyncSender<Message>,
}

/// Starts a writer thread writing to `out`.
pub(crate) fn start<W: Write + Send + 'static>(out: W) -> (LineWriter, WriterGuard) {
    let (queue, received) = mpsc::sync_channel(QUEUED_LINES);
    // Without the thread, lines are dropped (the senders see the queue disconnected).
    let _ = std::thread::Builder::new()
        .name("nimbus-log".to_owned())
        .spawn(move || run(out, &received));
    let writer = LineWriter {
        queue: queue.clone(),
    };
    (writer, WriterGuard { queue })
}

fn run<W: Write>(out: W, received: &Receiver<Message>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        let first = match received.recv_timeout(IDLE) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut answers = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(done) => answers.push(done),
            }
            next = received.try_recv().ok();
        }
        let _ = out.flush();
        for done in answers {
            let _ = done.send(());
        }
        std::thread::sleep(REST);
    }
    let _ = out.flush();
}

impl LineWriter {
    fn send(&self, message: Message) {
        match self.queue.try_send(message) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(message)) => {
                let _ = self.queue.send(message);
            }
        }
    }

    /// Queues `lines`: one or more whole lines, written together.
    pub(crate) fn write_lines(&self, lines: &[u8]) {
        self.send(Message::Line(lines.to_vec()));
    }

    /// Waits until the lines queued before this call are written (or the writer is gone).
    #[cfg(test)]
    fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Message::Flush(done));
        let _ = wait.recv();
    }
}

impl Write for LineWriter {
    /// Takes `buf` as one line (or several whole lines): the formatters write each event
    /// with one call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(Message::Line(buf.to_vec()));
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
        // The subscriber keeps senders until the process ends, so the thread is not
        // joined: it is asked to write everything queued so far, and waited for.
        let (done, wait) = mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(5));
        }
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
        writer.flush();
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
