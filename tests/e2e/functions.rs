//! Functions behind routes: the process runtime, the dispatcher and the gateway's API
//! Gateway events, with `provided` functions whose `bootstrap` speaks the Runtime API.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use crate::harness::{Builder, Nimbus, http};

/// A `provided` bootstrap in shell: takes invocations from the Runtime API and runs
/// `answer`, a shell snippet that gets the event in `$EVENT`, its id in `$ID` and the
/// Runtime API's base in `$api`, for each.
pub(crate) fn shell_loop(answer: &str) -> String {
    format!(
        r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
  headers=$(mktemp)
  EVENT=$(curl -sS -D "$headers" "$api/invocation/next") || exit 1
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d: -f2 | tr -d ' \r\n')
  rm -f "$headers"
  export EVENT ID
{answer}
done
"#
    )
}

/// A [`shell_loop`] that answers each invocation with `respond`, a shell snippet that
/// prints the response body given `$EVENT`.
fn shell_bootstrap(respond: &str) -> String {
    shell_loop(&format!(
        r#"  RESPONSE=$({respond})
  curl -sS -o /dev/null -X POST "$api/invocation/$ID/response" --data-binary "$RESPONSE""#
    ))
}

/// Waits (up to 10 s) until the node's log says it stopped an idle instance.
fn wait_for_an_idle_stop(node: &Nimbus) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !node.logs().contains("stopping an idle instance") && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        node.logs().contains("stopping an idle instance"),
        "{}",
        node.logs()
    );
}

/// The manifest line that hands a function the markers directory.
fn markers_env(markers: &Path) -> String {
    format!("environment = {{ MARKERS = \"{}\" }}", markers.display())
}

fn write_app(dir: &Path, functions: &[(&str, &str, &str)], routes: &[(&str, &str)]) {
    let mut manifest = String::from("name = \"fn-test\"\n");
    for (name, bootstrap, extra) in functions {
        let code = dir.join(name);
        std::fs::create_dir_all(&code).unwrap();
        let path = code.join("bootstrap");
        std::fs::write(&path, bootstrap).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        manifest.push_str(&format!(
            "\n[functions.{name}]\nruntime = \"provided.al2023\"\ncode = \"{name}\"\n{extra}\n"
        ));
    }
    for (route, function) in routes {
        manifest.push_str(&format!(
            "\n[[routes]]\nroute = \"{route}\"\nfunction = \"{function}\"\n"
        ));
    }
    std::fs::write(dir.join("nimbus.toml"), manifest).unwrap();
}

