//! How a node is configured.

use std::{net::SocketAddr, time::Duration};

/// Where a node listens and how it stops.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway: the app's routes.
    pub listen: SocketAddr,
    /// The services endpoint: AWS-compatible APIs, admin API, `/healthz`.
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
        }
    }
}
