//! The Lambda REST API (`2015-03-31`) on the services endpoint: Invoke (synchronous, and
//! asynchronous through the durable event queue), GetFunction and ListFunctions, as the
//! AWS CLI and SDKs call them. Operations it does not serve (CreateFunction, DeleteFunction,
//! ...) get `UnknownOperationException`, whether their path is unknown here or only their
//! method.

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri},
    routing::{get, post},
};
use base64::Engine as _;
use nimbus_core::{
    AppSpec, FunctionSpec, Invoke, InvokeError, InvokeOptions, Outcome, RuntimeKind, ThrottleLimit,
    invoke_to_end, trace::TraceContext,
};
use nimbus_events::{AsyncQueue, EventMeta};
use serde_json::{Value as Json, json};

/// What the Lambda API needs: the app's functions, the dispatcher and the async queue.
pub(crate) struct Lambda {
    pub(crate) functions: Arc<dyn Functions>,
    pub(crate) invoker: Arc<dyn Invoke>,
    pub(crate) region: String,
    pub(crate) events: Arc<AsyncQueue>,
}

/// Where the Lambda API reads the functions' settings: the dispatcher's, which a reload
/// of `nimbus up` updates, so that GetFunction and ListFunctions show what invocations
/// run with rather than the app as it was at start.
pub(crate) trait Functions: Send + Sync {
    /// A function's settings.
    fn function(&self, name: &str) -> Option<Arc<FunctionSpec>>;
    /// Every function's, in no order.
    fn all(&self) -> Vec<Arc<FunctionSpec>>;
}

impl Functions for nimbus_dispatch::Dispatcher {
    fn function(&self, name: &str) -> Option<Arc<FunctionSpec>> {
        nimbus_dispatch::Dispatcher::function(self, name)
    }

    fn all(&self) -> Vec<Arc<FunctionSpec>> {
        self.functions()
    }
}

/// An app's functions as they are (tests).
impl Functions for AppSpec {
    fn function(&self, name: &str) -> Option<Arc<FunctionSpec>> {
        self.functions.get(name).cloned().map(Arc::new)
    }

    fn all(&self) -> Vec<Arc<FunctionSpec>> {
        self.functions.values().cloned().map(Arc::new).collect()
    }
}

/// Lambda's most bytes returned in `X-Amz-Log-Result`.
pub(crate) const LOG_TAIL: usize = 4096;

/// Lambda's largest payload of an asynchronous invocation (1 MB).
pub(crate) const MAX_ASYNC_PAYLOAD: usize = nimbus_events::MAX_EVENT_PAYLOAD;

/// Lambda's largest request of a synchronous invocation (6 MB).
pub(crate) const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;

pub(crate) fn router(lambda: Arc<Lambda>) -> Router {
    Router::new()
        .route("/2015-03-31/functions", get(list_functions))
        .route("/2015-03-31/functions/", get(list_functions))
        .route("/2015-03-31/functions/{name}", get(get_function))
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route(
            "/2021-11-15/functions/{name}/response-streaming-invocations",
            post(crate::lambda_stream::invoke_with_response_stream),
        )
        // CreateFunction is `POST /2015-03-31/functions`, DeleteFunction `DELETE` on a
        // function's path: operations Nimbus does not serve, answered as an unknown path is
        // rather than with a bare 405 that SDKs cannot read.
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            unknown_operation(&method, uri.path())
        })
        .with_state(lambda)
}

/// Lambda's answer to an operation Nimbus does not serve.
pub(crate) fn unknown_operation(method: &Method, path: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        &format!("{method} {path} is not an operation this version of Nimbus supports"),
    )
}

pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    // Lambda says whose fault it was: the caller's, or the service's (a 5xx).
    let whose = if status.is_server_error() {
        "Service"
    } else {
        "User"
    };
    let mut response = Response::new(Body::from(
        json!({ "Type": whose, "message": message }).to_string(),
    ));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(kind) {
        headers.insert("x-amzn-errortype", v);
    }
    response
}

fn json_response(body: &Json) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// A function name from a path, which may also be a full or partial ARN, either with a
/// `:qualifier` (a version or an alias).
pub(crate) fn function_name(name: &str) -> &str {
    split_name(name).0
}

/// The qualifier a path's function name carries (`orders:$LATEST`, `...:function:orders:7`).
fn qualifier(name: &str) -> Option<&str> {
    split_name(name).1
}

