//! Functions as WebAssembly components, on wasmtime.
//!
//! `nimbus-runtime-wasm` implements [`nimbus_core::Runtime`] for `runtime = "wasm"`
//! functions: components exporting the standard `wasi:http/incoming-handler` (anything
//! written for `wasmtime serve` runs unmodified). It owns the node's one wasmtime
//! `Engine` (pooling allocator, copy-on-write memory images, epoch interruption, optional
//! on-disk cache of compiled code), compiles each function's component once and keeps it
//! pre-instantiated, and maps invocations to HTTP requests and responses back to Lambda
//! payloads.
//!
//! It does not build components (`nimbus up` runs `cargo build --target wasm32-wasip2`;
//! see [`component_path`]) and does not decide when instances start or stop (the
//! dispatcher does).
//!
//! # Instances
//!
//! With `instances = "reuse"` an `Instance` owns one store and instantiated component,
//! serves one invocation at a time (globals persist, as Lambda's do) and asks to be
//! replaced after [`REUSE_LIMIT`] invocations. With `per-request`,
//! every invocation instantiates afresh from the pre-instantiated component (microseconds
//! with the pool and copy-on-write images); the instance is a cheap handle, and
//! `init_duration` is reported for every invocation. A trap, timeout or out-of-memory
//! always ends with `reusable: false`.
//!
//! # Invocations
//!
//! The gateway hands a wasm function the client's HTTP request as it came
//! (`Invocation::request`); the component gets exactly the request the gateway's payload
//! 2.0 event for it would make (below), and the answer is the component's response as it
//! is (`Outcome::Http`: status, every header line, body bytes), with no JSON in between.
//!
//! A JSON invocation is mapped as before: an API Gateway payload 2.0 (or 1.0) event
//! becomes the request the client made (method, raw path and query, headers, `cookies` as
//! a `cookie` header, the body base64-decoded when `isBase64Encoded`, scheme `http`,
//! authority from `host`). Any other event (an async invocation, a stream or queue record)
//! is sent as `POST /` with the event as a JSON body and [`EVENT_SOURCE_HEADER`]. The
//! response then becomes a payload 2.0 structured result (`statusCode`, `headers`,
//! `cookies`, `body`, `isBase64Encoded`), so the gateway's reply rules apply. Every
//! request carries [`REQUEST_ID_HEADER`], and `x-amzn-trace-id` and `traceparent` when the
//! invocation has a trace header. Streaming to `Invocation::stream` is not done: the
//! response is collected whole.
//!
//! # Errors
//!
//! | `errorType` | when | instance kept |
//! |---|---|---|
//! | `Sandbox.Timedout` | the deadline passed (`Task timed out after N.00 seconds`) | no |
//! | `Runtime.Trap` | the guest trapped (a panic, `unreachable`, stack overflow), or a host call it made failed inside the host (a panic in wasmtime's WASI code); the message is the trap's, the backtrace goes to the log | no |
//! | `Runtime.OutOfMemory` | the guest trapped after its linear memory could not grow past `memory_mb` | no |
//! | `Runtime.NoResponse` | the handler returned without setting a response (or without finishing it) | yes (no, if it leaked the response) |
//! | `Runtime.ResponseError` | the guest answered with a `wasi:http` error code, or its body failed | yes |
//! | `Function.ResponseSizeTooLarge` | the response payload (for an HTTP request, the response body) is over 6 MB | yes, unless the guest then trapped |
//! | `Runtime.InvalidEvent` | an HTTP event that does not make a request (bad method, bad base64) | yes |
//! | `Runtime.InitError` | a per-request instantiation failed (e.g. the pool is full), or did not finish by the deadline | no |
//! | `Runtime.ExitError` | the instance was stopped during the invocation, or the guest called `wasi:cli/exit` (`Runtime exited with error: exit status N`) | no |
//!
//! Messages read `RequestId: <id> Error: <what>`, as Lambda's do.
//!
//! # Isolation
//!
//! Deny by default: no preopened directories, no sockets, no name lookups, none of the
//! host's environment; clocks and randomness are allowed. The environment is Lambda's
//! variables (`AWS_LAMBDA_FUNCTION_NAME`, `AWS_REGION`, dummy credentials,
//! `AWS_ENDPOINT_URL` = the services endpoint, …) plus the manifest's. Outbound
//! `wasi:http` requests may go only to the services endpoint and the function's
//! `allowed_outbound_hosts` (scheme, host and port must match); others fail in the guest
//! with `HTTP-request-denied` and never leave the node. An instance has at most 64
//! outbound requests in flight (the node 1,024), each bounded by the invocation's
//! deadline up to its response's head; one more fails with `connection-limit-reached`.
//! Randomness comes at most 1 MiB a call. Linear memory is limited to
//! `memory_mb`, time to the invocation's deadline (epochs every [`EPOCH_TICK`]).
//! stdout and stderr go to the node's log line by line (target `function`, with the
//! function name and request id), at most 1 MB per invocation; the last 4 KB are the
//! invocation's log tail.
//!
//! # Resources
//!
//! The instance pool holds [`MAX_INSTANCES`] component instances (busy or idle, across
//! all functions); one more fails to start. Each linear memory slot reserves 4 GiB plus a
//! 32 MiB guard of address space, so that compiled code needs no bounds checks: about
//! 4 TiB of `PROT_NONE` virtual memory per runtime, which costs neither RAM nor commit
//! charge (resident memory is what guests touch; a process under `ulimit -v` needs that
//! much allowed). Create one runtime per process. `memory_mb` above 4096 is 4 GiB, all a
//! 32-bit memory can address.
//!
//! ```no_run
//! # async fn example(spec: nimbus_core::FunctionSpec) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use nimbus_core::Runtime as _;
//! use nimbus_runtime_wasm::{WasmConfig, WasmRuntime};
//!
//! let runtime = WasmRuntime::new(WasmConfig {
//!     services_endpoint: "http://127.0.0.1:4566".to_owned(),
//!     region: "us-east-1".to_owned(),
//!     cache_dir: Some(".nimbus/wasm-cache".into()),
//! })?;
//! let instance = runtime.start(Arc::new(spec)).await?;
//! # drop(instance);
//! # Ok(())
//! # }
//! ```

