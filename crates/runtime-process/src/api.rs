//! The Lambda Runtime API served to one instance on its own loopback port.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Instant, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use nimbus_core::{Invocation, Outcome, ResponseStream, StreamPart};
use tokio::sync::{mpsc, oneshot};

/// The header with which Nimbus's Node.js shim posts an error it is about to exit on (not
/// part of Lambda's Runtime API; other runtimes do not send it).
const EXITING_HEADER: &str = "nimbus-runtime-exiting";

/// Largest response a function may return: Lambda's 6 MB for synchronous invocations,
/// which Lambda counts as 6,291,556 bytes (its refusal names that figure).
pub(crate) const MAX_RESPONSE: usize = 6 * 1024 * 1024 + 100;

/// Most connections the Runtime API of one instance serves at once; more wait in the
/// accept backlog. A runtime uses one or two (`/next`, and an answer); the bound keeps a
/// function from holding the node's file descriptors with idle connections.
const MAX_CONNECTIONS: usize = 16;
/// Largest streamed response: Lambda's 200 MB for response streaming. A caller that does
/// not stream (`Invoke` of a streaming function) gets at most [`MAX_RESPONSE`], as on
/// Lambda.
pub(crate) const MAX_STREAMED: usize = 200 * 1024 * 1024;

/// An invocation waiting for the runtime to take it, with where its outcome goes.
pub(crate) struct Pending {
    pub(crate) invocation: Invocation,
    pub(crate) done: oneshot::Sender<Outcome>,
}

/// The invocation the runtime is working on.
struct Current {
    request_id: String,
    done: oneshot::Sender<Outcome>,
    stream: Option<ResponseStream>,
    /// Whether an answer (`/response` or `/error`) is being received: a second one is
    /// refused before its body is read.
    answering: bool,
}

/// Shared between the API handlers and the instance.
pub(crate) struct ApiState {
    pending: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    current: Mutex<Option<Current>>,
    /// Ids of invocations already answered, to tell "answered twice" from "unknown".
    finished: Mutex<VecDeque<String>>,
    /// An init error the runtime reported before its first invocation.
    init_error: Mutex<Option<Outcome>>,
    /// Whether an `/init/error` is being received.
    init_answering: std::sync::atomic::AtomicBool,
    /// When the runtime first asked for an invocation: the end of its initialisation.
    pub(crate) first_next: Mutex<Option<Instant>>,
    /// Told when the start-up ends: the first `/next`, or an `/init/error`.
    pub(crate) initialised: tokio::sync::Notify,
    /// Whether the runtime said, with an invocation's error, that it is exiting (a Node.js
    /// crash: an uncaught exception): its instance must not be handed another
    /// invocation, which would meet a process on its way out.
    pub(crate) exiting: std::sync::atomic::AtomicBool,
    function_arn: String,
}

