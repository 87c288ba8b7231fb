//! Invoking functions: what callers (the gateway, the Lambda API, events) hand to the
//! dispatcher ([`Invoke`]), and what the dispatcher drives ([`Runtime`] and
//! [`Instance`]), so that the gateway knows nothing of runtimes and the dispatcher
//! nothing of processes or wasm.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::FunctionSpec;

/// A boxed future, so that runtimes and invokers can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One invocation of a function.
///
/// An invocation is either a JSON event (`payload`, with `request` `None`: what every
/// runtime takes) or an HTTP request (`request`, with an empty `payload`), which only the
/// gateway makes and only for wasm functions: their components serve HTTP, so the
/// request goes to them as it came instead of through an API Gateway event. An instance
/// answers an HTTP request with [`Outcome::Http`] (or an [`Outcome::Error`]), and a JSON
/// event never with [`Outcome::Http`].
#[derive(Debug)]
pub struct Invocation {
    /// The request id (`awsRequestId`).
    pub request_id: String,
    /// The event, as JSON bytes; empty when the invocation is a `request`.
    pub payload: Vec<u8>,
    /// The HTTP request to serve, for an invocation that is one rather than a JSON event
    /// (see [`InvokeOptions::request`]).
    pub request: Option<http::Request<bytes::Bytes>>,
    /// When the invocation must have finished.
    pub deadline: SystemTime,
    /// The X-Ray style trace header to pass on, if any.
    pub trace_id: Option<String>,
    /// The client context, if any: the JSON itself (decoded from the base64 that
    /// `X-Amz-Client-Context` carries), as the runtime hands it on.
    pub client_context: Option<String>,
    /// Where a streamed response goes as the function writes it, when the caller can
    /// pass one on ([`InvokeOptions::stream`]).
    pub stream: Option<ResponseStream>,
}

/// A part of a response the function streams (Lambda's response streaming,
/// `Lambda-Runtime-Function-Response-Mode: streaming`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPart {
    /// The response begins, with this content type; chunks follow.
    Start {
        /// The content type the function set (`application/octet-stream` by default;
        /// `application/vnd.awslambda.http-integration-response` for an HTTP response
        /// with a JSON prelude).
        content_type: String,
    },
    /// Body bytes, as the function wrote them.
    Chunk(Vec<u8>),
}

/// Where streamed parts go. A function that streams sends [`StreamPart::Start`] then its
/// chunks; one that does not sends nothing. The channel closes when the invocation ends;
/// its [`Outcome`] then tells whether the stream ended well (an error after the start
/// is an [`Outcome::Error`]; a streamed success is an empty [`Outcome::Response`]).
pub type ResponseStream = tokio::sync::mpsc::Sender<StreamPart>;

/// How an invocation ended, as Lambda reports it to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function returned this payload (JSON bytes).
    Response(Vec<u8>),
    /// The function answered the invocation's HTTP request ([`Invocation::request`]) with
    /// this response: a success, like [`Outcome::Response`]. Only an invocation that
    /// carried a request is answered so; a caller that needs a JSON payload gets it from
    /// [`HttpResponse::structured_result`] (or [`Outcome::into_payload`]).
    Http(HttpResponse),
    /// The invocation failed: the function raised an error, or the platform ended it
    /// (timeout, crash, out of memory). `error_type` is Lambda's, such as
    /// `Sandbox.Timedout` or `Runtime.ExitError`; `payload` is the error document.
    Error {
        /// Lambda's error type.
        error_type: String,
        /// The error document (JSON bytes).
        payload: Vec<u8>,
        /// Whether the platform ended the invocation ([`Outcome::platform_error`]),
        /// rather than the function reporting an error: a function may name its error
        /// `Sandbox.Timedout`, and that is still its own error, not a timeout.
        platform: bool,
    },
}

