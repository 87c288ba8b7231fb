//! The gateway's API Gateway events and reply rules as a real framework sees them: a
//! `provided` function built with the `lambda_http` crate (`tests/fixtures/lambda-http-echo`)
//! behind a payload 2.0 route and a payload 1.0 route. The function answers with what
//! `lambda_http` parsed, under a status, headers and cookies of its own.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::{Value, json};

use crate::harness::{Builder, Nimbus, Response, http, repo_root};

/// Builds the fixture once per test run and returns its binary.
///
/// The fixture's binary is named after it rather than `bootstrap` (it becomes the
/// function's `bootstrap` when copied into the app): fixtures share one target
/// directory, where two binaries of one name would overwrite each other.
fn lambda_http_echo() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo_root().join("target"), PathBuf::from)
            .join("fixtures");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(repo_root().join("tests/fixtures/lambda-http-echo/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the lambda-http-echo fixture failed"
        );
        target.join("release/lambda-http-echo")
    })
}

/// `nimbus up` on an app whose function `echo` is the fixture, behind `ANY /v2/{proxy+}`
/// (payload 2.0), and `ANY /v1/{proxy+}` and `$default` (payload 1.0).
fn start() -> (Nimbus, tempfile::TempDir) {
    let app = tempfile::tempdir().unwrap();
    let code = app.path().join("echo");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::copy(lambda_http_echo(), code.join("bootstrap")).unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        r#"name = "gateway"

[functions.echo]
runtime = "provided.al2023"
code = "echo"

[[routes]]
route = "ANY /v2/{proxy+}"
function = "echo"

[[routes]]
route = "ANY /v1/{proxy+}"
function = "echo"
payload = "1.0"

[[routes]]
route = "$default"
function = "echo"
payload = "1.0"
"#,
    )
    .unwrap();
    let node = Builder::up(app.path()).start();
    (node, app)
}

fn header_values<'a>(r: &'a Response, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Checks that lambda_http's own response (status 202, `x-echo`, two cookies, a JSON
/// body) came back through the gateway, and returns the echo.
fn echo_of(r: &Response, node: &Nimbus) -> Value {
    assert_eq!(r.status, 202, "{}\n{}", r.body, node.logs());
    assert_eq!(header_values(r, "x-echo"), ["lambda_http"]);
    assert_eq!(header_values(r, "content-type"), ["application/json"]);
    assert_eq!(
        header_values(r, "set-cookie"),
        ["first=1; Path=/", "second=2; HttpOnly"]
    );
    r.json()
}

/// A GET through a greedy path with repeated query keys, cookies and a repeated header.
fn get(node: &Nimbus, prefix: &str) -> Response {
    http(
        node.gateway(),
        "GET",
        &format!("{prefix}/shelf/b%20c/d?color=red&color=blue&size=m&note=a%20b"),
        &[
            ("cookie", "session=abc; theme=dark"),
            ("x-multi", "one"),
            ("x-multi", "two"),
            ("user-agent", "e2e/1"),
        ],
        "",
    )
    .unwrap()
}

