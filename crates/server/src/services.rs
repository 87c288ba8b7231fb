//! The services endpoint: the AWS-compatible APIs (DynamoDB now; Lambda, streams, events
//! and queues plug in here as they are built), `/healthz`, and later the admin API.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use nimbus_gateway::Health;
use nimbus_tables::{
    api::Tables,
    error::{ApiError, ErrorKind},
};
use serde_json::json;

/// Largest request body: DynamoDB's 16 MB for batch writes.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) struct Services {
    pub(crate) tables: Arc<Tables>,
}

pub(crate) fn router(
    health: Health,
    services: Arc<Services>,
    lambda: Arc<crate::lambda::Lambda>,
) -> Router {
    let router = Router::new()
        .route("/healthz", get(move || async move { Json(health.body()) }))
        .fallback(aws)
        .with_state(services)
        .merge(crate::admin::router(&lambda))
        .merge(crate::lambda::router(lambda))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    // Without a trace exporter, requests pay nothing for traces.
    if nimbus_core::trace::enabled() {
        router.layer(axum::middleware::from_fn(crate::trace::services_span))
    } else {
        router
    }
}

/// AWS JSON-protocol requests name their operation in `X-Amz-Target`; DynamoDB's and
/// DynamoDB Streams' go to the table store, the rest get `UnknownOperationException` in
/// the same protocol's shape. Anything else gets a plain 404.
async fn aws(State(services): State<Arc<Services>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(target) = headers.get("x-amz-target") else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "no service here; AWS clients send X-Amz-Target" })),
        )
            .into_response();
    };
    let target = String::from_utf8_lossy(target.as_bytes()).into_owned();
    if target.starts_with(nimbus_tables::api::TARGET_PREFIX) {
        return nimbus_tables::http::respond(&services.tables, &target, &body).await;
    }
    if target.starts_with(nimbus_tables::api::STREAMS_TARGET_PREFIX) {
        return nimbus_tables::http::respond_streams(&services.tables, &target, &body).await;
    }
    nimbus_tables::http::error_response(&ApiError::new(
        ErrorKind::UnknownOperation,
        format!("Operation {target} is not supported by this version of Nimbus"),
    ))
}
