//! The todo-wasm example through the real binary: `nimbus up` builds the component, the
//! gateway routes the CRUD requests to it, and the component keeps the items in the
//! `Todos` table over outbound `wasi:http`, which the tests read back through the services
//! endpoint's DynamoDB API.

use serde_json::{Value, json};

use crate::harness::{Builder, Nimbus, Response, copy_app, example, http};

/// `nimbus up` on a private copy of the example, with `edit` applied to its manifest.
fn start(edit: impl FnOnce(String) -> String) -> (Nimbus, tempfile::TempDir) {
    let app = copy_app(&example("todo-wasm"));
    let manifest = app.path().join("nimbus.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, edit(text)).unwrap();
    let node = Builder::up_in_place(app.path()).arg("--no-watch").start();
    (node, app)
}

/// Sends a request to the gateway.
fn call(node: &Nimbus, method: &str, path: &str, body: &str) -> Response {
    http(node.gateway(), method, path, &[], body).unwrap()
}

/// Asserts the status and that the body is JSON, and returns it.
fn json_reply(node: &Nimbus, r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}\n{}", r.body, node.logs());
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json"),
        "{:?}",
        r.headers
    );
    r.json()
}

/// The item stored under `id`, read through the services endpoint (`Null` when absent).
fn stored(node: &Nimbus, id: &str) -> Value {
    let r = http(
        node.services(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
        ],
        &json!({ "TableName": "Todos", "Key": { "id": { "S": id } } }).to_string(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["Item"].clone()
}

/// The list the gateway answers, sorted by id (a Scan's order is the table's, not ours).
fn list(node: &Nimbus) -> Vec<Value> {
    let r = call(node, "GET", "/todos", "");
    let mut items = json_reply(node, &r, 200).as_array().unwrap().clone();
    items.sort_by_key(|item| item["id"].as_str().unwrap().to_owned());
    items
}

#[test]
fn the_crud_cycle_keeps_the_items_in_the_table() {
    let (node, _app) = start(|text| text);
    assert_eq!(list(&node), Vec::<Value>::new());

    let created = call(&node, "POST", "/todos", r#"{"title":"write the docs"}"#);
    let todo = json_reply(&node, &created, 201);
    let id = todo["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        todo,
        json!({ "id": id, "title": "write the docs", "done": false })
    );
    assert_eq!(
        stored(&node, &id),
        json!({ "id": { "S": id }, "title": { "S": "write the docs" }, "done": { "BOOL": false } })
    );

    let other = call(&node, "POST", "/todos", r#"{"title":"ship it"}"#);
    let other = json_reply(&node, &other, 201);
    assert_ne!(other["id"], todo["id"]);
    let mut both = vec![todo.clone(), other.clone()];
    both.sort_by_key(|item| item["id"].as_str().unwrap().to_owned());
    assert_eq!(list(&node), both);

    let got = call(&node, "GET", &format!("/todos/{id}"), "");
    assert_eq!(json_reply(&node, &got, 200), todo);

    // One field at a time: the other keeps its value.
    let done = call(&node, "PUT", &format!("/todos/{id}"), r#"{"done":true}"#);
    assert_eq!(
        json_reply(&node, &done, 200),
        json!({ "id": id, "title": "write the docs", "done": true })
    );
    let renamed = call(
        &node,
        "PUT",
        &format!("/todos/{id}"),
        r#"{"title":"write the docs twice"}"#,
    );
    let renamed = json_reply(&node, &renamed, 200);
    assert_eq!(
        renamed,
        json!({ "id": id, "title": "write the docs twice", "done": true })
    );
    assert_eq!(
        stored(&node, &id),
        json!({ "id": { "S": id }, "title": { "S": "write the docs twice" }, "done": { "BOOL": true } })
    );
    let got = call(&node, "GET", &format!("/todos/{id}"), "");
    assert_eq!(json_reply(&node, &got, 200), renamed);

    let deleted = call(&node, "DELETE", &format!("/todos/{id}"), "");
    assert_eq!(deleted.status, 204, "{}\n{}", deleted.body, node.logs());
    assert_eq!(deleted.body, "");
    assert_eq!(stored(&node, &id), Value::Null);
    let gone = call(&node, "GET", &format!("/todos/{id}"), "");
    assert_eq!(
        json_reply(&node, &gone, 404),
        json!({ "message": "not found" })
    );
    assert_eq!(list(&node), vec![other]);
}

#[test]
fn missing_items_answer_404_and_bad_bodies_400() {
    let (node, _app) = start(|text| text);
    let missing = "0123456789abcdef0123456789abcdef";
    let not_found = json!({ "message": "not found" });

    let got = call(&node, "GET", &format!("/todos/{missing}"), "");
    assert_eq!(json_reply(&node, &got, 404), not_found);
    // The update's condition keeps it from creating the item.
    let put = call(
        &node,
        "PUT",
        &format!("/todos/{missing}"),
        r#"{"done":true}"#,
    );
    assert_eq!(json_reply(&node, &put, 404), not_found);
    assert_eq!(stored(&node, missing), Value::Null);

    let created = call(&node, "POST", "/todos", r#"{"title":"keep me"}"#);
    let todo = json_reply(&node, &created, 201);
    let item = format!("/todos/{}", todo["id"].as_str().unwrap());
    for (method, path, body) in [
        ("POST", "/todos", "{not json"),
        ("POST", "/todos", ""),
        ("POST", "/todos", r#"{"name":"no title"}"#),
        ("POST", "/todos", r#"{"title":42}"#),
        ("PUT", item.as_str(), "{not json"),
        ("PUT", item.as_str(), r#"{"done":"yes"}"#),
        ("PUT", item.as_str(), r#"{"title":null}"#),
        ("PUT", item.as_str(), "{}"),
    ] {
        let r = call(&node, method, path, body);
        let reply = json_reply(&node, &r, 400);
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path} {body}: {reply}"
        );
    }
    // Nothing was created or changed by the refused requests.
    assert_eq!(list(&node), vec![todo]);
}

#[test]
fn a_table_error_answers_500_with_the_dynamodb_error_type() {
    // The function is pointed at a table the app does not declare.
    let (node, _app) = start(|text| {
        let edited = text.replace("TABLE_NAME = \"Todos\"", "TABLE_NAME = \"NoSuchTable\"");
        assert_ne!(edited, text, "the manifest names the table in TABLE_NAME");
        edited
    });
    let r = call(&node, "GET", "/todos", "");
    let reply = json_reply(&node, &r, 500);
    assert_eq!(reply["type"], "ResourceNotFoundException", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("Scan failed"),
        "{reply}"
    );
}
