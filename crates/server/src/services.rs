//! The services endpoint: the AWS-compatible APIs (DynamoDB now; Lambda, streams, events
//! and queues plug in here as they are built), `/healthz`, and the admin API; `access`
//! decides who may call them.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, Method, StatusCode, Uri},
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
/// the same protocol's shape. A path of a dated REST API (Lambda's `/2015-03-31/...`,
/// `/2019-09-25/...`) that no route serves gets `UnknownOperationException` in Lambda's
/// shape. Anything else gets a plain 404.
async fn aws(
    State(services): State<Arc<Services>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if is_rest_api_path(uri.path()) && !headers.contains_key("x-amz-target") {
        return crate::lambda::unknown_operation(&method, uri.path());
    }
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

/// Whether `path` is under an AWS REST API's version date, `/YYYY-MM-DD/`.
pub(crate) fn is_rest_api_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.len() > 12
        && bytes[0] == b'/'
        && bytes[11] == b'/'
        && bytes[1..11].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::is_rest_api_path;

    #[test]
    fn rest_api_paths_start_with_a_version_date() {
        for path in [
            "/2015-03-31/event-source-mappings/",
            "/2019-09-25/functions/f/event-invoke-config",
            "/2014-11-13/functions/f/invoke-async/",
        ] {
            assert!(is_rest_api_path(path), "{path}");
        }
        for path in [
            "/",
            "/healthz",
            "/2015-03-31",
            "/2015-3-31/x",
            "/nimbus/v1/functions",
        ] {
            assert!(!is_rest_api_path(path), "{path}");
        }
    }
}
