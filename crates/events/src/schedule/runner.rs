//! The app's schedules and the task that fires them.

use std::{sync::Arc, time::Duration};

use nimbus_core::{AppSpec, EventSource, RetryPolicy};
use tokio::sync::watch;

use super::{
    Clock, ScheduleError, ScheduleLease, ScheduleState, Timetable, describe, rule_arn,
    scheduled_event, tick_id,
};
use crate::{AsyncQueue, EventId, EventMeta};

/// How long a schedule waits after its first failure (the store or the queue) before
/// trying again; the wait doubles with each failure after that, up to [`RETRY_CAP`].
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two tries of a tick.
const RETRY_CAP: Duration = Duration::from_secs(60);

/// The wait after failure number `failures` (1 for the first) of a tick.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_CAP)
}

/// The longest the task sleeps before looking at the clock again, so that a change of the
/// system clock or a suspended machine delays a fire by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One schedule of the app.
#[derive(Debug)]
struct Entry {
    /// `APP-FUNCTION-N`: the key of its record and the name in its rule ARN.
    rule: String,
    arn: String,
    function: String,
    expression: String,
    timetable: Timetable,
    enabled: bool,
    /// How long a tick's event is tried before the tick is given up.
    retry: RetryPolicy,
    /// Failed attempts at the current tick.
    failures: u32,
    /// When the first of them was.
    failing_since_ms: Option<u64>,
    /// Its record, once read.
    state: Option<ScheduleState>,
    /// After a failure, not before this.
    retry_at_ms: u64,
}

/// A tick that was fired: its event is in the async queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The schedule's rule name.
    pub rule: String,
    /// The function the event is for.
    pub function: String,
    /// The fire time the event carries (ms since the epoch).
    pub time_ms: u64,
    /// The queued event's id.
    pub event: EventId,
    /// Whether it stands for more than one missed fire time.
    pub missed_several: bool,
}

/// The app's schedules: when each fires next, and firing those that are due.
pub struct Schedules {
    entries: Vec<Entry>,
    queue: Arc<AsyncQueue>,
    lease: Arc<dyn ScheduleLease>,
    region: String,
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedules")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Schedules {
    /// The schedules `app` declares, named `APP-FUNCTION-N` (N counts a function's
    /// schedules from 1, in declaration order), firing into `queue`.
    ///
    /// # Errors
    /// When a cron expression is not valid.
    pub fn new(
        app: &AppSpec,
        queue: Arc<AsyncQueue>,
        lease: Arc<dyn ScheduleLease>,
        region: &str,
    ) -> Result<Schedules, ScheduleError> {
        let mut entries: Vec<Entry> = Vec::new();
        for spec in &app.events {
            let EventSource::Schedule(expression) = &spec.source else {
                continue;
            };
            let n = 1 + entries
                .iter()
                .filter(|e| e.function == spec.function)
                .count();
            let rule = format!("{}-{}-{n}", app.name, spec.function);
            let text = describe(expression);
            let timetable =
                Timetable::new(expression).map_err(|source| ScheduleError::Expression {
                    rule: rule.clone(),
                    expression: text.clone(),
                    source,
                })?;
            entries.push(Entry {
                arn: rule_arn(region, &rule),
                rule,
                function: spec.function.clone(),
                expression: text,
                timetable,
                enabled: spec.enabled,
                retry: spec.retry,
                failures: 0,
                failing_since_ms: None,
                state: None,
                retry_at_ms: 0,
            });
        }
        Ok(Schedules {
            entries,
            queue,
            lease,
            region: region.to_owned(),
        })
    }

