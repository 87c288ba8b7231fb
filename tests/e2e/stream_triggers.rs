//! Table stream triggers: `[[events]] source = "table:NAME"` invokes a function with
//! Lambda's DynamoDB stream event for every change committed to the table.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Builder, Nimbus, client_program, example, http, run_client};

/// The JSON log lines of `function`.
fn function_lines(node: &Nimbus, function: &str) -> Vec<Value> {
    node.stderr()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &Value| l["function"] == function)
        .collect()
}

fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap_or_default()
}

fn get_item(node: &Nimbus, table: &str, key: Value) -> Value {
    http(
        node.services(),
        "POST",
        "/",
        &[("X-Amz-Target", "DynamoDB_20120810.GetItem")],
        &json!({ "TableName": table, "Key": key, "ConsistentRead": true }).to_string(),
    )
    .unwrap()
    .json()
}

/// The issue's proof, a CQRS projection: the seed's `register` writes users through the
/// AWS SDK for JavaScript v2; `project`, triggered by the `Users` stream, counts them in
/// `UserCount`; the AWS CLI reads the count back.
#[test]
fn a_projection_counts_every_registered_user() {
    projection(Builder::up(&example("user-count")).start());
}

/// The same on the PostgreSQL engine: commits are announced by the API layer, above
/// either engine.
#[test]
fn a_projection_counts_every_registered_user_on_postgres() {
    projection(Builder::up(&example("user-count")).postgres().start());
}

