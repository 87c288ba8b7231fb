//! Who may use the services endpoint: with a services token the admin API and `/metrics`
//! need it (and `nimbus dlq` and `nimbus logs` send it), `/healthz` stays open, requests
//! from web pages and DNS-rebound names are refused, beyond loopback the AWS APIs are
//! served to this host's peers only, and a node that would listen beyond loopback
//! without a token does not start.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::harness::{Builder, Nimbus, client_program, http, nimbus_bin, run_client};

const TOKEN: &str = "e2e-services-token-0123456789abcdef";

/// An app with one Node.js function and a table, and a token file beside it.
fn write_app(dir: &Path) {
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        "exports.handler = async (event) => { console.log('hello from e2e'); return { got: event }; };\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"access-test\"\n\n[functions.hello]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.handler\"\n\n[tables.Items]\npartition_key = { name = \"id\", type = \"S\" }\n",
    )
    .unwrap();
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("services-token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    file
}

fn header<'r>(r: &'r crate::harness::Response, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `nimbus ARGS` with `envs`, to completion: (success, stdout, stderr).
fn nimbus(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(nimbus_bin())
        .args(args)
        .env_remove("NIMBUS_SERVICES_TOKEN")
        .env_remove("NIMBUS_SERVICES_TOKEN_FILE")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the nimbus binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn with_a_token_the_admin_api_needs_it_and_browsers_are_refused() {
    let app = tempfile::tempdir().unwrap();
    write_app(app.path());
    let secrets = tempfile::tempdir().unwrap();
    let token_file = token_file(secrets.path());
    let node = Builder::up(app.path())
        .arg("--no-watch")
        .arg("--services-token-file")
        .arg(&token_file)
        .start();
    let services = node.services();
    let url = format!("http://{services}");
    let bearer = format!("Bearer {TOKEN}");
    let dlq = "/nimbus/v1/functions/hello/dlq";

    // The admin API and the metrics: 401 without the token or with another, 200 with it.
    for path in [dlq, "/metrics"] {
        let r = http(services, "GET", path, &[], "").unwrap();
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(
            header(&r, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")),
            "{:?}",
            r.headers
        );
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("services token")
        );
        let wrong = "Bearer e2e-services-token-0123456789abcdeF";
        let r = http(services, "GET", path, &[("Authorization", wrong)], "").unwrap();
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        let r = http(services, "GET", path, &[("Authorization", &bearer)], "").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let r = http(services, "GET", dlq, &[("Authorization", &bearer)], "").unwrap();
    assert_eq!(r.json()["count"], 0);
    // The health check stays open.
    let r = http(services, "GET", "/healthz", &[], "").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["app"], "access-test");

    // The CLI sends the token from the file or the environment, and says what is wrong
    // without it.
    let (ok, _, stderr) = nimbus(&["dlq", "list", "hello", "--services", &url], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("401") && stderr.contains("services token"),
        "{stderr}"
    );
    let file = token_file.to_str().unwrap();
    let (ok, stdout, stderr) = nimbus(
        &[
            "dlq",
            "list",
            "hello",
            "--services",
            &url,
            "--services-token-file",
            file,
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "no dead letters for hello");
    let (ok, stdout, stderr) = nimbus(
        &["dlq", "list", "hello", "--services", &url],
        &[("NIMBUS_SERVICES_TOKEN", TOKEN)],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "no dead letters for hello");
    // The AWS APIs still serve this host's clients: the Lambda API through `nimbus
    // invoke`, then the logs of that invocation through `nimbus logs`.
    let (ok, stdout, stderr) = nimbus(
        &[
            "invoke",
            "hello",
            "--payload",
            r#"{"n":1}"#,
            "--services",
            &url,
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap()["got"]["n"],
        1
    );
    // The line reaches the store just after the response.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, stdout, stderr) = nimbus(
            &["logs", "hello", "--services", &url],
            &[("NIMBUS_SERVICES_TOKEN_FILE", file)],
        );
        assert!(ok, "{stderr}");
        if stdout.contains("hello from e2e") {
            break;
        }
        assert!(Instant::now() < deadline, "not logged: {stdout}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, _, stderr) = nimbus(
        &["logs", "hello", "--services", &url],
        &[("NIMBUS_SERVICES_TOKEN", "too-short")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("NIMBUS_SERVICES_TOKEN") && stderr.contains("at least 16"),
        "{stderr}"
    );

    // A page on another site: `fetch(url, {method: 'POST', mode: 'no-cors'})`.
    let page = [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "no-cors"),
        ("Content-Type", "text/plain;charset=UTF-8"),
    ];
    let r = http(services, "POST", &format!("{dlq}/redrive"), &page, "").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("web pages"));
    // ... even one that knows the token.
    let mut with_token = page.to_vec();
    with_token.push(("Authorization", &bearer));
    let r = http(services, "GET", "/metrics", &with_token, "").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    // The Lambda API and DynamoDB refuse it in their own shapes.
    let r = http(
        services,
        "POST",
        "/2015-03-31/functions/hello/invocations",
        &page,
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        header(&r, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );
    let mut dynamodb = page.to_vec();
    dynamodb.push(("X-Amz-Target", "DynamoDB_20120810.ListTables"));
    let r = http(services, "POST", "/", &dynamodb, "{}").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.json()["__type"],
        "com.amazon.coral.service#AccessDeniedException"
    );
    // A page that rebound its own name to this host: its requests name that host.
    let rebound = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "Host: rebind.evil.example:4566"])
        .args(["-H", "Content-Type: text/plain"])
        .arg(format!("{url}/2015-03-31/functions/hello/invocations"))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&rebound.stdout), "403");
    // The AWS CLI (and so botocore) passes every check.
    let aws = client_program("aws");
    let tables = run_client(
        &aws,
        &[
            "--endpoint-url",
            &url,
            "--output",
            "json",
            "dynamodb",
            "list-tables",
        ],
        &url,
    );
    assert!(tables.contains("Items"), "{tables}");
}

