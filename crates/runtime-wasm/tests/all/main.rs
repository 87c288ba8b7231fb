//! Integration tests of the wasm runtime, driving the `Runtime` trait directly with a
//! probe component (`tests/guests/probe`) built for wasm32-wasip2 at test time.

mod support;

mod http;
mod isolation;
mod lifecycle;
mod limits;
