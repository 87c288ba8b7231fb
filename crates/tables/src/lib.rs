//! A DynamoDB-compatible table store.
//!
//! `nimbus-tables` owns DynamoDB's data model ([`value`]), its expression language
//! ([`expr`]), the engines that store tables ([`engine`]), and the JSON 1.0 API on top of
//! them ([`api`]). It does not own HTTP listeners: the server mounts [`api`]'s handler on
//! the services endpoint.

pub mod api;
pub mod engine;
pub mod error;
pub mod expr;
pub mod http;
pub mod key;
mod op_metrics;
pub use op_metrics::operation_label;
pub mod schema;
pub mod value;
