//! Trace context: which trace a piece of work belongs to, in the two header forms Nimbus
//! meets (W3C `traceparent`, and the X-Ray `X-Amzn-Trace-Id` that Lambda hands functions
//! and the AWS SDKs send back), and the trace spans the parts record.
//!
//! The parts (gateway, dispatcher, services endpoint, events) open a [`Span`] for each
//! piece of work a trace shows, with [`span`]. When traces are exported, the telemetry
//! crate installs a [`Tracer`] that records them as OpenTelemetry spans; without one,
//! [`span`] makes nothing and every [`Span`] is empty, so that traces cost a branch.
//! These spans are Nimbus's own rather than `tracing`'s: a `tracing` span kept for export
//! costs a registry slot, a visitor for each field and an enter and exit on every poll,
//! several times what the span itself records.
//!
//! The span a piece of work runs in is its task's *current* span, set by
//! [`Span::in_scope`] for the future it wraps: a span started inside is its child, and
//! [`current`] is its context, which the parts hand on (to a function, into a stream
//! record, onto an async event).
//!
//! ```
//! use nimbus_core::trace::TraceContext;
//!
//! let cx = TraceContext::from_traceparent(
//!     "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
//! ).unwrap();
//! assert_eq!(
//!     cx.xray(),
//!     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
//! );
//! assert_eq!(TraceContext::from_xray(&cx.xray()), Some(cx));
//! ```

use std::{borrow::Cow, future::Future, sync::OnceLock};

/// A span's place in a trace, as one process hands it to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace (16 bytes, never zero).
    pub trace_id: u128,
    /// The span that is the parent of what the receiver does (8 bytes, never zero).
    pub span_id: u64,
    /// Whether the trace is recorded.
    pub sampled: bool,
}

/// The length of a `traceparent` header of version 00.
const TRACEPARENT_LEN: usize = 55;
/// The length of the X-Ray header [`TraceContext::xray`] writes.
const XRAY_LEN: usize = 74;

/// Exactly `digits` hex digits (no sign, no prefix), at most 32.
fn hex(s: &str, digits: usize) -> Option<u128> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
}

fn hex_u128(s: &str) -> Option<u128> {
    hex(s, 32)
}

