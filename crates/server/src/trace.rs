//! A trace span for each request to the services endpoint: the calls functions (and
//! other clients) make to DynamoDB, DynamoDB Streams and Lambda. Its parent is the
//! caller's context: a W3C `traceparent`, or the `X-Amzn-Trace-Id` that the AWS SDKs copy
//! from a function's `_X_AMZN_TRACE_ID`, which the dispatcher set to the function's own
//! span. Installed only when traces are exported.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::Response,
};
use nimbus_core::trace::{self, SpanKind, TraceContext};

/// Largest body read to name the table a request is about; larger ones are still served.
const MAX_BODY: usize = 16 * 1024 * 1024;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a services request is, for its span.
enum Call {
    /// A DynamoDB or DynamoDB Streams operation.
    Aws {
        service: &'static str,
        operation: String,
    },
    /// A Lambda REST API call about a function.
    Lambda {
        operation: &'static str,
        function: String,
    },
    /// Anything else.
    Other,
}

fn call(request: &Request) -> Call {
    if let Some(target) = header(request.headers(), "x-amz-target") {
        let service = if target.starts_with(nimbus_tables::api::TARGET_PREFIX) {
            "DynamoDB"
        } else if target.starts_with(nimbus_tables::api::STREAMS_TARGET_PREFIX) {
            "DynamoDBStreams"
        } else {
            return Call::Other;
        };
        // The client chooses the target: an operation Nimbus does not serve in that API
        // is named `unknown`, so that span names stay few.
        let operation = nimbus_tables::operation_label(target).to_owned();
        return Call::Aws { service, operation };
    }
    let path = request.uri().path();
    if let Some(rest) = path
        .strip_prefix("/2015-03-31/functions/")
        .or_else(|| path.strip_prefix("/2021-11-15/functions/"))
        && let Some((function, what)) = rest.split_once('/')
    {
        let operation = match what {
            "invocations" => "Invoke",
            "response-streaming-invocations" => "InvokeWithResponseStream",
            _ => return Call::Other,
        };
        return Call::Lambda {
            operation,
            function: function.to_owned(),
        };
    }
    Call::Other
}

/// Just the table name of a DynamoDB request body.
#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(rename = "TableName", borrow)]
    table: Option<std::borrow::Cow<'a, str>>,
}

/// Serves `request` inside its span.
pub(crate) async fn services_span(request: Request, next: Next) -> Response {
    let parent = TraceContext::from_headers(
        header(request.headers(), "traceparent"),
        header(request.headers(), "x-amzn-trace-id"),
    );
    // A method outside HTTP's standard ones is `_OTHER`, as OpenTelemetry's HTTP
    // conventions name it: the client chooses it, and it names the span.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" | "CONNECT"
        | "TRACE") => m.to_owned(),
        _ => "_OTHER".to_owned(),
    };
    let (span, request) = match call(&request) {
        Call::Aws { service, operation } => {
            // The table is named in the body: read it here (the handler reads the
            // same bytes again).
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
                return Response::builder()
                    .status(StatusCode::PAYLOAD_TOO_LARGE)
                    .body(Body::empty())
                    .unwrap_or_default();
            };
            let table = serde_json::from_slice::<Named<'_>>(&bytes)
                .ok()
                .and_then(|n| n.table)
                .map(|t| t.into_owned());
            let mut span = trace::span(format!("{service}.{operation}"), SpanKind::Server)
                .attr("rpc.system", "aws-api")
                .attr("rpc.service", service)
                .attr("rpc.method", operation.clone())
                .attr("db.system", "dynamodb")
                .attr("db.system.name", "aws.dynamodb")
                .attr("db.operation.name", operation);
            if let Some(table) = table {
                span = span
                    .attr("db.collection.name", table.clone())
                    .attr("aws.dynamodb.table_names", table);
            }
            (span, Request::from_parts(parts, Body::from(bytes)))
        }
        Call::Lambda {
            operation,
            function,
        } => {
            let invocation_type = header(request.headers(), "x-amz-invocation-type")
                .unwrap_or("RequestResponse")
                .to_owned();
            let span = trace::span(format!("Lambda.{operation}"), SpanKind::Server)
                .attr("rpc.system", "aws-api")
                .attr("rpc.service", "Lambda")
                .attr("rpc.method", operation)
                .attr("faas.invoked_name", function)
                .attr("aws.lambda.invocation_type", invocation_type);
            (span, request)
        }
        Call::Other => {
            let span = trace::span(method.clone(), SpanKind::Server)
                .attr("url.path", request.uri().path().to_owned());
            (span, request)
        }
    };
    let mut span = span
        .attr("http.request.method", method)
        .remote_parent(parent)
        .start();
    let response = span.in_scope(next.run(request)).await;
    let status = response.status();
    span.set("http.response.status_code", i64::from(status.as_u16()));
    // A server span fails on a 5xx only: a 4xx is the client's error (OpenTelemetry's
    // HTTP conventions), such as a failed condition check.
    if status.is_server_error() {
        span.set_error();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, target: Option<&str>) -> Request {
        let mut builder = axum::http::Request::builder().method("POST").uri(path);
        if let Some(target) = target {
            builder = builder.header("x-amz-target", target);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn calls_are_named_by_service_and_operation() {
        assert!(matches!(
            call(&request("/", Some("DynamoDB_20120810.PutItem"))),
            Call::Aws { service: "DynamoDB", operation } if operation == "PutItem"
        ));
        assert!(matches!(
            call(&request("/", Some("DynamoDBStreams_20120810.GetRecords"))),
            Call::Aws { service: "DynamoDBStreams", operation } if operation == "GetRecords"
        ));
        assert!(matches!(
            call(&request("/2015-03-31/functions/hello/invocations", None)),
            Call::Lambda { operation: "Invoke", function } if function == "hello"
        ));
        assert!(matches!(call(&request("/healthz", None)), Call::Other));
        assert!(matches!(
            call(&request("/", Some("AmazonSQS.SendMessage"))),
            Call::Other
        ));
        for made_up in [
            "DynamoDB_20120810.Steal",
            "DynamoDB_20120810.X.PutItem",
            "DynamoDB_20120810.GetRecords",
        ] {
            assert!(matches!(
                call(&request("/", Some(made_up))),
                Call::Aws { service: "DynamoDB", operation } if operation == "unknown"
            ));
        }
    }

    #[test]
    fn the_table_name_is_read_from_the_body() {
        let n: Named<'_> =
            serde_json::from_slice(br#"{"Item":{"a":{"S":"x"}},"TableName":"Users"}"#).unwrap();
        assert_eq!(n.table.as_deref(), Some("Users"));
        let n: Named<'_> = serde_json::from_slice(br#"{"RequestItems":{}}"#).unwrap();
        assert_eq!(n.table, None);
    }
}
