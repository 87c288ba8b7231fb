//! The listeners' connection limits, HTTP/2 and TLS: slow and idle clients, oversized
//! headers, the connection cap, h2c, and HTTPS on the gateway, driven with raw sockets
//! and curl.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::harness::{Builder, Nimbus, http, run};

/// Generous: the server's timeouts in these tests are 1 s.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// Runs curl, which the end-to-end tests need (with HTTP/2 support).
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "60"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (the end-to-end tests need it): {e}"))
}

/// Runs curl and returns its stdout, failing the test unless it succeeds.
fn curl_ok(args: &[&str]) -> String {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(CLOSE_BOUND)).unwrap();
    stream
}

/// A keep-alive `GET /healthz`.
fn send_healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
}

/// Reads one response with a `content-length` from a connection that stays open.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream
            .read(&mut byte)
            .unwrap_or_else(|e| panic!("no response ({e}); so far {head:?}"));
        assert_eq!(n, 1, "connection closed mid-response: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// Waits up to `bound` for the server to close the connection: what it sent before
/// closing, or `None` when it is still open.
fn wait_closed(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(bound)).unwrap();
    let mut sent = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(sent),
            Ok(n) => sent.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(sent),
            Err(e) => panic!("reading failed: {e}"),
        }
    }
}

/// Asserts that the server closes the connection (within [`CLOSE_BOUND`]) without
/// answering, but not at once.
fn assert_closed_without_answer(stream: &mut TcpStream, what: &str) {
    assert_eq!(
        wait_closed(stream, Duration::from_millis(200)),
        None,
        "{what}: closed before its timeout"
    );
    let sent = wait_closed(stream, CLOSE_BOUND)
        .unwrap_or_else(|| panic!("{what}: still open after {CLOSE_BOUND:?}"));
    assert!(
        sent.is_empty(),
        "{what}: the server answered {:?}",
        String::from_utf8_lossy(&sent)
    );
}

#[test]
fn clients_that_do_not_finish_their_headers_are_disconnected() {
    let node = Builder::serve()
        .arg("--header-read-timeout")
        .arg("1s")
        .start();
    let gateway = node.gateway();

    // Connects and sends nothing.
    let mut silent = connect(gateway);
    assert_closed_without_answer(&mut silent, "a silent connection");
    // A slowloris: part of a request, then nothing.
    let mut partial = connect(gateway);
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    assert_closed_without_answer(&mut partial, "a partial request");

    // Waiting between requests is the keep-alive timeout's business (75 s here), not the
    // header timeout's; a request started after the wait is timed from its first byte.
    let mut kept = connect(gateway);
    send_healthz(&mut kept);
    assert_eq!(read_response(&mut kept).0, 200);
    std::thread::sleep(Duration::from_millis(2500));
    send_healthz(&mut kept);
    assert_eq!(
        read_response(&mut kept).0,
        200,
        "an idle keep-alive connection outlives the header timeout"
    );
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    assert_closed_without_answer(&mut kept, "a second request that stops halfway");

    // The services listener has the same limits.
    let mut partial = connect(node.services());
    partial.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    assert_closed_without_answer(&mut partial, "a partial request to the services");
}

/// A client that stops taking a response's bytes is disconnected once its connection's
/// writes have been blocked for five body read timeouts, instead of holding the
/// connection (and what it has not taken) for ever.
#[test]
fn clients_that_stop_reading_responses_are_disconnected() {
    let node = Builder::serve()
        .arg("--body-read-timeout")
        .arg("1s")
        .start();
    // Enough pipelined requests that their answers (about 10 MB) fill both sockets'
    // buffers: the node then has bytes it cannot send.
    const REQUESTS: usize = 60_000;
    let mut stream = connect(node.gateway());
    // Written from a thread of its own: once the node stops reading (its answers are
    // stuck), the write waits, until the node closes the connection.
    let mut writer = stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS));
    });
    // Takes nothing for well over five timeouts, then everything there is.
    std::thread::sleep(Duration::from_secs(10));
    let sent = wait_closed(&mut stream, CLOSE_BOUND)
        .unwrap_or_else(|| panic!("still open after {CLOSE_BOUND:?}\n{}", node.logs()));
    let answers = sent.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert!(answers > 0, "nothing was answered");
    assert!(
        answers < REQUESTS,
        "every request was answered: the connection was not cut"
    );
    writing.join().unwrap();
}

