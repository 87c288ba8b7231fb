//! The durable queue of async invocations, with its dead-letter store, in one redb file.
//!
//! Every write goes to one writer thread, which takes every write waiting for it, applies
//! them all in one write transaction and commits once with an fsync (group commit): an
//! enqueue is acknowledged only after that commit, and many concurrent enqueues share
//! one fsync. Reads (what is due, the dead letters) use redb's MVCC read transactions on
//! the caller's thread.
//!
//! Layout: `events` maps an event id to the encoded event; `schedule` orders each
//! function's events by the time they are next due, `(function, due_ms, id)`; a leased
//! event is due again when its lease ends (a worker extends the lease while its
//! invocation runs), so an event whose worker died is delivered again. A lease counts the
//! attempt it is for in the same commit, so that an attempt that outlives its lease still
//! counts against the event's retries. `dead_letters` maps `(function, id)` to an encoded [`DeadLetter`]. `age` and
//! `count` keep each function's events by acceptance time and their number, for the
//! backlog metrics: a scrape reads one entry of each, however long the queue.

use std::{
    ops::Bound,
    path::Path,
    sync::{Arc, mpsc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use tokio::sync::{Notify, oneshot};

use crate::{
    QueueError,
    event::{self, Event, EventId, EventMeta},
    record::{Condition, DeadLetter},
};

const EVENTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("events");
const SCHEDULE: TableDefinition<'static, (&str, u64, u128), ()> = TableDefinition::new("schedule");
const DEAD: TableDefinition<'static, (&str, u128), &[u8]> = TableDefinition::new("dead_letters");
/// Each function's queued events by the time they were accepted, `(function,
/// enqueued_ms, id)`, so that the oldest is found without reading the others.
const AGE: TableDefinition<'static, (&str, u64, u128), ()> = TableDefinition::new("age");
/// How many events each function has queued (leased ones included).
const COUNT: TableDefinition<'static, &str, u64> = TableDefinition::new("count");

/// About the most bytes of dead letters one page of [`AsyncQueue::dead_letters`] holds
/// (an entry may hold a 1 MB payload and a 6 MB error).
const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Most jobs committed together.
const MAX_GROUP: usize = 2048;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(e.to_string())
}

/// How the delivery of a leased event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// It succeeded: the event leaves the queue.
    Delivered,
    /// An attempt failed: the event is due again at `at_ms`.
    Retry {
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// It is given up: the event moves to the dead-letter store.
    DeadLetter {
        /// Why.
        condition: Condition,
        /// When (ms since the epoch).
        dead_ms: u64,
    },
}

/// A new event to enqueue in the same commit that settles another (a destination's
/// invocation record), so that the record is sent exactly when the settle is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// The function it is for.
    pub function: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

struct Settle {
    event: Event,
    settlement: Settlement,
    then: Option<FollowUp>,
    now_ms: u64,
}

enum Job {
    Enqueue(Box<Event>, oneshot::Sender<Result<(), QueueError>>),
    Lease {
        function: String,
        now_ms: u64,
        max: usize,
        until_ms: u64,
        reply: oneshot::Sender<Result<Vec<Event>, QueueError>>,
    },
    Settle(Box<Settle>, oneshot::Sender<Result<bool, QueueError>>),
    Extend {
        id: EventId,
        lease: u32,
        until_ms: u64,
        reply: oneshot::Sender<Result<bool, QueueError>>,
    },
    Redrive {
        function: String,
        ids: Vec<EventId>,
        now_ms: u64,
        reply: oneshot::Sender<Result<Vec<EventId>, QueueError>>,
    },
    DeleteDead {
        function: String,
        id: EventId,
        reply: oneshot::Sender<Result<bool, QueueError>>,
    },
}

/// A durable queue of events for functions, with a dead-letter store.
pub struct AsyncQueue {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for AsyncQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncQueue").finish_non_exhaustive()
    }
}

impl AsyncQueue {
    /// Opens (or creates) the queue file at `path` and starts its writer thread. Events
    /// that were leased when the file was last closed (a worker was delivering them when
    /// the node stopped or crashed) are due again at once: nothing else holds the file.
    ///
    /// # Errors
    /// When the file cannot be opened or is not a valid queue.
    pub fn open(path: &Path) -> Result<AsyncQueue, QueueError> {
        let db = Database::create(path).map_err(storage)?;
        let reclaimed = reclaim(&db, now_ms())?;
        if reclaimed > 0 {
            tracing::info!(
                events = reclaimed,
                "async events that were being delivered when the node stopped will be delivered again"
            );
        }
        let db = Arc::new(db);
        let (jobs, rx) = mpsc::channel();
        let wake = Arc::new(Notify::new());
        let writer_db = Arc::clone(&db);
        let writer_wake = Arc::clone(&wake);
        let writer = std::thread::Builder::new()
            .name("nimbus-events-writer".to_owned())
            .spawn(move || writer(&writer_db, &rx, &writer_wake))
            .map_err(storage)?;
        Ok(AsyncQueue {
            db,
            jobs,
            writer: Some(writer),
            wake,
        })
    }

    /// Notified after a commit that made events due (an enqueue, a redrive, a
    /// destination's record).
    pub(crate) fn wake(&self) -> &Notify {
        &self.wake
    }

    fn submit<T>(
        &self,
        job: Job,
        rx: oneshot::Receiver<Result<T, QueueError>>,
    ) -> impl Future<Output = Result<T, QueueError>> + use<T> {
        let sent = self.jobs.send(job);
        async move {
            sent.map_err(|_| QueueError::Stopped)?;
            rx.await.map_err(|_| QueueError::Stopped)?
        }
    }