/// An X-Ray `Root` value (`1-<8 hex>-<24 hex>`) as a trace id; zero is not valid.
fn xray_root(value: &str) -> Option<u128> {
    let mut parts = value.trim().split('-');
    let (one, time, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if one != "1" || parts.next().is_some() {
        return None;
    }
    Some(hex(time, 8)? << 96 | hex(rest, 24)?).filter(|&id| id != 0)
}

fn hex_u64(s: &str) -> Option<u64> {
    hex(s, 16).and_then(|n| u64::try_from(n).ok())
}

impl TraceContext {
    /// A context, or `None` when an id is zero (invalid in both header forms).
    pub fn new(trace_id: u128, span_id: u64, sampled: bool) -> Option<TraceContext> {
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            sampled,
        })
    }

    /// Reads a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex flags>`); a later
    /// version is read as version 00, as the specification asks.
    pub fn from_traceparent(header: &str) -> Option<TraceContext> {
        let header = header.trim();
        let mut parts = header.splitn(5, '-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        // Every field is lowercase hex; a header that is not is ignored, as the
        // specification asks.
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if version.len() != 2
            || version == "ff"
            || (version == "00" && rest.is_some())
            || flags.len() != 2
            || ![version, trace, span, flags].into_iter().all(lower_hex)
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        TraceContext::new(hex_u128(trace)?, hex_u64(span)?, flags & 1 == 1)
    }

    /// The W3C `traceparent` header.
    pub fn traceparent(&self) -> String {
        use std::fmt::Write as _;
        let mut header = String::with_capacity(TRACEPARENT_LEN);
        let _ = write!(
            header,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        );
        header
    }

    /// Reads an X-Ray trace header (`Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=1`,
    /// fields in any order); `None` without a valid `Root` and `Parent`. A missing or
    /// undecided `Sampled` reads as sampled, so that the receiver decides.
    pub fn from_xray(header: &str) -> Option<TraceContext> {
        let (mut root, mut parent, mut sampled) = (None, None, true);
        for field in header.split(';') {
            let Some((key, value)) = field.trim().split_once('=') else {
                continue;
            };
            match key.trim() {
                "Root" => root = Some(xray_root(value)?),
                "Parent" => parent = Some(hex_u64(value.trim())?),
                "Sampled" => sampled = value.trim() != "0",
                _ => {}
            }
        }
        TraceContext::new(root?, parent?, sampled)
    }

    /// Whether an X-Ray trace header has a valid `Root` field (a header from a client that
    /// starts a trace has no `Parent`).
    pub fn has_xray_root(header: &str) -> bool {
        header.split(';').any(|field| {
            field
                .split_once('=')
                .is_some_and(|(key, value)| key.trim() == "Root" && xray_root(value).is_some())
        })
    }

    /// The X-Ray trace header: the trace id's first 8 hex digits are the `Root`'s time
    /// part, the other 24 its unique part.
    pub fn xray(&self) -> String {
        use std::fmt::Write as _;
        let mut header = String::with_capacity(XRAY_LEN);
        let _ = write!(
            header,
            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled={}",
            self.trace_id >> 96,
            self.trace_id & ((1 << 96) - 1),
            self.span_id,
            u8::from(self.sampled)
        );
        header
    }

    /// The context an incoming request carries: its `traceparent` when valid, otherwise
    /// its X-Ray header.
    pub fn from_headers(traceparent: Option<&str>, xray: Option<&str>) -> Option<TraceContext> {
        traceparent
            .and_then(TraceContext::from_traceparent)
            .or_else(|| xray.and_then(TraceContext::from_xray))
    }
}

/// What a span is to the trace, as OpenTelemetry's span kinds say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside the node (a queue wait, a cold start).
    Internal,
    /// The answer to a request from outside (the gateway's, the services endpoint's, a
    /// function's run).
    Server,
    /// The processing of messages from a queue or stream.
    Consumer,
}

