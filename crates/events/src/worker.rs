//! The worker that delivers queued events to functions.
//!
//! One tokio task per node leases due events function by function and runs each as an
//! invocation through [`Invoke`] (the dispatcher), with the event's id as the request
//! id. Async work takes at most half of a function's concurrency (at least one), so
//! that a backlog of events never starves the function's synchronous callers.
//!
//! A failed attempt (the function's error, a timeout or crash) is retried as Lambda
//! retries a function error: about a minute later, then two minutes after the second
//! (`function_error_retry_base` times the attempts made), up to the function's
//! `max_retries` and `max_event_age`; then the event goes to the dead-letter store and,
//! when the function has one, an invocation record to its `on_failure` destination. An
//! invocation that did not run (a throttle, an instance that could not be started) is no
//! attempt: it is retried after an exponential backoff with full jitter until
//! `max_event_age`. A success sends a record to the `on_success` destination, if any.
//!
//! A lease lasts as long as an attempt may take (the wait for an instance, the init, the
//! run) and is extended while the invocation runs, so that a running attempt keeps its
//! event; the attempt is counted when the event is leased, so that one that outlives its
//! lease all the same still counts against `max_retries`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use nimbus_core::{FunctionSpec, Invoke, InvokeError, InvokeOptions, Outcome};
use rand::RngExt as _;
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};

use crate::{
    event::{AttemptError, Event},
    queue::{AsyncQueue, FollowUp, Settlement, now_ms},
    record::{Condition, Response, invocation_record},
};

/// How the worker retries and leases.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The delay before the retry that follows a function error (an error, a timeout, a
    /// crash), times the number of attempts made: by default a minute after the first,
    /// two after the second, as on Lambda.
    pub function_error_retry_base: Duration,
    /// After an invocation that did not run (a throttle, an instance that could not be
    /// started), the first retry's longest delay; each later one doubles it, up to
    /// `retry_cap`.
    pub retry_base: Duration,
    /// The longest delay before retrying an invocation that did not run.
    pub retry_cap: Duration,
    /// The longest an invocation may wait for an instance (the dispatcher's
    /// `max_queue_wait`): part of a lease.
    pub max_queue_wait: Duration,
    /// The least time the runtime gives an instance's init, whatever the function's
    /// timeout (Lambda's 10 s; the init may take up to the timeout when that is longer):
    /// part of a lease.
    pub init_limit: Duration,
    /// How long a lease outlives the longest an attempt may take (the wait for an
    /// instance, the init, the run): time for its outcome to be recorded. The worker
    /// also extends a lease every third of its length while the invocation runs; a lease
    /// that runs out all the same makes the event due again.
    pub lease_margin: Duration,
    /// The region in the function ARNs of invocation records.
    pub region: String,
}

impl WorkerConfig {
    /// The default delay before the first retry after a function error (Lambda's about 1
    /// minute; the second comes 2 minutes later).
    pub const DEFAULT_FUNCTION_ERROR_RETRY_BASE: Duration = Duration::from_secs(60);
    /// The default first retry delay bound after an invocation that did not run.
    pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
    /// The longest delay before retrying an invocation that did not run (Lambda's 5
    /// minutes).
    pub const RETRY_CAP: Duration = Duration::from_secs(300);
    /// The default wait for an instance (the dispatcher's default).
    pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);
    /// The default least init time (Lambda's 10 s).
    pub const DEFAULT_INIT_LIMIT: Duration = Duration::from_secs(10);
    /// The default lease margin.
    pub const DEFAULT_LEASE_MARGIN: Duration = Duration::from_secs(30);

    /// How long a lease of an event for a function with `timeout` lasts: the longest the
    /// attempt may wait for an instance, init and run, and the margin.
    pub fn lease(&self, timeout: Duration) -> Duration {
        self.max_queue_wait
            .saturating_add(self.init_limit.max(timeout))
            .saturating_add(timeout)
            .saturating_add(self.lease_margin)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            function_error_retry_base: Self::DEFAULT_FUNCTION_ERROR_RETRY_BASE,
            retry_base: Self::DEFAULT_RETRY_BASE,
            retry_cap: Self::RETRY_CAP,
            max_queue_wait: Self::DEFAULT_MAX_QUEUE_WAIT,
            init_limit: Self::DEFAULT_INIT_LIMIT,
            lease_margin: Self::DEFAULT_LEASE_MARGIN,
            region: "us-east-1".to_owned(),
        }
    }
}

/// Most async invocations of one function in flight at once: half its concurrency, at
/// least one.
pub fn async_share(concurrency_max: u32) -> usize {
    (concurrency_max as usize / 2).max(1)
}

