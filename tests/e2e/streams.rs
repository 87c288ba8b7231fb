//! The DynamoDB Streams API on the services endpoint, driven by real clients: boto3's
//! `dynamodbstreams` client and the AWS CLI, on both table engines; and shard iterators
//! that outlive a restart.

use serde_json::{Value, json};

use crate::harness::{Builder, Nimbus, client_program, http, run_client};

fn endpoint(node: &Nimbus) -> String {
    format!("http://{}", node.services())
}

/// Sends one operation (`DynamoDB_20120810.PutItem`, `DynamoDBStreams_20120810.GetRecords`)
/// over raw HTTP and returns the status and JSON body.
fn call(node: &Nimbus, target: &str, body: &Value) -> (u16, Value) {
    let r = http(
        node.services(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Target", target),
        ],
        &body.to_string(),
    )
    .unwrap();
    (r.status, r.json())
}

fn boto3_suite(builder: Builder) {
    let node = builder.start();
    let python = client_program("python");
    let out = run_client(&python, &["streams_boto3.py"], &endpoint(&node));
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn boto3_streams_embedded() {
    boto3_suite(Builder::serve());
}

#[test]
fn boto3_streams_postgres() {
    boto3_suite(Builder::serve().postgres());
}

/// A table declared in `nimbus.toml` with `stream = "new_and_old_images"` has a stream
/// that the AWS CLI lists and reads.
#[test]
fn aws_cli_reads_a_manifest_tables_stream() {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        r#"name = "streams"

[tables.Orders]
partition_key = { name = "id", type = "S" }
stream = "new_and_old_images"
"#,
    )
    .unwrap();
    let node = Builder::up(app.path()).start();
    let aws = client_program("aws");
    let url = endpoint(&node);
    let cli = |args: &[&str]| -> Value {
        let mut all = vec!["--endpoint-url", url.as_str(), "--output", "json"];
        all.extend_from_slice(args);
        let out = run_client(&aws, &all, &url);
        // Commands without output (put-item) print nothing.
        if out.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let listed = cli(&["dynamodbstreams", "list-streams", "--table-name", "Orders"]);
    let streams = listed["Streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{listed}");
    let arn = streams[0]["StreamArn"].as_str().unwrap().to_owned();
    assert!(
        arn.starts_with("arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/"),
        "{arn}"
    );
    cli(&[
        "dynamodb",
        "put-item",
        "--table-name",
        "Orders",
        "--item",
        r#"{"id": {"S": "o-1"}, "total": {"N": "12.5"}}"#,
    ]);
    let described = cli(&["dynamodbstreams", "describe-stream", "--stream-arn", &arn]);
    let description = &described["StreamDescription"];
    assert_eq!(description["StreamViewType"], "NEW_AND_OLD_IMAGES");
    assert_eq!(description["TableName"], "Orders");
    let shard = description["Shards"][0]["ShardId"]
        .as_str()
        .unwrap()
        .to_owned();
    let iterator = cli(&[
        "dynamodbstreams",
        "get-shard-iterator",
        "--stream-arn",
        &arn,
        "--shard-id",
        &shard,
        "--shard-iterator-type",
        "TRIM_HORIZON",
    ]);
    let records = cli(&[
        "dynamodbstreams",
        "get-records",
        "--shard-iterator",
        iterator["ShardIterator"].as_str().unwrap(),
    ]);
    let records = records["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["eventName"], "INSERT");
    assert_eq!(
        records[0]["dynamodb"]["NewImage"],
        json!({ "id": { "S": "o-1" }, "total": { "N": "12.5" } })
    );
}

/// Iterators carry their position: one issued before a restart reads on after it, and
/// the records are still there.
#[test]
fn iterators_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let node = Builder::serve_in(&dir).start();
    let (status, created) = call(
        &node,
        "DynamoDB_20120810.CreateTable",
        &json!({
            "TableName": "Durable",
            "AttributeDefinitions": [{ "AttributeName": "k", "AttributeType": "S" }],
            "KeySchema": [{ "AttributeName": "k", "KeyType": "HASH" }],
            "BillingMode": "PAY_PER_REQUEST",
            "StreamSpecification": { "StreamEnabled": true, "StreamViewType": "KEYS_ONLY" },
        }),
    );
    assert_eq!(status, 200, "{created}");
    let arn = created["TableDescription"]["LatestStreamArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |node: &Nimbus, k: &str| {
        let (status, body) = call(
            node,
            "DynamoDB_20120810.PutItem",
            &json!({ "TableName": "Durable", "Item": { "k": { "S": k } } }),
        );
        assert_eq!(status, 200, "{body}");
    };
    put(&node, "one");
    let (_, described) = call(
        &node,
        "DynamoDBStreams_20120810.DescribeStream",
        &json!({ "StreamArn": arn }),
    );
    let shard = described["StreamDescription"]["Shards"][0]["ShardId"].clone();
    let (status, latest) = call(
        &node,
        "DynamoDBStreams_20120810.GetShardIterator",
        &json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "LATEST" }),
    );
    assert_eq!(status, 200, "{latest}");
    drop(node);

    let node = Builder::serve_in(&dir).start();
    put(&node, "two");
    let (status, out) = call(
        &node,
        "DynamoDBStreams_20120810.GetRecords",
        &json!({ "ShardIterator": latest["ShardIterator"] }),
    );
    assert_eq!(status, 200, "{out}");
    let keys: Vec<&Value> = out["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["dynamodb"]["Keys"]["k"]["S"])
        .collect();
    assert_eq!(keys, [&json!("two")], "only the write after LATEST: {out}");

    // Garbage and operations of the namespace that do not exist are refused in the
    // protocol's shape.
    let (status, out) = call(
        &node,
        "DynamoDBStreams_20120810.GetRecords",
        &json!({ "ShardIterator": format!("{arn}|1|garbage") }),
    );
    assert_eq!(status, 400);
    assert_eq!(
        out["__type"], "com.amazon.coral.validate#ValidationException",
        "{out}"
    );
    let (status, out) = call(&node, "DynamoDBStreams_20120810.PutRecords", &json!({}));
    assert_eq!(status, 400);
    assert_eq!(
        out["__type"],
        "com.amazon.coral.service#UnknownOperationException"
    );
}