fn projection(node: Nimbus) {
    const USERS: usize = 25;
    for i in 0..USERS {
        let body = json!({ "email": format!("user{i}@example.com"), "name": format!("User {i}") });
        let r = http(
            node.gateway(),
            "POST",
            "/users",
            &[("content-type", "application/json")],
            &body.to_string(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    }
    // The projection catches up (bounded wait; never a timing assertion).
    let count = |node: &Nimbus| {
        get_item(node, "UserCount", json!({ "id": { "S": "users" } }))["Item"]["count"]["N"]
            .as_str()
            .map_or(0, |n| n.parse::<usize>().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&node) < USERS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let aws = client_program("aws");
    let url = format!("http://{}", node.services());
    let item = run_client(
        &aws,
        &[
            "--endpoint-url",
            &url,
            "dynamodb",
            "get-item",
            "--table-name",
            "UserCount",
            "--key",
            r#"{"id":{"S":"users"}}"#,
            "--consistent-read",
        ],
        &url,
    );
    let item: Value = serde_json::from_str(&item).unwrap();
    assert_eq!(
        item["Item"]["count"]["N"],
        USERS.to_string(),
        "{item}\n{}",
        node.logs()
    );

    // `project` ran only through its trigger, so its first instance was started by it:
    // the trigger wakes a function scaled to zero.
    let reports: Vec<Value> = function_lines(&node, "project")
        .into_iter()
        .filter(|l| message(l).starts_with("REPORT"))
        .collect();
    assert!(!reports.is_empty(), "{}", node.logs());
    assert_eq!(reports[0]["cold"], true, "{}", reports[0]);
    assert!(
        reports.iter().all(|r| r["outcome"] == "success"),
        "{reports:?}"
    );
}

/// A trigger whose function fails, with `max_retries = 1`: the batch is tried exactly
/// twice, then its on-failure record goes, once, to the `on_failure` function.
#[test]
fn failed_batches_are_retried_then_reported_to_on_failure() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        r#"exports.fail = async (event) => {
  console.log('EVENT ' + JSON.stringify(event));
  throw new Error('projection failed');
};
exports.dlq = async (event) => {
  console.log('ONFAILURE ' + JSON.stringify(event));
};
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        r#"name = "failing-projection"

[tables.Orders]
partition_key = { name = "id", type = "S" }
stream = "new_image"

[functions.fail]
runtime = "nodejs"
code = "js"
handler = "index.fail"

[functions.dlq]
runtime = "nodejs"
code = "js"
handler = "index.dlq"

[[events]]
source = "table:Orders"
function = "fail"
max_retries = 1
on_failure = "dlq"
"#,
    )
    .unwrap();
    let node = Builder::up(dir).start();
    let r = http(
        node.services(),
        "POST",
        "/",
        &[("X-Amz-Target", "DynamoDB_20120810.PutItem")],
        &json!({ "TableName": "Orders", "Item": { "id": { "S": "o-1" }, "total": { "N": "42" } } })
            .to_string(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        node.wait_for_log("ONFAILURE ", Duration::from_secs(60)),
        "{}",
        node.logs()
    );
    // Whatever would come after the on-failure record has had time to show.
    std::thread::sleep(Duration::from_secs(2));

    let attempts: Vec<Value> = function_lines(&node, "fail")
        .iter()
        .filter_map(|l| message(l).split_once("EVENT ").map(|(_, e)| e.to_owned()))
        .map(|e| serde_json::from_str(&e).unwrap())
        .collect();
    assert_eq!(attempts.len(), 2, "{}", node.logs());
    assert_eq!(attempts[0], attempts[1], "the same batch both times");
    let record = &attempts[0]["Records"][0];
    assert_eq!(attempts[0]["Records"].as_array().unwrap().len(), 1);
    assert_eq!(record["eventName"], "INSERT");
    assert_eq!(record["eventSource"], "aws:dynamodb");
    assert_eq!(record["eventVersion"], "1.1");
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["dynamodb"]["Keys"], json!({ "id": { "S": "o-1" } }));
    assert_eq!(
        record["dynamodb"]["NewImage"]["total"],
        json!({ "N": "42" })
    );
    assert_eq!(record["dynamodb"]["StreamViewType"], "NEW_IMAGE");
    let stream_arn = record["eventSourceARN"].as_str().unwrap();
    assert!(
        stream_arn.starts_with("arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/"),
        "{stream_arn}"
    );
    let sequence = record["dynamodb"]["SequenceNumber"].as_str().unwrap();

    let reports: Vec<Value> = function_lines(&node, "dlq")
        .iter()
        .filter_map(|l| {
            message(l)
                .split_once("ONFAILURE ")
                .map(|(_, e)| e.to_owned())
        })
        .map(|e| serde_json::from_str(&e).unwrap())
        .collect();
    assert_eq!(reports.len(), 1, "{}", node.logs());
    let report = &reports[0];
    assert_eq!(report["version"], "1.0");
    assert_eq!(
        report["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(report["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(
        report["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:fail"
    );
    assert_eq!(report["responseContext"]["functionError"], "Unhandled");
    let info = &report["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["startSequenceNumber"], sequence);
    assert_eq!(info["endSequenceNumber"], sequence);
    assert_eq!(info["streamArn"], stream_arn);
    assert!(
        info["shardId"].as_str().unwrap().starts_with("shardId-"),
        "{info}"
    );
}

/// A table whose every change a trigger records by appending the item's id to a file:
/// the crash test's app.
fn recording_app(dir: &std::path::Path, out: &std::path::Path) {
    std::fs::write(
        dir.join("nimbus.toml"),
        format!(
            r#"name = "stream-crash"

[tables.Items]
partition_key = {{ name = "id", type = "S" }}
stream = "keys_only"

[functions.record]
runtime = "nodejs"
code = "."
handler = "record.handler"
environment = {{ OUT = "{}" }}

[[events]]
source = "table:Items"
function = "record"
starting_position = "trim_horizon"
batch_size = 10
"#,
            out.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("record.js"),
        "const fs = require('node:fs');\n\
         exports.handler = async (event) => {\n\
           // Slower than the writers, so that a backlog builds up before the kill.\n\
           await new Promise((done) => setTimeout(done, 20));\n\
           const lines = event.Records.map((r) => JSON.stringify({ id: r.dynamodb.Keys.id.S }) + '\\n');\n\
           fs.appendFileSync(process.env.OUT, lines.join(''));\n\
         };\n",
    )
    .unwrap();
}

/// Ids the trigger has recorded, with how many times each.
fn recorded_ids(out: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let mut ids = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(out).unwrap_or_default().lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line)
            && let Some(id) = v["id"].as_str()
        {
            *ids.entry(id.to_owned()).or_default() += 1;
        }
    }
    ids
}

/// Writes go on while the trigger works through them; the node is killed with SIGKILL
/// in the middle, then restarted on the same directory: every write that was
/// acknowledged reaches the trigger. Records delivered twice (a batch in flight at the
/// kill) are allowed and printed.
#[test]
fn every_acknowledged_write_reaches_the_trigger_across_kill_9() {
    let app = tempfile::tempdir().unwrap();
    let out = app.path().join("out.jsonl");
    recording_app(app.path(), &out);
    let mut node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let services = node.services();
    // Four writers, each until the node is gone.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for i in 0..20_000 {
                    let id = format!("w{w}-{i}");
                    let item = json!({ "TableName": "Items", "Item": { "id": { "S": id } } });
                    match http(
                        services,
                        "POST",
                        "/",
                        &[("X-Amz-Target", "DynamoDB_20120810.PutItem")],
                        &item.to_string(),
                    ) {
                        Ok(r) if r.status == 200 => acknowledged.push(id),
                        // The node is gone: what was acknowledged so far is the test's set.
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    // Kill it once the trigger is busy, at a moment that varies from run to run.
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorded_ids(&out).len() < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 300;
    std::thread::sleep(Duration::from_millis(u64::from(jitter)));
    node.kill();
    let acknowledged: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let before = recorded_ids(&out).len();
    assert!(
        before < acknowledged.len(),
        "the trigger had caught up with every write before the kill: the test proves nothing"
    );

    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    let deadline = Instant::now() + Duration::from_secs(180);
    let all_seen = |ids: &std::collections::BTreeMap<String, usize>| {
        acknowledged.iter().all(|id| ids.contains_key(id))
    };
    while !all_seen(&recorded_ids(&out)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ids = recorded_ids(&out);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !ids.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes never reached the trigger: {:?}\n{}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(20)],
        node.logs()
    );
    let twice = ids.values().filter(|n| **n > 1).count();
    println!(
        "{} writes acknowledged, {before} recorded before SIGKILL, all recorded after the restart; {twice} recorded more than once",
        acknowledged.len()
    );
}