/// This host's address on the interface toward other hosts, if it has one: a
/// connection from it to this host is from a peer that is not on loopback.
fn outward_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket only picks the route; nothing is sent.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn beyond_loopback_the_aws_apis_are_served_to_this_hosts_peers_only() {
    let app = tempfile::tempdir().unwrap();
    write_app(app.path());
    let secrets = tempfile::tempdir().unwrap();
    let token_file = token_file(secrets.path());
    let node: Nimbus = Builder::up(app.path())
        .arg("--no-watch")
        .arg("--services-listen")
        .arg("0.0.0.0:0")
        .env("NIMBUS_SERVICES_TOKEN_FILE", &token_file)
        .start();
    let port = node.services().port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    let target = [("X-Amz-Target", "DynamoDB_20120810.ListTables")];
    let r = http(local, "POST", "/", &target, "{}").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // Functions reach the endpoint over loopback, so they keep the AWS APIs.
    let r = http(
        local,
        "POST",
        "/2015-03-31/functions/hello/invocations",
        &[],
        r#"{"n":2}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let Some(ip) = outward_ip() else {
        eprintln!("no address beyond loopback on this host: the remote-peer half is not run");
        return;
    };
    let remote = SocketAddr::new(ip, port);
    let r = http(remote, "POST", "/", &target, "{}").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let body = r.json();
    assert_eq!(
        body["__type"],
        "com.amazon.coral.service#AccessDeniedException"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("signed requests are not verified yet") && message.contains("loopback"),
        "{message}"
    );
    let r = http(
        remote,
        "POST",
        "/2015-03-31/functions/hello/invocations",
        &[],
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        header(&r, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );
    // The health check is open, the admin API takes the token.
    assert_eq!(
        http(remote, "GET", "/healthz", &[], "").unwrap().status,
        200
    );
    let bearer = format!("Bearer {TOKEN}");
    let r = http(remote, "GET", "/metrics", &[("Authorization", &bearer)], "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        http(remote, "GET", "/metrics", &[], "").unwrap().status,
        401
    );
}

#[test]
fn a_node_beyond_loopback_without_a_good_token_does_not_start() {
    for (envs, expected) in [
        (vec![], "--services-token-file"),
        (
            vec![("NIMBUS_SERVICES_TOKEN", "")],
            "the services token is empty",
        ),
        (vec![("NIMBUS_SERVICES_TOKEN", "short")], "at least 16"),
    ] {
        let mut builder = Builder::serve().arg("--services-listen").arg("0.0.0.0:0");
        for (k, v) in &envs {
            builder = builder.env(k, v);
        }
        let mut node = builder.spawn();
        let status = node.wait_exit(Duration::from_secs(60));
        let logs = node.logs();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{envs:?}: {status:?}\n{logs}"
        );
        assert!(logs.contains(expected), "{envs:?}: {logs}");
    }
}
