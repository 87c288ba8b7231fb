//! The dispatcher's trace spans: `queue wait` when an invocation waits for capacity,
//! `init` when it starts an instance, and `function` around the function's run, whose
//! context the function receives as its trace header. They are children of the caller's
//! span (the gateway's, a services request's, a stream batch's); an invocation made
//! outside any span (an async event) gets a `dispatch` span of its own, continuing the
//! context the event carries, as their parent. Without a trace exporter the spans are
//! disabled and cost nothing.

use nimbus_core::{
    InvokeOptions, Outcome,
    trace::{self, TARGET, TraceContext},
};
use tracing::field::Empty;

/// The span of one invocation, from admission to its report, for an invocation made
/// outside any trace span; none inside one, whose child the invocation's spans are
/// directly (a span of its own would add a third to every traced request's spans, and
/// a third to their cost, for no more information).
pub(crate) fn dispatch_span(function: &str, options: &InvokeOptions) -> tracing::Span {
    if !trace::enabled() || trace::current().is_some() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "dispatch",
        otel.name = format!("dispatch {function}"),
        faas.invoked_name = function,
    );
    // It continues the carried context (async events), or starts a trace.
    if !span.is_disabled()
        && let Some(parent) = options
            .trace_id
            .as_deref()
            .and_then(TraceContext::from_xray)
    {
        trace::set_parent(&span, parent);
    }
    span
}

/// The span of waiting for capacity at the concurrency limits.
pub(crate) fn queue_span() -> tracing::Span {
    tracing::info_span!(target: TARGET, "queue wait")
}

/// The span of starting an instance (a cold start).
pub(crate) fn init_span(function: &str) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "init",
        otel.name = format!("init {function}"),
        faas.invoked_name = function,
    )
}

/// The span of the function's run.
pub(crate) fn execution_span(function: &str, request_id: &str, cold: bool) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "function",
        otel.name = function,
        otel.kind = "server",
        otel.status_code = Empty,
        faas.invoked_name = function,
        faas.invocation_id = request_id,
        faas.coldstart = cold,
        faas.init_duration_ms = Empty,
        error.type = Empty,
    )
}

/// The trace header the function receives: its run's span, so that the calls it makes
/// are that span's children; the caller's header as it came when nothing is traced.
pub(crate) fn header_for_function(
    execution: &tracing::Span,
    carried: Option<String>,
) -> Option<String> {
    trace::context(execution).map(|cx| cx.xray()).or(carried)
}

/// Records how the run ended.
pub(crate) fn finish(
    execution: &tracing::Span,
    outcome: &Outcome,
    init: Option<std::time::Duration>,
) {
    if execution.is_disabled() {
        return;
    }
    if let Some(init) = init {
        execution.record("faas.init_duration_ms", init.as_secs_f64() * 1000.0);
    }
    if let Outcome::Error { error_type, .. } = outcome {
        execution.record("error.type", error_type.as_str());
        execution.record("otel.status_code", "ERROR");
    }
}
