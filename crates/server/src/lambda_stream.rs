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
    http::{HeaderMap, HeaderValue, Response, StatusCode},
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
    let name = crate::lambda::qualified(name, query.ok());
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
    // start gives the stream's content type.
    let content_type = tokio::select! {
        part = parts.recv() => match part {
            Some(StreamPart::Start { content_type }) => Some(content_type),
            _ => None,
        },
        joined = &mut invocation => {
            match joined {
                Ok(Err(e)) => return lambda.refused(e, &name),
                Ok(Ok(result)) => {
                    return respond(&request_id, "application/json", whole(result, tail));
                }
                Err(e) => {
                    return crate::lambda::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "ServiceException",
                        &e.to_string(),
                    );
                }
            }
        }
    };
    let Some(content_type) = content_type else {
        // Closed without a start: the invocation ended without streaming.
        return match invocation.await {
            Ok(Ok(result)) => respond(&request_id, "application/json", whole(result, tail)),
            Ok(Err(e)) => lambda.refused(e, &name),
            Err(e) => crate::lambda::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &e.to_string(),
            ),
        };
    };
    let events = futures_util::stream::unfold(
        (parts, Some(invocation)),
        move |(mut parts, mut invocation)| async move {
            loop {
                match parts.recv().await {
                    Some(StreamPart::Chunk(bytes)) => {
                        return Some((Ok::<_, std::io::Error>(chunk(bytes)), (parts, invocation)));
                    }
                    Some(StreamPart::Start { .. }) => {}
                    None => break,
                }
            }
            let result = match invocation.take()?.await {
                Ok(result) => result,
                Err(e) => Err(InvokeError::Unavailable(e.to_string())),
            };
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
}