#[test]
fn a_provided_function_receives_the_api_gateway_event() {
    let app = tempfile::tempdir().unwrap();
    write_app(
        app.path(),
        &[("echo", &shell_bootstrap(r#"printf '%s' "$EVENT""#), "")],
        &[("ANY /items/{id}/{rest+}", "echo")],
    );
    let node = Builder::up(app.path()).start();
    let r = http(
        node.gateway(),
        "POST",
        "/items/42/a/b?x=1&x=2&y=z",
        &[
            ("content-type", "application/json"),
            ("cookie", "s=1; t=2"),
            // The gateway's own word replaces a client's.
            ("x-forwarded-proto", "https"),
        ],
        r#"{"hello":"world"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    let event: Value = r.json();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "ANY /items/{id}/{rest+}");
    assert_eq!(event["rawPath"], "/items/42/a/b");
    assert_eq!(event["rawQueryString"], "x=1&x=2&y=z");
    assert_eq!(event["queryStringParameters"]["x"], "1,2");
    assert_eq!(event["pathParameters"]["id"], "42");
    assert_eq!(event["pathParameters"]["rest"], "a/b");
    assert_eq!(event["cookies"], serde_json::json!(["s=1", "t=2"]));
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(event["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        event["headers"]["x-forwarded-port"],
        node.gateway().port().to_string()
    );
    assert_eq!(event["requestContext"]["stage"], "$default");
    assert_eq!(event["body"], r#"{"hello":"world"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    // A second request reuses the warm instance.
    let r = http(node.gateway(), "GET", "/items/7/x", &[], "").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        node.wait_for_log("\"cold\":false", Duration::from_secs(5)),
        "{}",
        node.logs()
    );
}

#[test]
fn structured_results_set_status_headers_and_body() {
    let app = tempfile::tempdir().unwrap();
    let respond = r#"printf '%s' '{"statusCode":201,"headers":{"x-made-by":"nimbus"},"cookies":["a=b"],"body":"created"}'"#;
    write_app(
        app.path(),
        &[("made", &shell_bootstrap(respond), "")],
        &[("POST /things", "made")],
    );
    let node = Builder::up(app.path()).start();
    let r = http(node.gateway(), "POST", "/things", &[], "").unwrap();
    assert_eq!(r.status, 201, "{}", node.logs());
    assert_eq!(r.body, "created");
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-made-by" && v == "nimbus")
    );
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "set-cookie" && v == "a=b")
    );
}

#[test]
fn a_timeout_ends_the_instance_and_the_next_call_works() {
    let app = tempfile::tempdir().unwrap();
    // Sleeps when the path asks for it, else answers at once.
    let respond =
        r#"case "$EVENT" in *'"rawPath":"/slow"'*) sleep 5;; esac; printf '%s' '{"ok":true}'"#;
    write_app(
        app.path(),
        &[("sleepy", &shell_bootstrap(respond), "timeout = \"1s\"")],
        &[("GET /{any+}", "sleepy")],
    );
    let node = Builder::up(app.path()).start();
    let started = std::time::Instant::now();
    let r = http(node.gateway(), "GET", "/slow", &[], "").unwrap();
    assert_eq!(r.status, 503, "{}", node.logs());
    assert_eq!(r.json()["message"], "Service Unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout cut the invocation short"
    );
    let r = http(node.gateway(), "GET", "/fast", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", node.logs());
    assert_eq!(r.json()["ok"], true);
}

#[test]
fn a_start_up_longer_than_the_timeout_does_not_count_against_it() {
    let app = tempfile::tempdir().unwrap();
    // Initialises for 1.5 s, with a 1 s timeout: on Lambda the init phase has a limit of
    // its own.
    let bootstrap = shell_bootstrap(r#"printf '%s' '{"ok":true}'"#).replacen(
        "while true",
        "sleep 1.5\nwhile true",
        1,
    );
    // Reports an init error and stays up: the invocation gets that error, not a time-out.
    let init_fails = r#"#!/bin/sh
curl -sS -o /dev/null -X POST "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error" -H 'Lambda-Runtime-Function-Error-Type: Custom.NoConfig' --data-binary '{"errorType":"Custom.NoConfig","errorMessage":"no config"}'
sleep 30
"#;
    write_app(
        app.path(),
        &[
            ("slow_start", &bootstrap, "timeout = \"1s\""),
            ("init_fails", init_fails, "timeout = \"1s\""),
        ],
        &[("GET /{any+}", "slow_start")],
    );
    let node = Builder::up(app.path()).start();
    let r = http(node.gateway(), "GET", "/first", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", node.logs());
    // The REPORT line's figures, as the node log's JSON carries them.
    assert!(
        node.wait_for_log("\"init_ms\"", Duration::from_secs(5)),
        "{}",
        node.logs()
    );
    let report: serde_json::Value = node
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["function"] == "slow_start" && l["init_ms"].is_number())
        .unwrap_or_else(|| panic!("no REPORT with an init duration:\n{}", node.logs()));
    // The REPORT's `Duration` is the run's alone, as Lambda's.
    assert!(report["init_ms"].as_f64().unwrap() >= 1500.0, "{report}");
    assert!(report["duration_ms"].as_f64().unwrap() < 1000.0, "{report}");
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/init_fails/invocations",
        &[],
        "{}",
    )
    .unwrap();
    assert_eq!(r.json()["errorType"], "Custom.NoConfig", "{}", r.body);
}

#[test]
fn a_crash_is_a_502_and_does_not_hurt_the_next_invocation_or_other_functions() {
    let app = tempfile::tempdir().unwrap();
    let crashy =
        r#"case "$EVENT" in *'"rawPath":"/crash"'*) kill -9 $$;; esac; printf '%s' '{"ok":true}'"#;
    write_app(
        app.path(),
        &[
            ("crashy", &shell_bootstrap(crashy), ""),
            ("steady", &shell_bootstrap(r#"printf '%s' '"steady"'"#), ""),
        ],
        &[("GET /steady", "steady"), ("GET /{any+}", "crashy")],
    );
    let node = Builder::up(app.path()).start();
    let r = http(node.gateway(), "GET", "/crash", &[], "").unwrap();
    assert_eq!(r.status, 502, "{}", node.logs());
    assert_eq!(r.json()["message"], "Internal Server Error");
    let r = http(node.gateway(), "GET", "/fine", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", node.logs());
    let r = http(node.gateway(), "GET", "/steady", &[], "").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "\"steady\"");
}

/// Whether the process `pid` is gone (or a zombie waiting for its new parent to reap it).
fn ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// A process a bootstrap starts in the background ends with the bootstrap, however that
/// ends: it would otherwise run on outside every limit.
#[test]
fn what_a_bootstrap_started_ends_when_it_crashes_or_times_out() {
    let app = tempfile::tempdir().unwrap();
    let marks = app.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let respond = format!(
        r#"sleep 300 > /dev/null 2>&1 & echo $! > "{marks}/child-$$"; case "$EVENT" in *'"rawPath":"/crash"'*) kill -9 $$;; *'"rawPath":"/slow"'*) sleep 30;; esac; printf '%s' '{{"ok":true}}'"#,
        marks = marks.display()
    );
    write_app(
        app.path(),
        &[("spawner", &shell_bootstrap(&respond), "timeout = \"1s\"")],
        &[("GET /{any+}", "spawner")],
    );
    let node = Builder::up(app.path()).start();
    for (path, status) in [("/crash", 502), ("/slow", 503)] {
        let r = http(node.gateway(), "GET", path, &[], "").unwrap();
        assert_eq!(r.status, status, "{path}: {}", node.logs());
    }
    let children: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(children.len(), 2, "{children:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !children.iter().all(|pid| ended(pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "background processes outlived their bootstrap: {children:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The function still answers, from a new instance.
    let r = http(node.gateway(), "GET", "/fine", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", node.logs());
}

#[test]
fn python_and_node_handlers_run_behind_routes() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("py")).unwrap();
    std::fs::write(
        dir.join("py/app.py"),
        "import json, os\n\ndef handler(event, context):\n    return {\"statusCode\": 200, \"body\": json.dumps({\"path\": event[\"rawPath\"], \"fn\": context.function_name, \"left\": context.get_remaining_time_in_millis() > 0, \"region\": os.environ[\"AWS_REGION\"]})}\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.mjs"),
        "export const handler = async (event, context) => ({ fn: context.functionName, id: event.pathParameters.id, endpoint: process.env.AWS_ENDPOINT_URL });\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        r#"name = "langs"

[functions.py]
runtime = "python3.11"
code = "py"
handler = "app.handler"

[functions.js]
runtime = "nodejs20.x"
code = "js"
handler = "index.handler"

[[routes]]
route = "GET /py"
function = "py"

[[routes]]
route = "GET /js/{id}"
function = "js"
"#,
    )
    .unwrap();
    let node = Builder::up(dir).start();
    let r = http(node.gateway(), "GET", "/py", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    assert_eq!(
        r.json(),
        serde_json::json!({"path": "/py", "fn": "py", "left": true, "region": "us-east-1"})
    );
    let r = http(node.gateway(), "GET", "/js/9", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    let v = r.json();
    assert_eq!(v["fn"], "js");
    assert_eq!(v["id"], "9");
    assert_eq!(v["endpoint"], format!("http://{}", node.services()));
}

#[test]
fn a_handler_error_is_a_502_and_init_errors_too() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        "exports.fails = async () => { throw new TypeError('nope'); };\nexports.fine = async () => 'fine';\n",
    )
    .unwrap();
    std::fs::write(dir.join("js/broken.js"), "this is not javascript\n").unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        r#"name = "errors"

[functions.fails]
runtime = "nodejs"
code = "js"
handler = "index.fails"

[functions.broken]
runtime = "nodejs"
code = "js"
handler = "broken.handler"

[functions.fine]
runtime = "nodejs"
code = "js"
handler = "index.fine"

[[routes]]
route = "GET /fails"
function = "fails"

[[routes]]
route = "GET /broken"
function = "broken"

[[routes]]
route = "GET /fine"
function = "fine"
"#,
    )
    .unwrap();
    let node = Builder::up(dir).start();
    for path in ["/fails", "/broken", "/fails"] {
        let r = http(node.gateway(), "GET", path, &[], "").unwrap();
        assert_eq!(r.status, 502, "{path}: {}\n{}", r.body, node.logs());
        assert_eq!(r.json()["message"], "Internal Server Error");
    }
    let r = http(node.gateway(), "GET", "/fine", &[], "").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "\"fine\"");
}

/// A `provided` function that takes `$1` seconds per invocation.
fn slow_bootstrap(seconds: &str) -> String {
    shell_bootstrap(&format!("sleep {seconds}; printf '%s' '\"done\"'"))
}

#[test]
fn fifty_concurrent_calls_run_at_most_max_at_a_time_and_none_is_lost() {
    let app = tempfile::tempdir().unwrap();
    write_app(
        app.path(),
        &[("slow", &slow_bootstrap("0.3"), "concurrency = { max = 10 }")],
        &[("GET /slow", "slow")],
    );
    let node = Builder::up(app.path()).start();
    let gateway = node.gateway();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || http(gateway, "GET", "/slow", &[], "").map(|r| r.status))
        })
        .collect();
    let statuses: Vec<u16> = calls
        .into_iter()
        .map(|c| c.join().unwrap().unwrap())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{statuses:?}\n{}",
        node.logs()
    );
    assert!(node.wait_for_logs("\"message\":\"REPORT RequestId", 50, Duration::from_secs(5)));
    let cold = node.logs().matches("\"cold\":true").count();
    assert!(cold <= 10, "{cold} instances were started for max = 10");
    assert!(cold >= 2, "the calls were served by more than one instance");
}