    /// Whether the app has no schedules.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The schedules' rule names, in declaration order.
    pub fn rules(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.rule.as_str())
    }

    /// When the next schedule is due (ms since the epoch), or a schedule whose record
    /// could not be read is tried again; `None` when none will ever fire again.
    pub fn next_wake(&self) -> Option<u64> {
        self.entries
            .iter()
            .filter_map(|e| {
                let due = match &e.state {
                    Some(s) => e.timetable.next_after(s.anchor_ms, s.done_until_ms)?,
                    None => 0,
                };
                Some(due.max(e.retry_at_ms))
            })
            .min()
    }

    /// Fires every schedule due at `now_ms`, once each (once for several missed fire
    /// times), and returns what was fired. A schedule seen for the first time is recorded,
    /// anchored at `now_ms`. Failures are logged, and the schedule is tried again after a
    /// backoff (1 s, doubling up to 60 s), until its retry policy gives the tick up.
    pub async fn fire_due(&mut self, now_ms: u64) -> Vec<Fired> {
        let mut fired = Vec::new();
        for i in 0..self.entries.len() {
            if now_ms < self.entries[i].retry_at_ms {
                continue;
            }
            match self.fire_one(i, now_ms).await {
                Ok(f) => {
                    let entry = &mut self.entries[i];
                    entry.failures = 0;
                    entry.failing_since_ms = None;
                    fired.extend(f);
                }
                Err(e) => {
                    let entry = &mut self.entries[i];
                    entry.failures = entry.failures.saturating_add(1);
                    entry.failing_since_ms.get_or_insert(now_ms);
                    let delay = retry_delay(entry.failures);
                    tracing::error!(rule = %entry.rule, function = %entry.function, error = %e, attempts = entry.failures, retry_in_ms = millis(delay), "schedule could not fire; trying again");
                    entry.retry_at_ms = now_ms.saturating_add(millis(delay));
                }
            }
        }
        fired
    }

    async fn fire_one(&mut self, i: usize, now_ms: u64) -> Result<Option<Fired>, ScheduleError> {
        let lease = Arc::clone(&self.lease);
        let entry = &mut self.entries[i];
        let state = match &mut entry.state {
            Some(state) => state,
            None => {
                let state = lease.open(&entry.rule, &entry.expression, now_ms).await?;
                tracing::debug!(rule = %entry.rule, expression = %entry.expression, anchor_ms = state.anchor_ms, "schedule loaded");
                entry.state.insert(state)
            }
        };
        let Some(next) = entry
            .timetable
            .next_after(state.anchor_ms, state.done_until_ms)
        else {
            return Ok(None);
        };
        if next > now_ms {
            return Ok(None);
        }
        // Once for all the fire times that passed: the latest stands for them.
        let tick = entry
            .timetable
            .last_at_or_before(state.anchor_ms, now_ms)
            .unwrap_or(next)
            .max(next);
        let retry = entry.retry;
        if entry.failing_since_ms.is_some_and(|since| {
            entry.failures > retry.max_retries
                || now_ms.saturating_sub(since) > millis(retry.max_event_age)
        }) {
            // EventBridge's retry policy for handing the event over: the tick is given up.
            lease.settle(&entry.rule, tick, false).await?;
            state.done_until_ms = tick;
            tracing::error!(rule = %entry.rule, function = %entry.function, time = %crate::timestamp(tick), attempts = entry.failures, "schedule gave up a tick whose event it could not enqueue");
            return Ok(None);
        }
        if !lease.claim(&entry.rule, tick).await? {
            // Another node holds the lease, or the tick is already settled.
            state.done_until_ms = tick;
            return Ok(None);
        }
        if !entry.enabled {
            lease.settle(&entry.rule, tick, false).await?;
            state.done_until_ms = tick;
            return Ok(None);
        }
        // The same id each time this tick fires (again after a crash before the record).
        let id = tick_id(&entry.arn, tick);
        let payload = scheduled_event(id, tick, &self.region, &entry.arn);
        let event = self
            .queue
            .enqueue(&entry.function, payload, EventMeta::default())
            .await?;
        // The event is durable: this tick is done here whether or not the record below
        // is written (if it is not, a restart fires the tick again: a duplicate).
        state.done_until_ms = tick;
        state.last_fired_ms = Some(tick);
        let missed_several = tick != next;
        let time = crate::timestamp(tick);
        if missed_several {
            tracing::info!(rule = %entry.rule, function = %entry.function, %time, %event, "schedule fired once for the runs missed while the node was down");
        } else {
            tracing::info!(rule = %entry.rule, function = %entry.function, %time, %event, "schedule fired");
        }
        if let Err(e) = lease.settle(&entry.rule, tick, true).await {
            tracing::error!(rule = %entry.rule, error = %e, "a fired tick could not be recorded; it fires again after a restart");
        }
        Ok(Some(Fired {
            rule: entry.rule.clone(),
            function: entry.function.clone(),
            time_ms: tick,
            event,
            missed_several,
        }))
    }
}