/// The longest delay before the retry that follows failed attempt number `attempt`
/// (1 for the first): `base` doubled for each earlier failure, at most `cap`.
pub fn backoff_ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    base.saturating_mul(1u32 << doublings.min(31)).min(cap)
}

/// The delay before the retry that follows failed attempt number `attempt`: uniform
/// between zero and [`backoff_ceiling`] ("full jitter"), so that events that failed
/// together do not come back together.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(base, cap, attempt);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// The delay before the retry that follows function error number `attempt` (1 for the
/// first): `base` times `attempt`, as Lambda waits about 1 minute, then 2.
pub fn function_error_delay(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(attempt.max(1))
}

/// How long the worker sleeps when nothing is due and nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(5);

struct Target {
    name: String,
    arn: String,
    /// The function's settings, replaced when the app is reloaded.
    spec: RwLock<Arc<FunctionSpec>>,
    /// The most async invocations in flight at once ([`async_share`] of the concurrency).
    cap: AtomicUsize,
    in_flight: AtomicUsize,
}

impl Target {
    /// The function's settings now.
    fn spec(&self) -> Arc<FunctionSpec> {
        Arc::clone(&self.spec.read().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Shared {
    queue: Arc<AsyncQueue>,
    invoker: Arc<dyn Invoke>,
    targets: BTreeMap<String, Arc<Target>>,
    config: WorkerConfig,
    /// Notified when an invocation ends and frees a slot.
    freed: Notify,
}

/// Delivers the queue's events to the functions it was given.
pub struct AsyncWorker {
    shared: Arc<Shared>,
    /// `Some(grace)` once a stop is asked for.
    stop: watch::Sender<Option<Duration>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for AsyncWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWorker")
            .field("functions", &self.shared.targets.keys().collect::<Vec<_>>())
            .field("running", &self.task.is_some())
            .finish()
    }
}

impl AsyncWorker {
    /// A worker for `functions`' events (events for other functions stay queued until a
    /// worker knows them). It runs once [`started`](Self::start).
    pub fn new(
        queue: Arc<AsyncQueue>,
        invoker: Arc<dyn Invoke>,
        functions: impl IntoIterator<Item = FunctionSpec>,
        config: WorkerConfig,
    ) -> AsyncWorker {
        let targets = functions
            .into_iter()
            .map(|spec| {
                let target = Target {
                    name: spec.name.clone(),
                    arn: format!(
                        "arn:aws:lambda:{}:000000000000:function:{}",
                        config.region, spec.name
                    ),
                    cap: AtomicUsize::new(async_share(spec.concurrency.max)),
                    in_flight: AtomicUsize::new(0),
                    spec: RwLock::new(Arc::new(spec)),
                };
                (target.name.clone(), Arc::new(target))
            })
            .collect();
        AsyncWorker {
            shared: Arc::new(Shared {
                queue,
                invoker,
                targets,
                config,
                freed: Notify::new(),
            }),
            stop: watch::channel(None).0,
            task: None,
        }
    }

    /// A handle that gives the running worker a function's new settings.
    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Starts delivering (on the current tokio runtime); does nothing if started.
    pub fn start(&mut self) {
        if self.task.is_none() {
            let shared = Arc::clone(&self.shared);
            let stop = self.stop.subscribe();
            self.task = Some(tokio::spawn(run(shared, stop)));
        }
    }

    /// Stops leasing and lets invocations in flight finish for up to `grace`; those
    /// still running then are cut off, and their events stay leased, to be delivered
    /// again when the queue is next opened.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Applies a reloaded function's settings to a running [`AsyncWorker`]: its async policy
/// (retries, event age, destinations), its timeout (lease length) and its concurrency
/// (the async share). Attempts already running finish under the old settings.
#[derive(Clone)]
pub struct WorkerSettings {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSettings").finish_non_exhaustive()
    }
}

impl WorkerSettings {
    /// Replaces the settings of `spec`'s function; false when the worker does not deliver
    /// that function's events (a function added since it started).
    pub fn update(&self, spec: FunctionSpec) -> bool {
        let Some(target) = self.shared.targets.get(&spec.name) else {
            return false;
        };
        target
            .cap
            .store(async_share(spec.concurrency.max), Ordering::Release);
        *target.spec.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(spec);
        // A larger share may let waiting events go now.
        self.shared.freed.notify_one();
        true
    }
}

impl Drop for AsyncWorker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<Option<Duration>>) {
    let mut tasks = JoinSet::new();
    loop {
        if stop.borrow().is_some() {
            break;
        }
        let now = now_ms();
        let mut wake_at = now + IDLE_POLL.as_millis() as u64;
        let mut again = false;
        for target in shared.targets.values() {
            let busy = target.in_flight.load(Ordering::Acquire);
            let cap = target.cap.load(Ordering::Acquire);
            if busy >= cap {
                // An invocation that ends notifies `freed`.
                continue;
            }
            let name = target.name.as_str();
            match shared.queue.next_due(name) {
                Ok(Some(due)) if due <= now => {}
                Ok(Some(due)) => {
                    wake_at = wake_at.min(due);
                    continue;
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(function = name, error = %e, "cannot read the async queue");
                    continue;
                }
            }
            let lease = shared.config.lease(target.spec().timeout);
            let until = now.saturating_add(millis(lease));
            match shared.queue.lease(name, now, cap - busy, until).await {
                Ok(events) => {
                    again |= !events.is_empty();
                    for event in events {
                        target.in_flight.fetch_add(1, Ordering::AcqRel);
                        tasks.spawn(deliver(Arc::clone(&shared), Arc::clone(target), event));
                    }
                }
                Err(e) => {
                    tracing::error!(function = name, error = %e, "cannot lease async events");
                }
            }
        }
        while tasks.try_join_next().is_some() {}
        if again {
            // More may be due than the slots that were free: look again at once.
            continue;
        }
        let sleep = tokio::time::sleep(Duration::from_millis(wake_at.saturating_sub(now)));
        tokio::select! {
            () = sleep => {}
            () = shared.queue.wake().notified() => {}
            () = shared.freed.notified() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    let grace = stop.borrow().unwrap_or_default();
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            invocations = tasks.len(),
            "async invocations still running after the grace period were cut off; their events will be delivered again"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

fn invoke_error(e: &InvokeError) -> AttemptError {
    let error_type = match e {
        InvokeError::NotFound(_) => "ResourceNotFoundException",
        InvokeError::Throttled(_) => "TooManyRequestsException",
        InvokeError::Unavailable(_) => "ServiceException",
    };
    AttemptError {
        error_type: error_type.to_owned(),
        payload: serde_json::json!({ "errorType": error_type, "errorMessage": e.to_string() })
            .to_string()
            .into_bytes(),
    }
}

/// Runs one attempt of a leased event and settles it.
async fn deliver(shared: Arc<Shared>, target: Arc<Target>, event: Event) {
    attempt(&shared, &target, event).await;
    target.in_flight.fetch_sub(1, Ordering::AcqRel);
    shared.freed.notify_one();
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn attempt(shared: &Shared, target: &Target, mut event: Event) {
    let spec = target.spec();
    let policy = &spec.async_policy;
    let max_age = millis(policy.max_event_age);
    let started = now_ms();
    // The lease counted this attempt; one given up before it runs takes the count back.
    if started.saturating_sub(event.enqueued_ms) > max_age {
        event.attempts = event.attempts.saturating_sub(1);
        give_up(shared, target, event, Condition::EventAgeExceeded).await;
        return;
    }
    if event.attempts > policy.max_retries.saturating_add(1) {
        // An earlier attempt outlived its lease: it counted, but its outcome could not be
        // recorded, and it used up the last retry.
        event.attempts = event.attempts.saturating_sub(1);
        give_up(shared, target, event, Condition::RetriesExhausted).await;
        return;
    }
    let options = InvokeOptions {
        request_id: Some(event.id.to_string()),
        trace_id: event.meta.trace_id.clone(),
        client_context: event.meta.client_context.clone(),
        stream: None,
        request: None,
    };
    let invocation = shared
        .invoker
        .invoke(&target.name, event.payload.clone(), options);
    let lease = shared.config.lease(spec.timeout);
    let result = keep_leased(shared, &event, lease, invocation).await;
    // A throttled invocation did not run and is no attempt: as on Lambda, such events are
    // retried until `max_event_age`, whatever `max_retries` says. An instance that could
    // not be started is an attempt, as a Lambda init failure (`Runtime.InvalidEntrypoint`,
    // a component that does not compile) is a function error: most such causes fail every
    // time, and would otherwise hold the event for hours.
    if let Err(e @ InvokeError::Throttled(_)) = &result {
        event.attempts = event.attempts.saturating_sub(1);
        not_run(shared, target, event, e, max_age).await;
        return;
    }
    event.first_attempt_ms.get_or_insert(started);
    event.last_attempt_ms = Some(started);
    let error = match result {
        Ok(result) => match result.outcome {
            // Only the gateway's HTTP requests are answered with `Http`; a success all the
            // same.
            outcome @ (Outcome::Response(_) | Outcome::Http(_)) => {
                let body = outcome.into_payload();
                let then = policy.on_success.as_ref().map(|destination| FollowUp {
                    function: destination.clone(),
                    payload: invocation_record(
                        &event,
                        &target.arn,
                        Condition::Success,
                        Response::Returned(&body),
                        now_ms(),
                    ),
                });
                settle(shared, event, Settlement::Delivered, then).await;
                return;
            }
            Outcome::Error {
                error_type,
                payload,
                ..
            } => AttemptError {
                error_type,
                payload,
            },
        },
        Err(e) => invoke_error(&e),
    };
    event.last_error = Some(error);
    if event.attempts > policy.max_retries {
        give_up(shared, target, event, Condition::RetriesExhausted).await;
        return;
    }
    let delay = function_error_delay(shared.config.function_error_retry_base, event.attempts);
    let Some(at) = retry_at(&event, delay, max_age) else {
        give_up(shared, target, event, Condition::EventAgeExceeded).await;
        return;
    };
    tracing::info!(
        function = %target.name,
        request_id = %event.id,
        attempt = event.attempts,
        retry_in_ms = millis(delay),
        error_type = event.last_error.as_ref().map(|e| e.error_type.as_str()),
        "async invocation failed; retrying"
    );
    retry(shared, target, event, at).await;
}

/// Runs `invocation` to its end, extending `event`'s lease to `lease` from now every third
/// of `lease` meanwhile, so that no other attempt of the event starts while it runs.
async fn keep_leased<T>(
    shared: &Shared,
    event: &Event,
    lease: Duration,
    invocation: impl Future<Output = T>,
) -> T {
    let period = (lease / 3).max(Duration::from_millis(1));
    let heartbeat = async {
        loop {
            tokio::time::sleep(period).await;
            let until = now_ms().saturating_add(millis(lease));
            match shared.queue.extend(event, until).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        function = %event.function,
                        request_id = %event.id,
                        "an async event's lease ran out while its invocation ran; it may be delivered again"
                    );
                    break;
                }
                // The lease may still be extended next time.
                Err(e) => tracing::error!(
                    function = %event.function,
                    request_id = %event.id,
                    error = %e,
                    "cannot extend the lease of a running async invocation"
                ),
            }
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    tokio::select! {
        out = invocation => out,
        never = heartbeat => match never {},
    }
}

/// When a retry after `delay` is due, or `None` when it would come after `max_age`.
fn retry_at(event: &Event, delay: Duration, max_age: u64) -> Option<u64> {
    let at = now_ms().saturating_add(millis(delay));
    (at.saturating_sub(event.enqueued_ms) <= max_age).then_some(at)
}

/// Puts `event` back in the queue, due at `at`.
async fn retry(shared: &Shared, target: &Target, event: Event, at: u64) {
    metrics::counter!("nimbus_async_retries_total", "function" => target.name.clone()).increment(1);
    settle(shared, event, Settlement::Retry { at_ms: at }, None).await;
}

/// Puts back an event whose invocation did not run (throttled, or no instance could be
/// started), for a retry after a backoff that grows with the event's age (the event keeps
/// no count of these), or gives it up once the retry would come after `max_age`.
async fn not_run(
    shared: &Shared,
    target: &Target,
    mut event: Event,
    e: &InvokeError,
    max_age: u64,
) {
    event.last_error = Some(invoke_error(e));
    let base = millis(shared.config.retry_base).max(1);
    let age = now_ms().saturating_sub(event.enqueued_ms);
    // One doubling of the bound per doubling of the age: 1 s, 2 s, 4 s... as the event
    // has waited 1 s, 2 s, 4 s.
    let doublings = (age / base).max(1).ilog2().saturating_add(1);
    let delay = backoff(shared.config.retry_base, shared.config.retry_cap, doublings);
    let Some(at) = retry_at(&event, delay, max_age) else {
        give_up(shared, target, event, Condition::EventAgeExceeded).await;
        return;
    };
    tracing::info!(
        function = %target.name,
        request_id = %event.id,
        retry_in_ms = millis(delay),
        error = %e,
        "async invocation could not run; retrying"
    );
    retry(shared, target, event, at).await;
}

async fn give_up(shared: &Shared, target: &Target, event: Event, condition: Condition) {
    let now = now_ms();
    let response = match &event.last_error {
        Some(error) if event.attempts > 0 => Response::Failed(&error.payload),
        _ => Response::None,
    };
    let then = target
        .spec()
        .async_policy
        .on_failure
        .as_ref()
        .map(|destination| FollowUp {
            function: destination.clone(),
            payload: invocation_record(&event, &target.arn, condition, response, now),
        });
    tracing::warn!(
        function = %target.name,
        request_id = %event.id,
        attempts = event.attempts,
        condition = condition.as_str(),
        "async event dead-lettered"
    );
    metrics::counter!("nimbus_async_dead_letters_total", "function" => target.name.clone())
        .increment(1);
    let settlement = Settlement::DeadLetter {
        condition,
        dead_ms: now,
    };
    settle(shared, event, settlement, then).await;
}

async fn settle(shared: &Shared, event: Event, settlement: Settlement, then: Option<FollowUp>) {
    let id = event.id;
    let function = event.function.clone();
    match shared.queue.settle(event, settlement, then).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            %function,
            request_id = %id,
            "an async event's lease ran out before its invocation ended; it was delivered again"
        ),
        Err(e) => tracing::error!(
            %function,
            request_id = %id,
            error = %e,
            "cannot record an async invocation's outcome; the event will be delivered again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use nimbus_core::{AsyncPolicy, BoxFuture, InvokeResult};

    use super::*;
    use crate::event::{EventId, EventMeta};

    /// What the fake does for a function.
    #[derive(Clone, Copy)]
    enum Behaviour {
        Succeed,
        Fail,
        Throttle,
        /// No instance can be started.
        Unavailable,
        /// Fails after running this long.
        SlowFail(Duration),
        /// Holds every invocation until the test releases it.
        Hold,
    }

    #[derive(Default)]
    struct Fake {
        behaviours: Mutex<BTreeMap<String, Behaviour>>,
        calls: Mutex<Vec<(String, String, Vec<u8>)>>,
        running: AtomicUsize,
        peak: AtomicUsize,
        release: Notify,
        called: Notify,
    }

    impl Fake {
        fn set(&self, function: &str, behaviour: Behaviour) {
            self.behaviours
                .lock()
                .unwrap()
                .insert(function.to_owned(), behaviour);
        }

        fn calls(&self, function: &str) -> Vec<(String, Vec<u8>)> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(f, _, _)| f == function)
                .map(|(_, id, p)| (id.clone(), p.clone()))
                .collect()
        }

        /// Waits until `function` has been called `n` times.
        async fn wait_calls(&self, function: &str, n: usize) {
            loop {
                let notified = self.called.notified();
                if self.calls(function).len() >= n {
                    return;
                }
                notified.await;
            }
        }
    }

    impl Invoke for Fake {
        fn invoke(
            &self,
            function: &str,
            payload: Vec<u8>,
            options: InvokeOptions,
        ) -> BoxFuture<'_, Result<InvokeResult, InvokeError>> {
            let function = function.to_owned();
            Box::pin(async move {
                let request_id = options.request_id.unwrap_or_default();
                let behaviour = self
                    .behaviours
                    .lock()
                    .unwrap()
                    .get(&function)
                    .copied()
                    .unwrap_or(Behaviour::Succeed);
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                self.calls
                    .lock()
                    .unwrap()
                    .push((function, request_id.clone(), payload.clone()));
                self.called.notify_waiters();
                match behaviour {
                    Behaviour::Hold => self.release.notified().await,
                    Behaviour::SlowFail(d) => tokio::time::sleep(d).await,
                    _ => {}
                }
                self.running.fetch_sub(1, Ordering::SeqCst);
                let outcome = match behaviour {
                    Behaviour::Succeed | Behaviour::Hold => {
                        Outcome::Response(b"{\"ok\":true}".to_vec())
                    }
                    Behaviour::Fail | Behaviour::SlowFail(_) => {
                        Outcome::platform_error("Error", "always fails")
                    }
                    Behaviour::Unavailable => {
                        return Err(InvokeError::Unavailable(
                            "cannot run the provided runtime: no such file".to_owned(),
                        ));
                    }
                    Behaviour::Throttle => {
                        return Err(InvokeError::Throttled(nimbus_core::ThrottleLimit::Function));
                    }
                };
                Ok(InvokeResult {
                    request_id,
                    outcome,
                    log_tail: String::new(),
                })
            })
        }
    }

