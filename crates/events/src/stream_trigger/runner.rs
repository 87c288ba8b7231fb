//! One trigger's task: read, batch, invoke, retry, checkpoint.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use nimbus_core::{
    EventSource, EventSpec, InvokeError, InvokeOptions, Outcome, RetryPolicy, StartingPosition,
};
use tokio::{sync::watch, time::Instant};

use super::{
    Change, Shared, StreamName,
    payload::{
        BatchResponse, LastAttempt, batch_response, fitting, on_failure_record, stream_event,
    },
};
use crate::{EventMeta, queue::now_ms, worker::backoff};

/// Lambda's conditions for records given up.
const RETRIES_EXHAUSTED: &str = "RetryAttemptsExhausted";
const AGE_EXCEEDED: &str = "RecordAgeExceeded";

/// How an invocation of a batch ended.
enum Attempt {
    /// Every record succeeded.
    Success,
    /// The function reported this record (an index in the batch) as the first failed one.
    Partial(usize),
    /// The function failed (an error it raised, a timeout, a crash).
    FunctionError,
    /// The function reported failures that name no record of the batch, does not
    /// exist, or could not start.
    Failed,
    /// The invocation was throttled: no attempt, as on Lambda, which retries throttles
    /// until the records expire.
    NotRun,
}

/// Where a trigger stands: after record `after` (from the stream's start for `None`) of
/// the stream whose ARN is `stream` (not yet known for `None`).
#[derive(Debug)]
struct Cursor {
    after: Option<u64>,
    stream: Option<String>,
}

/// What woke a wait.
enum Wake {
    Changed,
    Timeout,
    Stop,
}

/// A table trigger, as its task runs it.
pub(super) struct Trigger {
    id: String,
    table: String,
    function: String,
    function_arn: String,
    starting_position: StartingPosition,
    batch_size: usize,
    window: Duration,
    bisect: bool,
    on_failure: Option<String>,
    retry: RetryPolicy,
    shared: Arc<Shared>,
}

impl Trigger {
    /// The trigger of `spec`, `None` when it is not a table source.
    pub(super) fn new(id: String, spec: &EventSpec, shared: Arc<Shared>) -> Option<Trigger> {
        let EventSource::Table {
            table,
            starting_position,
            batch_size,
            batching_window,
            bisect_on_error,
            on_failure,
        } = &spec.source
        else {
            return None;
        };
        Some(Trigger {
            function_arn: format!(
                "arn:aws:lambda:{}:000000000000:function:{}",
                shared.config.region, spec.function
            ),
            id,
            table: table.clone(),
            function: spec.function.clone(),
            starting_position: *starting_position,
            batch_size: usize::try_from(*batch_size).unwrap_or(usize::MAX).max(1),
            window: *batching_window,
            bisect: *bisect_on_error,
            on_failure: on_failure.clone(),
            retry: spec.retry,
            shared,
        })
    }

