use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use nimbus_core::trace::{SpanKind, SpanStart, TraceContext, Tracer as _, Value};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::any_value::Value as Any,
    trace::v1::{Span, span::SpanKind as ProtoKind, status::StatusCode},
};
use prost::Message as _;

use super::{
    BATCHING, TraceError, TraceSettings, Traces,
    otlp::{Sink, Target},
    recorder::{Batching, Recorder, Root, Sampler, SpanTracer},
};

/// A sink that keeps the export requests it is sent.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<Vec<u8>>>>);

impl Sink for Kept {
    fn send(&self, body: Vec<u8>) -> Result<(), String> {
        self.0.lock().unwrap().push(body);
        Ok(())
    }
}

impl Kept {
    /// The requests, decoded as a collector decodes them.
    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|body| ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf"))
            .collect()
    }

    fn spans(&self) -> Vec<Span> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }
}

const RESOURCE: &[(&str, &str)] = &[("service.name", "test")];

fn resource() -> Vec<(String, String)> {
    RESOURCE
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs `f` with a tracer that records into memory, and returns the spans it ended.
fn recorded(f: impl FnOnce(&SpanTracer)) -> Vec<Span> {
    recorded_with(Sampler::ParentBased(Root::AlwaysOn), BATCHING, f)
}

fn recorded_with(sampler: Sampler, batching: Batching, f: impl FnOnce(&SpanTracer)) -> Vec<Span> {
    let kept = Kept::default();
    let recorder = Recorder::start(kept.clone(), &resource(), sampler, batching).unwrap();
    f(&recorder.tracer());
    assert!(recorder.flush(Duration::from_secs(10)), "the flush ended");
    assert!(recorder.shutdown(Duration::from_secs(10)));
    kept.spans()
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

fn attr(span: &Span, key: &str) -> Option<Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

fn str_value(s: &str) -> Option<Any> {
    Some(Any::StringValue(s.to_owned()))
}

/// Whether the span's parent is another process's, as `Span.flags` says.
fn parent_is_remote(span: &Span) -> bool {
    assert_ne!(
        span.flags & 0x100,
        0,
        "the flags say whether the parent is remote"
    );
    span.flags & 0x200 != 0
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
    assert_eq!(outer.trace_id, incoming.trace_id.to_be_bytes());
    assert_eq!(inner.trace_id, incoming.trace_id.to_be_bytes());
    assert_eq!(outer.parent_span_id, incoming.span_id.to_be_bytes());
    assert!(parent_is_remote(outer));
    assert_eq!(inner.parent_span_id, outer.span_id);
    assert!(!parent_is_remote(inner));
    let handed = handed.expect("the inner span's context");
    assert_eq!(handed.trace_id, incoming.trace_id);
    assert_eq!(handed.span_id.to_be_bytes().as_slice(), inner.span_id);
    assert!(handed.sampled);
    // Sampled spans carry the sampled trace flag.
    assert_eq!(inner.flags & 0xff, 1);
    assert!(outer.start_time_unix_nano <= outer.end_time_unix_nano);
    assert!(outer.start_time_unix_nano > 1_600_000_000_000_000_000);
}

#[test]
fn without_a_parent_a_trace_starts() {
    let spans = recorded(|tracer| {
        let span = tracer.start(start("root", None));
        assert!(span.context().unwrap().sampled);
    });
    assert_eq!(spans.len(), 1);
    assert!(spans[0].parent_span_id.is_empty());
    assert_eq!(spans[0].trace_id.len(), 16);
    assert_eq!(spans[0].span_id.len(), 8);
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
    assert_eq!(span.kind, ProtoKind::Server as i32);
    assert_eq!(attr(span, "http.route"), str_value("/users"));
    assert_eq!(attr(span, "faas.invoked_name"), str_value("register"));
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(Any::IntValue(502))
    );
    assert_eq!(attr(span, "faas.coldstart"), Some(Any::BoolValue(true)));
    assert_eq!(
        attr(span, "faas.init_duration_ms"),
        Some(Any::DoubleValue(1.5))
    );
    assert_eq!(
        span.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
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
    let links = &spans[0].links;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].trace_id, linked.trace_id.to_be_bytes());
    assert_eq!(links[0].span_id, linked.span_id.to_be_bytes());
    assert_eq!(links[0].flags, 0x301, "sampled, and remote");
    assert_eq!(spans[0].kind, ProtoKind::Internal as i32);
    assert_eq!(
        spans[0].status, None,
        "a span without an error has no status"
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
            ..BATCHING
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
    let kept = Kept::default();
    let batching = Batching {
        delay: Duration::from_secs(3600),
        max_queue: 100,
        max_batch: 4,
        ..BATCHING
    };
    let recorder = Recorder::start(
        kept.clone(),
        &resource(),
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
        kept.spans().is_empty(),
        "three spans wait for a fourth or the delay"
    );
    drop(tracer.start(start("s", None)));
    let waited = std::time::Instant::now();
    while kept.spans().len() < 4 {
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
        ..BATCHING
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
        Some(Any::IntValue(500))
    );
}

#[test]
fn requests_carry_the_resource_and_scope_and_split_at_the_batch_size() {
    let kept = Kept::default();
    let batching = Batching {
        delay: Duration::from_secs(3600),
        max_queue: 100,
        max_batch: 3,
        ..BATCHING
    };
    let recorder = Recorder::start(kept.clone(), &resource(), Sampler::AlwaysOn, batching).unwrap();
    let tracer = recorder.tracer();
    for n in 0..7_i64 {
        drop(tracer.start(SpanStart {
            attributes: vec![
                ("n", Value::Int(n)),
                ("negative", Value::Int(-n)),
                ("empty", Value::from("")),
                ("no", Value::Bool(false)),
            ],
            ..start("s", None)
        }));
    }
    assert!(recorder.shutdown(Duration::from_secs(10)));
    let requests = kept.requests();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.resource_spans[0].scope_spans[0].spans.len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 7);
    assert!(sizes.iter().all(|n| *n <= 3), "{sizes:?}");
    for request in &requests {
        assert_eq!(request.resource_spans.len(), 1);
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes.len(), 1);
        assert_eq!(resource.attributes[0].key, "service.name");
        assert_eq!(
            resource.attributes[0].value.clone().unwrap().value,
            str_value("test")
        );
        let scope = request.resource_spans[0].scope_spans[0]
            .scope
            .as_ref()
            .unwrap();
        assert_eq!(scope.name, "nimbus");
    }
    let spans = kept.spans();
    for (n, span) in (0..7_i64).zip(&spans) {
        assert_eq!(attr(span, "n"), Some(Any::IntValue(n)));
        assert_eq!(attr(span, "negative"), Some(Any::IntValue(-n)));
        // Values a oneof holds are there even when they are proto3's defaults.
        assert_eq!(attr(span, "empty"), str_value(""));
        assert_eq!(attr(span, "no"), Some(Any::BoolValue(false)));
    }
}

