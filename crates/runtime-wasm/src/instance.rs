//! One instance of a wasm function: a store with its instantiated component (reuse mode)
//! or a handle that instantiates afresh for every invocation (per-request mode), and the
//! mapping of each invocation to one call of `wasi:http/incoming-handler.handle`.

use std::{
    any::Any,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use nimbus_core::{
    BoxFuture, FunctionSpec, HttpResponse, Instance, InstanceMode, Invocation, Outcome, Report,
    StartError, Stopper,
};
use tokio::sync::{oneshot, watch};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::{
    WasiHttpView as _,
    bindings::{Proxy, ProxyPre, http::types::ErrorCode, http::types::Scheme},
    body::HyperOutgoingBody,
};

use crate::{
    Shared,
    host::{Host, HostSettings, Interruption},
    http::{REQUEST_ID_HEADER, request_for, request_from},
    logs::LogSink,
    outbound::OutboundPolicy,
};

// The headers every invocation's request gets, as constants so that their names are not
// parsed again for each.
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
const TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Invocations one instance serves in reuse mode before the dispatcher is told to
/// replace it, as `wasmtime serve --max-instance-reuse-count` bounds reuse: a slow leak
/// in a guest then costs a fresh instance now and then, not the node.
pub const REUSE_LIMIT: u32 = 1000;
/// Largest response payload, as Lambda's synchronous invocations allow (6 MB).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// How long a response may still take to arrive once the handler has returned (its
/// last body bytes are in flight); after it, the response is missing.
const RESPONSE_GRACE: Duration = Duration::from_millis(100);

/// A store with the component instantiated in it.
struct Live {
    store: Store<Host>,
    proxy: Proxy,
}

/// Stops a busy instance from outside.
struct StopSignal {
    /// Read by the epoch callback, which interrupts running guest code.
    flag: Arc<AtomicBool>,
    /// Wakes an invocation waiting on the host (an outbound request, a sleep).
    notify: watch::Sender<bool>,
}

impl StopSignal {
    fn stop(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.notify.send_replace(true);
    }
}

/// An instance of a wasm function.
pub(crate) struct WasmInstance {
    shared: Arc<Shared>,
    function: Arc<FunctionSpec>,
    pre: ProxyPre<Host>,
    environment: Vec<(String, String)>,
    outbound: Arc<OutboundPolicy>,
    logs: LogSink,
    /// The instantiated component, in reuse mode.
    live: Option<Live>,
    /// Invocations served by `live`.
    served: u32,
    /// The instantiation time, until the first invocation reports it.
    pending_init: Option<Duration>,
    /// When the current invocation's run began, if it instantiated first (per-request
    /// mode): its `Duration` leaves the instantiation out, as Lambda's leaves out init.
    run_from: Option<Instant>,
    /// The most linear memory any of this instance's stores has had, in bytes.
    peak_bytes: usize,
    stop: Arc<StopSignal>,
    /// What [`Instance::stopper`] hands out: made once, cloned for each invocation.
    stopper: Stopper,
}

/// The variables every function sees, then the manifest's `environment`.
fn environment(shared: &Shared, function: &FunctionSpec) -> Vec<(String, String)> {
    nimbus_core::lambda::function_environment(
        function,
        &shared.config.region,
        &shared.config.services_endpoint,
    )
}

/// A stopper that stops the instance `stop` signals.
fn stopper_of(stop: &Arc<StopSignal>) -> Stopper {
    let stop = Arc::clone(stop);
    Arc::new(move || {
        stop.stop();
        Box::pin(async {})
    })
}

/// The instant a wall-clock deadline falls at.
fn instant_of(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}

/// How an exchange with the component ended.
enum Served {
    /// The handler returned (or its response is complete) and the response is this.
    Done {
        /// Whether the handler returned normally (false: it trapped; the error follows).
        call: Result<(), anyhow::Error>,
        /// The response, if one was set.
        response: Option<Received>,
    },
    /// The deadline passed while the host was waiting.
    TimedOut,
    /// The instance was stopped while the host was waiting.
    Stopped,
    /// A host call made by the guest panicked (a fault in wasmtime's WASI implementation,
    /// which a guest can reach); what the panic said.
    Panicked(String),
    /// The host could not hand the request to the guest.
    Failed(anyhow::Error),
}

/// What came back through the response outparam.
enum Received {
    Response(http::response::Parts, Bytes),
    TooLarge(usize),
    /// The outparam was dropped without a response.
    Nothing,
    ErrorCode(ErrorCode),
    BodyFailed(ErrorCode),
}

async fn receive(
    receiver: oneshot::Receiver<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
) -> Received {
    let response = match receiver.await {
        Err(_) => return Received::Nothing,
        Ok(Err(code)) => return Received::ErrorCode(code),
        Ok(Ok(response)) => response,
    };
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                    if bytes.len() > MAX_RESPONSE_BYTES {
                        // Dropping the body makes the guest's further writes fail.
                        return Received::TooLarge(bytes.len());
                    }
                }
            }
            Err(code) => return Received::BodyFailed(code),
        }
    }
    Received::Response(parts, Bytes::from(bytes))
}

