//! A running node: both listeners, served until a stop is asked for.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::Duration,
};

use std::collections::HashMap;

use nimbus_core::{AppSpec, Runtime, RuntimeKind};
use nimbus_dispatch::{DispatchConfig, Dispatcher};
use nimbus_events::{AsyncQueue, AsyncWorker, WorkerConfig};
use nimbus_gateway::Health;
use nimbus_runtime_process::{ProcessConfig, ProcessRuntime};
use nimbus_tables::{
    api::Tables,
    engine::{Embedded, Postgres, TableEngine},
};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    Config, DataDir,
    listener::{Limits, Tls},
};

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address is taken, not local, or not allowed.
    #[error("cannot listen on {addr} ({role})")]
    Listen {
        /// `gateway` or `services`.
        role: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The services endpoint would listen beyond loopback without a token.
    #[error(
        "the services endpoint {addr} is not a loopback address, so it needs a token: give one with --services-token-file FILE (or NIMBUS_SERVICES_TOKEN), or listen on 127.0.0.1"
    )]
    ServicesUnprotected {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The app's routes, API keys or JWT authorizer cannot be served.
    #[error(transparent)]
    Gateway(#[from] nimbus_gateway::GatewayError),
    /// The table store cannot be opened.
    #[error("cannot open the table store at {place}")]
    Tables {
        /// The database file or (password-free) URL.
        place: String,
        /// Why.
        #[source]
        source: nimbus_tables::engine::EngineError,
    },
    /// The runtime shims cannot be written to the data directory.
    #[error("cannot install the function runtimes")]
    Runtimes {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gateway's TLS certificate or private key cannot be used.
    #[error("cannot use the TLS {what} {}", file.display())]
    Tls {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        file: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The async event queue cannot be opened.
    #[error("cannot open the async event queue at {}", file.display())]
    Events {
        /// The queue's file.
        file: std::path::PathBuf,
        /// Why.
        #[source]
        source: nimbus_events::QueueError,
    },
    /// The app's schedules cannot run: an expression is not valid, or their record cannot
    /// be opened.
    #[error("cannot start the app's schedules")]
    Schedules(#[source] nimbus_events::ScheduleError),
    /// The table stream triggers' checkpoints cannot be opened.
    #[error("cannot start the app's table stream triggers")]
    Triggers(#[source] nimbus_events::TriggerError),
    /// The function log store cannot be opened.
    #[error("cannot open the function log store at {}", dir.display())]
    Logs {
        /// The store's directory.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The metrics recorder cannot be installed (another one was, in this process).
    #[error(transparent)]
    Metrics(#[from] nimbus_telemetry::metrics::MetricsError),
    /// A table the app declares cannot be created.
    #[error("cannot create table {table}")]
    CreateTable {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: nimbus_tables::error::ApiError,
    },
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every in-flight request finished within the grace period.
    Drained,
    /// The grace period ran out; requests still in flight were cut off.
    GraceExpired,
}

/// A node whose listeners are bound and ready to serve.
#[derive(Debug)]
pub struct Node {
    gateway: TcpListener,
    services: TcpListener,
    gateway_router: axum::Router,
    gateway_reloader: nimbus_gateway::Reloader,
    services_router: axum::Router,
    grace: Duration,
    limits: Limits,
    gateway_tls: Option<Tls>,
    ttl_sweep_interval: Duration,
    tables: Arc<Tables>,
    dispatcher: Arc<Dispatcher>,
    async_worker: AsyncWorker,
    schedules: Option<nimbus_events::Schedules>,
    triggers: Option<crate::triggers::Prepared>,
    logs: Option<nimbus_telemetry::logs::LogStore>,
    data: DataDir,
}

async fn listen(role: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Listen { role, addr, source })
}

/// Where functions on this node reach the services endpoint bound to `bound`: on
/// loopback when it listens on every address, since the AWS APIs are served to peers on
/// loopback (or, on a bind to one address, that address) only.
fn local_services_addr(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bound.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bound.port()).into(),
        _ => bound,
    }
}

/// A database URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Installs the runtime shims and starts the dispatcher for the app's functions.
async fn start_dispatcher(
    app: &AppSpec,
    data_dir: &Path,
    services: SocketAddr,
    config: DispatchConfig,
    python_sdk: Option<&Path>,
    node_sdk: Option<&Path>,
) -> Result<Arc<Dispatcher>, BindError> {
    let shims_dir = nimbus_runtime_process::shims::install(&data_dir.join("runtimes"))
        .map_err(|source| BindError::Runtimes { source })?;
    // Instances' temporary directories: what a node killed before it could remove them
    // left here goes now (no instance of this node runs yet).
    let tmp_root = data_dir.join("tmp");
    let _ = std::fs::remove_dir_all(&tmp_root);
    let process: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new(ProcessConfig {
        services_endpoint: format!("http://{services}"),
        region: nimbus_tables::schema::REGION.to_owned(),
        shims_dir,
        python_deps: Some(data_dir.join("deps")),
        python_sdk: python_sdk.map(Path::to_path_buf),
        node_sdk: node_sdk.map(Path::to_path_buf),
        tmp_root: Some(tmp_root),
    }));
    let mut runtimes: HashMap<RuntimeKind, Arc<dyn Runtime>> = [
        (RuntimeKind::Nodejs, Arc::clone(&process)),
        (RuntimeKind::Python, Arc::clone(&process)),
        (RuntimeKind::Provided, process),
    ]
    .into_iter()
    .collect();
    // The wasm engine reserves its instance pool's address space up front: only an app
    // with wasm functions gets one.
    if app
        .functions
        .values()
        .any(|f| f.runtime.kind == RuntimeKind::Wasm)
    {
        let wasm = nimbus_runtime_wasm::WasmRuntime::new(nimbus_runtime_wasm::WasmConfig {
            services_endpoint: format!("http://{services}"),
            region: nimbus_tables::schema::REGION.to_owned(),
            cache_dir: Some(data_dir.join("wasm-cache")),
        })
        .map_err(|e| BindError::Runtimes {
            source: std::io::Error::other(e.to_string()),
        })?;
        // Components are loaded (compiled, or read from the cache) before the node says
        // it is ready, as `wasmtime serve` and Spin do, so that a function's first
        // request pays only for its instance. One that cannot be loaded does not stop
        // the node: its requests answer the error, as they would have anyway.
        for function in app
            .functions
            .values()
            .filter(|f| f.runtime.kind == RuntimeKind::Wasm)
        {
            let started = std::time::Instant::now();
            match wasm.prepare(function).await {
                Ok(()) => tracing::debug!(
                    function = %function.name,
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "component loaded"
                ),
                Err(e) => {
                    tracing::warn!(function = %function.name, error = %e, "component not loaded")
                }
            }
        }
        runtimes.insert(RuntimeKind::Wasm, Arc::new(wasm));
    }
    let dispatcher = Arc::new(Dispatcher::new(
        app.functions.values().cloned(),
        &runtimes,
        config,
    ));
    dispatcher.start().await;
    Ok(dispatcher)
}

/// The table store's file in the data directory.
const TABLES_FILE: &str = "tables.redb";

/// Opens the table store (PostgreSQL when a URL is given, else the embedded engine in the
/// data directory) and creates the tables `app` declares that do not exist yet.
async fn open_tables(
    data_dir: &Path,
    postgres: Option<&str>,
    app: Option<&AppSpec>,
) -> Result<Arc<Tables>, BindError> {
    let (engine, place): (Arc<dyn TableEngine>, String) = match postgres {
        Some(url) => {
            let place = redact(url);
            let engine = Postgres::connect(url)
                .await
                .map_err(|source| BindError::Tables {
                    place: place.clone(),
                    source,
                })?;
            (Arc::new(engine), place)
        }
        None => {
            let path = data_dir.join(TABLES_FILE);
            let place = path.display().to_string();
            let engine = Embedded::open(&path).map_err(|source| BindError::Tables {
                place: place.clone(),
                source,
            })?;
            (Arc::new(engine), place)
        }
    };
    tracing::info!(store = %place, "table store open");
    let tables = Tables::open(engine)
        .await
        .map_err(|source| BindError::Tables { place, source })?;
    for spec in app.iter().flat_map(|app| app.tables.values()) {
        let created = tables
            .ensure_table(spec)
            .await
            .map_err(|source| BindError::CreateTable {
                table: spec.name.clone(),
                source,
            })?;
        if created {
            tracing::info!(table = %spec.name, "created table");
        }
    }
    Ok(Arc::new(tables))
}

/// Deletes expired items every `interval` until the node stops.
async fn sweep_ttl(tables: Arc<Tables>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match tables.sweep_expired(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "deleted expired items"),
            Err(e) => tracing::warn!(error = %e, "TTL sweep failed; retrying at the next interval"),
        }
        if let Err(e) = tables.trim_streams(now).await {
            tracing::warn!(error = %e, "stream trimming failed; retrying at the next interval");
        }
    }
}

impl Node {
    /// Binds both listeners for `app` (or for no app) and builds the services.
    ///
    /// # Errors
    /// A [`BindError`] naming the address that could not be bound.
    pub async fn bind(
        config: Config,
        app: Option<AppSpec>,
        data: DataDir,
    ) -> Result<Node, BindError> {
        if config.services_token.is_none()
            && !config.services_listen.ip().to_canonical().is_loopback()
        {
            return Err(BindError::ServicesUnprotected {
                addr: config.services_listen,
            });
        }
        let health = Health {
            app: app.as_ref().map(|a| a.name.clone()),
            version: env!("CARGO_PKG_VERSION"),
        };
        let gateway_tls = Tls::from_config(&config)?;
        let limits = Limits::new(&config);
        // Before the parts are built: they register their metrics as they are made.
        let metrics = config
            .metrics
            .then(nimbus_telemetry::metrics::install)
            .transpose()?;
        let logs = crate::logs_api::open_store(&data, config.log_retention)?;
        let tables = open_tables(data.path(), config.postgres.as_deref(), app.as_ref()).await?;
        let gateway = listen("gateway", config.listen).await?;
        let services = listen("services", config.services_listen).await?;
        let services_addr = services
            .local_addr()
            .expect("a bound TCP listener has a local address");
        let empty = AppSpec::named("none");
        let dispatcher = start_dispatcher(
            app.as_ref().unwrap_or(&empty),
            data.path(),
            local_services_addr(services_addr),
            config.dispatch,
            config.python_sdk.as_deref(),
            config.node_sdk.as_deref(),
        )
        .await?;
        let invoker: Arc<dyn nimbus_core::Invoke> = Arc::clone(&dispatcher) as _;
        let events_file = data.events_file();
        let events =
            Arc::new(
                AsyncQueue::open(&events_file).map_err(|source| BindError::Events {
                    file: events_file,
                    source,
                })?,
            );
        let async_worker = AsyncWorker::new(
            Arc::clone(&events),
            Arc::clone(&invoker),
            app.iter().flat_map(|app| app.functions.values().cloned()),
            WorkerConfig {
                // After a throttle or an instance that could not start.
                retry_base: config.async_retry_base,
                // After a function error: 60 times the base per attempt made, Lambda's
                // minute then two by default, so that the one setting speeds both up.
                function_error_retry_base: config.async_retry_base.saturating_mul(60),
                // A leased event may wait for an instance as long as a request may.
                max_queue_wait: config.dispatch.max_queue_wait,
                region: nimbus_tables::schema::REGION.to_owned(),
                ..WorkerConfig::default()
            },
        );
        let schedules = crate::schedules::build(
            app.as_ref(),
            data.path(),
            &events,
            nimbus_tables::schema::REGION,
        )
        .map_err(BindError::Schedules)?;
        let triggers = crate::triggers::prepare(
            app.as_ref(),
            &data,
            &tables,
            &invoker,
            &events,
            nimbus_tables::schema::REGION,
        )
        .map_err(BindError::Triggers)?;
        let logs_router = crate::logs_api::router(app.as_ref(), logs.clone());
        let metrics_router =
            crate::metrics_api::router(metrics, Arc::clone(&dispatcher), Arc::clone(&events));
        let lambda = Arc::new(crate::lambda::Lambda {
            functions: Arc::clone(&dispatcher) as Arc<dyn crate::lambda::Functions>,
            invoker: Arc::clone(&invoker),
            region: nimbus_tables::schema::REGION.to_owned(),
            events,
        });
        let (gateway_router, gateway_reloader) =
            nimbus_gateway::router(app, health.clone(), invoker).await?;
        let services_router = crate::services::router(
            health,
            Arc::new(crate::services::Services {
                tables: Arc::clone(&tables),
            }),
            lambda,
        )
        .merge(logs_router)
        .merge(metrics_router);
        let services_router =
            crate::access::Access::new(services_addr, config.services_token).layer(services_router);
        Ok(Node {
            dispatcher,
            async_worker,
            schedules,
            triggers,
            gateway,
            services,
            gateway_router,
            gateway_reloader,
            services_router,
            grace: config.shutdown_grace,
            limits,
            gateway_tls,
            ttl_sweep_interval: config.ttl_sweep_interval,
            tables,
            logs,
            data,
        })
    }

    /// The gateway's bound address (useful when asked for port 0).
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// `https` when the gateway serves TLS, else `http`.
    pub fn gateway_scheme(&self) -> &'static str {
        if self.gateway_tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The services endpoint's bound address.
    pub fn services_addr(&self) -> SocketAddr {
        self.services
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The handle that swaps the app the gateway serves (routes, authorizers, CORS).
    pub fn gateway_reloader(&self) -> nimbus_gateway::Reloader {
        self.gateway_reloader.clone()
    }

    /// The dispatcher, to reload functions whose code changed.
    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        Arc::clone(&self.dispatcher)
    }

    /// The async worker's settings, to apply a reloaded function's async policy,
    /// timeout and concurrency to the delivery of its queued events.
    pub fn async_settings(&self) -> nimbus_events::WorkerSettings {
        self.async_worker.settings()
    }

    /// The data directory the node holds.
    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    /// Serves until `stop` completes, then stops accepting connections and lets in-flight
    /// requests finish for up to the grace period.
    ///
    /// # Errors
    /// When a listener fails while serving.
    pub async fn run(self, stop: impl Future<Output = ()>) -> std::io::Result<Stopped> {
        let (tx, rx) = watch::channel(false);
        // Peers' addresses reach handlers (the gateway reports them as `sourceIp`).
        let limits = self.limits;
        let serve = |role, listener: TcpListener, router: axum::Router, tls: Option<Tls>| {
            tokio::spawn(crate::listener::serve(
                role,
                listener,
                router,
                limits,
                tls,
                rx.clone(),
            ))
        };
        tokio::spawn(sweep_ttl(
            Arc::clone(&self.tables),
            self.ttl_sweep_interval,
            rx.clone(),
        ));
        let mut async_worker = self.async_worker;
        async_worker.start();
        let scheduler = crate::schedules::start(self.schedules);
        let triggers = crate::triggers::start(self.triggers);
        let gateway = serve(
            "gateway",
            self.gateway,
            self.gateway_router,
            self.gateway_tls,
        );
        let services = serve("services", self.services, self.services_router, None);
        let both = async {
            let (g, s) = tokio::join!(gateway, services);
            for joined in [g, s] {
                joined.map_err(std::io::Error::other)??;
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::pin!(both);
        tokio::select! {
            result = &mut both => {
                // A server ended without being asked to: that is a failure.
                result?;
                return Err(std::io::Error::other("a listener stopped unexpectedly"));
            }
            () = stop => {}
        }
        tracing::info!(grace = ?self.grace, "stopping: no new connections, draining in-flight requests");
        let _ = tx.send(true);
        // Follows of function logs never end by themselves.
        if let Some(logs) = &self.logs {
            logs.close_followers();
        }
        // No new ticks once stopping; those already queued stay queued.
        crate::schedules::stop(scheduler).await;
        // Async invocations and trigger batches in flight get the same grace; those cut
        // off stay queued or are delivered again after the restart.
        let (stopped, (), ()) = tokio::join!(
            async {
                match tokio::time::timeout(self.grace, both).await {
                    Ok(result) => result.map(|()| Stopped::Drained),
                    Err(_) => Ok(Stopped::GraceExpired),
                }
            },
            async_worker.stop(self.grace),
            crate::triggers::stop(triggers, self.grace)
        );
        // In-flight invocations are done (or cut off): stop the instances.
        self.dispatcher.stop_all().await;
        if let Some(logs) = self.logs {
            // The instances' last lines are on disk before the process ends.
            let _ = tokio::task::spawn_blocking(move || logs.flush()).await;
        }
        stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_loopback_the_services_endpoint_needs_a_token() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = DataDir::open(dir.path()).expect("a data directory");
        let config = Config {
            services_listen: ([0, 0, 0, 0], 0).into(),
            metrics: false,
            log_retention: None,
            ..Config::default()
        };
        let e = Node::bind(config, None, data)
            .await
            .expect_err("an unprotected public services endpoint");
        assert!(matches!(e, BindError::ServicesUnprotected { .. }), "{e:?}");
        assert!(e.to_string().contains("--services-token-file"), "{e}");
    }

    #[test]
    fn functions_reach_a_services_endpoint_on_every_address_over_loopback() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("an address");
        assert_eq!(
            local_services_addr(at("0.0.0.0:4566")),
            at("127.0.0.1:4566")
        );
        assert_eq!(local_services_addr(at("[::]:4566")), at("[::1]:4566"));
        assert_eq!(
            local_services_addr(at("127.0.0.1:4566")),
            at("127.0.0.1:4566")
        );
        assert_eq!(
            local_services_addr(at("192.0.2.1:4566")),
            at("192.0.2.1:4566")
        );
    }
}
