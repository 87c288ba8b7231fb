//! The gateway request's trace span: the root of a request's trace, or a child of the
//! caller's when the request carries a W3C `traceparent` (or an X-Ray
//! `X-Amzn-Trace-Id`). Without a trace exporter the span is empty and costs nothing.

use axum::http::{HeaderMap, Method, StatusCode};
use std::borrow::Cow;

use nimbus_core::trace::{self, Span, SpanKind, TraceContext, Value};

use crate::Match;

/// The trace context the request carries, if any.
pub(crate) fn incoming(headers: &HeaderMap) -> Option<TraceContext> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceContext::from_headers(header("traceparent"), header("x-amzn-trace-id"))
}

/// The request's span, a child of `parent` when the caller sent one, named after the
/// route the request matched (`POST /users`), as HTTP server spans are.
pub(crate) fn request_span(
    method: &Method,
    path: &str,
    found: Option<&Match<'_>>,
    request_id: &str,
    parent: Option<TraceContext>,
) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let key = found.map(|found| &**found.key);
    let route = key.map(|key| key.split_once(' ').map_or(key, |(_, p)| p).to_owned());
    // A standard method's name is static; only another method's is copied.
    let method: Cow<'static, str> = match crate::route_metrics::method_label(method) {
        "OTHER" => Cow::Owned(method.as_str().to_owned()),
        standard => Cow::Borrowed(standard),
    };
    let name = key.map_or_else(|| method.clone(), |key| Cow::Owned(key.to_owned()));
    let mut span = trace::span(name, SpanKind::Server)
        .remote_parent(parent)
        .attr("http.request.method", Value::Str(method))
        .attr("url.path", path.to_owned())
        .attr("nimbus.request_id", request_id.to_owned());
    if let Some(route) = route {
        span = span.attr("http.route", route);
    }
    span.start()
}

/// Records what the request came to: its function and status.
pub(crate) fn finish(span: &mut Span, function: Option<&str>, status: StatusCode) {
    if !span.is_recording() {
        return;
    }
    if let Some(function) = function {
        span.set("faas.invoked_name", function.to_owned());
    }
    span.set("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_error();
    }
}