#[test]
fn request_bodies_are_bounded_in_time_and_size() {
    let app = tempfile::tempdir().unwrap();
    echo_app(app.path());
    let node = Builder::up(app.path())
        .arg("--body-read-timeout")
        .arg("1s")
        .start();
    // Headers that announce 100 bytes, then 10 of them and nothing more.
    let mut slow = connect(node.gateway());
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    assert_eq!(
        wait_closed(&mut slow, Duration::from_millis(200)),
        None,
        "answered before the body read timeout"
    );
    let sent = wait_closed(&mut slow, CLOSE_BOUND)
        .unwrap_or_else(|| panic!("still open after {CLOSE_BOUND:?}"));
    let sent = String::from_utf8_lossy(&sent);
    assert!(sent.starts_with("HTTP/1.1 408 "), "{sent}");
    assert!(sent.ends_with(r#"{"message":"Request Timeout"}"#), "{sent}");
    // A body sent in time is served.
    let ok = http(node.gateway(), "POST", "/echo", &[], "hello").unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["body"], "hello");
    // A body whose event would be over Lambda's 6 MB, or over API Gateway's 10 MB itself.
    for size in [7 << 20, 11 << 20] {
        let big = "x".repeat(size);
        let r = http(node.gateway(), "POST", "/echo", &[], &big).unwrap();
        assert_eq!(r.status, 413, "{size}: {}", r.body);
        assert_eq!(r.json(), json!({ "message": "Request Entity Too Large" }));
    }
    // The services listener has the same time limit.
    let mut slow = connect(node.services());
    slow.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    let sent = wait_closed(&mut slow, CLOSE_BOUND)
        .unwrap_or_else(|| panic!("the services: still open after {CLOSE_BOUND:?}"));
    let sent = String::from_utf8_lossy(&sent);
    assert!(sent.starts_with("HTTP/1.1 4"), "{sent}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let node = Builder::serve()
        .env("NIMBUS_KEEP_ALIVE_TIMEOUT", "1s")
        .start();
    let mut conn = connect(node.gateway());
    send_healthz(&mut conn);
    assert_eq!(read_response(&mut conn).0, 200);
    // A request that follows at once is served on the same connection.
    send_healthz(&mut conn);
    assert_eq!(read_response(&mut conn).0, 200);
    assert_closed_without_answer(&mut conn, "an idle keep-alive connection");
}

/// A raw HTTP/1.1 request whose line and headers take exactly `size` bytes.
fn request_of_size(size: usize) -> Vec<u8> {
    let start = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
    let end = "\r\n\r\n";
    let pad = size - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(pad)).into_bytes()
}

/// Sends `request` on a fresh connection and reads until the server closes it.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    let sent = wait_closed(&mut stream, CLOSE_BOUND).expect("the server closes the connection");
    String::from_utf8(sent).unwrap()
}

