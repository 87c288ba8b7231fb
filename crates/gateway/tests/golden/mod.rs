//! Golden files for the gateway's wire formats, written from API Gateway's documentation:
//! `events/*.json` pair a request with the event a function receives for it, and
//! `replies/*.json` pair a function's result with what the client receives.
//!
//! An event file holds `payload` (`"2.0"` or `"1.0"`), the app's `routes`, the `request`
//! (`method`, `target`, `protocol`, `headers` as `[name, value]` pairs in the order sent,
//! `body` or `bodyBase64`, and the facts that vary from one request to the next, fixed
//! here: `peer`, `requestId`, `timeEpoch`) and the whole expected `event`.
//!
//! A reply file holds `payload`, the function's `result` (JSON), `resultRaw` (bytes as
//! text) or `error` (the Lambda error type of a failed invocation), and the expected
//! `response`: `status`, every header as `{name: [values]}`, and `body` or `bodyBase64`.
//!
//! This module is compiled into the crate's unit tests (`event.rs` includes it), since
//! the event builder and the reply rules are crate-private.

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use base64::Engine as _;
use futures_util::FutureExt as _;
use nimbus_core::{Outcome, PayloadVersion};
use serde_json::Value as Json;

use super::{RequestFacts, build_at, fuzzing::route};
use crate::RouteTable;

fn golden(kind: &str) -> Vec<(String, Json)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let case =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, case)
        })
        .collect()
}

fn payload(case: &Json) -> PayloadVersion {
    match case["payload"].as_str() {
        Some("2.0") => PayloadVersion::V2,
        Some("1.0") => PayloadVersion::V1,
        other => panic!("payload must be \"2.0\" or \"1.0\", not {other:?}"),
    }
}

fn bytes(value: &Json, text: &str, base64: &str) -> Vec<u8> {
    match (&value[text], &value[base64]) {
        (Json::String(s), Json::Null) => s.clone().into_bytes(),
        (Json::Null, Json::String(s)) => {
            base64::engine::general_purpose::STANDARD.decode(s).unwrap()
        }
        (Json::Null, Json::Null) => Vec::new(),
        _ => panic!("give `{text}` or `{base64}`, not both"),
    }
}

fn str_of<'a>(value: &'a Json, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` must be a string"))
}

/// The event the gateway builds for an event file's request.
fn event_for(case: &Json) -> Json {
    let routes: Vec<_> = case["routes"]
        .as_array()
        .expect("`routes` is a list")
        .iter()
        .map(|key| {
            let key = key.as_str().expect("a route is a string");
            route(key, payload(case)).unwrap_or_else(|| panic!("bad route {key:?}"))
        })
        .collect();
    let table = RouteTable::new(&routes).unwrap();
    let request = &case["request"];
    let method = Method::from_bytes(str_of(request, "method").as_bytes()).unwrap();
    let uri: Uri = str_of(request, "target").parse().unwrap();
    let mut headers = HeaderMap::new();
    for pair in request["headers"].as_array().expect("`headers` is a list") {
        let name = HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap();
        let value = HeaderValue::from_str(pair[1].as_str().unwrap()).unwrap();
        headers.append(name, value);
    }
    let body = bytes(request, "body", "bodyBase64");
    let peer: SocketAddr = str_of(request, "peer").parse().unwrap();
    let version = match str_of(request, "protocol") {
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/1.1" => Version::HTTP_11,
        "HTTP/2.0" => Version::HTTP_2,
        other => panic!("unknown protocol {other}"),
    };
    let found = table
        .find(method.as_str(), uri.path())
        .expect("a route matches the request");
    let facts = RequestFacts {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        peer: Some(peer),
        // No listener: the forwarded proto and port are tested beside `forward_for`.
        entrance: None,
        request_id: str_of(request, "requestId"),
        version,
    };
    let at = UNIX_EPOCH + Duration::from_millis(request["timeEpoch"].as_u64().unwrap());
    build_at(&found, &facts, at)
}

/// What the client receives for a reply file's function result, in the file's shape.
fn response_for(case: &Json) -> Json {
    let outcome = match (&case["result"], &case["resultRaw"], &case["error"]) {
        (Json::Null, Json::String(raw), Json::Null) => Outcome::Response(raw.clone().into_bytes()),
        (Json::Null, Json::Null, Json::String(error)) => Outcome::platform_error(error, "failed"),
        (result, Json::Null, Json::Null) => Outcome::Response(serde_json::to_vec(result).unwrap()),
        _ => panic!("give one of `result`, `resultRaw` and `error`"),
    };
    let response = crate::reply::from_outcome(outcome, payload(case));
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value.to_str().unwrap().to_owned());
    }
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .now_or_never()
        .unwrap()
        .unwrap();
    let mut out = serde_json::json!({ "status": status, "headers": headers });
    // Written as the file writes it: text when it is text, else base64.
    let expected_base64 = case["response"]["bodyBase64"].is_string();
    match std::str::from_utf8(&body) {
        Ok(text) if !expected_base64 => out["body"] = text.into(),
        _ => {
            out["bodyBase64"] = base64::engine::general_purpose::STANDARD
                .encode(&body)
                .into()
        }
    }
    out
}

/// Where two JSON values differ, as JSON pointers.
fn differences(path: &str, expected: &Json, actual: &Json, out: &mut Vec<String>) {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => {
            for key in e.keys().chain(a.keys().filter(|k| !e.contains_key(*k))) {
                let inner = format!("{path}/{key}");
                match (e.get(key), a.get(key)) {
                    (Some(e), Some(a)) => differences(&inner, e, a, out),
                    (Some(e), None) => out.push(format!("{inner}: missing (expected {e})")),
                    (None, Some(a)) => out.push(format!("{inner}: unexpected {a}")),
                    (None, None) => {}
                }
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

fn check(kind: &str, at_least: usize, field: &str, make: fn(&Json) -> Json) {
    let cases = golden(kind);
    assert!(
        cases.len() >= at_least,
        "expected at least {at_least} golden files in tests/golden/{kind}, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for (name, case) in &cases {
        let actual = make(case);
        let mut diff = Vec::new();
        differences("", &case[field], &actual, &mut diff);
        if !diff.is_empty() {
            failures.push(format!(
                "{kind}/{name}.json:\n  {}\nthe gateway gives:\n{}",
                diff.join("\n  "),
                serde_json::to_string_pretty(&actual).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn events_match_the_golden_files() {
    check("events", 12, "event", event_for);
}

#[test]
fn replies_match_the_golden_files() {
    check("replies", 20, "response", response_for);
}
