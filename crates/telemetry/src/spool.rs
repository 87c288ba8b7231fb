//! A spool: bytes that many threads append and one writer thread takes in bulk.
//!
//! The node's log and the function log store are written by threads of their own, so
//! that a request never waits on a file or a pipe. Handing each line over as a heap
//! object (a channel message) cost more than the writing: the line is allocated on a
//! runtime worker and freed on the writer's thread, where the allocator gets it back
//! cold through its cross-thread free list, and every hand-off touches the channel.
//! Instead, loggers append their encoded lines to one buffer under a mutex (held for a
//! copy), and the writer swaps the whole buffer for an empty one it owns, so the bytes
//! change hands in bulk and no memory crosses threads per line.
//!
//! Under load the writer takes turns: it takes what is there, writes it, then
//! [`rests`](Spool::rest) while new lines gather, so that loggers hand their lines over
//! without waking anyone. A logger wakes the writer only when the writer is idle (it
//! found nothing at its last take). Nothing is dropped: past [`Spool::new`]'s limit,
//! loggers wait until the writer takes the buffer.

use std::{
    mem,
    sync::{Condvar, Mutex, MutexGuard, PoisonError, mpsc},
    time::Duration,
};

/// The capacity a buffer keeps at least, whatever was taken last.
const KEEP_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct State {
    /// What loggers appended since the writer's last take.
    bytes: Vec<u8>,
    /// Flushes asked for since the last take, answered once what was before them is
    /// written.
    flushes: Vec<mpsc::Sender<()>>,
    /// Whether the writer waits for something to take.
    writer_idle: bool,
    /// No more appends are taken; the writer takes what is left and stops.
    closed: bool,
    /// The writer has stopped (or never started): flushes are not waited for.
    writer_gone: bool,
}

/// A buffer that loggers append to and a writer takes whole. Share it in an `Arc`.
pub struct Spool {
    state: Mutex<State>,
    /// The writer waits on it when idle or resting.
    writer: Condvar,
    /// Loggers wait on it while the buffer is over the limit.
    room: Condvar,
    limit: usize,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// What the writer took.
#[derive(Debug, Default)]
pub struct Taken {
    /// Flushes to answer (send `()`) once the bytes taken with them are written.
    pub flushes: Vec<mpsc::Sender<()>>,
    /// The spool is closed: after writing these bytes the writer stops.
    pub closed: bool,
}

impl Spool {
    /// A spool whose loggers wait once `limit` bytes are waiting for the writer.
    pub fn new(limit: usize) -> Spool {
        Spool {
            state: Mutex::new(State::default()),
            writer: Condvar::new(),
            room: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends bytes with `write`, which gets the buffer (it must only push to it). Waits
    /// while the buffer holds the limit; after [`Spool::close`] nothing is appended.
    pub fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.lock();
        while state.bytes.len() >= self.limit && !state.closed {
            // A resting writer would otherwise finish its rest first.
            self.writer.notify_one();
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            return;
        }
        write(&mut state.bytes);
        if state.writer_idle {
            state.writer_idle = false;
            self.writer.notify_one();
        }
    }

    /// Asks the writer to write everything appended so far; the receiver gets `()` once
    /// it has, or sees its sender dropped when the writer is gone.
    pub fn flush(&self) -> mpsc::Receiver<()> {
        let (done, wait) = mpsc::channel();
        let mut state = self.lock();
        if !state.writer_gone {
            state.flushes.push(done);
            self.writer.notify_one();
        }
        wait
    }

    /// For the writer's thread: a guard that, when dropped (the writer returning or
    /// panicking), closes the spool and stops anyone waiting on the writer, so that
    /// loggers never wait for a writer that is gone. Also for a writer that could not
    /// start: drop the guard at once.
    pub fn writer_exit(&self) -> WriterExit<'_> {
        WriterExit(self)
    }

    /// Takes no more appends; the writer takes what is left and stops.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.writer.notify_one();
        self.room.notify_all();
    }

