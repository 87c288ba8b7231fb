//! The DynamoDB-compatible table store on the services endpoint, driven by real clients:
//! boto3, the AWS CLI, and the AWS SDK for JavaScript v2 and v3.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};

use crate::harness::{Builder, Nimbus, client_program, example, http, run_client};

fn endpoint(node: &Nimbus) -> String {
    format!("http://{}", node.services())
}

/// Sends one DynamoDB operation over raw HTTP.
fn call(node: &Nimbus, operation: &str, body: &Value) -> crate::harness::Response {
    http(
        node.services(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Target", &format!("DynamoDB_20120810.{operation}")),
        ],
        &body.to_string(),
    )
    .unwrap()
}

/// Which table engine a node uses: every client suite runs against both.
#[derive(Clone, Copy)]
enum Engine {
    Embedded,
    Postgres,
}

fn node(engine: Engine, builder: Builder) -> Nimbus {
    match engine {
        Engine::Embedded => builder.start(),
        Engine::Postgres => builder.postgres().start(),
    }
}

fn boto3_suite(engine: Engine) {
    let node = node(
        engine,
        Builder::serve().arg("--ttl-sweep-interval").arg("200ms"),
    );
    let python = client_program("python");
    let out = run_client(&python, &["dynamodb_boto3.py"], &endpoint(&node));
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn boto3_suite_embedded() {
    boto3_suite(Engine::Embedded);
}

#[test]
fn boto3_suite_postgres() {
    boto3_suite(Engine::Postgres);
}

fn sdk_v3(engine: Engine) {
    let node = node(engine, Builder::serve());
    let out = run_client("node".as_ref(), &["dynamodb_sdk_v3.mjs"], &endpoint(&node));
    assert!(out.contains("sdk v3: all checks passed"), "{out}");
}

#[test]
fn sdk_for_javascript_v3_embedded() {
    sdk_v3(Engine::Embedded);
}

#[test]
fn sdk_for_javascript_v3_postgres() {
    sdk_v3(Engine::Postgres);
}

fn sdk_v2(engine: Engine) {
    let node = node(engine, Builder::serve());
    let out = run_client("node".as_ref(), &["dynamodb_sdk_v2.js"], &endpoint(&node));
    assert!(out.contains("sdk v2: all checks passed"), "{out}");
}

#[test]
fn sdk_for_javascript_v2_embedded() {
    sdk_v2(Engine::Embedded);
}

#[test]
fn sdk_for_javascript_v2_postgres() {
    sdk_v2(Engine::Postgres);
}

#[test]
fn aws_cli_embedded() {
    aws_cli(Engine::Embedded);
}

#[test]
fn aws_cli_postgres() {
    aws_cli(Engine::Postgres);
}

fn aws_cli(engine: Engine) {
    let node = node(engine, Builder::serve());
    let aws = client_program("aws");
    let url = endpoint(&node);
    let cli = |args: &[&str]| {
        let mut all = vec![
            "--endpoint-url",
            url.as_str(),
            "--output",
            "json",
            "dynamodb",
        ];
        all.extend_from_slice(args);
        run_client(&aws, &all, &url)
    };
    cli(&[
        "create-table",
        "--table-name",
        "Music",
        "--attribute-definitions",
        "AttributeName=Artist,AttributeType=S",
        "AttributeName=Song,AttributeType=S",
        "--key-schema",
        "AttributeName=Artist,KeyType=HASH",
        "AttributeName=Song,KeyType=RANGE",
        "--billing-mode",
        "PAY_PER_REQUEST",
    ]);
    cli(&["wait", "table-exists", "--table-name", "Music"]);
    for song in ["Alpha", "Beta", "Gamma"] {
        cli(&[
            "put-item",
            "--table-name",
            "Music",
            "--item",
            &json!({"Artist": {"S": "Acme"}, "Song": {"S": song}, "Plays": {"N": "1"}}).to_string(),
        ]);
    }
    let got: Value = serde_json::from_str(&cli(&[
        "get-item",
        "--table-name",
        "Music",
        "--key",
        r#"{"Artist":{"S":"Acme"},"Song":{"S":"Beta"}}"#,
    ]))
    .unwrap();
    assert_eq!(got["Item"]["Plays"], json!({"N": "1"}));
    let queried: Value = serde_json::from_str(&cli(&[
        "query",
        "--table-name",
        "Music",
        "--key-condition-expression",
        "Artist = :a AND begins_with(Song, :p)",
        "--expression-attribute-values",
        r#"{":a":{"S":"Acme"},":p":{"S":"G"}}"#,
    ]))
    .unwrap();
    assert_eq!(queried["Count"], 1);
    assert_eq!(queried["Items"][0]["Song"], json!({"S": "Gamma"}));
    // The CLI follows LastEvaluatedKey by itself when paging.
    let scanned: Value =
        serde_json::from_str(&cli(&["scan", "--table-name", "Music", "--page-size", "1"])).unwrap();
    assert_eq!(scanned["Count"], 3);
    let tables: Value = serde_json::from_str(&cli(&["list-tables"])).unwrap();
    assert_eq!(tables["TableNames"], json!(["Music"]));
    cli(&["delete-table", "--table-name", "Music"]);
}

#[test]
fn responses_carry_request_id_and_crc32() {
    let node = Builder::serve().start();
    let r = call(&node, "ListTables", &json!({}));
    assert_eq!(r.status, 200);
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))
    };
    assert_eq!(header("content-type"), "application/x-amz-json-1.0");
    assert!(!header("x-amzn-requestid").is_empty());
    let crc: u32 = header("x-amz-crc32").parse().unwrap();
    assert_eq!(crc, crc32fast_hash(r.body.as_bytes()));
}

