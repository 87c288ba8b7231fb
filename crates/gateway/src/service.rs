//! The gateway's HTTP service.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use nimbus_core::AppSpec;
use serde_json::json;

use crate::{Health, RouteTable, RouteTableError};

struct Gateway {
    app: Option<AppSpec>,
    routes: RouteTable,
    health: Health,
}

/// The gateway's service for `app` (or for no app: every request is then 404, and
/// `GET /healthz` answers).
///
/// `GET /healthz` is answered by the gateway unless one of the app's routes other than
/// `$default` matches it.
///
/// # Errors
/// When the app's routes cannot be put in one table.
pub fn router(app: Option<AppSpec>, health: Health) -> Result<Router, RouteTableError> {
    let routes = match &app {
        Some(app) => RouteTable::new(&app.routes)?,
        None => RouteTable::default(),
    };
    let state = Arc::new(Gateway {
        app,
        routes,
        health,
    });
    Ok(Router::new().fallback(handle).with_state(state))
}

async fn handle(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let method = request.method().as_str();
    let path = request.uri().path();
    if *request.method() == Method::GET
        && path == "/healthz"
        && !gw.routes.matches_explicitly(method, path)
    {
        return Json(gw.health.body()).into_response();
    }
    let Some(found) = gw.routes.find(method, path) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "Not Found" })),
        )
            .into_response();
    };
    let runtime = gw
        .app
        .as_ref()
        .and_then(|app| app.functions.get(&found.route.function))
        .map_or("unknown", |f| f.runtime.kind.as_str());
    tracing::warn!(
        route = %found.route.key,
        function = %found.route.function,
        runtime,
        "route matched, but this build cannot run its function yet"
    );
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(json!({
            "message": format!(
                "Not Implemented: route {} invokes function {} ({runtime}), and this version of Nimbus cannot run {runtime} functions yet",
                found.route.key, found.route.function
            )
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn health() -> Health {
        Health {
            app: Some("t".into()),
            version: "0",
        }
    }

    async fn call(router: Router, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn unmatched_is_api_gateway_404_and_healthz_answers() {
        let router = router(None, health()).unwrap();
        let (status, body) = call(router.clone(), "GET", "/users").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({ "message": "Not Found" }));
        let (status, body) = call(router, "GET", "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
    }
}