#[test]
fn lambda_http_reads_a_payload_2_0_event() {
    let (node, _app) = start();
    let r = get(&node, "/v2");
    let echo = echo_of(&r, &node);
    let context = &echo["context"];
    assert_eq!(context["kind"], "ApiGatewayV2", "{echo:#}");
    assert_eq!(context["route_key"], "ANY /v2/{proxy+}");
    assert_eq!(context["stage"], "$default");
    assert_eq!(context["method"], "GET");
    assert_eq!(context["source_ip"], "127.0.0.1");
    // The event's request id is the invocation's.
    assert!(
        context["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(context["request_id"], echo["invocation_id"]);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/v2/shelf/b%20c/d");
    assert_eq!(echo["raw_http_path"], "/v2/shelf/b%20c/d");
    assert_eq!(
        echo["query"],
        json!({"color": ["red", "blue"], "size": ["m"], "note": ["a b"]})
    );
    assert_eq!(echo["path_parameters"], json!({"proxy": ["shelf/b c/d"]}));
    assert_eq!(echo["cookies"], json!(["session=abc", "theme=dark"]));
    // Payload 2.0 joins a repeated header with commas.
    assert_eq!(echo["headers"]["x-multi"], json!(["one,two"]));
    assert_eq!(echo["headers"]["user-agent"], json!(["e2e/1"]));
    assert_eq!(echo["body_kind"], "empty");
}

#[test]
fn lambda_http_reads_a_payload_1_0_event() {
    let (node, _app) = start();
    let r = get(&node, "/v1");
    let echo = echo_of(&r, &node);
    let context = &echo["context"];
    assert_eq!(context["kind"], "ApiGatewayV1", "{echo:#}");
    assert_eq!(context["resource_path"], "/v1/{proxy+}");
    assert_eq!(context["stage"], "$default");
    assert_eq!(context["method"], "GET");
    assert_eq!(context["source_ip"], "127.0.0.1");
    assert!(
        context["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(context["request_id"], echo["invocation_id"]);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/v1/shelf/b%20c/d");
    assert_eq!(
        echo["query"],
        json!({"color": ["red", "blue"], "size": ["m"], "note": ["a b"]})
    );
    assert_eq!(echo["path_parameters"], json!({"proxy": ["shelf/b c/d"]}));
    assert_eq!(echo["cookies"], json!(["session=abc", "theme=dark"]));
    // lambda_http lays `headers` over `multiValueHeaders`, so of a repeated header it
    // keeps the value `headers` holds: the last one, as API Gateway fills it.
    assert_eq!(echo["headers"]["x-multi"], json!(["two"]));
    assert_eq!(echo["body_kind"], "empty");

    // `$default` in payload 1.0 is a REST API's root `/{proxy+}` resource.
    let r = http(node.gateway(), "DELETE", "/elsewhere/x?k=v", &[], "").unwrap();
    let echo = echo_of(&r, &node);
    assert_eq!(echo["context"]["kind"], "ApiGatewayV1", "{echo:#}");
    assert_eq!(echo["context"]["resource_path"], "/{proxy+}");
    assert_eq!(echo["method"], "DELETE");
    assert_eq!(echo["path"], "/elsewhere/x");
    assert_eq!(echo["path_parameters"], json!({"proxy": ["elsewhere/x"]}));
    assert_eq!(echo["query"], json!({"k": ["v"]}));
}

/// A request with a body sent by curl, which sends and receives bytes as they are.
struct Sent {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn curl(node: &Nimbus, path: &str, content_type: &str, body: &[u8]) -> Sent {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, head) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("head"),
    );
    std::fs::write(&input, body).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "--data-binary"])
        .arg(format!("@{}", input.display()))
        .arg("-H")
        .arg(format!("content-type: {content_type}"))
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&output)
        .args(["-w", "%{http_code}"])
        .arg(format!("http://{}{path}", node.gateway()))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Sent {
        status: String::from_utf8_lossy(&out.stdout).parse().unwrap(),
        headers: std::fs::read_to_string(&head).unwrap().to_ascii_lowercase(),
        body: std::fs::read(&output).unwrap(),
    }
}

#[test]
fn bodies_reach_lambda_http_and_binary_answers_come_back_whole() {
    let (node, _app) = start();
    let bytes: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0, 0xff, 0xfe, b'\r', b'\n', 0x80];
    for prefix in ["/v2", "/v1"] {
        let sent = curl(
            &node,
            &format!("{prefix}/upload"),
            "application/octet-stream",
            &bytes,
        );
        assert_eq!(sent.status, 202, "{prefix}: {}", node.logs());
        let echo: Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(echo["body_kind"], "binary", "{prefix}: {echo:#}");
        assert_eq!(echo["body_bytes"], json!(bytes), "{prefix}");
        assert_eq!(echo["method"], "POST");

        let text = r#"{"name":"widget","qty":2}"#;
        let sent = curl(
            &node,
            &format!("{prefix}/items"),
            "application/json",
            text.as_bytes(),
        );
        assert_eq!(sent.status, 202, "{prefix}: {}", node.logs());
        let echo: Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(echo["body_kind"], "text", "{prefix}: {echo:#}");
        assert_eq!(echo["body"], text, "{prefix}");

        // lambda_http sends a binary body base64-encoded; the client gets the bytes.
        let sent = curl(&node, &format!("{prefix}/any/binary"), "text/plain", b"x");
        assert_eq!(sent.status, 200, "{prefix}: {}", node.logs());
        assert_eq!(sent.body, [0, 1, 2, 0xfe, 0xff], "{prefix}");
        assert!(
            sent.headers
                .contains("content-type: application/octet-stream"),
            "{prefix}: {}",
            sent.headers
        );
    }
}
