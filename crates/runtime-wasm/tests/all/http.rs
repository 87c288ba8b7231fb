//! Invocations as HTTP requests, responses as payload 2.0 results.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use nimbus_core::{InstanceMode, Invocation, Runtime as _};
use nimbus_runtime_wasm::{EVENT_SOURCE_HEADER, REQUEST_ID_HEADER, component_path};
use serde_json::{Value as Json, json};

use crate::support::{
    self, assert_failed, body, error, get, http_response, invoke, invoke_request, result, spec,
    start,
};

fn header<'a>(echo: &'a Json, name: &str) -> Option<&'a str> {
    echo["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
}

#[tokio::test]
async fn an_http_event_reaches_the_component_as_the_client_request() {
    let mut instance = start(spec("echo", InstanceMode::Reuse)).await;
    let event = json!({
        "version": "2.0",
        "routeKey": "PUT /items/{id}",
        "rawPath": "/items/42",
        "rawQueryString": "color=red&size=xl",
        "cookies": ["session=abc", "theme=dark"],
        "headers": {"host": "api.example.test", "content-type": "text/plain", "x-custom": "one"},
        "requestContext": {"http": {"method": "PUT", "path": "/items/42"}},
        "body": base64::engine::general_purpose::STANDARD.encode("the body"),
        "isBase64Encoded": true
    });
    let report = instance
        .invoke(Invocation {
            request_id: "req-echo".to_owned(),
            payload: event.to_string().into_bytes(),
            request: None,
            deadline: SystemTime::now() + Duration::from_secs(3),
            trace_id: Some(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                    .to_owned(),
            ),
            client_context: None,
            stream: None,
        })
        .await;
    assert!(report.reusable);
    let result = result(&report);
    assert_eq!(result["statusCode"], 200);
    assert_eq!(result["headers"]["content-type"], "application/json");
    let echo = body(&report);
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/items/42?color=red&size=xl");
    assert_eq!(echo["scheme"], "http");
    assert_eq!(echo["authority"], "api.example.test");
    assert_eq!(echo["body"], "the body");
    assert_eq!(header(&echo, "x-custom"), Some("one"));
    assert_eq!(header(&echo, "content-type"), Some("text/plain"));
    assert_eq!(header(&echo, "cookie"), Some("session=abc; theme=dark"));
    assert_eq!(header(&echo, REQUEST_ID_HEADER), Some("req-echo"));
    assert_eq!(header(&echo, EVENT_SOURCE_HEADER), None);
    assert_eq!(
        header(&echo, "x-amzn-trace-id"),
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    );
    assert_eq!(
        header(&echo, "traceparent"),
        Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
    );
}

const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// A request as a client sends it to the gateway, and the payload 2.0 event the gateway
/// makes of it.
fn client_request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (http::Request<bytes::Bytes>, Vec<u8>) {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    let event =
        nimbus_gateway::fuzzing::event(false, method.as_bytes(), target.as_bytes(), &pairs, body)
            .expect("a valid request");
    let mut request = http::Request::builder().method(method).uri(target);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut request = request
        .body(bytes::Bytes::copy_from_slice(body))
        .expect("a valid request");
    nimbus_gateway::fuzzing::pass_on(request.headers_mut());
    (request, event.to_string().into_bytes())
}

#[tokio::test]
async fn a_request_handed_on_reaches_the_component_as_its_event_would() {
    let mut instance = start(spec("direct", InstanceMode::Reuse)).await;
    let (request, event) = client_request(
        "PUT",
        "/items/42?color=red&size=xl&q=a%20b",
        &[
            ("host", "api.example.test"),
            ("content-type", "text/plain"),
            ("content-length", "8"),
            ("x-custom", "one"),
            ("x-multi", "a"),
            ("cookie", "session=abc"),
            ("x-multi", "b"),
            ("cookie", "theme=dark"),
            ("x-nimbus-request-id", "forged"),
        ],
        b"the body",
    );
    let direct = invoke_request(&mut instance, "req-same", request, Some(TRACE)).await;
    assert!(direct.reusable);
    let response = http_response(&direct);
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/json");
    let echo: Json = serde_json::from_slice(&response.body).expect("a JSON echo");
    let via_event = instance
        .invoke(Invocation {
            request_id: "req-same".to_owned(),
            payload: event,
            request: None,
            deadline: SystemTime::now() + Duration::from_secs(3),
            trace_id: Some(TRACE.to_owned()),
            client_context: None,
            stream: None,
        })
        .await;
    assert_eq!(echo, body(&via_event));
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/items/42?color=red&size=xl&q=a%20b");
    assert_eq!(echo["authority"], "api.example.test");
    assert_eq!(echo["body"], "the body");
    assert_eq!(header(&echo, "x-multi"), Some("a,b"));
    assert_eq!(header(&echo, "cookie"), Some("session=abc; theme=dark"));
    assert_eq!(header(&echo, "content-length"), None);
    assert_eq!(header(&echo, REQUEST_ID_HEADER), Some("req-same"));
    assert_eq!(header(&echo, "x-amzn-trace-id"), Some(TRACE));
    assert_eq!(
        header(&echo, "traceparent"),
        Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
    );
}

