//! Environment, logs and outbound requests: what a guest may see and reach.

use std::time::Duration;

use nimbus_core::InstanceMode;
use serde_json::Value as Json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::support::{self, body, get, invoke, result, spec, start};

#[tokio::test]
async fn the_environment_is_lambdas_plus_the_manifests() {
    let mut function = spec("env-fn", InstanceMode::Reuse);
    function.memory_mb = 256;
    function
        .environment
        .insert("TABLE_NAME".to_owned(), "Users".to_owned());
    let mut instance = start(function).await;
    let env = body(&invoke(&mut instance, "r-env", get("/env")).await);
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "env-fn");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_REGION"], "eu-west-3");
    assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-3");
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "nimbus");
    assert!(env["AWS_SECRET_ACCESS_KEY"].is_string());
    assert!(env["AWS_SESSION_TOKEN"].is_string());
    assert_eq!(env["AWS_ENDPOINT_URL"], support::SERVICES);
    assert_eq!(env["TABLE_NAME"], "Users");
    // Nothing of the host's.
    assert_eq!(env["PATH"], Json::Null);
    assert_eq!(env["HOME"], Json::Null);
}

#[tokio::test]
async fn output_lines_are_in_the_log_tail() {
    let mut instance = start(spec("logger", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-log", get("/log")).await;
    assert_eq!(result(&report)["body"], "logged");
    assert!(
        report
            .log_tail
            .contains("hello from the probe\nsecond line"),
        "{}",
        report.log_tail
    );
    assert!(report.log_tail.contains("to stderr"), "{}", report.log_tail);
    // The next invocation's tail has only its own lines.
    let report = invoke(&mut instance, "r-quiet", get("/count")).await;
    assert_eq!(report.log_tail, "");
}

/// A one-shot HTTP server answering `hello`, waiting `wait` for its one request; returns
/// its URL and whether it was called.
async fn server(wait: Duration) -> (String, tokio::task::JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let handle = tokio::spawn(async move {
        let accepted = tokio::time::timeout(wait, listener.accept()).await;
        let Ok(Ok((mut socket, _))) = accepted else {
            return false;
        };
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
            .await;
        true
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_reach_only_allowed_hosts() {
    let (allowed, allowed_server) = server(Duration::from_secs(30)).await;
    let (denied, denied_server) = server(Duration::from_secs(2)).await;
    let mut function = spec("outbound", InstanceMode::Reuse);
    function.allowed_outbound_hosts = vec![allowed.clone()];
    let mut instance = start(function).await;

    let report = invoke(
        &mut instance,
        "r-allowed",
        get(&format!("/fetch?{allowed}/x")),
    )
    .await;
    let answer = body(&report);
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"], "hello");
    assert!(
        allowed_server.await.unwrap(),
        "the allowed server was called"
    );

    let report = invoke(
        &mut instance,
        "r-denied",
        get(&format!("/fetch?{denied}/x")),
    )
    .await;
    let denial = result(&report);
    assert_eq!(denial["statusCode"], 502, "{denial}");
    assert!(
        denial["body"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{denial}"
    );
    assert!(report.log_tail.contains("denied"), "{}", report.log_tail);
    // Other hosts, and the right host on another scheme, are refused just the same.
    let https = allowed.replace("http://", "https://");
    let report = invoke(&mut instance, "r-https", get(&format!("/fetch?{https}/x"))).await;
    assert_eq!(result(&report)["statusCode"], 502);
    let report = invoke(&mut instance, "r-far", get("/fetch?https://example.com/")).await;
    assert_eq!(result(&report)["statusCode"], 502);
    assert!(
        !denied_server.await.unwrap(),
        "the denied server was never called"
    );
}

/// An instance has at most 64 outbound requests in flight; one more fails in the guest
/// with `connection-limit-reached`, and the places come back when the requests end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_in_flight_are_bounded_per_instance() {
    // A server that takes connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut function = spec("outbound-many", InstanceMode::Reuse);
    function.allowed_outbound_hosts = vec![url.clone()];
    let mut instance = start(function).await;
    let report = invoke(&mut instance, "r-many", get(&format!("/hold?70,{url}/x"))).await;
    let answer = body(&report);
    assert_eq!(answer["held"], 64, "{answer}");
    assert_eq!(answer["refused"], 6, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("ConnectionLimitReached"),
        "{answer}"
    );
    assert!(
        report.log_tail.contains("outbound request refused"),
        "{}",
        report.log_tail
    );
    // The first invocation's requests ended with it (their handles were dropped); their
    // tasks are given back as the runtime reaps them.
    let mut held = 0;
    for n in 0..100 {
        let report = invoke(
            &mut instance,
            &format!("r-again-{n}"),
            get(&format!("/hold?64,{url}/x")),
        )
        .await;
        held = body(&report)["held"].as_u64().unwrap();
        if held == 64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held, 64);
    silent.abort();
}