/// CRC32 (IEEE), as DynamoDB computes `x-amz-crc32`; written here so the test does not
/// trust the implementation it checks.
fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn protocol_errors_have_dynamodb_shapes() {
    let node = Builder::serve().start();
    let r = call(&node, "NoSuchOperation", &json!({}));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["__type"],
        "com.amazon.coral.service#UnknownOperationException"
    );
    let r = http(
        node.services(),
        "POST",
        "/",
        &[("X-Amz-Target", "DynamoDB_20120810.ListTables")],
        "{not json",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["__type"],
        "com.amazon.coral.service#SerializationException"
    );
    let r = call(&node, "DescribeTable", &json!({}));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["__type"],
        "com.amazon.coral.validate#ValidationException"
    );
    assert_eq!(
        r.json()["message"],
        "1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null"
    );
    let r = call(&node, "PartiQL", &json!({}));
    assert_eq!(
        r.json()["__type"],
        "com.amazon.coral.service#UnknownOperationException"
    );
    // What the SDKs refuse before sending, the service refuses too.
    let table = json!({
        "TableName": "Edges",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST"
    });
    assert_eq!(call(&node, "CreateTable", &table).status, 200);
    for (op, body, message) in [
        (
            "Scan",
            json!({"TableName": "Edges", "Segment": 0, "TotalSegments": 0}),
            "Member must have value greater than or equal to 1",
        ),
        (
            "Query",
            json!({"TableName": "Edges", "KeyConditionExpression": "pk = :p",
                   "ExpressionAttributeValues": {":p": {"S": "x"}}, "Limit": -1}),
            "Member must have value greater than or equal to 1",
        ),
        (
            "BatchGetItem",
            json!({"RequestItems": {"Edges": {"Keys": []}}}),
            "Member must have length greater than or equal to 1",
        ),
    ] {
        let r = call(&node, op, &body);
        assert_eq!(r.status, 400, "{op}");
        assert_eq!(
            r.json()["__type"],
            "com.amazon.coral.validate#ValidationException",
            "{op}"
        );
        let text = r.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(text.contains(message), "{op}: {text}");
    }
    // A table ARN names the table.
    let r = call(
        &node,
        "DescribeTable",
        &json!({"TableName": "arn:aws:dynamodb:us-east-1:000000000000:table/Edges"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["Table"]["TableName"], "Edges");
}

#[test]
fn up_creates_the_declared_tables_and_keeps_items_across_restarts() {
    let app = crate::harness::copy_app(&example("user-registration"));
    let mut node = Builder::up_in_place(app.path()).start();
    let r = call(&node, "DescribeTable", &json!({"TableName": "Users"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["Table"]["KeySchema"],
        json!([{"AttributeName": "email", "KeyType": "HASH"}])
    );
    let item = json!({"email": {"S": "a@example.com"}, "name": {"S": "A"}});
    let r = call(
        &node,
        "PutItem",
        &json!({"TableName": "Users", "Item": item}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(5)).unwrap();
    let node = Builder::up_in_place(app.path()).start();
    assert!(
        !node.logs().contains("created table"),
        "the table is kept, not recreated"
    );
    let r = call(
        &node,
        "GetItem",
        &json!({"TableName": "Users", "Key": {"email": {"S": "a@example.com"}}}),
    );
    assert_eq!(r.json()["Item"], item);
}

#[test]
fn up_refuses_a_declared_table_whose_key_changed() {
    let app = crate::harness::copy_app(&example("user-registration"));
    let mut node = Builder::up_in_place(app.path()).start();
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(5)).unwrap();
    let manifest = app.path().join("nimbus.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            r#"name = "email", type = "S""#,
            r#"name = "id", type = "N""#,
        ),
    )
    .unwrap();
    let out = crate::harness::run(&[
        "up",
        app.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--services-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("table Users exists with key email (S), but nimbus.toml declares id (N)"),
        "{stderr}"
    );
}

/// Concurrent writers, `kill -9` mid-stream, restart: every acknowledged write is there.
#[test]
fn acknowledged_writes_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let serve = || Builder::serve_in(&dir).start();
    let mut node = serve();
    let r = call(
        &node,
        "CreateTable",
        &json!({
            "TableName": "Crash",
            "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let services = node.services();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("w{w}-{i}");
                    let body = json!({"TableName": "Crash", "Item": {"k": {"S": key}, "v": {"N": i.to_string()}}});
                    let sent = http(
                        services,
                        "POST",
                        "/",
                        &[("X-Amz-Target", "DynamoDB_20120810.PutItem")],
                        &body.to_string(),
                    );
                    match sent {
                        Ok(r) if r.status == 200 => {
                            acked.lock().unwrap().insert(key);
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    node.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} writes were acknowledged",
        acked.len()
    );
    let node = serve();
    let mut found = BTreeSet::new();
    let mut start: Option<Value> = None;
    loop {
        let mut body = json!({"TableName": "Crash"});
        if let Some(s) = &start {
            body["ExclusiveStartKey"] = s.clone();
        }
        let page = call(&node, "Scan", &body).json();
        for item in page["Items"].as_array().unwrap() {
            found.insert(item["k"]["S"].as_str().unwrap().to_owned());
        }
        match page.get("LastEvaluatedKey") {
            Some(k) => start = Some(k.clone()),
            None => break,
        }
    }
    let lost: Vec<&String> = acked.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}