#[test]
fn request_headers_over_the_limit_get_431() {
    // The default is API Gateway's quota: 10240 bytes of request line and headers.
    let node = Builder::serve().start();
    let at_limit = exchange(node.gateway(), &request_of_size(10240));
    assert!(at_limit.starts_with("HTTP/1.1 200 OK\r\n"), "{at_limit}");
    let over = exchange(node.gateway(), &request_of_size(10241));
    assert!(
        over.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{over}"
    );
    let (head, body) = over.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/json\r\n"),
        "{head}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({ "message": "Request Header Fields Too Large" })
    );
    // Far over the limit, hyper refuses before the head is even complete.
    let far_over = exchange(node.gateway(), &request_of_size(100_000));
    assert!(
        far_over.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{far_over}"
    );

    // Over HTTP/2 too.
    let url = format!("http://{}/healthz", node.gateway());
    let h2 = |pad: usize| {
        let header = format!("X-Pad: {}", "a".repeat(pad));
        curl_ok(&[
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "-H",
            &header,
            &url,
        ])
    };
    assert_eq!(h2(9000), "2 200");
    assert_eq!(h2(12000), "2 431");

    // The limit is configurable.
    let small = Builder::serve()
        .env("NIMBUS_MAX_HEADER_BYTES", "4096")
        .start();
    let at_limit = exchange(small.gateway(), &request_of_size(4096));
    assert!(at_limit.starts_with("HTTP/1.1 200 OK\r\n"), "{at_limit}");
    let over = exchange(small.gateway(), &request_of_size(4097));
    assert!(over.starts_with("HTTP/1.1 431 "), "{over}");
}

#[test]
fn connections_over_the_cap_wait_until_one_closes() {
    let node = Builder::serve().env("NIMBUS_MAX_CONNECTIONS", "2").start();
    let gateway = node.gateway();
    // Two kept-alive connections, each served once: both hold their place.
    let mut first = connect(gateway);
    send_healthz(&mut first);
    assert_eq!(read_response(&mut first).0, 200);
    let mut second = connect(gateway);
    send_healthz(&mut second);
    assert_eq!(read_response(&mut second).0, 200);

    // A third connection is not accepted: its request waits unanswered...
    let mut third = TcpStream::connect(gateway).expect("the backlog takes the connection");
    send_healthz(&mut third);
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    match third.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("a connection over the cap was served: {other:?}"),
    }
    // ... until one of the first two closes.
    drop(first);
    third.set_read_timeout(Some(CLOSE_BOUND)).unwrap();
    let (status, body) = read_response(&mut third);
    assert_eq!(status, 200, "{body}");
    // The remaining connections still work.
    send_healthz(&mut second);
    assert_eq!(read_response(&mut second).0, 200);
}

#[test]
fn http2_with_prior_knowledge_works_on_both_listeners() {
    let node = Builder::serve().start();
    for addr in [node.gateway(), node.services()] {
        let out = curl_ok(&[
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version} %{http_code}",
            &format!("http://{addr}/healthz"),
        ]);
        let (body, status) = out.rsplit_once('\n').unwrap();
        assert_eq!(status, "2 200", "{out}");
        assert_eq!(serde_json::from_str::<Value>(body).unwrap()["status"], "ok");
    }
}

/// Writes a self-signed certificate for `localhost` and 127.0.0.1 with its key.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (the end-to-end tests need it): {e}"));
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Starts a node whose gateway speaks TLS (the harness's readiness check speaks plain
/// HTTP) and returns it with its gateway and services addresses.
fn start_tls(builder: Builder, cert: &Path, key: &Path) -> (Nimbus, SocketAddr, SocketAddr) {
    let node = builder
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .spawn();
    assert!(
        node.wait_for_log("nimbus is ready", Duration::from_secs(180)),
        "nimbus did not get ready:\n{}",
        node.logs()
    );
    let ready: Value = node
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "nimbus is ready")
        .expect("the ready line is JSON");
    let addr = |key: &str| ready[key].as_str().unwrap().parse().unwrap();
    (node, addr("gateway"), addr("services"))
}