/// Calls the handler with `request` and collects its response, until `deadline`.
async fn serve(
    live: &mut Live,
    request: http::Request<Full<Bytes>>,
    deadline: Instant,
    mut stopped: watch::Receiver<bool>,
) -> Served {
    let (sender, receiver) = oneshot::channel();
    let request = request.map(|body| {
        body.map_err(|never: std::convert::Infallible| -> hyper::Error { match never {} })
    });
    let host = live.store.data_mut();
    let request = match host.new_incoming_request(Scheme::Http, request) {
        Ok(request) => request,
        Err(e) => return Served::Failed(e),
    };
    let outparam = match host.new_response_outparam(sender) {
        Ok(outparam) => outparam,
        Err(e) => return Served::Failed(e),
    };
    let call =
        live.proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut live.store, request, outparam);
    let exchange = async {
        tokio::pin!(call);
        let response = receive(receiver);
        tokio::pin!(response);
        let mut returned: Option<Result<(), anyhow::Error>> = None;
        let mut received: Option<Received> = None;
        loop {
            let waiting_for_response = matches!(returned, Some(Ok(())));
            tokio::select! {
                result = &mut call, if returned.is_none() => {
                    let trapped = result.is_err();
                    returned = Some(result);
                    if trapped {
                        break;
                    }
                }
                r = &mut response, if received.is_none() => received = Some(r),
                // An `async` block, so that the timer is made (a clock read and a runtime
                // handle) only when the branch is polled, not on every turn of the loop.
                () = async { tokio::time::sleep(RESPONSE_GRACE).await },
                    if waiting_for_response => break,
            }
            if returned.is_some() && received.is_some() {
                break;
            }
        }
        Served::Done {
            call: returned.unwrap_or(Ok(())),
            response: received,
        }
    };
    let bounded = async {
        tokio::select! {
            served = exchange => served,
            () = tokio::time::sleep_until(deadline.into()) => Served::TimedOut,
            _ = stopped.wait_for(|stopped| *stopped) => Served::Stopped,
        }
    };
    // The store is dropped after a panic, never used again, so nothing it left half
    // changed is seen.
    AssertUnwindSafe(bounded)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Served::Panicked(panic_message(panic)))
}

/// What a caught panic said, if it said it with a string. The payload is forgotten, not
/// dropped: its drop could panic again, outside any catch.
fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    std::mem::forget(panic);
    message
}

/// A fresh store holding `host` with the component instantiated in it, and how long
/// that took. Instantiation runs the component's start functions, guest code that can
/// spin (the epoch deadline interrupts it) or wait on the host (the deadline ends the
/// wait), or make a host call that panics (an error, too).
async fn instantiate(
    engine: &Engine,
    pre: &ProxyPre<Host>,
    host: Host,
    deadline: Instant,
) -> anyhow::Result<(Live, Duration)> {
    let instantiated = AssertUnwindSafe(instantiate_store(engine, pre, host)).catch_unwind();
    match tokio::time::timeout_at(deadline.into(), instantiated).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(anyhow::anyhow!(
            "a host call panicked: {}",
            panic_message(panic)
        )),
        Err(_) => Err(anyhow::anyhow!(
            "instantiation did not finish within the function's timeout"
        )),
    }
}