#[test]
fn beyond_the_queue_bound_callers_get_429() {
    let app = tempfile::tempdir().unwrap();
    write_app(
        app.path(),
        &[("one", &slow_bootstrap("1"), "concurrency = { max = 1 }")],
        &[("GET /one", "one")],
    );
    let node = Builder::up(app.path())
        .arg("--max-queue-wait")
        .arg("100ms")
        .start();
    let gateway = node.gateway();
    let calls: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || http(gateway, "GET", "/one", &[], "").unwrap()))
        .collect();
    let responses: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    let throttled: Vec<_> = responses.iter().filter(|r| r.status == 429).collect();
    assert!(!throttled.is_empty(), "{responses:?}");
    assert_eq!(throttled[0].json()["message"], "Too Many Requests");
    assert!(responses.iter().any(|r| r.status == 200));
}

#[test]
fn idle_instances_stop_and_min_warm_ones_are_there_first() {
    let app = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    // Each instance leaves a file named after its pid when it starts; `/warm/crash`
    // kills the one that serves it.
    let respond =
        r#"case "$EVENT" in *'"rawPath":"/warm/crash"'*) kill -9 $$;; esac; printf '%s' '"ok"'"#;
    let bootstrap =
        shell_bootstrap(respond).replacen("#!/bin/sh\n", "#!/bin/sh\ntouch \"$MARKERS/$$\"\n", 1);
    let env = format!(
        "concurrency = {{ max = 5, min_warm = 2 }}\nenvironment = {{ MARKERS = \"{}\" }}",
        markers.path().display()
    );
    write_app(
        app.path(),
        &[
            ("warm", &bootstrap, &env),
            ("cold", &shell_bootstrap(r#"printf '%s' '"ok"'"#), ""),
        ],
        &[
            ("GET /warm", "warm"),
            ("GET /warm/crash", "warm"),
            ("GET /cold", "cold"),
        ],
    );
    let node = Builder::up(app.path())
        .arg("--idle-timeout")
        .arg("300ms")
        .start();
    let started = || std::fs::read_dir(markers.path()).unwrap().count();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while started() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(started(), 2, "two warm instances before any request");
    let r = http(node.gateway(), "GET", "/warm", &[], "").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(started(), 2, "the request used a warm instance");
    // A warm instance lost is replaced without waiting for a request.
    let r = http(node.gateway(), "GET", "/warm/crash", &[], "").unwrap();
    assert_eq!(r.status, 502);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while started() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        started(),
        3,
        "the lost warm instance is replaced\n{}",
        node.logs()
    );
    let r = http(node.gateway(), "GET", "/cold", &[], "").unwrap();
    assert_eq!(r.status, 200);
    wait_for_an_idle_stop(&node);
}

#[test]
fn python_requirements_are_installed_for_their_function() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("py")).unwrap();
    std::fs::write(dir.join("py/requirements.txt"), "six==1.16.0\n").unwrap();
    std::fs::write(
        dir.join("py/app.py"),
        "import six\n\ndef handler(event, context):\n    return {\"six\": six.__version__, \"from\": six.__file__}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"deps\"\n\n[functions.py]\nruntime = \"python\"\ncode = \"py\"\nhandler = \"app.handler\"\n\n[[routes]]\nroute = \"GET /six\"\nfunction = \"py\"\n",
    )
    .unwrap();
    let node = Builder::up(dir).start();
    let r = http(node.gateway(), "GET", "/six", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    let v = r.json();
    assert_eq!(v["six"], "1.16.0");
    assert!(
        v["from"].as_str().unwrap().contains(".nimbus/deps/py/"),
        "{v}"
    );
}

#[test]
fn a_memory_bomb_ends_its_instance_only() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        "exports.handler = async (event) => {\n  if (event.rawPath === '/bomb') {\n    const hog = [];\n    for (;;) { hog.push(Buffer.alloc(8 * 1024 * 1024, 1)); await new Promise((r) => setTimeout(r, 5)); }\n  }\n  return 'fine';\n};\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"bomb\"\n\n[functions.js]\nruntime = \"nodejs\"\ncode = \"js\"\nhandler = \"index.handler\"\nmemory_mb = 128\ntimeout = \"30s\"\n\n[[routes]]\nroute = \"GET /{any+}\"\nfunction = \"js\"\n",
    )
    .unwrap();
    let node = Builder::up(dir).start();
    let r = http(node.gateway(), "GET", "/bomb", &[], "").unwrap();
    assert_eq!(r.status, 502, "{}\n{}", r.body, node.logs());
    // Through the Lambda API the error says what happened.
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/js/invocations",
        &[],
        r#"{"rawPath":"/bomb"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-amz-function-error" && v == "Unhandled")
    );
    assert_eq!(r.json()["errorType"], "Runtime.OutOfMemory", "{}", r.body);
    let r = http(node.gateway(), "GET", "/after", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", node.logs());
    assert_eq!(r.body, "\"fine\"");
}

