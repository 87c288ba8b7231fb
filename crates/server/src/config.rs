//! How a node is configured.

use std::{net::SocketAddr, time::Duration};

/// Where a node listens and how it stops.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway: the app's routes.
    pub listen: SocketAddr,
    /// The services endpoint: AWS-compatible APIs, admin API, `/healthz`. Beyond
    /// loopback it needs [`services_token`](Self::services_token), and serves the AWS APIs
    /// to peers on this host only.
    pub services_listen: SocketAddr,
    /// How long in-flight requests may take to finish after a stop is asked for.
    pub shutdown_grace: Duration,
    /// How often expired items (TTL) are looked for and deleted.
    pub ttl_sweep_interval: Duration,
    /// A PostgreSQL URL for the tables; `None` keeps them in the data directory (redb).
    pub postgres: Option<String>,
    /// How functions scale.
    pub dispatch: nimbus_dispatch::DispatchConfig,
    /// The AWS SDK for Python offered to Python functions (see `nimbus up`), if any.
    pub python_sdk: Option<std::path::PathBuf>,
    /// The `node_modules` of the AWS SDK for JavaScript v3 offered to Node.js functions
    /// (see `nimbus up`), if any.
    pub node_sdk: Option<std::path::PathBuf>,
    /// Most connections each listener serves at once. Beyond it a listener stops
    /// accepting: new connections wait in the operating system's accept backlog until one
    /// closes. Values under 1 count as 1.
    pub max_connections: usize,
    /// How long a client may take to send a request's line and headers: counted from the
    /// connection's accept (TLS handshake included) for its first request, and from the
    /// first byte of each later HTTP/1 request. A client that is not done by then is
    /// disconnected without a response.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body, counted from the end of its
    /// headers; past it the request is refused (the gateway answers 408) and the
    /// HTTP/1 connection closed.
    pub body_read_timeout: Duration,
    /// How long a connection with no request in flight is kept open for the next one
    /// before the server closes it (HTTP/2: sends GOAWAY).
    pub keep_alive_timeout: Duration,
    /// The largest request line and headers, in bytes, counted as HTTP/1.1 sends them (one
    /// `name: value` line per header); a larger request gets 431 without reaching the app.
    pub max_header_bytes: usize,
    /// A PEM certificate chain: with [`tls_key`](Self::tls_key), the gateway serves HTTPS.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of [`tls_cert`](Self::tls_cert).
    pub tls_key: Option<std::path::PathBuf>,
    /// The pace of async retries: a function error is retried 60 times this per attempt
    /// made (Lambda's minute, then two, by default); an invocation that did not run
    /// (throttled) after a random delay up to this, doubling up to 5 minutes.
    pub async_retry_base: Duration,
    /// How much of each function's log the node keeps in `DATA/logs` (`nimbus logs`);
    /// `None` keeps none (the store is off).
    pub log_retention: Option<nimbus_telemetry::logs::Retention>,
    /// Whether the node records metrics and serves them on `GET /metrics`.
    pub metrics: bool,
    /// The token the services endpoint's admin API and `/metrics` require
    /// (`Authorization: Bearer`). Required when `services_listen` is not a loopback
    /// address.
    pub services_token: Option<crate::ServicesToken>,
}

impl Config {
    /// The gateway's default address.
    pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
    /// The services endpoint's default address.
    pub const DEFAULT_SERVICES_LISTEN: &str = "127.0.0.1:4566";
    /// The default grace period, well under the 5 s a supervisor usually waits before
    /// SIGKILL.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
    /// The default TTL sweep interval: expired items are gone within about this long.
    pub const DEFAULT_TTL_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
    /// The default cap on connections per listener.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// The default header read timeout, hyper's own and nginx's order of magnitude.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default body read timeout: 10 MB at about 1.5 Mbit/s.
    pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default keep-alive idle timeout (nginx's `keepalive_timeout`).
    pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(75);
    /// The default header size limit: API Gateway's quota for HTTP APIs, "total combined
    /// size of request line and header values", 10240 bytes.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 10_240;
    /// The default bound on the first async retry's delay.
    pub const DEFAULT_ASYNC_RETRY_BASE: Duration = Duration::from_secs(1);
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            services_listen: SocketAddr::from(([127, 0, 0, 1], 4566)),
            shutdown_grace: Self::DEFAULT_SHUTDOWN_GRACE,
            ttl_sweep_interval: Self::DEFAULT_TTL_SWEEP_INTERVAL,
            postgres: None,
            dispatch: nimbus_dispatch::DispatchConfig::default(),
            python_sdk: None,
            node_sdk: None,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: Self::DEFAULT_BODY_READ_TIMEOUT,
            keep_alive_timeout: Self::DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES,
            tls_cert: None,
            tls_key: None,
            async_retry_base: Self::DEFAULT_ASYNC_RETRY_BASE,
            log_retention: Some(nimbus_telemetry::logs::Retention::default()),
            metrics: true,
            services_token: None,
        }
    }
}
