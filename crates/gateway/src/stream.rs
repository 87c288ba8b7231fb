//! Responses a function streams (Lambda response streaming), passed on to the client as
//! they come, as Lambda function URLs and API Gateway's streamed responses do.
//!
//! A function that streams with content type
//! `application/vnd.awslambda.http-integration-response` first writes a JSON prelude
//! (`statusCode`, `headers`, `cookies`), then eight NUL bytes, then the body; any other
//! content type is a 200 whose body is the stream. An error after the response started
//! cannot change its status: the body is cut off (the connection is reset rather than
//! ended cleanly), as on Lambda.

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode},
};
use nimbus_core::{InvokeError, InvokeResult, Outcome, StreamPart};
use serde_json::Value as Json;
use tokio::{sync::mpsc, task::JoinHandle};

/// The content type of a streamed HTTP response with a prelude.
pub(crate) const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// What separates the prelude from the body.
const DELIMITER: [u8; 8] = [0; 8];
/// Longest prelude accepted.
const MAX_PRELUDE: usize = 64 * 1024;

type Invocation = JoinHandle<Result<InvokeResult, InvokeError>>;

/// The status and headers a prelude sets; `None` when it is not a JSON object.
fn prelude(bytes: &[u8]) -> Option<(StatusCode, Vec<(HeaderName, HeaderValue)>)> {
    let Json::Object(prelude) = serde_json::from_slice(bytes).ok()? else {
        return None;
    };
    let status = match prelude.get("statusCode") {
        None => StatusCode::OK,
        Some(code) => StatusCode::from_u16(u16::try_from(code.as_u64()?).ok()?).ok()?,
    };
    let mut headers = Vec::new();
    if let Some(Json::Object(h)) = prelude.get("headers") {
        for (name, value) in h {
            let value = match value {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value),
            ) {
                headers.push((n, v));
            }
        }
    }
    if let Some(Json::Array(cookies)) = prelude.get("cookies") {
        for cookie in cookies.iter().filter_map(Json::as_str) {
            if let Ok(v) = HeaderValue::try_from(cookie) {
                headers.push((axum::http::header::SET_COOKIE, v));
            }
        }
    }
    Some((status, headers))
}