#[tokio::test]
async fn a_request_is_answered_with_the_response_as_it_is() {
    let mut instance = start(spec("direct-shapes", InstanceMode::Reuse)).await;
    let (request, _) = client_request("GET", "/cookies", &[("host", "fn.test")], b"");
    let report = invoke_request(&mut instance, "h1", request, None).await;
    let response = http_response(&report);
    assert_eq!(response.status, 201);
    let lines: Vec<(&str, &[u8])> = response
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(
        lines,
        [
            ("content-type", &b"text/plain; charset=utf-8"[..]),
            ("set-cookie", b"a=1; Path=/"),
            ("set-cookie", b"b=2"),
            ("x-probe", b"yes"),
        ]
    );
    assert_eq!(response.body, "with cookies");
    // The structured result a JSON caller would get is the one an event gets.
    assert_eq!(
        serde_json::from_slice::<Json>(&response.structured_result()).unwrap(),
        result(&invoke(&mut instance, "h1-event", get("/cookies")).await)
    );
    let (request, _) = client_request("GET", "/binary", &[("host", "fn.test")], b"");
    let report = invoke_request(&mut instance, "h2", request, None).await;
    let response = http_response(&report);
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/octet-stream");
    assert_eq!(response.body[..], [0, 159, 146, 150, 255]);
    // Failures are errors as for events, and the instance serves on after them.
    let (request, _) = client_request("GET", "/big?7000000", &[], b"");
    let report = invoke_request(&mut instance, "h3", request, None).await;
    assert_eq!(error(&report).0, "Function.ResponseSizeTooLarge");
    let (request, _) = client_request("GET", "/drop", &[], b"");
    let report = invoke_request(&mut instance, "h4", request, None).await;
    assert_eq!(error(&report).0, "Runtime.NoResponse");
    let (request, _) = client_request("GET", "/trap", &[], b"");
    let report = invoke_request(&mut instance, "h5", request, None).await;
    assert_eq!(error(&report).0, "Runtime.Trap");
    assert!(!report.reusable);
}

#[tokio::test]
async fn other_events_arrive_as_a_post_with_the_event_source_header() {
    let mut instance = start(spec("event", InstanceMode::Reuse)).await;
    let event = br#"{"Records":[{"eventSource":"aws:sqs","body":"hi"}]}"#.to_vec();
    let report = invoke(&mut instance, "req-event", event.clone()).await;
    let echo = body(&report);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/");
    assert_eq!(header(&echo, EVENT_SOURCE_HEADER), Some("lambda"));
    assert_eq!(header(&echo, "content-type"), Some("application/json"));
    assert_eq!(echo["body"].as_str().map(str::as_bytes), Some(&event[..]));
}

#[tokio::test]
async fn responses_carry_status_headers_cookies_and_binary_bodies() {
    let mut instance = start(spec("shapes", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r1", get("/cookies")).await;
    assert_eq!(
        result(&report),
        json!({
            "statusCode": 201,
            "headers": {"content-type": "text/plain; charset=utf-8", "x-probe": "yes"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "with cookies",
            "isBase64Encoded": false
        })
    );
    let report = invoke(&mut instance, "r2", get("/binary")).await;
    let result = result(&report);
    assert_eq!(result["isBase64Encoded"], true);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(result["body"].as_str().unwrap())
            .unwrap(),
        [0, 159, 146, 150, 255]
    );
}

#[tokio::test]
async fn a_response_over_6_mb_is_refused() {
    let mut instance = start(spec("big", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-big", get("/big?7000000")).await;
    assert_failed(
        &report,
        "Function.ResponseSizeTooLarge",
        "exceeded maximum allowed payload size (6291456 bytes)",
    );
    // A large response within the limit is fine.
    let report = invoke(&mut instance, "r-ok", get("/big?1000000")).await;
    assert_eq!(result(&report)["body"].as_str().unwrap().len(), 1_000_000);
}

#[tokio::test]
async fn a_handler_that_sets_no_response_fails_the_invocation() {
    let mut instance = start(spec("dropper", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-drop", get("/drop")).await;
    let (error_type, document) = error(&report);
    assert_eq!(error_type, "Runtime.NoResponse");
    assert!(
        document["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("RequestId: r-drop Error: the component returned"),
        "{document}"
    );
    // The instance is intact and serves the next request.
    assert!(report.reusable);
    let report = invoke(&mut instance, "r-next", get("/count")).await;
    assert_eq!(body(&report)["count"], 2);
}

#[tokio::test]
async fn a_cargo_package_runs_from_where_it_was_built() {
    support::probe();
    let mut spec = spec("package", InstanceMode::Reuse);
    spec.code = support::probe_dir();
    let target = support::guest_target_dir();
    assert_eq!(
        component_path(&spec, Some(&target)),
        target.join("wasm32-wasip2/release/nimbus_probe.wasm")
    );
    assert_eq!(
        component_path(&spec, None),
        support::probe_dir().join("target/wasm32-wasip2/release/nimbus_probe.wasm")
    );
    let runtime = support::runtime().clone().with_target_dir(&target);
    let mut instance = runtime
        .start(std::sync::Arc::new(spec))
        .await
        .expect("the package's component starts");
    let report = invoke(&mut instance, "r-pkg", get("/count")).await;
    assert_eq!(body(&report)["count"], 1);
}

#[tokio::test]
async fn a_missing_component_does_not_start() {
    let mut spec = spec("missing", InstanceMode::Reuse);
    spec.code = support::guest_target_dir().join("no-such-component.wasm");
    let Err(error) = support::runtime().start(std::sync::Arc::new(spec)).await else {
        panic!("a missing component must not start");
    };
    assert!(error.reason.contains("no-such-component.wasm"), "{error}");
}
