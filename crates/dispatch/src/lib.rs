//! The dispatcher: one pool of instances per function.
//!
//! An invocation takes a warm idle instance or starts one (a cold start), up to the
//! function's `concurrency.max`. At the limit it waits, up to a bound, for an instance to
//! free up (backpressure), and is refused as throttled when the wait runs out. Instances
//! serve one invocation at a time, as Lambda execution environments do; an instance that
//! timed out, crashed or failed to initialise is discarded. `concurrency.min_warm`
//! instances are started ahead of demand; idle instances beyond that are stopped after an
//! idle timeout, down to zero.
//!
//! Invocations of all functions together are also held to a node-wide cap. A function
//! can be reloaded ([`Dispatcher::reload`]): new invocations get instances of the new
//! code while in-flight ones finish on the old, whose instances are then stopped.
//!
//! The dispatcher knows nothing of HTTP or processes: it drives [`Runtime`]s and serves
//! [`Invoke`].

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use nimbus_core::{
    BoxFuture, FunctionSpec, Instance, Invocation, Invoke, InvokeError, InvokeOptions,
    InvokeResult, Outcome, Runtime, RuntimeKind, Stopper, ThrottleLimit,
    logging::{self, FunctionLines, ReportFields},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod lines;
mod pool_metrics;
mod trace;

pub use pool_metrics::PoolStats;
use pool_metrics::{Held, PoolMetrics};

/// How the dispatcher scales.
#[derive(Debug, Clone, Copy)]
pub struct DispatchConfig {
    /// Longest an invocation waits for a free instance at the concurrency limit before it
    /// is throttled.
    pub max_queue_wait: Duration,
    /// Most invocations of one function that may wait at its limit; one more is
    /// throttled at once.
    pub max_queue_length: usize,
    /// How long an idle instance beyond `min_warm` is kept.
    pub idle_timeout: Duration,
    /// Most invocations running at once on the node, all functions together (Lambda's
    /// account concurrency).
    pub max_concurrency: u32,
}

impl DispatchConfig {
    /// The default node-wide cap: Lambda's default account concurrency.
    pub const DEFAULT_MAX_CONCURRENCY: u32 = 1000;
    /// The default queue length per function.
    pub const DEFAULT_MAX_QUEUE_LENGTH: usize = 1000;
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            max_queue_wait: Duration::from_secs(10),
            max_queue_length: Self::DEFAULT_MAX_QUEUE_LENGTH,
            idle_timeout: Duration::from_secs(300),
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
        }
    }
}

struct Idle {
    instance: Box<dyn Instance>,
    since: Instant,
    generation: u64,
}

/// What a pool runs: the function as last loaded, and which load that was.
struct Loaded {
    function: Arc<FunctionSpec>,
    generation: u64,
}

struct Pool {
    loaded: RwLock<Loaded>,
    runtime: Arc<dyn Runtime>,
    permits: Arc<Semaphore>,
    /// Invocations waiting for a permit.
    waiting: AtomicUsize,
    idle: Mutex<Vec<Idle>>,
    metrics: PoolMetrics,
    /// Whether a [`Pool::top_up`] is running (one at a time, or two would both start
    /// the instances missing).
    topping_up: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    fn loaded(&self) -> (Arc<FunctionSpec>, u64) {
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (Arc::clone(&loaded.function), loaded.generation)
    }

    /// A warm instance of the current code, or a new one: `(instance, cold)`.
    async fn take(
        &self,
        function: &Arc<FunctionSpec>,
        generation: u64,
    ) -> Result<(Box<dyn Instance>, bool), InvokeError> {
        loop {
            let warm = {
                let mut idle = lock(&self.idle);
                let at = idle.iter().rposition(|i| i.generation == generation);
                at.map(|at| idle.swap_remove(at))
            };
            let Some(idle) = warm else { break };
            if idle.instance.is_alive() {
                return Ok((idle.instance, false));
            }
            // Ended while idle (killed from outside): replace it, unnoticed by the caller.
            tracing::warn!(function = %function.name, "an idle instance had ended; starting another");
            tokio::spawn(idle.instance.stop());
        }
        let instance = trace::init_span(&function.name)
            .in_scope(self.runtime.start(Arc::clone(function)))
            .await
            .map_err(|e| InvokeError::Unavailable(e.to_string()))?;
        Ok((instance, true))
    }

