//! Asynchronous invocations (`InvocationType: Event`): accepted durably with a 202, run
//! by the node's worker with the request id the caller got, retried with backoff, then
//! dead-lettered (`nimbus dlq`) and sent to destinations; nothing accepted is lost when
//! the node is killed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::harness::{Builder, Nimbus, client_program, http, run, run_client};

/// Writes an app of Node functions sharing `index.js`; each function is
/// `(name, export, extra manifest lines)`.
fn write_app(dir: &Path, index_js: &str, functions: &[(&str, &str, &str)]) {
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(dir.join("js/index.js"), index_js).unwrap();
    let mut manifest = String::from("name = \"async-test\"\n");
    for (name, export, extra) in functions {
        manifest.push_str(&format!(
            "\n[functions.{name}]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.{export}\"\n{extra}\n"
        ));
    }
    std::fs::write(dir.join("nimbus.toml"), manifest).unwrap();
}

/// A function's code appends what it saw to `$OUT`: one JSON object per line.
const RECORDING_JS: &str = r#"const fs = require('fs');
const record = (kind, event, context) =>
  fs.appendFileSync(process.env.OUT, JSON.stringify({ kind, id: context.awsRequestId, event }) + '\n');
exports.ok = async (event, context) => { record('ok', event, context); return { done: true }; };
exports.fails = async (event, context) => { record('fails', event, context); throw new Error('always fails'); };
exports.sink = async (event, context) => { record('sink', event, context); return null; };
exports.slow = async (event, context) => {
  await new Promise((r) => setTimeout(r, 50));
  record('slow', event, context);
};
"#;

fn out_env(out: &Path) -> String {
    format!("environment = {{ OUT = {:?} }}", out.display().to_string())
}

