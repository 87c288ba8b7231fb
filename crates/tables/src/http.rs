//! DynamoDB's HTTP framing (DynamoDB Streams' too): answers an operation with the JSON 1.0
//! content type, a request id and the CRC32 of the body as sent.

use axum::{
    body::Body,
    http::{HeaderValue, Response, StatusCode},
};

use crate::{api::Tables, error::ApiError};

/// The content type of every DynamoDB response.
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Runs the operation named by `target` on `body` and builds the HTTP response.
pub async fn respond(tables: &Tables, target: &str, body: &[u8]) -> Response<Body> {
    answer(target, tables.handle(target, body).await)
}

/// Runs the DynamoDB Streams operation named by `target` on `body` and builds the HTTP
/// response.
pub async fn respond_streams(tables: &Tables, target: &str, body: &[u8]) -> Response<Body> {
    answer(target, tables.handle_streams(target, body).await)
}

fn answer(target: &str, result: Result<serde_json::Value, ApiError>) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let (status, json) = match result {
        Ok(json) => (StatusCode::OK, json),
        Err(e) => {
            tracing::debug!(target, error = %e, request_id, "dynamodb request refused");
            (
                StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST),
                e.body(),
            )
        }
    };
    frame(status, &json, &request_id)
}

/// Answers an error that happened before an operation ran.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
    frame(status, &e.body(), &request_id)
}

fn frame(status: StatusCode, json: &serde_json::Value, request_id: &str) -> Response<Body> {
    let bytes = serde_json::to_vec(json).expect("serialising JSON values cannot fail");
    let crc = crc32fast::hash(&bytes);
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    headers.insert("x-amz-crc32", HeaderValue::from(crc));
    response
}