mod component;
mod engine;
mod host;
mod http;
mod instance;
mod logs;
mod outbound;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use nimbus_core::{BoxFuture, FunctionSpec, Instance, Runtime, StartError};
use wasmtime::{Engine, component::Linker};

pub use component::component_path;
pub use engine::{
    EPOCH_TICK, MAX_CORE_INSTANCES_PER_COMPONENT, MAX_INSTANCES, MAX_MEMORIES_PER_COMPONENT,
    MAX_MEMORY_BYTES,
};
pub use http::{EVENT_SOURCE_HEADER, REQUEST_ID_HEADER};
pub use instance::{MAX_RESPONSE_BYTES, REUSE_LIMIT};
pub use logs::{LOG_TAIL_BYTES, MAX_OUTPUT_BYTES};

use crate::{component::Components, engine::EpochTicker, host::Host, outbound::Origin};

/// Settings of the wasm runtime.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// The services endpoint URL (`http://127.0.0.1:4566`): functions get it as
    /// `AWS_ENDPOINT_URL` and may always send requests to it.
    pub services_endpoint: String,
    /// The region reported to functions.
    pub region: String,
    /// Where compiled code is cached across restarts (keyed by the component's hash, the
    /// wasmtime version and the engine's settings); `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
}

/// Why the wasm runtime could not be created.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The services endpoint is not an `http://` or `https://` URL.
    #[error("invalid services endpoint {0:?}: expected http://host:port")]
    InvalidEndpoint(String),
    /// The compiled-code cache could not be set up.
    #[error("cannot set up the wasm code cache: {0}")]
    Cache(String),
    /// The engine could not be created (for example, the instance pool's address space
    /// could not be reserved).
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
}

/// What the runtime and all its instances share.
pub(crate) struct Shared {
    engine: Engine,
    linker: Arc<Linker<Host>>,
    components: Components,
    config: WasmConfig,
    services: Origin,
    // Ticks while the runtime or any of its instances lives.
    _ticker: EpochTicker,
}

/// The wasm runtime: one per node.
#[derive(Clone)]
pub struct WasmRuntime {
    shared: Arc<Shared>,
    target_dir: Option<PathBuf>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("config", &self.shared.config)
            .field("target_dir", &self.target_dir)
            .finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// Creates the engine (reserving the instance pool), the linker with WASI 0.2 and
    /// `wasi:http`, and starts the epoch thread, which stops once the runtime and all its
    /// instances are dropped.
    ///
    /// Cargo-package functions are looked for in the package's own `target` directory,
    /// where `nimbus up` builds them; see [`WasmRuntime::with_target_dir`].
    ///
    /// # Errors
    /// When the services endpoint is not a URL, the cache directory cannot be used, or
    /// the engine cannot be created.
    pub fn new(config: WasmConfig) -> Result<WasmRuntime, WasmError> {
        let services = Origin::parse(&config.services_endpoint)
            .ok_or_else(|| WasmError::InvalidEndpoint(config.services_endpoint.clone()))?;
        let engine = engine::build(config.cache_dir.as_deref())?;
        let mut linker = Linker::<Host>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| WasmError::Engine(format!("cannot link WASI: {e:#}")))?;
        let ticker = EpochTicker::start(&engine)?;
        Ok(WasmRuntime {
            shared: Arc::new(Shared {
                engine,
                linker: Arc::new(linker),
                components: Components::default(),
                config,
                services,
                _ticker: ticker,
            }),
            target_dir: None,
        })
    }

    /// Looks for Cargo-package functions' components under `dir` (as
    /// `cargo build --target-dir dir` puts them) instead of `<code>/target`.
    #[must_use]
    pub fn with_target_dir(mut self, dir: impl Into<PathBuf>) -> WasmRuntime {
        self.target_dir = Some(dir.into());
        self
    }

    /// Where this runtime looks for `function`'s component.
    pub fn component_path(&self, function: &FunctionSpec) -> PathBuf {
        component_path(function, self.target_dir.as_deref())
    }

    /// Compiles `function`'s component now (or finds it compiled), so that the first
    /// start does not pay for it.
    ///
    /// # Errors
    /// When the component cannot be read, compiled or linked.
    pub async fn prepare(&self, function: &FunctionSpec) -> Result<(), StartError> {
        let path = self.component_path(function);
        self.shared
            .components
            .get(&self.shared.engine, &self.shared.linker, &path)
            .await
            .map(drop)
            .map_err(|reason| StartError {
                function: function.name.clone(),
                reason,
            })
    }

    fn target_dir(&self) -> Option<&Path> {
        self.target_dir.as_deref()
    }
}

impl Runtime for WasmRuntime {
    fn start(
        &self,
        function: Arc<FunctionSpec>,
    ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>> {
        Box::pin(async move {
            let path = component_path(&function, self.target_dir());
            let instance =
                instance::WasmInstance::start(Arc::clone(&self.shared), function, &path).await?;
            Ok(Box::new(instance) as Box<dyn Instance>)
        })
    }
}
