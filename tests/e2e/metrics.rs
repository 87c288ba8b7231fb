//! `/metrics` on the services endpoint: Prometheus's text format, read with Prometheus's
//! own Python parser, whose counters match what the test did through the gateway, the
//! Lambda API, the DynamoDB API and the async queue; and `--metrics off`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::harness::{Builder, Nimbus, client_program, clients_dir, http, run_client};

const INDEX_JS: &str = r#"const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.ok = async () => ({ ok: true });
exports.fails = async () => { throw new Error('always fails'); };
exports.slow = async () => { await sleep(5000); return 'late'; };
exports.hold = async () => { await sleep(3000); return { held: true }; };
"#;

/// Node functions sharing `index.js`, routes to them, and a table.
fn write_app(dir: &Path) {
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(dir.join("js/index.js"), INDEX_JS).unwrap();
    let mut manifest = String::from("name = \"metrics-test\"\n");
    for (name, export, extra) in [
        ("ok", "ok", ""),
        ("fails", "fails", ""),
        ("slow", "slow", "timeout = \"1s\""),
        (
            "hold",
            "hold",
            "concurrency = { max = 1 }\ntimeout = \"30s\"",
        ),
        ("flaky", "fails", "async = { max_retries = 1 }"),
    ] {
        manifest.push_str(&format!(
            "\n[functions.{name}]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.{export}\"\n{extra}\n"
        ));
    }
    for (route, function) in [
        ("GET /ok", "ok"),
        ("POST /items/{id}", "ok"),
        ("GET /fails", "fails"),
        ("GET /slow", "slow"),
        ("GET /hold", "hold"),
    ] {
        manifest.push_str(&format!(
            "\n[[routes]]\nroute = \"{route}\"\nfunction = \"{function}\"\n"
        ));
    }
    manifest.push_str("\n[tables.Items]\npartition_key = { name = \"id\", type = \"S\" }\n");
    std::fs::write(dir.join("nimbus.toml"), manifest).unwrap();
}