    /// Adds an event for `function`, due now, and returns its id once it is durable.
    ///
    /// # Errors
    /// When the commit fails (nothing was added) or the writer has stopped.
    pub async fn enqueue(
        &self,
        function: &str,
        payload: Vec<u8>,
        meta: EventMeta,
    ) -> Result<EventId, QueueError> {
        let id = EventId::random();
        let event = Event::new(id, function, payload, meta, now_ms());
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Enqueue(Box::new(event), tx), rx).await?;
        Ok(id)
    }

    /// When `function`'s earliest event is due (ms since the epoch), leased ones
    /// included (due when their lease ends); `None` when it has none.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn next_due(&self, function: &str) -> Result<Option<u64>, QueueError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let schedule = txn.open_table(SCHEDULE).map_err(storage)?;
        let mut range = schedule
            .range((function, 0u64, 0u128)..=(function, u64::MAX, u128::MAX))
            .map_err(storage)?;
        match range.next() {
            Some(entry) => Ok(Some(entry.map_err(storage)?.0.value().1)),
            None => Ok(None),
        }
    }

    /// How many events `function` has in the queue, leased ones included.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn pending(&self, function: &str) -> Result<usize, QueueError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let schedule = txn.open_table(SCHEDULE).map_err(storage)?;
        let range = schedule
            .range((function, 0u64, 0u128)..=(function, u64::MAX, u128::MAX))
            .map_err(storage)?;
        Ok(range.count())
    }

    /// `function`'s backlog: how many events it has in the queue (leased ones included)
    /// and when the oldest of them was accepted (ms since the epoch), for metrics.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn backlog(&self, function: &str) -> Result<(usize, Option<u64>), QueueError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let count = txn.open_table(COUNT).map_err(storage)?;
        let age = txn.open_table(AGE).map_err(storage)?;
        let queued = count
            .get(function)
            .map_err(storage)?
            .map_or(0, |n| usize::try_from(n.value()).unwrap_or(usize::MAX));
        let oldest = match age
            .range((function, 0u64, 0u128)..=(function, u64::MAX, u128::MAX))
            .map_err(storage)?
            .next()
        {
            Some(entry) => Some(entry.map_err(storage)?.0.value().1),
            None => None,
        };
        Ok((queued, oldest))
    }

    /// Leases up to `max` of `function`'s events due at `now_ms`, earliest first, until
    /// `until_ms`: they are not due again before then unless settled or
    /// [extended](Self::extend). Each event's `attempts` counts the attempt its lease is
    /// for, in the same commit: an attempt whose lease runs out while it still runs (and
    /// whose settle is then refused) still counts against the event's retries. A caller
    /// that does not run the event (it was throttled) takes that count back when it
    /// settles. Opening the queue takes it back from the events that were leased when the
    /// node stopped: their attempts were cut short by the node, not failed by the function.
    ///
    /// # Errors
    /// When the commit fails (nothing was leased).
    pub async fn lease(
        &self,
        function: &str,
        now_ms: u64,
        max: usize,
        until_ms: u64,
    ) -> Result<Vec<Event>, QueueError> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Lease {
            function: function.to_owned(),
            now_ms,
            max,
            until_ms,
            reply,
        };
        self.submit(job, rx).await
    }

    /// Ends the lease `event` came with: the event (with its attempts, times and last
    /// error as the caller updated them) is delivered, due again, or dead-lettered, and
    /// `then` is enqueued in the same commit. Says `false`, changing nothing, when the
    /// lease is no longer the event's latest (it expired and the event was leased again).
    ///
    /// # Errors
    /// When the commit fails (nothing changed).
    pub async fn settle(
        &self,
        event: Event,
        settlement: Settlement,
        then: Option<FollowUp>,
    ) -> Result<bool, QueueError> {
        let (tx, rx) = oneshot::channel();
        let settle = Settle {
            event,
            settlement,
            then,
            now_ms: now_ms(),
        };
        self.submit(Job::Settle(Box::new(settle), tx), rx).await
    }

    /// Moves the end of the lease `event` came with to `until_ms` (never earlier), so that
    /// an invocation still running keeps its event. Says `false`, changing nothing, when
    /// that lease is no longer the event's latest (it ran out and the event was leased
    /// again, or it was settled).
    ///
    /// # Errors
    /// When the commit fails (nothing changed).
    pub async fn extend(&self, event: &Event, until_ms: u64) -> Result<bool, QueueError> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Extend {
            id: event.id,
            lease: event.lease,
            until_ms,
            reply,
        };
        self.submit(job, rx).await
    }

    /// A page of `function`'s dead letters, by id (the time their events were first
    /// accepted): up to `limit` of them (at least one), fewer once they hold about 8
    /// MiB, after `after` (from the first when `None`), and the id to pass
    /// as `after` for the next page when more remain. An
    /// entry that cannot be decoded is left out (and logged), not a failure of the page.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn dead_letters(
        &self,
        function: &str,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, Option<EventId>), QueueError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let dead = txn.open_table(DEAD).map_err(storage)?;
        let start = match after {
            Some(after) => Bound::Excluded((function, after.as_u128())),
            None => Bound::Included((function, 0u128)),
        };
        let range = dead
            .range::<(&str, u128)>((start, Bound::Included((function, u128::MAX))))
            .map_err(storage)?;
        let limit = limit.max(1);
        let (mut out, mut last, mut seen, mut bytes) = (Vec::new(), None, 0, 0);
        for entry in range {
            let (key, value) = entry.map_err(storage)?;
            if seen == limit || bytes >= PAGE_BYTES {
                return Ok((out, last));
            }
            seen += 1;
            bytes += value.value().len();
            let id = EventId::from_u128(key.value().1);
            last = Some(id);
            match DeadLetter::decode(id, value.value()) {
                Ok(letter) => out.push(letter),
                Err(e) => {
                    tracing::error!(%id, %function, error = %e, "skipping a dead letter that cannot be decoded");
                }
            }
        }
        Ok((out, None))
    }

    /// One of `function`'s dead letters.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn dead_letter(
        &self,
        function: &str,
        id: EventId,
    ) -> Result<Option<DeadLetter>, QueueError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let dead = txn.open_table(DEAD).map_err(storage)?;
        let Some(value) = dead.get((function, id.as_u128())).map_err(storage)? else {
            return Ok(None);
        };
        DeadLetter::decode(id, value.value()).map(Some)
    }

    /// Deletes one of `function`'s dead letters; says whether it was there.
    ///
    /// # Errors
    /// When the commit fails.
    pub async fn delete_dead_letter(
        &self,
        function: &str,
        id: EventId,
    ) -> Result<bool, QueueError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::DeleteDead {
            function: function.to_owned(),
            id,
            reply: tx,
        };
        self.submit(job, rx).await
    }

    /// Moves `function`'s dead letters (all of them, or those of `ids` that exist) back
    /// into the queue, due now, with their attempts reset and their age counted from now;
    /// returns the ids moved. They keep their ids, so the function sees the same request
    /// id as before. The move is made in several commits when there are many.
    ///
    /// # Errors
    /// When a commit fails: the entries of that commit and the ones after it stay where
    /// they were (those of earlier commits are moved).
    pub async fn redrive(
        &self,
        function: &str,
        ids: Option<Vec<EventId>>,
    ) -> Result<Vec<EventId>, QueueError> {
        // In commits of a bounded size: the writer serves every enqueue, lease and settle
        // of the node, which wait while it moves a store that may hold thousands of
        // entries of megabytes each.
        let chunks = match ids {
            Some(ids) => ids
                .chunks(REDRIVE_ENTRIES)
                .map(<[EventId]>::to_vec)
                .collect(),
            // Sizing every entry reads the whole store: off the async workers.
            None => {
                let db = Arc::clone(&self.db);
                let function = function.to_owned();
                tokio::task::spawn_blocking(move || dead_chunks(&db, &function))
                    .await
                    .map_err(storage)??
            }
        };
        let mut moved = Vec::new();
        for chunk in chunks {
            let (tx, rx) = oneshot::channel();
            let job = Job::Redrive {
                function: function.to_owned(),
                ids: chunk,
                now_ms: now_ms(),
                reply: tx,
            };
            moved.extend(self.submit(job, rx).await?);
        }
        Ok(moved)
    }
}

