//! Spans with a tracer installed: parents come from the current span or a remote
//! context, `in_scope` sets the current span for a future and no longer, and an empty
//! span leaves it alone. A test binary of its own, with one test, since a tracer is
//! installed for the life of the process.

#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use nimbus_core::trace::{self, Recording, Span, SpanKind, SpanStart, TraceContext, Tracer, Value};

/// The attributes set on started spans: span id, key, value.
type Set = Arc<Mutex<Vec<(u64, &'static str, Value)>>>;

/// What the test tracer was asked to start, and what it gave each span.
#[derive(Debug, Clone)]
struct Started {
    start: SpanStart,
    cx: TraceContext,
}

/// Numbers spans from 1 and keeps what they were started with and set to.
struct Recorder {
    next: AtomicU64,
    started: Arc<Mutex<Vec<Started>>>,
    set: Set,
}

struct Recorded {
    cx: TraceContext,
    set: Set,
}

impl Recording for Recorded {
    fn context(&self) -> Option<TraceContext> {
        Some(self.cx)
    }
    fn is_recording(&self) -> bool {
        self.cx.sampled
    }
    fn set_attribute(&mut self, key: &'static str, value: Value) {
        self.set.lock().unwrap().push((self.cx.span_id, key, value));
    }
    fn set_error(&mut self) {
        self.set
            .lock()
            .unwrap()
            .push((self.cx.span_id, "error", Value::Bool(true)));
    }
}

impl Tracer for Recorder {
    fn start(&self, start: SpanStart) -> Box<dyn Recording> {
        let span_id = self.next.fetch_add(1, Ordering::Relaxed);
        let (trace_id, sampled) = start
            .parent
            .map_or((7, true), |(p, _)| (p.trace_id, p.sampled));
        let cx = TraceContext::new(trace_id, span_id, sampled).unwrap();
        self.started.lock().unwrap().push(Started {
            start: start.clone(),
            cx,
        });
        Box::new(Recorded {
            cx,
            set: Arc::clone(&self.set),
        })
    }
}

#[tokio::test]
async fn spans_nest_through_the_current_span_and_hand_on_their_context() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let set = Arc::new(Mutex::new(Vec::new()));
    assert!(trace::install(Box::new(Recorder {
        next: AtomicU64::new(1),
        started: Arc::clone(&started),
        set: Arc::clone(&set),
    })));
    assert!(trace::enabled());
    assert!(!trace::install(Box::new(Recorder {
        next: AtomicU64::new(1),
        started: Arc::default(),
        set: Arc::default(),
    })));

    let incoming =
        TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    // A request span under a remote caller; a child of it in its scope; an empty span
    // in between changes nothing; outside the scope there is no current span.
    let mut outer = trace::span("outer", SpanKind::Server)
        .remote_parent(Some(incoming))
        .attr("http.route", "/users")
        .start();
    let outer_cx = outer.context().unwrap();
    let (inner_cx, seen_inside) = outer
        .in_scope(async {
            assert_eq!(trace::current(), Some(outer_cx));
            Span::none()
                .in_scope(async {
                    tokio::task::yield_now().await;
                    let inner = trace::span("inner", SpanKind::Internal).start();
                    let inner_cx = inner.context().unwrap();
                    let seen = inner.in_scope(async { trace::current() }).await;
                    (inner_cx, seen)
                })
                .await
        })
        .await;
    assert_eq!(seen_inside, Some(inner_cx));
    assert_eq!(trace::current(), None);
    outer.set("http.response.status_code", 200_i64);
    outer.set_error();
    drop(outer);
    // A remote parent of None leaves the span to the current one; a span started
    // outside every scope is a trace's root.
    let root = trace::span("root", SpanKind::Consumer)
        .remote_parent(None)
        .link(incoming)
        .start();
    assert!(root.is_recording());

    let started = started.lock().unwrap().clone();
    let names: Vec<&str> = started.iter().map(|s| s.start.name.as_ref()).collect();
    assert_eq!(names, ["outer", "inner", "root"]);
    assert_eq!(started[0].start.parent, Some((incoming, true)));
    assert_eq!(
        started[0].start.attributes,
        [("http.route", Value::from("/users"))]
    );
    assert_eq!(started[1].start.parent, Some((outer_cx, false)));
    assert_eq!(started[1].cx.trace_id, incoming.trace_id);
    assert_eq!(started[2].start.parent, None);
    assert_eq!(started[2].start.links, [incoming]);
    assert_eq!(
        *set.lock().unwrap(),
        [
            (
                outer_cx.span_id,
                "http.response.status_code",
                Value::Int(200)
            ),
            (outer_cx.span_id, "error", Value::Bool(true)),
        ]
    );

    // An unsampled caller's span is not recorded, but hands on its (unsampled) context.
    let unsampled = TraceContext::new(9, 9, false).unwrap();
    let mut span = trace::span("x", SpanKind::Server)
        .remote_parent(Some(unsampled))
        .start();
    assert!(!span.is_recording());
    span.set("k", "v");
    let cx = span.in_scope(async { trace::current() }).await.unwrap();
    assert!(!cx.sampled);
    assert_eq!(cx.trace_id, 9);
    assert_eq!(
        set.lock().unwrap().len(),
        2,
        "attributes of unrecorded spans are dropped"
    );
}