/// The lines `$OUT` holds so far.
fn recorded(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until `$OUT` satisfies `done`, failing the test with the node's log if it never
/// does within `timeout`.
fn wait_recorded(node: &Nimbus, out: &Path, timeout: Duration, done: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&recorded(out)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; recorded: {:?}\n{}",
            recorded(out),
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends an async invocation and returns its request id.
fn invoke_event(node: &Nimbus, function: &str, payload: &str) -> String {
    let r = http(
        node.services(),
        "POST",
        &format!("/2015-03-31/functions/{function}/invocations"),
        &[("x-amz-invocation-type", "Event")],
        payload,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}\n{}", r.body, node.logs());
    assert_eq!(r.body, "");
    r.headers
        .iter()
        .find(|(k, _)| k == "x-amzn-requestid")
        .map(|(_, v)| v.clone())
        .expect("a 202 carries the request id")
}

fn services_url(node: &Nimbus) -> String {
    format!("http://{}", node.services())
}

/// `nimbus ARGS`, which must succeed; returns stdout.
fn nimbus_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "nimbus {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn dead_letters(node: &Nimbus, function: &str) -> Vec<Value> {
    let out = nimbus_ok(&[
        "dlq",
        "list",
        function,
        "--json",
        "--services",
        &services_url(node),
    ]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

fn wait_dead_letters(node: &Nimbus, function: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let entries = dead_letters(node, function);
        if entries.len() >= n {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter for {function}:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn event_invocations_are_accepted_with_202_and_run_with_their_request_id() {
    let app = tempfile::tempdir().unwrap();
    let out = app.path().join("out.jsonl");
    write_app(app.path(), RECORDING_JS, &[("ok", "ok", &out_env(&out))]);
    let node = Builder::up(app.path()).arg("--no-watch").start();
    let url = services_url(&node);

    // The AWS CLI, as a user would call it.
    let aws = client_program("aws");
    let response_file = app.path().join("response.json");
    let printed = run_client(
        &aws,
        &[
            "--endpoint-url",
            &url,
            "lambda",
            "invoke",
            "--function-name",
            "ok",
            "--invocation-type",
            "Event",
            "--payload",
            r#"{"from":"aws-cli"}"#,
            response_file.to_str().unwrap(),
        ],
        &url,
    );
    let printed: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(printed["StatusCode"], 202, "{printed}");
    assert_eq!(std::fs::read_to_string(&response_file).unwrap(), "");
    wait_recorded(&node, &out, Duration::from_secs(60), |lines| {
        lines.iter().any(|l| l["event"]["from"] == "aws-cli")
    });
    // `$LATEST` is the one version there is, as a qualifier of the name or a parameter.
    for (name, qualifier) in [("ok:$LATEST", None), ("ok", Some("$LATEST"))] {
        let mut args = vec![
            "--endpoint-url",
            &url,
            "lambda",
            "invoke",
            "--function-name",
            name,
            "--invocation-type",
            "Event",
            "--payload",
            r#"{"from":"qualified"}"#,
        ];
        if let Some(qualifier) = qualifier {
            args.extend(["--qualifier", qualifier]);
        }
        args.push(response_file.to_str().unwrap());
        let printed: Value = serde_json::from_str(&run_client(&aws, &args, &url)).unwrap();
        assert_eq!(
            printed["StatusCode"], 202,
            "{name} {qualifier:?}: {printed}"
        );
    }
    wait_recorded(&node, &out, Duration::from_secs(60), |lines| {
        lines
            .iter()
            .filter(|l| l["event"]["from"] == "qualified")
            .count()
            == 2
    });
    // Any other version or alias is not there.
    for path in [
        "/2015-03-31/functions/ok:7/invocations",
        "/2015-03-31/functions/ok/invocations?Qualifier=live",
    ] {
        let r = http(
            node.services(),
            "POST",
            path,
            &[("x-amz-invocation-type", "Event")],
            "{}",
        )
        .unwrap();
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    // A Lambda operation Nimbus does not serve is refused in Lambda's shape.
    let r = http(
        node.services(),
        "GET",
        "/2015-03-31/event-source-mappings/",
        &[],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-amzn-errortype" && v == "UnknownOperationException"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.json()["Type"], "User");

    // The request id of the 202 is the one the function runs with.
    let id = invoke_event(&node, "ok", r#"{"from":"http"}"#);
    wait_recorded(&node, &out, Duration::from_secs(30), |lines| {
        lines
            .iter()
            .any(|l| l["id"] == id.as_str() && l["event"]["from"] == "http")
    });

    // `nimbus invoke --async` prints that id.
    let printed = nimbus_ok(&[
        "invoke",
        "ok",
        "--async",
        "--payload",
        r#"{"from":"nimbus"}"#,
        "--services",
        &url,
    ]);
    let id = printed.trim().to_owned();
    assert_eq!(id.len(), 36, "{printed}");
    wait_recorded(&node, &out, Duration::from_secs(30), |lines| {
        lines
            .iter()
            .any(|l| l["id"] == id.as_str() && l["event"]["from"] == "nimbus")
    });

    // Refusals in Lambda's shape: unknown function, payload over 1 MB, not JSON.
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/missing/invocations",
        &[("x-amz-invocation-type", "Event")],
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-amzn-errortype" && v == "ResourceNotFoundException")
    );
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/ok/invocations",
        &[("x-amz-invocation-type", "Event")],
        &big,
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-amzn-errortype" && v == "RequestEntityTooLargeException")
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("is too large for the Event invocation type (limit 1048576 bytes)"),
        "{}",
        r.body
    );
    // A synchronous invocation takes up to 6 MB, as on Lambda.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(6 * 1024 * 1024));
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/ok/invocations",
        &[],
        &huge,
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    );
    // Above the services endpoint's own body limit (16 MB) the answer is the same.
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/ok/invocations",
        &[],
        &"x".repeat(17 * 1024 * 1024),
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(
        r.headers
            .iter()
            .find(|(k, _)| k == "x-amzn-errortype")
            .map(|(_, v)| v.as_str()),
        Some("RequestEntityTooLargeException")
    );
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/ok/invocations",
        &[("x-amz-invocation-type", "Event")],
        "not json",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    // Nothing refused ran: the five accepted above, no more.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(recorded(&out).len(), 5, "{:?}", recorded(&out));
}

#[test]
fn a_failing_event_is_tried_three_times_then_dead_lettered_and_can_be_redriven() {
    let app = tempfile::tempdir().unwrap();
    let out = app.path().join("out.jsonl");
    let env = out_env(&out);
    write_app(
        app.path(),
        RECORDING_JS,
        &[
            (
                "fails",
                "fails",
                &format!("{env}\nasync = {{ max_retries = 2, on_failure = \"sink\" }}"),
            ),
            ("sink", "sink", &env),
        ],
    );
    let node = Builder::up(app.path())
        .arg("--no-watch")
        .arg("--async-retry-base")
        .arg("10ms")
        .start();
    let url = services_url(&node);
    let id = invoke_event(&node, "fails", r#"{"order":7}"#);
    let start = format!("START RequestId: {id}");

    let entries = wait_dead_letters(&node, "fails", 1);
    // max_retries = 2: the first attempt and two retries, all with the same request id.
    assert!(node.wait_for_logs(&start, 3, Duration::from_secs(10)));
    assert_eq!(node.logs().matches(&start).count(), 3, "{}", node.logs());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["function"], "fails");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["condition"], "RetriesExhausted");
    assert_eq!(entry["error"]["errorType"], "Error");
    assert_eq!(entry["error"]["errorMessage"], "always fails");
    assert_eq!(entry["payload"], serde_json::json!({ "order": 7 }));
    assert!(entry["firstAttemptAt"].as_str().unwrap() <= entry["lastAttemptAt"].as_str().unwrap());

    // The on_failure destination got Lambda's invocation record.
    wait_recorded(&node, &out, Duration::from_secs(30), |lines| {
        lines.iter().any(|l| l["kind"] == "sink")
    });
    let record = recorded(&out)
        .into_iter()
        .find(|l| l["kind"] == "sink")
        .unwrap()["event"]
        .clone();
    assert_eq!(record["version"], "1.0");
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(
        record["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:fails:$LATEST"
    );
    assert_eq!(record["requestPayload"], serde_json::json!({ "order": 7 }));
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["responsePayload"]["errorMessage"], "always fails");

    // The text listing names the error.
    let listing = nimbus_ok(&["dlq", "list", "fails", "--services", &url]);
    assert!(listing.contains(&id), "{listing}");
    assert!(listing.contains("Error: always fails"), "{listing}");

    // Redriven: three more attempts with the same id, then dead-lettered again.
    let printed = nimbus_ok(&["dlq", "redrive", "fails", "--id", &id, "--services", &url]);
    assert_eq!(printed.trim(), id);
    assert!(
        node.wait_for_logs(&start, 6, Duration::from_secs(60)),
        "{}",
        node.logs()
    );
    let entries = wait_dead_letters(&node, "fails", 1);
    assert_eq!(entries[0]["attempts"], 3);
    assert_eq!(node.logs().matches(&start).count(), 6);

    // Admin API errors are JSON with a message; delete removes the entry.
    let r = http(
        node.services(),
        "GET",
        "/nimbus/v1/functions/nope/dlq",
        &[],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json()["message"].as_str().unwrap().contains("nope"));
    let r = http(
        node.services(),
        "GET",
        "/nimbus/v1/functions/fails/dlq/not-an-id",
        &[],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].is_string());
    let r = http(
        node.services(),
        "POST",
        "/nimbus/v1/functions/fails/dlq/redrive",
        &[("content-type", "application/json")],
        r#"{"ids": 3}"#,
    )
    .unwrap();
    assert_eq!(r.status, 400);
    // The listing comes in pages: one entry, so no next page; none after it.
    let page = |query: &str| {
        http(
            node.services(),
            "GET",
            &format!("/nimbus/v1/functions/fails/dlq{query}"),
            &[],
            "",
        )
        .unwrap()
    };
    let r = page("?limit=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["entries"][0]["id"], id.as_str());
    assert!(r.json().get("next").is_none(), "{}", r.body);
    let r = page(&format!("?after={id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entries"], serde_json::json!([]));
    for bad in ["?limit=0", "?limit=1001", "?limit=x", "?after=x", "?page=2"] {
        let r = page(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["message"].is_string(), "{bad}");
    }
    let r = http(
        node.services(),
        "GET",
        &format!("/nimbus/v1/functions/fails/dlq/{id}"),
        &[],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id.as_str());
    nimbus_ok(&["dlq", "delete", "fails", &id, "--services", &url]);
    assert!(dead_letters(&node, "fails").is_empty());
    let out = run(&["dlq", "delete", "fails", &id, "--services", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[test]
fn a_success_sends_its_record_to_the_on_success_destination() {
    let app = tempfile::tempdir().unwrap();
    let out = app.path().join("out.jsonl");
    let env = out_env(&out);
    write_app(
        app.path(),
        RECORDING_JS,
        &[
            (
                "orders",
                "ok",
                &format!("{env}\nasync = {{ on_success = \"audit\" }}"),
            ),
            ("audit", "sink", &env),
        ],
    );
    let node = Builder::up(app.path()).arg("--no-watch").start();
    let id = invoke_event(&node, "orders", r#"{"order":1}"#);
    wait_recorded(&node, &out, Duration::from_secs(60), |lines| {
        lines.iter().any(|l| l["kind"] == "sink")
    });
    let lines = recorded(&out);
    let record = &lines.iter().find(|l| l["kind"] == "sink").unwrap()["event"];
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(record["requestPayload"], serde_json::json!({ "order": 1 }));
    assert_eq!(
        record["responseContext"],
        serde_json::json!({ "statusCode": 200, "executedVersion": "$LATEST" })
    );
    assert_eq!(
        record["responsePayload"],
        serde_json::json!({ "done": true })
    );
    assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
    // The destination runs with a request id of its own.
    let sink_id = lines.iter().find(|l| l["kind"] == "sink").unwrap()["id"].clone();
    assert_ne!(sink_id, id.as_str());
}

/// Accepts 200 events, kills the node with SIGKILL while it delivers them, restarts it on
/// the same directory: every accepted event runs at least once. Duplicates (events that
/// were running when the node died) are allowed and printed.
#[test]
fn no_accepted_event_is_lost_when_the_node_is_killed() {
    let app = tempfile::tempdir().unwrap();
    let out = app.path().join("out.jsonl");
    write_app(
        app.path(),
        RECORDING_JS,
        &[(
            "slow",
            "slow",
            &format!("{}\nconcurrency = {{ max = 4 }}", out_env(&out)),
        )],
    );
    let mut node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let mut accepted = BTreeSet::new();
    for n in 0..200 {
        accepted.insert(invoke_event(&node, "slow", &format!("{{\"n\":{n}}}")));
    }
    // Some delivered, most still queued, two in flight: kill it.
    wait_recorded(&node, &out, Duration::from_secs(120), |lines| {
        lines.len() >= 20
    });
    node.kill();
    let before = recorded(&out).len();
    assert!(
        before < 200,
        "everything ran before the kill: the test proves nothing"
    );

    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    wait_recorded(&node, &out, Duration::from_secs(180), |lines| {
        let seen: BTreeSet<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
        accepted.iter().all(|id| seen.contains(id.as_str()))
    });
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for line in recorded(&out) {
        *runs
            .entry(line["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let duplicates: Vec<(&String, &usize)> = runs.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "{} events accepted, {before} ran before SIGKILL, all ran after the restart; {} ran more than once: {duplicates:?}",
        accepted.len(),
        duplicates.len()
    );
    assert!(runs.keys().all(|id| accepted.contains(id)));
}

/// Wasm functions take async events through the same worker: the component gets the
/// event as `POST /` and the invocation succeeds with the event's request id.
#[test]
fn wasm_functions_run_async_events() {
    let app = tempfile::tempdir().unwrap();
    std::fs::copy(crate::wasm::probe(), app.path().join("probe.wasm")).unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        "name = \"async-wasm\"\n\n[functions.probe]\nruntime = \"wasm\"\ncode = \"probe.wasm\"\n",
    )
    .unwrap();
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let id = invoke_event(&node, "probe", r#"{"from":"async"}"#);
    assert!(
        node.wait_for_log(&format!("REPORT RequestId: {id}"), Duration::from_secs(60)),
        "{}",
        node.logs()
    );
    // The dispatcher's summary line of the invocation follows its REPORT line.
    let outcomes = || {
        node.stderr()
            .lines()
            .filter(|l| l.contains(&id) && l.contains("\"outcome\""))
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["outcome"].clone())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while outcomes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(outcomes(), vec![Value::from("success")], "{}", node.logs());
    assert!(dead_letters(&node, "probe").is_empty());
}
