//! Starting, serving and stopping a node: `up` and `serve`.

use std::{net::TcpListener, time::Duration};

use serde_json::json;

use crate::harness::{Builder, example, http, run};

#[test]
fn up_serves_healthz_on_both_ports() {
    let node = Builder::up(&example("user-registration")).start();
    for addr in [node.gateway(), node.services()] {
        let r = http(addr, "GET", "/healthz", &[], "").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!({ "status": "ok", "app": "user-registration", "version": env!("CARGO_PKG_VERSION") })
        );
    }
    assert!(node.dir().join(".nimbus/nimbus.lock").is_file());
}

#[test]
fn gateway_answers_unrouted_requests_as_api_gateway_does() {
    let node = Builder::up(&example("user-registration")).start();
    let r = http(node.gateway(), "GET", "/nowhere", &[], "").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({ "message": "Not Found" }));
    // The route exists but its method does not.
    let r = http(node.gateway(), "GET", "/users", &[], "").unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn services_endpoint_answers_aws_clients_in_their_protocol() {
    let node = Builder::up(&example("user-registration")).start();
    let r = http(
        node.services(),
        "POST",
        "/",
        &[
            ("X-Amz-Target", "AWSEvents.PutEvents"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["__type"],
        "com.amazon.coral.service#UnknownOperationException"
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("AWSEvents.PutEvents")
    );
}

fn assert_clean_exit_on(signal: &str) {
    let mut node = Builder::up(&example("user-registration")).start();
    let gateway = node.gateway();
    node.signal(signal);
    let status = node.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "nimbus still running 5 s after SIG{signal}:\n{}",
            node.logs()
        )
    });
    assert_eq!(status.code(), Some(0), "{}", node.logs());
    assert!(
        node.logs().contains(&format!("SIG{signal}")),
        "{}",
        node.logs()
    );
    assert!(
        http(gateway, "GET", "/healthz", &[], "").is_err(),
        "the gateway still accepts connections after exit"
    );
}

#[test]
fn sigterm_stops_cleanly_within_five_seconds() {
    assert_clean_exit_on("TERM");
}

#[test]
fn sigint_stops_cleanly_within_five_seconds() {
    assert_clean_exit_on("INT");
}

/// A connection that is open but idle does not hold the node up past its grace period.
#[test]
fn an_idle_keep_alive_connection_does_not_block_shutdown() {
    use std::io::{Read, Write};
    let mut node = Builder::up(&example("user-registration")).start();
    let mut conn = std::net::TcpStream::connect(node.gateway()).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    node.signal("TERM");
    let status = node
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s");
    assert_eq!(status.code(), Some(0), "{}", node.logs());
}

#[test]
fn a_taken_gateway_port_is_a_one_line_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let app = crate::harness::copy_app(&example("user-registration"));
    let out = run(&[
        "up",
        app.path().to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--services-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "error: cannot listen on 127.0.0.1:{port} (gateway): Address already in use (os error 98)"
        )
    );
}

#[test]
fn a_taken_services_port_is_a_one_line_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--services-listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().last().unwrap().starts_with(&format!(
            "error: cannot listen on 127.0.0.1:{port} (services): "
        )),
        "{stderr}"
    );
}

#[test]
fn two_ups_on_one_directory_fail_clearly() {
    let first = Builder::up(&example("user-registration")).start();
    let out = run(&[
        "up",
        first.dir().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--services-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "is in use by another nimbus process (pid {})",
            first.pid()
        )),
        "{stderr}"
    );
}

/// A crash must not leave the data directory locked.
#[test]
fn after_sigkill_the_directory_can_be_used_again() {
    let app = crate::harness::copy_app(&example("user-registration"));
    let mut first = Builder::up_in_place(app.path()).start();
    first.signal("KILL");
    first
        .wait_exit(Duration::from_secs(5))
        .expect("SIGKILL ends it");
    let second = Builder::up_in_place(app.path()).start();
    let r = http(second.gateway(), "GET", "/healthz", &[], "").unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn up_refuses_an_invalid_app_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nimbus.toml"),
        "name = \"x\"\n[functions.f]\nruntime = \"cobol\"\nmemory_mb = 1\n",
    )
    .unwrap();
    let out = run(&["up", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("functions.f.runtime: found \"cobol\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("functions.f.memory_mb: found 1"),
        "{stderr}"
    );
    assert!(stderr.contains("is not valid (2 errors)"), "{stderr}");
    assert!(
        !dir.path().join(".nimbus").exists(),
        "an invalid app leaves no state"
    );
}

#[test]
fn serve_runs_without_an_app_and_reads_nimbus_env() {
    let node = Builder::serve().env("NIMBUS_SHUTDOWN_GRACE", "1s").start();
    let r = http(node.services(), "GET", "/healthz", &[], "").unwrap();
    assert_eq!(r.json()["app"], serde_json::Value::Null);
    let r = http(node.gateway(), "GET", "/users", &[], "").unwrap();
    assert_eq!(r.status, 404);
    assert!(node.dir().join("nimbus.lock").is_file());
}

#[test]
fn listen_addresses_come_from_the_environment_too() {
    let free_port = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (gateway, services) = (free_port(), free_port());
    let node = Builder::serve()
        .env("NIMBUS_LISTEN", format!("127.0.0.1:{gateway}"))
        .env("NIMBUS_SERVICES_LISTEN", format!("127.0.0.1:{services}"))
        .start();
    assert_eq!(node.gateway().port(), gateway);
    assert_eq!(node.services().port(), services);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut node = Builder::up(&example("user-registration")).start();
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(5)).unwrap();
    let logs = node.stderr();
    let mut messages = Vec::new();
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(v["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(messages.iter().any(|m| m == "app loaded"), "{logs}");
    assert!(messages.iter().any(|m| m == "nimbus is ready"), "{logs}");
    assert!(messages.iter().any(|m| m == "stopped"), "{logs}");
}

/// Functions find their runtime shims when `up` is given a relative directory.
#[test]
fn up_with_a_relative_directory_runs_functions() {
    let app = crate::harness::copy_app(&example("user-registration"));
    let parent = app.path().parent().unwrap();
    let name = app.path().file_name().unwrap().to_str().unwrap().to_owned();
    let mut node = Builder::up_relative(parent, &name).start();
    let r = http(
        node.gateway(),
        "POST",
        "/users",
        &[("content-type", "application/json")],
        r#"{"email":"rel@example.com","name":"R"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(5)).unwrap();
}