/// Node.js functions find the AWS SDK for JavaScript v3 without bundling it, as on
/// Lambda's Node.js runtimes, from CommonJS (`NODE_PATH`) and from ES modules (the
/// shim's resolve hook) alike, and reach Nimbus's tables with it.
#[test]
fn node_functions_use_the_aws_sdk_v3_without_bundling_it() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    for code in ["cjs", "esm"] {
        std::fs::create_dir_all(dir.join(code)).unwrap();
    }
    std::fs::write(
        dir.join("cjs/index.js"),
        r#"const { DynamoDBClient, PutItemCommand } = require('@aws-sdk/client-dynamodb');
const client = new DynamoDBClient({});
exports.handler = async () => {
  await client.send(new PutItemCommand({ TableName: 'Items', Item: { id: { S: 'from-cjs' } } }));
  return 'put';
};
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("esm/index.mjs"),
        r#"import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
const docs = DynamoDBDocumentClient.from(new DynamoDBClient({}));
export const handler = async () => {
  const { Item } = await docs.send(new GetCommand({ TableName: 'Items', Key: { id: 'from-cjs' } }));
  return Item;
};
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"sdk\"\n\n[tables.Items]\npartition_key = { name = \"id\", type = \"S\" }\n\n[functions.put]\nruntime = \"nodejs\"\ncode = \"cjs\"\nhandler = \"index.handler\"\ntimeout = \"30s\"\n\n[functions.get]\nruntime = \"nodejs\"\ncode = \"esm\"\nhandler = \"index.handler\"\ntimeout = \"30s\"\n",
    )
    .unwrap();
    // The SDK is installed once per machine (with npm, from the registry) before the node
    // is ready.
    let node = Builder::up(dir).start();
    let invoke = |function: &str| {
        let r = http(
            node.services(),
            "POST",
            &format!("/2015-03-31/functions/{function}/invocations"),
            &[],
            "{}",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
        assert!(
            !r.headers.iter().any(|(k, _)| k == "x-amz-function-error"),
            "{function}: {}\n{}",
            r.body,
            node.logs()
        );
        r.json()
    };
    assert_eq!(invoke("put"), "put");
    assert_eq!(invoke("get"), serde_json::json!({ "id": "from-cjs" }));
    assert!(
        node.logs()
            .contains("ok nodejs runtime: AWS SDK for JavaScript v3 done"),
        "up shows its progress\n{}",
        node.logs()
    );
}

/// Each instance has a temporary directory of its own (`TMPDIR`, as Lambda's `/tmp`
/// belongs to one execution environment), removed when the instance stops.
#[test]
fn each_instance_has_its_own_temporary_directory() {
    let app = tempfile::tempdir().unwrap();
    let respond = r#"sleep 1; echo x > "$TMPDIR/mine"; printf '{"tmp":"%s","lib":"%s","root":"%s"}' "$TMPDIR" "$LD_LIBRARY_PATH" "$LAMBDA_TASK_ROOT""#;
    write_app(
        app.path(),
        &[("t", &shell_bootstrap(respond), "concurrency = { max = 2 }")],
        &[("GET /t", "t")],
    );
    let node = Builder::up(app.path())
        .arg("--idle-timeout")
        .arg("1s")
        .start();
    let gateway = node.gateway();
    let calls: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || http(gateway, "GET", "/t", &[], "").unwrap()))
        .collect();
    let dirs: Vec<PathBuf> = calls
        .into_iter()
        .map(|call| {
            let r = call.join().unwrap();
            assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
            let v = r.json();
            // A custom runtime also gets Lambda's library path: its code and `lib`.
            let root = v["root"].as_str().unwrap();
            assert_eq!(v["lib"], format!("{root}:{root}/lib"), "{v}");
            PathBuf::from(v["tmp"].as_str().unwrap())
        })
        .collect();
    assert_ne!(dirs[0], dirs[1], "two instances at once, two directories");
    for dir in &dirs {
        assert!(dir.to_string_lossy().contains("/.nimbus/tmp/"), "{dir:?}");
        assert!(dir.join("mine").is_file(), "{dir:?}");
    }
    // Idle instances stop after a second, and their directories go with them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dirs.iter().any(|d| d.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{dirs:?} still there\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Node.js starts as Lambda starts it: the heap sized to the function's memory (so V8
/// collects before the process outgrows it), and `global.gc`.
#[test]
fn node_runs_with_lambdas_heap_flags_and_library_path() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        "const v8 = require('v8');\nexports.handler = async () => ({\n  gc: typeof global.gc,\n  heapMb: Math.round(v8.getHeapStatistics().heap_size_limit / 1048576),\n  libraryPath: process.env.LD_LIBRARY_PATH,\n  taskRoot: process.env.LAMBDA_TASK_ROOT,\n});\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"flags\"\n\n[functions.js]\nruntime = \"nodejs\"\ncode = \"js\"\nhandler = \"index.handler\"\nmemory_mb = 256\n",
    )
    .unwrap();
    let node = Builder::up(dir).start();
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/js/invocations",
        &[],
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    let v = r.json();
    assert_eq!(v["gc"], "function", "{v}");
    // 230 MB of old space and a little young space, where V8 alone would size the heap by
    // the host's memory (gigabytes).
    let heap = v["heapMb"].as_u64().unwrap();
    assert!((200..=300).contains(&heap), "{v}");
    // Not for the host's interpreter: a library the code ships would be loaded into it.
    assert_eq!(v["libraryPath"], serde_json::Value::Null, "{v}");
    assert!(v["taskRoot"].is_string(), "{v}");
}

/// A function printing one endless line cannot exhaust the node's memory: the line is
/// cut at its limit while it is read, not after, and the function's next lines still
/// reach the log.
#[test]
fn an_endless_line_of_output_is_cut_as_it_is_read() {
    let app = tempfile::tempdir().unwrap();
    let respond = r#"head -c 400000000 /dev/zero | tr '\0' a >&2; echo >&2; echo 'after the long line' >&2; printf '%s' '"done"'"#;
    write_app(
        app.path(),
        &[("loud", &shell_bootstrap(respond), "timeout = \"120s\"")],
        &[("GET /loud", "loud")],
    );
    let node = Builder::up(app.path()).start();
    let r = http(node.gateway(), "GET", "/loud", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", node.logs());
    assert_eq!(r.body, "\"done\"");
    assert!(
        node.wait_for_log("after the long line", Duration::from_secs(10)),
        "{}",
        node.logs()
    );
    // The node's peak resident memory stays far below the 400 MB line.
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kb < 250 * 1024, "peak {peak_kb} kB");
}