/// A span attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(Cow<'static, str>),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A yes or no.
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Float(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// A span about to start, as the [`Tracer`] receives it.
#[derive(Debug, Clone)]
pub struct SpanStart {
    /// The span's name (`POST /users`, the function's name).
    pub name: Cow<'static, str>,
    /// What the span is to the trace.
    pub kind: SpanKind,
    /// Its parent, and whether that parent is another process's; `None` starts a trace.
    pub parent: Option<(TraceContext, bool)>,
    /// Its attributes, named by OpenTelemetry's semantic conventions.
    pub attributes: Vec<(&'static str, Value)>,
    /// Other spans it follows from (the writes behind a stream batch).
    pub links: Vec<TraceContext>,
}

/// One started span, in the tracer's hands until it is dropped, which ends it.
pub trait Recording: Send + Sync {
    /// The span's context (unsampled when the trace is not recorded); `None` when the
    /// tracer could not give it one (it is shutting down).
    fn context(&self) -> Option<TraceContext>;
    /// Whether the span is recorded, so that attributes are worth computing.
    fn is_recording(&self) -> bool;
    /// Sets an attribute.
    fn set_attribute(&mut self, key: &'static str, value: Value);
    /// Marks the span as failed.
    fn set_error(&mut self);
}

/// What records [`Span`]s; installed once, by the telemetry crate, when traces are
/// exported.
pub trait Tracer: Send + Sync + 'static {
    /// Starts a span.
    fn start(&self, span: SpanStart) -> Box<dyn Recording>;
}

static TRACER: OnceLock<Box<dyn Tracer>> = OnceLock::new();

tokio::task_local! {
    /// The context of the span the task's current future runs in.
    static CURRENT: Option<TraceContext>;
}

/// Installs the tracer; `false` when one already was.
pub fn install(tracer: Box<dyn Tracer>) -> bool {
    TRACER.set(tracer).is_ok()
}

/// Whether traces are exported (a tracer is installed).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The context of the span the current future runs in (see [`Span::in_scope`]); `None`
/// without a tracer or outside any span.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|cx| *cx).ok().flatten()
}

/// The attributes a span has room for when it starts.
const SPAN_ATTRIBUTES: usize = 8;

/// A span to start, named `name`: empty without a tracer, so that the attributes given
/// to it are not kept (compute costly ones only when [`enabled`]).
pub fn span(name: impl Into<Cow<'static, str>>, kind: SpanKind) -> SpanBuilder {
    SpanBuilder(TRACER.get().map(|tracer| {
        (
            tracer.as_ref(),
            SpanStart {
                name: name.into(),
                kind,
                parent: None,
                // Room for the seven a gateway request's span gets, so that adding
                // them does not grow the vector twice.
                attributes: Vec::with_capacity(SPAN_ATTRIBUTES),
                links: Vec::new(),
            },
        )
    }))
}

/// A span being described; [`SpanBuilder::start`] starts it.
#[must_use = "a span builder does nothing until started"]
pub struct SpanBuilder(Option<(&'static dyn Tracer, SpanStart)>);

impl SpanBuilder {
    /// Adds an attribute.
    pub fn attr(mut self, key: &'static str, value: impl Into<Value>) -> SpanBuilder {
        if let Some((_, start)) = &mut self.0 {
            start.attributes.push((key, value.into()));
        }
        self
    }

    /// Makes `parent`, received from another process or an earlier hop, the span's
    /// parent; without one (`None`), the current span is.
    pub fn remote_parent(mut self, parent: Option<TraceContext>) -> SpanBuilder {
        if let (Some((_, start)), Some(parent)) = (&mut self.0, parent) {
            start.parent = Some((parent, true));
        }
        self
    }

    /// Links the span to `linked`.
    pub fn link(mut self, linked: TraceContext) -> SpanBuilder {
        if let Some((_, start)) = &mut self.0 {
            start.links.push(linked);
        }
        self
    }

    /// Starts the span: a child of its remote parent if it was given one, else of the
    /// current span, else the root of a new trace.
    pub fn start(self) -> Span {
        Span(self.0.map(|(tracer, mut start)| {
            if start.parent.is_none() {
                start.parent = current().map(|cx| (cx, false));
            }
            tracer.start(start)
        }))
    }
}

/// A trace span; dropping it ends it. Empty (and free) without a tracer.
#[must_use = "a span ends when dropped"]
#[derive(Default)]
pub struct Span(Option<Box<dyn Recording>>);

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Span").field(&self.context()).finish()
    }
}

impl Span {
    /// A span that records nothing.
    pub const fn none() -> Span {
        Span(None)
    }

    /// The span's context, to hand on; `None` for an empty span.
    pub fn context(&self) -> Option<TraceContext> {
        self.0.as_ref().and_then(|r| r.context())
    }

    /// Whether the span is recorded.
    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|r| r.is_recording())
    }

    /// Sets an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(r) = &mut self.0
            && r.is_recording()
        {
            r.set_attribute(key, value.into());
        }
    }

    /// Marks the span as failed.
    pub fn set_error(&mut self) {
        if let Some(r) = &mut self.0 {
            r.set_error();
        }
    }

    /// Runs `future` with this span as its current span, so that spans started in it
    /// are this one's children and [`current`] is this span's context. An empty span
    /// leaves the current span as it is.
    ///
    /// Without a tracer there is no span to be current, and `future` runs as it is: a
    /// task-local scope would cost a swap on every poll of every request.
    pub fn in_scope<F: Future>(&self, future: F) -> InScope<F> {
        InScope {
            scope: enabled().then(|| self.context().or_else(current)),
            future,
        }
    }
}

