//! Request decoding: an operation name and an arbitrary body, run against an in-memory
//! table store holding one table. No input may panic; every refusal must have
//! DynamoDB's error shape.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use nimbus_tables::{api::Tables, engine::Embedded};

const OPERATIONS: [&str; 16] = [
    "PutItem", "GetItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactWriteItems", "TransactGetItems", "CreateTable",
    "DescribeTable", "UpdateTable", "ListTables", "UpdateTimeToLive", "TagResource",
];

struct World {
    runtime: tokio::runtime::Runtime,
    tables: Tables,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let tables = runtime.block_on(async {
            let engine = Embedded::in_memory().expect("an in-memory engine");
            let tables = Tables::open(Arc::new(engine)).await.expect("open");
            tables
                .handle(
                    "DynamoDB_20120810.CreateTable",
                    br#"{"TableName":"Fuzz","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"N"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}],"BillingMode":"PAY_PER_REQUEST"}"#,
                )
                .await
                .expect("create the fuzz table");
            tables
        });
        World { runtime, tables }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let operation = OPERATIONS[usize::from(selector) % OPERATIONS.len()];
    let target = format!("DynamoDB_20120810.{operation}");
    let world = world();
    if let Err(e) = world.runtime.block_on(world.tables.handle(&target, body)) {
        let body = e.body();
        assert!(body["__type"].as_str().is_some_and(|t| t.contains('#')));
        assert!(body["message"].is_string());
    }
});