/// The client's response for a stream that started with `content_type`: reads the
/// prelude if there is one, then streams the rest of `parts`; once they end, an error
/// outcome of `invocation` cuts the body off.
pub(crate) async fn respond(
    content_type: String,
    mut parts: mpsc::Receiver<StreamPart>,
    invocation: Invocation,
) -> Response<Body> {
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    let mut first = Vec::new();
    if content_type.eq_ignore_ascii_case(HTTP_INTEGRATION) {
        let mut buffered = Vec::new();
        // Where the search for the delimiter resumes: only new bytes, and the seven
        // before them that a delimiter split across chunks may begin in, are looked at
        // (a prelude sent a byte at a time would otherwise be scanned anew each time).
        let mut searched = 0;
        let split = loop {
            if let Some(at) = buffered[searched..]
                .windows(DELIMITER.len())
                .position(|w| w == DELIMITER)
            {
                break Some(searched + at);
            }
            searched = buffered.len().saturating_sub(DELIMITER.len() - 1);
            if buffered.len() > MAX_PRELUDE {
                break None;
            }
            match parts.recv().await {
                Some(StreamPart::Chunk(chunk)) => buffered.extend_from_slice(&chunk),
                Some(StreamPart::Start { .. }) => {}
                None => break None,
            }
        };
        let parsed = split.and_then(|at| Some((at, prelude(&buffered[..at])?)));
        let Some((at, (s, h))) = parsed else {
            // No valid prelude: as API Gateway answers a malformed integration response.
            tracing::warn!("a streamed HTTP response had no valid prelude");
            return crate::reply::message(StatusCode::BAD_GATEWAY, "Internal Server Error");
        };
        status = s;
        headers = h;
        first = buffered.split_off(at + DELIMITER.len());
    } else if let Ok(v) = HeaderValue::try_from(content_type) {
        headers.push((axum::http::header::CONTENT_TYPE, v));
    }
    let mut head = HeaderMap::new();
    for (name, value) in headers {
        if head.try_append(name, value).is_err() || head.keys_len() > crate::reply::MAX_HEADER_NAMES
        {
            // More header names than a response can hold (the http crate's limit).
            tracing::warn!("a streamed HTTP response's prelude has too many headers");
            return crate::reply::message(StatusCode::BAD_GATEWAY, "Internal Server Error");
        }
    }
    let body = futures_util::stream::unfold(
        (Some(first), parts, Some(invocation)),
        |(mut first, mut parts, mut invocation)| async move {
            if let Some(bytes) = first.take()
                && !bytes.is_empty()
            {
                return Some((Ok(Bytes::from(bytes)), (None, parts, invocation)));
            }
            loop {
                match parts.recv().await {
                    Some(StreamPart::Chunk(chunk)) => {
                        return Some((Ok(Bytes::from(chunk)), (None, parts, invocation)));
                    }
                    Some(StreamPart::Start { .. }) => {}
                    None => break,
                }
            }
            let failed = match invocation.take()?.await {
                Ok(Ok(InvokeResult {
                    outcome: Outcome::Response(_) | Outcome::Http(_),
                    ..
                })) => None,
                Ok(Ok(InvokeResult {
                    outcome: Outcome::Error { error_type, .. },
                    ..
                })) => Some(error_type),
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            }?;
            tracing::warn!(error = %failed, "a streamed response failed after it started");
            Some((
                Err(std::io::Error::other(format!(
                    "the function failed mid-stream: {failed}"
                ))),
                (None, parts, None),
            ))
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = head;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preludes_set_status_headers_and_cookies() {
        let (status, headers) =
            prelude(br#"{"statusCode":201,"headers":{"x-a":"1","x-n":2},"cookies":["a=1","b=2"]}"#)
                .unwrap();
        assert_eq!(status, StatusCode::CREATED);
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("x-a", "1"),
                ("x-n", "2"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(prelude(b"{}").unwrap().0, StatusCode::OK);
        assert!(prelude(b"[1]").is_none());
        assert!(prelude(br#"{"statusCode":99999}"#).is_none());
    }

    async fn body_of(response: Response<Body>) -> Result<Vec<u8>, String> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    fn finished(outcome: Outcome) -> Invocation {
        tokio::spawn(async move {
            Ok(InvokeResult {
                request_id: "r".to_owned(),
                outcome,
                log_tail: String::new(),
            })
        })
    }

    #[tokio::test]
    async fn an_http_stream_splits_its_prelude_across_chunks() {
        let (tx, rx) = mpsc::channel(8);
        for chunk in [
            &br#"{"statusCode":418,"head"#[..],
            br#"ers":{"content-type":"text/plain"}}"#,
            b"\0\0\0\0",
            b"\0\0\0\0hel",
            b"lo",
        ] {
            tx.send(StreamPart::Chunk(chunk.to_vec())).await.unwrap();
        }
        drop(tx);
        let response = respond(
            HTTP_INTEGRATION.to_owned(),
            rx,
            finished(Outcome::Response(Vec::new())),
        )
        .await;
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(body_of(response).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_prelude_sent_a_byte_at_a_time_is_found() {
        let (tx, rx) = mpsc::channel(8);
        let sender = tokio::spawn(async move {
            let whole = [&br#"{"statusCode":201}"#[..], &[0; 8], b"\0body"].concat();
            for byte in whole {
                tx.send(StreamPart::Chunk(vec![byte])).await.unwrap();
            }
        });
        let response = respond(
            HTTP_INTEGRATION.to_owned(),
            rx,
            finished(Outcome::Response(Vec::new())),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        // The delimiter is the first eight NULs; a ninth belongs to the body.
        assert_eq!(body_of(response).await.unwrap(), b"\0body");
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn a_prelude_with_too_many_headers_is_a_502() {
        let names: Vec<String> = (0..30_000).map(|n| format!("\"x-{n}\":\"v\"")).collect();
        let prelude = format!(r#"{{"headers":{{{}}}}}"#, names.join(","));
        let (tx, rx) = mpsc::channel(8);
        for chunk in [prelude.into_bytes(), vec![0; 8], b"body".to_vec()] {
            tx.send(StreamPart::Chunk(chunk)).await.unwrap();
        }
        drop(tx);
        let response = respond(
            HTTP_INTEGRATION.to_owned(),
            rx,
            finished(Outcome::Response(Vec::new())),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn a_failure_after_the_start_cuts_the_body_off() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(StreamPart::Chunk(b"partial".to_vec()))
            .await
            .unwrap();
        drop(tx);
        let response = respond(
            "text/plain".to_owned(),
            rx,
            finished(Outcome::platform_error("Error", "boom")),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(body_of(response).await.is_err());
    }

    #[tokio::test]
    async fn a_missing_prelude_is_a_502() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(StreamPart::Chunk(b"no prelude".to_vec()))
            .await
            .unwrap();
        drop(tx);
        let response = respond(
            HTTP_INTEGRATION.to_owned(),
            rx,
            finished(Outcome::Response(Vec::new())),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }
}
