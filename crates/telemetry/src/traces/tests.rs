use nimbus_core::trace::{SpanKind, SpanStart, TraceContext, Tracer as _, Value};
use std::time::Duration;

use opentelemetry::{
    Value as OtelValue,
    trace::{SpanId, Status, TraceId},
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

use super::{
    BATCHING, TraceError, TraceSettings, Traces,
    recorder::{Batching, Recorder, Root, Sampler, SpanTracer},
};

/// Runs `f` with a tracer that records into memory, and returns the spans it ended.
fn recorded(f: impl FnOnce(&SpanTracer)) -> Vec<SpanData> {
    recorded_with(Sampler::ParentBased(Root::AlwaysOn), BATCHING, f)
}

fn recorded_with(
    sampler: Sampler,
    batching: Batching,
    f: impl FnOnce(&SpanTracer),
) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let recorder = Recorder::start(exporter.clone(), sampler, batching).unwrap();
    f(&recorder.tracer());
    assert!(recorder.flush(Duration::from_secs(10)), "the flush ended");
    // Read before the shutdown, which clears the in-memory exporter.
    let spans = exporter.get_finished_spans().unwrap();
    assert!(recorder.shutdown(Duration::from_secs(10)));
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
    let spans = recorded(|tracer| {
        let outer = tracer.start(start("outer", Some((incoming, true))));
        let outer_cx = outer.context().unwrap();
        let inner = tracer.start(start("inner", Some((outer_cx, false))));
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
    let spans = recorded(|tracer| {
        let span = tracer.start(start("root", None));
        assert!(span.context().unwrap().sampled);
    });
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
}

#[test]
fn kind_attributes_and_errors_are_recorded() {
    let spans = recorded(|tracer| {
        let mut span = tracer.start(SpanStart {
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
    let spans = recorded(|tracer| {
        drop(tracer.start(SpanStart {
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
    let spans = recorded(|tracer| {
        let span = tracer.start(start("request", Some((unsampled, true))));
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

#[test]
fn samplers_decide_as_opentelemetrys_do() {
    let sampled = TraceContext::from_traceparent(INCOMING).unwrap();
    let unsampled = TraceContext::new(sampled.trace_id, sampled.span_id, false).unwrap();
    let count = |sampler: Sampler, parent: Option<TraceContext>| {
        recorded_with(sampler, BATCHING, |tracer| {
            for _ in 0..1000 {
                let span = tracer.start(start("s", parent.map(|cx| (cx, true))));
                // A span that is not recorded still hands on a context, with its
                // decision.
                let cx = span.context().unwrap();
                assert_eq!(cx.sampled, span.is_recording());
            }
        })
        .len()
    };
    assert_eq!(count(Sampler::AlwaysOff, None), 0);
    assert_eq!(count(Sampler::AlwaysOn, Some(unsampled)), 1000);
    assert_eq!(count(Sampler::ParentBased(Root::AlwaysOff), None), 0);
    assert_eq!(
        count(Sampler::ParentBased(Root::AlwaysOff), Some(sampled)),
        1000
    );
    assert_eq!(
        count(Sampler::ParentBased(Root::AlwaysOn), Some(unsampled)),
        0
    );
    // A ratio samples about its share of new traces...
    let quarter = count(Sampler::ParentBased(Root::Ratio(0.25)), None);
    assert!((150..=350).contains(&quarter), "{quarter} of 1000");
    // ...and decides by the trace id alone: all of one trace's spans, or none.
    let same = count(Sampler::Ratio(0.25), Some(sampled));
    assert!(same == 0 || same == 1000, "{same}");
    assert_eq!(count(Sampler::Ratio(0.0), None), 0);
    assert_eq!(count(Sampler::Ratio(1.0), None), 1000);
}

#[test]
fn samplers_are_read_from_the_environment_variables() {
    let parse = |name: Option<&str>, arg: Option<&str>| Sampler::from_env(name, arg);
    assert_eq!(parse(None, None), Sampler::ParentBased(Root::AlwaysOn));
    assert_eq!(parse(Some("always_on"), None), Sampler::AlwaysOn);
    assert_eq!(parse(Some("always_off"), None), Sampler::AlwaysOff);
    assert_eq!(
        parse(Some("traceidratio"), Some("0.1")),
        Sampler::Ratio(0.1)
    );
    assert_eq!(
        parse(Some("parentbased_traceidratio"), Some(" 0.5 ")),
        Sampler::ParentBased(Root::Ratio(0.5))
    );
    assert_eq!(
        parse(Some("parentbased_always_off"), None),
        Sampler::ParentBased(Root::AlwaysOff)
    );
    // A bad ratio samples everything; an unknown sampler is the default.
    assert_eq!(parse(Some("traceidratio"), Some("2")), Sampler::Ratio(1.0));
    assert_eq!(parse(Some("traceidratio"), None), Sampler::Ratio(1.0));
    assert_eq!(
        parse(Some("xray"), None),
        Sampler::ParentBased(Root::AlwaysOn)
    );
}

#[test]
fn batching_is_read_from_the_environment_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert_eq!(BATCHING.with_env(vars(&[])), BATCHING);
    let read = BATCHING.with_env(vars(&[
        ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000"),
    ]));
    assert_eq!(
        read,
        Batching {
            delay: Duration::from_millis(250),
            max_queue: 100,
            // Never more than the queue holds.
            max_batch: 100,
        }
    );
    let unreadable = BATCHING.with_env(vars(&[
        ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
    ]));
    assert_eq!(unreadable, BATCHING);
}

#[test]
fn a_full_batch_is_exported_without_waiting_for_the_delay() {
    let exporter = InMemorySpanExporter::default();
    let batching = Batching {
        delay: Duration::from_secs(3600),
        max_queue: 100,
        max_batch: 4,
    };
    let recorder = Recorder::start(
        exporter.clone(),
        Sampler::ParentBased(Root::AlwaysOn),
        batching,
    )
    .unwrap();
    let tracer = recorder.tracer();
    for _ in 0..3 {
        drop(tracer.start(start("s", None)));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        exporter.get_finished_spans().unwrap().is_empty(),
        "three spans wait for a fourth or the delay"
    );
    drop(tracer.start(start("s", None)));
    let waited = std::time::Instant::now();
    while exporter.get_finished_spans().unwrap().len() < 4 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the batch went out"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(recorder.shutdown(Duration::from_secs(10)));
}

#[test]
fn a_full_queue_drops_new_spans_and_keeps_the_rest() {
    let batching = Batching {
        delay: Duration::from_secs(3600),
        max_queue: 2,
        max_batch: 10,
    };
    let spans = recorded_with(Sampler::AlwaysOn, batching, |tracer| {
        for name in ["first", "second", "third", "fourth"] {
            drop(tracer.start(start(name, None)));
        }
    });
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["first", "second"]);
}

#[test]
fn an_attribute_set_again_takes_the_new_value() {
    let spans = recorded(|tracer| {
        let mut span = tracer.start(SpanStart {
            attributes: vec![("http.response.status_code", Value::Int(200))],
            ..start("s", None)
        });
        span.set_attribute("http.response.status_code", Value::Int(500));
    });
    assert_eq!(spans[0].attributes.len(), 1);
    assert_eq!(
        attr(&spans[0], "http.response.status_code"),
        Some(&OtelValue::I64(500))
    );
}