    /// Keeps an instance for the next invocation, unless its code was replaced since.
    ///
    /// The generation is read with the idle list locked (the list's lock, then the
    /// definition's: `reload` never holds both), so an instance pushed here either
    /// sees a reload's new generation, or is in the list before the reload clears out
    /// the old generation.
    fn put_back(&self, instance: Box<dyn Instance>, generation: u64) {
        let mut idle = lock(&self.idle);
        // Nor once the node is stopping (its permits are closed): a warm start that
        // ends after the idle list was emptied would otherwise never be stopped.
        if self.loaded().1 != generation || self.permits.is_closed() {
            drop(idle);
            tokio::spawn(instance.stop());
            return;
        }
        idle.push(Idle {
            instance,
            since: Instant::now(),
            generation,
        });
    }

    /// Starts instances until there are `min_warm`, idle or busy: after an instance was
    /// lost (a time-out, a crash, an instance that ended while idle), so that the next
    /// caller does not pay the cold start `min_warm` is there to spare it.
    async fn top_up(&self) {
        let (function, generation) = self.loaded();
        let min_warm = function.concurrency.min_warm as usize;
        // Not once the node is stopping (its permits are closed).
        if min_warm == 0 || self.permits.is_closed() || self.topping_up.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let have = {
            let mut idle = lock(&self.idle);
            // Instances that ended while idle are no longer warm.
            let (alive, ended): (Vec<Idle>, Vec<Idle>) =
                idle.drain(..).partition(|i| i.instance.is_alive());
            *idle = alive;
            for i in ended {
                tokio::spawn(i.instance.stop());
            }
            idle.iter().filter(|i| i.generation == generation).count()
        } + self.metrics.busy.load(Ordering::Relaxed);
        self.start_warm(&function, generation, min_warm.saturating_sub(have))
            .await;
        self.topping_up.store(false, Ordering::Release);
    }

    /// Starts instances until `min_warm` are idle.
    async fn warm_up(&self) {
        let (function, generation) = self.loaded();
        let have = lock(&self.idle)
            .iter()
            .filter(|i| i.generation == generation)
            .count();
        let missing = (function.concurrency.min_warm as usize).saturating_sub(have);
        self.start_warm(&function, generation, missing).await;
    }

    /// Starts `count` idle instances of `function`.
    async fn start_warm(&self, function: &Arc<FunctionSpec>, generation: u64, count: usize) {
        for _ in 0..count {
            match self.runtime.start(Arc::clone(function)).await {
                Ok(instance) => self.put_back(instance, generation),
                Err(e) => tracing::warn!(error = %e, "cannot start a warm instance"),
            }
        }
    }
}

/// The dispatcher.
pub struct Dispatcher {
    pools: HashMap<String, Arc<Pool>>,
    config: DispatchConfig,
    /// The node-wide cap.
    node_permits: Arc<Semaphore>,
    /// Stoppers of instances now running an invocation, by a serial number.
    busy: Mutex<HashMap<u64, Stopper>>,
    serial: AtomicU64,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("functions", &self.pools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a function could not be reloaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The dispatcher has no such function (functions are added by restarting).
    #[error("function {0} is not loaded; adding functions needs a restart")]
    Unknown(String),
    /// The function's runtime kind changed (that needs a restart).
    #[error("function {0} changed runtime; that needs a restart")]
    RuntimeChanged(String),
}

/// Removes a busy instance's stopper when its invocation ends, however it ends.
struct BusyGuard<'a> {
    dispatcher: &'a Dispatcher,
    serial: Option<u64>,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Some(serial) = self.serial {
            lock(&self.dispatcher.busy).remove(&serial);
        }
    }
}