/// The ids of `function`'s dead letters, in chunks of at most [`REDRIVE_ENTRIES`]
/// entries and (but for a single larger entry) [`REDRIVE_BYTES`].
fn dead_chunks(db: &Database, function: &str) -> Result<Vec<Vec<EventId>>, QueueError> {
    let txn = db.begin_read().map_err(storage)?;
    let dead = txn.open_table(DEAD).map_err(storage)?;
    let (mut chunks, mut chunk, mut bytes) = (Vec::new(), Vec::new(), 0);
    for entry in dead
        .range((function, 0u128)..=(function, u128::MAX))
        .map_err(storage)?
    {
        let (key, value) = entry.map_err(storage)?;
        let size = value.value().len();
        if !chunk.is_empty() && (chunk.len() == REDRIVE_ENTRIES || bytes + size > REDRIVE_BYTES) {
            chunks.push(std::mem::take(&mut chunk));
            bytes = 0;
        }
        chunk.push(EventId::from_u128(key.value().1));
        bytes += size;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    Ok(chunks)
}

impl Drop for AsyncQueue {
    /// Stops the writer after the writes already asked for, so that the file is closed
    /// when this returns (and can be opened again).
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Makes every leased event due at `now_ms`; returns how many there were.
fn reclaim(db: &Database, now_ms: u64) -> Result<usize, QueueError> {
    let txn = db.begin_write().map_err(storage)?;
    let mut reclaimed = 0;
    {
        let mut tables = Tables::open(&txn)?;
        tables.index_if_missing()?;
        let mut leased = Vec::new();
        for entry in tables.events.iter().map_err(storage)? {
            let (id, value) = entry.map_err(storage)?;
            if event::is_leased(value.value()) {
                let id = EventId::from_u128(id.value());
                match event::decode(id, value.value()) {
                    Ok(event) => leased.push(event),
                    Err(e) => tracing::error!(%id, error = %e, "skipping a corrupt async event"),
                }
            }
        }
        for mut event in leased {
            let id = event.id.as_u128();
            tables
                .schedule
                .remove((event.function.as_str(), event.due_ms, id))
                .map_err(storage)?;
            event.leased = false;
            event.due_ms = now_ms;
            // The lease counted the attempt it was for; the node, not the function, cut
            // that attempt short.
            event.attempts = event.attempts.saturating_sub(1);
            tables
                .events
                .insert(id, event::encode(&event).as_slice())
                .map_err(storage)?;
            tables
                .schedule
                .insert((event.function.as_str(), now_ms, id), ())
                .map_err(storage)?;
            reclaimed += 1;
        }
    }
    txn.commit().map_err(storage)?;
    Ok(reclaimed)
}

/// The tables of one write transaction, opened once per group.
struct Tables<'txn> {
    events: Table<'txn, u128, &'static [u8]>,
    schedule: Table<'txn, (&'static str, u64, u128), ()>,
    dead: Table<'txn, (&'static str, u128), &'static [u8]>,
    age: Table<'txn, (&'static str, u64, u128), ()>,
    count: Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, QueueError> {
        Ok(Tables {
            events: txn.open_table(EVENTS).map_err(storage)?,
            schedule: txn.open_table(SCHEDULE).map_err(storage)?,
            dead: txn.open_table(DEAD).map_err(storage)?,
            age: txn.open_table(AGE).map_err(storage)?,
            count: txn.open_table(COUNT).map_err(storage)?,
        })
    }

    /// Builds `age` and `count` from `events` when they do not agree with it: the file
    /// was written before the index existed, or by such a version since (a rollback).
    /// Every write keeps them in step after that.
    fn index_if_missing(&mut self) -> Result<(), QueueError> {
        let mut counted = 0u64;
        for entry in self.count.iter().map_err(storage)? {
            counted = counted.saturating_add(entry.map_err(storage)?.1.value());
        }
        if counted == self.events.len().map_err(storage)? {
            return Ok(());
        }
        self.age.retain(|_, ()| false).map_err(storage)?;
        self.count.retain(|_, _| false).map_err(storage)?;
        let mut events = Vec::new();
        for entry in self.events.iter().map_err(storage)? {
            let (id, value) = entry.map_err(storage)?;
            let id = EventId::from_u128(id.value());
            match event::decode(id, value.value()) {
                Ok(event) => events.push((event.function, event.enqueued_ms, id)),
                Err(e) => tracing::error!(%id, error = %e, "skipping a corrupt async event"),
            }
        }
        for (function, enqueued_ms, id) in &events {
            self.indexed(function, *enqueued_ms, *id)?;
        }
        Ok(())
    }

    /// Adds a new event: stored, scheduled, and counted in its function's backlog.
    fn add(&mut self, event: &Event) -> Result<(), QueueError> {
        self.insert(event)?;
        self.indexed(&event.function, event.enqueued_ms, event.id)
    }

    fn indexed(&mut self, function: &str, enqueued_ms: u64, id: EventId) -> Result<(), QueueError> {
        let added = self
            .age
            .insert((function, enqueued_ms, id.as_u128()), ())
            .map_err(storage)?
            .is_none();
        if added {
            self.counted(function, 1)?;
        }
        Ok(())
    }

    /// Removes an event (delivered or dead-lettered) from `events` and the backlog; its
    /// schedule entry is the caller's.
    fn take(&mut self, event: &Event) -> Result<(), QueueError> {
        let id = event.id.as_u128();
        self.events.remove(id).map_err(storage)?;
        let removed = self
            .age
            .remove((event.function.as_str(), event.enqueued_ms, id))
            .map_err(storage)?
            .is_some();
        if removed {
            self.counted(&event.function, -1)?;
        }
        Ok(())
    }

    /// Takes an event that cannot be decoded out of `function`'s backlog.
    fn unindex(&mut self, function: &str, id: EventId) -> Result<(), QueueError> {
        let mut found = None;
        for entry in self
            .age
            .range((function, 0u64, 0u128)..=(function, u64::MAX, u128::MAX))
            .map_err(storage)?
        {
            let (_, enqueued_ms, key) = entry.map_err(storage)?.0.value();
            if key == id.as_u128() {
                found = Some(enqueued_ms);
                break;
            }
        }
        if let Some(enqueued_ms) = found {
            self.age
                .remove((function, enqueued_ms, id.as_u128()))
                .map_err(storage)?;
            self.counted(function, -1)?;
        }
        Ok(())
    }

    fn counted(&mut self, function: &str, by: i64) -> Result<(), QueueError> {
        let now = self
            .count
            .get(function)
            .map_err(storage)?
            .map_or(0, |n| n.value());
        let next = now.saturating_add_signed(by);
        if next == 0 {
            self.count.remove(function).map_err(storage)?;
        } else {
            self.count.insert(function, next).map_err(storage)?;
        }
        Ok(())
    }

    fn insert(&mut self, event: &Event) -> Result<(), QueueError> {
        let id = event.id.as_u128();
        self.events
            .insert(id, event::encode(event).as_slice())
            .map_err(storage)?;
        self.schedule
            .insert((event.function.as_str(), event.due_ms, id), ())
            .map_err(storage)?;
        Ok(())
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, QueueError> {
        let Some(value) = self.events.get(id.as_u128()).map_err(storage)? else {
            return Ok(None);
        };
        event::decode(id, value.value()).map(Some)
    }

    fn lease(
        &mut self,
        function: &str,
        now_ms: u64,
        max: usize,
        until_ms: u64,
    ) -> Result<Vec<Event>, QueueError> {
        let mut due = Vec::new();
        for entry in self
            .schedule
            .range((function, 0u64, 0u128)..=(function, now_ms, u128::MAX))
            .map_err(storage)?
            .take(max)
        {
            let (key, _) = entry.map_err(storage)?;
            let (_, due_ms, id) = key.value();
            due.push((due_ms, id));
        }
        let mut leased = Vec::with_capacity(due.len());
        for (due_ms, id) in due {
            self.schedule
                .remove((function, due_ms, id))
                .map_err(storage)?;
            let id = EventId::from_u128(id);
            let mut event = match self.get(id) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(e) => {
                    // Kept in `events` for inspection, but never offered again nor
                    // counted in the backlog.
                    tracing::error!(%id, error = %e, "dropping a corrupt async event from the schedule");
                    self.unindex(function, id)?;
                    continue;
                }
            };
            event.leased = true;
            event.lease = event.lease.wrapping_add(1);
            event.due_ms = until_ms;
            // Counted now, not when the attempt ends: an attempt that outlives its lease
            // cannot settle, and would otherwise never count.
            event.attempts = event.attempts.saturating_add(1);
            self.insert(&event)?;
            leased.push(event);
        }
        Ok(leased)
    }

    fn extend(&mut self, id: EventId, lease: u32, until_ms: u64) -> Result<bool, QueueError> {
        let Some(mut current) = self.get(id)? else {
            return Ok(false);
        };
        if !current.leased || current.lease != lease {
            return Ok(false);
        }
        if until_ms > current.due_ms {
            self.schedule
                .remove((current.function.as_str(), current.due_ms, id.as_u128()))
                .map_err(storage)?;
            current.due_ms = until_ms;
            self.insert(&current)?;
        }
        Ok(true)
    }

    fn settle(&mut self, settle: Settle) -> Result<bool, QueueError> {
        let Settle {
            mut event,
            settlement,
            then,
            now_ms,
        } = settle;
        let Some(current) = self.get(event.id)? else {
            return Ok(false);
        };
        if !current.leased || current.lease != event.lease {
            return Ok(false);
        }
        let id = event.id.as_u128();
        self.schedule
            .remove((current.function.as_str(), current.due_ms, id))
            .map_err(storage)?;
        event.leased = false;
        match settlement {
            Settlement::Delivered => {
                self.take(&current)?;
            }
            Settlement::Retry { at_ms } => {
                event.due_ms = at_ms;
                // The backlog's index knows the stored acceptance time.
                event.enqueued_ms = current.enqueued_ms;
                self.insert(&event)?;
            }
            Settlement::DeadLetter { condition, dead_ms } => {
                self.take(&current)?;
                let function = event.function.clone();
                let dead = DeadLetter {
                    event,
                    condition,
                    dead_ms,
                };
                self.dead
                    .insert((function.as_str(), id), dead.encode().as_slice())
                    .map_err(storage)?;
            }
        }
        if let Some(then) = then {
            let follow = Event::new(
                EventId::random(),
                &then.function,
                then.payload,
                EventMeta::default(),
                now_ms,
            );
            self.add(&follow)?;
        }
        Ok(true)
    }

    fn redrive(
        &mut self,
        function: &str,
        ids: Vec<EventId>,
        now_ms: u64,
    ) -> Result<Vec<EventId>, QueueError> {
        let mut moved = Vec::with_capacity(ids.len());
        for id in ids {
            let key = (function, id.as_u128());
            let decoded = match self.dead.get(key).map_err(storage)? {
                Some(value) => DeadLetter::decode(id, value.value()),
                None => continue,
            };
            let dead = match decoded {
                Ok(dead) => dead,
                Err(e) => {
                    // Kept in the store for inspection; the others are still moved.
                    tracing::error!(%id, %function, error = %e, "cannot redrive a dead letter that cannot be decoded");
                    continue;
                }
            };
            self.dead.remove(key).map_err(storage)?;
            let old = dead.event;
            let mut event = Event::new(id, &old.function, old.payload, old.meta, now_ms);
            // Its lease count goes on, so that a late settle of a lease from before it
            // was dead-lettered does not match the new one.
            event.lease = old.lease;
            self.add(&event)?;
            moved.push(id);
        }
        Ok(moved)
    }
}

