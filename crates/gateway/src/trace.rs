//! The gateway request's trace span: the root of a request's trace, or a child of the
//! caller's when the request carries a W3C `traceparent` (or an X-Ray
//! `X-Amzn-Trace-Id`). Without a trace exporter the span is disabled and costs nothing.

use axum::http::{HeaderMap, Method, StatusCode};
use nimbus_core::trace::{self, TARGET, TraceContext};
use tracing::field::Empty;

use crate::Match;

/// The trace context the request carries, if any.
pub(crate) fn incoming(headers: &HeaderMap) -> Option<TraceContext> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceContext::from_headers(header("traceparent"), header("x-amzn-trace-id"))
}

/// The request's span, a child of `parent` when the caller sent one.
pub(crate) fn request_span(
    method: &Method,
    path: &str,
    request_id: &str,
    parent: Option<TraceContext>,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "gateway request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        url.path = path,
        http.route = Empty,
        http.response.status_code = Empty,
        faas.invoked_name = Empty,
        nimbus.request_id = request_id,
    );
    if let Some(parent) = parent {
        trace::set_parent(&span, parent);
    }
    span
}

/// Names the span after the route the request matches (`POST /users`), as HTTP server
/// spans are named; called before the span starts, while its name can still change.
pub(crate) fn name(span: &tracing::Span, found: Option<&Match<'_>>) {
    if span.is_disabled() {
        return;
    }
    if let Some(found) = found {
        let key = found.route.key.to_string();
        span.record(
            "http.route",
            key.split_once(' ').map_or(key.as_str(), |(_, p)| p),
        );
        span.record("otel.name", key);
    }
}

/// Records what the request came to: its function and status.
pub(crate) fn finish(span: &tracing::Span, function: Option<&str>, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    if let Some(function) = function {
        span.record("faas.invoked_name", function);
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
