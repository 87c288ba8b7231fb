use nimbus_core::trace::{TARGET, TraceContext, Tracer as _};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::{Layer, layer::SubscriberExt};

use super::{TraceError, TraceSettings, Traces, bridge::Bridge};

/// Runs `f` under a subscriber that records trace spans into memory, and returns them.
fn recorded(f: impl FnOnce()) -> Vec<opentelemetry_sdk::trace::SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let traces = Traces {
        tracer: provider.tracer("test"),
        provider,
    };
    // The other layer stands for the node's log, which sees every span.
    let subscriber = tracing_subscriber::registry().with(traces.layer()).with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    );
    tracing::subscriber::with_default(subscriber, f);
    // The simple exporter has every ended span already (and a shutdown would clear it).
    let spans = exporter.get_finished_spans().unwrap();
    drop(traces);
    spans
}

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_remote_parent_is_honoured_and_contexts_are_handed_on() {
    let mut inner_cx = None;
    let spans = recorded(|| {
        let outer = tracing::info_span!(target: TARGET, "outer");
        Bridge.set_parent(&outer, TraceContext::from_traceparent(INCOMING).unwrap());
        outer.in_scope(|| {
            // A span of another target in between: contexts come from the nearest
            // trace span.
            let log_span = tracing::info_span!("not traced");
            log_span.in_scope(|| {
                let inner = tracing::info_span!(target: TARGET, "inner");
                inner.in_scope(|| {
                    let here = tracing::info_span!("also not traced");
                    inner_cx = here.in_scope(|| Bridge.context(&tracing::Span::current()));
                });
            });
        });
    });
    assert_eq!(spans.len(), 2, "only trace spans are recorded: {spans:?}");
    let outer = spans.iter().find(|s| s.name == "outer").unwrap();
    let inner = spans.iter().find(|s| s.name == "inner").unwrap();
    let incoming = TraceContext::from_traceparent(INCOMING).unwrap();
    assert_eq!(
        outer.span_context.trace_id(),
        TraceId::from_bytes(incoming.trace_id.to_be_bytes())
    );
    assert_eq!(
        outer.parent_span_id,
        SpanId::from_bytes(incoming.span_id.to_be_bytes())
    );
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
    let handed = inner_cx.expect("the inner span's context");
    assert_eq!(handed.trace_id, incoming.trace_id);
    assert_eq!(
        SpanId::from_bytes(handed.span_id.to_be_bytes()),
        inner.span_context.span_id()
    );
    assert!(handed.sampled);
}

#[test]
fn links_are_recorded() {
    let linked = TraceContext::from_xray(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    .unwrap();
    let spans = recorded(|| {
        let span = tracing::info_span!(target: TARGET, "batch");
        Bridge.add_link(&span, linked);
        span.in_scope(|| {});
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
    let spans = recorded(|| {
        let span = tracing::info_span!(target: TARGET, "request");
        Bridge.set_parent(
            &span,
            TraceContext::from_traceparent(&INCOMING.replace("-01", "-00")).unwrap(),
        );
        let cx = Bridge.context(&span).unwrap();
        assert!(!cx.sampled);
        span.in_scope(|| {});
    });
    assert!(spans.is_empty(), "{spans:?}");
}

#[test]
fn outside_a_trace_span_there_is_no_context() {
    recorded(|| {
        assert_eq!(Bridge.context(&tracing::Span::current()), None);
        let other = tracing::info_span!("log only");
        assert_eq!(Bridge.context(&other), None);
    });
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