/// A path's function name (a name or an ARN) as the name and its qualifier, if any.
fn split_name(name: &str) -> (&str, Option<&str>) {
    let name = name
        .rsplit_once(":function:")
        .map_or(name, |(_, rest)| rest);
    match name.split_once(':') {
        Some((name, qualifier)) => (name, Some(qualifier)),
        None => (name, None),
    }
}

/// The `Qualifier` query parameter of Lambda's function paths.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// The path's function name with the query's `Qualifier`, when the name has none of its
/// own. `Err` is Lambda's answer to a query that does not parse (`Qualifier` twice, for
/// one), and to a name whose qualifier is not the query's: either way the caller named
/// two things, and Lambda refuses to guess which was meant.
pub(crate) fn qualified(
    name: String,
    query: Result<Query<QualifierQuery>, QueryRejection>,
) -> Result<String, Box<Response<Body>>> {
    let Query(query) = query.map_err(|rejection| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &rejection.body_text(),
        ))
    })?;
    match (query.qualifier, qualifier(&name)) {
        (Some(q), None) => Ok(format!("{name}:{q}")),
        (Some(q), Some(own)) if q != own => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "The derived qualifier from the function name does not match the specified qualifier.",
        ))),
        _ => Ok(name),
    }
}

fn arn(region: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:000000000000:function:{name}")
}

/// The Lambda API's page size bounds for ListFunctions' `MaxItems` (and its default).
const MAX_ITEMS: std::ops::RangeInclusive<usize> = 1..=10_000;
const DEFAULT_MAX_ITEMS: usize = 50;

impl Lambda {
    /// The function a path names. Only `$LATEST` is served: Nimbus publishes no versions
    /// and has no aliases, so any other qualifier names a function that is not there. A
    /// full ARN names a function of this node only when it is a Lambda ARN of this node's
    /// region: one of another region's `orders` is not the local `orders`.
    pub(crate) fn function(&self, name: &str) -> Option<Arc<FunctionSpec>> {
        if qualifier(name).is_some_and(|q| q != "$LATEST") || self.is_elsewhere(name) {
            return None;
        }
        self.functions.function(function_name(name))
    }

    /// Whether `name` is a full ARN of another service or region
    /// (`arn:PARTITION:SERVICE:REGION:ACCOUNT:function:NAME`).
    fn is_elsewhere(&self, name: &str) -> bool {
        let Some(arn) = name.strip_prefix("arn:") else {
            return false;
        };
        let mut fields = arn.splitn(4, ':').skip(1);
        fields.next() != Some("lambda") || fields.next() != Some(self.region.as_str())
    }

    /// Lambda's answer for a function a path names that is not here: the ARN the caller
    /// gave, or this node's ARN for a bare name.
    pub(crate) fn not_found(&self, name: &str) -> Response<Body> {
        let arn = if name.starts_with("arn:") {
            name.to_owned()
        } else {
            arn(&self.region, function_name(name))
        };
        error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {arn}"),
        )
    }

    fn configuration(&self, f: &FunctionSpec) -> Json {
        let runtime = match (f.runtime.kind, f.runtime.identifier.as_str()) {
            (RuntimeKind::Nodejs, "nodejs") => "nodejs20.x",
            (RuntimeKind::Python, "python") => "python3.11",
            (RuntimeKind::Provided, "provided") => "provided.al2023",
            (_, id) => id,
        };
        json!({
            "FunctionName": f.name,
            "FunctionArn": arn(&self.region, &f.name),
            "Runtime": runtime,
            "Role": "arn:aws:iam::000000000000:role/nimbus",
            "Handler": f.handler.clone().unwrap_or_default(),
            "CodeSize": 0,
            "Description": "",
            "Timeout": f.timeout.as_secs(),
            "MemorySize": f.memory_mb,
            "Version": "$LATEST",
            "Environment": { "Variables": f.environment },
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": [std::env::consts::ARCH.replace("aarch64", "arm64")],
        })
    }
}

/// ListFunctions' paging parameters, as text: Lambda's own message is given for a
/// `MaxItems` that is not a number in range, rather than the query parser's.
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
}

