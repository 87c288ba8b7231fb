//! Wasm functions through the real binary: the hello example built by `nimbus up`, both
//! instance modes, the gateway's routes, auth and limits in front of a component, faults
//! that end one request and leave the pool healthy, and concurrency.

use std::{path::PathBuf, process::Command, sync::OnceLock, time::Duration};

use serde_json::json;

use crate::harness::{Builder, copy_app, example, http, repo_root};

/// The runtime crate's probe component (a `wasi:http` proxy with a path per behaviour),
/// built once per test run (also used by the async-invocation tests).
pub(crate) fn probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo_root().join("target"), PathBuf::from)
                .join("wasm-guests");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
                .arg("--manifest-path")
                .arg(repo_root().join("crates/runtime-wasm/tests/guests/probe/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the probe component failed");
            target.join("wasm32-wasip2/release/nimbus_probe.wasm")
        })
        .clone()
}

#[test]
fn the_hello_example_is_built_by_up_and_keeps_its_instance_warm() {
    let app = copy_app(&example("hello-wasm"));
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let first = http(node.gateway(), "GET", "/hello/ada", &[], "").unwrap();
    assert_eq!(first.status, 200, "{}\n{}", first.body, node.logs());
    assert_eq!(first.body, "Hello, ada! (request 1 of this instance)\n");
    assert!(
        first
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/plain"))
    );
    let second = http(node.gateway(), "GET", "/hello/bob", &[], "").unwrap();
    assert_eq!(second.body, "Hello, bob! (request 2 of this instance)\n");
    // The component's stdout is in the function's log, with the request id.
    assert!(
        node.wait_for_log("greeting bob", Duration::from_secs(5)),
        "{}",
        node.logs()
    );
    assert!(node.logs().contains("REPORT RequestId"));
}

#[test]
fn per_request_instances_share_nothing() {
    let app = copy_app(&example("hello-wasm"));
    let manifest = app.path().join("nimbus.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "timeout = \"5s\"",
            "timeout = \"5s\"\ninstances = \"per-request\"",
        ),
    )
    .unwrap();
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    for name in ["a", "b", "c"] {
        let r = http(node.gateway(), "GET", &format!("/hello/{name}"), &[], "").unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
        assert_eq!(
            r.body,
            format!("Hello, {name}! (request 1 of this instance)\n")
        );
    }
}

fn probe_app(extra: &str) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    std::fs::copy(probe(), app.path().join("probe.wasm")).unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        format!(
            r#"name = "probe"

[functions.probe]
runtime = "wasm"
code = "probe.wasm"
memory_mb = 128
timeout = "2s"
concurrency = {{ max = 32 }}

[auth.api_key]
keys = [{{ name = "k", value = "probe-key-0123456789abcdef" }}]

[[routes]]
route = "ANY /{{path+}}"
function = "probe"

[[routes]]
route = "GET /keyed/{{path+}}"
function = "probe"
auth = "api_key"

[[routes]]
route = "GET /limited"
function = "probe"
rate_limit = {{ rate = 1, burst = 1 }}
{extra}"#
        ),
    )
    .unwrap();
    app
}

#[test]
fn faults_end_their_request_and_the_next_one_succeeds() {
    let app = probe_app("");
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let get = |path: &str| http(node.gateway(), "GET", path, &[], "").unwrap();
    let echo = get("/echo?x=1");
    assert_eq!(echo.status, 200, "{}\n{}", echo.body, node.logs());
    assert_eq!(echo.json()["method"], "GET");
    for (path, status, message) in [
        ("/trap", 502, "Internal Server Error"),
        ("/stack", 502, "Internal Server Error"),
        ("/oom", 502, "Internal Server Error"),
        ("/loop", 503, "Service Unavailable"),
        // A host call that panics in wasmtime-wasi-http (a header map past 24,576 names).
        ("/names?30000", 502, "Internal Server Error"),
    ] {
        let r = get(path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.json(), json!({ "message": message }), "{path}");
        let next = get("/echo");
        assert_eq!(next.status, 200, "after {path}: {}", next.body);
    }
    // The node's log is written by a thread of its own: the last lines may lag.
    for error_type in ["Runtime.Trap", "Runtime.OutOfMemory", "Sandbox.Timedout"] {
        assert!(
            node.wait_for_log(error_type, Duration::from_secs(10)),
            "{error_type} not logged:\n{}",
            node.logs()
        );
    }
    // The panic is a line of the node's log, not Rust's default report.
    assert!(
        node.wait_for_log("panicked: ", Duration::from_secs(10)),
        "the panic is not logged:\n{}",
        node.logs()
    );
    assert!(
        !node.stderr().contains("' panicked at "),
        "{}",
        node.stderr()
    );
}