/// An HTTP response as a function gave it, for [`Outcome::Http`]: the status, every
/// header line in the order given (repeated names such as `set-cookie` stay separate
/// lines) and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: http::StatusCode,
    /// The header lines.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl HttpResponse {
    /// The API Gateway payload 2.0 structured result for this response, as JSON bytes:
    /// `{"statusCode", "headers", "cookies", "body", "isBase64Encoded"}`. `set-cookie`
    /// lines become `cookies`; the values of a repeated header are joined with `, `; the
    /// body is base64 when it is not UTF-8 or its content type is not textual
    /// ([`crate::lambda::is_textual_content_type`]; no content type counts as textual).
    pub fn structured_result(&self) -> Vec<u8> {
        use base64::Engine as _;
        use serde_json::{Map, Value as Json};

        let mut headers = Map::new();
        let mut cookies = Vec::new();
        for (name, value) in &self.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if name == http::header::SET_COOKIE {
                cookies.push(Json::String(value));
                continue;
            }
            match headers.get_mut(name.as_str()) {
                Some(Json::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    headers.insert(name.as_str().to_owned(), Json::String(value));
                }
            }
        }
        let textual = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(crate::lambda::is_textual_content_type);
        let (body, base64) = match std::str::from_utf8(&self.body) {
            Ok(text) if textual => (text.to_owned(), false),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(&self.body),
                true,
            ),
        };
        let mut result = serde_json::json!({
            "statusCode": self.status.as_u16(),
            "headers": headers,
            "body": body,
            "isBase64Encoded": base64,
        });
        if !cookies.is_empty() {
            result["cookies"] = Json::Array(cookies);
        }
        result.to_string().into_bytes()
    }
}

impl Outcome {
    /// The JSON bytes a Lambda caller receives for this outcome: the function's payload,
    /// the error document, or for an HTTP response its payload 2.0 structured result
    /// ([`HttpResponse::structured_result`]).
    pub fn into_payload(self) -> Vec<u8> {
        match self {
            Outcome::Response(payload) | Outcome::Error { payload, .. } => payload,
            Outcome::Http(response) => response.structured_result(),
        }
    }

    /// An error outcome built from a type and a message, shaped as Lambda shapes platform
    /// errors (`{"errorType": ..., "errorMessage": ...}`).
    pub fn platform_error(error_type: &str, message: &str) -> Outcome {
        let payload = format!(
            "{{\"errorType\":{},\"errorMessage\":{}}}",
            json_string(error_type),
            json_string(message)
        );
        Outcome::Error {
            error_type: error_type.to_owned(),
            payload: payload.into_bytes(),
            platform: true,
        }
    }

    /// Whether the platform ended the invocation at its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Outcome::Error { error_type, platform: true, .. } if error_type == TIMEOUT_ERROR
        )
    }
}

/// The error type of an invocation that ran out of time, as Lambda names it.
pub const TIMEOUT_ERROR: &str = "Sandbox.Timedout";

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What an instance reports after an invocation.
#[derive(Debug, Clone)]
pub struct Report {
    /// How the invocation ended.
    pub outcome: Outcome,
    /// Whether the instance can serve another invocation; `false` after a timeout, a
    /// crash or an init failure, and the dispatcher then discards it.
    pub reusable: bool,
    /// On the first invocation of an instance: how long its initialisation took.
    pub init_duration: Option<Duration>,
    /// The end of the invocation's log (for `X-Amz-Log-Type: Tail`).
    pub log_tail: String,
    /// The instance's peak memory during the invocation, in MB, when measured.
    pub max_memory_mb: Option<u64>,
    /// How long the invocation itself ran, when the runtime timed it: a runtime whose
    /// instances initialise inside their first invocation (a process's start-up) times
    /// the run alone, which is Lambda's `Duration`. `None` lets the caller time the call.
    pub run_duration: Option<Duration>,
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start an instance of {function}: {reason}")]
pub struct StartError {
    /// The function.
    pub function: String,
    /// Why.
    pub reason: String,
}

/// A running instance of a function: one invocation at a time, like a Lambda execution
/// environment.
pub trait Instance: Send + 'static {
    /// Runs one invocation.
    fn invoke(&mut self, invocation: Invocation) -> BoxFuture<'_, Report>;