/// ListFunctions: the functions in name order, `MaxItems` at a time. The marker is the
/// name of the last function of the page before, so a page follows on even when the app
/// was reloaded in between.
async fn list_functions(
    State(lambda): State<Arc<Lambda>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response<Body> {
    let invalid = |message: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    };
    let Ok(Query(query)) = query else {
        return invalid("The query string could not be parsed.");
    };
    let max_items = match query.max_items.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_MAX_ITEMS,
        Some(Ok(n)) if MAX_ITEMS.contains(&n) => n,
        Some(_) => return invalid("MaxItems must be a number from 1 to 10000."),
    };
    let mut functions = lambda.functions.all();
    functions.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut names = functions
        .iter()
        // After the marker: the last name of the page before.
        .filter(|f| {
            query
                .marker
                .as_deref()
                .is_none_or(|marker| f.name.as_str() > marker)
        });
    let page: Vec<&Arc<FunctionSpec>> = names.by_ref().take(max_items).collect();
    let mut body = json!({
        "Functions": page.iter().map(|f| lambda.configuration(f)).collect::<Vec<_>>(),
    });
    if names.next().is_some()
        && let Some(last) = page.last()
    {
        body["NextMarker"] = json!(last.name);
    }
    json_response(&body)
}

async fn get_function(
    State(lambda): State<Arc<Lambda>>,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
) -> Response<Body> {
    let name = match qualified(name, query) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    match lambda.function(&name) {
        Some(f) => json_response(&json!({
            "Configuration": lambda.configuration(&f),
            "Code": { "RepositoryType": "Nimbus", "Location": f.code.display().to_string() },
        })),
        None => lambda.not_found(&name),
    }
}

/// An invocation request, checked: what to invoke, with what, and how.
pub(crate) struct Prepared {
    /// The function's name.
    pub(crate) function: String,
    /// The event.
    pub(crate) payload: Vec<u8>,
    /// Trace and client context from the request.
    pub(crate) options: InvokeOptions,
    /// Whether the log tail was asked for (`X-Amz-Log-Type: Tail`).
    pub(crate) tail: bool,
}

impl Lambda {
    /// Checks an invocation request: the function exists, the payload is JSON, and the
    /// invocation type is one that runs now; otherwise the answer to give.
    pub(crate) fn prepare(
        &self,
        name: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Prepared, Box<Response<Body>>> {
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if body.len() > MAX_SYNC_PAYLOAD {
            return Err(Box::new(too_large()));
        }
        let Some(function) = self.function(name) else {
            return Err(Box::new(self.not_found(name)));
        };
        let payload = if body.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            body
        };
        if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                "Could not parse request body into json: Could not parse payload into json",
            )));
        }
        match header("x-amz-invocation-type")
            .as_deref()
            .unwrap_or("RequestResponse")
        {
            "RequestResponse" => {}
            "DryRun" => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::NO_CONTENT;
                return Err(Box::new(response));
            }
            "Event" => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValueException",
                    "InvocationType Event is not supported by InvokeWithResponseStream; use Invoke",
                )));
            }
            other => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValueException",
                    &format!("Unsupported InvocationType: {other}"),
                )));
            }
        }
        let client_context = client_context(headers)?;
        Ok(Prepared {
            function: function.name.clone(),
            payload: payload.to_vec(),
            options: InvokeOptions {
                request_id: None,
                trace_id: caller_trace(headers),
                client_context,
                stream: None,
                request: None,
            },
            tail: header("x-amz-log-type").as_deref() == Some("Tail"),
        })
    }

    /// The answer for an invocation that could not run. A throttled caller is told which
    /// limit it hit, as Lambda's `Reason` does (the SDKs' retry logic reads the 429 alone),
    /// and when to try again: the dispatcher has already queued it for up to its queue
    /// wait, so capacity frees up on the scale of an invocation, not of minutes.
    pub(crate) fn refused(&self, e: InvokeError, name: &str) -> Response<Body> {
        match e {
            InvokeError::Throttled(limit) => {
                let reason = match limit {
                    ThrottleLimit::Node => "ConcurrentInvocationLimitExceeded",
                    ThrottleLimit::Function => "ReservedFunctionConcurrentInvocationLimitExceeded",
                };
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                );
                *response.body_mut() = Body::from(
                    json!({ "Reason": reason, "Type": "User", "message": "Rate Exceeded." })
                        .to_string(),
                );
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static(RETRY_AFTER_SECS));
                response
            }
            InvokeError::NotFound(_) => self.not_found(name),
            InvokeError::Unavailable(reason) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &reason,
            ),
        }
    }
}