pin_project_lite::pin_project! {
    /// A future run with a span as its task's current span ([`Span::in_scope`]).
    ///
    /// A future of its own rather than an `async` block around `future`: such a block
    /// holds `future` twice over (once as it was handed in, once as it is awaited), and
    /// the futures wrapped here are a request's largest, moved whole on their way to the
    /// runtime. Unlike tokio's `scope`, a cancelled `InScope` drops its future outside the
    /// span: a destructor that starts a span or reads [`current`] would not see it.
    #[must_use = "futures do nothing unless polled"]
    pub struct InScope<F> {
        // `None` without a tracer: `future` runs as it is.
        scope: Option<Option<TraceContext>>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for InScope<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        match *this.scope {
            Some(scope) => CURRENT.sync_scope(scope, || this.future.poll(cx)),
            None => this.future.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const XRAY: &str = "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1";

    #[test]
    fn traceparent_and_xray_convert_both_ways() {
        let cx = TraceContext::from_traceparent(TP).unwrap();
        assert_eq!(cx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(cx.span_id, 0x00f067aa0ba902b7);
        assert!(cx.sampled);
        assert_eq!(cx.xray(), XRAY);
        let back = TraceContext::from_xray(XRAY).unwrap();
        assert_eq!(back, cx);
        assert_eq!(back.traceparent(), TP);
    }

    #[test]
    fn the_sampled_flag_is_kept() {
        let cx = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .unwrap();
        assert!(!cx.sampled);
        assert!(cx.xray().ends_with(";Sampled=0"));
        assert!(!TraceContext::from_xray(&cx.xray()).unwrap().sampled);
        assert!(cx.traceparent().ends_with("-00"));
    }

    #[test]
    fn xray_fields_come_in_any_order_with_extras() {
        let cx = TraceContext::from_xray(
            "Sampled=0;Lineage=a87bd80c:1|68fd508a:5;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .unwrap();
        assert_eq!(cx.trace_id, 0x5759e988bd862e3fe1be46a994272793);
        assert_eq!(cx.span_id, 0x53995c3f42cd8ad8);
        assert!(!cx.sampled);
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Uppercase hex and a signed flags field are not the header's form.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0F",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad}");
        }
        for bad in [
            "",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e98-bd862e3fe1be46a9942727933;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f",
        ] {
            assert_eq!(TraceContext::from_xray(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_later_traceparent_version_is_read_as_00() {
        let cx = TraceContext::from_traceparent(&format!("01{}-what-comes", &TP[2..])).unwrap();
        assert_eq!(cx.traceparent(), TP);
    }

    #[test]
    fn traceparent_wins_over_xray() {
        let other = "Root=1-11111111-111111111111111111111111;Parent=1111111111111111;Sampled=1";
        let cx = TraceContext::from_headers(Some(TP), Some(other)).unwrap();
        assert_eq!(cx.traceparent(), TP);
        let cx = TraceContext::from_headers(Some("garbage"), Some(other)).unwrap();
        assert_eq!(cx.trace_id, 0x11111111111111111111111111111111);
        assert_eq!(TraceContext::from_headers(None, None), None);
    }

    /// Without a tracer, spans are empty and leave the current span alone. (With one,
    /// the telemetry crate's tests cover them, since a tracer is installed for good.)
    #[test]
    fn without_a_tracer_nothing_is_traced() {
        let mut span = span("x", SpanKind::Server).attr("k", "v").start();
        span.set("other", 1_i64);
        assert!(!span.is_recording());
        assert_eq!(span.context(), None);
        assert_eq!(current(), None);
        let outer = TraceContext::from_traceparent(TP).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen = runtime.block_on(CURRENT.scope(Some(outer), async move {
            span.in_scope(async { current() }).await
        }));
        assert_eq!(seen, Some(outer), "an empty span keeps the current one");
    }
}
