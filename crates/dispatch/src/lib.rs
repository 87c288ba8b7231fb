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
//! The dispatcher knows nothing of HTTP or processes: it drives [`Runtime`]s and serves
//! [`Invoke`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use nimbus_core::{
    BoxFuture, FunctionSpec, Instance, Invocation, Invoke, InvokeError, InvokeOptions,
    InvokeResult, Outcome, Runtime, RuntimeKind,
};
use tokio::sync::Semaphore;

/// How the dispatcher scales.
#[derive(Debug, Clone, Copy)]
pub struct DispatchConfig {
    /// Longest an invocation waits for a free instance at the concurrency limit before it
    /// is throttled.
    pub max_queue_wait: Duration,
    /// How long an idle instance beyond `min_warm` is kept.
    pub idle_timeout: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            max_queue_wait: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

struct Idle {
    instance: Box<dyn Instance>,
    since: Instant,
}

struct Pool {
    function: Arc<FunctionSpec>,
    runtime: Arc<dyn Runtime>,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    async fn take(&self) -> Result<(Box<dyn Instance>, bool), InvokeError> {
        loop {
            let warm = lock(&self.idle).pop();
            let Some(idle) = warm else { break };
            if idle.instance.is_alive() {
                return Ok((idle.instance, false));
            }
            // Ended while idle (killed from outside): replace it, unnoticed by the caller.
            tracing::warn!(function = %self.function.name, "an idle instance had ended; starting another");
            tokio::spawn(idle.instance.stop());
        }
        let instance = self
            .runtime
            .start(Arc::clone(&self.function))
            .await
            .map_err(|e| InvokeError::Unavailable(e.to_string()))?;
        Ok((instance, true))
    }

    fn put_back(&self, instance: Box<dyn Instance>) {
        lock(&self.idle).push(Idle {
            instance,
            since: Instant::now(),
        });
    }
}

/// The dispatcher.
pub struct Dispatcher {
    pools: HashMap<String, Arc<Pool>>,
    config: DispatchConfig,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("functions", &self.pools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
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
                Some((
                    f.name.clone(),
                    Arc::new(Pool {
                        function: Arc::new(f),
                        runtime,
                        permits,
                        idle: Mutex::new(Vec::new()),
                    }),
                ))
            })
            .collect();
        Dispatcher { pools, config }
    }

    /// Starts `min_warm` instances of every function and the idle reaper; returns the
    /// reaper's task.
    pub async fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        for pool in self.pools.values() {
            for _ in 0..pool.function.concurrency.min_warm {
                match pool.runtime.start(Arc::clone(&pool.function)).await {
                    Ok(instance) => pool.put_back(instance),
                    Err(e) => tracing::warn!(error = %e, "cannot start a warm instance"),
                }
            }
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

    /// Stops idle instances past the idle timeout, keeping `min_warm` per function.
    async fn reap(&self) {
        for pool in self.pools.values() {
            let expired: Vec<Idle> = {
                let mut idle = lock(&pool.idle);
                let keep = pool.function.concurrency.min_warm as usize;
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
                tracing::debug!(function = %pool.function.name, "stopping an idle instance");
                idle.instance.stop().await;
            }
        }
    }

    /// Instances now idle for `function` (for tests and metrics).
    pub fn idle_count(&self, function: &str) -> usize {
        self.pools.get(function).map_or(0, |p| lock(&p.idle).len())
    }

    /// Stops every idle instance (at shutdown, once in-flight invocations are done).
    pub async fn stop_all(&self) {
        for pool in self.pools.values() {
            let idle: Vec<Idle> = lock(&pool.idle).drain(..).collect();
            for i in idle {
                i.instance.stop().await;
            }
        }
    }

    async fn run(
        &self,
        function: &str,
        payload: Vec<u8>,
        options: InvokeOptions,
    ) -> Result<InvokeResult, InvokeError> {
        let Some(pool) = self.pools.get(function) else {
            return Err(InvokeError::NotFound(function.to_owned()));
        };
        let permit = tokio::time::timeout(
            self.config.max_queue_wait,
            Arc::clone(&pool.permits).acquire_owned(),
        )
        .await
        .map_err(|_| InvokeError::Throttled)?
        .map_err(|_| InvokeError::Unavailable("the dispatcher is stopping".to_owned()))?;
        let request_id = options
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (mut instance, cold) = pool.take().await?;
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload,
            deadline: SystemTime::now() + pool.function.timeout,
            trace_id: options.trace_id,
            client_context: options.client_context,
        };
        tracing::info!(target: "function", function, request_id = %request_id, "START RequestId: {request_id} Version: $LATEST");
        let started = Instant::now();
        let report = instance.invoke(invocation).await;
        let duration = started.elapsed();
        let ms = duration.as_secs_f64() * 1000.0;
        let mut report_line = format!(
            "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            ms.ceil() as u64,
            pool.function.memory_mb,
            report
                .max_memory_mb
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
        );
        if let Some(init) = report.init_duration {
            report_line.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                init.as_secs_f64() * 1000.0
            ));
        }
        tracing::info!(target: "function", function, request_id = %request_id, "END RequestId: {request_id}");
        tracing::info!(target: "function", function, request_id = %request_id, "{report_line}");
        let outcome_kind = match &report.outcome {
            Outcome::Response(_) => "success",
            Outcome::Error { error_type, .. } if error_type == "Sandbox.Timedout" => "timeout",
            Outcome::Error { .. } => "error",
        };
        tracing::info!(
            function,
            request_id = %request_id,
            duration_ms = duration.as_secs_f64() * 1000.0,
            init_ms = report.init_duration.map(|d| d.as_secs_f64() * 1000.0),
            cold,
            outcome = outcome_kind,
            "invocation"
        );
        if report.reusable {
            pool.put_back(instance);
        } else {
            tokio::spawn(instance.stop());
        }
        drop(permit);
        let mut log_tail = format!("START RequestId: {request_id} Version: $LATEST\n");
        if !report.log_tail.is_empty() {
            log_tail.push_str(&report.log_tail);
            log_tail.push('\n');
        }
        log_tail.push_str(&format!("END RequestId: {request_id}\n{report_line}\n"));
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
        Box::pin(async move { self.run(&function, payload, options).await })
    }
}
