//! The trace span of a trigger's batch: a child of the request that made the batch's
//! first change (its context travels in the stream record), linked to those that made
//! the others, so that the function's run joins the writer's trace.

use std::collections::HashSet;

use nimbus_core::trace::{self, TARGET, TraceContext};

use super::Change;

/// The span a batch of `records` is delivered to `function` in.
pub(super) fn batch_span(function: &str, records: &[Change]) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "stream batch",
        otel.name = format!("process {function}"),
        otel.kind = "consumer",
        faas.trigger = "datasource",
        faas.invoked_name = function,
        messaging.batch.message_count = records.len(),
    );
    if span.is_disabled() {
        return span;
    }
    let mut seen = HashSet::new();
    let mut contexts = records
        .iter()
        .filter_map(|c| c.trace.as_deref().and_then(TraceContext::from_traceparent))
        .filter(|cx| seen.insert(*cx));
    if let Some(first) = contexts.next() {
        trace::set_parent(&span, first);
    }
    for other in contexts {
        trace::add_link(&span, other);
    }
    span
}
