//! The gateway's HTTP service: CORS preflights, routing, rate limits, authorization,
//! the function's invocation and its response, each answer carrying the request id.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    Json, Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderName, HeaderValue, Method, Response, StatusCode},
    response::IntoResponse,
};
use nimbus_core::{
    AppSpec, Invoke, InvokeOptions, PayloadVersion, RouteAuth, RouteKey, RuntimeKind, StreamPart,
    invoke_to_end,
};
use serde_json::{Value as Json_, json};

use crate::{
    Entrance, Health, Match, RouteTable, RouteTableError,
    cors::Cors,
    jwt::JwtAuthorizer,
    reply,
    security::{self, ApiKeys, LambdaAuthorizers, Refusal, SecurityError},
};

/// Largest request body the gateway accepts (API Gateway's 10 MB).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// The largest event a function gets: Lambda's 6 MB request limit. A request whose event
/// would be larger gets 413, as API Gateway answers when Lambda refuses the invocation.
/// (A wasm component gets the HTTP request itself, up to [`MAX_BODY`].)
const MAX_EVENT: usize = 6 * 1024 * 1024;

fn too_large() -> Response<Body> {
    reply::message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
}

/// Why the gateway cannot serve an app.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The routes cannot be put in one table.
    #[error(transparent)]
    Routes(#[from] RouteTableError),
    /// The API keys cannot be read.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The JWT authorizer's keys cannot be loaded.
    #[error("the JWT authorizer cannot start: {0}")]
    Jwt(String),
}

struct Gateway {
    routes: RouteTable,
    health: Health,
    invoker: Arc<dyn Invoke>,
    jwt: Option<JwtAuthorizer>,
    api_keys: Option<ApiKeys>,
    authorizers: LambdaAuthorizers,
    /// Token buckets of rate-limited routes, by route key.
    route_limits: HashMap<String, governor::DefaultDirectRateLimiter>,
    cors: Option<Cors>,
    /// The functions that are wasm components: they serve HTTP, and get the request as
    /// it came rather than an API Gateway event.
    wasm: HashSet<String>,
}

