//! A spool: bytes that many threads append and one writer thread takes in bulk.
//!
//! The node's log and the function log store are written by threads of their own, so
//! that a request never waits on a file or a pipe. Handing each line over as a heap
//! object (a channel message) cost more than the writing: the line is allocated on a
//! runtime worker and freed on the writer's thread, where the allocator gets it back
//! cold through its cross-thread free list, and every hand-off touches the channel.
//! Instead, loggers append their encoded lines to a buffer under a mutex (held for a
//! copy), and the writer swaps whole buffers for empty ones it owns, so the bytes change
//! hands in bulk and no memory crosses threads per line.
//!
//! Each logging thread appends to a buffer of its own (one of [`SHARDS`], picked once per
//! thread), so that two runtime workers logging at once never wait for each other or
//! pull each other's buffer into their cache: with one buffer, a worker that found the
//! lock held by the other now and then slept in the kernel for it. Every append carries
//! a sequence number from one counter, and the writer takes all buffers at once and
//! merges them by it, so lines come out in the order they were appended, whichever
//! threads appended them (an invocation that moves between workers keeps its lines in
//! order).
//!
//! Under load the writer takes turns: it takes what is there, writes it, then
//! [`rests`](Spool::rest) while new lines gather, so that loggers hand their lines over
//! without waking anyone. A logger wakes the writer only when the writer is idle (it
//! found nothing at its last take). Nothing is dropped: past [`Spool::new`]'s limit,
//! loggers wait until the writer takes their buffer.