/// A real Runtime API client, unmodified: a `provided` function built with the
/// `lambda_runtime` crate.
#[test]
fn a_lambda_runtime_crate_function_runs() {
    let bootstrap = crate::harness::rust_fixture("lambda-runtime-echo");
    let app = tempfile::tempdir().unwrap();
    let code = app.path().join("rust");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::copy(&bootstrap, code.join("bootstrap")).unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        "name = \"rust\"\n\n[functions.echo]\nruntime = \"provided.al2023\"\ncode = \"rust\"\n\n[[routes]]\nroute = \"POST /echo\"\nfunction = \"echo\"\n",
    )
    .unwrap();
    let node = Builder::up(app.path()).start();
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/echo/invocations",
        &[],
        r#"{"x":1}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    let v = r.json();
    assert_eq!(v["echo"], serde_json::json!({"x": 1}));
    assert_eq!(v["function_name"], "echo");
    assert_eq!(
        v["function_arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:echo"
    );
    assert!(v["deadline_ms"].as_u64().unwrap() > 1_700_000_000_000);
    let request_id = r
        .headers
        .iter()
        .find(|(k, _)| k == "x-amzn-requestid")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(v["request_id"], request_id);
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/echo/invocations",
        &[],
        r#"{"fail":true}"#,
    )
    .unwrap();
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-amz-function-error" && v == "Unhandled")
    );
    assert_eq!(r.json()["errorMessage"], "asked to fail");
    // Behind a route, the API Gateway event reaches it too.
    let r = http(node.gateway(), "POST", "/echo", &[], "hi").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["echo"]["body"], "hi");
}

#[test]
fn an_idle_instance_killed_from_outside_is_replaced() {
    let app = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    let bootstrap = shell_bootstrap(r#"printf '%s' '"ok"'"#).replacen(
        "#!/bin/sh\n",
        "#!/bin/sh\ntouch \"$MARKERS/$$\"\n",
        1,
    );
    let env = markers_env(markers.path());
    write_app(
        app.path(),
        &[("victim", &bootstrap, &env)],
        &[("GET /v", "victim")],
    );
    let node = Builder::up(app.path()).start();
    assert_eq!(
        http(node.gateway(), "GET", "/v", &[], "").unwrap().status,
        200
    );
    let pids: Vec<String> = std::fs::read_dir(markers.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pids.len(), 1);
    let status = std::process::Command::new("kill")
        .args(["-9", &pids[0]])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    let r = http(node.gateway(), "GET", "/v", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    assert_eq!(
        std::fs::read_dir(markers.path()).unwrap().count(),
        2,
        "a new instance served it"
    );
}

/// At shutdown, instances get SIGTERM before they are killed, as on Lambda.
#[test]
fn instances_get_sigterm_when_the_node_stops() {
    let app = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    // The trap marks with a shell builtin: a `touch` to fork and exec can take longer than
    // the 500 ms grace on a loaded machine, and the shell is killed before it marks.
    let bootstrap = shell_bootstrap(r#"printf '%s' '"ok"'"#).replacen(
        "#!/bin/sh\n",
        "#!/bin/sh\ntrap ': > \"$MARKERS/term\"; exit 0' TERM\n",
        1,
    );
    let env = markers_env(markers.path());
    write_app(
        app.path(),
        &[("polite", &bootstrap, &env)],
        &[("GET /p", "polite")],
    );
    let mut node = Builder::up(app.path()).start();
    assert_eq!(
        http(node.gateway(), "GET", "/p", &[], "").unwrap().status,
        200
    );
    node.signal("TERM");
    let status = node
        .wait_exit(Duration::from_secs(5))
        .expect("nimbus exits");
    assert_eq!(status.code(), Some(0), "{}", node.logs());
    assert!(
        markers.path().join("term").exists(),
        "the instance saw SIGTERM"
    );
}

/// An instance being stopped gets SIGTERM while its long poll for the next invocation
/// waits, as on Lambda, where `next` never answers a runtime that is going away: an
/// answer without an invocation makes some runtimes (the `lambda_runtime` crate's)
/// panic. The signal reaches the bootstrap's whole process group, so the `curl` it is
/// waiting on ends too, and SIGKILL follows after the grace.
#[test]
fn a_stopping_instance_gets_sigterm_not_an_answer_to_its_long_poll() {
    let app = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    // SIGTERM ignored (curl inherits that), each poll's HTTP status kept in a file.
    let bootstrap = r#"#!/bin/sh
trap '' TERM
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
n=0
while true; do
  n=$((n+1))
  headers=$(mktemp)
  status=$(curl -sS -o /dev/null -D "$headers" -w '%{http_code}' "$api/invocation/next")
  printf '%s' "$status" > "$MARKERS/poll-$n"
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d: -f2 | tr -d ' \r\n')
  rm -f "$headers"
  [ -n "$ID" ] || exit 0
  curl -sS -o /dev/null -X POST "$api/invocation/$ID/response" --data-binary '"ok"'
done
"#;
    let env = markers_env(markers.path());
    write_app(
        app.path(),
        &[("stubborn", bootstrap, &env)],
        &[("GET /s", "stubborn")],
    );
    let node = Builder::up(app.path())
        .arg("--idle-timeout")
        .arg("300ms")
        .start();
    assert_eq!(
        http(node.gateway(), "GET", "/s", &[], "").unwrap().status,
        200
    );
    wait_for_an_idle_stop(&node);
    // Past the stop's grace: the instance is gone, killed while it waited.
    std::thread::sleep(Duration::from_secs(1));
    let polls: Vec<String> = (1..=3)
        .filter_map(|n| std::fs::read_to_string(markers.path().join(format!("poll-{n}"))).ok())
        .collect();
    assert_eq!(polls, ["200"], "{}", node.logs());
}

