//! Function logs: Lambda's START/END/REPORT lines and the function's own output for every
//! runtime, stored per function and read back with `nimbus logs` (by request id, text and
//! time, and followed live), Lambda's JSON log format, and the retention bounds.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    harness::{Builder, Nimbus, http, nimbus_bin},
    wasm::probe,
};

/// Generous: a cold start may install dependencies first.
const PATIENCE: Duration = Duration::from_secs(60);

/// `nimbus logs FUNCTION --json ARGS` against the node: the lines it printed.
fn logs(node: &Nimbus, function: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(nimbus_bin())
        .args(["logs", function, "--json", "--services"])
        .arg(format!("http://{}", node.services()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nimbus logs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until the function's stored log holds a line containing `needle`; returns the
/// log then.
fn wait_for_stored(node: &Nimbus, function: &str, needle: &str) -> Vec<Value> {
    wait_for_line(node, function, |l| message(l).contains(needle))
}

/// Waits until the function's stored log holds a line `wanted` accepts; returns the log
/// then.
fn wait_for_line(node: &Nimbus, function: &str, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = logs(node, function, &[]);
        if lines.iter().any(&wanted) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "the line awaited never reached the log of {function}: {lines:#?}\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls a route and returns the request id the gateway gave it.
fn call(node: &Nimbus, path: &str) -> String {
    let r = http(node.gateway(), "GET", path, &[], "").unwrap();
    assert_eq!(r.status, 200, "{path}: {}\n{}", r.body, node.logs());
    r.headers
        .iter()
        .find(|(k, _)| k == "apigw-requestid")
        .map(|(_, v)| v.clone())
        .expect("the gateway sends apigw-requestid")
}

fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    if path.ends_with("bootstrap") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A `provided` bootstrap in shell that writes `hello from provided` to stderr and answers
/// `ok`, for each invocation.
const PROVIDED: &str = r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
  headers=$(mktemp)
  curl -sS -D "$headers" -o /dev/null "$api/invocation/next" || exit 1
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d: -f2 | tr -d ' \r\n')
  rm -f "$headers"
  echo "hello from provided" >&2
  curl -sS -o /dev/null -X POST "$api/invocation/$ID/response" --data-binary '{"statusCode":200,"body":"ok"}'
done
"#;

/// An app with one function per runtime, each printing `hello from <runtime>`.
fn every_runtime_app(extra_manifest: &str) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    write(
        &dir.join("node/index.js"),
        "exports.handler = async () => { console.log('hello from node'); return { statusCode: 200, body: 'node' }; };\n",
    );
    write(
        &dir.join("py/app.py"),
        "def handler(event, context):\n    print(\"hello from python\")\n    return {\"statusCode\": 200, \"body\": \"python\"}\n",
    );
    write(&dir.join("provided/bootstrap"), PROVIDED);
    std::fs::copy(probe(), dir.join("probe.wasm")).unwrap();
    write(
        &dir.join("nimbus.toml"),
        &format!(
            r#"name = "logs"

[functions.node]
runtime = "nodejs20.x"
code = "node"
handler = "index.handler"

[functions.python]
runtime = "python3.11"
code = "py"
handler = "app.handler"

[functions.provided]
runtime = "provided.al2023"
code = "provided"

[functions.wasm]
runtime = "wasm"
code = "probe.wasm"

[[routes]]
route = "GET /node"
function = "node"

[[routes]]
route = "GET /python"
function = "python"

[[routes]]
route = "GET /provided"
function = "provided"

[[routes]]
route = "GET /log"
function = "wasm"
{extra_manifest}"#
        ),
    );
    app
}

/// The figure after `label` in a REPORT line (`Duration: 1.23 ms` gives 1.23).
fn figure(report: &str, label: &str) -> Option<f64> {
    let rest = report.split(&format!("{label}: ")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn every_runtime_logs_start_output_end_and_report_cold_then_warm() {
    let app = every_runtime_app("");
    let node = Builder::up(app.path()).start();
    for (function, path, own) in [
        ("node", "/node", "hello from node"),
        ("python", "/python", "hello from python"),
        ("provided", "/provided", "hello from provided"),
        ("wasm", "/log", "hello from the probe"),
    ] {
        let cold = call(&node, path);
        let warm = call(&node, path);
        let stored = wait_for_stored(&node, function, &format!("REPORT RequestId: {warm}"));
        for (id, is_cold) in [(&cold, true), (&warm, false)] {
            let mine: Vec<&Value> = stored.iter().filter(|l| l["request_id"] == **id).collect();
            let messages: Vec<&str> = mine.iter().map(|l| message(l)).collect();
            let context = format!("{function} {id}: {messages:#?}");
            assert_eq!(
                messages.first().copied(),
                Some(format!("START RequestId: {id} Version: $LATEST").as_str()),
                "{context}"
            );
            // The function's own line, tagged with the time and the request id.
            let own_line = mine
                .iter()
                .find(|l| message(l).contains(own))
                .unwrap_or_else(|| panic!("no own line in {context}"));
            assert!(
                own_line["time"].as_str().unwrap().ends_with('Z'),
                "{context}"
            );
            assert!(own_line["timestamp"].as_u64().unwrap() > 0, "{context}");
            assert_eq!(
                messages[messages.len() - 2],
                format!("END RequestId: {id}"),
                "{context}"
            );
            let report = messages[messages.len() - 1];
            assert!(
                report.starts_with(&format!("REPORT RequestId: {id}\t")),
                "{context}"
            );
            let duration = figure(report, "Duration").expect("a duration");
            let billed = figure(report, "Billed Duration").expect("a billed duration");
            assert!(billed >= duration, "{report}");
            assert_eq!(figure(report, "Memory Size"), Some(128.0), "{report}");
            assert!(
                figure(report, "Max Memory Used").is_some_and(|m| m > 0.0),
                "Max Memory Used is measured: {report}"
            );
            assert_eq!(report.contains("Init Duration: "), is_cold, "{report}");
        }
        // The gateway's access log line carries the same request id.
        assert!(
            node.wait_for_log(&format!("\"request_id\":\"{warm}\""), PATIENCE),
            "{}",
            node.logs()
        );
        let access = node
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| l["target"] == "access" && l["request_id"] == *warm);
        assert!(access, "no access log line for {warm}:\n{}", node.stderr());
    }
}

/// A `provided` bootstrap whose first invocation writes a line without a newline to
/// stdout and whose later ones end theirs.
const UNENDED: &str = r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
n=0
while true; do
  headers=$(mktemp)
  curl -sS -D "$headers" -o /dev/null "$api/invocation/next" || exit 1
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d: -f2 | tr -d ' \r\n')
  rm -f "$headers"
  n=$((n + 1))
  if [ "$n" = 1 ]; then printf 'unended %s' "$ID"; else echo "ended $ID"; fi
  curl -sS -o /dev/null -X POST "$api/invocation/$ID/response" --data-binary '{"statusCode":200,"body":"ok"}'
done
"#;

#[test]
fn output_without_a_final_newline_is_logged_with_its_own_invocation() {
    let app = tempfile::tempdir().unwrap();
    write(&app.path().join("provided/bootstrap"), UNENDED);
    write(
        &app.path().join("nimbus.toml"),
        r#"name = "unended"

[functions.provided]
runtime = "provided.al2023"
code = "provided"

[[routes]]
route = "GET /provided"
function = "provided"
"#,
    );
    let node = Builder::up(app.path()).start();
    let first = call(&node, "/provided");
    let second = call(&node, "/provided");
    let stored = wait_for_stored(&node, "provided", &format!("REPORT RequestId: {second}"));
    for (id, own) in [(&first, "unended"), (&second, "ended")] {
        let mine: Vec<&str> = stored
            .iter()
            .filter(|l| l["request_id"] == **id)
            .map(message)
            .collect();
        assert_eq!(mine.len(), 4, "START, its own line, END, REPORT: {mine:#?}");
        assert_eq!(mine[1], format!("{own} {id}"), "{mine:#?}");
        assert_eq!(mine[2], format!("END RequestId: {id}"), "{mine:#?}");
    }
}

#[test]
fn the_json_format_writes_platform_records_and_filters_application_levels() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    write(
        &dir.join("node/index.js"),
        "exports.handler = async () => { console.debug('hidden debug'); console.info('shown info'); return { statusCode: 200, body: 'ok' }; };\n",
    );
    std::fs::copy(probe(), dir.join("probe.wasm")).unwrap();
    write(
        &dir.join("nimbus.toml"),
        r#"name = "json-logs"

[functions.node]
runtime = "nodejs20.x"
code = "node"
handler = "index.handler"
log_format = "json"
application_log_level = "INFO"

[functions.wasm]
runtime = "wasm"
code = "probe.wasm"
log_format = "json"

[[routes]]
route = "GET /node"
function = "node"

[[routes]]
route = "GET /log"
function = "wasm"
"#,
    );
    let node = Builder::up(dir).start();
    for (function, path, own) in [
        ("node", "/node", "shown info"),
        ("wasm", "/log", "hello from the probe"),
    ] {
        let cold = call(&node, path);
        let warm = call(&node, path);
        // The report is an invocation's last line.
        let stored = wait_for_line(&node, function, |l| {
            l["request_id"] == warm.as_str() && message(l).contains("platform.report")
        });
        for (id, is_cold) in [(&cold, true), (&warm, false)] {
            let mine: Vec<&Value> = stored.iter().filter(|l| l["request_id"] == **id).collect();
            assert!(
                !mine.iter().any(|l| message(l).starts_with("END")),
                "the JSON format has no END line: {mine:#?}"
            );
            let records: Vec<Value> = mine
                .iter()
                .map(|l| {
                    serde_json::from_str(message(l)).unwrap_or_else(|e| {
                        panic!("{function}: a line that is not JSON ({e}): {l}")
                    })
                })
                .collect();
            let context = format!("{function} {id}: {records:#?}");
            let start = &records[0];
            assert_eq!(start["type"], "platform.start", "{context}");
            assert_eq!(start["record"]["requestId"], **id, "{context}");
            assert_eq!(start["record"]["version"], "$LATEST", "{context}");
            let report = records.last().unwrap();
            assert_eq!(report["type"], "platform.report", "{context}");
            assert_eq!(report["record"]["requestId"], **id, "{context}");
            assert_eq!(report["record"]["status"], "success", "{context}");
            let metrics = &report["record"]["metrics"];
            assert!(metrics["durationMs"].as_f64().is_some(), "{context}");
            assert!(metrics["billedDurationMs"].as_u64().is_some(), "{context}");
            assert_eq!(metrics["memorySizeMB"], 128, "{context}");
            assert!(
                metrics["maxMemoryUsedMB"].as_u64().is_some_and(|m| m > 0),
                "{context}"
            );
            assert_eq!(metrics["initDurationMs"].is_number(), is_cold, "{context}");
            let own_line = records
                .iter()
                .find(|r| r["message"] == own)
                .unwrap_or_else(|| panic!("no own line in {context}"));
            assert_eq!(own_line["level"], "INFO", "{context}");
            assert_eq!(own_line["requestId"], **id, "{context}");
            assert!(
                own_line["timestamp"].as_str().unwrap().ends_with('Z'),
                "{context}"
            );
            assert!(
                !records.iter().any(|r| r["message"] == "hidden debug"),
                "DEBUG is under the INFO level: {context}"
            );
        }
    }
}

/// `nimbus logs --follow`, its output read line by line on a thread.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn start(node: &Nimbus, function: &str, args: &[&str]) -> Follow {
        let mut child = Command::new(nimbus_bin())
            .args(["logs", function, "--follow", "--services"])
            .arg(format!("http://{}", node.services()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follow { child, lines }
    }

    /// Waits for a line containing `needle`; returns every line read until then.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
        }
        panic!("--follow never printed {needle:?}; it printed {seen:#?}");
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_are_queried_by_request_id_text_and_time_and_followed() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    write(&dir.join("provided/bootstrap"), PROVIDED);
    write(
        &dir.join("nimbus.toml"),
        "name = \"follow\"\n\n[functions.f]\nruntime = \"provided\"\ncode = \"provided\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
    );
    let node = Builder::up(dir).start();
    let first = call(&node, "/f");
    wait_for_stored(&node, "f", &format!("REPORT RequestId: {first}"));
    std::thread::sleep(Duration::from_millis(20));
    let between = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(20));

    // A follower sees the history, then a new invocation as it happens.
    let follow = Follow::start(&node, "f", &[]);
    let history = follow.wait_for(&format!("REPORT RequestId: {first}"));
    assert!(
        history[0].contains(&format!("START RequestId: {first}")),
        "{history:#?}"
    );
    // Text lines: time, request id, message.
    let parts: Vec<&str> = history[0].splitn(3, ' ').collect();
    assert!(parts[0].ends_with('Z'), "{history:#?}");
    assert_eq!(parts[1], first);
    let second = call(&node, "/f");
    let live = follow.wait_for(&format!("END RequestId: {second}"));
    assert!(
        live.iter()
            .any(|l| l.ends_with("hello from provided") && l.contains(&second)),
        "{live:#?}"
    );
    // Each line once: nothing of the first invocation came again.
    assert!(!live.iter().any(|l| l.contains(&first)), "{live:#?}");
    // A follower with a filter sees only the lines it asked for.
    let filtered = Follow::start(&node, "f", &["--filter", "REPORT"]);
    let third = call(&node, "/f");
    let seen = filtered.wait_for(&format!("REPORT RequestId: {third}"));
    assert!(seen.iter().all(|l| l.contains("REPORT")), "{seen:#?}");
    wait_for_stored(&node, "f", &format!("REPORT RequestId: {third}"));

    let by_id = logs(&node, "f", &["--request-id", &second]);
    assert_eq!(by_id.len(), 4, "{by_id:#?}");
    assert!(by_id.iter().all(|l| l["request_id"] == second.as_str()));
    let by_text = logs(&node, "f", &["--filter", "START RequestId"]);
    assert_eq!(by_text.len(), 3, "{by_text:#?}");
    let since = logs(&node, "f", &["--since", &between]);
    assert!(
        since.iter().all(|l| l["request_id"] != first.as_str()),
        "{since:#?}"
    );
    assert!(since.iter().any(|l| l["request_id"] == second.as_str()));
    assert_eq!(logs(&node, "f", &["--since", "1h"]).len(), 12);
    assert_eq!(logs(&node, "f", &["--until", &between]).len(), 4);
    assert_eq!(logs(&node, "f", &["--limit", "2"]).len(), 2);

    // The admin API's errors.
    let get = |path: &str| http(node.services(), "GET", path, &[], "").unwrap();
    let unknown = get("/nimbus/v1/functions/nope/logs");
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["message"].as_str().unwrap().contains("nope"));
    let bad = get("/nimbus/v1/functions/f/logs?since=soon");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["message"].as_str().unwrap().contains("since"));
    // Another method, and a name that is not UTF-8, get the same JSON shape.
    for (method, path, status) in [
        ("POST", "/nimbus/v1/functions/f/logs", 405),
        ("DELETE", "/nimbus/v1/functions/f/dlq", 405),
        ("GET", "/nimbus/v1/functions/%FF/logs", 400),
        ("GET", "/nimbus/v1/functions/%FF/dlq", 400),
    ] {
        let r = http(node.services(), method, path, &[], "").unwrap();
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(
            r.json()["message"].is_string(),
            "{method} {path}: {}",
            r.body
        );
    }
    let out = Command::new(nimbus_bin())
        .args(["logs", "f", "--since", "soon", "--services"])
        .arg(format!("http://{}", node.services()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("400 Bad Request"));
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn the_size_bound_keeps_a_functions_log_small_and_drops_the_oldest_lines() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    write(
        &dir.join("node/index.js"),
        "exports.handler = async () => { for (let i = 0; i < 200; i++) console.log('filler line %d %s', i, 'x'.repeat(80)); return { statusCode: 200, body: 'ok' }; };\n",
    );
    write(
        &dir.join("nimbus.toml"),
        "name = \"bounded\"\n\n[functions.noisy]\nruntime = \"nodejs20.x\"\ncode = \"node\"\nhandler = \"index.handler\"\n\n[[routes]]\nroute = \"GET /noisy\"\nfunction = \"noisy\"\n",
    );
    let node = Builder::up(dir)
        .arg("--log-retention-size")
        .arg("32KiB")
        .start();
    let first = call(&node, "/noisy");
    let mut last = first.clone();
    for _ in 0..10 {
        last = call(&node, "/noisy");
    }
    // The last line the last invocation prints (the Node.js shim puts the request id in
    // the line itself). Lines still in the pipe when an invocation ends are stored after
    // its REPORT, and enough of them can push that REPORT out of a 32 KiB log, so the
    // test waits for this line rather than for the REPORT.
    assert!(node.wait_for_log(&format!("REPORT RequestId: {last}"), PATIENCE));
    let stored = wait_for_stored(&node, "noisy", &format!("{last}\tINFO\tfiller line 199 "));
    // About 40 KB per invocation went in; the bound is 32 KiB plus one segment (4 KiB).
    let kept = dir_bytes(&node.dir().join(".nimbus/logs/noisy"));
    assert!(kept <= 32 * 1024 + 4 * 1024 + 1024, "{kept} bytes kept");
    assert!(!stored.iter().any(|l| l["request_id"] == first.as_str()));
    assert!(stored.len() < 11 * 203, "{} lines kept", stored.len());
    // Every line was printed during an invocation and carries its id, also the lines
    // still in the pipe when the invocation ended.
    for line in &stored {
        let id = line["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}"));
        assert!(message(line).contains(id), "{line}");
    }
}

#[test]
fn with_the_store_off_nothing_is_kept_and_the_api_says_so() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    write(&dir.join("provided/bootstrap"), PROVIDED);
    write(
        &dir.join("nimbus.toml"),
        "name = \"off\"\n\n[functions.f]\nruntime = \"provided\"\ncode = \"provided\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
    );
    let node = Builder::up(dir).arg("--log-store").arg("off").start();
    let id = call(&node, "/f");
    // The node's own log still has the lines.
    assert!(node.wait_for_log(&format!("REPORT RequestId: {id}"), PATIENCE));
    let r = http(
        node.services(),
        "GET",
        "/nimbus/v1/functions/f/logs",
        &[],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("--log-store off")
    );
    assert!(!node.dir().join(".nimbus/logs").exists());
}
