//! The gateway's security: API keys with usage plans, route rate limits, Lambda
//! authorizers, the JWT authorizer with tokens signed here with real keys, CORS, and the
//! request id every answer carries.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{Builder, Nimbus, http, repo_root};

const PARTNER: &str = "partner-key-0123456789abcdef";
const QUOTA: &str = "quota-key-0123456789abcdefgh";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A JWT signed with `alg` by `openssl` with the private key in `key` (RS256), or
/// unsigned for `none`.
fn token(alg: &str, claims: &Value, key: &Path) -> String {
    let input = format!(
        "{}.{}",
        b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    if alg == "none" {
        return format!("{input}.");
    }
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = openssl.wait_with_output().unwrap();
    assert!(out.status.success());
    format!("{input}.{}", b64(&out.stdout))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": "https://issuer.example.com/",
        "aud": "shop",
        "sub": "user-1",
        "exp": now() + 300,
        "scope": "read write",
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn app() -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        r#"exports.echo = async (event) => ({ statusCode: 200, headers: { 'access-control-allow-origin': 'https://wrong.example.com' }, body: JSON.stringify(event) });
exports.authz = async (event) => ({ isAuthorized: event.headers.authorization === 'letmein', context: { user: 'alice', source: event.identitySource } });
"#,
    )
    .unwrap();
    let keys = repo_root().join("crates/gateway/tests/keys");
    std::fs::copy(keys.join("rsa-1-public.pem"), dir.join("jwt.pem")).unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        format!(
            r#"name = "secure"

[functions.echo]
runtime = "nodejs20.x"
code = "js"
handler = "index.echo"

[functions.authz]
runtime = "nodejs20.x"
code = "js"
handler = "index.authz"

[auth.api_key]
keys = [
  {{ name = "partner", value = "{PARTNER}", plan = "bursty" }},
  {{ name = "counted", value = "{QUOTA}", plan = "daily" }},
  {{ name = "from-env", value_env = "NIMBUS_TEST_API_KEY" }},
]

[auth.api_key.plans.bursty]
rate = 1
burst = 2

[auth.api_key.plans.daily]
quota_per_day = 2

[auth.jwt]
issuer = "https://issuer.example.com/"
audiences = ["shop"]
algorithms = ["RS256"]
public_key_pem = "jwt.pem"

[auth.lambda.gate]
function = "authz"
ttl = "1m"

[cors]
allow_origins = ["https://app.example.com"]
allow_methods = ["GET", "POST"]
allow_headers = ["authorization", "content-type"]
expose_headers = ["apigw-requestid"]
max_age = "5m"

[[routes]]
route = "GET /open"
function = "echo"

[[routes]]
route = "GET /key"
function = "echo"
auth = "api_key"
payload = "1.0"

[[routes]]
route = "GET /limited"
function = "echo"
rate_limit = {{ rate = 1, burst = 1 }}

[[routes]]
route = "GET /gate"
function = "echo"
auth = "lambda"

[[routes]]
route = "GET /jwt"
function = "echo"
auth = "jwt"
scopes = ["read"]

[[routes]]
route = "GET /admin"
function = "echo"
auth = "jwt"
scopes = ["admin"]
"#
        ),
    )
    .unwrap();
    app
}

fn start() -> (tempfile::TempDir, Nimbus) {
    let app = app();
    let node = Builder::up(app.path())
        .arg("--no-watch")
        .env("NIMBUS_TEST_API_KEY", "env-key-0123456789abcdefgh")
        .start();
    (app, node)
}

fn header<'a>(r: &'a crate::harness::Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn api_keys_are_checked_and_held_to_their_usage_plans() {
    let (_app, node) = start();
    let get = |key: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        http(node.gateway(), "GET", "/key", &headers, "").unwrap()
    };
    for refused in [get(None), get(Some("not-a-key"))] {
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(refused.json(), json!({"message": "Forbidden"}));
    }
    let ok = get(Some("env-key-0123456789abcdefgh"));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let identity = &ok.json()["requestContext"]["identity"];
    assert_eq!(identity["apiKeyId"], "from-env");
    assert_eq!(identity["apiKey"], "env-key-0123456789abcdefgh");
    // The bursty plan: two at once, then 429 with Retry-After.
    assert_eq!(get(Some(PARTNER)).status, 200);
    assert_eq!(get(Some(PARTNER)).status, 200);
    let throttled = get(Some(PARTNER));
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.json(), json!({"message": "Too Many Requests"}));
    assert_eq!(header(&throttled, "retry-after"), Some("1"));
    // The daily quota: two, then "Limit Exceeded" until tomorrow.
    assert_eq!(get(Some(QUOTA)).status, 200);
    assert_eq!(get(Some(QUOTA)).status, 200);
    let over = get(Some(QUOTA));
    assert_eq!(over.status, 429);
    assert_eq!(over.json(), json!({"message": "Limit Exceeded"}));
    let wait: u64 = header(&over, "retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait));
}

