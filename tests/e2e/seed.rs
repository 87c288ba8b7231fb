//! The seed's user-registration service, unchanged: `index.js` on the Node.js runtime,
//! behind `POST /users`, writing to the `Users` table with the AWS SDK for JavaScript v2.

use serde_json::json;

use crate::harness::{Builder, example, http};

#[test]
fn the_seed_index_js_registers_a_user() {
    let node = Builder::up(&example("user-registration")).start();
    let body = r#"{"email":"a@example.com","name":"A"}"#;
    let r = http(
        node.gateway(),
        "POST",
        "/users",
        &[("content-type", "application/json")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    assert_eq!(
        r.json(),
        json!({ "message": "User registered successfully!" })
    );

    let got = http(
        node.services(),
        "POST",
        "/",
        &[("X-Amz-Target", "DynamoDB_20120810.GetItem")],
        &json!({"TableName": "Users", "Key": {"email": {"S": "a@example.com"}}}).to_string(),
    )
    .unwrap()
    .json();
    assert_eq!(got["Item"]["name"], json!({"S": "A"}));
    let created = got["Item"]["createdAt"]["S"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");

    // A table error reaches the handler's catch and its 500 body.
    let r = http(
        node.services(),
        "POST",
        "/",
        &[("X-Amz-Target", "DynamoDB_20120810.DeleteTable")],
        &json!({"TableName": "Users"}).to_string(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let r = http(node.gateway(), "POST", "/users", &[], body).unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["message"], "Error registering user");
    assert_eq!(answer["error"]["code"], "ResourceNotFoundException");
}
