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

/// The issue's proof, through the AWS CLI (v1, whose `--payload` is the raw JSON): `aws lambda invoke` runs `register`, and
/// `aws dynamodb get-item` reads the user back.
#[test]
fn aws_cli_invokes_register_and_reads_the_user_back() {
    let node = Builder::up(&example("user-registration")).start();
    let aws = crate::harness::client_program("aws");
    let url = format!("http://{}", node.services());
    let out_dir = tempfile::tempdir().unwrap();
    let out_file = out_dir.path().join("out.json");
    let printed = crate::harness::run_client(
        &aws,
        &[
            "--endpoint-url",
            &url,
            "lambda",
            "invoke",
            "--function-name",
            "register",
            "--payload",
            r#"{"body":"{\"email\":\"cli@example.com\",\"name\":\"Cli\"}"}"#,
            "--log-type",
            "Tail",
            out_file.to_str().unwrap(),
        ],
        &url,
    );
    let printed: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(printed["StatusCode"], 200);
    assert_eq!(printed["ExecutedVersion"], "$LATEST");
    assert!(printed.get("FunctionError").is_none(), "{printed}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(result["statusCode"], 200);
    assert_eq!(
        result["body"],
        r#"{"message":"User registered successfully!"}"#
    );
    let item = crate::harness::run_client(
        &aws,
        &[
            "--endpoint-url",
            &url,
            "dynamodb",
            "get-item",
            "--table-name",
            "Users",
            "--key",
            r#"{"email":{"S":"cli@example.com"}}"#,
        ],
        &url,
    );
    let item: serde_json::Value = serde_json::from_str(&item).unwrap();
    assert_eq!(item["Item"]["name"]["S"], "Cli");

    // A function that throws reports Unhandled, with its error document.
    let out = crate::harness::run_client(
        &aws,
        &[
            "--endpoint-url",
            &url,
            "lambda",
            "invoke",
            "--function-name",
            "register",
            "--payload",
            r#"{"body":"not json"}"#,
            out_file.to_str().unwrap(),
        ],
        &url,
    );
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["FunctionError"], "Unhandled");
    let error: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(error["errorType"], "SyntaxError");

    let functions = crate::harness::run_client(
        &aws,
        &["--endpoint-url", &url, "lambda", "list-functions"],
        &url,
    );
    let functions: serde_json::Value = serde_json::from_str(&functions).unwrap();
    assert_eq!(functions["Functions"][0]["FunctionName"], "register");
    assert_eq!(functions["Functions"][0]["Handler"], "index.handler");
}

#[test]
fn nimbus_invoke_prints_the_result_and_the_log() {
    let node = Builder::up(&example("user-registration")).start();
    let services = format!("http://{}", node.services());
    let out = crate::harness::run(&[
        "invoke",
        "register",
        "--services",
        &services,
        "--payload",
        r#"{"body":"{\"email\":\"inv@example.com\",\"name\":\"I\"}"}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stdout["statusCode"], 200);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("START RequestId: "), "{stderr}");
    assert!(stderr.contains("END RequestId: "), "{stderr}");
    assert!(stderr.contains("REPORT RequestId: "), "{stderr}");
    assert!(
        stderr.contains("Init Duration: "),
        "the first invocation is a cold start: {stderr}"
    );
    assert!(stderr.contains("Memory Size: 128 MB"), "{stderr}");
    // A failing invocation exits 1 and says so.
    let out = crate::harness::run(&[
        "invoke",
        "register",
        "--services",
        &services,
        "--payload",
        r#"{"body":"{"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("function error: Unhandled"));
}

#[test]
fn up_prints_where_the_app_answers() {
    let mut node = Builder::up(&example("user-registration")).start();
    assert!(node.wait_for_log("tables: Users", std::time::Duration::from_secs(5)));
    let logs = node.logs();
    assert!(logs.contains("user-registration is up"), "{logs}");
    assert!(
        logs.contains(&format!("POST http://{}/users -> register", node.gateway())),
        "{logs}"
    );
    assert!(logs.contains("register (nodejs, index.handler)"), "{logs}");
    assert!(logs.contains("tables: Users"), "{logs}");
    node.signal("TERM");
    node.wait_exit(std::time::Duration::from_secs(5)).unwrap();
}

/// The issue's words, with curl: `curl -X POST .../users -d '{...}'` registers the user;
/// a body that is not JSON makes the seed's handler throw, and the client gets API
/// Gateway's 502.
#[test]
fn curl_registers_a_user_and_a_bad_body_is_a_502() {
    let node = Builder::up(&example("user-registration")).start();
    let curl = |body: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-X", "POST", "-w", "\n%{http_code}", "-d", body])
            .arg(format!("http://{}/users", node.gateway()))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    };
    let (code, body) = curl(r#"{"email":"c@example.com","name":"C"}"#);
    assert_eq!(code, "200", "{body}\n{}", node.logs());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({ "message": "User registered successfully!" })
    );
    let (code, body) = curl("this is not json");
    assert_eq!(code, "502", "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({ "message": "Internal Server Error" })
    );
}
