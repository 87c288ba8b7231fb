//! The services endpoint: `/healthz` now; the AWS-compatible APIs and the admin API plug
//! in here as they are built.

use axum::{
    Json, Router,
    extract::Request,
    http::{StatusCode, header::HeaderName},
    response::{IntoResponse, Response},
    routing::get,
};
use nimbus_gateway::Health;
use serde_json::json;

pub(crate) fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(move || async move { Json(health.body()) }))
        .fallback(unknown)
}

/// AWS JSON-protocol clients name the operation in `X-Amz-Target`; they get an error in
/// their protocol's shape. Anything else gets a plain 404.
async fn unknown(request: Request) -> Response {
    static TARGET: HeaderName = HeaderName::from_static("x-amz-target");
    if let Some(target) = request.headers().get(&TARGET) {
        let target = String::from_utf8_lossy(target.as_bytes()).into_owned();
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            Json(json!({
                "__type": "com.amazon.coral.service#UnknownOperationException",
                "message": format!("Operation {target} is not supported by this version of Nimbus"),
            })),
        )
            .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "message": format!("no service at {}", request.uri().path()) })),
    )
        .into_response()
}