/// `/metrics` as raw text (for polling; the assertions read the parsed samples).
fn raw_metrics(node: &Nimbus) -> String {
    let r = http(node.services(), "GET", "/metrics", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Waits until the raw text has `line` (a sample with its value), failing with the text.
fn wait_metric(node: &Nimbus, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = raw_metrics(node);
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {line}:\n{text}\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One sample as Prometheus's parser read it.
struct Sample {
    family: String,
    kind: String,
    help: String,
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// Every sample of `/metrics`, through `prometheus_client.parser`.
fn parsed_metrics(node: &Nimbus) -> Vec<Sample> {
    let script = clients_dir().join("metrics_client.py");
    let out = run_client(
        &client_program("python"),
        &[script.to_str().unwrap(), "parse"],
        &format!("http://{}", node.services()),
    );
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Sample {
                family: v["family"].as_str().unwrap().to_owned(),
                kind: v["type"].as_str().unwrap().to_owned(),
                help: v["help"].as_str().unwrap_or_default().to_owned(),
                name: v["name"].as_str().unwrap().to_owned(),
                labels: v["labels"].as_object().unwrap().clone(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The value of the sample `name` whose labels are exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Like [`value`], failing the test when the sample is missing.
fn must(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| {
        let near: Vec<String> = samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| format!("{:?} {}", s.labels, s.value))
            .collect();
        panic!(
            "no sample {name} {labels:?}; there are:\n{}",
            near.join("\n")
        )
    })
}

fn get(node: &Nimbus, method: &str, path: &str) -> u16 {
    http(node.gateway(), method, path, &[], "").unwrap().status
}

#[test]
fn metrics_count_what_was_done_and_parse_as_prometheus_text() {
    let app = tempfile::tempdir().unwrap();
    write_app(app.path());
    let node = Builder::up(app.path())
        .arg("--no-watch")
        // One waiting caller is already too many: a second call of `hold` is throttled.
        .arg("--max-queue-length")
        .arg("0")
        .arg("--async-retry-base")
        .arg("10ms")
        .start();

    // Through the gateway.
    for _ in 0..3 {
        assert_eq!(get(&node, "GET", "/ok"), 200, "{}", node.logs());
    }
    for id in ["1", "2"] {
        assert_eq!(get(&node, "POST", &format!("/items/{id}")), 200);
    }
    assert_eq!(get(&node, "GET", "/fails"), 502);
    assert_eq!(get(&node, "GET", "/no/such/route"), 404);
    let slow_status = get(&node, "GET", "/slow").to_string();
    assert_ne!(slow_status, "200");

    // `hold` runs one at a time: a second call while the first runs is throttled.
    let held = std::thread::spawn({
        let gateway = node.gateway();
        move || http(gateway, "GET", "/hold", &[], "").unwrap().status
    });
    wait_metric(&node, r#"nimbus_concurrent_executions{function="hold"} 1"#);
    assert_eq!(get(&node, "GET", "/hold"), 429);
    assert_eq!(held.join().unwrap(), 200);

    // Through the Lambda API and the DynamoDB API, with boto3.
    let script = clients_dir().join("metrics_client.py");
    run_client(
        &client_program("python"),
        &[script.to_str().unwrap(), "drive"],
        &format!("http://{}", node.services()),
    );

    // An async event that fails twice (max_retries = 1), then is dead-lettered.
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/flaky/invocations",
        &[("x-amz-invocation-type", "Event")],
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    wait_metric(
        &node,
        r#"nimbus_async_dead_letters_total{function="flaky"} 1"#,
    );

    let m = parsed_metrics(&node);
    let inv = |function: &str, runtime: &str, outcome: &str| {
        value(
            &m,
            "nimbus_invocations_total",
            &[
                ("function", function),
                ("runtime", runtime),
                ("outcome", outcome),
            ],
        )
    };
    // 3 GET /ok + 2 POST /items/{id} + 2 Lambda Invoke.
    assert_eq!(inv("ok", "nodejs", "success"), Some(7.0));
    assert_eq!(inv("ok", "nodejs", "error"), Some(0.0));
    assert_eq!(inv("fails", "nodejs", "error"), Some(2.0));
    assert_eq!(inv("fails", "nodejs", "success"), Some(0.0));
    assert_eq!(inv("slow", "nodejs", "timeout"), Some(1.0));
    assert_eq!(inv("hold", "nodejs", "success"), Some(1.0));
    assert_eq!(inv("hold", "nodejs", "throttled"), Some(1.0));
    assert_eq!(inv("flaky", "nodejs", "error"), Some(2.0));

    fn fr(function: &str) -> [(&str, &str); 2] {
        [("function", function), ("runtime", "nodejs")]
    }
    let duration_count = "nimbus_invocation_duration_seconds_count";
    for (function, ran) in [("ok", 7.0), ("fails", 2.0), ("slow", 1.0), ("hold", 1.0)] {
        assert_eq!(must(&m, duration_count, &fr(function)), ran, "{function}");
        let inf = [
            ("function", function),
            ("runtime", "nodejs"),
            ("le", "+Inf"),
        ];
        assert_eq!(
            must(&m, "nimbus_invocation_duration_seconds_bucket", &inf),
            ran
        );
    }
    // Sequential calls reuse one warm instance: one cold start each.
    let cold = "nimbus_init_duration_seconds_count";
    assert_eq!(must(&m, cold, &fr("ok")), 1.0);
    assert_eq!(must(&m, cold, &fr("hold")), 1.0);
    assert!(must(&m, cold, &fr("slow")) >= 1.0);
    assert!(must(&m, "nimbus_init_duration_seconds_sum", &fr("ok")) > 0.0);
    // Every admitted invocation records its (here zero) wait.
    assert_eq!(
        must(&m, "nimbus_queue_wait_seconds_count", &[("function", "ok")]),
        7.0
    );

    // State gauges, read at scrape time.
    assert_eq!(
        must(
            &m,
            "nimbus_instances",
            &[("function", "ok"), ("state", "warm")]
        ),
        1.0
    );
    assert_eq!(
        must(
            &m,
            "nimbus_instances",
            &[("function", "ok"), ("state", "busy")]
        ),
        0.0
    );
    assert_eq!(
        must(&m, "nimbus_concurrent_executions", &[("function", "hold")]),
        0.0
    );
    assert_eq!(
        must(&m, "nimbus_queue_length", &[("function", "hold")]),
        0.0
    );

    // The async queue.
    let flaky = [("function", "flaky")];
    assert_eq!(must(&m, "nimbus_async_retries_total", &flaky), 1.0);
    assert_eq!(must(&m, "nimbus_async_dead_letters_total", &flaky), 1.0);
    assert_eq!(must(&m, "nimbus_async_backlog", &flaky), 0.0);
    assert_eq!(
        must(&m, "nimbus_async_oldest_event_age_seconds", &flaky),
        0.0
    );

    // The gateway, by route pattern (never the raw path), method and status.
    let gw = |route: &str, method: &str, status: &str| {
        value(
            &m,
            "nimbus_gateway_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(gw("GET /ok", "GET", "200"), Some(3.0));
    assert_eq!(gw("POST /items/{id}", "POST", "200"), Some(2.0));
    assert_eq!(gw("GET /fails", "GET", "502"), Some(1.0));
    assert_eq!(gw("GET /slow", "GET", &slow_status), Some(1.0));
    assert_eq!(gw("GET /hold", "GET", "200"), Some(1.0));
    assert_eq!(gw("GET /hold", "GET", "429"), Some(1.0));
    assert_eq!(gw("-", "GET", "404"), Some(1.0));
    assert!(
        !m.iter().any(|s| s
            .labels
            .values()
            .any(|v| v.as_str() == Some("/no/such/route"))),
        "a raw path became a label"
    );
    assert_eq!(
        must(
            &m,
            "nimbus_gateway_request_duration_seconds_count",
            &[("route", "POST /items/{id}"), ("method", "POST")]
        ),
        2.0
    );

    // The table store, by table, operation and outcome.
    let op = |table: &str, operation: &str, outcome: &str| {
        value(
            &m,
            "nimbus_table_operations_total",
            &[
                ("table", table),
                ("operation", operation),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(op("Items", "PutItem", "success"), Some(3.0));
    assert_eq!(op("Items", "GetItem", "success"), Some(2.0));
    assert_eq!(
        op("Items", "PutItem", "ConditionalCheckFailedException"),
        Some(1.0)
    );
    assert_eq!(op("-", "GetItem", "ResourceNotFoundException"), Some(1.0));
    assert_eq!(op("Items", "ListStreams", "success"), Some(1.0));
    assert!(
        !m.iter()
            .any(|s| s.labels.get("table").and_then(Value::as_str) == Some("NoSuchTable-made-up")),
        "a table name a client made up became a label"
    );
    assert_eq!(
        must(
            &m,
            "nimbus_table_operation_duration_seconds_count",
            &[("table", "Items"), ("operation", "PutItem")]
        ),
        4.0
    );

    // The process's own figures.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(must(&m, name, &[]) > 0.0, "{name}");
    }

    // Every Nimbus family has its help text and the kind its name promises.
    for s in m.iter().filter(|s| s.family.starts_with("nimbus_")) {
        assert!(!s.help.is_empty(), "{} has no HELP", s.family);
        let expected = if s.name.ends_with("_total") {
            "counter"
        } else if s.family.ends_with("_seconds") && !s.family.contains("oldest") {
            "histogram"
        } else {
            "gauge"
        };
        assert_eq!(s.kind, expected, "{}", s.name);
    }
}

#[test]
fn metrics_off_answers_404_and_says_so() {
    let node = Builder::serve().arg("--metrics").arg("off").start();
    let r = http(node.services(), "GET", "/metrics", &[], "").unwrap();
    assert_eq!(r.status, 404);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("metrics are off")
    );
    // Metrics are on by default.
    let on = Builder::serve().start();
    let text = raw_metrics(&on);
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
}
