//! The composition root of Nimbus.
//!
//! `nimbus-server` builds a running node from an app ([`nimbus_core::AppSpec`]) and a
//! [`Config`]: it takes the data directory ([`DataDir`]), binds the gateway and services
//! listeners, and serves both until told to stop, then drains in-flight requests within a
//! grace period. Each later part (tables, dispatcher, events, telemetry) is plugged in
//! here; the parts themselves live in their own crates.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use nimbus_server::{Config, DataDir, Node};
//!
//! let data = DataDir::open("/tmp/nimbus-demo".as_ref())?;
//! let node = Node::bind(Config::default(), None, data).await?;
//! println!("gateway on {}", node.gateway_addr());
//! node.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod access;
mod admin;
mod config;
mod data_dir;
mod lambda;
mod lambda_stream;
mod listener;
mod logs_api;
mod metrics_api;
mod node;
mod schedules;
mod services;
mod trace;
mod triggers;

pub use access::{MAX_TOKEN_LEN, MIN_TOKEN_LEN, ServicesToken, TokenError};
pub use config::Config;
pub use data_dir::{DataDir, DataDirError};
pub use nimbus_dispatch::DispatchConfig;
pub use node::{BindError, Node, Stopped};