async fn instantiate_store(
    engine: &Engine,
    pre: &ProxyPre<Host>,
    host: Host,
) -> anyhow::Result<(Live, Duration)> {
    let started = Instant::now();
    let mut store = Store::new(engine, host);
    store.limiter(|host| &mut host.memory);
    // Each tick, a running guest either yields to other tasks or, past its deadline (or
    // stopped), is interrupted.
    store.epoch_deadline_callback(|mut ctx| {
        Ok(match ctx.data_mut().check_interrupt() {
            Some(_) => UpdateDeadline::Interrupt,
            None => UpdateDeadline::Yield(1),
        })
    });
    store.set_epoch_deadline(1);
    let proxy = pre.instantiate_async(&mut store).await?;
    Ok((Live { store, proxy }, started.elapsed()))
}

impl WasmInstance {
    /// Prepares an instance of `function`; in reuse mode, instantiates it.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        function: Arc<FunctionSpec>,
        path: &std::path::Path,
    ) -> Result<WasmInstance, StartError> {
        let name = function.name.clone();
        let fail = |reason: String| StartError {
            function: name.clone(),
            reason,
        };
        let pre = shared
            .components
            .get(&shared.engine, &shared.linker, path)
            .await
            .map_err(fail)?;
        let (notify, _) = watch::channel(false);
        let stop = Arc::new(StopSignal {
            flag: Arc::new(AtomicBool::new(false)),
            notify,
        });
        let mut instance = WasmInstance {
            environment: environment(&shared, &function),
            outbound: Arc::new(OutboundPolicy::new(
                Some(&shared.services),
                &function.allowed_outbound_hosts,
            )),
            logs: LogSink::new(&function.name, &function.logging),
            shared,
            pre,
            live: None,
            served: 0,
            pending_init: None,
            run_from: None,
            peak_bytes: 0,
            stopper: stopper_of(&stop),
            stop,
            function,
        };
        if instance.function.instances == InstanceMode::Reuse {
            let deadline = Instant::now() + instance.function.timeout;
            let host = instance.host(deadline);
            let (live, init) = instantiate(&instance.shared.engine, &instance.pre, host, deadline)
                .await
                .map_err(|e| fail(format!("cannot instantiate the component: {e:#}")))?;
            instance.live = Some(live);
            instance.pending_init = Some(init);
        }
        Ok(instance)
    }

    /// The data of a new store for this function, with `deadline` for its first run.
    fn host(&self, deadline: Instant) -> Host {
        let memory_bytes =
            usize::try_from(u64::from(self.function.memory_mb) << 20).unwrap_or(usize::MAX);
        Host::new(HostSettings {
            environment: &self.environment,
            logs: &self.logs,
            outbound: Arc::clone(&self.outbound),
            memory_bytes,
            stop: Arc::clone(&self.stop.flag),
            deadline,
        })
    }

    async fn run(&mut self, mut invocation: Invocation) -> Report {
        let request_id = invocation.request_id.clone();
        self.logs.begin(&request_id);
        let request = invocation.request.take();
        self.run_from = None;
        let (outcome, reusable, init_duration, peak) = self.exchange(&invocation, request).await;
        let run_duration = self.run_from.take().map(|from| from.elapsed());
        self.peak_bytes = self.peak_bytes.max(peak);
        let log_tail = self.logs.end();
        let peak = match self.function.instances {
            InstanceMode::Reuse => self.peak_bytes,
            InstanceMode::PerRequest => peak,
        };
        Report {
            outcome,
            reusable,
            init_duration,
            log_tail,
            max_memory_mb: Some(u64::try_from(peak.div_ceil(1 << 20)).unwrap_or(u64::MAX)),
            run_duration,
        }
    }

    /// Runs one invocation (`request`, the HTTP request it carried, or else its JSON
    /// payload): its outcome, whether the instance may serve another, the instantiation
    /// time to report, and the peak linear memory of the store used.
    async fn exchange(
        &mut self,
        invocation: &Invocation,
        request: Option<http::Request<Bytes>>,
    ) -> (Outcome, bool, Option<Duration>, usize) {
        let id = invocation.request_id.as_str();
        let error = |error_type: &str, message: &str| failure(id, error_type, message);
        if self.stop.flag.load(Ordering::Relaxed) {
            let outcome = error(
                "Runtime.ExitError",
                "Runtime exited with error: instance stopped",
            );
            return (outcome, false, None, 0);
        }
        // An HTTP request is answered with the response as it is; an event with its
        // structured result.
        let answer_http = request.is_some();
        let request = match request {
            Some(request) => request_from(request),
            None => request_for(&invocation.payload),
        };
        let mut request = match request {
            Ok(request) => request,
            Err(message) => return (error("Runtime.InvalidEvent", &message), true, None, 0),
        };
        if let Ok(value) = HeaderValue::from_str(id) {
            request.headers_mut().insert(REQUEST_ID, value);
        }
        if let Some(trace) = &invocation.trace_id
            && let Ok(value) = HeaderValue::from_str(trace)
        {
            request.headers_mut().insert(TRACE_ID, value);
            // The W3C form too, which wasm code and its HTTP libraries pass on: the
            // context of the span the invocation runs in (the one the X-Ray form was
            // written from) when there is one, rather than the header parsed back.
            let context = nimbus_core::trace::current()
                .or_else(|| nimbus_core::trace::TraceContext::from_xray(trace));
            if let Some(cx) = context
                && let Ok(value) = HeaderValue::from_str(&cx.traceparent())
            {
                request.headers_mut().insert(TRACEPARENT, value);
            }
        }
        let deadline = instant_of(invocation.deadline);
        // Instantiation's future is large (wasmtime's), and in reuse mode (the default)
        // most invocations skip it: boxed, so that it does not enlarge every invocation's
        // future, which is moved whole on its way to the runtime.
        let (mut live, init) = match self.live.take() {
            Some(live) => (live, self.pending_init.take()),
            None => match Box::pin(instantiate(
                &self.shared.engine,
                &self.pre,
                self.host(deadline),
                deadline,
            ))
            .await
            {
                Ok((live, init)) => {
                    self.run_from = Some(Instant::now());
                    (live, Some(init))
                }
                Err(e) => {
                    self.logs
                        .detail(&format!("nimbus: cannot instantiate: {}", causes(&e)));
                    let outcome = error(
                        "Runtime.InitError",
                        &format!("cannot instantiate the component: {e:#}"),
                    );
                    return (outcome, false, None, 0);
                }
            },
        };
        {
            let host = live.store.data_mut();
            host.deadline = deadline;
            host.interrupted = None;
            host.memory.reset_denied();
        }
        live.store.set_epoch_deadline(1);
        let served = serve(&mut live, request, deadline, self.stop.notify.subscribe()).await;
        let peak = live.store.data().memory.peak();
        let (outcome, healthy) = self.judge(id, served, live.store.data(), answer_http);
        let reusable = match self.function.instances {
            InstanceMode::PerRequest => healthy,
            InstanceMode::Reuse if healthy => {
                self.served += 1;
                self.live = Some(live);
                self.served < REUSE_LIMIT
            }
            InstanceMode::Reuse => false,
        };
        (outcome, reusable, init, peak)
    }

    /// How an exchange ended, as an outcome (the response as an [`Outcome::Http`] when
    /// `answer_http`, else as its structured result), and whether the store may serve
    /// again.
    fn judge(&self, id: &str, served: Served, host: &Host, answer_http: bool) -> (Outcome, bool) {
        let error = |error_type: &str, message: &str| failure(id, error_type, message);
        let timed_out = || {
            error(
                nimbus_core::TIMEOUT_ERROR,
                &format!(
                    "Task timed out after {:.2} seconds",
                    self.function.timeout.as_secs_f64()
                ),
            )
        };
        let stopped = || {
            error(
                "Runtime.ExitError",
                "Runtime exited with error: instance stopped",
            )
        };
        match served {
            Served::TimedOut => (timed_out(), false),
            Served::Stopped => (stopped(), false),
            Served::Panicked(message) => {
                tracing::error!(
                    function = %self.function.name,
                    request_id = id,
                    "a host call of the component panicked, and the instance is discarded: {message}"
                );
                self.logs
                    .detail(&format!("nimbus: a host call panicked: {message}"));
                let message = format!("a host call of the component failed: {message}");
                (error("Runtime.Trap", &message), false)
            }
            Served::Failed(e) => (
                error(
                    "Runtime.InitError",
                    &format!("cannot pass the request: {e:#}"),
                ),
                false,
            ),
            Served::Done {
                call: Err(trap),
                response,
            } => {
                let outcome = match (host.interrupted, response) {
                    (Some(Interruption::Timeout), _) => timed_out(),
                    (Some(Interruption::Stopped), _) => stopped(),
                    (None, Some(Received::TooLarge(size))) => too_large(size),
                    (None, _) if host.memory.denied() => {
                        self.logs
                            .detail(&format!("nimbus: out of memory: {}", causes(&trap)));
                        error(
                            "Runtime.OutOfMemory",
                            &format!(
                                "Runtime exited with error: out of memory (linear memory limit {} MB): {}",
                                self.function.memory_mb,
                                trap_message(&trap)
                            ),
                        )
                    }
                    // The guest called `wasi:cli/exit`: the runtime exited, as a
                    // Lambda runtime process that exits does.
                    (None, _) if trap.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() => {
                        let status = trap
                            .downcast_ref::<wasmtime_wasi::I32Exit>()
                            .map_or(0, |exit| exit.0);
                        error(
                            "Runtime.ExitError",
                            &format!("Runtime exited with error: exit status {status}"),
                        )
                    }
                    (None, _) => {
                        self.logs.detail(&format!("nimbus: {}", causes(&trap)));
                        error("Runtime.Trap", &trap_message(&trap))
                    }
                };
                (outcome, false)
            }
            Served::Done {
                call: Ok(()),
                response,
            } => match response {
                Some(Received::Response(parts, body)) => {
                    let response = HttpResponse {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    };
                    if answer_http {
                        // `receive` already held the body to the limit.
                        return (Outcome::Http(response), true);
                    }
                    let payload = response.structured_result();
                    if payload.len() > MAX_RESPONSE_BYTES {
                        (too_large(payload.len()), true)
                    } else {
                        (Outcome::Response(payload), true)
                    }
                }
                Some(Received::TooLarge(size)) => (too_large(size), true),
                Some(Received::Nothing) => (
                    error(
                        "Runtime.NoResponse",
                        "the component returned from wasi:http/incoming-handler.handle without setting a response",
                    ),
                    true,
                ),
                // The outparam or the body is still held by the guest: it leaked them,
                // and the store is not one to keep.
                None => (
                    error(
                        "Runtime.NoResponse",
                        "the component returned from wasi:http/incoming-handler.handle without finishing its response",
                    ),
                    false,
                ),
                Some(Received::ErrorCode(code)) => (
                    error(
                        "Runtime.ResponseError",
                        &format!("the component answered with an error: {code:?}"),
                    ),
                    true,
                ),
                Some(Received::BodyFailed(code)) => (
                    error(
                        "Runtime.ResponseError",
                        &format!("the response body failed: {code:?}"),
                    ),
                    true,
                ),
            },
        }
    }
}