impl Dispatcher {
    /// A dispatcher for `functions`, each run by the runtime registered for its kind;
    /// functions whose runtime is not registered are left out (invoking them answers
    /// [`InvokeError::Unavailable`]).
    pub fn new(
        functions: impl IntoIterator<Item = FunctionSpec>,
        runtimes: &HashMap<RuntimeKind, Arc<dyn Runtime>>,
        config: DispatchConfig,
    ) -> Dispatcher {
        let pools = functions
            .into_iter()
            .filter_map(|f| {
                let runtime = Arc::clone(runtimes.get(&f.runtime.kind)?);
                let permits = Arc::new(Semaphore::new(f.concurrency.max as usize));
                let metrics = PoolMetrics::new(&f.name, f.runtime.kind);
                Some((
                    f.name.clone(),
                    Arc::new(Pool {
                        loaded: RwLock::new(Loaded {
                            function: Arc::new(f),
                            generation: 0,
                        }),
                        runtime,
                        permits,
                        waiting: AtomicUsize::new(0),
                        idle: Mutex::new(Vec::new()),
                        metrics,
                        topping_up: std::sync::atomic::AtomicBool::new(false),
                    }),
                ))
            })
            .collect();
        Dispatcher {
            pools,
            node_permits: Arc::new(Semaphore::new(config.max_concurrency as usize)),
            config,
            busy: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(0),
        }
    }