    /// For the writer: swaps the appended bytes into `into` (cleared first, its capacity
    /// going back to the loggers), waiting up to `idle` when there is nothing to take.
    pub fn take(&self, into: &mut Vec<u8>, idle: Duration) -> Taken {
        into.clear();
        let mut state = self.lock();
        if state.bytes.is_empty() && state.flushes.is_empty() && !state.closed {
            state.writer_idle = true;
            state = self
                .writer
                .wait_timeout(state, idle)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.writer_idle = false;
        }
        mem::swap(&mut state.bytes, into);
        // After a burst, the loggers' buffer goes back to a size near what is taken now.
        let keep = into.len().max(KEEP_BYTES);
        if state.bytes.capacity() > 4 * keep {
            state.bytes.shrink_to(keep);
        }
        self.room.notify_all();
        Taken {
            flushes: mem::take(&mut state.flushes),
            closed: state.closed,
        }
    }

    /// For the writer, after writing what it took: waits up to `rest` for lines to
    /// gather, ending early for a flush, a close, or a logger waiting for room.
    pub fn rest(&self, rest: Duration) {
        let state = self.lock();
        if state.flushes.is_empty() && !state.closed && state.bytes.len() < self.limit {
            drop(
                self.writer
                    .wait_timeout(state, rest)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
    }
}

/// Closes the spool for good when dropped; see [`Spool::writer_exit`].
#[derive(Debug)]
pub struct WriterExit<'a>(&'a Spool);

impl Drop for WriterExit<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        state.writer_gone = true;
        // Dropping the senders tells whoever waits on a flush.
        state.flushes.clear();
        self.0.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, thread, time::Instant};

    use super::*;

    #[test]
    fn appends_arrive_whole_and_in_order() {
        let spool = Arc::new(Spool::new(64));
        let loggers: Vec<_> = (0..4u8)
            .map(|t| {
                let spool = Arc::clone(&spool);
                thread::spawn(move || {
                    for i in 0..500u16 {
                        spool.append(|b| {
                            b.push(t);
                            b.extend_from_slice(&i.to_le_bytes());
                        });
                    }
                })
            })
            .collect();
        let mut next = [0u16; 4];
        let mut taken = Vec::new();
        while next.iter().any(|&n| n < 500) {
            spool.take(&mut taken, Duration::from_millis(10));
            // Past the limit loggers wait, so a take never holds much more.
            assert!(taken.len() < 64 + 3, "{} bytes", taken.len());
            for record in taken.chunks(3) {
                let t = usize::from(record[0]);
                assert_eq!(u16::from_le_bytes([record[1], record[2]]), next[t]);
                next[t] += 1;
            }
        }
        for logger in loggers {
            logger.join().unwrap();
        }
    }

    #[test]
    fn a_writer_that_is_gone_is_not_waited_for() {
        let spool = Arc::new(Spool::new(4));
        let writer = {
            let spool = Arc::clone(&spool);
            thread::spawn(move || {
                let _exit = spool.writer_exit();
                let mut taken = Vec::new();
                spool.take(&mut taken, Duration::from_secs(30));
                panic!("the writer fails");
            })
        };
        spool.append(|b| b.extend_from_slice(b"abcd"));
        assert!(writer.join().is_err());
        // Over the limit, with no writer: the append is dropped, not waited on.
        spool.append(|b| b.extend_from_slice(b"efgh"));
        spool.append(|b| b.extend_from_slice(b"ijkl"));
        assert_eq!(
            spool.flush().recv_timeout(Duration::from_secs(20)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn an_idle_writer_wakes_for_an_append_a_flush_and_a_close() {
        let spool = Arc::new(Spool::new(1024));
        let writer = {
            let spool = Arc::clone(&spool);
            thread::spawn(move || {
                let mut taken = Vec::new();
                let mut seen = Vec::new();
                loop {
                    let started = Instant::now();
                    let took = spool.take(&mut taken, Duration::from_secs(30));
                    assert!(started.elapsed() < Duration::from_secs(20));
                    seen.extend_from_slice(&taken);
                    for done in took.flushes {
                        done.send(()).unwrap();
                    }
                    if took.closed {
                        return seen;
                    }
                }
            })
        };
        spool.append(|b| b.extend_from_slice(b"one "));
        spool.flush().recv_timeout(Duration::from_secs(20)).unwrap();
        spool.append(|b| b.extend_from_slice(b"two"));
        spool.close();
        spool.append(|b| b.extend_from_slice(b" after close"));
        assert_eq!(writer.join().unwrap(), b"one two");
    }
}