/// When the grace period runs out with an invocation still running, its instance gets
/// SIGTERM before SIGKILL, as idle ones do.
#[test]
fn a_busy_instance_gets_sigterm_when_the_grace_runs_out() {
    let app = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    // Marked with a shell builtin, as above.
    let bootstrap = r#"#!/bin/sh
trap ': > "$MARKERS/term"; kill $! 2>/dev/null; exit 0' TERM
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
curl -sS -o /dev/null "$api/invocation/next" || exit 1
touch "$MARKERS/busy"
sleep 30 &
wait $!
"#;
    let env = markers_env(markers.path());
    write_app(
        app.path(),
        &[("stubborn", bootstrap, &env)],
        &[("GET /s", "stubborn")],
    );
    let mut node = Builder::up(app.path())
        .arg("--shutdown-grace")
        .arg("200ms")
        .start();
    let gateway = node.gateway();
    let caller = std::thread::spawn(move || http(gateway, "GET", "/s", &[], ""));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !markers.path().join("busy").exists() {
        assert!(std::time::Instant::now() < deadline, "{}", node.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    node.signal("TERM");
    let status = node
        .wait_exit(Duration::from_secs(5))
        .expect("nimbus exits");
    assert_eq!(status.code(), Some(0), "{}", node.logs());
    assert!(
        markers.path().join("term").exists(),
        "the busy instance saw SIGTERM\n{}",
        node.logs()
    );
    let _ = caller.join();
}

/// Python functions import boto3 without bundling it, as on Lambda's Python runtime: the
/// SDK `nimbus up` installed, not the host's, and pointed at the services endpoint.
#[test]
fn python_functions_import_the_runtimes_boto3() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("py")).unwrap();
    std::fs::write(
        dir.join("py/app.py"),
        "import boto3\n\ndef handler(event, context):\n    tables = boto3.client(\"dynamodb\").list_tables()[\"TableNames\"]\n    return {\"file\": boto3.__file__, \"tables\": tables}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"sdk\"\n\n[tables.Things]\npartition_key = { name = \"id\", type = \"S\" }\n\n[functions.py]\nruntime = \"python3.11\"\ncode = \"py\"\nhandler = \"app.handler\"\n\n[[routes]]\nroute = \"GET /t\"\nfunction = \"py\"\n",
    )
    .unwrap();
    let node = Builder::up(dir).start();
    let r = http(node.gateway(), "GET", "/t", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    let v = r.json();
    assert_eq!(v["tables"], serde_json::json!(["Things"]));
    let file = v["file"].as_str().unwrap();
    assert!(
        file.contains("/python-sdk/boto3-1.44.8/boto3/"),
        "boto3 came from {file}"
    );
    assert!(
        node.logs()
            .contains("ok python runtime: AWS SDK (boto3==1.44.8) done"),
        "up shows its progress\n{}",
        node.logs()
    );
}

/// `nimbus up` reloads a function whose code changed, and only that one.
#[test]
fn changed_code_reloads_that_function_alone() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    for (name, text) in [("a", "v1"), ("b", "b1")] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(
            dir.join(name).join("index.js"),
            format!("exports.handler = async () => ({{ statusCode: 200, body: '{text}' }});\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"watch\"\n\n[functions.a]\nruntime = \"nodejs20.x\"\ncode = \"a\"\nhandler = \"index.handler\"\n\n[functions.b]\nruntime = \"nodejs20.x\"\ncode = \"b\"\nhandler = \"index.handler\"\n\n[[routes]]\nroute = \"GET /a\"\nfunction = \"a\"\n\n[[routes]]\nroute = \"GET /b\"\nfunction = \"b\"\n",
    )
    .unwrap();
    let node = Builder::up_in_place(dir).start();
    let get = |path: &str| http(node.gateway(), "GET", path, &[], "").unwrap().body;
    assert_eq!(get("/a"), "v1");
    assert_eq!(get("/b"), "b1");
    std::fs::write(
        dir.join("a/index.js"),
        "exports.handler = async () => ({ statusCode: 200, body: 'v2' });\n",
    )
    .unwrap();
    assert!(
        node.wait_for_log("function reloaded", Duration::from_secs(10)),
        "{}",
        node.logs()
    );
    assert_eq!(get("/a"), "v2");
    assert_eq!(get("/b"), "b1");
    let reloads: Vec<String> = node
        .logs()
        .lines()
        .filter(|l| l.contains("function reloaded"))
        .map(str::to_owned)
        .collect();
    assert_eq!(reloads.len(), 1, "{reloads:?}\n{}", node.logs());
    assert!(reloads[0].contains("\"function\":\"a\""), "{reloads:?}");
}

/// An error body is held to the response's 6 MB limit: one larger ends the invocation as
/// `Function.ResponseSizeTooLarge` at once (before, one over 12 MB was refused by the
/// Runtime API without ending the invocation, which then waited for its time-out).
#[test]
fn an_oversized_error_body_ends_the_invocation_as_too_large() {
    let app = tempfile::tempdir().unwrap();
    // Posts an error body of as many bytes as the event's digits say.
    let bootstrap = shell_loop(
        r#"  SIZE=$(printf '%s' "$EVENT" | tr -dc 0-9)
  head -c "$SIZE" /dev/zero | tr '\0' x | curl -sS -o /dev/null -X POST "$api/invocation/$ID/error" -H 'Lambda-Runtime-Function-Error-Type: Big' --data-binary @-"#,
    );
    // Fails its initialisation with 13 MB of error.
    let init_big = r#"#!/bin/sh
head -c 13000000 /dev/zero | tr '\0' x | curl -sS -o /dev/null -X POST "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error" --data-binary @-
"#;
    write_app(
        app.path(),
        &[
            ("big", &bootstrap, "timeout = \"120s\""),
            ("initbig", init_big, "timeout = \"120s\""),
        ],
        &[],
    );
    let node = Builder::up(app.path()).start();
    let invoke = |size: usize| {
        http(
            node.services(),
            "POST",
            "/2015-03-31/functions/big/invocations",
            &[],
            &format!("{{\"size\":{size}}}"),
        )
        .unwrap()
    };
    for size in [7_000_000, 13_000_000] {
        let r = invoke(size);
        assert_eq!(r.status, 200, "{}", node.logs());
        assert!(
            r.headers.iter().any(|(k, _)| k == "x-amz-function-error"),
            "{:?}",
            r.headers
        );
        assert!(
            r.body.len() < 1000,
            "{size}: {} bytes, {:?}",
            r.body.len(),
            &r.body[..r.body.len().min(100)]
        );
        assert_eq!(
            r.json()["errorType"],
            "Function.ResponseSizeTooLarge",
            "{size}"
        );
    }
    // A small one is the function's own error, as it was.
    let r = invoke(10);
    assert_eq!(r.body, "x".repeat(10));
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/initbig/invocations",
        &[],
        "{}",
    )
    .unwrap();
    assert_eq!(
        r.json()["errorType"],
        "Function.ResponseSizeTooLarge",
        "{}",
        r.body
    );
}