#[test]
fn a_rate_limited_route_answers_429_with_retry_after() {
    let (_app, node) = start();
    assert_eq!(
        http(node.gateway(), "GET", "/limited", &[], "")
            .unwrap()
            .status,
        200
    );
    let r = http(node.gateway(), "GET", "/limited", &[], "").unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    // Other routes are not affected.
    assert_eq!(
        http(node.gateway(), "GET", "/open", &[], "")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_lambda_authorizer_decides_and_its_context_reaches_the_function() {
    let (_app, node) = start();
    let get = |token: Option<&str>| {
        let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
        http(node.gateway(), "GET", "/gate", &headers, "").unwrap()
    };
    let missing = get(None);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json(), json!({"message": "Unauthorized"}));
    let denied = get(Some("nope"));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json(), json!({"message": "Forbidden"}));
    for _ in 0..3 {
        let ok = get(Some("letmein"));
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(
            ok.json()["requestContext"]["authorizer"]["lambda"],
            json!({"user": "alice", "source": ["letmein"]})
        );
    }
    // One decision per identity within the TTL: "nope" once, "letmein" once.
    let authz_runs = node
        .logs()
        .lines()
        .filter(|l| l.contains("START RequestId") && l.contains("\"function\":\"authz\""))
        .count();
    assert_eq!(authz_runs, 2, "{}", node.logs());
}

#[test]
fn the_jwt_authorizer_checks_signature_claims_and_scopes() {
    let (_app, node) = start();
    let keys = repo_root().join("crates/gateway/tests/keys");
    let good_key = keys.join("rsa-1-private.pem");
    let get = |path: &str, token: &str| {
        let bearer = format!("Bearer {token}");
        http(
            node.gateway(),
            "GET",
            path,
            &[("authorization", &bearer)],
            "",
        )
        .unwrap()
    };
    let ok = get("/jwt", &token("RS256", &claims(json!({})), &good_key));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let jwt = &ok.json()["requestContext"]["authorizer"]["jwt"];
    assert_eq!(jwt["claims"]["sub"], "user-1");
    assert_eq!(jwt["scopes"], json!(["read", "write"]));
    let refused = [
        // No token.
        http(node.gateway(), "GET", "/jwt", &[], "").unwrap(),
        // Signed with another key.
        get(
            "/jwt",
            &token("RS256", &claims(json!({})), &keys.join("rsa-2-private.pem")),
        ),
        // Expired, wrong issuer, wrong audience.
        get(
            "/jwt",
            &token("RS256", &claims(json!({"exp": now() - 600})), &good_key),
        ),
        get(
            "/jwt",
            &token("RS256", &claims(json!({"iss": "https://evil/"})), &good_key),
        ),
        get(
            "/jwt",
            &token("RS256", &claims(json!({"aud": "other"})), &good_key),
        ),
        // Unsigned.
        get("/jwt", &token("none", &claims(json!({})), &good_key)),
    ];
    // Each says why in `www-authenticate`, as API Gateway does.
    let challenge = |r: &crate::harness::Response| {
        header(r, "www-authenticate")
            .unwrap_or_else(|| panic!("no www-authenticate: {:?}", r.headers))
            .to_owned()
    };
    for r in &refused {
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json(), json!({"message": "Unauthorized"}));
        let challenge = challenge(r);
        assert!(
            challenge
                .starts_with(r#"Bearer scope="read" error="invalid_token" error_description=""#),
            "{challenge}"
        );
    }
    assert!(
        challenge(&refused[2]).contains("expired"),
        "{}",
        challenge(&refused[2])
    );
    // A valid token without the route's scope is forbidden.
    let r = get("/admin", &token("RS256", &claims(json!({})), &good_key));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json(), json!({"message": "Forbidden"}));
    assert!(
        challenge(&r).contains(r#"error="insufficient_scope""#),
        "{}",
        challenge(&r)
    );
}

#[test]
fn cors_preflights_are_answered_and_responses_carry_the_policy() {
    let (_app, node) = start();
    let preflight = http(
        node.gateway(),
        "OPTIONS",
        "/anything/at/all",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(preflight.status, 204);
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-methods"),
        Some("GET,POST")
    );
    assert_eq!(header(&preflight, "access-control-max-age"), Some("300"));
    let r = http(
        node.gateway(),
        "GET",
        "/open",
        &[("origin", "https://app.example.com")],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    // The policy's origin, not the one the function set.
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&r, "access-control-expose-headers"),
        Some("apigw-requestid")
    );
    let foreign = http(
        node.gateway(),
        "GET",
        "/open",
        &[("origin", "https://other.example.com")],
        "",
    )
    .unwrap();
    assert_eq!(header(&foreign, "access-control-allow-origin"), None);
}

#[test]
fn every_answer_carries_the_request_id_the_function_logs() {
    let (_app, node) = start();
    let r = http(node.gateway(), "GET", "/open", &[], "").unwrap();
    let id = header(&r, "apigw-requestid").unwrap().to_owned();
    assert_eq!(r.json()["requestContext"]["requestId"], id.as_str());
    assert!(
        node.wait_for_log(&format!("END RequestId: {id}"), Duration::from_secs(5)),
        "{}",
        node.logs()
    );
    // The access line is written as the answer leaves; the log reader may see it later.
    assert!(
        node.wait_for_log("\"route\":\"GET /open\"", Duration::from_secs(5)),
        "{}",
        node.logs()
    );
    let access = node
        .logs()
        .lines()
        .find(|l| l.contains("\"target\":\"access\"") && l.contains(&id))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(access.contains("\"route\":\"GET /open\""), "{access}");
    assert!(access.contains("integration_ms"), "{access}");
    // Refusals carry one too.
    let missing = http(node.gateway(), "GET", "/nowhere", &[], "").unwrap();
    assert_eq!(missing.status, 404);
    assert!(header(&missing, "apigw-requestid").is_some());
}