#[test]
fn the_target_follows_the_exporter_variables() {
    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }
    assert_eq!(Target::from_env(None, vars(&[])).unwrap(), None);
    let base = Target::from_env(
        None,
        vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(base.url.as_str(), "http://collector:4318/v1/traces");
    assert_eq!(base.timeout, Duration::from_secs(10));
    assert!(base.headers.is_empty());
    let own = Target::from_env(
        None,
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/custom",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x-team = one"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-team=two"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(own.url.as_str(), "https://traces.example/custom");
    assert_eq!(own.headers["api-key"], "a b");
    assert_eq!(
        own.headers["x-team"], "two",
        "the signal's own variable wins"
    );
    assert_eq!(own.timeout, Duration::from_millis(2500));
    // The flag's base URL comes first.
    let flag = Target::from_env(
        Some("http://127.0.0.1:4318"),
        vars(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://elsewhere/")]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(flag.url.as_str(), "http://127.0.0.1:4318/v1/traces");
    for bad in [
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")][..],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector")][..],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ][..],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "bad header=x"),
        ][..],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ][..],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ][..],
    ] {
        assert!(
            matches!(
                Target::from_env(None, vars(bad)),
                Err(TraceError::Exporter(_))
            ),
            "{bad:?}"
        );
    }
    let none = Target::from_env(
        None,
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]),
    );
    assert!(none.unwrap().is_some());
}

