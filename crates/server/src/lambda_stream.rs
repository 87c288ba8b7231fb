//! Lambda's `InvokeWithResponseStream` (`POST /2021-11-15/functions/{name}/response-streaming-invocations`):
//! the function's response as an event stream (`application/vnd.amazon.eventstream`
//! framing) of `PayloadChunk` events as the function writes them, then one
//! `InvokeComplete` event (`ErrorCode`, `ErrorDetails`, `LogResult`), so that boto3's
//! `invoke_with_response_stream` and the AWS CLI read it.
//!
//! A function that does not stream answers in one `PayloadChunk`.

use std::sync::Arc;

use aws_smithy_types::event_stream::{Header, HeaderValue as EventHeader, Message};
use axum::{
    body::{Body, Bytes},
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, Response},
};
use base64::Engine as _;
use nimbus_core::{InvokeError, InvokeResult, Outcome, StreamPart};
use serde_json::json;
use tokio::sync::mpsc;

use crate::lambda::{Lambda, Prepared};

/// One event of the stream, framed.
fn event(event_type: &'static str, content_type: &'static str, payload: Vec<u8>) -> Bytes {
    let message = Message::new(payload)
        .add_header(Header::new(
            ":event-type",
            EventHeader::String(event_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            EventHeader::String(content_type.into()),
        ))
        .add_header(Header::new(
            ":message-type",
            EventHeader::String("event".into()),
        ));
    let mut framed = Vec::new();
    // Framing fails only for headers or payloads beyond the format's limits (16 MB per
    // message); chunks come from a 20 MB stream in far smaller writes.
    if let Err(e) = aws_smithy_eventstream::frame::write_message_to(&message, &mut framed) {
        tracing::error!(error = %e, "cannot frame an event-stream message");
    }
    Bytes::from(framed)
}

fn chunk(bytes: Vec<u8>) -> Bytes {
    event("PayloadChunk", "application/octet-stream", bytes)
}

/// The `InvokeComplete` event closing the stream.
fn complete(result: &Result<InvokeResult, InvokeError>, tail: bool) -> Bytes {
    let mut body = serde_json::Map::new();
    match result {
        Ok(InvokeResult {
            outcome:
                Outcome::Error {
                    error_type,
                    payload,
                    ..
                },
            ..
        }) => {
            body.insert("ErrorCode".into(), json!(error_type));
            body.insert(
                "ErrorDetails".into(),
                json!(String::from_utf8_lossy(payload)),
            );
        }
        Ok(_) => {}
        Err(e) => {
            body.insert("ErrorCode".into(), json!("ServiceException"));
            body.insert("ErrorDetails".into(), json!(e.to_string()));
        }
    }
    if tail && let Ok(result) = result {
        let log = result.log_tail.as_bytes();
        let log = &log[log.len().saturating_sub(crate::lambda::LOG_TAIL)..];
        body.insert(
            "LogResult".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(log)),
        );
    }
    event(
        "InvokeComplete",
        "application/json",
        serde_json::Value::Object(body).to_string().into_bytes(),
    )
}

