//! The gateway's HTTP event mapping: an arbitrary request into the API Gateway event, or
//! arbitrary bytes as a function's result into the HTTP response, for payload 2.0 and
//! 1.0. No input may panic; an event carries the request's body exactly, and a result
//! that cannot be a structured response is answered by the documented fallback.
//!
//! The first byte chooses: bit 0 payload 1.0 (else 2.0), bit 1 a function result (else a
//! request). A request is written as HTTP/1 writes one: `METHOD TARGET`, then
//! `name: value` lines, an empty line and the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_gateway::fuzzing;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The head and the body of a request, split at the first empty line.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    for (at, _) in data.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        for end in [&b"\n"[..], b"\r\n"] {
            if data[at + 1..].starts_with(end) {
                return (&data[..at], &data[at + 1 + end.len()..]);
            }
        }
    }
    (data, &[])
}

fn request(v1: bool, data: &[u8]) {
    let (head, body) = split(data);
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let (method, target) = match first.iter().position(|&b| b == b' ') {
        Some(at) => (&first[..at], &first[at + 1..]),
        None => (first, &b"/"[..]),
    };
    let headers: Vec<(&[u8], &[u8])> = lines
        .map(|line| match line.iter().position(|&b| b == b':') {
            Some(at) => (&line[..at], line[at + 1..].trim_ascii_start()),
            None => (line, &[][..]),
        })
        .collect();
    let Some(event) = fuzzing::event(v1, method, target, &headers, body) else {
        return;
    };
    assert!(event.is_object());
    assert_eq!(
        fuzzing::body(&event).as_deref(),
        Some(body),
        "the event must carry the body exactly"
    );
    let method = std::str::from_utf8(method).expect("a parsed method is ASCII");
    if v1 {
        assert_eq!(event["httpMethod"], method);
        assert!(event["multiValueHeaders"].is_object());
        assert!(event["resource"].is_string());
    } else {
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["requestContext"]["http"]["method"], method);
        assert!(event["routeKey"].is_string());
        assert!(event["rawQueryString"].is_string());
    }
    // The event is what the gateway sends: it must serialise.
    let _ = event.to_string();
}

fn result(v1: bool, data: &[u8]) {
    let reply = fuzzing::reply(v1, data);
    assert!((100..=999).contains(&reply.status));
    // Without a `statusCode` key (which an escape could also spell), nothing is
    // structured: 2.0 takes valid JSON as the body of a 200, 1.0 takes nothing.
    if !contains(data, b"statusCode") && !contains(data, b"\\") {
        if v1 {
            assert_eq!(reply.status, 502);
        } else {
            assert!(reply.status == 200 || reply.status == 502, "{reply:?}");
            if reply.status == 200 {
                assert_eq!(reply.body, data);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let v1 = selector & 1 == 1;
    if selector & 2 == 2 {
        result(v1, rest);
    } else {
        request(v1, rest);
    }
});