/// Answers one HTTP request on a fresh port with `status`, and hands back the request's
/// head (lowercased).
fn answer_once(status: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.to_ascii_lowercase();
            if let Some(n) = line.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer =
            format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno");
        reader.get_mut().write_all(answer.as_bytes()).unwrap();
        head
    });
    (base, thread)
}

#[test]
fn the_http_sink_posts_protobuf_with_the_headers_and_reports_refusals() {
    use super::otlp::HttpSink;
    let target = |base: &str| {
        let mut target = Target::from_env(Some(base), |_| None).unwrap().unwrap();
        target
            .headers
            .insert("api-key", http::HeaderValue::from_static("secret"));
        target
    };
    let (base, head) = answer_once("200 OK");
    let sink = HttpSink::start(target(&base)).unwrap();
    assert_eq!(sink.send(vec![1, 2, 3]), Ok(()));
    let head = head.join().unwrap();
    assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
    assert!(head.contains("api-key: secret"), "{head}");
    let (base, head) = answer_once("503 Service Unavailable");
    let sink = HttpSink::start(target(&base)).unwrap();
    let refused = sink.send(vec![1]).unwrap_err();
    assert!(refused.contains("503"), "{refused}");
    head.join().unwrap();
}

#[test]
fn long_names_and_values_are_cut_at_a_character_boundary() {
    use super::recorder::MAX_TEXT_BYTES;
    // A three-byte character straddles the limit.
    let long = format!("{}€{}", "a".repeat(MAX_TEXT_BYTES - 1), "b".repeat(10_000));
    let spans = recorded(|tracer| {
        let mut span = tracer.start(SpanStart {
            name: long.clone().into(),
            attributes: vec![("db.collection.name", Value::from(long.clone()))],
            ..start("s", None)
        });
        span.set_attribute("url.path", Value::from(long.clone()));
        span.set_attribute("n", Value::Int(1));
    });
    let cut = "a".repeat(MAX_TEXT_BYTES - 1);
    assert_eq!(spans[0].name, cut);
    assert_eq!(attr(&spans[0], "db.collection.name"), str_value(&cut));
    assert_eq!(attr(&spans[0], "url.path"), str_value(&cut));
    assert_eq!(attr(&spans[0], "n"), Some(Any::IntValue(1)));
    // Text within the limit is kept whole.
    let spans = recorded(|tracer| {
        drop(tracer.start(SpanStart {
            attributes: vec![("k", Value::from("é".repeat(MAX_TEXT_BYTES / 2)))],
            ..start("short", None)
        }));
    });
    assert_eq!(
        attr(&spans[0], "k"),
        str_value(&"é".repeat(MAX_TEXT_BYTES / 2))
    );
}

#[test]
fn the_queue_is_bounded_in_bytes_as_well_as_in_spans() {
    let batching = Batching {
        delay: Duration::from_secs(3600),
        max_queue: 1000,
        max_batch: 1000,
        max_queue_bytes: 20_000,
    };
    let spans = recorded_with(Sampler::AlwaysOn, batching, |tracer| {
        for _ in 0..100 {
            drop(tracer.start(SpanStart {
                attributes: vec![("big", Value::from("x".repeat(1000)))],
                ..start("s", None)
            }));
        }
    });
    // Each span takes over 1,000 bytes: at most 19 fit, and the first ones are kept.
    assert!(
        (10..20).contains(&spans.len()),
        "{} spans were kept",
        spans.len()
    );
}