/// The task that fires the app's schedules on time.
#[derive(Debug)]
pub struct Scheduler {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Scheduler {
    /// Starts firing `schedules` on the current tokio runtime, reading the time from
    /// `clock` (an app without schedules starts no task).
    pub fn start(schedules: Schedules, clock: Arc<dyn Clock>) -> Scheduler {
        let (stop, rx) = watch::channel(false);
        let task = (!schedules.is_empty()).then(|| tokio::spawn(run(schedules, clock, rx)));
        Scheduler { stop, task }
    }

    /// Stops the task after the tick it may be firing.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(mut schedules: Schedules, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    let rules: Vec<&str> = schedules.rules().collect();
    tracing::info!(schedules = ?rules, "schedules running");
    loop {
        schedules.fire_due(clock.now_ms()).await;
        let now = clock.now_ms();
        let wait = schedules
            .next_wake()
            .map_or(MAX_SLEEP, |at| {
                Duration::from_millis(at.saturating_sub(now))
            })
            .min(MAX_SLEEP);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use nimbus_core::{EventSpec, RetryPolicy, ScheduleExpression, limits};

    use super::*;
    use nimbus_core::cron::calendar::days_from_civil;

    use crate::LocalLease;

    const MINUTE: u64 = 60_000;

    /// Ms since the epoch of a UTC date and time.
    fn at(y: i64, mo: u32, d: u32, h: u64, mi: u64) -> u64 {
        (u64::try_from(days_from_civil(y, mo, d)).unwrap() * 1440 + h * 60 + mi) * MINUTE
    }

    fn app(schedules: &[(&str, ScheduleExpression, bool)]) -> AppSpec {
        let mut app = AppSpec::named("shop");
        app.events = schedules
            .iter()
            .map(|(function, expression, enabled)| EventSpec {
                source: EventSource::Schedule(expression.clone()),
                function: (*function).to_owned(),
                retry: RetryPolicy {
                    max_retries: limits::DEFAULT_MAX_RETRIES,
                    max_event_age: limits::DEFAULT_MAX_EVENT_AGE,
                },
                enabled: *enabled,
            })
            .collect();
        app
    }

    fn rate(minutes: u64) -> ScheduleExpression {
        ScheduleExpression::Rate {
            every: Duration::from_secs(minutes * 60),
        }
    }

    fn cron(fields: &str) -> ScheduleExpression {
        let fields: Vec<String> = fields.split(' ').map(str::to_owned).collect();
        ScheduleExpression::Cron {
            fields: fields.try_into().unwrap(),
        }
    }

    /// A node's state: the queue and the schedule record, reopened on every "restart".
    struct Node {
        dir: tempfile::TempDir,
        queue: Arc<AsyncQueue>,
    }

    impl Node {
        fn new() -> Node {
            let dir = tempfile::tempdir().unwrap();
            let queue = Arc::new(AsyncQueue::open(&dir.path().join("events.redb")).unwrap());
            Node { dir, queue }
        }

        /// The schedules of `app` as a node (re)started now would run them.
        fn schedules(&self, app: &AppSpec) -> Schedules {
            let lease = LocalLease::open(&self.dir.path().join("schedules.redb")).unwrap();
            Schedules::new(app, Arc::clone(&self.queue), Arc::new(lease), "us-east-1").unwrap()
        }

        /// The payloads queued for `function`, taken out of the queue.
        async fn take(&self, function: &str) -> Vec<serde_json::Value> {
            let now = crate::now_ms();
            self.queue
                .lease(function, now, 1000, now + 60_000)
                .await
                .unwrap()
                .into_iter()
                .map(|e| serde_json::from_slice(&e.payload).unwrap())
                .collect()
        }
    }

    fn times(fired: &[Fired]) -> Vec<u64> {
        fired.iter().map(|f| f.time_ms).collect()
    }

    #[tokio::test]
    async fn a_rate_fires_every_period_from_its_first_start() {
        let node = Node::new();
        let app = app(&[("report", rate(5), true)]);
        let mut s = node.schedules(&app);
        let t0 = at(2026, 11, 27, 11, 58) + 1234;
        assert!(s.fire_due(t0).await.is_empty(), "not at creation");
        assert_eq!(s.next_wake(), Some(t0 + 5 * MINUTE));
        assert!(s.fire_due(t0 + 5 * MINUTE - 1).await.is_empty());
        let fired = s.fire_due(t0 + 5 * MINUTE).await;
        assert_eq!(times(&fired), [t0 + 5 * MINUTE]);
        assert_eq!(fired[0].rule, "shop-report-1");
        assert!(!fired[0].missed_several);
        assert!(
            s.fire_due(t0 + 5 * MINUTE + 10).await.is_empty(),
            "once per tick"
        );
        // A late wake-up still fires the tick it woke for, and keeps the phase.
        let fired = s.fire_due(t0 + 10 * MINUTE + 900).await;
        assert_eq!(times(&fired), [t0 + 10 * MINUTE]);
        assert_eq!(s.next_wake(), Some(t0 + 15 * MINUTE));

        let events = node.take("report").await;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["detail-type"], "Scheduled Event");
        assert_eq!(events[0]["source"], "aws.events");
        assert_eq!(events[0]["time"], "2026-11-27T12:03:01Z");
        assert_eq!(
            events[0]["resources"][0],
            "arn:aws:events:us-east-1:000000000000:rule/shop-report-1"
        );
        assert_ne!(events[0]["id"], events[1]["id"]);
    }

