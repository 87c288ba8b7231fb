//! Building the probe, one runtime for the test binary, specs and invocations.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use nimbus_core::{
    FunctionSpec, HttpResponse, Instance, InstanceMode, Invocation, Outcome, Report, Runtime as _,
};
use nimbus_runtime_wasm::{WasmConfig, WasmRuntime};
use serde_json::{Value as Json, json};

pub(crate) const SERVICES: &str = "http://127.0.0.1:4566";

/// Where guests are built: `$CARGO_TARGET_DIR/wasm-guests`, else the workspace's target.
pub(crate) fn guest_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    base.join("wasm-guests")
}

pub(crate) fn probe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/probe")
}

/// The probe component, built once per test binary.
pub(crate) fn probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = guest_target_dir();
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(probe_dir().join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "the probe component builds");
            target.join("wasm32-wasip2/release/nimbus_probe.wasm")
        })
        .clone()
}

/// The runtime the tests share (one engine and pool per process, as on a node).
pub(crate) fn runtime() -> &'static WasmRuntime {
    static RUNTIME: OnceLock<WasmRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        WasmRuntime::new(WasmConfig {
            services_endpoint: SERVICES.to_owned(),
            region: "eu-west-3".to_owned(),
            cache_dir: Some(guest_target_dir().join("cache")),
        })
        .expect("the runtime starts")
    })
}

pub(crate) fn spec(name: &str, mode: InstanceMode) -> FunctionSpec {
    FunctionSpec {
        instances: mode,
        ..FunctionSpec::new(name, "wasm".parse().expect("wasm is a runtime"), probe())
    }
}

pub(crate) async fn start(spec: FunctionSpec) -> Box<dyn Instance> {
    runtime()
        .start(Arc::new(spec))
        .await
        .expect("the instance starts")
}

/// An API Gateway payload 2.0 event for `GET path`.
pub(crate) fn get(path: &str) -> Vec<u8> {
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {"host": "fn.test"},
        "requestContext": {"http": {"method": "GET", "path": raw_path}},
        "isBase64Encoded": false
    })
    .to_string()
    .into_bytes()
}

pub(crate) async fn invoke(instance: &mut Box<dyn Instance>, id: &str, payload: Vec<u8>) -> Report {
    invoke_within(instance, id, payload, Duration::from_secs(3)).await
}

pub(crate) async fn invoke_within(
    instance: &mut Box<dyn Instance>,
    id: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Report {
    instance
        .invoke(Invocation {
            request_id: id.to_owned(),
            payload,
            request: None,
            deadline: SystemTime::now() + timeout,
            trace_id: None,
            client_context: None,
            stream: None,
        })
        .await
}

/// Invokes with an HTTP request handed on as it came (as the gateway does), with a trace
/// header.
pub(crate) async fn invoke_request(
    instance: &mut Box<dyn Instance>,
    id: &str,
    request: http::Request<bytes::Bytes>,
    trace_id: Option<&str>,
) -> Report {
    instance
        .invoke(Invocation {
            request_id: id.to_owned(),
            payload: Vec::new(),
            request: Some(request),
            deadline: SystemTime::now() + Duration::from_secs(3),
            trace_id: trace_id.map(str::to_owned),
            client_context: None,
            stream: None,
        })
        .await
}

/// The HTTP response of a successful invocation that carried a request.
pub(crate) fn http_response(report: &Report) -> &HttpResponse {
    match &report.outcome {
        Outcome::Http(response) => response,
        other => panic!("expected an HTTP response, got {other:?}"),
    }
}

/// The structured result of a successful invocation.
pub(crate) fn result(report: &Report) -> Json {
    match &report.outcome {
        Outcome::Response(bytes) => serde_json::from_slice(bytes).expect("a JSON result"),
        Outcome::Http(response) => panic!("expected a JSON result, got {response:?}"),
        Outcome::Error { payload, .. } => {
            panic!(
                "expected a response, got {}",
                String::from_utf8_lossy(payload)
            )
        }
    }
}

/// The body of a successful invocation's result, as JSON.
pub(crate) fn body(report: &Report) -> Json {
    let result = result(report);
    assert_eq!(result["isBase64Encoded"], false, "{result}");
    serde_json::from_str(result["body"].as_str().expect("a string body")).expect("a JSON body")
}

/// Asserts that the invocation failed with `error_type` and a message containing `text`.
pub(crate) fn assert_failed(report: &Report, error_type: &str, text: &str) {
    let (got, document) = error(report);
    assert_eq!(got, error_type, "{document}");
    let message = document["errorMessage"].as_str().expect("an error message");
    assert!(message.contains(text), "{document}");
}

/// The error type and document of a failed invocation.
pub(crate) fn error(report: &Report) -> (String, Json) {
    match &report.outcome {
        Outcome::Error {
            error_type,
            payload,
            ..
        } => (
            error_type.clone(),
            serde_json::from_slice(payload).expect("a JSON error"),
        ),
        Outcome::Response(bytes) => {
            panic!("expected an error, got {}", String::from_utf8_lossy(bytes))
        }
        Outcome::Http(response) => panic!("expected an error, got {response:?}"),
    }
}