/// An error and its causes, one after another (a trap's causes include the guest's wasm
/// backtrace), without the host's own backtrace, which says nothing about the function
/// and would fill its log when `RUST_BACKTRACE` is set.
fn causes(e: &wasmtime::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A platform error as Lambda words it: `RequestId: <id> Error: <message>`.
fn failure(id: &str, error_type: &str, message: &str) -> Outcome {
    Outcome::platform_error(error_type, &format!("RequestId: {id} Error: {message}"))
}

fn too_large(size: usize) -> Outcome {
    Outcome::platform_error(
        "Function.ResponseSizeTooLarge",
        &format!(
            "Response payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
        ),
    )
}

/// What a trap says: wasmtime's description (`wasm trap: call stack exhausted`), or for
/// a host error the innermost cause.
fn trap_message(error: &anyhow::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    }
}

impl Instance for WasmInstance {
    fn invoke(&mut self, invocation: Invocation) -> BoxFuture<'_, Report> {
        Box::pin(self.run(invocation))
    }

    fn is_alive(&self) -> bool {
        !self.stop.flag.load(Ordering::Relaxed)
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        self.stop.stop();
        self.live = None;
        Box::pin(async move { drop(self) })
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(Arc::clone(&self.stopper))
    }
}

#[cfg(test)]
mod tests {
    use super::causes;

    #[test]
    fn causes_list_every_cause_and_no_host_backtrace() {
        let e = wasmtime::Error::msg("wasm trap: unreachable")
            .context("error while executing at wasm backtrace:\n    0: probe::trap")
            .context("the guest trapped");
        assert_eq!(
            causes(&e),
            "the guest trapped\nerror while executing at wasm backtrace:\n    0: probe::trap\nwasm trap: unreachable"
        );
        // Whatever RUST_BACKTRACE says, the host's frames stay out of the function's log.
        assert!(!causes(&e).contains("Stack backtrace"));
    }
}