    #[tokio::test]
    async fn a_restart_keeps_a_rates_phase() {
        let node = Node::new();
        let app = app(&[("report", rate(5), true)]);
        let t0 = at(2026, 1, 1, 0, 0) + 7;
        let mut s = node.schedules(&app);
        s.fire_due(t0).await;
        assert_eq!(times(&s.fire_due(t0 + 5 * MINUTE).await), [t0 + 5 * MINUTE]);
        drop(s);
        // Restarted two minutes later, before the next tick: nothing missed, same phase.
        let mut s = node.schedules(&app);
        assert!(s.fire_due(t0 + 7 * MINUTE).await.is_empty());
        assert_eq!(s.next_wake(), Some(t0 + 10 * MINUTE));
        assert_eq!(
            times(&s.fire_due(t0 + 10 * MINUTE).await),
            [t0 + 10 * MINUTE]
        );
    }

    #[tokio::test]
    async fn missed_runs_fire_once_after_a_downtime() {
        let node = Node::new();
        let app = app(&[
            ("report", rate(5), true),
            ("noon", cron("0 12 * * ? *"), true),
        ]);
        let t0 = at(2026, 11, 27, 11, 0);
        let mut s = node.schedules(&app);
        s.fire_due(t0).await;
        assert_eq!(times(&s.fire_due(t0 + 5 * MINUTE).await), [t0 + 5 * MINUTE]);
        drop(s);
        // Down from 11:05 to three days later at 12:33: the rate missed hundreds of ticks
        // and the cron three noons.
        let back = at(2026, 11, 30, 12, 33);
        let mut s = node.schedules(&app);
        let fired = s.fire_due(back).await;
        assert_eq!(fired.len(), 2, "{fired:?}");
        let rate_tick = t0 + (back - t0) / (5 * MINUTE) * 5 * MINUTE;
        assert_eq!(
            fired[0].time_ms, rate_tick,
            "the latest missed tick, in phase"
        );
        assert_eq!(fired[1].time_ms, at(2026, 11, 30, 12, 0));
        assert!(fired.iter().all(|f| f.missed_several));
        assert!(s.fire_due(back + 1000).await.is_empty(), "only once");
        // Then the normal timetable.
        assert_eq!(s.next_wake(), Some(rate_tick + 5 * MINUTE));
        assert_eq!(
            times(&s.fire_due(rate_tick + 5 * MINUTE).await),
            [rate_tick + 5 * MINUTE]
        );
        let noon = s.fire_due(at(2026, 12, 1, 12, 0)).await;
        assert_eq!(noon.iter().filter(|f| f.function == "noon").count(), 1);
        assert_eq!(node.take("noon").await.len(), 2);
        assert_eq!(node.take("report").await.len(), 4);
        // A single missed tick fires as itself.
        drop(s);
        let mut s = node.schedules(&app);
        let fired = s.fire_due(at(2026, 12, 2, 12, 1)).await;
        let noon: Vec<&Fired> = fired.iter().filter(|f| f.function == "noon").collect();
        assert_eq!(noon.len(), 1);
        assert_eq!(noon[0].time_ms, at(2026, 12, 2, 12, 0));
        assert!(!noon[0].missed_several);
    }

