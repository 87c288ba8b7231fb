//! OTLP over HTTP with protobuf: where batches go, and the bytes they are.
//!
//! A span is written in OTLP's protobuf form when it ends (`Span` of
//! `opentelemetry/proto/trace/v1/trace.proto`), with prost's wire-format primitives,
//! straight from the recorder's record; an export request is the resource and scope
//! written once around a batch of such spans. Building the `opentelemetry-proto` message
//! structs instead (and the SDK's `SpanData` before them, as the `opentelemetry-otlp`
//! exporter does) allocated every name, key and value again, and cost each exported span
//! more than recording it did (session 14 measured it in `bench/README.md`).
//!
//! Configuration follows OpenTelemetry's exporter variables: the endpoint
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, or `OTEL_EXPORTER_OTLP_ENDPOINT` with
//! `/v1/traces` added), headers (`OTEL_EXPORTER_OTLP_HEADERS` and
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `key=value` pairs separated by commas, values
//! percent-decoded) and the request timeout (`OTEL_EXPORTER_OTLP_TIMEOUT` and
//! `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, in milliseconds, 10 s by default). The protocol is
//! always `http/protobuf` and compression is not offered: asking for another protocol
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) or for compression is an error at start-up.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use nimbus_core::trace::{SpanKind, TraceContext, Value};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::TraceError;

/// The request timeout when the environment sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how export requests are sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub(crate) url: reqwest::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) timeout: Duration,
}

impl Target {
    /// The target `base` (a flag's base URL) or else the environment names, read through
    /// `var`; `Ok(None)` when neither names an endpoint.
    ///
    /// # Errors
    /// An endpoint that is not an HTTP URL, a header that is not one, or another
    /// protocol or compression asked for.
    pub(crate) fn from_env(
        base: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Target>, TraceError> {
        let endpoint = match base {
            Some(base) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
            None => var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
                var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|base| format!("{}/v1/traces", base.trim().trim_end_matches('/')))
            }),
        };
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        let bad = |why: String| TraceError::Exporter(why);
        let url = reqwest::Url::parse(endpoint.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| bad(format!("the OTLP endpoint {endpoint:?} is not an HTTP URL")))?;
        for name in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            if let Some(v) = var(name).filter(|v| v.trim() != "http/protobuf") {
                return Err(bad(format!(
                    "{name}={v}: Nimbus exports traces over http/protobuf only; unset it or set it to http/protobuf"
                )));
            }
        }
        for name in [
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        ] {
            if let Some(v) = var(name).filter(|v| !v.trim().eq_ignore_ascii_case("none")) {
                return Err(bad(format!(
                    "{name}={v}: Nimbus sends traces uncompressed; unset it or set it to none"
                )));
            }
        }
        let mut headers = HeaderMap::new();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            for pair in var(name).iter().flat_map(|v| v.split(',')) {
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
                let (Ok(key), Ok(value)) = (
                    HeaderName::try_from(key.trim()),
                    HeaderValue::try_from(value.as_ref()),
                ) else {
                    return Err(bad(format!(
                        "{name} holds a header that is not one: {pair:?}"
                    )));
                };
                // The signal's own variable, read last, wins.
                headers.insert(key, value);
            }
        }
        let timeout = [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .into_iter()
        .find_map(|name| var(name).and_then(|v| v.trim().parse::<u64>().ok()))
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        Ok(Some(Target {
            url,
            headers,
            timeout,
        }))
    }
}

// The wire format's pieces. Zero scalars and empty strings are left out, as proto3 does,
// except inside a `oneof` (an attribute's value), where presence is the value.

fn put_header(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// The length of a length-delimited field holding `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_bytes(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_header(buf, tag, bytes.len());
        buf.extend_from_slice(bytes);
    }
}

fn bytes_len(tag: u32, len: usize) -> usize {
    if len == 0 { 0 } else { field_len(tag, len) }
}

fn put_varint(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn put_fixed64(buf: &mut Vec<u8>, tag: u32, value: u64) {
    encode_key(tag, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

fn put_fixed32(buf: &mut Vec<u8>, tag: u32, value: u32) {
    encode_key(tag, WireType::ThirtyTwoBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// An attribute value as `AnyValue` encodes it.
#[derive(Clone, Copy)]
enum Any<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
}

impl<'a> From<&'a Value> for Any<'a> {
    fn from(value: &'a Value) -> Any<'a> {
        match value {
            Value::Str(s) => Any::Str(s),
            Value::Int(n) => Any::Int(*n),
            Value::Float(n) => Any::Double(*n),
            Value::Bool(b) => Any::Bool(*b),
        }
    }
}

// Two's complement, as protobuf writes an int64.
#[allow(clippy::cast_sign_loss)]
fn int64_bits(n: i64) -> u64 {
    n as u64
}

fn any_len(value: Any<'_>) -> usize {
    match value {
        Any::Str(s) => field_len(1, s.len()),
        Any::Bool(_) => key_len(2) + 1,
        Any::Int(n) => key_len(3) + encoded_len_varint(int64_bits(n)),
        Any::Double(_) => key_len(4) + 8,
    }
}

fn put_any(buf: &mut Vec<u8>, value: Any<'_>) {
    match value {
        Any::Str(s) => {
            put_header(buf, 1, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        Any::Bool(b) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(u64::from(b), buf);
        }
        Any::Int(n) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(int64_bits(n), buf);
        }
        Any::Double(x) => put_fixed64(buf, 4, x.to_bits()),
    }
}

/// Writes a `KeyValue` as field `tag`.
fn put_key_value(buf: &mut Vec<u8>, tag: u32, key: &str, value: Any<'_>) {
    let value_len = any_len(value);
    put_header(buf, tag, bytes_len(1, key.len()) + field_len(2, value_len));
    put_bytes(buf, 1, key.as_bytes());
    put_header(buf, 2, value_len);
    put_any(buf, value);
}

/// Span kinds as `Span.SpanKind` numbers them.
fn kind_number(kind: SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Consumer => 5,
    }
}

/// `Span.flags`: the W3C trace flags, with bit 8 saying that bit 9 tells whether the
/// parent is remote.
fn span_flags(sampled: bool, parent_remote: bool) -> u32 {
    u32::from(sampled) | 0x100 | if parent_remote { 0x200 } else { 0 }
}

/// What an ended span is, as [`put_span`] writes it.
pub(crate) struct Ended<'a> {
    pub(crate) context: TraceContext,
    /// The parent's span id, and whether that parent is another process's.
    pub(crate) parent: Option<(u64, bool)>,
    pub(crate) name: &'a str,
    pub(crate) kind: SpanKind,
    /// Nanoseconds since the Unix epoch.
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) attributes: &'a [(&'static str, Value)],
    pub(crate) links: &'a [TraceContext],
    pub(crate) error: bool,
}