    /// Starts `min_warm` instances of every function and the idle reaper; returns the
    /// reaper's task.
    pub async fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        for pool in self.pools.values() {
            pool.warm_up().await;
        }
        let dispatcher = Arc::clone(self);
        tokio::spawn(async move {
            let period = (dispatcher.config.idle_timeout / 4).max(Duration::from_millis(50));
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                dispatcher.reap().await;
            }
        })
    }

    /// Replaces a function's code and settings: invocations from now on run the new
    /// `function` on fresh instances; in-flight ones finish on their old instances,
    /// which are stopped afterwards; idle old instances are stopped now, and `min_warm`
    /// new ones started.
    ///
    /// # Errors
    /// When the function is not loaded or its runtime kind changed.
    pub async fn reload(&self, function: FunctionSpec) -> Result<(), ReloadError> {
        let name = function.name.clone();
        let Some(pool) = self.pools.get(&name) else {
            return Err(ReloadError::Unknown(name));
        };
        let generation = {
            let mut loaded = pool
                .loaded
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if loaded.function.runtime.kind != function.runtime.kind {
                return Err(ReloadError::RuntimeChanged(name));
            }
            let (old_max, new_max) = (loaded.function.concurrency.max, function.concurrency.max);
            if new_max > old_max {
                pool.permits.add_permits((new_max - old_max) as usize);
            } else if old_max > new_max {
                // Permits held now come back and are then kept; the limit settles once
                // the invocations holding them end.
                let less = (old_max - new_max) as usize;
                let forgotten = pool.permits.forget_permits(less);
                if forgotten < less {
                    let pool = Arc::clone(pool);
                    tokio::spawn(async move {
                        if let Ok(p) = pool.permits.acquire_many((less - forgotten) as u32).await {
                            p.forget();
                        }
                    });
                }
            }
            loaded.function = Arc::new(function);
            loaded.generation += 1;
            loaded.generation
        };
        // After the definition's lock is released (see `put_back`): every instance of an
        // older generation, including one put back while the generation changed.
        let old_idle: Vec<Idle> = {
            let mut idle = lock(&pool.idle);
            let (current, old) = idle.drain(..).partition(|i| i.generation == generation);
            *idle = current;
            old
        };
        for idle in old_idle {
            tokio::spawn(idle.instance.stop());
        }
        pool.warm_up().await;
        tracing::info!(function = %name, "function reloaded");
        Ok(())
    }

    /// Stops idle instances past the idle timeout, keeping `min_warm` per function.
    async fn reap(&self) {
        for pool in self.pools.values() {
            let expired: Vec<Idle> = {
                let mut idle = lock(&pool.idle);
                let keep = pool.loaded().0.concurrency.min_warm as usize;
                idle.sort_by_key(|i| std::cmp::Reverse(i.since));
                let mut expired = Vec::new();
                while idle.len() > keep {
                    match idle.last() {
                        Some(last) if last.since.elapsed() >= self.config.idle_timeout => {
                            if let Some(i) = idle.pop() {
                                expired.push(i);
                            }
                        }
                        _ => break,
                    }
                }
                expired
            };
            for idle in expired {
                tracing::debug!(function = %pool.loaded().0.name, "stopping an idle instance");
                tokio::spawn(idle.instance.stop());
            }
            // Each pool tops up on a task of its own: a function whose instances are slow
            // to start (each up to its timeout) must not hold up the others' reaping and
            // top-up. `top_up` runs one at a time per pool.
            let pool = Arc::clone(pool);
            tokio::spawn(async move { pool.top_up().await });
        }
    }

    /// Which limit a refused invocation was behind: the node's when it has no permit to
    /// spare (then a function's own permits may be held by invocations waiting for the
    /// node too), else the function's.
    fn throttle_limit(&self) -> ThrottleLimit {
        if self.node_permits.available_permits() == 0 {
            ThrottleLimit::Node
        } else {
            ThrottleLimit::Function
        }
    }

    /// `function`'s settings as last loaded: what its invocations now run with, a reload
    /// of `nimbus up` included.
    pub fn function(&self, function: &str) -> Option<Arc<FunctionSpec>> {
        self.pools.get(function).map(|pool| pool.loaded().0)
    }

    /// Every function's settings as last loaded, in no order.
    pub fn functions(&self) -> Vec<Arc<FunctionSpec>> {
        self.pools.values().map(|pool| pool.loaded().0).collect()
    }

    /// Instances now idle for `function` (for tests and metrics).
    pub fn idle_count(&self, function: &str) -> usize {
        self.pools.get(function).map_or(0, |p| lock(&p.idle).len())
    }

    /// Invocations now running, all functions together.
    pub fn busy_count(&self) -> usize {
        lock(&self.busy).len()
    }

    /// Every function's instances and invocations now (for metrics), sorted by function.
    pub fn stats(&self) -> Vec<PoolStats> {
        let mut stats: Vec<PoolStats> = self
            .pools
            .iter()
            .map(|(name, pool)| PoolStats {
                function: name.clone(),
                warm: lock(&pool.idle).len(),
                busy: pool.metrics.busy.load(Ordering::Relaxed),
                concurrent: pool.metrics.concurrent.load(Ordering::Relaxed),
                waiting: pool.waiting.load(Ordering::Relaxed),
            })
            .collect();
        stats.sort_by(|a, b| a.function.cmp(&b.function));
        stats
    }

    /// Stops everything, at shutdown: no new invocation is taken (waiting ones are
    /// refused), idle instances are stopped, and instances still running an invocation
    /// (the grace period ran out) get SIGTERM, then SIGKILL, as idle ones do.
    pub async fn stop_all(&self) {
        self.node_permits.close();
        for pool in self.pools.values() {
            pool.permits.close();
        }
        let mut stopping = tokio::task::JoinSet::new();
        for pool in self.pools.values() {
            let idle: Vec<Idle> = lock(&pool.idle).drain(..).collect();
            for i in idle {
                stopping.spawn(i.instance.stop());
            }
        }
        let busy: Vec<Stopper> = lock(&self.busy).values().cloned().collect();
        if !busy.is_empty() {
            tracing::warn!(
                instances = busy.len(),
                "stopping instances whose invocations are still running"
            );
        }
        for stop in busy {
            stopping.spawn(stop());
        }
        while stopping.join_next().await.is_some() {}
    }

    /// A function permit and a node permit: at once when both are free, else after
    /// waiting in the queue.
    async fn admit(
        &self,
        pool: &Pool,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), InvokeError> {
        // Fast path: free capacity needs no queue slot.
        if let (Ok(f), Ok(n)) = (
            Arc::clone(&pool.permits).try_acquire_owned(),
            Arc::clone(&self.node_permits).try_acquire_owned(),
        ) {
            pool.metrics.waited(Duration::ZERO);
            return Ok((f, n));
        }
        // The wait's future (a timer, two semaphore waits) is boxed: most invocations do
        // not wait, and it would otherwise enlarge every invocation's future.
        Box::pin(self.queue(pool)).await
    }

    /// Waits for a function permit, then a node permit, within the queue bound.
    async fn queue(
        &self,
        pool: &Pool,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), InvokeError> {
        let closed = |_| InvokeError::Unavailable("the node is stopping".to_owned());
        // The place in the queue is given up when this future ends, also when its caller
        // stops waiting (a client that disconnects cancels its invocation mid-wait).
        let (place, ahead) = Held::counted(&pool.waiting);
        if ahead >= self.config.max_queue_length {
            drop(place);
            pool.metrics.throttled();
            return Err(InvokeError::Throttled(self.throttle_limit()));
        }
        let queued = Instant::now();
        let span = trace::queue_span();
        let waited = tokio::time::timeout(self.config.max_queue_wait, async {
            let f = Arc::clone(&pool.permits)
                .acquire_owned()
                .await
                .map_err(closed)?;
            let n = Arc::clone(&self.node_permits)
                .acquire_owned()
                .await
                .map_err(closed)?;
            Ok((f, n))
        })
        .await;
        drop(span);
        drop(place);
        pool.metrics.waited(queued.elapsed());
        if waited.is_err() {
            pool.metrics.throttled();
        }
        waited.map_err(|_| InvokeError::Throttled(self.throttle_limit()))?
    }

    async fn run(
        &self,
        name: &str,
        payload: Vec<u8>,
        options: InvokeOptions,
    ) -> Result<InvokeResult, InvokeError> {
        let Some(pool) = self.pools.get(name) else {
            return Err(InvokeError::NotFound(name.to_owned()));
        };
        let permits = self.admit(pool).await?;
        let _concurrent = Held::new(&pool.metrics.concurrent);
        let (function, generation) = pool.loaded();
        let function_name = function.name.as_str();
        let request_id = options
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (mut instance, cold) = pool
            .take(&function, generation)
            .await
            .inspect_err(|_| pool.metrics.failed_to_start())?;
        let busy_instance = Held::new(&pool.metrics.busy);
        let _busy = BusyGuard {
            dispatcher: self,
            serial: instance.stopper().map(|stopper| {
                let serial = self.serial.fetch_add(1, Ordering::Relaxed);
                lock(&self.busy).insert(serial, stopper);
                serial
            }),
        };
        let mut execution = trace::execution_span(function_name, &request_id, cold);
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload,
            request: options.request,
            deadline: SystemTime::now() + function.timeout,
            trace_id: trace::header_for_function(&execution, options.trace_id),
            client_context: options.client_context,
            stream: options.stream,
        };
        let start_line = lines::start(&function, &request_id);
        if let Some(line) = &start_line {
            logging::write_lines(&FunctionLines {
                function: function_name,
                request_id: Some(&request_id),
                lines: &[line],
                report: None,
            });
        }
        let started = Instant::now();
        let report = execution.in_scope(instance.invoke(invocation)).await;
        trace::finish(&mut execution, &report.outcome, report.init_duration);
        drop(execution);
        // As Lambda's `Duration`, the run without the start-up (`Init Duration`): as the
        // runtime timed it when the start-up happened inside the call.
        let duration = report.run_duration.unwrap_or_else(|| started.elapsed());
        let ms = duration.as_secs_f64() * 1000.0;
        let end_line = lines::end(&function, &request_id);
        let outcome_kind = match &report.outcome {
            Outcome::Response(_) | Outcome::Http(_) => "success",
            outcome if outcome.is_timeout() => "timeout",
            Outcome::Error { .. } => "error",
        };
        let init = cold.then(|| report.init_duration.unwrap_or_default());
        pool.metrics.ran(outcome_kind, duration, init);
        let error_type = match &report.outcome {
            Outcome::Error { error_type, .. } => Some(error_type.as_str()),
            Outcome::Response(_) | Outcome::Http(_) => None,
        };
        let report_line = lines::report(
            &function,
            &request_id,
            ms,
            &report,
            outcome_kind,
            error_type,
        );
        // END and REPORT go together; the REPORT line also carries the invocation's
        // figures as fields, for machines.
        let end: Option<&str> = end_line.as_deref();
        logging::write_lines(&FunctionLines {
            function: function_name,
            request_id: Some(&request_id),
            lines: end.as_slice(),
            report: report_line.as_deref().map(|line| {
                let fields = ReportFields {
                    error_type,
                    duration_ms: ms,
                    init_ms: report.init_duration.map(|d| d.as_secs_f64() * 1000.0),
                    cold,
                    outcome: outcome_kind,
                };
                (line, fields)
            }),
        });
        drop(busy_instance);
        if report.reusable {
            pool.put_back(instance, generation);
        } else {
            tokio::spawn(instance.stop());
            if function.concurrency.min_warm > 0 {
                let pool = Arc::clone(pool);
                tokio::spawn(async move { pool.top_up().await });
            }
        }
        drop(permits);
        let tail = [start_line, Some(report.log_tail), end_line, report_line];
        let mut log_tail = String::with_capacity(tail.iter().flatten().map(|l| l.len() + 1).sum());
        for line in tail.into_iter().flatten().filter(|l| !l.is_empty()) {
            log_tail.push_str(&line);
            log_tail.push('\n');
        }
        Ok(InvokeResult {
            request_id,
            outcome: report.outcome,
            log_tail,
        })
    }
}