    #[tokio::test]
    async fn a_disabled_schedule_does_not_fire_nor_catch_up() {
        let node = Node::new();
        let disabled = app(&[("report", rate(1), false)]);
        let t0 = at(2026, 3, 1, 0, 0);
        let mut s = node.schedules(&disabled);
        s.fire_due(t0).await;
        for m in 1..=10 {
            assert!(s.fire_due(t0 + m * MINUTE).await.is_empty());
        }
        assert!(node.take("report").await.is_empty());
        drop(s);
        // Enabled again: it fires from now on, not for the minutes it was disabled.
        let enabled = app(&[("report", rate(1), true)]);
        let mut s = node.schedules(&enabled);
        assert!(s.fire_due(t0 + 10 * MINUTE + 30_000).await.is_empty());
        assert_eq!(
            times(&s.fire_due(t0 + 11 * MINUTE).await),
            [t0 + 11 * MINUTE]
        );
    }

    #[tokio::test]
    async fn a_changed_expression_starts_afresh() {
        let node = Node::new();
        let t0 = at(2026, 3, 1, 0, 0);
        let mut s = node.schedules(&app(&[("report", rate(5), true)]));
        s.fire_due(t0).await;
        drop(s);
        let mut s = node.schedules(&app(&[("report", rate(10), true)]));
        assert!(s.fire_due(t0 + 60 * MINUTE).await.is_empty(), "no catch-up");
        assert_eq!(s.next_wake(), Some(t0 + 70 * MINUTE));
    }

    #[tokio::test]
    async fn rules_are_named_by_app_function_and_ordinal() {
        let node = Node::new();
        let s = node.schedules(&app(&[
            ("a", rate(1), true),
            ("b", rate(1), true),
            ("a", cron("0 12 * * ? *"), true),
        ]));
        assert_eq!(
            s.rules().collect::<Vec<_>>(),
            ["shop-a-1", "shop-b-1", "shop-a-2"]
        );
        let bad = app(&[("a", cron("0 12 * * * *"), true)]);
        let lease = LocalLease::open(&node.dir.path().join("other.redb")).unwrap();
        let err = Schedules::new(&bad, Arc::clone(&node.queue), Arc::new(lease), "us-east-1")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("schedule shop-a-1 (cron(0 12 * * * *)): "),
            "{err}"
        );
    }

    /// The local lease, with claims that fail while `failing` is above zero, and settles
    /// that fail while `unsettled` is set.
    struct Flaky {
        inner: LocalLease,
        failing: AtomicU64,
        unsettled: std::sync::atomic::AtomicBool,
    }

    impl Flaky {
        fn open(node: &Node) -> Arc<Flaky> {
            Arc::new(Flaky {
                inner: LocalLease::open(&node.dir.path().join("schedules.redb")).unwrap(),
                failing: AtomicU64::new(0),
                unsettled: std::sync::atomic::AtomicBool::new(false),
            })
        }
    }

