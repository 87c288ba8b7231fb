//! The Lambda REST API (`2015-03-31`) on the services endpoint: Invoke (synchronous, and
//! asynchronous through the durable event queue), GetFunction and ListFunctions, as the
//! AWS CLI and SDKs call them.

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, Response, StatusCode},
    routing::{get, post},
};
use base64::Engine as _;
use nimbus_core::{
    AppSpec, FunctionSpec, Invoke, InvokeError, InvokeOptions, Outcome, RuntimeKind, invoke_to_end,
    trace::TraceContext,
};
use nimbus_events::{AsyncQueue, EventMeta};
use serde_json::{Value as Json, json};

/// What the Lambda API needs: the app's functions, the dispatcher and the async queue.
pub(crate) struct Lambda {
    pub(crate) app: Option<AppSpec>,
    pub(crate) invoker: Arc<dyn Invoke>,
    pub(crate) region: String,
    pub(crate) events: Arc<AsyncQueue>,
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
        .with_state(lambda)
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
/// own.
pub(crate) fn qualified(name: String, query: Option<Query<QualifierQuery>>) -> String {
    match query.and_then(|Query(q)| q.qualifier) {
        Some(q) if qualifier(&name).is_none() => format!("{name}:{q}"),
        _ => name,
    }
}

fn arn(region: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:000000000000:function:{name}")
}

fn not_found(region: &str, name: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("Function not found: {}", arn(region, name)),
    )
}

impl Lambda {
    /// The function a path names. Only `$LATEST` is served: Nimbus publishes no versions
    /// and has no aliases, so any other qualifier names a function that is not there.
    pub(crate) fn function(&self, name: &str) -> Option<&FunctionSpec> {
        if qualifier(name).is_some_and(|q| q != "$LATEST") {
            return None;
        }
        self.app.as_ref()?.functions.get(function_name(name))
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

async fn list_functions(State(lambda): State<Arc<Lambda>>) -> Response<Body> {
    let functions: Vec<Json> = lambda
        .app
        .iter()
        .flat_map(|app| app.functions.values())
        .map(|f| lambda.configuration(f))
        .collect();
    json_response(&json!({ "Functions": functions }))
}

async fn get_function(
    State(lambda): State<Arc<Lambda>>,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
) -> Response<Body> {
    let name = qualified(name, query.ok());
    match lambda.function(&name) {
        Some(f) => json_response(&json!({
            "Configuration": lambda.configuration(f),
            "Code": { "RepositoryType": "Nimbus", "Location": f.code.display().to_string() },
        })),
        None => not_found(&lambda.region, function_name(&name)),
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
            return Err(Box::new(not_found(&self.region, function_name(name))));
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

    /// The answer for an invocation that could not run.
    pub(crate) fn refused(&self, e: InvokeError, name: &str) -> Response<Body> {
        match e {
            InvokeError::Throttled => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                );
                *response.body_mut() = Body::from(
                    json!({ "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User", "message": "Rate Exceeded." })
                        .to_string(),
                );
                response
            }
            InvokeError::NotFound(_) => not_found(&self.region, function_name(name)),
            InvokeError::Unavailable(reason) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &reason,
            ),
        }
    }
}

/// The caller's client context (`X-Amz-Client-Context`, base64 of a JSON object) as the
/// function gets it: the JSON object itself, on one line (it travels as a header), which
/// the runtimes parse. `Err` is the answer to a header that is not base64 of an object.
fn client_context(headers: &HeaderMap) -> Result<Option<String>, Box<Response<Body>>> {
    let Some(header) = headers.get("x-amz-client-context") else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header.as_bytes())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Json>>(&bytes).ok());
    match decoded {
        Some(object) => Ok(Some(Json::Object(object).to_string())),
        None => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Client context must be a valid Base64-encoded JSON object.",
        ))),
    }
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
        return not_found(&lambda.region, function_name(name));
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
    let name = qualified(name, query.ok());
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
mod tests {
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
        let query = |q: &str| {
            Some(Query(QualifierQuery {
                qualifier: Some(q.to_owned()),
            }))
        };
        assert_eq!(qualified("orders".to_owned(), query("live")), "orders:live");
        assert_eq!(qualified("orders:7".to_owned(), query("live")), "orders:7");
        assert_eq!(qualified("orders".to_owned(), None), "orders");
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
}
