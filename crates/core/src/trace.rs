//! Trace context: which trace a piece of work belongs to, in the two header forms Nimbus
//! meets (W3C `traceparent`, and the X-Ray `X-Amzn-Trace-Id` that Lambda hands functions
//! and the AWS SDKs send back), and a hook through which the parts reach the tracer.
//!
//! The parts (gateway, dispatcher, services endpoint, events, tables) open `tracing`
//! spans with the target [`TARGET`]. When traces are exported, the telemetry crate
//! installs a [`Tracer`] that turns those spans into OpenTelemetry spans; without one,
//! every function here that needs it does nothing, and nothing listens to [`TARGET`]
//! spans, so they cost next to nothing.
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

use std::sync::OnceLock;

/// The `tracing` target of the spans that become trace spans.
pub const TARGET: &str = "nimbus::trace";

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

fn hex_u128(s: &str) -> Option<u128> {
    (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
}

fn hex_u64(s: &str) -> Option<u64> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
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
        if version.len() != 2
            || !version.bytes().all(|b| b.is_ascii_hexdigit())
            || version.eq_ignore_ascii_case("ff")
            || (version == "00" && rest.is_some())
            || flags.len() != 2
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        TraceContext::new(hex_u128(trace)?, hex_u64(span)?, flags & 1 == 1)
    }

    /// The W3C `traceparent` header.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
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
                "Root" => {
                    let mut parts = value.trim().split('-');
                    let (one, time, rest) = (parts.next()?, parts.next()?, parts.next()?);
                    if one != "1" || parts.next().is_some() || time.len() != 8 {
                        return None;
                    }
                    root = Some(hex_u128(&format!("{time}{rest}"))?);
                }
                "Parent" => parent = Some(hex_u64(value.trim())?),
                "Sampled" => sampled = value.trim() != "0",
                _ => {}
            }
        }
        TraceContext::new(root?, parent?, sampled)
    }

    /// The X-Ray trace header: the trace id's first 8 hex digits are the `Root`'s time
    /// part, the other 24 its unique part.
    pub fn xray(&self) -> String {
        let hex = format!("{:032x}", self.trace_id);
        format!(
            "Root=1-{}-{};Parent={:016x};Sampled={}",
            &hex[..8],
            &hex[8..],
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// The context an incoming request carries: its `traceparent` when valid, otherwise
    /// its X-Ray header.
    pub fn from_headers(traceparent: Option<&str>, xray: Option<&str>) -> Option<TraceContext> {
        traceparent
            .and_then(TraceContext::from_traceparent)
            .or_else(|| xray.and_then(TraceContext::from_xray))
    }
}

/// What turns [`TARGET`] spans into trace spans; installed once, by the telemetry crate,
/// when traces are exported.
pub trait Tracer: Send + Sync + 'static {
    /// Makes `parent` (from another process or an earlier hop) the parent of `span`,
    /// which must not have been entered yet.
    fn set_parent(&self, span: &tracing::Span, parent: TraceContext);
    /// Links `span`, not yet entered, to `linked`.
    fn add_link(&self, span: &tracing::Span, linked: TraceContext);
    /// `span`'s own context, to hand on; `None` when it is not traced.
    fn context(&self, span: &tracing::Span) -> Option<TraceContext>;
}

static TRACER: OnceLock<Box<dyn Tracer>> = OnceLock::new();

/// Installs the tracer; `false` when one already was.
pub fn install(tracer: Box<dyn Tracer>) -> bool {
    TRACER.set(tracer).is_ok()
}

/// Whether traces are exported (a tracer is installed).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Makes `parent` the parent of `span` (not yet entered); nothing without a tracer.
pub fn set_parent(span: &tracing::Span, parent: TraceContext) {
    if let Some(tracer) = TRACER.get() {
        tracer.set_parent(span, parent);
    }
}

/// Links `span` (not yet entered) to `linked`; nothing without a tracer.
pub fn add_link(span: &tracing::Span, linked: TraceContext) {
    if let Some(tracer) = TRACER.get() {
        tracer.add_link(span, linked);
    }
}

/// `span`'s context; `None` without a tracer.
pub fn context(span: &tracing::Span) -> Option<TraceContext> {
    TRACER.get()?.context(span)
}

/// The current span's context; `None` without a tracer or outside a trace span.
pub fn current() -> Option<TraceContext> {
    let tracer = TRACER.get()?;
    tracer.context(&tracing::Span::current())
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

    #[test]
    fn without_a_tracer_nothing_is_traced() {
        let span = tracing::info_span!(target: TARGET, "x");
        assert_eq!(context(&span), None);
        assert_eq!(current(), None);
    }
}