    /// Whether the instance can still take an invocation (an idle process may have been
    /// killed from outside).
    fn is_alive(&self) -> bool {
        true
    }

    /// Stops the instance (gracefully, then forcefully).
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;

    /// A handle that stops the instance from outside while an invocation holds it (at
    /// shutdown, when the grace period ran out): gracefully, then forcefully. The
    /// invocation then ends as the instance's exit makes it end. `None` when the instance
    /// cannot be stopped that way.
    fn stopper(&self) -> Option<Stopper> {
        None
    }
}

/// Stops a busy instance from outside; see [`Instance::stopper`].
pub type Stopper = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A way to run functions (processes speaking the Lambda Runtime API, wasm components).
pub trait Runtime: Send + Sync + 'static {
    /// Starts an instance of `function`.
    fn start(
        &self,
        function: Arc<FunctionSpec>,
    ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>>;
}

/// Which concurrency limit throttled an invocation: callers report it (Lambda's 429 says
/// `Reason`), as raising one is the operator's fix and raising the other is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleLimit {
    /// The function's own `concurrency.max`.
    Function,
    /// The node's limit on invocations of all functions together.
    Node,
}

/// Why an invocation was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// No such function.
    #[error("Function not found: {0}")]
    NotFound(String),
    /// The function is at a concurrency limit and the wait would be too long.
    #[error("Rate Exceeded.")]
    Throttled(ThrottleLimit),
    /// No instance could be started.
    #[error("{0}")]
    Unavailable(String),
}

/// Runs invocations of the app's functions: what the gateway and the Lambda API call.
pub trait Invoke: Send + Sync + 'static {
    /// Invokes `function` with `payload` and waits for the outcome.
    fn invoke(
        &self,
        function: &str,
        payload: Vec<u8>,
        options: InvokeOptions,
    ) -> BoxFuture<'_, Result<InvokeResult, InvokeError>>;
}

/// Invokes `function` through `invoker` and runs the invocation to its end, even if the
/// caller stops waiting for it.
///
/// The invocation runs in the caller's task while the caller waits (no task of its own,
/// no cross-thread wake-up). Dropped before it finishes (a client that disconnects: hyper
/// drops the request's future), what is left of it becomes a task of its own, as Lambda
/// finishes an invocation whatever its caller does: the function is not cut off halfway,
/// its instance goes back to the pool, and its `END` and `REPORT` lines are written.
pub fn invoke_to_end(
    invoker: &Arc<dyn Invoke>,
    function: &str,
    payload: Vec<u8>,
    options: InvokeOptions,
) -> ToEnd {
    let (invoker, function) = (Arc::clone(invoker), function.to_owned());
    ToEnd(Some(Box::pin(async move {
        invoker.invoke(&function, payload, options).await
    })))
}

/// An invocation that runs to its end: see [`invoke_to_end`].
#[must_use = "futures do nothing unless polled"]
pub struct ToEnd(Option<BoxFuture<'static, Result<InvokeResult, InvokeError>>>);

impl Future for ToEnd {
    type Output = Result<InvokeResult, InvokeError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(invocation) = self.0.as_mut() else {
            panic!("an invocation polled after it finished");
        };
        let outcome = std::task::ready!(invocation.as_mut().poll(cx));
        self.0 = None;
        std::task::Poll::Ready(outcome)
    }
}

impl Drop for ToEnd {
    fn drop(&mut self) {
        if let Some(invocation) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(runtime.spawn(invocation));
        }
    }
}