pub(crate) async fn invoke_with_response_stream(
    State(lambda): State<Arc<Lambda>>,
    Path(name): Path<String>,
    query: Result<Query<crate::lambda::QualifierQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    let name = match crate::lambda::qualified(name, query) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let body = match crate::lambda::read_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Prepared {
        function,
        payload,
        mut options,
        tail,
    } = match lambda.prepare(&name, &headers, body) {
        Ok(prepared) => prepared,
        Err(response) => return *response,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    options.request_id = Some(request_id.clone());
    let (stream, mut parts) = mpsc::channel(16);
    options.stream = Some(stream);
    let mut invocation = {
        let invoker = Arc::clone(&lambda.invoker);
        tokio::spawn(async move { invoker.invoke(&function, payload, options).await })
    };
    // The headers wait for the function's first move: a refusal is an error answer, a
    // start gives the stream's content type. A function that streams a short response
    // may have ended by the time this looks, its parts queued: they come first (`biased`),
    // and those queued in the instant between the two polls are still read (the sender
    // went with the finished task, so none is still to come), or the body would be lost.
    let mut ended = None;
    let first = tokio::select! {
        biased;
        part = parts.recv() => part,
        joined = &mut invocation => {
            ended = Some(joined);
            parts.try_recv().ok()
        }
    };
    let ended = Box::pin(async move {
        let joined = match ended {
            Some(joined) => joined,
            None => invocation.await,
        };
        joined.unwrap_or_else(|e| Err(InvokeError::Unavailable(e.to_string())))
    });
    let Some(StreamPart::Start { content_type }) = first else {
        // No start: the invocation was refused, or ended without streaming.
        return match ended.await {
            Ok(result) => respond(&request_id, "application/json", whole(result, tail)),
            Err(e) => lambda.refused(e, &name),
        };
    };
    let events = futures_util::stream::unfold(
        (parts, Some(ended)),
        move |(mut parts, mut ended)| async move {
            loop {
                match parts.recv().await {
                    Some(StreamPart::Chunk(bytes)) => {
                        return Some((Ok::<_, std::io::Error>(chunk(bytes)), (parts, ended)));
                    }
                    Some(StreamPart::Start { .. }) => {}
                    None => break,
                }
            }
            let result = ended.take()?.await;
            Some((Ok(complete(&result, tail)), (parts, None)))
        },
    );
    respond(&request_id, &content_type, Body::from_stream(events))
}

/// A whole (not streamed) result as one chunk and the completion.
fn whole(result: InvokeResult, tail: bool) -> Body {
    let mut bytes = Vec::new();
    let payload = match &result.outcome {
        Outcome::Response(payload) => payload.clone(),
        // Only the gateway's HTTP requests are answered so; a success all the same.
        Outcome::Http(response) => response.structured_result(),
        Outcome::Error { .. } => Vec::new(),
    };
    if !payload.is_empty() {
        bytes.extend_from_slice(&chunk(payload));
    }
    bytes.extend_from_slice(&complete(&Ok(result), tail));
    Body::from(bytes)
}

fn respond(request_id: &str, content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert("content-type", v);
    }
    headers.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn events_are_framed_as_aws_event_streams() {
        let framed = chunk(b"hello".to_vec());
        let message = aws_smithy_eventstream::frame::read_message_from(framed.clone()).unwrap();
        assert_eq!(message.payload().as_ref(), b"hello");
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        assert_eq!(header(":event-type").as_deref(), Some("PayloadChunk"));
        assert_eq!(header(":message-type").as_deref(), Some("event"));
        // Prelude: total length, then headers' length, big-endian.
        assert_eq!(
            u32::from_be_bytes(framed[..4].try_into().unwrap()) as usize,
            framed.len()
        );
    }

    /// The event-stream messages of a body, as (event type, payload).
    fn events(mut body: Bytes) -> Vec<(String, Vec<u8>)> {
        let mut events = Vec::new();
        while !body.is_empty() {
            let message = aws_smithy_eventstream::frame::read_message_from(&mut body).unwrap();
            let kind = message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == ":event-type")
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            events.push((kind, message.payload().to_vec()));
        }
        events
    }

    #[tokio::test]
    async fn a_short_streamed_response_always_arrives() {
        // The function streams its whole response and ends at once: its parts are queued
        // by the time the handler looks, next to the finished invocation.
        let (router, _fake, _dir) = crate::lambda::tests::api(&["orders"], |options| {
            Box::pin(async move {
                let stream = options.stream.expect("the handler streams");
                let start = StreamPart::Start {
                    content_type: "text/plain".to_owned(),
                };
                stream.send(start).await.unwrap();
                stream
                    .send(StreamPart::Chunk(b"hi".to_vec()))
                    .await
                    .unwrap();
                crate::lambda::tests::answered(b"")
            })
        });
        for round in 0..32 {
            let answer = crate::lambda::tests::send(
                &router,
                "POST",
                "/2021-11-15/functions/orders/response-streaming-invocations",
                &[],
                "{}",
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "round {round}");
            assert_eq!(
                answer.header("content-type"),
                Some("text/plain"),
                "round {round}"
            );
            assert_eq!(
                events(answer.body),
                [
                    ("PayloadChunk".to_owned(), b"hi".to_vec()),
                    ("InvokeComplete".to_owned(), b"{}".to_vec()),
                ],
                "round {round}"
            );
        }
    }
}