    fn spec(name: &str, max: u32, policy: AsyncPolicy) -> FunctionSpec {
        FunctionSpec {
            concurrency: nimbus_core::Concurrency { max, min_warm: 0 },
            async_policy: policy,
            ..FunctionSpec::new(name, "provided".parse().unwrap(), "code")
        }
    }

    fn config() -> WorkerConfig {
        WorkerConfig {
            function_error_retry_base: Duration::from_millis(1),
            retry_base: Duration::from_millis(1),
            retry_cap: Duration::from_millis(4),
            ..WorkerConfig::default()
        }
    }

    async fn wait_dead(queue: &AsyncQueue, function: &str, n: usize) {
        while queue
            .dead_letters(function, None, usize::MAX)
            .unwrap()
            .0
            .len()
            < n
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let base = Duration::from_secs(1);
        let cap = WorkerConfig::RETRY_CAP;
        let ceilings: Vec<u64> = (1..=11)
            .map(|n| backoff_ceiling(base, cap, n).as_secs())
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_ceiling(base, cap, 10_000), cap);
        for attempt in [1, 3, 20] {
            for _ in 0..100 {
                assert!(backoff(base, cap, attempt) <= backoff_ceiling(base, cap, attempt));
            }
        }
        // Jitter spreads the delays out.
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(base, cap, 9)).collect();
        assert!(spread.len() > 1);
    }

    #[test]
    fn function_errors_are_retried_a_minute_then_two_minutes_later() {
        let base = WorkerConfig::default().function_error_retry_base;
        let delays: Vec<u64> = (1..=2)
            .map(|n| function_error_delay(base, n).as_secs())
            .collect();
        assert_eq!(delays, [60, 120]);
    }

    #[test]
    fn a_lease_covers_the_wait_the_init_and_the_run() {
        let config = WorkerConfig::default();
        // 10 s of queue wait, 10 s of init at least, the run, 30 s of margin.
        assert_eq!(
            config.lease(Duration::from_secs(3)).as_secs(),
            10 + 10 + 3 + 30
        );
        // A longer timeout is also the init's limit.
        assert_eq!(
            config.lease(Duration::from_secs(900)).as_secs(),
            10 + 900 + 900 + 30
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_function_error_is_retried_after_the_function_error_delay() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        fake.set("fails", Behaviour::Fail);
        let hour = Duration::from_secs(3600);
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [spec("fails", 10, AsyncPolicy::default())],
            WorkerConfig {
                function_error_retry_base: hour,
                ..config()
            },
        );
        worker.start();
        let before = now_ms();
        queue
            .enqueue("fails", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        fake.wait_calls("fails", 1).await;
        // The retry is put back an hour (the base, after one attempt) later, not at the
        // throttles' millisecond backoff.
        let due = loop {
            let due = queue.next_due("fails").unwrap().unwrap();
            // Leased until the retry is recorded.
            if due < before + 3_000_000 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            break due;
        };
        let after = now_ms();
        assert!(
            due >= before + 3_600_000 && due <= after + 3_600_000,
            "{due}"
        );
        worker.stop(Duration::from_secs(1)).await;
        assert_eq!(fake.calls("fails").len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_attempt_keeps_its_lease_however_long_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        // A cold start whose init and run take far longer than the lease.
        fake.set("slow", Behaviour::SlowFail(Duration::from_millis(2_500)));
        let policy = AsyncPolicy {
            max_retries: 1,
            ..AsyncPolicy::default()
        };
        let mut slow = spec("slow", 4, policy);
        slow.timeout = Duration::from_millis(100);
        let config = WorkerConfig {
            max_queue_wait: Duration::ZERO,
            init_limit: Duration::ZERO,
            lease_margin: Duration::from_millis(1_000),
            ..config()
        };
        // A 1.2 s lease, extended every 400 ms: a loaded machine has 800 ms to spare
        // between extensions, the run outlasts the lease twice over.
        assert_eq!(config.lease(slow.timeout), Duration::from_millis(1_200));
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [slow],
            config,
        );
        worker.start();
        let id = queue
            .enqueue("slow", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        wait_dead(&queue, "slow", 1).await;
        // Nothing else is due: a second attempt would have come while the first ran.
        assert_eq!(queue.pending("slow").unwrap(), 0);
        worker.stop(Duration::from_secs(1)).await;
        // Two attempts, one after the other, each run to its end and recorded.
        assert_eq!(fake.peak.load(Ordering::SeqCst), 1, "never two at once");
        assert_eq!(fake.calls("slow").len(), 2);
        let dead = queue.dead_letters("slow", None, usize::MAX).unwrap().0;
        assert_eq!(dead[0].id(), id);
        assert_eq!(dead[0].event.attempts, 2);
        assert_eq!(dead[0].condition, Condition::RetriesExhausted);
        assert_eq!(dead[0].to_json()["error"]["errorMessage"], "always fails");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attempt_whose_lease_ran_out_counts_against_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        fake.set("lost", Behaviour::Fail);
        queue
            .enqueue("lost", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        // An attempt leased the event and outlived its lease without settling.
        let now = now_ms();
        let stale = queue.lease("lost", now, 1, now + 1).await.unwrap();
        assert_eq!(stale.len(), 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let policy = AsyncPolicy {
            max_retries: 0,
            ..AsyncPolicy::default()
        };
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [spec("lost", 10, policy)],
            config(),
        );
        worker.start();
        wait_dead(&queue, "lost", 1).await;
        worker.stop(Duration::from_secs(1)).await;
        // No retry was left: the event is given up without running again.
        assert!(fake.calls("lost").is_empty());
        let dead = queue.dead_letters("lost", None, usize::MAX).unwrap().0;
        assert_eq!(dead[0].event.attempts, 1);
        assert_eq!(dead[0].condition, Condition::RetriesExhausted);
        // The stale attempt's outcome is refused.
        assert!(
            !queue
                .settle(stale[0].clone(), Settlement::Delivered, None)
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_instance_that_cannot_start_is_a_failed_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        fake.set("broken", Behaviour::Unavailable);
        let one = AsyncPolicy {
            max_retries: 1,
            ..AsyncPolicy::default()
        };
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [spec("broken", 10, one)],
            config(),
        );
        worker.start();
        queue
            .enqueue("broken", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        // As a Lambda init failure: the first attempt and one retry, then given up.
        wait_dead(&queue, "broken", 1).await;
        worker.stop(Duration::from_secs(1)).await;
        assert_eq!(fake.calls("broken").len(), 2);
        let dead = queue.dead_letters("broken", None, usize::MAX).unwrap().0;
        let dead = dead[0].to_json();
        assert_eq!(dead["condition"], "RetriesExhausted");
        assert_eq!(dead["attempts"], 2);
        assert_eq!(dead["error"]["errorType"], "ServiceException");
    }

    #[test]
    fn async_work_gets_half_the_concurrency() {
        assert_eq!(async_share(1), 1);
        assert_eq!(async_share(2), 1);
        assert_eq!(async_share(100), 50);
        assert_eq!(async_share(7), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_event_is_tried_max_retries_plus_one_times_then_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        fake.set("fails", Behaviour::Fail);
        let policy = AsyncPolicy {
            max_retries: 2,
            on_failure: Some("alarms".to_owned()),
            ..AsyncPolicy::default()
        };
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [
                spec("fails", 10, policy),
                spec("alarms", 10, AsyncPolicy::default()),
            ],
            config(),
        );
        worker.start();
        let id = queue
            .enqueue("fails", b"{\"n\":1}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        wait_dead(&queue, "fails", 1).await;
        // The destination's record arrives too.
        fake.wait_calls("alarms", 1).await;
        let calls = fake.calls("fails");
        assert_eq!(calls.len(), 3);
        // Every attempt carries the event's id as its request id.
        assert!(
            calls
                .iter()
                .all(|(rid, p)| *rid == id.to_string() && p == b"{\"n\":1}")
        );
        let dead = queue.dead_letters("fails", None, usize::MAX).unwrap().0;
        assert_eq!(dead[0].id(), id);
        assert_eq!(dead[0].event.attempts, 3);
        assert_eq!(dead[0].condition, Condition::RetriesExhausted);
        let json = dead[0].to_json();
        assert_eq!(json["error"]["errorType"], "Error");
        assert_eq!(json["error"]["errorMessage"], "always fails");
        let (_, record) = fake.calls("alarms").remove(0);
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(record["requestContext"]["requestId"], id.to_string());
        assert_eq!(
            record["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:fails:$LATEST"
        );
        assert_eq!(record["requestPayload"], serde_json::json!({ "n": 1 }));
        assert_eq!(record["responseContext"]["functionError"], "Unhandled");
        assert_eq!(record["responsePayload"]["errorMessage"], "always fails");

        // Redriven: it runs again, three more times, with the same request id.
        fake.set("fails", Behaviour::Fail);
        assert_eq!(queue.redrive("fails", None).await.unwrap(), vec![id]);
        wait_dead(&queue, "fails", 1).await;
        fake.wait_calls("fails", 6).await;
        let dead = queue.dead_letters("fails", None, usize::MAX).unwrap().0;
        assert_eq!(dead[0].event.attempts, 3);
        assert_eq!(fake.calls("fails").len(), 6);
        worker.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throttles_are_retried_until_the_event_is_too_old_whatever_max_retries() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        fake.set("busy", Behaviour::Throttle);
        fake.set("full", Behaviour::Throttle);
        let policy = AsyncPolicy {
            max_retries: 0,
            ..AsyncPolicy::default()
        };
        let short = AsyncPolicy {
            max_retries: 0,
            max_event_age: Duration::from_millis(300),
            ..AsyncPolicy::default()
        };
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [spec("busy", 10, policy), spec("full", 10, short)],
            config(),
        );
        worker.start();
        for function in ["busy", "full"] {
            queue
                .enqueue(function, b"{}".to_vec(), EventMeta::default())
                .await
                .unwrap();
        }
        // Throttled three times with no retry to spare, then it runs, once.
        fake.wait_calls("busy", 3).await;
        fake.set("busy", Behaviour::Succeed);
        let calls = fake.calls("busy").len();
        fake.wait_calls("busy", calls + 1).await;
        // One that is never let run is given up when it is too old, as never run.
        wait_dead(&queue, "full", 1).await;
        let dead = queue.dead_letters("full", None, usize::MAX).unwrap().0;
        let dead = dead[0].to_json();
        assert_eq!(dead["condition"], "EventAgeExceeded");
        assert_eq!(dead["attempts"], 0);
        assert_eq!(dead["error"]["errorType"], "TooManyRequestsException");
        assert!(fake.calls("full").len() > 1);
        worker.stop(Duration::from_secs(1)).await;
        assert!(
            queue
                .dead_letters("busy", None, usize::MAX)
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_settings_govern_the_events_that_follow() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        fake.set("fails", Behaviour::Fail);
        let zero = AsyncPolicy {
            max_retries: 0,
            ..AsyncPolicy::default()
        };
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [spec("fails", 10, zero)],
            config(),
        );
        let settings = worker.settings();
        worker.start();
        queue
            .enqueue("fails", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        wait_dead(&queue, "fails", 1).await;
        assert_eq!(fake.calls("fails").len(), 1);

        // The app is reloaded with two retries.
        let two = AsyncPolicy {
            max_retries: 2,
            ..AsyncPolicy::default()
        };
        assert!(settings.update(spec("fails", 10, two)));
        assert!(!settings.update(spec("unknown", 10, AsyncPolicy::default())));
        queue
            .enqueue("fails", b"{}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        wait_dead(&queue, "fails", 2).await;
        assert_eq!(fake.calls("fails").len(), 1 + 3);
        worker.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn successes_reach_the_on_success_destination_and_leave_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("q.redb")).unwrap());
        let fake = Arc::new(Fake::default());
        let policy = AsyncPolicy {
            on_success: Some("audit".to_owned()),
            ..AsyncPolicy::default()
        };
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [
                spec("orders", 10, policy),
                spec("audit", 10, AsyncPolicy::default()),
            ],
            config(),
        );
        worker.start();
        let id = queue
            .enqueue("orders", b"{\"order\":1}".to_vec(), EventMeta::default())
            .await
            .unwrap();
        fake.wait_calls("audit", 1).await;
        let (audit_id, record) = fake.calls("audit").remove(0);
        assert_ne!(audit_id, id.to_string());
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(record["requestContext"]["condition"], "Success");
        assert_eq!(record["requestContext"]["requestId"], id.to_string());
        assert_eq!(record["requestPayload"], serde_json::json!({ "order": 1 }));
        assert_eq!(record["responsePayload"], serde_json::json!({ "ok": true }));
        assert!(record["responseContext"].get("functionError").is_none());
        worker.stop(Duration::from_secs(1)).await;
        assert_eq!(queue.pending("orders").unwrap(), 0);
        assert_eq!(queue.pending("audit").unwrap(), 0);
        assert!(
            queue
                .dead_letters("orders", None, usize::MAX)
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_work_never_takes_more_than_its_share_and_unfinished_work_survives_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let queue = Arc::new(AsyncQueue::open(&path).unwrap());
        let fake = Arc::new(Fake::default());
        fake.set("slow", Behaviour::Hold);
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [spec("slow", 4, AsyncPolicy::default())],
            config(),
        );
        worker.start();
        let mut ids = Vec::new();
        for _ in 0..6 {
            ids.push(
                queue
                    .enqueue("slow", b"{}".to_vec(), EventMeta::default())
                    .await
                    .unwrap(),
            );
        }
        // Half of max = 4: two run, the others wait for a slot.
        fake.wait_calls("slow", 2).await;
        tokio::task::yield_now().await;
        assert_eq!(fake.peak.load(Ordering::SeqCst), 2);
        assert_eq!(fake.calls("slow").len(), 2);
        // The node stops with both still running: they are cut off and stay queued.
        worker.stop(Duration::from_millis(10)).await;
        assert_eq!(queue.pending("slow").unwrap(), 6);
        drop(queue);
        let queue = Arc::new(AsyncQueue::open(&path).unwrap());
        assert_eq!(queue.pending("slow").unwrap(), 6);
        // After the restart every event is delivered, the cut-off ones again.
        fake.set("slow", Behaviour::Succeed);
        let mut worker = AsyncWorker::new(
            Arc::clone(&queue),
            Arc::clone(&fake) as Arc<dyn Invoke>,
            [spec("slow", 4, AsyncPolicy::default())],
            config(),
        );
        worker.start();
        fake.wait_calls("slow", 8).await;
        while queue.pending("slow").unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delivered: std::collections::BTreeSet<String> =
            fake.calls("slow").into_iter().map(|(id, _)| id).collect();
        let expected: std::collections::BTreeSet<String> =
            ids.iter().map(EventId::to_string).collect();
        assert_eq!(delivered, expected);
        worker.stop(Duration::from_secs(1)).await;
    }
}
