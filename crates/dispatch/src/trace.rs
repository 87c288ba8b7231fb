//! The dispatcher's trace spans: `queue wait` when an invocation waits for capacity,
//! `init` when it starts an instance, and `function` around the function's run, whose
//! context the function receives as its trace header. They are children of the caller's
//! span (the gateway's, a services request's, a stream batch's); an invocation made
//! outside any span (an async event) gets a `dispatch` span of its own, continuing the
//! context the event carries, as their parent. Without a trace exporter the spans are
//! empty and cost nothing.

use nimbus_core::{
    InvokeOptions, Outcome,
    trace::{self, Span, SpanKind, TraceContext},
};

/// The span of one invocation, from admission to its report, for an invocation made
/// outside any trace span; none inside one, whose child the invocation's spans are
/// directly (a span of its own would add a third to every traced request's spans, and
/// a third to their cost, for no more information).
pub(crate) fn dispatch_span(function: &str, options: &InvokeOptions) -> Span {
    if !trace::enabled() || trace::current().is_some() {
        return Span::none();
    }
    // It continues the carried context (async events), or starts a trace.
    trace::span(format!("dispatch {function}"), SpanKind::Internal)
        .remote_parent(
            options
                .trace_id
                .as_deref()
                .and_then(TraceContext::from_xray),
        )
        .attr("faas.invoked_name", function.to_owned())
        .start()
}

/// The span of waiting for capacity at the concurrency limits.
pub(crate) fn queue_span() -> Span {
    trace::span("queue wait", SpanKind::Internal).start()
}

/// The span of starting an instance (a cold start).
pub(crate) fn init_span(function: &str) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    trace::span(format!("init {function}"), SpanKind::Internal)
        .attr("faas.invoked_name", function.to_owned())
        .start()
}

/// The span of the function's run.
pub(crate) fn execution_span(function: &str, request_id: &str, cold: bool) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    trace::span(function.to_owned(), SpanKind::Server)
        .attr("faas.invoked_name", function.to_owned())
        .attr("faas.invocation_id", request_id.to_owned())
        .attr("faas.coldstart", cold)
        .start()
}

/// The trace header the function receives: its run's span, so that the calls it makes
/// are that span's children; the caller's header as it came when nothing is traced.
pub(crate) fn header_for_function(execution: &Span, carried: Option<String>) -> Option<String> {
    execution.context().map(|cx| cx.xray()).or(carried)
}

/// Records how the run ended.
pub(crate) fn finish(execution: &mut Span, outcome: &Outcome, init: Option<std::time::Duration>) {
    if !execution.is_recording() {
        return;
    }
    if let Some(init) = init {
        execution.set("faas.init_duration_ms", init.as_secs_f64() * 1000.0);
    }
    if let Outcome::Error { error_type, .. } = outcome {
        execution.set("error.type", error_type.clone());
        execution.set_error();
    }
}