/// `Retry-After` of a throttled invocation, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// Lambda's largest `X-Amz-Client-Context`: 3,583 bytes of base64.
const MAX_CLIENT_CONTEXT: usize = 3583;

/// The caller's client context (`X-Amz-Client-Context`, base64 of a JSON object) as the
/// function gets it: the JSON object itself, on one line and in ASCII (it travels as a
/// header, which the runtimes' HTTP clients decode as Latin-1: raw UTF-8 would arrive
/// garbled, a `\u` escape arrives as the character), which the runtimes parse. `Err` is
/// the answer to a header over Lambda's limit or that is not base64 of an object.
fn client_context(headers: &HeaderMap) -> Result<Option<String>, Box<Response<Body>>> {
    let Some(header) = headers.get("x-amz-client-context") else {
        return Ok(None);
    };
    if header.len() > MAX_CLIENT_CONTEXT {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            &format!(
                "Client context must be at most {MAX_CLIENT_CONTEXT} bytes of Base64-encoded data."
            ),
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header.as_bytes())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Json>>(&bytes).ok());
    match decoded {
        Some(object) => Ok(Some(ascii_json(&Json::Object(object)))),
        None => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Client context must be a valid Base64-encoded JSON object.",
        ))),
    }
}

/// `value` as compact JSON in ASCII alone: other characters as `\uXXXX` escapes (UTF-16,
/// so a character beyond the Basic Multilingual Plane is a surrogate pair), which any
/// JSON parser reads back as the same text.
fn ascii_json(value: &Json) -> String {
    struct Ascii;
    impl serde_json::ser::Formatter for Ascii {
        fn write_string_fragment<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
            for c in fragment.chars() {
                if c.is_ascii() {
                    writer.write_all(&[c as u8])?;
                } else {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        write!(writer, "\\u{unit:04x}")?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, Ascii);
    // Writing a `Value` to memory fails only on I/O, which a `Vec` never has.
    serde::Serialize::serialize(value, &mut serializer).expect("a Value serialises to a Vec");
    // Only ASCII was written.
    String::from_utf8(out).expect("ASCII is UTF-8")
}

/// The longest X-Ray trace header passed on (Lambda's own `TraceHeader.XAmznTraceId`
/// is at most 8,192 characters).
const MAX_TRACE_HEADER: usize = 8192;

/// The caller's X-Ray trace header, passed on as sent (a client's `Root=...;Sampled=1`
/// without a `Parent`, or with a `Lineage`, is as valid as a full one), or `None` when it is
/// absent, not text, longer than [`MAX_TRACE_HEADER`] or without a valid `Root`.
fn caller_trace(headers: &HeaderMap) -> Option<String> {
    let header = headers.get("x-amzn-trace-id")?.to_str().ok()?;
    (header.len() <= MAX_TRACE_HEADER && TraceContext::has_xray_root(header))
        .then(|| header.to_owned())
}

/// Lambda's answer to a synchronous invocation's request over 6 MB.
fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLargeException",
        &format!(
            "Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation"
        ),
    )
}

/// An invocation's request body, or Lambda's answer when it cannot be read: above the
/// services endpoint's body limit it is too large, as a smaller one over 6 MB is.
pub(crate) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Response<Body>>> {
    body.map_err(|rejection| {
        Box::new(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            error(
                rejection.status(),
                "InvalidRequestContentException",
                &rejection.body_text(),
            )
        })
    })
}

/// `Invoke` with `X-Amz-Invocation-Type: Event`: checks the function and the payload,
/// queues the event durably and answers 202 with the event's request id, which is also
/// the request id the function sees when it runs.
async fn invoke_async(
    lambda: &Lambda,
    name: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Some(function) = lambda.function(name) else {
        return lambda.not_found(name);
    };
    if body.len() > MAX_ASYNC_PAYLOAD {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            &format!(
                "{} byte payload is too large for the Event invocation type (limit {MAX_ASYNC_PAYLOAD} bytes)",
                body.len()
            ),
        );
    }
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json: Could not parse payload into json",
        );
    }
    let meta = EventMeta {
        // The event carries the context of the request that enqueued it.
        trace_id: nimbus_core::trace::current()
            .map(|cx| cx.xray())
            .or_else(|| caller_trace(headers)),
        // Lambda passes a client context to synchronous invocations only.
        client_context: None,
    };
    match lambda
        .events
        .enqueue(&function.name, payload.to_vec(), meta)
        .await
    {
        Ok(id) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::ACCEPTED;
            if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
                response.headers_mut().insert("x-amzn-requestid", v);
            }
            response
        }
        Err(e) => {
            tracing::error!(function = %function.name, error = %e, "cannot queue an async invocation");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "The event could not be queued; nothing was accepted. Retry the request.",
            )
        }
    }
}