impl Gateway {
    async fn new(
        app: Option<AppSpec>,
        health: Health,
        invoker: Arc<dyn Invoke>,
    ) -> Result<Gateway, GatewayError> {
        let app = app.unwrap_or_else(|| AppSpec::named("none"));
        let jwt = match &app.auth.jwt {
            Some(spec) => Some(
                JwtAuthorizer::new(spec)
                    .await
                    .map_err(|e| GatewayError::Jwt(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Gateway {
            routes: RouteTable::new(&app.routes)?,
            health,
            invoker,
            jwt,
            api_keys: app.auth.api_key.as_ref().map(ApiKeys::new).transpose()?,
            authorizers: LambdaAuthorizers::new(app.auth.lambda.values()),
            route_limits: app
                .routes
                .iter()
                .filter_map(|r| Some((r.key.to_string(), security::limiter(r.rate_limit?))))
                .collect(),
            cors: app.cors.clone().map(Cors::new),
            wasm: app
                .functions
                .values()
                .filter(|f| f.runtime.kind == RuntimeKind::Wasm)
                .map(|f| f.name.clone())
                .collect(),
        })
    }
}

/// The gateway as it serves now; a reload swaps it whole, and requests in flight keep
/// the one they started with.
type Current = Arc<RwLock<Arc<Gateway>>>;

/// Swaps the app a running gateway serves: routes, authorizers, API keys, rate limits
/// and CORS take effect for requests that arrive after the swap; requests in flight
/// finish as they started. Rate-limit buckets and quota counts start afresh.
#[derive(Clone)]
pub struct Reloader {
    current: Current,
    health: Health,
    invoker: Arc<dyn Invoke>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// Serves `app` from now on.
    ///
    /// # Errors
    /// As [`router`]; the gateway then keeps serving the app it had.
    pub async fn reload(&self, app: AppSpec) -> Result<(), GatewayError> {
        let gateway =
            Gateway::new(Some(app), self.health.clone(), Arc::clone(&self.invoker)).await?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(gateway);
        Ok(())
    }
}

/// The gateway's service for `app` (or for no app: every request is then 404, and
/// `GET /healthz` answers), and the handle that reloads it. Matched routes invoke their
/// function through `invoker`.
///
/// `GET /healthz` is answered by the gateway unless one of the app's routes other than
/// `$default` matches it.
///
/// # Errors
/// When the app's routes cannot be put in one table, an API key's variable is unset, or
/// the JWT authorizer's keys cannot be loaded.
pub async fn router(
    app: Option<AppSpec>,
    health: Health,
    invoker: Arc<dyn Invoke>,
) -> Result<(Router, Reloader), GatewayError> {
    let gateway = Gateway::new(app, health.clone(), Arc::clone(&invoker)).await?;
    let current: Current = Arc::new(RwLock::new(Arc::new(gateway)));
    let reloader = Reloader {
        current: Arc::clone(&current),
        health,
        invoker,
    };
    Ok((Router::new().fallback(handle).with_state(current), reloader))
}

/// API Gateway's header naming the request's id, on every answer; a constant, so that it
/// is not parsed again for each.
const APIGW_REQUEST_ID: HeaderName = HeaderName::from_static("apigw-requestid");

/// What the route's authorization established, for `requestContext.authorizer`.
enum Authorized {
    Nobody,
    Jwt(Json_),
    /// The key's name (its id) and its value.
    ApiKey(String, String),
    Lambda(Json_),
}

async fn handle(State(current): State<Current>, request: Request) -> Response<Body> {
    let gw = Arc::clone(
        &current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let incoming = crate::trace::incoming(request.headers());
    // The route is matched once, here: the span is named after it, and it is served.
    let found = gw
        .routes
        .find(request.method().as_str(), request.uri().path());
    let mut span = crate::trace::request_span(
        request.method(),
        request.uri().path(),
        found.as_ref(),
        &request_id,
        incoming,
    );
    let method = crate::route_metrics::method_label(request.method());
    let preflight = gw
        .cors
        .as_ref()
        .and_then(|c| c.preflight(request.method(), request.headers()));
    let (mut response, route, function, integration) = match preflight {
        Some(answer) => (answer, None, None, None),
        None => {
            let cors_headers = gw.cors.as_ref().map(|_| request.headers().clone());
            // Boxed: axum moves the handler's future whole several times before it runs,
            // and the request's path makes it large.
            let mut served = span
                .in_scope(Box::pin(serve(&gw, request, found, &request_id, incoming)))
                .await;
            if let (Some(cors), Some(headers)) = (&gw.cors, &cors_headers) {
                cors.decorate(headers, &mut served.0);
            }
            served
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(APIGW_REQUEST_ID, v);
    }
    let elapsed = started.elapsed();
    tracing::info!(
        target: "access",
        request_id = %request_id,
        route = route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        integration_ms = integration.map(|d| d.as_secs_f64() * 1000.0),
        function = function.unwrap_or("-"),
        "request"
    );
    crate::trace::finish(&mut span, function, response.status());
    crate::route_metrics::record(route, method, response.status(), elapsed);
    response
}

/// Serves one request; also returns, for the access log, the route key and function
/// matched and how long the function took.
async fn serve<'g>(
    gw: &'g Gateway,
    request: Request,
    found: Option<Match<'g>>,
    request_id: &str,
    incoming: Option<nimbus_core::trace::TraceContext>,
) -> (
    Response<Body>,
    Option<Arc<str>>,
    Option<&'g str>,
    Option<std::time::Duration>,
) {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let entrance = request.extensions().get::<Entrance>().copied();
    // `/healthz` answers unless a route other than `$default` claims it.
    if *request.method() == Method::GET
        && request.uri().path() == "/healthz"
        && found
            .as_ref()
            .is_none_or(|m| m.route.key == RouteKey::Default)
    {
        return (Json(gw.health.body()).into_response(), None, None, None);
    }
    let Some(found) = found else {
        return (
            reply::message(StatusCode::NOT_FOUND, "Not Found"),
            None,
            None,
            None,
        );
    };
    let route_key = found.key;
    let function = found.route.function.as_str();
    let done =
        |response: Response<Body>| (response, Some(Arc::clone(route_key)), Some(function), None);
    if let Some(limiter) = gw.route_limits.get(&**route_key)
        && let Err(refusal) = security::take(limiter)
    {
        return done(refusal.response());
    }
    let (parts, body) = request.into_parts();
    let authorized = match authorize_before_body(gw, &found, &parts.headers).await {
        Ok(a) => a,
        Err(refusal) => return done(refusal.response()),
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return done(unreadable_body(&e)),
    };
    let facts = crate::event::RequestFacts {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
        peer,
        entrance,
        request_id,
        version: parts.version,
    };
    let (payload, http_request) = if gw.wasm.contains(function) {
        // A component serves HTTP: it gets the request as it came, whatever the route's
        // payload version (the event made no difference to the request it saw). A Lambda
        // authorizer still gets its event; what it or a JWT establishes has no place in
        // a plain HTTP request.
        if let RouteAuth::Lambda { authorizer } = &found.route.auth {
            let v2_event = authorizer_event(&found, &facts, None);
            if let Err(refusal) =
                Box::pin(gw.authorizers.authorize(authorizer, &gw.invoker, v2_event)).await
            {
                return done(refusal.response());
            }
        }
        let mut raw = axum::http::Request::new(body);
        *raw.method_mut() = parts.method;
        *raw.uri_mut() = parts.uri;
        *raw.version_mut() = parts.version;
        *raw.headers_mut() = parts.headers;
        crate::event::forward_for(raw.headers_mut(), peer, entrance);
        (Vec::new(), Some(raw))
    } else {
        // The event is larger than the body (escaped, or base64 for binary bodies).
        if body.len() > MAX_EVENT {
            return done(too_large());
        }
        let mut event = crate::event::build(&found, &facts);
        let authorized = match (&found.route.auth, authorized) {
            (RouteAuth::Lambda { authorizer }, _) => {
                let v2_event = authorizer_event(&found, &facts, Some(&event));
                match Box::pin(gw.authorizers.authorize(authorizer, &gw.invoker, v2_event)).await {
                    Ok(context) => Authorized::Lambda(context),
                    Err(refusal) => return done(refusal.response()),
                }
            }
            (_, authorized) => authorized,
        };
        put_authorizer(&mut event, found.route.payload, authorized);
        let payload = serde_json::to_vec(&event).expect("serialising JSON values cannot fail");
        if payload.len() > MAX_EVENT {
            return done(too_large());
        }
        (payload, None)
    };
    let version = found.route.payload;
    let invoked = Instant::now();
    let finish = |response: Response<Body>| {
        (
            response,
            Some(Arc::clone(route_key)),
            Some(function),
            Some(invoked.elapsed()),
        )
    };
    // The invocation runs inline; only a function that starts streaming moves it to a task
    // of its own, so that its response can be passed on while it runs. (A task per request
    // would cost a cross-thread wake-up on an idle runtime.) A component answers HTTP
    // itself and never streams through the channel, so it gets none.
    //
    // The futures of the rarer paths (a Lambda authorizer above, a streamed response below)
    // are boxed: a request's future is as large as its largest path, and it is moved whole
    // several times on its way to the runtime (axum boxes it), so every request would pay
    // for them.
    let answers_http = http_request.is_some();
    let mut options = InvokeOptions {
        request_id: Some(request_id.to_owned()),
        // Passed on as it came when nothing is traced here; the dispatcher otherwise
        // hands the function its own span's context.
        trace_id: incoming.map(|cx| cx.xray()),
        request: http_request,
        ..InvokeOptions::default()
    };
    // Either way the invocation runs to its end if the client goes away.
    if answers_http {
        let invoked = invoke_to_end(&gw.invoker, function, payload, options).await;
        return finish(answer(invoked, function, version));
    }
    let (stream, mut streamed) = tokio::sync::mpsc::channel(16);
    options.stream = Some(stream);
    let mut invocation = invoke_to_end(&gw.invoker, function, payload, options);
    let first = tokio::select! {
        biased;
        part = streamed.recv() => Ok(part),
        result = &mut invocation => Err(result),
    };
    let whole = match first {
        Ok(Some(StreamPart::Start { content_type })) => {
            let task = tokio::spawn(invocation);
            return finish(Box::pin(crate::stream::respond(content_type, streamed, task)).await);
        }
        // The channel closed without a start: the function did not stream.
        Ok(_) => invocation.await,
        // It may have started a stream just before it finished.
        Err(result) => match streamed.try_recv() {
            Ok(StreamPart::Start { content_type }) => {
                let task = tokio::spawn(async move { result });
                return finish(
                    Box::pin(crate::stream::respond(content_type, streamed, task)).await,
                );
            }
            _ => result,
        },
    };
    finish(answer(whole, function, version))
}

/// The response to a whole (not streamed) invocation, or to its refusal.
fn answer(
    invoked: Result<nimbus_core::InvokeResult, nimbus_core::InvokeError>,
    function: &str,
    version: PayloadVersion,
) -> Response<Body> {
    match invoked {
        Ok(result) => reply::from_outcome(result.outcome, version),
        Err(e) => {
            tracing::warn!(function = %function, error = %e, "invocation refused");
            reply::from_invoke_error(&e, version)
        }
    }
}

/// The payload 2.0 event a Lambda authorizer gets for the request: the route's own
/// `event` when it is one, else built afresh.
fn authorizer_event(
    found: &Match<'_>,
    facts: &crate::event::RequestFacts<'_>,
    event: Option<&Json_>,
) -> Json_ {
    match event {
        Some(event) if found.route.payload == PayloadVersion::V2 => event.clone(),
        _ => {
            let mut as_v2 = found.route.clone();
            as_v2.payload = PayloadVersion::V2;
            let m = Match {
                route: &as_v2,
                key: found.key,
                params: found.params.clone(),
            };
            crate::event::build(&m, facts)
        }
    }
}

/// The answer to a request whose body could not be read: 413 above [`MAX_BODY`], 408
/// when it did not come within the listener's body read timeout (an I/O error of kind
/// `TimedOut`), else 400 (a malformed or broken-off body). The 408 and the 400 close the
/// connection: what is left of such a body cannot be told from a next request.
fn unreadable_body(e: &axum::Error) -> Response<Body> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut timed_out = false;
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return too_large();
        }
        timed_out |= error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        source = error.source();
    }
    let mut response = if timed_out {
        reply::message(StatusCode::REQUEST_TIMEOUT, "Request Timeout")
    } else {
        reply::message(StatusCode::BAD_REQUEST, "Bad Request")
    };
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// The checks that need only the headers: JWT and API keys.
async fn authorize_before_body(
    gw: &Gateway,
    found: &Match<'_>,
    headers: &axum::http::HeaderMap,
) -> Result<Authorized, Refusal> {
    match &found.route.auth {
        RouteAuth::None | RouteAuth::Lambda { .. } => Ok(Authorized::Nobody),
        RouteAuth::Jwt { scopes } => {
            let jwt = gw.jwt.as_ref().ok_or(Refusal::UNAUTHORIZED)?;
            let header = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match jwt.verify(header, scopes).await {
                Ok(token) => Ok(Authorized::Jwt(token.authorizer_context())),
                // A valid token without the route's scopes is forbidden, not unauthorized.
                Err(why) => {
                    tracing::debug!(reason = why.reason(), "JWT refused");
                    Err(Refusal::bearer(
                        why.is_insufficient_scope(),
                        scopes,
                        why.public(),
                    ))
                }
            }
        }
        RouteAuth::ApiKey => {
            let keys = gw.api_keys.as_ref().ok_or(Refusal::FORBIDDEN)?;
            keys.admit(headers)
                .map(|(name, value)| Authorized::ApiKey(name.to_owned(), value.to_owned()))
        }
    }
}

/// Fills `requestContext.authorizer` (and, for 1.0, `identity.apiKey` and
/// `identity.apiKeyId`: the key and its id, here its name) as API Gateway does for each
/// kind of authorizer.
fn put_authorizer(event: &mut Json_, version: PayloadVersion, authorized: Authorized) {
    let Some(context) = event
        .get_mut("requestContext")
        .and_then(Json_::as_object_mut)
    else {
        return;
    };
    let authorizer = match (authorized, version) {
        (Authorized::Nobody, _) => return,
        (Authorized::Jwt(jwt), PayloadVersion::V2) => json!({ "jwt": jwt }),
        // 1.0 events carry the claims and scopes at the authorizer's top level.
        (Authorized::Jwt(jwt), PayloadVersion::V1) => jwt,
        (Authorized::Lambda(lambda), PayloadVersion::V2) => json!({ "lambda": lambda }),
        (Authorized::Lambda(lambda), PayloadVersion::V1) => lambda,
        (Authorized::ApiKey(name, value), version) => {
            if version == PayloadVersion::V1
                && let Some(identity) = context.get_mut("identity").and_then(Json_::as_object_mut)
            {
                identity.insert("apiKey".into(), json!(value));
                identity.insert("apiKeyId".into(), json!(name));
            }
            return;
        }
    };
    context.insert("authorizer".into(), authorizer);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use tower::ServiceExt;
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
        let (router, _) = router(None, health(), Arc::new(NoFunctions)).await.unwrap();
        let (status, body) = call(router.clone(), "GET", "/users").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, serde_json::json!({ "message": "Not Found" }));
        let (status, body) = call(router, "GET", "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
    }

    /// What the recording invoker was handed.
    struct Handed {
        function: String,
        payload: Vec<u8>,
        request: Option<axum::http::Request<axum::body::Bytes>>,
    }

    /// An invoker that records what it is handed: wasm functions answer with an HTTP
    /// response, the authorizer allows, other functions answer with a structured result.
    #[derive(Default)]
    struct Recorder {
        handed: std::sync::Mutex<Vec<Handed>>,
    }

    const BINARY: [u8; 5] = [0, 159, 146, 150, 255];

    impl Invoke for Recorder {
        fn invoke(
            &self,
            function: &str,
            payload: Vec<u8>,
            options: InvokeOptions,
        ) -> nimbus_core::BoxFuture<'_, Result<nimbus_core::InvokeResult, nimbus_core::InvokeError>>
        {
            use axum::http::{HeaderMap, HeaderName, HeaderValue as V};
            let outcome = match function {
                "wasm" => {
                    let mut headers = HeaderMap::new();
                    for (k, v) in [
                        ("set-cookie", "a=1; Path=/"),
                        ("x-m", "1"),
                        ("set-cookie", "b=2"),
                        ("x-m", "2"),
                    ] {
                        headers.append(HeaderName::from_static(k), V::from_static(v));
                    }
                    nimbus_core::Outcome::Http(nimbus_core::HttpResponse {
                        status: StatusCode::CREATED,
                        headers,
                        body: axum::body::Bytes::from_static(&BINARY),
                    })
                }
                "auth" => nimbus_core::Outcome::Response(br#"{"isAuthorized":true}"#.to_vec()),
                _ => {
                    nimbus_core::Outcome::Response(br#"{"statusCode":200,"body":"json"}"#.to_vec())
                }
            };
            self.handed.lock().unwrap().push(Handed {
                function: function.to_owned(),
                payload,
                request: options.request,
            });
            Box::pin(async move {
                Ok(nimbus_core::InvokeResult {
                    request_id: options.request_id.unwrap_or_default(),
                    outcome,
                    log_tail: String::new(),
                })
            })
        }
    }

    fn function(name: &str, runtime: &str) -> nimbus_core::FunctionSpec {
        nimbus_core::FunctionSpec {
            concurrency: nimbus_core::Concurrency {
                max: 1,
                min_warm: 0,
            },
            ..nimbus_core::FunctionSpec::new(name, runtime.parse().unwrap(), "code")
        }
    }

    fn route(
        key: &str,
        function: &str,
        payload: PayloadVersion,
        auth: RouteAuth,
    ) -> nimbus_core::RouteSpec {
        let (method, path) = key.split_once(' ').unwrap();
        nimbus_core::RouteSpec {
            key: nimbus_core::RouteKey::Route {
                method: method.parse().unwrap(),
                path: path.parse().unwrap(),
            },
            function: function.to_owned(),
            auth,
            payload,
            rate_limit: None,
        }
    }

    async fn recorded_app() -> (Router, Arc<Recorder>) {
        let mut app = AppSpec::named("t");
        for f in [
            function("wasm", "wasm"),
            function("node", "provided.al2023"),
            function("auth", "provided.al2023"),
        ] {
            app.functions.insert(f.name.clone(), f);
        }
        app.auth.lambda.insert(
            "gate".to_owned(),
            nimbus_core::LambdaAuthorizerSpec {
                name: "gate".to_owned(),
                function: "auth".to_owned(),
                identity_source: vec!["$request.header.x-token".to_owned()],
                ttl: std::time::Duration::ZERO,
            },
        );
        app.routes = vec![
            route("POST /w/{id}", "wasm", PayloadVersion::V2, RouteAuth::None),
            route("POST /v1/{id}", "wasm", PayloadVersion::V1, RouteAuth::None),
            route(
                "POST /gated/{id}",
                "wasm",
                PayloadVersion::V2,
                RouteAuth::Lambda {
                    authorizer: "gate".to_owned(),
                },
            ),
            route("POST /n/{id}", "node", PayloadVersion::V2, RouteAuth::None),
        ];
        recorded(app).await
    }

    /// The gateway of `app`, with a recording invoker.
    async fn recorded(app: AppSpec) -> (Router, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let (router, _) = router(
            Some(app),
            health(),
            Arc::clone(&recorder) as Arc<dyn Invoke>,
        )
        .await
        .unwrap();
        (router, recorder)
    }

    /// An invoker whose invocations take 200 ms, counting those that finish.
    #[derive(Default)]
    struct Slow {
        finished: std::sync::atomic::AtomicUsize,
    }

    impl Invoke for Slow {
        fn invoke(
            &self,
            _: &str,
            _: Vec<u8>,
            options: InvokeOptions,
        ) -> nimbus_core::BoxFuture<'_, Result<nimbus_core::InvokeResult, nimbus_core::InvokeError>>
        {
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                self.finished
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(nimbus_core::InvokeResult {
                    request_id: options.request_id.unwrap_or_default(),
                    outcome: nimbus_core::Outcome::Response(br#"{"statusCode":200}"#.to_vec()),
                    log_tail: String::new(),
                })
            })
        }
    }

    /// A client that stops waiting (its request's future is dropped, as hyper does when
    /// the connection closes) does not cut the function off: as on Lambda, the invocation
    /// runs to its end, for a JSON event route, a wasm route and a Lambda authorizer.
    #[tokio::test]
    async fn an_invocation_runs_to_its_end_when_the_client_goes_away() {
        use tower::ServiceExt;
        let mut app = AppSpec::named("t");
        for f in [
            function("node", "provided.al2023"),
            function("wasm", "wasm"),
        ] {
            app.functions.insert(f.name.clone(), f);
        }
        app.auth.lambda.insert(
            "gate".to_owned(),
            nimbus_core::LambdaAuthorizerSpec {
                name: "gate".to_owned(),
                function: "node".to_owned(),
                identity_source: vec!["$request.header.x-token".to_owned()],
                ttl: std::time::Duration::ZERO,
            },
        );
        let gate = RouteAuth::Lambda {
            authorizer: "gate".to_owned(),
        };
        app.routes = vec![
            route("GET /n", "node", PayloadVersion::V2, RouteAuth::None),
            route("GET /w", "wasm", PayloadVersion::V2, RouteAuth::None),
            route("GET /g", "node", PayloadVersion::V2, gate),
        ];
        let slow = Arc::new(Slow::default());
        let (router, _) = router(Some(app), health(), Arc::clone(&slow) as Arc<dyn Invoke>)
            .await
            .unwrap();
        for path in ["/n", "/w", "/g"] {
            let request = Request::builder()
                .uri(path)
                .header("x-token", "t")
                .body(Body::empty())
                .unwrap();
            let gave_up = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                router.clone().oneshot(request),
            )
            .await;
            assert!(
                gave_up.is_err(),
                "{path} answered before the client gave up"
            );
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while slow.finished.load(std::sync::atomic::Ordering::SeqCst) < 3
            && Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The third is the authorizer's: its request ended before the route's function ran.
        assert_eq!(slow.finished.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// `$default` leaves `GET /healthz` to the gateway; a route of its own takes it.
    #[tokio::test]
    async fn healthz_is_the_gateways_unless_a_route_claims_it() {
        for (claimed, routes) in [
            (false, vec![("$default", "node")]),
            (true, vec![("$default", "node"), ("GET /healthz", "node")]),
        ] {
            let mut app = AppSpec::named("t");
            let node = function("node", "provided.al2023");
            app.functions.insert(node.name.clone(), node);
            app.routes = routes
                .into_iter()
                .map(|(key, function)| match key {
                    "$default" => nimbus_core::RouteSpec {
                        key: RouteKey::Default,
                        ..route("GET /x", function, PayloadVersion::V2, RouteAuth::None)
                    },
                    key => route(key, function, PayloadVersion::V2, RouteAuth::None),
                })
                .collect();
            let (router, recorder) = recorded(app).await;
            let get = |path: &'static str| {
                use tower::ServiceExt;
                let request = Request::builder().uri(path).body(Body::empty()).unwrap();
                router.clone().oneshot(request)
            };
            let answer = get("/healthz").await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
                .await
                .unwrap();
            // The function answers `json`; the gateway its health document.
            assert_eq!(body == "json", claimed, "{body:?}");
            assert_eq!(recorder.handed.lock().unwrap().len(), usize::from(claimed));
            // Anything else still reaches `$default`.
            get("/elsewhere").await.unwrap();
            assert_eq!(
                recorder.handed.lock().unwrap().len(),
                usize::from(claimed) + 1
            );
        }
    }

    async fn post(router: &Router, path: &str) -> Response<Body> {
        use tower::ServiceExt;
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "api.test")
            .header("x-token", "t")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(Body::from(&BINARY[..]))
            .unwrap();
        router.clone().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_wasm_route_hands_on_the_request_and_answers_its_response_as_is() {
        let (router, recorder) = recorded_app().await;
        for path in ["/w/1?q=a%20b", "/v1/1?q=a%20b", "/gated/1?q=a%20b"] {
            let response = post(&router, path).await;
            assert_eq!(response.status(), StatusCode::CREATED, "{path}");
            let lines: Vec<(String, String)> = response
                .headers()
                .iter()
                // The gateway's own header and the framing axum adds.
                .filter(|(k, _)| *k != "apigw-requestid" && *k != "content-length")
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            let mut expected = vec![
                ("set-cookie".to_owned(), "a=1; Path=/".to_owned()),
                ("set-cookie".to_owned(), "b=2".to_owned()),
                ("x-m".to_owned(), "1".to_owned()),
                ("x-m".to_owned(), "2".to_owned()),
            ];
            // A payload 2.0 route gives a response without a content type JSON's, as
            // it does a structured result without one.
            if !path.starts_with("/v1") {
                expected.push(("content-type".to_owned(), "application/json".to_owned()));
            }
            assert_eq!(lines, expected, "{path}");
            assert!(response.headers().contains_key("apigw-requestid"));
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            assert_eq!(body[..], BINARY, "{path}");
        }
        let handed = std::mem::take(&mut *recorder.handed.lock().unwrap());
        let functions: Vec<&str> = handed.iter().map(|h| h.function.as_str()).collect();
        // The authorizer still gets its event, then the function the request.
        assert_eq!(functions, ["wasm", "wasm", "auth", "wasm"]);
        for h in handed.iter().filter(|h| h.function == "wasm") {
            assert!(h.payload.is_empty(), "no JSON event for a wasm function");
            let request = h.request.as_ref().expect("the request is handed on");
            assert_eq!(request.method(), Method::POST);
            assert_eq!(
                request
                    .uri()
                    .path_and_query()
                    .unwrap()
                    .as_str()
                    .split_once('?')
                    .unwrap()
                    .1,
                "q=a%20b"
            );
            let x_a: Vec<&str> = request
                .headers()
                .get_all("x-a")
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(x_a, ["1", "2"]);
            assert_eq!(request.headers()["host"], "api.test");
            assert_eq!(request.body()[..], BINARY);
        }
        let auth = &handed[2];
        assert!(auth.request.is_none());
        let event: serde_json::Value = serde_json::from_slice(&auth.payload).unwrap();
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(event["rawPath"], "/gated/1");
    }

    #[tokio::test]
    async fn other_routes_still_get_an_event() {
        let (router, recorder) = recorded_app().await;
        let response = post(&router, "/n/1").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&body[..], b"json");
        let handed = std::mem::take(&mut *recorder.handed.lock().unwrap());
        assert_eq!(handed.len(), 1);
        assert!(handed[0].request.is_none());
        let event: serde_json::Value = serde_json::from_slice(&handed[0].payload).unwrap();
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["rawPath"], "/n/1");
        assert_eq!(event["headers"]["x-a"], "1,2");
    }
}