    /// Runs until `stop` turns true.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut commits = self.shared.source.commits(&self.table);
        let Some(mut cursor) = self.start(&mut stop).await else {
            return;
        };
        tracing::info!(
            trigger = %self.id,
            function = %self.function,
            checkpoint = ?cursor.after,
            "stream trigger started"
        );
        loop {
            let Some(batch) = self.next_batch(&mut cursor, &mut commits, &mut stop).await else {
                return;
            };
            if !self.deliver(batch, &mut cursor, &mut stop).await {
                return;
            }
        }
    }

    /// Where to start: after the stored checkpoint, else at the starting position
    /// (`LATEST` stores its own at once). `None` when stopping.
    async fn start(&self, stop: &mut watch::Receiver<bool>) -> Option<Cursor> {
        loop {
            let stored = self
                .shared
                .checkpoints
                .get(&self.id)
                .and_then(|after| Ok((after, self.shared.checkpoints.stream(&self.id)?)));
            match stored {
                Ok((Some(seq), stream)) => {
                    return Some(Cursor {
                        after: Some(seq),
                        stream,
                    });
                }
                Ok((None, _)) => match self.starting_position {
                    StartingPosition::TrimHorizon => {
                        return Some(Cursor {
                            after: None,
                            stream: None,
                        });
                    }
                    StartingPosition::Latest => {
                        // The stream first, so that a stream replaced in between is
                        // read from its start rather than skipped.
                        let stream = self.shared.source.stream(&self.table).map(|s| s.arn);
                        match self.shared.source.latest(&self.table).await {
                            // Sequence numbers start at 1: after 0 is the whole of an empty stream.
                            Ok(latest) => {
                                let seq = latest.unwrap_or(0);
                                match self
                                    .shared
                                    .checkpoints
                                    .set(&self.id, seq, stream.as_deref())
                                    .await
                                {
                                    Ok(()) => {
                                        return Some(Cursor {
                                            after: Some(seq),
                                            stream,
                                        });
                                    }
                                    Err(e) => {
                                        tracing::error!(trigger = %self.id, error = %e, "cannot store the trigger's starting checkpoint");
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::warn!(trigger = %self.id, error = %e, "cannot find the end of the stream");
                            }
                        }
                    }
                },
                Err(e) => {
                    tracing::error!(trigger = %self.id, error = %e, "cannot read the trigger's checkpoint");
                }
            }
            if !pause(self.shared.config.poll_interval, stop).await {
                return None;
            }
        }
    }

    /// The next batch after `cursor`: up to `batch_size` records of one stream, waiting
    /// up to the batching window for it to fill once it has one. `None` when stopping.
    async fn next_batch(
        &self,
        cursor: &mut Cursor,
        commits: &mut watch::Receiver<u64>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<Change>> {
        let poll = self.shared.config.poll_interval;
        let mut batch = loop {
            if *stop.borrow() {
                return None;
            }
            // Seen before reading: a commit after this read wakes the wait below.
            commits.borrow_and_update();
            match self
                .shared
                .source
                .read(&self.table, cursor.after, self.batch_size)
                .await
            {
                Ok(batch) if !batch.is_empty() => {
                    if self.replaced(cursor, batch[0].stream_arn()).await {
                        continue;
                    }
                    break batch;
                }
                Ok(_) => {
                    // A new stream not yet past the old checkpoint reads as empty.
                    let current = self.shared.source.stream(&self.table).map(|s| s.arn);
                    if self.replaced(cursor, current.as_deref()).await {
                        continue;
                    }
                    if let Wake::Stop = wait(commits, stop, Instant::now() + poll).await {
                        return None;
                    }
                }
                Err(e) => {
                    tracing::warn!(trigger = %self.id, error = %e, "cannot read the table stream; retrying");
                    if !pause(poll, stop).await {
                        return None;
                    }
                }
            }
        };
        if let (Some(after), Some(first)) = (cursor.after, batch.first())
            && first.sequence > after.saturating_add(1)
        {
            tracing::warn!(
                trigger = %self.id,
                missed = first.sequence - after - 1,
                "stream records were trimmed (24 hours old) before the trigger could deliver them"
            );
        }
        if self.window.is_zero() {
            batch.truncate(fitting(&batch));
            return Some(batch);
        }
        let deadline = Instant::now() + self.window;
        while batch.len() < self.batch_size {
            match wait(commits, stop, deadline).await {
                Wake::Stop => return None,
                Wake::Timeout => break,
                Wake::Changed => {}
            }
            let last = batch.last().map(|c| c.sequence);
            match self
                .shared
                .source
                .read(&self.table, last, self.batch_size - batch.len())
                .await
            {
                Ok(more) => {
                    // Records of one stream only: a read after the table was replaced
                    // comes from the new stream.
                    let stream = batch[0].stream_arn().map(str::to_owned);
                    let more = more
                        .into_iter()
                        .take_while(|c| c.stream_arn() == stream.as_deref());
                    batch.extend(more);
                }
                Err(e) => {
                    tracing::warn!(trigger = %self.id, error = %e, "cannot read the table stream; delivering the batch as it is");
                    break;
                }
            }
        }
        // The rest of what was read comes again in the next batch.
        batch.truncate(fitting(&batch));
        Some(batch)
    }

    /// Delivers `batch`, retrying, bisecting and giving up as the trigger says, and
    /// moves `cursor` past every record done with. `false` when stopping (the
    /// records not done with are delivered again after the restart).
    async fn deliver(
        &self,
        batch: Vec<Change>,
        cursor: &mut Cursor,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        // Batches to try, front first, each with the failed attempts it has had. They
        // are consecutive in the stream, so working front first keeps the order.
        let mut pending: VecDeque<(Vec<Change>, u32)> = VecDeque::from([(batch, 0)]);
        let max_age = u64::try_from(self.retry.max_event_age.as_millis()).unwrap_or(u64::MAX);
        // Invocations in a row that did not run, for their backoff.
        let mut not_run = 0u32;
        while let Some((mut records, attempts)) = pending.pop_front() {
            let now = now_ms();
            let expired = records
                .iter()
                .take_while(|c| now.saturating_sub(c.created_ms) > max_age)
                .count();
            if expired > 0 {
                let old: Vec<Change> = records.drain(..expired).collect();
                tracing::warn!(
                    trigger = %self.id,
                    records = old.len(),
                    max_event_age = ?self.retry.max_event_age,
                    "skipping stream records older than max_event_age"
                );
                if !self
                    .give_up(&old, AGE_EXCEEDED, attempts, None, cursor, stop)
                    .await
                {
                    return false;
                }
            }
            if records.is_empty() {
                continue;
            }
            let (attempt, last) = self.invoke(&records).await;
            if let Attempt::NotRun = attempt {
                not_run = not_run.saturating_add(1);
                let config = &self.shared.config;
                if !pause(backoff(config.retry_base, config.retry_cap, not_run), stop).await {
                    return false;
                }
                pending.push_front((records, attempts));
                continue;
            }
            not_run = 0;
            let failed = match attempt {
                Attempt::Success => {
                    let done = records.last().map(|c| c.sequence);
                    self.advance(cursor, done).await;
                    continue;
                }
                Attempt::Partial(first_failed) => {
                    let rest = records.split_off(first_failed);
                    if records.is_empty() {
                        (rest, attempts + 1)
                    } else {
                        // Progress: the record now first has failed once.
                        let done = records.last().map(|c| c.sequence);
                        self.advance(cursor, done).await;
                        (rest, 1)
                    }
                }
                Attempt::FunctionError if self.bisect && records.len() > 1 => {
                    // Splitting uses up no retry (as Lambda's BisectBatchOnFunctionError).
                    let second = records.split_off(records.len() / 2);
                    pending.push_front((second, attempts));
                    pending.push_front((records, attempts));
                    continue;
                }
                Attempt::FunctionError | Attempt::Failed | Attempt::NotRun => {
                    (records, attempts + 1)
                }
            };
            let (records, attempts) = failed;
            if attempts > self.retry.max_retries {
                tracing::warn!(
                    trigger = %self.id,
                    records = records.len(),
                    attempts,
                    "giving up stream records after their last retry"
                );
                if !self
                    .give_up(
                        &records,
                        RETRIES_EXHAUSTED,
                        attempts,
                        Some(&last),
                        cursor,
                        stop,
                    )
                    .await
                {
                    return false;
                }
                continue;
            }
            let config = &self.shared.config;
            if !pause(backoff(config.retry_base, config.retry_cap, attempts), stop).await {
                return false;
            }
            pending.push_front((records, attempts));
        }
        true
    }

    /// Invokes the function with `records` and tells how it went.
    async fn invoke(&self, records: &[Change]) -> (Attempt, LastAttempt) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let options = InvokeOptions {
            request_id: Some(request_id.clone()),
            ..InvokeOptions::default()
        };
        let span = super::trace::batch_span(&self.function, records);
        let result = span
            .in_scope(
                self.shared
                    .invoker
                    .invoke(&self.function, stream_event(records), options),
            )
            .await;
        drop(span);
        let ran = |request_id: String, function_error| LastAttempt {
            request_id,
            status: 200,
            function_error,
        };
        match result {
            Ok(result) => match result.outcome {
                // Only the gateway's HTTP requests are answered with `Http`; a success
                // all the same.
                outcome @ (Outcome::Response(_) | Outcome::Http(_)) => {
                    match batch_response(&outcome.into_payload(), records) {
                        BatchResponse::Succeeded => {
                            (Attempt::Success, ran(result.request_id, None))
                        }
                        BatchResponse::FailedFrom(i) => {
                            tracing::info!(
                                trigger = %self.id,
                                request_id = %result.request_id,
                                failed = records.len() - i,
                                "the function reported failed stream records; retrying from the first"
                            );
                            (Attempt::Partial(i), ran(result.request_id, None))
                        }
                        BatchResponse::Failed => {
                            tracing::warn!(
                                trigger = %self.id,
                                request_id = %result.request_id,
                                "batchItemFailures names no record of the batch: the whole batch failed"
                            );
                            (Attempt::Failed, ran(result.request_id, None))
                        }
                    }
                }
                Outcome::Error { error_type, .. } => {
                    tracing::warn!(
                        trigger = %self.id,
                        request_id = %result.request_id,
                        error_type = %error_type,
                        records = records.len(),
                        "stream trigger invocation failed"
                    );
                    (
                        Attempt::FunctionError,
                        ran(result.request_id, Some("Unhandled")),
                    )
                }
            },
            Err(e) => {
                tracing::warn!(trigger = %self.id, error = %e, "stream trigger invocation did not run");
                let (attempt, status) = match e {
                    InvokeError::NotFound(_) => (Attempt::Failed, 404),
                    InvokeError::Throttled(_) => (Attempt::NotRun, 429),
                    // An instance that could not start is a failed attempt, as a Lambda
                    // init failure is a function error.
                    InvokeError::Unavailable(_) => (Attempt::Failed, 500),
                };
                (
                    attempt,
                    LastAttempt {
                        request_id,
                        status,
                        function_error: None,
                    },
                )
            }
        }
    }

    /// Sends the on-failure record of `records` to the trigger's `on_failure` function
    /// (if any) and moves past them. `false` when stopping before the record is queued.
    async fn give_up(
        &self,
        records: &[Change],
        condition: &str,
        attempts: u32,
        last: Option<&LastAttempt>,
        cursor: &mut Cursor,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        match &self.on_failure {
            Some(destination) => {
                let current = self.shared.source.stream(&self.table);
                // The records' own stream: the table's current one unless it was replaced
                // since (whose shard is then not known here).
                let stream = match (records.first().and_then(Change::stream_arn), current) {
                    (Some(arn), Some(current)) if arn != current.arn => StreamName {
                        arn: arn.to_owned(),
                        shard_id: String::new(),
                    },
                    (_, Some(current)) => current,
                    (arn, None) => StreamName {
                        arn: arn.unwrap_or_default().to_owned(),
                        shard_id: String::new(),
                    },
                };
                let payload = on_failure_record(
                    records,
                    &stream,
                    &self.function_arn,
                    condition,
                    attempts,
                    last,
                    now_ms(),
                );
                let mut tries = 0;
                loop {
                    match self
                        .shared
                        .queue
                        .enqueue(destination, payload.clone(), EventMeta::default())
                        .await
                    {
                        Ok(id) => {
                            tracing::info!(
                                trigger = %self.id,
                                destination = %destination,
                                event = %id,
                                condition,
                                "sent the on-failure record of discarded stream records"
                            );
                            break;
                        }
                        Err(e) => {
                            tries += 1;
                            tracing::error!(trigger = %self.id, error = %e, "cannot queue the on-failure record; retrying");
                            let config = &self.shared.config;
                            if !pause(backoff(config.retry_base, config.retry_cap, tries), stop)
                                .await
                            {
                                return false;
                            }
                        }
                    }
                }
            }
            None => tracing::warn!(
                trigger = %self.id,
                records = records.len(),
                condition,
                "discarding stream records (the trigger has no on_failure destination)"
            ),
        }
        let done = records.last().map(|c| c.sequence);
        self.advance(cursor, done).await;
        true
    }

    /// Whether `seen`, the stream just read, replaced the cursor's: the table was deleted
    /// and created again, or its stream turned off and on, and the new stream is numbered
    /// from 1 again. The cursor then moves to the new stream's start (stored at once) and
    /// the caller reads again. A cursor that knows no stream yet takes `seen` as its own.
    async fn replaced(&self, cursor: &mut Cursor, seen: Option<&str>) -> bool {
        let Some(seen) = seen else {
            return false;
        };
        match &cursor.stream {
            Some(known) if known != seen => {
                tracing::warn!(
                    trigger = %self.id,
                    old = %known,
                    new = %seen,
                    "the table's stream was replaced (the table was created again, or its stream turned off and on); the trigger starts at the new stream's oldest record"
                );
                *cursor = Cursor {
                    after: None,
                    stream: Some(seen.to_owned()),
                };
                // After 0 is the whole stream. On failure a restart finds the old
                // checkpoint and its stream, and replaces them again.
                if let Err(e) = self.shared.checkpoints.set(&self.id, 0, Some(seen)).await {
                    tracing::error!(trigger = %self.id, error = %e, "cannot store the trigger's checkpoint");
                }
                true
            }
            Some(_) => false,
            None => {
                cursor.stream = Some(seen.to_owned());
                false
            }
        }
    }

    /// Moves the cursor to `done` and stores it.
    async fn advance(&self, cursor: &mut Cursor, done: Option<u64>) {
        let Some(done) = done else {
            return;
        };
        cursor.after = Some(done);
        // On failure the trigger goes on from memory; a restart delivers again from the
        // last stored checkpoint (at least once).
        if let Err(e) = self
            .shared
            .checkpoints
            .set(&self.id, done, cursor.stream.as_deref())
            .await
        {
            tracing::error!(trigger = %self.id, error = %e, "cannot store the trigger's checkpoint");
        }
    }
}

/// Sleeps for `duration`; `false` when a stop came first.
async fn pause(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        () = tokio::time::sleep(duration) => true,
    }
}

/// Waits for a commit, `until`, or a stop, whichever comes first.
async fn wait(
    commits: &mut watch::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
    until: Instant,
) -> Wake {
    let changed = async {
        if commits.changed().await.is_err() {
            // Nobody announces commits any more: polling alone finds them.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = stop.wait_for(|s| *s) => Wake::Stop,
        () = changed => Wake::Changed,
        () = tokio::time::sleep_until(until) => Wake::Timeout,
    }
}
