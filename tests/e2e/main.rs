//! End-to-end tests: the real `nimbus` binary, started on free ports and driven the way a
//! user drives it.

// The harness is a module of this test binary; `pub` marks what tests may use. In test
// code a panic is how a failure is reported, so unwrapping is the point.
#![allow(unreachable_pub, clippy::unwrap_used)]

mod harness;

mod async_invoke;
mod cli;
mod dynamodb;
mod functions;
mod gateway;
mod lifecycle;
mod limits;
mod logs;
mod metrics;
mod schedules;
mod security;
mod seed;
mod services_access;
mod stream_triggers;
mod streams;
mod todo_wasm;
mod traces;
mod wasm;