#[test]
fn the_gateways_routes_auth_and_limits_apply_to_wasm_functions() {
    let app = probe_app("");
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let refused = http(node.gateway(), "GET", "/keyed/echo", &[], "").unwrap();
    assert_eq!(refused.status, 403);
    let ok = http(
        node.gateway(),
        "GET",
        "/keyed/echo",
        &[("x-api-key", "probe-key-0123456789abcdef")],
        "",
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["path"], "/keyed/echo");
    assert_eq!(
        http(node.gateway(), "GET", "/limited", &[], "")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        http(node.gateway(), "GET", "/limited", &[], "")
            .unwrap()
            .status,
        429
    );
    // A host the function may not reach: the guest sees the refusal.
    let denied = http(
        node.gateway(),
        "GET",
        "/fetch?http://198.51.100.1:9/",
        &[],
        "",
    )
    .unwrap();
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
}

#[test]
fn two_hundred_fifty_six_concurrent_requests_with_max_32_all_succeed() {
    let app = probe_app("");
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let gateway = node.gateway();
    let calls: Vec<_> = (0..256)
        .map(|i| {
            std::thread::spawn(move || {
                http(gateway, "GET", &format!("/echo?i={i}"), &[], "").unwrap()
            })
        })
        .collect();
    let answers: Vec<_> = calls.into_iter().map(|c| c.join()).collect();
    for answer in answers {
        let r = answer.unwrap_or_else(|_| panic!("a call failed\n{}", node.logs()));
        assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    }
}

/// Sends `GET path` and reads the response as bytes: status, header lines (names
/// lowercased, in order) and the body exactly as sent.
fn get_bytes(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header end");
    let head = String::from_utf8(raw[..end].to_vec()).expect("a text head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let (mut chunked, mut out) = (&body[..], Vec::new());
        while let Some(i) = chunked.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&chunked[..i]).unwrap().trim();
            let n = usize::from_str_radix(size, 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunked[i + 2..i + 2 + n]);
            chunked = &chunked[i + 2 + n + 2..];
        }
        body = out;
    }
    (status, headers, body)
}

#[test]
fn a_wasm_response_reaches_the_client_as_the_component_gave_it() {
    let app = probe_app("");
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let (status, headers, body) = get_bytes(node.gateway(), "/binary");
    assert_eq!(status, 200, "{}", node.logs());
    assert_eq!(body, [0, 159, 146, 150, 255]);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/octet-stream"),
        "{headers:?}"
    );
    let (status, headers, body) = get_bytes(node.gateway(), "/cookies");
    assert_eq!(status, 201, "{}", node.logs());
    assert_eq!(body, b"with cookies");
    let cookies: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "text/plain; charset=utf-8"),
        "{headers:?}"
    );
    assert!(headers.iter().any(|(k, v)| k == "x-probe" && v == "yes"));
    assert!(headers.iter().any(|(k, _)| k == "apigw-requestid"));
}

/// A wasm function's component is loaded (here: compiled into the cache) before the node
/// says it is ready, so that its first request pays only for an instance.
#[test]
fn components_are_loaded_before_the_node_is_ready() {
    let app = probe_app("");
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let cache = node.dir().join(".nimbus/wasm-cache");
    let cached = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", cache.display(), node.logs()))
        .count();
    assert!(cached > 0, "nothing compiled before the first request");
    let r = http(node.gateway(), "GET", "/echo", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
}
