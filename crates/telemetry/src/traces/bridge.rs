//! The [`nimbus_core::trace::Tracer`] that records the parts' spans as OpenTelemetry
//! spans, straight through the SDK's tracer.

use nimbus_core::trace::{Recording, SpanKind, SpanStart, TraceContext, Value};
use opentelemetry::{
    Context, KeyValue, StringValue,
    trace::{
        Link, Span as _, SpanBuilder, SpanContext, SpanId, Status, TraceContextExt, TraceFlags,
        TraceId, TraceState, Tracer as _,
    },
};
use opentelemetry_sdk::trace::{SdkTracer, Span};

/// Records spans with the SDK's tracer.
pub(crate) struct Bridge(pub(crate) SdkTracer);

/// The OpenTelemetry form of a context.
pub(crate) fn otel(cx: TraceContext, remote: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(cx.trace_id.to_be_bytes()),
        SpanId::from_bytes(cx.span_id.to_be_bytes()),
        if cx.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        remote,
        TraceState::default(),
    )
}

fn value(value: Value) -> opentelemetry::Value {
    match value {
        Value::Str(s) => opentelemetry::Value::String(StringValue::from(s)),
        Value::Int(n) => opentelemetry::Value::I64(n),
        Value::Float(n) => opentelemetry::Value::F64(n),
        Value::Bool(b) => opentelemetry::Value::Bool(b),
    }
}

impl nimbus_core::trace::Tracer for Bridge {
    fn start(&self, span: SpanStart) -> Box<dyn Recording> {
        let parent = span.parent.map_or_else(Context::new, |(cx, remote)| {
            Context::new().with_remote_span_context(otel(cx, remote))
        });
        let mut builder = SpanBuilder::from_name(span.name)
            .with_kind(match span.kind {
                SpanKind::Internal => opentelemetry::trace::SpanKind::Internal,
                SpanKind::Server => opentelemetry::trace::SpanKind::Server,
                SpanKind::Consumer => opentelemetry::trace::SpanKind::Consumer,
            })
            .with_attributes(
                span.attributes
                    .into_iter()
                    .map(|(key, v)| KeyValue::new(key, value(v))),
            );
        if !span.links.is_empty() {
            builder = builder.with_links(
                span.links
                    .into_iter()
                    .map(|cx| Link::with_context(otel(cx, true)))
                    .collect(),
            );
        }
        Box::new(Recorded(self.0.build_with_context(builder, &parent)))
    }
}

/// A started SDK span; the SDK ends it when it is dropped.
struct Recorded(Span);

impl Recording for Recorded {
    fn context(&self) -> Option<TraceContext> {
        // Valid for every span the SDK starts, recorded or not, until the provider is
        // shut down.
        let sc = self.0.span_context();
        TraceContext::new(
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
            sc.is_sampled(),
        )
    }

    fn is_recording(&self) -> bool {
        self.0.is_recording()
    }

    fn set_attribute(&mut self, key: &'static str, v: Value) {
        self.0.set_attribute(KeyValue::new(key, value(v)));
    }

    fn set_error(&mut self) {
        self.0.set_status(Status::error(""));
    }
}