impl Invoke for Dispatcher {
    fn invoke(
        &self,
        function: &str,
        payload: Vec<u8>,
        options: InvokeOptions,
    ) -> BoxFuture<'_, Result<InvokeResult, InvokeError>> {
        let function = function.to_owned();
        // The span is made when the call first runs, in its caller's current span.
        Box::pin(async move {
            let span = trace::dispatch_span(&function, &options);
            span.in_scope(self.run(&function, payload, options)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::{Report, StartError};

    /// Instances that answer with their function's `V` variable after sleeping for the
    /// payload's number of milliseconds, counting how many run at once.
    #[derive(Default)]
    struct Fake {
        running: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
        started: AtomicUsize,
        stopped: Arc<AtomicUsize>,
        /// Set when a busy instance was stopped through its stopper.
        terminated: Arc<tokio::sync::Notify>,
        /// Functions whose instances never finish starting.
        hang: Mutex<Vec<String>>,
    }

    struct FakeInstance {
        function: Arc<FunctionSpec>,
        running: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
        stopped: Arc<AtomicUsize>,
        terminated: Arc<tokio::sync::Notify>,
    }

    impl Runtime for Fake {
        fn start(
            &self,
            function: Arc<FunctionSpec>,
        ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>> {
            self.started.fetch_add(1, Ordering::SeqCst);
            if lock(&self.hang).contains(&function.name) {
                return Box::pin(std::future::pending());
            }
            let instance = FakeInstance {
                function,
                running: Arc::clone(&self.running),
                peak: Arc::clone(&self.peak),
                stopped: Arc::clone(&self.stopped),
                terminated: Arc::clone(&self.terminated),
            };
            Box::pin(async move { Ok(Box::new(instance) as Box<dyn Instance>) })
        }
    }

    impl Instance for FakeInstance {
        fn invoke(&mut self, invocation: Invocation) -> BoxFuture<'_, Report> {
            Box::pin(async move {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                let ms: u64 = std::str::from_utf8(&invocation.payload)
                    .unwrap()
                    .parse()
                    .unwrap();
                let outcome = tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => Outcome::Response(
                        self.function.environment["V"].clone().into_bytes(),
                    ),
                    () = self.terminated.notified() => Outcome::platform_error("Runtime.ExitError", "terminated"),
                };
                self.running.fetch_sub(1, Ordering::SeqCst);
                Report {
                    outcome,
                    reusable: true,
                    init_duration: None,
                    log_tail: String::new(),
                    max_memory_mb: None,
                    run_duration: None,
                }
            })
        }

        fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
            self.stopped.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }

        fn stopper(&self) -> Option<Stopper> {
            let terminated = Arc::clone(&self.terminated);
            Some(Arc::new(move || {
                terminated.notify_waiters();
                Box::pin(async {})
            }))
        }
    }

    pub(crate) fn function(name: &str, max: u32, v: &str) -> FunctionSpec {
        FunctionSpec {
            timeout: Duration::from_secs(60),
            concurrency: nimbus_core::Concurrency { max, min_warm: 0 },
            environment: [("V".to_owned(), v.to_owned())].into_iter().collect(),
            ..FunctionSpec::new(name, "provided.al2023".parse().unwrap(), "code")
        }
    }

    fn dispatcher(
        functions: Vec<FunctionSpec>,
        config: DispatchConfig,
    ) -> (Arc<Dispatcher>, Arc<Fake>) {
        let fake = Arc::new(Fake::default());
        let runtimes: HashMap<RuntimeKind, Arc<dyn Runtime>> =
            [(RuntimeKind::Provided, Arc::clone(&fake) as Arc<dyn Runtime>)]
                .into_iter()
                .collect();
        (
            Arc::new(Dispatcher::new(functions, &runtimes, config)),
            fake,
        )
    }

    async fn call(d: &Dispatcher, name: &str, ms: u64) -> Result<String, InvokeError> {
        let result = d
            .invoke(name, ms.to_string().into_bytes(), InvokeOptions::default())
            .await?;
        match result.outcome {
            Outcome::Response(body) => Ok(String::from_utf8(body).unwrap()),
            Outcome::Http(response) => Ok(String::from_utf8(response.body.to_vec()).unwrap()),
            Outcome::Error { error_type, .. } => Ok(error_type),
        }
    }

    /// [`call`] in a task of its own.
    fn spawned(
        d: &Arc<Dispatcher>,
        name: &'static str,
        ms: u64,
    ) -> tokio::task::JoinHandle<Result<String, InvokeError>> {
        let d = Arc::clone(d);
        tokio::spawn(async move { call(&d, name, ms).await })
    }

    #[tokio::test]
    async fn the_node_wide_cap_holds_across_functions() {
        let config = DispatchConfig {
            max_concurrency: 3,
            ..DispatchConfig::default()
        };
        let (d, fake) = dispatcher(vec![function("a", 5, "a"), function("b", 5, "b")], config);
        let calls = (0..8).map(|i| {
            let d = Arc::clone(&d);
            tokio::spawn(async move { call(&d, if i % 2 == 0 { "a" } else { "b" }, 30).await })
        });
        for call in calls.collect::<Vec<_>>() {
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!(fake.peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_full_queue_throttles_at_once() {
        let config = DispatchConfig {
            max_queue_length: 1,
            ..DispatchConfig::default()
        };
        let (d, _) = dispatcher(vec![function("a", 1, "a")], config);
        let busy = spawned(&d, "a", 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queued = spawned(&d, "a", 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The queue holds one already: a third caller is refused without waiting.
        let refused = tokio::time::timeout(Duration::from_millis(100), call(&d, "a", 1)).await;
        assert_eq!(
            refused,
            Ok(Err(InvokeError::Throttled(ThrottleLimit::Function)))
        );
        assert_eq!(busy.await.unwrap(), Ok("a".to_owned()));
        assert_eq!(queued.await.unwrap(), Ok("a".to_owned()));
    }

    #[tokio::test]
    async fn a_functions_settings_are_the_ones_last_loaded() {
        let (d, _) = dispatcher(vec![function("a", 1, "a")], DispatchConfig::default());
        assert_eq!(d.function("a").unwrap().memory_mb, 128);
        assert!(d.function("b").is_none());
        let mut changed = function("a", 1, "a");
        changed.memory_mb = 512;
        d.reload(changed).await.unwrap();
        assert_eq!(d.function("a").unwrap().memory_mb, 512);
        let all = d.functions();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].memory_mb, 512);
    }

    #[tokio::test]
    async fn a_wait_behind_the_node_limit_is_throttled_as_the_node_s() {
        let config = DispatchConfig {
            max_concurrency: 1,
            max_queue_wait: Duration::from_millis(50),
            ..DispatchConfig::default()
        };
        let (d, _) = dispatcher(vec![function("a", 5, "a"), function("b", 5, "b")], config);
        let busy = spawned(&d, "a", 300);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // `b` has permits to spare; the node has none.
        let refused = call(&d, "b", 1).await;
        assert_eq!(refused, Err(InvokeError::Throttled(ThrottleLimit::Node)));
        assert_eq!(busy.await.unwrap(), Ok("a".to_owned()));
    }

    /// Waits up to 10 s for `d`'s one pool to show `busy` busy and `waiting` waiting.
    async fn wait_for_stats(d: &Dispatcher, busy: usize, waiting: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let stats = d.stats();
            if stats[0].busy == busy && stats[0].waiting == waiting {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "stats never showed {busy} busy, {waiting} waiting: {:?}",
            d.stats()
        );
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_gives_its_place_in_the_queue_back() {
        let config = DispatchConfig {
            max_queue_length: 1,
            ..DispatchConfig::default()
        };
        let (d, _) = dispatcher(vec![function("a", 1, "a")], config);
        let busy = spawned(&d, "a", 300);
        wait_for_stats(&d, 1, 0).await;
        // Queued, then dropped: as when a client disconnects while its request waits.
        let abandoned = spawned(&d, "a", 1);
        wait_for_stats(&d, 1, 1).await;
        abandoned.abort();
        wait_for_stats(&d, 1, 0).await;
        // The one place is free again: the next caller queues rather than being refused.
        let queued = spawned(&d, "a", 1);
        assert_eq!(busy.await.unwrap(), Ok("a".to_owned()));
        assert_eq!(queued.await.unwrap(), Ok("a".to_owned()));
    }

    #[tokio::test]
    async fn stats_count_busy_waiting_and_warm_instances() {
        let (d, _) = dispatcher(vec![function("a", 1, "a")], DispatchConfig::default());
        let idle = PoolStats {
            function: "a".to_owned(),
            warm: 0,
            busy: 0,
            concurrent: 0,
            waiting: 0,
        };
        assert_eq!(d.stats(), vec![idle.clone()]);
        let running = spawned(&d, "a", 1000);
        let queued = spawned(&d, "a", 1);
        let both_in = PoolStats {
            busy: 1,
            concurrent: 1,
            waiting: 1,
            ..idle.clone()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.stats() != vec![both_in.clone()] && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(d.stats(), vec![both_in]);
        assert_eq!(running.await.unwrap(), Ok("a".to_owned()));
        assert_eq!(queued.await.unwrap(), Ok("a".to_owned()));
        assert_eq!(d.stats(), vec![PoolStats { warm: 1, ..idle }]);
    }

    #[tokio::test]
    async fn a_reload_serves_new_code_and_retires_old_instances() {
        let (d, fake) = dispatcher(vec![function("a", 4, "v1")], DispatchConfig::default());
        assert_eq!(call(&d, "a", 1).await, Ok("v1".to_owned()));
        assert_eq!(d.idle_count("a"), 1);
        // One invocation is in flight on the old code while the reload happens.
        let in_flight = spawned(&d, "a", 100);
        tokio::time::sleep(Duration::from_millis(20)).await;
        d.reload(function("a", 4, "v2")).await.unwrap();
        assert_eq!(call(&d, "a", 1).await, Ok("v2".to_owned()));
        // The in-flight one finished on the old instance, which was then stopped.
        assert_eq!(in_flight.await.unwrap(), Ok("v1".to_owned()));
        tokio::task::yield_now().await;
        assert_eq!(d.idle_count("a"), 1, "only the new instance is kept");
        assert_eq!(fake.stopped.load(Ordering::SeqCst), 1);
        assert_eq!(
            d.reload(function("zz", 1, "x")).await,
            Err(ReloadError::Unknown("zz".to_owned()))
        );
    }

    /// A function whose warm instances never finish starting holds up neither the
    /// reaping nor the top-up of the others.
    #[tokio::test]
    async fn a_pool_slow_to_start_does_not_hold_up_the_reaper() {
        let mut slow = function("slow", 2, "s");
        slow.concurrency.min_warm = 1;
        let config = DispatchConfig {
            idle_timeout: Duration::ZERO,
            ..DispatchConfig::default()
        };
        let (d, fake) = dispatcher(vec![slow, function("fast", 2, "f")], config);
        lock(&fake.hang).push("slow".to_owned());
        assert_eq!(call(&d, "fast", 1).await, Ok("f".to_owned()));
        assert_eq!(d.idle_count("fast"), 1);
        // Whatever order the pools are visited in, the reaper finishes.
        tokio::time::timeout(Duration::from_secs(30), d.reap())
            .await
            .expect("the reaper is not held up by a start that never ends");
        assert_eq!(d.idle_count("fast"), 0, "the idle instance was reaped");
    }

    #[tokio::test]
    async fn stop_all_stops_busy_instances_and_refuses_new_calls() {
        let (d, _) = dispatcher(vec![function("a", 2, "a")], DispatchConfig::default());
        let busy = tokio::spawn({
            let d = Arc::clone(&d);
            async move { call(&d, "a", 60_000).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(d.busy_count(), 1);
        d.stop_all().await;
        assert_eq!(busy.await.unwrap(), Ok("Runtime.ExitError".to_owned()));
        assert!(matches!(
            call(&d, "a", 1).await,
            Err(InvokeError::Unavailable(_))
        ));
    }
}