    impl ScheduleLease for Flaky {
        fn open<'a>(
            &'a self,
            key: &'a str,
            expression: &'a str,
            now_ms: u64,
        ) -> nimbus_core::BoxFuture<'a, Result<ScheduleState, ScheduleError>> {
            self.inner.open(key, expression, now_ms)
        }

        fn claim<'a>(
            &'a self,
            key: &'a str,
            tick_ms: u64,
        ) -> nimbus_core::BoxFuture<'a, Result<bool, ScheduleError>> {
            let failing = self.failing.load(Ordering::Relaxed);
            if failing > 0 {
                self.failing.store(failing - 1, Ordering::Relaxed);
                return Box::pin(async { Err(ScheduleError::Storage("disk on fire".to_owned())) });
            }
            self.inner.claim(key, tick_ms)
        }

        fn settle<'a>(
            &'a self,
            key: &'a str,
            tick_ms: u64,
            fired: bool,
        ) -> nimbus_core::BoxFuture<'a, Result<(), ScheduleError>> {
            if self.unsettled.load(Ordering::Relaxed) {
                return Box::pin(async { Err(ScheduleError::Storage("disk full".to_owned())) });
            }
            self.inner.settle(key, tick_ms, fired)
        }
    }

    /// A tick whose event cannot be handed over is retried 1 s later, then 2 s after
    /// that, up to the schedule's `max_retries`, then given up; the next tick fires as
    /// usual.
    #[tokio::test]
    async fn a_tick_that_keeps_failing_is_given_up_after_its_retries() {
        let node = Node::new();
        let mut app = app(&[("report", rate(1), true)]);
        app.events[0].retry.max_retries = 1;
        let lease = Flaky::open(&node);
        let mut s =
            Schedules::new(&app, Arc::clone(&node.queue), lease.clone(), "us-east-1").unwrap();
        let t0 = at(2026, 6, 1, 0, 0);
        s.fire_due(t0).await;
        // One failure, then the retry fires the tick.
        lease.failing.store(1, Ordering::Relaxed);
        assert!(s.fire_due(t0 + MINUTE).await.is_empty());
        assert_eq!(s.next_wake(), Some(t0 + MINUTE + 1000));
        assert!(
            s.fire_due(t0 + MINUTE + 999).await.is_empty(),
            "not before the retry"
        );
        assert_eq!(times(&s.fire_due(t0 + MINUTE + 1000).await), [t0 + MINUTE]);
        // Failing for good: the first attempt and one retry, then the tick is given up.
        lease.failing.store(u64::MAX, Ordering::Relaxed);
        assert!(s.fire_due(t0 + 2 * MINUTE).await.is_empty());
        assert_eq!(s.next_wake(), Some(t0 + 2 * MINUTE + 1000));
        assert!(s.fire_due(t0 + 2 * MINUTE + 1000).await.is_empty());
        assert_eq!(s.next_wake(), Some(t0 + 2 * MINUTE + 3000), "twice as long");
        assert!(s.fire_due(t0 + 2 * MINUTE + 3000).await.is_empty());
        assert_eq!(s.next_wake(), Some(t0 + 3 * MINUTE), "the tick is settled");
        lease.failing.store(0, Ordering::Relaxed);
        assert_eq!(times(&s.fire_due(t0 + 3 * MINUTE).await), [t0 + 3 * MINUTE]);
        let queued: Vec<String> = node
            .take("report")
            .await
            .iter()
            .map(|e| e["time"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(queued, ["2026-06-01T00:01:00Z", "2026-06-01T00:03:00Z"]);
    }

    /// With EventBridge's retry policy (185 retries, 24 hours), a tick that cannot be
    /// handed over is tried again after 1 s, doubling up to a minute, for as long as its
    /// event age allows: it survives an outage of minutes, and is given up once too old.
    #[tokio::test]
    async fn a_failing_tick_backs_off_up_to_a_minute_until_its_event_is_too_old() {
        let node = Node::new();
        let mut app = app(&[
            ("noon", cron("0 12 * * ? *"), true),
            ("midnight", cron("0 0 * * ? *"), true),
        ]);
        for event in &mut app.events {
            event.retry = RetryPolicy {
                max_retries: 185,
                max_event_age: limits::MAX_EVENT_AGE,
            };
        }
        app.events[1].retry.max_event_age = Duration::from_secs(600);
        let lease = Flaky::open(&node);
        let mut s =
            Schedules::new(&app, Arc::clone(&node.queue), lease.clone(), "us-east-1").unwrap();
        s.fire_due(at(2026, 6, 1, 11, 0)).await;
        // The store fails from noon for 20 minutes.
        lease.failing.store(u64::MAX, Ordering::Relaxed);
        let noon = at(2026, 6, 1, 12, 0);
        let mut now = noon;
        let mut waits = Vec::new();
        while now < noon + 20 * MINUTE {
            assert!(s.fire_due(now).await.is_empty());
            let next = s.next_wake().unwrap();
            waits.push((next - now) / 1000);
            now = next;
        }
        assert_eq!(waits[..8], [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(waits[8..].iter().all(|&w| w == 60), "{waits:?}");
        lease.failing.store(0, Ordering::Relaxed);
        let fired = s.fire_due(now).await;
        assert_eq!(times(&fired), [noon], "fired late, for its own time");
        // The midnight schedule may try for 10 minutes only.
        let midnight = at(2026, 6, 2, 0, 0);
        lease.failing.store(u64::MAX, Ordering::Relaxed);
        let mut now = midnight;
        let mut tries = 0;
        while now < midnight + 20 * MINUTE {
            assert!(s.fire_due(now).await.is_empty());
            tries += 1;
            now = s.next_wake().unwrap();
        }
        lease.failing.store(0, Ordering::Relaxed);
        // Given up (settled) after about 10 minutes: the next fire is the next day's.
        assert!(tries < 20, "{tries}");
        assert_eq!(s.next_wake(), Some(at(2026, 6, 2, 12, 0)));
        let midnights = node.take("midnight").await;
        assert!(midnights.is_empty(), "{midnights:?}");
        assert_eq!(node.take("noon").await.len(), 1);
    }

    /// A tick fired again (its record could not be written before a restart) carries the
    /// same event id, so that its consumer can tell the repeat.
    #[tokio::test]
    async fn a_tick_fired_again_carries_the_same_event_id() {
        let node = Node::new();
        let app = app(&[("report", rate(5), true)]);
        let t0 = at(2026, 7, 1, 0, 0);
        let lease = Flaky::open(&node);
        let mut s =
            Schedules::new(&app, Arc::clone(&node.queue), lease.clone(), "us-east-1").unwrap();
        s.fire_due(t0).await;
        lease.unsettled.store(true, Ordering::Relaxed);
        assert_eq!(times(&s.fire_due(t0 + 5 * MINUTE).await), [t0 + 5 * MINUTE]);
        drop((s, lease));
        // The restart fires the unrecorded tick again, then the next one.
        let mut s = node.schedules(&app);
        assert_eq!(
            times(&s.fire_due(t0 + 5 * MINUTE + 10).await),
            [t0 + 5 * MINUTE]
        );
        assert_eq!(
            times(&s.fire_due(t0 + 10 * MINUTE).await),
            [t0 + 10 * MINUTE]
        );
        let events = node.take("report").await;
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["time"], events[1]["time"]);
        assert_eq!(events[0]["id"], events[1]["id"]);
        assert_ne!(events[1]["id"], events[2]["id"]);
    }

    struct ManualClock(AtomicU64);

    impl Clock for ManualClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// The task fires what is due as soon as it starts, then stops when asked.
    #[tokio::test]
    async fn the_task_fires_due_schedules_and_stops() {
        let node = Node::new();
        let app = app(&[("report", rate(1), true)]);
        let t0 = at(2026, 5, 1, 8, 0);
        // A first run, on the node's record, ten minutes before the clock below.
        node.schedules(&app).fire_due(t0).await;
        let clock = Arc::new(ManualClock(AtomicU64::new(t0 + 10 * MINUTE)));
        let scheduler = Scheduler::start(node.schedules(&app), clock);
        let mut events = Vec::new();
        for _ in 0..500 {
            events.extend(node.take("report").await);
            if !events.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        scheduler.stop().await;
        assert_eq!(events.len(), 1, "once for the ten missed minutes");
        assert_eq!(events[0]["time"], "2026-05-01T08:10:00Z");
    }
}
