//! The [`nimbus_core::trace::Tracer`] that connects the parts' `tracing` spans to their
//! OpenTelemetry spans, through `tracing-opentelemetry`.

use nimbus_core::trace::{TARGET, TraceContext};
use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Registry, registry::LookupSpan};

pub(crate) struct Bridge;

/// The OpenTelemetry form of a context received from elsewhere.
pub(crate) fn remote(cx: TraceContext) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(cx.trace_id.to_be_bytes()),
        SpanId::from_bytes(cx.span_id.to_be_bytes()),
        if cx.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    )
}

/// Nimbus's form of an OpenTelemetry span context; `None` when it is not valid.
pub(crate) fn local(sc: &SpanContext) -> Option<TraceContext> {
    if !sc.is_valid() {
        return None;
    }
    TraceContext::new(
        u128::from_be_bytes(sc.trace_id().to_bytes()),
        u64::from_be_bytes(sc.span_id().to_bytes()),
        sc.is_sampled(),
    )
}

impl nimbus_core::trace::Tracer for Bridge {
    fn set_parent(&self, span: &tracing::Span, parent: TraceContext) {
        // Fails only for a span nothing records (sampled out by level) or one already
        // started, where there is nothing left to do.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote(parent)));
    }

    fn add_link(&self, span: &tracing::Span, linked: TraceContext) {
        span.add_link(remote(linked));
    }

    fn context(&self, span: &tracing::Span) -> Option<TraceContext> {
        // The span may be another part's (a log span, say) inside a trace span: the
        // nearest trace span up its scope is the one whose context is handed on.
        span.with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let traced = registry
                .span(id)?
                .scope()
                .find(|s| s.metadata().target() == TARGET)
                .map(|s| s.id())?;
            let cx = tracing_opentelemetry::get_otel_context(&traced, dispatch)?;
            local(cx.span().span_context())
        })
        .flatten()
    }
}