async fn invoke(
    State(lambda): State<Arc<Lambda>>,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    let name = match qualified(name, query) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let body = match read_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if headers
        .get("x-amz-invocation-type")
        .is_some_and(|v| v.as_bytes() == b"Event")
    {
        return invoke_async(&lambda, &name, &headers, body).await;
    }
    let Prepared {
        function,
        payload,
        options,
        tail,
    } = match lambda.prepare(&name, &headers, body) {
        Ok(prepared) => prepared,
        Err(response) => return *response,
    };
    // Run to its end if the caller stops waiting (an SDK's read time-out), as on Lambda.
    let result = match invoke_to_end(&lambda.invoker, &function, payload, options).await {
        Ok(result) => result,
        Err(e) => return lambda.refused(e, &name),
    };
    let (body, function_error) = match result.outcome {
        Outcome::Response(bytes) => (bytes, None),
        // Only the gateway's HTTP requests are answered so; a success all the same.
        Outcome::Http(response) => (response.structured_result(), None),
        Outcome::Error { payload, .. } => (payload, Some("Unhandled")),
    };
    let mut response = Response::new(Body::from(body));
    let out = response.headers_mut();
    out.insert("content-type", HeaderValue::from_static("application/json"));
    out.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    if let Ok(v) = HeaderValue::from_str(&result.request_id) {
        out.insert("x-amzn-requestid", v);
    }
    if let Some(kind) = function_error {
        out.insert("x-amz-function-error", HeaderValue::from_static(kind));
    }
    if tail {
        let tail = result.log_tail.as_bytes();
        let tail = &tail[tail.len().saturating_sub(LOG_TAIL)..];
        if let Ok(v) =
            HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(tail))
        {
            out.insert("x-amz-log-result", v);
        }
    }
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use nimbus_core::{BoxFuture, InvokeResult};

    use super::*;

    fn with_trace(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-trace-id", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn function_names_may_be_arns_and_carry_a_qualifier() {
        for (path, name, q) in [
            ("orders", "orders", None),
            ("orders:$LATEST", "orders", Some("$LATEST")),
            ("123456789012:function:orders", "orders", None),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:orders:7",
                "orders",
                Some("7"),
            ),
        ] {
            assert_eq!((function_name(path), qualifier(path)), (name, q), "{path}");
        }
        let query = |q: Option<&str>| {
            Ok(Query(QualifierQuery {
                qualifier: q.map(str::to_owned),
            }))
        };
        let qualified = |name: &str, q| qualified(name.to_owned(), query(q)).ok();
        assert_eq!(
            qualified("orders", Some("live")).as_deref(),
            Some("orders:live")
        );
        assert_eq!(
            qualified("orders:7", Some("7")).as_deref(),
            Some("orders:7")
        );
        assert_eq!(qualified("orders:7", None).as_deref(), Some("orders:7"));
        assert_eq!(qualified("orders", None).as_deref(), Some("orders"));
        assert_eq!(qualified("orders:7", Some("live")), None);
    }

    #[test]
    fn a_client_context_is_passed_on_decoded() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-amz-client-context",
                HeaderValue::from_str(value).unwrap(),
            );
            headers
        };
        // base64 of {"custom":{"a":"b"}}
        let decoded = client_context(&with("eyJjdXN0b20iOnsiYSI6ImIifX0=")).unwrap();
        assert_eq!(decoded.as_deref(), Some(r#"{"custom":{"a":"b"}}"#));
        assert_eq!(client_context(&HeaderMap::new()).unwrap(), None);
        // Pretty-printed: passed on as one line.
        let pretty = base64::engine::general_purpose::STANDARD.encode("{\n  \"custom\": {}\n}");
        let compact = client_context(&with(&pretty)).unwrap();
        assert_eq!(compact.as_deref(), Some(r#"{"custom":{}}"#));
        // Not base64; base64 of something that is not JSON; of JSON that is no object.
        for bad in ["{\"custom\":{}}", "bm90IGpzb24=", "MTIz"] {
            let refused = client_context(&with(bad)).unwrap_err();
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn a_client_context_travels_in_ascii() {
        let mut headers = HeaderMap::new();
        let sent = r#"{"custom":{"name":"José 😀","ü":"\"x\""}}"#;
        let encoded = base64::engine::general_purpose::STANDARD.encode(sent);
        headers.insert(
            "x-amz-client-context",
            HeaderValue::from_str(&encoded).unwrap(),
        );
        let passed = client_context(&headers).unwrap().unwrap();
        assert_eq!(
            passed,
            r#"{"custom":{"name":"Jos\u00e9 \ud83d\ude00","\u00fc":"\"x\""}}"#
        );
        // Read back as a runtime does (the header's bytes as Latin-1, which ASCII is).
        let read: Json = serde_json::from_str(&passed).unwrap();
        assert_eq!(read, serde_json::from_str::<Json>(sent).unwrap());
    }

    #[test]
    fn a_caller_trace_header_with_a_root_is_passed_on_as_sent() {
        for raw in [
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            "Sampled=0; Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a87bd80c:0",
        ] {
            assert_eq!(caller_trace(&with_trace(raw)).as_deref(), Some(raw));
        }
    }

    #[test]
    fn a_caller_trace_header_that_is_not_one_is_dropped() {
        let long = format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Pad={}",
            "x".repeat(MAX_TRACE_HEADER)
        );
        for raw in ["", "hello", "Root=2-0-0;Parent=1", "Root=1-xyz-0", &long] {
            assert_eq!(caller_trace(&with_trace(raw)), None, "{raw}");
        }
        assert_eq!(caller_trace(&HeaderMap::new()), None);
    }

    /// A fake invoker: answers each invocation with `answer`, and keeps what it was asked.
    pub(crate) struct Fake {
        answer: Box<
            dyn Fn(InvokeOptions) -> BoxFuture<'static, Result<InvokeResult, InvokeError>>
                + Send
                + Sync,
        >,
        pub(crate) calls: std::sync::Mutex<Vec<(String, Option<String>)>>,
    }

    impl Invoke for Fake {
        fn invoke(
            &self,
            function: &str,
            _payload: Vec<u8>,
            options: InvokeOptions,
        ) -> BoxFuture<'_, Result<InvokeResult, InvokeError>> {
            self.calls
                .lock()
                .unwrap()
                .push((function.to_owned(), options.client_context.clone()));
            (self.answer)(options)
        }
    }

    /// A successful invocation's result.
    pub(crate) fn answered(body: &[u8]) -> Result<InvokeResult, InvokeError> {
        Ok(InvokeResult {
            request_id: "req".to_owned(),
            outcome: Outcome::Response(body.to_vec()),
            log_tail: String::new(),
        })
    }

    /// The Lambda API of a node in `us-east-1` with functions named `names`, whose
    /// invocations `answer` answers; the directory holds the event queue.
    pub(crate) fn api(
        names: &[&str],
        answer: impl Fn(InvokeOptions) -> BoxFuture<'static, Result<InvokeResult, InvokeError>>
        + Send
        + Sync
        + 'static,
    ) -> (Router, Arc<Fake>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(AsyncQueue::open(&dir.path().join("events.redb")).unwrap());
        let mut app = AppSpec::named("test");
        for name in names {
            let function = FunctionSpec {
                concurrency: nimbus_core::Concurrency {
                    max: 1,
                    min_warm: 0,
                },
                ..FunctionSpec::new(*name, "provided.al2023".parse().unwrap(), "code")
            };
            app.functions.insert((*name).to_owned(), function);
        }
        let fake = Arc::new(Fake {
            answer: Box::new(answer),
            calls: Default::default(),
        });
        let lambda = Lambda {
            functions: Arc::new(app),
            invoker: Arc::clone(&fake) as Arc<dyn Invoke>,
            region: "us-east-1".to_owned(),
            events,
        };
        (router(Arc::new(lambda)), fake, dir)
    }

    pub(crate) struct Answer {
        pub(crate) status: StatusCode,
        pub(crate) headers: HeaderMap,
        pub(crate) body: Bytes,
    }

    impl Answer {
        pub(crate) fn json(&self) -> Json {
            serde_json::from_slice(&self.body).expect("a JSON body")
        }

        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }

        /// The error type and message of a Lambda error.
        fn error(&self) -> (StatusCode, String, String) {
            let message = self.json()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let kind = self
                .header("x-amzn-errortype")
                .unwrap_or_default()
                .to_owned();
            (self.status, kind, message)
        }
    }

    pub(crate) async fn send(
        router: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        use tower::ServiceExt as _;
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn ok(_: InvokeOptions) -> BoxFuture<'static, Result<InvokeResult, InvokeError>> {
        Box::pin(async { answered(b"\"ok\"") })
    }

    #[tokio::test]
    async fn operations_not_served_are_unknown_operations_whatever_the_method() {
        let (router, fake, _dir) = api(&["orders"], ok);
        for (method, path) in [
            ("POST", "/2015-03-31/functions"),
            ("DELETE", "/2015-03-31/functions/orders"),
            ("PUT", "/2015-03-31/functions/orders/invocations"),
        ] {
            let answer = send(&router, method, path, &[], "{}").await;
            assert_eq!(
                answer.error(),
                (
                    StatusCode::NOT_FOUND,
                    "UnknownOperationException".to_owned(),
                    format!("{method} {path} is not an operation this version of Nimbus supports"),
                ),
                "{method} {path}"
            );
            assert_eq!(answer.json()["Type"], "User");
        }
        assert!(fake.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_qualifier_in_the_name_and_another_in_the_query_is_refused() {
        let (router, fake, _dir) = api(&["orders"], ok);
        let mismatch = (
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException".to_owned(),
            "The derived qualifier from the function name does not match the specified qualifier."
                .to_owned(),
        );
        for (method, path) in [
            ("GET", "/2015-03-31/functions/orders:$LATEST?Qualifier=prod"),
            (
                "POST",
                "/2015-03-31/functions/orders:$LATEST/invocations?Qualifier=prod",
            ),
            (
                "POST",
                "/2021-11-15/functions/orders:$LATEST/response-streaming-invocations?Qualifier=prod",
            ),
        ] {
            let answer = send(&router, method, path, &[], "{}").await;
            assert_eq!(answer.error(), mismatch, "{path}");
        }
        // A query that does not parse is refused too, not dropped.
        for (method, path) in [
            (
                "GET",
                "/2015-03-31/functions/orders?Qualifier=a&Qualifier=b",
            ),
            (
                "POST",
                "/2015-03-31/functions/orders/invocations?Qualifier=a&Qualifier=b",
            ),
            (
                "POST",
                "/2021-11-15/functions/orders/response-streaming-invocations?Qualifier=a&Qualifier=b",
            ),
        ] {
            let answer = send(&router, method, path, &[], "{}").await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(
                answer.header("x-amzn-errortype"),
                Some("InvalidParameterValueException"),
                "{path}"
            );
        }
        assert!(fake.calls.lock().unwrap().is_empty());
        // The same qualifier twice is no conflict.
        let answer = send(
            &router,
            "POST",
            "/2015-03-31/functions/orders:$LATEST/invocations?Qualifier=$LATEST",
            &[],
            "{}",
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"\"ok\"");
    }

    #[tokio::test]
    async fn an_arn_of_another_region_or_service_names_no_function_here() {
        let (router, fake, _dir) = api(&["orders"], ok);
        for arn in [
            "arn:aws:lambda:eu-west-1:123456789012:function:orders",
            "arn:aws:states:us-east-1:123456789012:function:orders",
        ] {
            for (method, path) in [
                ("GET", format!("/2015-03-31/functions/{arn}")),
                ("POST", format!("/2015-03-31/functions/{arn}/invocations")),
            ] {
                let answer = send(&router, method, &path, &[], "{}").await;
                assert_eq!(
                    answer.error(),
                    (
                        StatusCode::NOT_FOUND,
                        "ResourceNotFoundException".to_owned(),
                        format!("Function not found: {arn}"),
                    ),
                    "{path}"
                );
            }
        }
        assert!(fake.calls.lock().unwrap().is_empty());
        let here = "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:orders/invocations";
        let answer = send(&router, "POST", here, &[], "{}").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(fake.calls.lock().unwrap()[0].0, "orders");
    }

    #[tokio::test]
    async fn a_throttled_invocation_says_which_limit_and_when_to_retry() {
        for (limit, reason) in [
            (ThrottleLimit::Node, "ConcurrentInvocationLimitExceeded"),
            (
                ThrottleLimit::Function,
                "ReservedFunctionConcurrentInvocationLimitExceeded",
            ),
        ] {
            let (router, _fake, _dir) = api(&["orders"], move |_| {
                Box::pin(async move { Err(InvokeError::Throttled(limit)) })
            });
            for path in [
                "/2015-03-31/functions/orders/invocations",
                "/2021-11-15/functions/orders/response-streaming-invocations",
            ] {
                let answer = send(&router, "POST", path, &[], "{}").await;
                assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
                assert_eq!(
                    answer.header("x-amzn-errortype"),
                    Some("TooManyRequestsException")
                );
                assert_eq!(answer.header("retry-after"), Some("1"), "{path}");
                assert_eq!(answer.json()["Reason"], reason, "{path}");
            }
        }
    }

    #[tokio::test]
    async fn a_client_context_over_lambda_s_limit_is_refused_before_invoking() {
        let (router, fake, _dir) = api(&["orders"], ok);
        let path = "/2015-03-31/functions/orders/invocations";
        // 3,583 bytes of base64 (`{"custom":{"k":"xxx..."}}` padded to fit) pass.
        let fits = |len: usize| {
            let overhead = r#"{"custom":{"k":""}}"#.len();
            let json = format!(r#"{{"custom":{{"k":"{}"}}}}"#, "x".repeat(len - overhead));
            base64::engine::general_purpose::STANDARD.encode(json)
        };
        let at_limit = fits(MAX_CLIENT_CONTEXT / 4 * 3 - 1);
        assert!(at_limit.len() <= MAX_CLIENT_CONTEXT && at_limit.len() > MAX_CLIENT_CONTEXT - 4);
        let answer = send(
            &router,
            "POST",
            path,
            &[("x-amz-client-context", &at_limit)],
            "{}",
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        let over = fits(MAX_CLIENT_CONTEXT / 4 * 3 + 3);
        assert!(over.len() > MAX_CLIENT_CONTEXT);
        let answer = send(
            &router,
            "POST",
            path,
            &[("x-amz-client-context", &over)],
            "{}",
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            answer.header("x-amzn-errortype"),
            Some("InvalidRequestContentException")
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn list_functions_pages_in_name_order() {
        let names: Vec<String> = (0..52).map(|i| format!("f{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (router, _fake, _dir) = api(&names, ok);
        let page = |answer: &Answer| -> Vec<String> {
            answer.json()["Functions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["FunctionName"].as_str().unwrap().to_owned())
                .collect()
        };
        // 50 by default.
        let first = send(&router, "GET", "/2015-03-31/functions/", &[], "").await;
        assert_eq!(page(&first), names[..50]);
        assert_eq!(first.json()["NextMarker"], "f49");
        let rest = send(&router, "GET", "/2015-03-31/functions/?Marker=f49", &[], "").await;
        assert_eq!(page(&rest), names[50..]);
        assert_eq!(rest.json().get("NextMarker"), None);
        // MaxItems at a time, following the marker, to the end.
        let mut seen = Vec::new();
        let mut uri = "/2015-03-31/functions?MaxItems=20".to_owned();
        loop {
            let answer = send(&router, "GET", &uri, &[], "").await;
            assert_eq!(answer.status, StatusCode::OK);
            let got = page(&answer);
            assert!(got.len() <= 20);
            seen.extend(got);
            match answer.json()["NextMarker"].as_str() {
                Some(marker) => uri = format!("/2015-03-31/functions?MaxItems=20&Marker={marker}"),
                None => break,
            }
        }
        assert_eq!(seen, names);
        for bad in ["0", "10001", "-1", "many"] {
            let answer = send(
                &router,
                "GET",
                &format!("/2015-03-31/functions?MaxItems={bad}"),
                &[],
                "",
            )
            .await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(
                answer.header("x-amzn-errortype"),
                Some("InvalidParameterValueException"),
                "{bad}"
            );
        }
    }
}