use std::{
    cell::Cell,
    mem,
    sync::{
        Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

/// How many buffers a spool has: threads beyond this many share them.
pub const SHARDS: usize = 8;
/// The capacity a buffer keeps at least, whatever was taken last.
const KEEP_BYTES: usize = 16 * 1024;
/// What precedes each append in a buffer: its sequence number and its length.
const FRAME: usize = 16;

/// The buffer this thread appends to, once it has logged.
fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|shard| {
        if shard.get() == usize::MAX {
            shard.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        shard.get()
    })
}

/// One thread's (or a few threads') buffer.
#[derive(Default)]
struct Shard {
    /// Appends since the writer's last take, each after its frame.
    bytes: Mutex<Vec<u8>>,
    /// Loggers wait on it while the buffer holds the limit.
    room: Condvar,
}

/// What the writer and those who call on it share.
#[derive(Default)]
struct Control {
    /// Flushes asked for since the last take, answered once what was before them is
    /// written.
    flushes: Vec<mpsc::Sender<()>>,
    /// The writer has stopped (or never started): flushes are not waited for.
    writer_gone: bool,
}

/// Buffers that loggers append to and a writer takes whole. Share it in an `Arc`.
pub struct Spool {
    shards: [Shard; SHARDS],
    control: Mutex<Control>,
    /// The writer waits on it (with `control`) when idle or resting.
    writer: Condvar,
    /// Whether the writer waits for something to take.
    writer_idle: AtomicBool,
    /// No more appends are taken; the writer takes what is left and stops. Set under
    /// `control`, so that a writer about to wait sees it or is woken.
    closed: AtomicBool,
    /// Loggers waiting for room in their buffer.
    waiting: AtomicUsize,
    /// The next append's sequence number.
    next: AtomicU64,
    /// The writer's empty buffers, swapped in at each take.
    spares: Mutex<Vec<Vec<u8>>>,
    /// Bytes (frames included) one buffer may hold before its loggers wait.
    limit: usize,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("limit", &(self.limit * SHARDS))
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sequence number and the bytes of the append at `at` in a taken buffer.
fn record(buf: &[u8], at: usize) -> (u64, &[u8]) {
    let (seq, len) = buf[at..at + FRAME].split_at(8);
    let seq = u64::from_le_bytes(seq.try_into().unwrap_or_default());
    let len = usize::try_from(u64::from_le_bytes(len.try_into().unwrap_or_default()))
        .unwrap_or(usize::MAX);
    let start = at + FRAME;
    (seq, &buf[start..start.saturating_add(len).min(buf.len())])
}

impl Spool {
    /// A spool whose loggers wait once about `limit` bytes wait for the writer (the
    /// limit is shared out among the buffers).
    pub fn new(limit: usize) -> Spool {
        Spool {
            shards: Default::default(),
            control: Mutex::new(Control::default()),
            writer: Condvar::new(),
            writer_idle: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            spares: Mutex::new(Vec::new()),
            limit: limit.div_ceil(SHARDS).max(1),
        }
    }

    /// Appends bytes with `write`, which gets the buffer (it must only push to it). Waits
    /// while this thread's buffer holds its share of the limit; after [`Spool::close`]
    /// nothing is appended.
    pub fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let shard = &self.shards[my_shard()];
        let mut bytes = lock(&shard.bytes);
        while bytes.len() >= self.limit && !self.closed.load(Ordering::SeqCst) {
            // A resting writer would otherwise finish its rest first. (The buffer's lock
            // is let go meanwhile: the writer takes `control` before any buffer's.)
            drop(bytes);
            self.wake_writer();
            bytes = lock(&shard.bytes);
            if bytes.len() >= self.limit {
                // Counted before `closed` is read again: `close` stores `closed` before
                // it reads the count, so either it wakes this logger or the logger sees
                // the spool closed.
                self.waiting.fetch_add(1, Ordering::SeqCst);
                if !self.closed.load(Ordering::SeqCst) {
                    bytes = shard
                        .room
                        .wait(bytes)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                self.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let at = bytes.len();
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        write(&mut bytes);
        let len = (bytes.len() - at - FRAME) as u64;
        bytes[at + 8..at + FRAME].copy_from_slice(&len.to_le_bytes());
        drop(bytes);
        // Pairs with the writer's store before it looks at the buffers (see `take`).
        if self.writer_idle.load(Ordering::SeqCst) {
            self.wake_writer();
        }
    }

    fn wake_writer(&self) {
        let _control = lock(&self.control);
        self.writer_idle.store(false, Ordering::SeqCst);
        self.writer.notify_one();
    }

    /// Wakes loggers waiting for room, if any, holding each buffer's lock so that none
    /// misses it between its check and its wait.
    fn wake_loggers(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        for shard in &self.shards {
            let _bytes = lock(&shard.bytes);
            shard.room.notify_all();
        }
    }

    /// Asks the writer to write everything appended so far; the receiver gets `()` once
    /// it has, or sees its sender dropped when the writer is gone.
    pub fn flush(&self) -> mpsc::Receiver<()> {
        let (done, wait) = mpsc::channel();
        let mut control = lock(&self.control);
        if !control.writer_gone {
            control.flushes.push(done);
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
        {
            let _control = lock(&self.control);
            self.closed.store(true, Ordering::SeqCst);
            self.writer.notify_one();
        }
        self.wake_loggers();
    }

    /// Whether nothing waits in any buffer.
    fn all_empty(&self) -> bool {
        self.shards.iter().all(|s| lock(&s.bytes).is_empty())
    }

    /// For the writer: takes every buffer and puts the appends in them into `into`
    /// (cleared first) in the order they were made, waiting up to `idle` when there is
    /// nothing to take.
    pub fn take(&self, into: &mut Vec<u8>, idle: Duration) -> Taken {
        into.clear();
        let mut control = lock(&self.control);
        if control.flushes.is_empty() && !self.closed.load(Ordering::SeqCst) {
            // A logger that appends after this store sees it and wakes the writer; one
            // that appended before it is seen in its buffer.
            self.writer_idle.store(true, Ordering::SeqCst);
            if self.all_empty() {
                control = self
                    .writer
                    .wait_timeout(control, idle)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            self.writer_idle.store(false, Ordering::SeqCst);
        }
        let taken = Taken {
            flushes: mem::take(&mut control.flushes),
            closed: self.closed.load(Ordering::SeqCst),
        };
        drop(control);
        // All buffers at once, so that what is taken is whole: an append taken now was
        // made after every append that came before it.
        let mut spares = lock(&self.spares);
        let mut bytes: Vec<MutexGuard<'_, Vec<u8>>> =
            self.shards.iter().map(|s| lock(&s.bytes)).collect();
        let mut full = Vec::with_capacity(SHARDS);
        for buffer in &mut bytes {
            if buffer.is_empty() {
                continue;
            }
            let mut spare = spares.pop().unwrap_or_default();
            mem::swap(&mut **buffer, &mut spare);
            full.push(spare);
        }
        drop(bytes);
        self.wake_loggers();
        merge(&full, into);
        for mut buffer in full {
            // After a burst, a buffer goes back to a size near what is taken now.
            let keep = buffer.len().max(KEEP_BYTES);
            buffer.clear();
            if buffer.capacity() > 4 * keep {
                buffer.shrink_to(keep);
            }
            spares.push(buffer);
        }
        taken
    }

    /// For the writer, after writing what it took: waits up to `rest` for lines to
    /// gather, ending early for a flush, a close, or a logger waiting for room.
    pub fn rest(&self, rest: Duration) {
        let control = lock(&self.control);
        if control.flushes.is_empty()
            && !self.closed.load(Ordering::SeqCst)
            && self
                .shards
                .iter()
                .all(|s| lock(&s.bytes).len() < self.limit)
        {
            drop(
                self.writer
                    .wait_timeout(control, rest)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
    }
}

/// Puts the appends in `buffers` into `into` by sequence number. Each buffer is in order
/// already (one thread's, or a few threads' under its lock).
fn merge(buffers: &[Vec<u8>], into: &mut Vec<u8>) {
    let mut at = vec![0; buffers.len()];
    loop {
        let next = buffers
            .iter()
            .zip(&at)
            .enumerate()
            .filter(|(_, (buffer, at))| **at < buffer.len())
            .min_by_key(|(_, (buffer, at))| record(buffer, **at).0);
        let Some((i, (buffer, _))) = next else {
            return;
        };
        let (_, bytes) = record(buffer, at[i]);
        into.extend_from_slice(bytes);
        at[i] += FRAME + bytes.len();
    }
}

/// Closes the spool for good when dropped; see [`Spool::writer_exit`].
#[derive(Debug)]
pub struct WriterExit<'a>(&'a Spool);

impl Drop for WriterExit<'_> {
    fn drop(&mut self) {
        {
            let mut control = lock(&self.0.control);
            control.writer_gone = true;
            self.0.closed.store(true, Ordering::SeqCst);
            // Dropping the senders tells whoever waits on a flush.
            control.flushes.clear();
        }
        self.0.wake_loggers();
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
    fn appends_from_threads_in_turn_come_out_in_the_order_made() {
        // Two threads take turns, each appending only after the other's append: the
        // turns land in two buffers, and the writer must give them back in turn.
        let spool = Arc::new(Spool::new(1 << 20));
        let (to_b, from_a) = mpsc::channel::<u32>();
        let (to_a, from_b) = mpsc::channel::<u32>();
        let turns = 2000u32;
        let a = {
            let spool = Arc::clone(&spool);
            thread::spawn(move || {
                for turn in (0..turns).step_by(2) {
                    spool.append(|b| b.extend_from_slice(&turn.to_le_bytes()));
                    to_b.send(turn + 1).unwrap();
                    if from_b.recv().is_err() {
                        return;
                    }
                }
            })
        };
        let b = {
            let spool = Arc::clone(&spool);
            thread::spawn(move || {
                while let Ok(turn) = from_a.recv() {
                    spool.append(|b| b.extend_from_slice(&turn.to_le_bytes()));
                    if to_a.send(turn + 1).is_err() {
                        return;
                    }
                }
            })
        };
        let mut seen = Vec::new();
        let mut taken = Vec::new();
        while seen.len() < turns as usize {
            spool.take(&mut taken, Duration::from_millis(10));
            seen.extend(
                taken
                    .chunks(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap())),
            );
        }
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(seen, (0..turns).collect::<Vec<_>>());
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
