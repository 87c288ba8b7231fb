//! The trace span of a trigger's batch: a child of the request that made the batch's
//! first change (its context travels in the stream record), linked to those that made
//! the others, so that the function's run joins the writer's trace.

use std::collections::HashSet;

use nimbus_core::trace::{self, Span, SpanKind, TraceContext};

use super::Change;

/// The span a batch of `records` is delivered to `function` in.
pub(super) fn batch_span(function: &str, records: &[Change]) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let mut seen = HashSet::new();
    let mut contexts = records
        .iter()
        .filter_map(|c| c.trace.as_deref().and_then(TraceContext::from_traceparent))
        .filter(|cx| seen.insert(*cx));
    let mut span = trace::span(format!("process {function}"), SpanKind::Consumer)
        .remote_parent(contexts.next())
        .attr("faas.trigger", "datasource")
        .attr("faas.invoked_name", function.to_owned())
        .attr(
            "messaging.batch.message_count",
            i64::try_from(records.len()).unwrap_or(i64::MAX),
        );
    for other in contexts {
        span = span.link(other);
    }
    span.start()
}