#[test]
fn the_gateway_serves_https_over_http1_and_http2() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path(), "gateway");
    let (node, gateway, services) = start_tls(Builder::serve(), &cert, &key);
    let cacert = cert.to_str().unwrap();
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("https://{host}:{}/healthz", gateway.port());
            let out = curl_ok(&[
                flag,
                "--cacert",
                cacert,
                "-w",
                "\n%{http_version} %{http_code}",
                &url,
            ]);
            let (body, status) = out.rsplit_once('\n').unwrap();
            assert_eq!(status, format!("{version} 200"), "{url}: {out}");
            assert_eq!(serde_json::from_str::<Value>(body).unwrap()["status"], "ok");
        }
    }
    // Plain HTTP is not served on the TLS port; the services endpoint stays plain.
    assert!(http(gateway, "GET", "/healthz", &[], "").is_err());
    assert_eq!(
        http(services, "GET", "/healthz", &[], "").unwrap().status,
        200
    );
    // The header timeout covers the TLS handshake: a client that never starts one is
    // disconnected as well.
    drop(node);
    let (_node, gateway, _) = start_tls(
        Builder::serve().arg("--header-read-timeout").arg("1s"),
        &cert,
        &key,
    );
    let mut silent = connect(gateway);
    assert_closed_without_answer(&mut silent, "a connection without a TLS handshake");
}

/// A `provided` function that answers with the API Gateway event it got.
fn echo_app(dir: &Path) {
    let code = dir.join("echo");
    std::fs::create_dir_all(&code).unwrap();
    let bootstrap = code.join("bootstrap");
    std::fs::write(
        &bootstrap,
        crate::functions::shell_loop(
            r#"  curl -sS -o /dev/null -X POST "$api/invocation/$ID/response" --data-binary "$EVENT""#,
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"limits-echo\"\n\n[functions.echo]\nruntime = \"provided.al2023\"\ncode = \"echo\"\n\n[[routes]]\nroute = \"ANY /echo\"\nfunction = \"echo\"\n",
    )
    .unwrap();
}

/// Functions see the client's own address over TLS and HTTP/2 too: the client binds
/// 127.0.0.2, which differs from the gateway's fallback of 127.0.0.1.
#[test]
fn functions_see_the_peer_address_over_https_and_http2() {
    let app = tempfile::tempdir().unwrap();
    echo_app(app.path());
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path(), "gateway");
    let (node, gateway, _) = start_tls(Builder::up(app.path()), &cert, &key);
    for flag in ["--http1.1", "--http2"] {
        let out = curl_ok(&[
            flag,
            "--interface",
            "127.0.0.2",
            "--cacert",
            cert.to_str().unwrap(),
            &format!("https://127.0.0.1:{}/echo", gateway.port()),
        ]);
        let event: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{}", node.logs()));
        assert_eq!(
            event["requestContext"]["http"]["sourceIp"], "127.0.0.2",
            "{flag}"
        );
        // As API Gateway tells a function how it was called.
        assert_eq!(event["headers"]["x-forwarded-proto"], "https", "{flag}");
        assert_eq!(
            event["headers"]["x-forwarded-port"],
            gateway.port().to_string(),
            "{flag}"
        );
    }
}

#[test]
fn an_unusable_tls_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "good");
    let (_, other_key) = self_signed(dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.key");
    let data = dir.path().join("data");
    let last_error_line = |cert: &Path, key: &Path| {
        let out = run(&[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--services-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        stderr.lines().last().unwrap().to_owned()
    };
    assert_eq!(
        last_error_line(&garbage, &key),
        format!(
            "error: cannot use the TLS certificate {}: no PEM certificate in the file",
            garbage.display()
        )
    );
    assert_eq!(
        last_error_line(&cert, &missing),
        format!(
            "error: cannot use the TLS private key {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    assert_eq!(
        last_error_line(&cert, &cert),
        format!(
            "error: cannot use the TLS private key {}: no PEM private key in the file",
            cert.display()
        )
    );
    assert_eq!(
        last_error_line(&cert, &other_key),
        format!(
            "error: cannot use the TLS private key {}: it does not match the certificate in {}",
            other_key.display(),
            cert.display()
        )
    );
    // Both halves are needed.
    let out = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key <FILE>"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
