//! The gateway's HTTP service.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::{ConnectInfo, Request, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use nimbus_core::{AppSpec, Invoke, InvokeOptions, StreamPart};

use crate::{Health, RouteTable, RouteTableError, reply};

/// Largest request body the gateway accepts (API Gateway's 10 MB).
const MAX_BODY: usize = 10 * 1024 * 1024;

struct Gateway {
    routes: RouteTable,
    health: Health,
    invoker: Arc<dyn Invoke>,
}

/// The gateway's service for `app` (or for no app: every request is then 404, and
/// `GET /healthz` answers). Matched routes invoke their function through `invoker`.
///
/// `GET /healthz` is answered by the gateway unless one of the app's routes other than
/// `$default` matches it.
///
/// # Errors
/// When the app's routes cannot be put in one table.
pub fn router(
    app: Option<AppSpec>,
    health: Health,
    invoker: Arc<dyn Invoke>,
) -> Result<Router, RouteTableError> {
    let routes = match &app {
        Some(app) => RouteTable::new(&app.routes)?,
        None => RouteTable::default(),
    };
    let state = Arc::new(Gateway {
        routes,
        health,
        invoker,
    });
    Ok(Router::new().fallback(handle).with_state(state))
}

async fn handle(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let method = request.method().as_str();
    let path = request.uri().path();
    if *request.method() == Method::GET
        && path == "/healthz"
        && !gw.routes.matches_explicitly(method, path)
    {
        return Json(gw.health.body()).into_response();
    }
    let Some(found) = gw.routes.find(method, path) else {
        return reply::message(StatusCode::NOT_FOUND, "Not Found");
    };
    let invoker = &gw.invoker;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return reply::message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let event = crate::event::build(
        &found,
        &crate::event::RequestFacts {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: &body,
            peer,
            request_id: &request_id,
            version: parts.version,
        },
    );
    let payload = serde_json::to_vec(&event).expect("serialising JSON values cannot fail");
    let version = found.route.payload;
    let function = found.route.function.clone();
    let started = std::time::Instant::now();
    // The invocation runs on its own task so that a response the function streams can
    // be passed on while it runs; one that does not stream arrives whole at the end.
    let (stream, mut streamed) = tokio::sync::mpsc::channel(16);
    let options = InvokeOptions {
        request_id: Some(request_id.clone()),
        stream: Some(stream),
        ..InvokeOptions::default()
    };
    let invocation = {
        let (invoker, function) = (Arc::clone(invoker), function.clone());
        tokio::spawn(async move { invoker.invoke(&function, payload, options).await })
    };
    let response = match streamed.recv().await {
        Some(StreamPart::Start { content_type }) => {
            crate::stream::respond(content_type, streamed, invocation).await
        }
        // The channel closed without a start: the function did not stream.
        _ => match invocation.await {
            Ok(Ok(result)) => reply::from_outcome(result.outcome, version),
            Ok(Err(e)) => {
                tracing::warn!(function = %function, error = %e, "invocation refused");
                reply::from_invoke_error(&e)
            }
            Err(e) => {
                tracing::error!(function = %function, error = %e, "the invocation task failed");
                reply::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        },
    };
    tracing::info!(
        target: "access",
        request_id = %request_id,
        method = %parts.method,
        path = %parts.uri.path(),
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        function = %function,
        "request"
    );
    response
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

    /// An invoker for an app without functions.
    struct NoFunctions;

    impl Invoke for NoFunctions {
        fn invoke(
            &self,
            function: &str,
            _: Vec<u8>,
            _: InvokeOptions,
        ) -> nimbus_core::BoxFuture<'_, Result<nimbus_core::InvokeResult, nimbus_core::InvokeError>>
        {
            let function = function.to_owned();
            Box::pin(async move { Err(nimbus_core::InvokeError::NotFound(function)) })
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
        let router = router(None, health(), Arc::new(NoFunctions)).unwrap();
        let (status, body) = call(router.clone(), "GET", "/users").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, serde_json::json!({ "message": "Not Found" }));
        let (status, body) = call(router, "GET", "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
    }
}