/// Most dead letters one commit of a redrive moves.
const REDRIVE_ENTRIES: usize = 500;

/// Most bytes of dead letters one commit of a redrive moves (a single larger entry goes
/// alone).
const REDRIVE_BYTES: usize = 32 << 20;

/// Longest the writer waits for the callers of the last group to come back.
const LINGER: Duration = Duration::from_micros(300);

/// The writer thread: group commit.
///
/// Callers answered by one commit send their next writes at about the same time, but not
/// at the same instant: a writer that committed whatever was there would alternate big
/// groups with groups of one, each paying a whole fsync. So when fewer than half of the
/// last group's writes are waiting, it waits a moment (at most [`LINGER`], far less than
/// an fsync) for the rest.
fn writer(db: &Database, rx: &mpsc::Receiver<Job>, wake: &Notify) {
    let mut last = 1;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        drain(rx, &mut group);
        if group.len() < last / 2 {
            let deadline = Instant::now() + LINGER;
            while group.len() < last && group.len() < MAX_GROUP {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => {
                        group.push(job);
                        drain(rx, &mut group);
                    }
                    Err(_) => break,
                }
            }
        }
        last = group.len();
        run_group(db, group, wake);
    }
}

/// Takes every job waiting, up to a group's size.
fn drain(rx: &mpsc::Receiver<Job>, group: &mut Vec<Job>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// How one job of a group ends, sent once the group's commit is known.
enum Done {
    Unit(oneshot::Sender<Result<(), QueueError>>),
    Events(oneshot::Sender<Result<Vec<Event>, QueueError>>, Vec<Event>),
    Flag(oneshot::Sender<Result<bool, QueueError>>, bool),
    Ids(
        oneshot::Sender<Result<Vec<EventId>, QueueError>>,
        Vec<EventId>,
    ),
}

impl Done {
    fn send(self) {
        match self {
            Done::Unit(tx) => {
                let _ = tx.send(Ok(()));
            }
            Done::Events(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Done::Flag(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Done::Ids(tx, v) => {
                let _ = tx.send(Ok(v));
            }
        }
    }

    fn fail(self, e: &QueueError) {
        match self {
            Done::Unit(tx) => {
                let _ = tx.send(Err(e.clone()));
            }
            Done::Events(tx, _) => {
                let _ = tx.send(Err(e.clone()));
            }
            Done::Flag(tx, _) => {
                let _ = tx.send(Err(e.clone()));
            }
            Done::Ids(tx, _) => {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

/// Applies one job; `Err` is a storage failure, which abandons the whole transaction.
/// The second value says whether the job made events due.
fn apply(tables: &mut Tables<'_>, job: Job) -> (Done, bool, Result<(), QueueError>) {
    match job {
        Job::Enqueue(event, tx) => (Done::Unit(tx), true, tables.add(&event)),
        Job::Lease {
            function,
            now_ms,
            max,
            until_ms,
            reply,
        } => match tables.lease(&function, now_ms, max, until_ms) {
            Ok(events) => (Done::Events(reply, events), false, Ok(())),
            Err(e) => (Done::Events(reply, Vec::new()), false, Err(e)),
        },
        Job::Settle(settle, tx) => {
            let follows = settle.then.is_some();
            match tables.settle(*settle) {
                Ok(kept) => (Done::Flag(tx, kept), follows, Ok(())),
                Err(e) => (Done::Flag(tx, false), false, Err(e)),
            }
        }
        Job::Extend {
            id,
            lease,
            until_ms,
            reply,
        } => match tables.extend(id, lease, until_ms) {
            Ok(kept) => (Done::Flag(reply, kept), false, Ok(())),
            Err(e) => (Done::Flag(reply, false), false, Err(e)),
        },
        Job::Redrive {
            function,
            ids,
            now_ms,
            reply,
        } => match tables.redrive(&function, ids, now_ms) {
            Ok(ids) => (Done::Ids(reply, ids), true, Ok(())),
            Err(e) => (Done::Ids(reply, Vec::new()), false, Err(e)),
        },
        Job::DeleteDead {
            function,
            id,
            reply,
        } => match tables.dead.remove((function.as_str(), id.as_u128())) {
            Ok(found) => (Done::Flag(reply, found.is_some()), false, Ok(())),
            Err(e) => (Done::Flag(reply, false), false, Err(storage(e))),
        },
    }
}

fn run_group(db: &Database, group: Vec<Job>, wake: &Notify) {
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let e = storage(e);
            tracing::error!(error = %e, "cannot begin an async queue write transaction");
            for job in group {
                reply_of(job).fail(&e);
            }
            return;
        }
    };
    if let Err(e) = txn.set_durability(Durability::Immediate) {
        tracing::warn!(error = %e, "cannot set durability; using the database default");
    }
    let mut done = Vec::with_capacity(group.len());
    let mut makes_due = false;
    let mut failure = None;
    let mut jobs = group.into_iter();
    match Tables::open(&txn) {
        Ok(mut tables) => {
            for job in jobs.by_ref() {
                let (d, due, outcome) = apply(&mut tables, job);
                done.push(d);
                makes_due |= due;
                if let Err(e) = outcome {
                    failure = Some(e);
                    break;
                }
            }
        }
        Err(e) => failure = Some(e),
    }
    let failure = match failure {
        Some(e) => {
            drop(txn);
            Some(e)
        }
        None => txn.commit().err().map(storage),
    };
    match failure {
        None => {
            for d in done {
                d.send();
            }
            if makes_due {
                wake.notify_one();
            }
        }
        Some(e) => {
            tracing::error!(error = %e, "async queue write transaction failed; nothing was written");
            for d in done {
                d.fail(&e);
            }
            for job in jobs {
                reply_of(job).fail(&e);
            }
        }
    }
}

/// A job's reply channel, for a job that is not applied.
fn reply_of(job: Job) -> Done {
    match job {
        Job::Enqueue(_, tx) => Done::Unit(tx),
        Job::Lease { reply, .. } => Done::Events(reply, Vec::new()),
        Job::Settle(_, tx) => Done::Flag(tx, false),
        Job::Extend { reply, .. } => Done::Flag(reply, false),
        Job::Redrive { reply, .. } => Done::Ids(reply, Vec::new()),
        Job::DeleteDead { reply, .. } => Done::Flag(reply, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AttemptError;

    fn open(dir: &tempfile::TempDir) -> AsyncQueue {
        AsyncQueue::open(&dir.path().join("events.redb")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_enqueues_are_committed_together_and_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(open(&dir));
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..64 {
            let queue = Arc::clone(&queue);
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for n in 0..50 {
                    let payload = format!("{{\"caller\":{caller},\"n\":{n}}}").into_bytes();
                    ids.push(
                        queue
                            .enqueue("f", payload, EventMeta::default())
                            .await
                            .unwrap(),
                    );
                }
                ids
            });
        }
        let mut ids = Vec::new();
        while let Some(batch) = tasks.join_next().await {
            ids.extend(batch.unwrap());
        }
        assert_eq!(ids.len(), 64 * 50);
        assert_eq!(queue.pending("f").unwrap(), 64 * 50);
        // Every acknowledged event is there after a reopen.
        drop(queue);
        let queue = open(&dir);
        let leased = queue
            .lease("f", now_ms() + 1, usize::MAX, now_ms() + 60_000)
            .await
            .unwrap();
        let mut got: Vec<EventId> = leased.iter().map(|e| e.id).collect();
        got.sort();
        ids.sort();
        assert_eq!(got, ids);
    }

    #[tokio::test]
    async fn the_backlog_counts_queued_and_leased_events_and_knows_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir);
        assert_eq!(queue.backlog("f").unwrap(), (0, None));
        let before = now_ms();
        for _ in 0..3 {
            queue
                .enqueue("f", b"{}".to_vec(), EventMeta::default())
                .await
                .unwrap();
        }
        queue
            .enqueue("g", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        let (count, oldest) = queue.backlog("f").unwrap();
        assert_eq!(count, 3);
        let oldest = oldest.unwrap();
        assert!(oldest >= before && oldest <= now_ms());
        // A leased event is still part of the backlog, with its acceptance time.
        let leased = queue
            .lease("f", now_ms(), 1, now_ms() + 60_000)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!(queue.backlog("f").unwrap(), (3, Some(oldest)));
        assert_eq!(queue.backlog("g").unwrap().0, 1);

        // A retry keeps it; a delivery and a dead letter take it out; a redrive puts it
        // back with its age counted from then.
        let mut event = leased.into_iter().next().unwrap();
        let retry = Settlement::Retry { at_ms: now_ms() };
        assert!(queue.settle(event.clone(), retry, None).await.unwrap());
        assert_eq!(queue.backlog("f").unwrap(), (3, Some(oldest)));
        let all = queue
            .lease("f", now_ms(), 3, now_ms() + 60_000)
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        let mut all = all.into_iter();
        event = all.next().unwrap();
        assert!(
            queue
                .settle(event, Settlement::Delivered, None)
                .await
                .unwrap()
        );
        assert_eq!(queue.backlog("f").unwrap().0, 2);
        let dead = all.next().unwrap();
        let dead_id = dead.id;
        let to_dead = Settlement::DeadLetter {
            condition: Condition::RetriesExhausted,
            dead_ms: now_ms(),
        };
        assert!(queue.settle(dead, to_dead, None).await.unwrap());
        let last = all.next().unwrap();
        assert_eq!(queue.backlog("f").unwrap(), (1, Some(last.enqueued_ms)));
        assert!(
            queue
                .settle(last, Settlement::Delivered, None)
                .await
                .unwrap()
        );
        assert_eq!(queue.backlog("f").unwrap(), (0, None));
        let redriven_at = now_ms();
        assert_eq!(queue.redrive("f", None).await.unwrap(), vec![dead_id]);
        let (count, oldest) = queue.backlog("f").unwrap();
        assert_eq!(count, 1);
        assert!(oldest.unwrap() >= redriven_at);

        // A file written before the backlog's index existed gets one when opened.
        drop(queue);
        let db = Database::create(dir.path().join("events.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(AGE).unwrap());
        assert!(txn.delete_table(COUNT).unwrap());
        txn.commit().unwrap();
        drop(db);
        let queue = open(&dir);
        assert_eq!(queue.backlog("f").unwrap(), (count, oldest));
        assert_eq!(queue.backlog("g").unwrap().0, 1);

        // One whose index no longer agrees with its events (an older version wrote to
        // it since) gets a new one.
        drop(queue);
        let db = Database::create(dir.path().join("events.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(COUNT).unwrap().insert("f", 99).unwrap();
        txn.open_table(AGE)
            .unwrap()
            .insert(("f", 1, 7), ())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let queue = open(&dir);
        assert_eq!(queue.backlog("f").unwrap(), (count, oldest));
        assert_eq!(queue.backlog("g").unwrap().0, 1);
    }

    #[tokio::test]
    async fn a_lease_hides_an_event_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir);
        let id = queue
            .enqueue("f", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        let now = now_ms();
        let first = queue.lease("f", now, 10, now + 1_000).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id, id);
        // Leased: not due before the lease ends, and other functions' leases do not see it.
        assert!(
            queue
                .lease("f", now + 999, 10, now + 5_000)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            queue
                .lease("g", now + 5_000, 10, now + 9_000)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(queue.next_due("f").unwrap(), Some(now + 1_000));
        // The worker holding it never settled: it is delivered again after the lease.
        let again = queue
            .lease("f", now + 1_000, 10, now + 2_000)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, id);
        // The attempt whose lease ran out counts, though it never settled.
        assert_eq!(first[0].attempts, 1);
        assert_eq!(again[0].attempts, 2);
        // The first lease is stale now: its settle changes nothing.
        let kept = queue
            .settle(first[0].clone(), Settlement::Delivered, None)
            .await
            .unwrap();
        assert!(!kept);
        assert_eq!(queue.pending("f").unwrap(), 1);
        let kept = queue
            .settle(again[0].clone(), Settlement::Delivered, None)
            .await
            .unwrap();
        assert!(kept);
        assert_eq!(queue.pending("f").unwrap(), 0);
        assert_eq!(queue.next_due("f").unwrap(), None);
    }

    #[tokio::test]
    async fn an_extended_lease_keeps_its_event_until_the_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir);
        let id = queue
            .enqueue("f", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        let now = now_ms();
        let first = queue.lease("f", now, 10, now + 1_000).await.unwrap();
        assert!(queue.extend(&first[0], now + 5_000).await.unwrap());
        // Never shortened.
        assert!(queue.extend(&first[0], now + 2_000).await.unwrap());
        assert_eq!(queue.next_due("f").unwrap(), Some(now + 5_000));
        assert!(
            queue
                .lease("f", now + 4_999, 10, now + 9_000)
                .await
                .unwrap()
                .is_empty(),
            "still held past the first end"
        );
        // Once the extended lease runs out, the lease is the next one's: the stale holder
        // can neither extend nor settle.
        let again = queue
            .lease("f", now + 5_000, 10, now + 9_000)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, id);
        assert!(!queue.extend(&first[0], now + 20_000).await.unwrap());
        assert_eq!(queue.next_due("f").unwrap(), Some(now + 9_000));
        let kept = queue
            .settle(again[0].clone(), Settlement::Delivered, None)
            .await
            .unwrap();
        assert!(kept);
        // Nor is a settled event's lease extended.
        assert!(!queue.extend(&again[0], now + 20_000).await.unwrap());
        assert_eq!(queue.next_due("f").unwrap(), None);
    }

    #[tokio::test]
    async fn reopening_keeps_queued_events_and_frees_leased_ones() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir);
        let meta = EventMeta {
            trace_id: Some("Root=1-5759e988-bd862e3fe1be46a994272793".to_owned()),
            client_context: None,
        };
        let a = queue
            .enqueue("f", b"1".to_vec(), meta.clone())
            .await
            .unwrap();
        let b = queue
            .enqueue("f", b"2".to_vec(), EventMeta::default())
            .await
            .unwrap();
        let now = now_ms();
        // `a` or `b` is being delivered when the node dies.
        let leased = queue.lease("f", now, 1, now + 3_600_000).await.unwrap();
        assert_eq!(leased.len(), 1);
        drop(queue);
        let queue = open(&dir);
        assert_eq!(queue.pending("f").unwrap(), 2);
        // Both are due at once: the lease of a dead node is not waited out.
        let now = now_ms();
        let mut events = queue.lease("f", now, 10, now + 1_000).await.unwrap();
        events.sort_by_key(|e| e.payload.clone());
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a, b]);
        // The attempt the node cut short does not count: each is on its first attempt.
        assert!(events.iter().all(|e| e.attempts == 1), "{events:?}");
        assert_eq!(events[0].meta, meta);
        assert_eq!(events[0].payload, b"1");
    }

    #[tokio::test]
    async fn retries_come_back_when_due_and_dead_letters_can_be_redriven() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir);
        let id = queue
            .enqueue("f", b"{\"k\":1}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        let now = now_ms();
        let mut event = queue
            .lease("f", now, 1, now + 1_000)
            .await
            .unwrap()
            .remove(0);
        // The lease counts the attempt it is for.
        assert_eq!(event.attempts, 1);
        event.last_error = Some(AttemptError {
            error_type: "Unhandled".to_owned(),
            payload: br#"{"errorType":"Error","errorMessage":"no"}"#.to_vec(),
        });
        assert!(
            queue
                .settle(event, Settlement::Retry { at_ms: now + 500 }, None)
                .await
                .unwrap()
        );
        assert!(
            queue
                .lease("f", now + 499, 1, now + 2_000)
                .await
                .unwrap()
                .is_empty()
        );
        let event = queue
            .lease("f", now + 500, 1, now + 2_000)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(event.attempts, 2);
        assert!(event.last_error.is_some());
        let record = FollowUp {
            function: "alarms".to_owned(),
            payload: b"{\"record\":true}".to_vec(),
        };
        let settled = Settlement::DeadLetter {
            condition: Condition::RetriesExhausted,
            dead_ms: now + 600,
        };
        assert!(queue.settle(event, settled, Some(record)).await.unwrap());
        assert_eq!(queue.pending("f").unwrap(), 0);
        // The destination's record was enqueued with the settle.
        assert_eq!(queue.pending("alarms").unwrap(), 1);
        let dead = queue.dead_letters("f", None, usize::MAX).unwrap().0;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id(), id);
        assert_eq!(dead[0].event.attempts, 2);
        assert_eq!(queue.dead_letter("f", id).unwrap(), Some(dead[0].clone()));
        assert_eq!(queue.dead_letter("g", id).unwrap(), None);
        // Redriven: back in the queue with the same id and fresh attempts.
        assert_eq!(queue.redrive("f", None).await.unwrap(), vec![id]);
        assert!(
            queue
                .dead_letters("f", None, usize::MAX)
                .unwrap()
                .0
                .is_empty()
        );
        let now = now_ms();
        let event = queue
            .lease("f", now, 1, now + 1_000)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(event.id, id);
        assert_eq!(event.attempts, 1, "only the attempt this lease is for");
        assert_eq!(event.last_error, None);
        assert_eq!(event.payload, b"{\"k\":1}");
        // Redriving what is not there moves nothing; deleting removes an entry.
        assert!(queue.redrive("f", Some(vec![id])).await.unwrap().is_empty());
        let settled = Settlement::DeadLetter {
            condition: Condition::EventAgeExceeded,
            dead_ms: now,
        };
        assert!(queue.settle(event, settled, None).await.unwrap());
        assert!(queue.delete_dead_letter("f", id).await.unwrap());
        assert!(!queue.delete_dead_letter("f", id).await.unwrap());
        assert!(
            queue
                .dead_letters("f", None, usize::MAX)
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_letters_come_in_pages_and_one_that_cannot_be_decoded_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir);
        for n in 0..5 {
            let payload = format!("{{\"n\":{n}}}").into_bytes();
            queue
                .enqueue("f", payload, EventMeta::default())
                .await
                .unwrap();
        }
        let now = now_ms();
        let leased = queue.lease("f", now, 10, now + 1_000).await.unwrap();
        assert_eq!(leased.len(), 5);
        let mut ids: Vec<EventId> = leased.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        for event in leased {
            let settled = Settlement::DeadLetter {
                condition: Condition::RetriesExhausted,
                dead_ms: now,
            };
            assert!(queue.settle(event, settled, None).await.unwrap());
        }
        // An entry written by something else (a newer version, a damaged file).
        let bad = EventId::from_u128(u128::MAX - 1);
        let txn = queue.db.begin_write().unwrap();
        txn.open_table(DEAD)
            .unwrap()
            .insert(("f", bad.as_u128()), &b"not a dead letter"[..])
            .unwrap();
        txn.commit().unwrap();

        let page = |after, limit| {
            let (entries, next) = queue.dead_letters("f", after, limit).unwrap();
            (entries.iter().map(DeadLetter::id).collect::<Vec<_>>(), next)
        };
        assert_eq!(page(None, 2), (ids[..2].to_vec(), Some(ids[1])));
        assert_eq!(page(Some(ids[1]), 2), (ids[2..4].to_vec(), Some(ids[3])));
        assert_eq!(page(Some(ids[3]), 2), (ids[4..].to_vec(), None));
        assert_eq!(page(None, 100), (ids.clone(), None));
        assert_eq!(page(Some(bad), 100), (Vec::new(), None));

        // Redriving all moves the five and leaves the bad entry where it was.
        let mut moved = queue.redrive("f", None).await.unwrap();
        moved.sort_unstable();
        assert_eq!(moved, ids);
        assert_eq!(queue.pending("f").unwrap(), 5);
        assert_eq!(page(None, 100), (Vec::new(), None));
        let txn = queue.db.begin_read().unwrap();
        let dead = txn.open_table(DEAD).unwrap();
        assert!(dead.get(("f", bad.as_u128())).unwrap().is_some());
    }

    #[tokio::test]
    async fn redriving_a_large_store_moves_it_in_bounded_commits() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir);
        let count = 2 * REDRIVE_ENTRIES + 1;
        let mut ids = Vec::new();
        let txn = queue.db.begin_write().unwrap();
        {
            let mut dead = txn.open_table(DEAD).unwrap();
            for _ in 0..count {
                let event = Event::new(
                    EventId::random(),
                    "f",
                    b"{}".to_vec(),
                    EventMeta::default(),
                    0,
                );
                ids.push(event.id);
                let letter = DeadLetter {
                    event,
                    condition: Condition::RetriesExhausted,
                    dead_ms: 0,
                };
                dead.insert(("f", letter.id().as_u128()), letter.encode().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let chunks = dead_chunks(&queue.db, "f").unwrap();
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [REDRIVE_ENTRIES, REDRIVE_ENTRIES, 1]
        );
        let mut moved = queue.redrive("f", None).await.unwrap();
        moved.sort_unstable();
        ids.sort_unstable();
        assert_eq!(moved, ids);
        assert_eq!(queue.pending("f").unwrap(), count);
        assert!(
            queue
                .dead_letters("f", None, usize::MAX)
                .unwrap()
                .0
                .is_empty()
        );
    }
}
