//! The public HTTP entry point of Nimbus.
//!
//! `nimbus-gateway` owns the app's routes: it matches each request to the most specific
//! route (`METHOD /path/{param}`, `ANY`, greedy `{proxy+}`, `$default`) and answers it. It
//! knows nothing of runtimes: once a request is matched it is handed to the function's
//! invoker; until the runtimes exist, a matched route answers `501 Not Implemented` naming
//! what is missing, so a declared route is never silently dropped.
//!
//! ```
//! use nimbus_core::AppSpec;
//! use nimbus_gateway::RouteTable;
//!
//! let table = RouteTable::new(&AppSpec::named("empty").routes).unwrap();
//! assert!(table.find("GET", "/anything").is_none());
//! ```

mod health;
mod routes;
mod service;

pub use health::Health;
pub use routes::{Match, RouteTable, RouteTableError};
pub use service::router;