impl ApiState {
    pub(crate) fn new(pending: mpsc::Receiver<Pending>, function_arn: String) -> Arc<ApiState> {
        Arc::new(ApiState {
            pending: tokio::sync::Mutex::new(pending),
            current: Mutex::new(None),
            finished: Mutex::new(VecDeque::new()),
            init_error: Mutex::new(None),
            init_answering: std::sync::atomic::AtomicBool::new(false),
            first_next: Mutex::new(None),
            initialised: tokio::sync::Notify::new(),
            exiting: std::sync::atomic::AtomicBool::new(false),
            function_arn,
        })
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Completes the current invocation if it is `request_id`.
    fn complete(&self, request_id: &str, outcome: Outcome) -> Result<(), StatusCode> {
        let mut current = Self::lock(&self.current);
        match current.take() {
            Some(c) if c.request_id == request_id => {
                let _ = c.done.send(outcome);
                let mut finished = Self::lock(&self.finished);
                finished.push_back(c.request_id);
                if finished.len() > 64 {
                    finished.pop_front();
                }
                Ok(())
            }
            other => {
                *current = other;
                Err(self.not_current(request_id))
            }
        }
    }

    /// Why `request_id` cannot be answered: answered already (403) or unknown (400).
    fn not_current(&self, request_id: &str) -> StatusCode {
        if Self::lock(&self.finished).iter().any(|id| id == request_id) {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    /// Takes the answering of the current invocation `request_id`, before its body is
    /// read: one answer at a time, so that what a runtime can make the node hold is one
    /// payload, and a second answer (another `/response` during a streamed one) is
    /// refused. Gives where the invocation streams to, if its caller streams.
    fn claim(&self, request_id: &str) -> Result<Option<ResponseStream>, StatusCode> {
        match &mut *Self::lock(&self.current) {
            Some(c) if c.request_id == request_id && !c.answering => {
                c.answering = true;
                Ok(c.stream.clone())
            }
            Some(c) if c.request_id == request_id => Err(StatusCode::FORBIDDEN),
            _ => Err(self.not_current(request_id)),
        }
    }

    /// The init error, if the runtime reported one.
    pub(crate) fn init_error(&self) -> Option<Outcome> {
        Self::lock(&self.init_error).clone()
    }
}

/// The Runtime API's listener, holding at most [`MAX_CONNECTIONS`] connections.
pub(crate) struct Capped {
    listener: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Capped {
    pub(crate) fn new(listener: tokio::net::TcpListener) -> Capped {
        Capped {
            listener,
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl axum::serve::Listener for Capped {
    type Io = CappedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (CappedStream, std::net::SocketAddr) {
        // The semaphore is never closed.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        let (stream, peer) = axum::serve::Listener::accept(&mut self.listener).await;
        (
            CappedStream {
                stream,
                _permit: permit,
            },
            peer,
        )
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection of [`Capped`], holding its place until it closes.
pub(crate) struct CappedStream {
    stream: tokio::net::TcpStream,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl tokio::io::AsyncRead for CappedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CappedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

fn error_body(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string(),
    )
        .into_response()
}

pub(crate) fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        // The limit is checked by hand to answer 413 in the Runtime API's own shape.
        .layer(DefaultBodyLimit::max(MAX_RESPONSE * 2))
        .with_state(state)
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    {
        let mut first = ApiState::lock(&state.first_next);
        if first.is_none() {
            *first = Some(Instant::now());
            // A permit is kept if nobody waits yet.
            state.initialised.notify_one();
        }
    }
    let pending = state.pending.lock().await.recv().await;
    let Some(Pending { invocation, done }) = pending else {
        // The instance is stopping.
        return error_body(
            StatusCode::GONE,
            "Runtime.Stopping",
            "the instance is stopping",
        );
    };
    if let Some(init_error) = state.init_error() {
        let _ = done.send(init_error);
        return error_body(
            StatusCode::GONE,
            "Runtime.InitError",
            "initialisation failed",
        );
    }
    *ApiState::lock(&state.current) = Some(Current {
        request_id: invocation.request_id.clone(),
        done,
        stream: invocation.stream,
        answering: false,
    });
    let deadline_ms = invocation
        .deadline
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut response = Response::new(axum::body::Body::from(invocation.payload));
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &invocation.request_id);
    set("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &state.function_arn);
    if let Some(trace) = &invocation.trace_id {
        set("lambda-runtime-trace-id", trace);
    }
    if let Some(context) = &invocation.client_context {
        set("lambda-runtime-client-context", context);
    }
    response
}

async fn response(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let sink = match state.claim(&id) {
        Ok(sink) => sink,
        Err(status) => return answer_error(status),
    };
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"streaming"));
    if streaming {
        return streamed(&state, &id, &headers, body, sink).await;
    }
    match payload(body).await {
        Ok(body) => answer(&state, &id, Outcome::Response(body.to_vec())),
        Err(size) => too_large(&state, &id, size, MAX_RESPONSE),
    }
}

/// A response or error payload, or how many bytes of it were seen when it is over
/// [`MAX_RESPONSE`]. Up to twice the limit is read, so that most refusals can say the
/// payload's size; a body that cannot be read whole counts as that much.
async fn payload(body: axum::body::Body) -> Result<axum::body::Bytes, usize> {
    match axum::body::to_bytes(body, MAX_RESPONSE * 2).await {
        Ok(body) if body.len() <= MAX_RESPONSE => Ok(body),
        Ok(body) => Err(body.len()),
        Err(_) => Err(MAX_RESPONSE * 2),
    }
}

/// Ends invocation `id` as too large (at least `size` bytes against `limit`).
fn too_large(state: &ApiState, id: &str, size: usize, limit: usize) -> Response {
    let _ = state.complete(
        id,
        Outcome::platform_error(
            "Function.ResponseSizeTooLarge",
            &format!(
                "Response payload size ({size} bytes) exceeded maximum allowed payload size ({limit} bytes)."
            ),
        ),
    );
    error_body(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        &format!("Exceeded maximum allowed payload size ({limit} bytes)."),
    )
}

/// A streamed response: each chunk goes to the caller as it arrives when the caller
/// streams, else is collected; error trailers (`Lambda-Runtime-Function-Error-Type`,
/// `Lambda-Runtime-Function-Error-Body` in base64) end it as a function error.
async fn streamed(
    state: &ApiState,
    id: &str,
    headers: &HeaderMap,
    mut body: axum::body::Body,
    sink: Option<ResponseStream>,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    if let Some(sink) = &sink {
        // A caller that went away still lets the function finish, as on Lambda.
        let _ = sink.send(StreamPart::Start { content_type }).await;
    }
    let mut collected = Vec::new();
    let mut size = 0;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                failure = Some(Outcome::platform_error(
                    "Runtime.StreamError",
                    &format!("the response stream broke: {e}"),
                ));
                break;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                size += data.len();
                let limit = if sink.is_some() {
                    MAX_STREAMED
                } else {
                    MAX_RESPONSE
                };
                if size > limit {
                    return too_large(state, id, size, limit);
                }
                match &sink {
                    Some(sink) => {
                        let _ = sink.send(StreamPart::Chunk(data.to_vec())).await;
                    }
                    None => collected.extend_from_slice(&data),
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers()
                    && let Some(error_type) = trailers
                        .get("lambda-runtime-function-error-type")
                        .and_then(|v| v.to_str().ok())
                {
                    if trailers.contains_key(EXITING_HEADER) {
                        state
                            .exiting
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    let payload = trailers
                        .get("lambda-runtime-function-error-body")
                        .and_then(|v| {
                            base64::engine::general_purpose::STANDARD
                                .decode(v.as_bytes())
                                .ok()
                        })
                        .unwrap_or_default();
                    failure = Some(Outcome::Error {
                        error_type: error_type.to_owned(),
                        payload,
                        platform: false,
                    });
                }
            }
        }
    }
    answer(state, id, failure.unwrap_or(Outcome::Response(collected)))
}

async fn error(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if let Err(status) = state.claim(&id) {
        return answer_error(status);
    }
    // An error body is a response payload, with its limit; one too large still ends the
    // invocation instead of leaving it to its time-out.
    let body = match payload(body).await {
        Ok(body) => body,
        Err(size) => return too_large(&state, &id, size, MAX_RESPONSE),
    };
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_owned();
    // Nimbus's own shims say so when the error is the last thing they do.
    if headers.contains_key(EXITING_HEADER) {
        state
            .exiting
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    answer(
        &state,
        &id,
        Outcome::Error {
            error_type,
            payload: body.to_vec(),
            platform: false,
        },
    )
}

fn answer(state: &ApiState, id: &str, outcome: Outcome) -> Response {
    match state.complete(id, outcome) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            [("content-type", "application/json")],
            r#"{"status":"OK"}"#,
        )
            .into_response(),
        Err(status) => answer_error(status),
    }
}

fn answer_error(status: StatusCode) -> Response {
    match status {
        StatusCode::FORBIDDEN => error_body(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition from Ready to InvocationResponse failed: the invocation is answered already",
        ),
        status => error_body(status, "InvalidRequestID", "Invalid request ID"),
    }
}

async fn init_error(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Only during the start-up, one at a time, as on Lambda (after the first `/next` the
    // runtime reports errors per invocation).
    if ApiState::lock(&state.first_next).is_some()
        || state
            .init_answering
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return error_body(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition to InitError failed: the runtime is not initialising",
        );
    }
    // Held to the response's limit as `/error` is; a larger one is still an init error.
    let outcome = match payload(body).await {
        Ok(body) => Outcome::Error {
            error_type: headers
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("Runtime.Unknown")
                .to_owned(),
            payload: body.to_vec(),
            platform: false,
        },
        Err(size) => Outcome::platform_error(
            "Function.ResponseSizeTooLarge",
            &format!(
                "Init error payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE} bytes)."
            ),
        ),
    };
    *ApiState::lock(&state.init_error) = Some(outcome.clone());
    // The start-up is over: an invocation waiting for it gets the error.
    state.initialised.notify_one();
    // An invocation already waiting gets the init error as its outcome.
    if let Some(current) = ApiState::lock(&state.current).take() {
        let _ = current.done.send(outcome);
    }
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        r#"{"status":"OK"}"#,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use axum::body::{Body, Bytes};
    use tower::ServiceExt as _;

    use super::*;

    async fn call(app: &Router, method: &str, path: &str, body: Body) -> Response {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(body)
            .unwrap();
        app.clone().oneshot(request).await.unwrap()
    }

    /// An API whose runtime has taken invocation `r-1`; its outcome comes on the receiver.
    async fn taken() -> (Arc<ApiState>, Router, oneshot::Receiver<Outcome>) {
        let (tx, rx) = mpsc::channel(1);
        let state = ApiState::new(rx, "arn".to_owned());
        let app = router(Arc::clone(&state));
        let (done, outcome) = oneshot::channel();
        let invocation = Invocation {
            request_id: "r-1".to_owned(),
            payload: b"{}".to_vec(),
            request: None,
            deadline: SystemTime::now() + Duration::from_secs(60),
            trace_id: None,
            client_context: None,
            stream: None,
        };
        tx.send(Pending { invocation, done }).await.unwrap();
        let next = call(
            &app,
            "GET",
            "/2018-06-01/runtime/invocation/next",
            Body::empty(),
        )
        .await;
        assert_eq!(next.status(), StatusCode::OK);
        (state, app, outcome)
    }

    #[tokio::test]
    async fn a_second_answer_while_the_first_is_received_is_refused() {
        let (_state, app, outcome) = taken().await;
        // A response whose body is still coming.
        let (chunks, body) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let stream = futures_util::stream::unfold(body, |mut body| async move {
            body.recv().await.map(|chunk| (chunk, body))
        });
        let first = tokio::spawn({
            let app = app.clone();
            async move {
                call(
                    &app,
                    "POST",
                    "/2018-06-01/runtime/invocation/r-1/response",
                    Body::from_stream(stream),
                )
                .await
            }
        });
        // The second chunk finds room once the first is read: the first answer has
        // claimed the invocation by then.
        chunks.send(Ok(Bytes::from_static(b"\"par"))).await.unwrap();
        chunks.send(Ok(Bytes::from_static(b"ti"))).await.unwrap();
        let second = call(
            &app,
            "POST",
            "/2018-06-01/runtime/invocation/r-1/error",
            Body::from("{}"),
        )
        .await;
        assert_eq!(second.status(), StatusCode::FORBIDDEN);
        chunks.send(Ok(Bytes::from_static(b"al\""))).await.unwrap();
        drop(chunks);
        assert_eq!(first.await.unwrap().status(), StatusCode::ACCEPTED);
        match outcome.await.unwrap() {
            Outcome::Response(body) => assert_eq!(body, b"\"partial\""),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_error_the_runtime_exits_on_marks_the_instance_spent() {
        let (state, app, outcome) = taken().await;
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/2018-06-01/runtime/invocation/r-1/error")
            .header("lambda-runtime-function-error-type", "TypeError")
            .header(EXITING_HEADER, "1")
            .body(Body::from("{}"))
            .unwrap();
        let r = app.clone().oneshot(request).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(state.exiting.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(outcome.await.unwrap(), Outcome::Error { .. }));
        // A plain error leaves the process in service.
        let (state, app, _outcome) = taken().await;
        let r = call(
            &app,
            "POST",
            "/2018-06-01/runtime/invocation/r-1/error",
            Body::from("{}"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(!state.exiting.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn an_init_error_after_the_start_up_is_refused() {
        let (state, app, _outcome) = taken().await;
        let r = call(
            &app,
            "POST",
            "/2018-06-01/runtime/init/error",
            Body::from("{}"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(state.init_error().is_none());
    }
}