/// Files in a code directory that are not code do not reload its function: the node's
/// own log redirected into it (every line would be a change) and what its `.gitignore`
/// ignores. A code change still does.
#[test]
fn the_nodes_own_log_and_gitignored_files_do_not_reload_a_function() {
    let app = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(app.path()).unwrap();
    let handler = |text: &str| {
        format!("exports.handler = async () => ({{ statusCode: 200, body: '{text}' }});\n")
    };
    std::fs::write(dir.join("index.js"), handler("v1")).unwrap();
    std::fs::write(dir.join(".gitignore"), "*.tmp\n").unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"own-log\"\n\n[functions.f]\nruntime = \"nodejs20.x\"\ncode = \".\"\nhandler = \"index.handler\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
    )
    .unwrap();
    // As a user running `nimbus up . 2> node.log` in the app's directory.
    let log = dir.join("node.log");
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _node = Killed(
        std::process::Command::new(crate::harness::nimbus_bin())
            .arg("up")
            .arg(&dir)
            .args(["--log-format", "json", "--log-level", "debug"])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--services-listen",
                "127.0.0.1:0",
            ])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if read().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    assert!(wait_for("nimbus is ready"), "{}", read());
    let ready: Value = read()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "nimbus is ready")
        .unwrap();
    let gateway = ready["gateway"].as_str().unwrap().parse().unwrap();
    let get = || http(gateway, "GET", "/f", &[], "").unwrap().body;
    // Each call writes lines to node.log; a gitignored scratch file changes too.
    for i in 0..5 {
        assert_eq!(get(), "v1");
        std::fs::write(dir.join("scratch.tmp"), format!("{i}")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    // Longer than the watcher lets changes settle.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get(), "v1");
    assert!(!read().contains("function code changed"), "{}", read());
    std::fs::write(dir.join("index.js"), handler("v2")).unwrap();
    assert!(wait_for("function reloaded"), "{}", read());
    assert_eq!(get(), "v2");
    assert_eq!(
        read().matches("function code changed").count(),
        1,
        "{}",
        read()
    );
}

/// The official runtime interface client for Python (`awslambdaric` from PyPI), run
/// unmodified as a `provided` function's bootstrap, speaks Nimbus's Runtime API.
#[test]
fn awslambdaric_runs_a_python_handler_unmodified() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("ric")).unwrap();
    std::fs::write(
        dir.join("ric/app.py"),
        "def handler(event, context):\n    if event.get(\"fail\"):\n        raise ValueError(\"bad input\")\n    return {\"echo\": event, \"fn\": context.function_name, \"id\": context.aws_request_id, \"left\": context.get_remaining_time_in_millis() > 0}\n",
    )
    .unwrap();
    let python = crate::harness::client_program("python");
    let bootstrap = "#!/bin/sh\nexec \"$RIC_PYTHON\" -m awslambdaric app.handler\n";
    let env = format!("environment = {{ RIC_PYTHON = \"{}\" }}", python.display());
    write_app(dir, &[("ric", bootstrap, &env)], &[]);
    let node = Builder::up(dir).start();
    let invoke = |payload: &str| {
        http(
            node.services(),
            "POST",
            "/2015-03-31/functions/ric/invocations",
            &[],
            payload,
        )
        .unwrap()
    };
    let r = invoke(r#"{"n": 1}"#);
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    let v = r.json();
    assert_eq!(v["echo"], serde_json::json!({"n": 1}));
    assert_eq!(v["fn"], "ric");
    assert_eq!(v["left"], true);
    let request_id = r
        .headers
        .iter()
        .find(|(k, _)| k == "x-amzn-requestid")
        .map(|(_, v)| v.clone());
    assert_eq!(v["id"].as_str(), request_id.as_deref());
    let r = invoke(r#"{"fail": true}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-amz-function-error" && v == "Unhandled"),
        "{:?}",
        r.headers
    );
    let v = r.json();
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "bad input");
    // The instance survived its handler's error and serves the next invocation.
    assert_eq!(invoke(r#"{"n": 2}"#).json()["echo"]["n"], 2);
}

/// Reads an HTTP/1.1 response from `stream` until `needle` has arrived; returns all
/// bytes read so far.
fn read_until(stream: &mut std::net::TcpStream, needle: &str) -> String {
    use std::io::Read as _;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the response ended before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A Node.js handler wrapped in `awslambda.streamifyResponse` streams its response to the
/// gateway's client as it writes it; `HttpResponseStream.from` sets status and headers;
/// an error after the start cuts the body off; `Invoke` gets the whole stream.
#[test]
fn streamed_responses_reach_the_client_as_they_are_written() {
    use std::io::{Read as _, Write as _};
    let app = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        r#"const fs = require('fs');
const path = require('path');
const waitFor = async (file) => { while (!fs.existsSync(file)) await new Promise((r) => setTimeout(r, 10)); };
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const http = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201, headers: { 'content-type': 'text/plain', 'x-streamed': 'yes' }, cookies: ['a=1'],
  });
  http.write('first;');
  if (event.rawPath === '/s/wait') await waitFor(path.join(process.env.MARKERS, 'go'));
  if (event.rawPath === '/s/fail') throw new Error('broke mid-stream');
  http.write('second');
  http.end();
});
exports.plain = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType('text/plain');
  responseStream.write('one ');
  responseStream.end('two');
});
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        format!(
            "name = \"streams\"\n\n[functions.s]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.handler\"\nenvironment = {{ MARKERS = \"{}\" }}\n\n[functions.p]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.plain\"\n\n[[routes]]\nroute = \"GET /s/{{any}}\"\nfunction = \"s\"\n\n[[routes]]\nroute = \"GET /plain/text\"\nfunction = \"p\"\n",
            markers.path().display()
        ),
    )
    .unwrap();
    let node = Builder::up(dir).arg("--no-watch").start();

    // The first chunk arrives while the function still waits to write the second.
    let mut stream = std::net::TcpStream::connect(node.gateway()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /s/wait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let head = read_until(&mut stream, "first;");
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert!(head.contains("x-streamed: yes"), "{head}");
    assert!(head.contains("set-cookie: a=1"), "{head}");
    assert!(!head.contains("second"), "{head}");
    std::fs::write(markers.path().join("go"), "").unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("second"), "{rest}");
    assert!(rest.ends_with("0\r\n\r\n"), "a clean end: {rest:?}");

    // A failure after the start: the body is cut off, without the final chunk.
    let mut stream = std::net::TcpStream::connect(node.gateway()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /s/fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let all = String::from_utf8_lossy(&all);
    // The connection is dropped: after the head and what was written, or before even the
    // head left the server's buffer when the failure followed the first write at once.
    assert!(all.is_empty() || all.starts_with("HTTP/1.1 201"), "{all}");
    assert!(
        !all.ends_with("0\r\n\r\n"),
        "the body must not end cleanly: {all:?}"
    );

    // Without a prelude: a 200 with the content type the function set.
    let r = http(node.gateway(), "GET", "/plain/text", &[], "").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "text/plain"),
        "{:?}",
        r.headers
    );
    assert!(
        r.body.contains("one") && r.body.contains("two"),
        "{}",
        r.body
    );

    // Invoke collects the stream.
    let r = http(
        node.services(),
        "POST",
        "/2015-03-31/functions/p/invocations",
        &[],
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "one two");
}

