//! The public HTTP entry point of Nimbus.
//!
//! `nimbus-gateway` owns the app's routes: it matches each request to the most specific
//! route (`METHOD /path/{param}`, `ANY`, greedy `{proxy+}`, `$default`), turns the
//! request into an API Gateway event (payload 2.0, or 1.0 where the route asks), hands it
//! to an [`nimbus_core::Invoke`], and turns the function's result into the HTTP response
//! by API Gateway's rules. A wasm function serves HTTP itself: it gets the request as it
//! came ([`nimbus_core::InvokeOptions::request`]) and its response is passed on as it is
//! ([`nimbus_core::Outcome::Http`]). That is all the gateway knows of runtimes.
//!
//! ```
//! use nimbus_core::AppSpec;
//! use nimbus_gateway::RouteTable;
//!
//! let table = RouteTable::new(&AppSpec::named("empty").routes).unwrap();
//! assert!(table.find("GET", "/anything").is_none());
//! ```

mod cors;
mod event;
mod health;
mod jwt;
mod reply;
mod route_metrics;
mod routes;
mod security;
mod service;
mod stream;
mod trace;

#[doc(hidden)]
pub use event::{Entrance, fuzzing};
pub use health::Health;
pub use routes::{Match, RouteTable, RouteTableError};
pub use security::SecurityError;
pub use service::{GatewayError, Reloader, router};