/// Per-invocation options a caller may set.
#[derive(Debug, Default)]
pub struct InvokeOptions {
    /// The request id to use; a fresh one when `None`.
    pub request_id: Option<String>,
    /// Trace header to pass on.
    pub trace_id: Option<String>,
    /// Client context.
    pub client_context: Option<String>,
    /// Where to stream a response the function streams; without it a streamed response
    /// is collected and returned whole, as `Invoke` does on Lambda.
    pub stream: Option<ResponseStream>,
    /// The HTTP request to hand the function as it came, instead of a JSON event: the
    /// gateway sets it, with an empty payload, for wasm functions only (their components
    /// serve HTTP; other runtimes take JSON events). The dispatcher passes it on as
    /// [`Invocation::request`]; the outcome is then an [`Outcome::Http`] or an error.
    pub request: Option<http::Request<bytes::Bytes>>,
}

/// An invocation's result as the caller sees it.
#[derive(Debug, Clone)]
pub struct InvokeResult {
    /// The request id.
    pub request_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The end of its log.
    pub log_tail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

    fn response(headers: &[(&'static str, &'static str)], body: &'static [u8]) -> HttpResponse {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_static(k),
                http::HeaderValue::from_static(v),
            );
        }
        HttpResponse {
            status: http::StatusCode::CREATED,
            headers: map,
            body: bytes::Bytes::from_static(body),
        }
    }

    fn structured(response: &HttpResponse) -> Json {
        serde_json::from_slice(&response.structured_result()).unwrap()
    }

    #[test]
    fn http_responses_become_structured_results() {
        let r = response(
            &[
                ("content-type", "text/plain"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-m", "1"),
                ("x-m", "2"),
            ],
            b"hello",
        );
        assert_eq!(
            structured(&r),
            json!({
                "statusCode": 201,
                "headers": {"content-type": "text/plain", "x-m": "1, 2"},
                "cookies": ["a=1", "b=2"],
                "body": "hello",
                "isBase64Encoded": false
            })
        );
        let result = structured(&response(&[("content-type", "image/png")], b"png"));
        assert_eq!(result["body"], "cG5n");
        assert_eq!(result["isBase64Encoded"], true);
        let result = structured(&response(&[], &[0xff, 0]));
        assert_eq!(result["isBase64Encoded"], true);
        let result = structured(&response(&[], b"{}"));
        assert_eq!(result["body"], "{}");
        assert_eq!(result["isBase64Encoded"], false);
        assert!(result.get("cookies").is_none());
    }

    #[test]
    fn every_outcome_has_a_json_payload() {
        let r = response(&[("content-type", "text/plain")], b"hi");
        assert_eq!(
            Outcome::Http(r.clone()).into_payload(),
            r.structured_result()
        );
        assert_eq!(Outcome::Response(b"1".to_vec()).into_payload(), b"1");
        let error = Outcome::platform_error("Error", "e");
        let Outcome::Error { payload, .. } = error.clone() else {
            unreachable!()
        };
        assert_eq!(error.into_payload(), payload);
    }

    #[test]
    fn platform_errors_are_json() {
        let Outcome::Error { payload, .. } =
            Outcome::platform_error("Sandbox.Timedout", "a \"q\"\n")
        else {
            unreachable!()
        };
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"errorType":"Sandbox.Timedout","errorMessage":"a \"q\"\n"}"#
        );
    }

    #[test]
    fn only_the_platform_times_an_invocation_out() {
        assert!(Outcome::platform_error(TIMEOUT_ERROR, "t").is_timeout());
        assert!(!Outcome::platform_error("Runtime.ExitError", "t").is_timeout());
        let claimed = Outcome::Error {
            error_type: TIMEOUT_ERROR.to_owned(),
            payload: b"{}".to_vec(),
            platform: false,
        };
        assert!(!claimed.is_timeout(), "a function's own error named so");
        assert!(!Outcome::Response(Vec::new()).is_timeout());
    }
}
