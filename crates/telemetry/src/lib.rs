//! Nimbus telemetry: what a user reads to learn what a request did, why it was slow and
//! what is failing now.
//!
//! - [`logs`]: every function's log lines, kept per function in the data directory with
//!   bounded size and age, queried by time, request id and text, and followed live.
//! - [`metrics`]: the Prometheus metrics the node exposes on `/metrics`.
//! - [`traces`]: OpenTelemetry traces exported over OTLP/HTTP.
//! - [`spool`]: how lines reach the threads that write them, the node's log's and the
//!   log store's.

pub mod logs;
pub mod metrics;
pub mod spool;
pub mod traces;
