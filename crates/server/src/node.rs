//! A running node: both listeners, served until a stop is asked for.

use std::{future::Future, net::SocketAddr, time::Duration};

use nimbus_core::AppSpec;
use nimbus_gateway::Health;
use tokio::{net::TcpListener, sync::watch};

use crate::{Config, DataDir};

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
    /// The app's routes cannot be served.
    #[error(transparent)]
    Routes(#[from] nimbus_gateway::RouteTableError),
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
    services_router: axum::Router,
    grace: Duration,
    data: DataDir,
}

async fn listen(role: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Listen { role, addr, source })
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
        let health = Health {
            app: app.as_ref().map(|a| a.name.clone()),
            version: env!("CARGO_PKG_VERSION"),
        };
        let gateway_router = nimbus_gateway::router(app, health.clone())?;
        let services_router = crate::services::router(health);
        let gateway = listen("gateway", config.listen).await?;
        let services = listen("services", config.services_listen).await?;
        Ok(Node {
            gateway,
            services,
            gateway_router,
            services_router,
            grace: config.shutdown_grace,
            data,
        })
    }

    /// The gateway's bound address (useful when asked for port 0).
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The services endpoint's bound address.
    pub fn services_addr(&self) -> SocketAddr {
        self.services
            .local_addr()
            .expect("a bound TCP listener has a local address")
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
        let serve = |listener: TcpListener, router: axum::Router| {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await
            })
        };
        let gateway = serve(self.gateway, self.gateway_router);
        let services = serve(self.services, self.services_router);
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
        match tokio::time::timeout(self.grace, both).await {
            Ok(result) => result.map(|()| Stopped::Drained),
            Err(_) => Ok(Stopped::GraceExpired),
        }
    }
}
