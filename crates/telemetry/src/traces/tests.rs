use nimbus_core::trace::{SpanKind, SpanStart, TraceContext, Tracer as _, Value};
use opentelemetry::{
    Value as OtelValue,
    trace::{SpanId, Status, TraceId, TracerProvider as _},
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

use super::{TraceError, TraceSettings, Traces, bridge::Bridge};

/// Runs `f` with a bridge that records into memory, and returns the spans it ended.
fn recorded(f: impl FnOnce(&Bridge)) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    f(&Bridge(provider.tracer("test")));
    // The simple exporter has every ended span already (and a shutdown would clear it).
    let spans = exporter.get_finished_spans().unwrap();
    drop(Traces { provider });
    spans
}

fn start(name: &'static str, parent: Option<(TraceContext, bool)>) -> SpanStart {
    SpanStart {
        name: name.into(),
        kind: SpanKind::Internal,
        parent,
        attributes: Vec::new(),
        links: Vec::new(),
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_remote_parent_is_honoured_and_contexts_are_handed_on() {
    let incoming = TraceContext::from_traceparent(INCOMING).unwrap();
    let mut handed = None;
    let spans = recorded(|bridge| {
        let outer = bridge.start(start("outer", Some((incoming, true))));
        let outer_cx = outer.context().unwrap();
        let inner = bridge.start(start("inner", Some((outer_cx, false))));
        handed = inner.context();
    });
    assert_eq!(spans.len(), 2, "{spans:?}");
    let outer = spans.iter().find(|s| s.name == "outer").unwrap();
    let inner = spans.iter().find(|s| s.name == "inner").unwrap();
    assert_eq!(
        outer.span_context.trace_id(),
        TraceId::from_bytes(incoming.trace_id.to_be_bytes())
    );
    assert_eq!(
        outer.parent_span_id,
        SpanId::from_bytes(incoming.span_id.to_be_bytes())
    );
    assert!(outer.parent_span_is_remote);
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
    assert!(!inner.parent_span_is_remote);
    let handed = handed.expect("the inner span's context");
    assert_eq!(handed.trace_id, incoming.trace_id);
    assert_eq!(
        SpanId::from_bytes(handed.span_id.to_be_bytes()),
        inner.span_context.span_id()
    );
    assert!(handed.sampled);
}

#[test]
fn without_a_parent_a_trace_starts() {
    let spans = recorded(|bridge| {
        let span = bridge.start(start("root", None));
        assert!(span.context().unwrap().sampled);
    });
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
}

#[test]
fn kind_attributes_and_errors_are_recorded() {
    let spans = recorded(|bridge| {
        let mut span = bridge.start(SpanStart {
            kind: SpanKind::Server,
            attributes: vec![
                ("http.route", Value::from("/users")),
                ("faas.invoked_name", Value::from("register".to_owned())),
            ],
            ..start("POST /users", None)
        });
        assert!(span.is_recording());
        span.set_attribute("http.response.status_code", Value::Int(502));
        span.set_attribute("faas.coldstart", Value::Bool(true));
        span.set_attribute("faas.init_duration_ms", Value::Float(1.5));
        span.set_error();
    });
    let span = &spans[0];
    assert_eq!(span.name, "POST /users");
    assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Server);
    assert_eq!(attr(span, "http.route"), Some(&OtelValue::from("/users")));
    assert_eq!(
        attr(span, "faas.invoked_name"),
        Some(&OtelValue::from("register"))
    );
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&OtelValue::I64(502))
    );
    assert_eq!(attr(span, "faas.coldstart"), Some(&OtelValue::Bool(true)));
    assert_eq!(
        attr(span, "faas.init_duration_ms"),
        Some(&OtelValue::F64(1.5))
    );
    assert!(matches!(span.status, Status::Error { .. }));
}

#[test]
fn links_are_recorded() {
    let linked = TraceContext::from_xray(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    .unwrap();
    let spans = recorded(|bridge| {
        drop(bridge.start(SpanStart {
            links: vec![linked],
            ..start("batch", None)
        }));
    });
    let links = &spans[0].links.links;
    assert_eq!(links.len(), 1);
    assert_eq!(
        links[0].span_context.span_id(),
        SpanId::from_bytes(linked.span_id.to_be_bytes())
    );
}

#[test]
fn an_unsampled_caller_is_followed() {
    let unsampled = TraceContext::from_traceparent(&INCOMING.replace("-01", "-00")).unwrap();
    let spans = recorded(|bridge| {
        let span = bridge.start(start("request", Some((unsampled, true))));
        let cx = span.context().unwrap();
        assert!(!cx.sampled);
        assert_eq!(cx.trace_id, unsampled.trace_id);
        assert!(!span.is_recording());
    });
    assert!(spans.is_empty(), "{spans:?}");
}

#[test]
fn without_an_endpoint_nothing_starts() {
    // The test environment sets no OTEL_EXPORTER_OTLP_*ENDPOINT.
    assert!(Traces::start(&TraceSettings::default()).unwrap().is_none());
    assert!(!nimbus_core::trace::enabled());
}

#[test]
fn a_ratio_outside_zero_to_one_is_refused() {
    let settings = TraceSettings {
        endpoint: Some("http://127.0.0.1:4318".to_owned()),
        sample_ratio: Some(1.5),
    };
    assert!(matches!(
        Traces::start(&settings),
        Err(TraceError::BadRatio(_))
    ));
}