/// Writes `span` as a `Span` message's fields (its body, without tag or length).
pub(crate) fn put_span(buf: &mut Vec<u8>, span: &Ended<'_>) {
    put_bytes(buf, 1, &span.context.trace_id.to_be_bytes());
    put_bytes(buf, 2, &span.context.span_id.to_be_bytes());
    if let Some((parent, _)) = span.parent {
        put_bytes(buf, 4, &parent.to_be_bytes());
    }
    put_bytes(buf, 5, span.name.as_bytes());
    put_varint(buf, 6, kind_number(span.kind));
    put_fixed64(buf, 7, span.start);
    put_fixed64(buf, 8, span.end);
    for (key, value) in span.attributes {
        put_key_value(buf, 9, key, value.into());
    }
    for link in span.links {
        let flags = span_flags(link.sampled, true);
        put_header(buf, 13, field_len(1, 16) + field_len(2, 8) + key_len(6) + 4);
        put_bytes(buf, 1, &link.trace_id.to_be_bytes());
        put_bytes(buf, 2, &link.span_id.to_be_bytes());
        put_fixed32(buf, 6, flags);
    }
    if span.error {
        // `Status { code: STATUS_CODE_ERROR }`
        put_header(buf, 15, key_len(3) + 1);
        put_varint(buf, 3, 2);
    }
    put_fixed32(
        buf,
        16,
        span_flags(
            span.context.sampled,
            span.parent.is_some_and(|(_, remote)| remote),
        ),
    );
}

/// Writes span `body` into a batch: as a `ScopeSpans.spans` entry.
pub(crate) fn put_batch_entry(batch: &mut Vec<u8>, body: &[u8]) {
    put_header(batch, 2, body.len());
    batch.extend_from_slice(body);
}

/// The `Resource` message of `attributes`.
pub(crate) fn resource(attributes: &[(String, String)]) -> Vec<u8> {
    let mut buf = Vec::new();
    for (key, value) in attributes {
        put_key_value(&mut buf, 1, key, Any::Str(value));
    }
    buf
}

/// The `InstrumentationScope` every span is recorded under.
const SCOPE_NAME: &str = "nimbus";

/// An `ExportTraceServiceRequest` of one resource and scope around `spans`, a batch of
/// [`put_batch_entry`] entries.
pub(crate) fn request(resource: &[u8], spans: &[u8]) -> Vec<u8> {
    let scope = field_len(1, SCOPE_NAME.len());
    let scope_spans = field_len(1, scope) + spans.len();
    let resource_spans = field_len(1, resource.len()) + field_len(2, scope_spans);
    let mut buf = Vec::with_capacity(field_len(1, resource_spans));
    put_header(&mut buf, 1, resource_spans);
    put_header(&mut buf, 1, resource.len());
    buf.extend_from_slice(resource);
    put_header(&mut buf, 2, scope_spans);
    put_header(&mut buf, 1, scope);
    put_bytes(&mut buf, 1, SCOPE_NAME.as_bytes());
    buf.extend_from_slice(spans);
    buf
}

/// Sends export requests: somewhere a batch goes.
pub(crate) trait Sink: Send + 'static {
    /// Sends one export request's body; blocks until it is answered.
    ///
    /// # Errors
    /// When the request fails or is refused.
    fn send(&self, body: Vec<u8>) -> Result<(), String>;
}

/// Posts export requests to a [`Target`] from a small runtime on a thread of its own:
/// exports never touch the node's runtime, and they keep working while that runtime
/// shuts down (the final flush).
#[derive(Debug)]
pub(crate) struct HttpSink {
    target: Target,
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
    /// Ends the runtime's thread when the sink is dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpSink {
    /// Starts the sink's thread.
    pub(crate) fn start(target: Target) -> std::io::Result<HttpSink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("nimbus-otlp".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let client = reqwest::Client::builder()
            .timeout(target.timeout)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(HttpSink {
            target,
            client,
            handle,
            _stop: stop,
        })
    }
}

impl Sink for HttpSink {
    fn send(&self, body: Vec<u8>) -> Result<(), String> {
        let request = self
            .client
            .post(self.target.url.clone())
            .headers(self.target.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        let sent = self.handle.spawn(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            // Read the answer whole, so that the connection can be used again.
            let answer = response.bytes().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "the collector answered {status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(200)])
                ))
            }
        });
        futures_executor::block_on(sent).map_err(|e| e.to_string())?
    }
}