/// boto3's `lambda` client: Invoke (with the log tail, errors, DryRun), GetFunction,
/// ListFunctions, and InvokeWithResponseStream's event stream.
#[test]
fn boto3_lambda_client_invokes_and_streams() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        r#"exports.echo = async (event) => event;
exports.context = async (event, context) => context.clientContext ?? null;
exports.fails = async () => { throw new Error('no luck'); };
exports.streams = awslambda.streamifyResponse(async (event, stream) => {
  stream.setContentType('text/plain');
  stream.write('one ');
  await new Promise((r) => setTimeout(r, 20));
  stream.end('two');
});
exports.breaks = awslambda.streamifyResponse(async (event, stream) => {
  stream.write('partial');
  await new Promise((r) => setTimeout(r, 20));
  throw new Error('broke');
});
"#,
    )
    .unwrap();
    let mut manifest = String::from("name = \"lambda-api\"\n");
    for name in ["echo", "context", "fails", "streams", "breaks"] {
        manifest.push_str(&format!(
            "\n[functions.{name}]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.{name}\"\n"
        ));
    }
    std::fs::write(dir.join("nimbus.toml"), manifest).unwrap();
    let node = Builder::up(dir).arg("--no-watch").start();
    let python = crate::harness::client_program("python");
    let script = crate::harness::clients_dir().join("lambda_boto3.py");
    crate::harness::run_client(
        &python,
        &[script.to_str().unwrap()],
        &format!("http://{}", node.services()),
    );
}

/// Editing `nimbus.toml` under `nimbus up` swaps the routes without dropping a request in
/// flight; an invalid edit is reported and the app keeps running as it was.
#[test]
fn route_changes_apply_without_dropping_requests_in_flight() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        "exports.handler = async (e) => {\n  if (e.rawPath === '/slow') await new Promise((r) => setTimeout(r, 1500));\n  return { statusCode: 200, body: e.routeKey };\n};\n",
    )
    .unwrap();
    let manifest = |routes: &[&str]| {
        let mut m = String::from(
            "name = \"reload\"\n\n[functions.f]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.handler\"\n",
        );
        for r in routes {
            m.push_str(&format!(
                "\n[[routes]]\nroute = \"{r}\"\nfunction = \"f\"\n"
            ));
        }
        m
    };
    std::fs::write(dir.join("nimbus.toml"), manifest(&["GET /slow", "GET /a"])).unwrap();
    let node = Builder::up_in_place(dir).start();
    assert_eq!(
        http(node.gateway(), "GET", "/a", &[], "").unwrap().body,
        "GET /a"
    );
    let gateway = node.gateway();
    let slow = std::thread::spawn(move || http(gateway, "GET", "/slow", &[], "").unwrap());
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.join("nimbus.toml"), manifest(&["GET /slow", "GET /b"])).unwrap();
    assert!(
        node.wait_for_log("app reloaded", Duration::from_secs(10)),
        "{}",
        node.logs()
    );
    assert_eq!(
        http(node.gateway(), "GET", "/b", &[], "").unwrap().body,
        "GET /b"
    );
    assert_eq!(
        http(node.gateway(), "GET", "/a", &[], "").unwrap().status,
        404
    );
    let finished = slow.join().unwrap();
    assert_eq!(
        (finished.status, finished.body.as_str()),
        (200, "GET /slow")
    );
    // A broken manifest changes nothing.
    std::fs::write(
        dir.join("nimbus.toml"),
        "name = \"reload\"\n[[routes]]\nroute = 7\n",
    )
    .unwrap();
    assert!(
        node.wait_for_log("the app keeps running as it was", Duration::from_secs(10)),
        "{}",
        node.logs()
    );
    assert_eq!(
        http(node.gateway(), "GET", "/b", &[], "").unwrap().body,
        "GET /b"
    );
    // A new function (routed) needs a restart: the whole edit is refused, so no route
    // names a function that is not running.
    let mut with_new = manifest(&["GET /slow", "GET /b"]);
    with_new.push_str(
        "\n[functions.g]\nruntime = \"nodejs20.x\"\ncode = \"js\"\nhandler = \"index.handler\"\n\n[[routes]]\nroute = \"GET /c\"\nfunction = \"g\"\n",
    );
    std::fs::write(dir.join("nimbus.toml"), with_new).unwrap();
    assert!(
        node.wait_for_log(
            "a new function needs a restart of nimbus up",
            Duration::from_secs(10)
        ),
        "{}",
        node.logs()
    );
    assert_eq!(
        http(node.gateway(), "GET", "/c", &[], "").unwrap().status,
        404
    );
    assert_eq!(
        http(node.gateway(), "GET", "/b", &[], "").unwrap().body,
        "GET /b"
    );
}

/// After an edit of `nimbus.toml` changes a function's settings, the Lambda API shows the
/// new ones (GetFunction, ListFunctions), as invocations run with them.
#[test]
fn the_lambda_api_shows_the_settings_a_reload_applied() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    let bootstrap = shell_bootstrap("printf '{}'");
    write_app(dir, &[("f", &bootstrap, "timeout = 3")], &[]);
    let node = Builder::up_in_place(dir).start();
    let timeout = |path: &str, pick: &dyn Fn(&Value) -> Value| {
        let r = http(node.services(), "GET", path, &[], "").unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
        pick(&r.json())
    };
    let get = |v: &Value| v["Configuration"]["Timeout"].clone();
    let list = |v: &Value| v["Functions"][0]["Timeout"].clone();
    assert_eq!(timeout("/2015-03-31/functions/f", &get), 3);
    write_app(dir, &[("f", &bootstrap, "timeout = 9")], &[]);
    assert!(
        node.wait_for_log("app reloaded", Duration::from_secs(10)),
        "{}",
        node.logs()
    );
    assert_eq!(timeout("/2015-03-31/functions/f", &get), 9);
    assert_eq!(timeout("/2015-03-31/functions", &list), 9);
}
