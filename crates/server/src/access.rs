//! Who may use the services endpoint. The gateway is the only public surface: the
//! services endpoint listens on loopback unless configured otherwise, and then its admin
//! API needs a token and its AWS APIs are served to this host only.
//!
//! Every request to the services endpoint passes these checks, in order; a refusal is
//! answered in the shape of the protocol the request speaks (DynamoDB's
//! `AccessDeniedException` for `X-Amz-Target` requests, Lambda's for its REST paths,
//! `{"message"}` for the rest):
//!
//! 1. **Not from a web page** (every bind): a request carrying `Origin`, or a
//!    `Sec-Fetch-Site` other than `none` (typed in the address bar) or `same-origin`, gets
//!    403. Browsers send one or the other with every request a page makes (a simple
//!    `no-cors` POST included; `Sec-Fetch-*` since 2020-2023, `Origin` on every
//!    cross-origin request but a GET before that), and no other client does: the AWS CLI,
//!    the AWS SDKs (Python; JavaScript v2 and v3 in Node), curl and the `nimbus` CLI send
//!    neither. The services endpoint serves no pages, so no page may call it.
//! 2. **The token** (when one is configured): the admin API (`/nimbus/...`) and
//!    `/metrics` need `Authorization: Bearer <token>`; without it, or with another, 401
//!    with `WWW-Authenticate: Bearer`. A request that bears the token is not checked
//!    further.
//! 3. **Addressed to this host** (every bind): the `Host` header (and the target's
//!    authority, if any) must be `localhost` or an IP address, with any port. A page that
//!    rebinds its own name to this host's address (DNS rebinding) can then neither act nor
//!    read: its requests name the page's host.
//! 4. **From this host** (non-loopback binds only): anything but `/healthz` (the AWS APIs,
//!    whose signatures are not verified yet) is refused with 403 to a peer that is not on
//!    loopback (or, on a bind to one address, that address: a connection from this host
//!    to it). Functions reach the services endpoint over loopback.
//!
//! On a loopback bind, step 4 costs one branch; steps 1 and 3 are a few header lookups.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header},
    middleware::Next,
    response::IntoResponse,
};
use serde_json::json;

/// The fewest characters a services token may have.
pub const MIN_TOKEN_LEN: usize = 16;

/// The most characters a services token may have (it must fit in a request's headers).
pub const MAX_TOKEN_LEN: usize = 1024;

/// The secret that the services endpoint's admin API and `/metrics` require as
/// `Authorization: Bearer <token>`. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServicesToken(Arc<str>);

/// Why a text cannot be a services token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Nothing but whitespace.
    #[error("the services token is empty")]
    Empty,
    /// Fewer than [`MIN_TOKEN_LEN`] characters.
    #[error(
        "the services token has {0} characters; it needs at least {MIN_TOKEN_LEN} (`openssl rand -hex 32` makes one)"
    )]
    TooShort(usize),
    /// More than [`MAX_TOKEN_LEN`] characters.
    #[error("the services token has more than {MAX_TOKEN_LEN} characters")]
    TooLong,
    /// A character that is not printable ASCII, or a space.
    #[error("the services token may hold printable ASCII characters only, without spaces")]
    NotPrintable,
}

impl ServicesToken {
    /// The token in `text`; whitespace around it (a file's last newline) is not part of
    /// it.
    ///
    /// # Errors
    /// A [`TokenError`] when the rest is empty, shorter than [`MIN_TOKEN_LEN`], longer
    /// than [`MAX_TOKEN_LEN`], or not all printable ASCII.
    pub fn new(text: &str) -> Result<ServicesToken, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        match token.len() {
            n if n < MIN_TOKEN_LEN => Err(TokenError::TooShort(n)),
            n if n > MAX_TOKEN_LEN => Err(TokenError::TooLong),
            _ => Ok(ServicesToken(token.into())),
        }
    }

    /// The token, to send it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `authorization` (a header's value) is `Bearer <this token>`.
    fn authorizes(&self, authorization: &[u8]) -> bool {
        const SCHEME: &[u8] = b"bearer ";
        if authorization.len() < SCHEME.len()
            || !authorization[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        {
            return false;
        }
        constant_time_eq(
            authorization[SCHEME.len()..].trim_ascii(),
            self.0.as_bytes(),
        )
    }
}

impl fmt::Debug for ServicesToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServicesToken(***)")
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only: a
/// client timing its guesses learns no prefix of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // `black_box` keeps the compiler from ending the loop at the first difference.
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |diff, (x, y)| std::hint::black_box(diff | (x ^ y)));
    diff == 0
}

/// What the services endpoint lets through (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Access {
    token: Option<ServicesToken>,
    /// Bound to a non-loopback address: the AWS APIs are for peers on this host only.
    public: bool,
    /// The address bound to, when it is one non-loopback address: a connection from
    /// this host to it comes from it.
    own_ip: Option<IpAddr>,
}

impl Access {
    /// The checks for a services endpoint bound to `bound`.
    pub(crate) fn new(bound: SocketAddr, token: Option<ServicesToken>) -> Access {
        let ip = bound.ip().to_canonical();
        Access {
            token,
            public: !ip.is_loopback(),
            own_ip: (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip),
        }
    }

    /// Wraps every route of `router` (its fallback too) in the checks.
    pub(crate) fn layer(self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(Arc::new(self), guard))
    }

    fn check(&self, request: &Request) -> Result<(), Refusal> {
        let headers = request.headers();
        if let Some(sign) = from_a_page(headers) {
            return Err(Refusal::Page(sign));
        }
        let path = request.uri().path();
        if let Some(token) = &self.token
            && is_admin(path)
        {
            return match headers.get(header::AUTHORIZATION) {
                None => Err(Refusal::NoToken),
                Some(value) if token.authorizes(value.as_bytes()) => Ok(()),
                Some(_) => Err(Refusal::WrongToken),
            };
        }
        if !addressed_here(request) {
            return Err(Refusal::Host);
        }
        if self.public && path != "/healthz" {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| *peer);
            match peer {
                Some(peer) if self.on_this_host(peer.ip()) => {}
                _ => return Err(Refusal::Peer(peer)),
            }
        }
        Ok(())
    }

    fn on_this_host(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        peer.is_loopback() || Some(peer) == self.own_ip
    }
}

async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response<Body> {
    match access.check(&request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.answer(&request),
    }
}

/// The routes that the token guards: the admin API and the metrics.
fn is_admin(path: &str) -> bool {
    path.starts_with("/nimbus/") || path == "/metrics"
}

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The header that shows a request was made by a web page, if one does.
fn from_a_page(headers: &HeaderMap) -> Option<&'static str> {
    if headers.contains_key(header::ORIGIN) {
        return Some("Origin");
    }
    match headers.get(SEC_FETCH_SITE) {
        Some(site) if site != "none" && site != "same-origin" => Some("Sec-Fetch-Site"),
        _ => None,
    }
}

/// Whether the request's `Host` and target name this host as a client that addressed
/// it directly does (a request without either, from HTTP/1.0, is not a browser's).
fn addressed_here(request: &Request) -> bool {
    let host = request
        .headers()
        .get(header::HOST)
        .is_none_or(|host| host.to_str().is_ok_and(is_local_authority));
    host && request
        .uri()
        .authority()
        .is_none_or(|authority| is_local_authority(authority.as_str()))
}

/// Whether `authority` (`host[:port]`) is `localhost` or an IP address. Only a name can
/// be rebound to another address; an IP address in a page's request is the page's own
/// host only when the page came from it, which no page of the services endpoint does.
fn is_local_authority(authority: &str) -> bool {
    let port_ok =
        |port: &str| (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((ip, rest)) = bracketed.split_once(']') else {
            return false;
        };
        return (rest.is_empty() || rest.strip_prefix(':').is_some_and(port_ok))
            && ip.parse::<Ipv6Addr>().is_ok();
    }
    let host = match authority.split_once(':') {
        Some((host, port)) if port_ok(port) => host,
        Some(_) => return false,
        None => authority,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<Ipv4Addr>().is_ok()
}

/// Why a request was refused.
#[derive(Debug)]
enum Refusal {
    /// It came from a web page: the header that says so.
    Page(&'static str),
    /// An admin request without the token.
    NoToken,
    /// An admin request with another token.
    WrongToken,
    /// Its `Host` names neither `localhost` nor an IP address.
    Host,
    /// An AWS API request from a peer that is not on this host.
    Peer(Option<SocketAddr>),
}

/// The protocol a request speaks, for the shape of its refusal.
enum Protocol {
    /// AWS JSON (DynamoDB, DynamoDB Streams): `X-Amz-Target`.
    AwsJson,
    /// A dated AWS REST API (Lambda).
    Lambda,
    /// The admin API, `/metrics`, `/healthz`.
    Nimbus,
}

impl Refusal {
    fn answer(&self, request: &Request) -> Response<Body> {
        let message = match self {
            Refusal::Page(header) => format!(
                "requests from web pages are refused (this one carries {header}): the services endpoint is for the AWS SDKs, the AWS CLI and nimbus, not browsers"
            ),
            Refusal::NoToken => "this node's admin API needs its services token: send `Authorization: Bearer <token>` (the nimbus CLI sends the one in --services-token-file or NIMBUS_SERVICES_TOKEN)".to_owned(),
            Refusal::WrongToken => "the bearer token is not this node's services token".to_owned(),
            Refusal::Host => "the Host header must name this node as localhost or an IP address (a name that leads here may be a DNS rebinding attack)".to_owned(),
            Refusal::Peer(peer) => format!(
                "signed requests are not verified yet, so the AWS APIs are served to loopback peers only{}; functions on this node reach them over loopback",
                peer.map_or_else(String::new, |p| format!(", not to {}", p.ip()))
            ),
        };
        let status = match self {
            Refusal::NoToken | Refusal::WrongToken => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        tracing::debug!(
            path = request.uri().path(),
            ?self,
            "services request refused"
        );
        // The token guards the admin API only: its refusals are the admin API's.
        let protocol = if status == StatusCode::UNAUTHORIZED {
            Protocol::Nimbus
        } else if request.headers().contains_key("x-amz-target") {
            Protocol::AwsJson
        } else if crate::services::is_rest_api_path(request.uri().path()) {
            Protocol::Lambda
        } else {
            Protocol::Nimbus
        };
        let mut response = match protocol {
            Protocol::AwsJson => access_denied(&message),
            Protocol::Lambda => crate::lambda::error(status, "AccessDeniedException", &message),
            Protocol::Nimbus => crate::admin::problem(status, message).into_response(),
        };
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"nimbus\""),
            );
        }
        response
    }
}

/// DynamoDB's answer to a request it will not serve.
fn access_denied(message: &str) -> Response<Body> {
    let body = json!({
        "__type": "com.amazon.coral.service#AccessDeniedException",
        "message": message,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn token() -> ServicesToken {
        ServicesToken::new(TOKEN).expect("a valid token")
    }

    /// A services endpoint whose handlers say which one answered, behind `access`.
    fn endpoint(access: Access) -> Router {
        let router = Router::new()
            .route("/healthz", get(|| async { "healthz" }))
            .route("/metrics", get(|| async { "metrics" }))
            .route(
                "/nimbus/v1/functions/{name}/dlq/redrive",
                post(|| async { "redriven" }),
            )
            .route(
                "/2015-03-31/functions/{name}/invocations",
                post(|| async { "invoked" }),
            )
            .fallback(|| async { "dynamodb" });
        access.layer(router)
    }

    fn loopback(token: Option<ServicesToken>) -> Router {
        endpoint(Access::new(([127, 0, 0, 1], 4566).into(), token))
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    impl Answer {
        fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).expect("a JSON body")
        }
    }

    /// Sends `method path` from `peer` with `Host: 127.0.0.1:4566` (unless `headers`
    /// name another) and `headers`.
    async fn send(
        router: &Router,
        peer: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request = request.header("host", "127.0.0.1:4566");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::empty()).expect("a valid request");
        let peer: SocketAddr = peer.parse().expect("a socket address");
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    const LOCAL: &str = "127.0.0.1:50000";
    const DYNAMODB: (&str, &str) = ("x-amz-target", "DynamoDB_20120810.ListTables");

    #[test]
    fn tokens_are_printable_and_long_enough() {
        assert_eq!(ServicesToken::new(""), Err(TokenError::Empty));
        assert_eq!(ServicesToken::new(" \n"), Err(TokenError::Empty));
        assert_eq!(
            ServicesToken::new("short-token\n"),
            Err(TokenError::TooShort(11))
        );
        assert_eq!(
            ServicesToken::new("0123456789 abcdef"),
            Err(TokenError::NotPrintable)
        );
        assert_eq!(
            ServicesToken::new("0123456789abcdéf"),
            Err(TokenError::NotPrintable)
        );
        assert_eq!(
            ServicesToken::new(&"x".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::TooLong)
        );
        // A file's last newline is not part of it.
        let token = ServicesToken::new(&format!("{TOKEN}\n")).expect("valid");
        assert_eq!(token.as_str(), TOKEN);
        assert!(!format!("{token:?}").contains(TOKEN));
        assert!(ServicesToken::new(&"x".repeat(MIN_TOKEN_LEN)).is_ok());
    }

    #[test]
    fn only_the_bearer_token_itself_authorizes() {
        let token = token();
        for good in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("BEARER  {TOKEN} "),
        ] {
            assert!(token.authorizes(good.as_bytes()), "{good}");
        }
        for bad in [
            String::new(),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            TOKEN.to_owned(),
            format!("Basic {TOKEN}"),
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]),
        ] {
            assert!(!token.authorizes(bad.as_bytes()), "{bad}");
        }
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
        assert!(!constant_time_eq(b"ab", b"ac"));
    }

    #[tokio::test]
    async fn with_a_token_the_admin_api_and_metrics_need_it() {
        let router = loopback(Some(token()));
        let bearer = format!("Bearer {TOKEN}");
        for (method, path, answer) in [
            ("POST", "/nimbus/v1/functions/f/dlq/redrive", "redriven"),
            ("GET", "/metrics", "metrics"),
        ] {
            let r = send(&router, LOCAL, method, path, &[]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(
                r.headers[header::WWW_AUTHENTICATE],
                "Bearer realm=\"nimbus\""
            );
            assert!(
                r.json()["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("services token")),
                "{}",
                r.body
            );
            let wrong = send(
                &router,
                LOCAL,
                method,
                path,
                &[("authorization", "Bearer 0123456789abcdef-tokeN")],
            )
            .await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
            let r = send(&router, LOCAL, method, path, &[("authorization", &bearer)]).await;
            assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, answer));
        }
        // Its refusals are the admin API's, whatever else the request says.
        let r = send(&router, LOCAL, "GET", "/metrics", &[DYNAMODB]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.json()["message"].is_string(), "{}", r.body);
        // Not the health check, nor the AWS APIs (loopback peers only).
        let r = send(&router, LOCAL, "GET", "/healthz", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "healthz"));
        let r = send(&router, LOCAL, "POST", "/", &[DYNAMODB]).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "dynamodb"));
        // Without a token, loopback peers use the admin API freely.
        let open = loopback(None);
        let r = send(
            &open,
            LOCAL,
            "POST",
            "/nimbus/v1/functions/f/dlq/redrive",
            &[],
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "redriven"));
    }

    #[test]
    fn localhost_and_ip_addresses_are_local_authorities() {
        for good in [
            "localhost",
            "LocalHost:4566",
            "localhost.:80",
            "127.0.0.1",
            "127.0.0.1:4566",
            "10.1.2.3:4566",
            "[::1]",
            "[::1]:4566",
            "[fe80::1]:4566",
        ] {
            assert!(is_local_authority(good), "{good}");
        }
        for bad in [
            "",
            "example.com",
            "evil.example:4566",
            "127.0.0.1.nip.io:4566",
            "localhost.evil.example",
            "127.0.0.1:",
            "127.0.0.1:45a",
            "127.0.0.1:4566:1",
            "::1",
            "[::1",
            "[::1]x",
            "[evil]:4566",
            "user@127.0.0.1:4566",
        ] {
            assert!(!is_local_authority(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_host_that_is_a_name_other_than_localhost_is_refused_in_each_protocols_shape() {
        let router = loopback(None);
        let rebound = ("host", "rebind.evil.example:4566");
        let r = send(&router, LOCAL, "POST", "/", &[DYNAMODB, rebound]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/x-amz-json-1.0"
        );
        assert_eq!(
            r.json()["__type"],
            "com.amazon.coral.service#AccessDeniedException"
        );
        assert!(r.headers.contains_key("x-amzn-requestid"));
        let r = send(
            &router,
            LOCAL,
            "POST",
            "/2015-03-31/functions/f/invocations",
            &[rebound],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.headers["x-amzn-errortype"], "AccessDeniedException");
        assert_eq!(r.json()["Type"], "User");
        for path in ["/nimbus/v1/functions/f/dlq/redrive", "/healthz"] {
            let method = if path == "/healthz" { "GET" } else { "POST" };
            let r = send(&router, LOCAL, method, path, &[rebound]).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
            assert!(
                r.json()["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Host"))
            );
        }
        for host in ["localhost:4566", "127.0.0.1:4566", "[::1]:4566"] {
            let r = send(&router, LOCAL, "POST", "/", &[DYNAMODB, ("host", host)]).await;
            assert_eq!(r.status, StatusCode::OK, "{host}");
        }
        // An admin request that bears the token is not a page's: any name may lead here.
        let router = loopback(Some(token()));
        let bearer = format!("Bearer {TOKEN}");
        let r = send(
            &router,
            LOCAL,
            "GET",
            "/metrics",
            &[("host", "nimbus.internal:4566"), ("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn requests_from_web_pages_are_refused() {
        let router = loopback(None);
        let redrive = "/nimbus/v1/functions/f/dlq/redrive";
        // What `fetch(url, {method: 'POST', mode: 'no-cors'})` sends from another site.
        let r = send(
            &router,
            LOCAL,
            "POST",
            redrive,
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors"),
                ("content-type", "text/plain;charset=UTF-8"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("web pages"))
        );
        // Each sign alone is enough: browsers without fetch metadata, sandboxed pages
        // (`Origin: null`), a page on the gateway's port (same-site).
        for sign in [
            ("origin", "null"),
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let r = send(&router, LOCAL, "POST", redrive, &[sign]).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{sign:?}");
            let r = send(&router, LOCAL, "POST", "/", &[DYNAMODB, sign]).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{sign:?}");
            assert_eq!(
                r.json()["__type"],
                "com.amazon.coral.service#AccessDeniedException"
            );
        }
        // Even with the token: a page that has it is still a page.
        let guarded = loopback(Some(token()));
        let bearer = format!("Bearer {TOKEN}");
        let r = send(
            &guarded,
            LOCAL,
            "GET",
            "/metrics",
            &[("authorization", &bearer), ("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // The address typed in the browser's own address bar.
        for site in ["none", "same-origin"] {
            let r = send(
                &router,
                LOCAL,
                "GET",
                "/healthz",
                &[("sec-fetch-site", site)],
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{site}");
        }
    }

    #[tokio::test]
    async fn beyond_loopback_the_aws_apis_are_for_this_hosts_peers_only() {
        let router = endpoint(Access::new(([0, 0, 0, 0], 4566).into(), Some(token())));
        let remote = "192.0.2.7:50000";
        let host = ("host", "192.0.2.1:4566");
        let r = send(&router, remote, "POST", "/", &[DYNAMODB, host]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            r.json()["__type"],
            "com.amazon.coral.service#AccessDeniedException"
        );
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("signed requests are not verified yet")),
            "{}",
            r.body
        );
        let r = send(
            &router,
            remote,
            "POST",
            "/2015-03-31/functions/f/invocations",
            &[host],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.headers["x-amzn-errortype"], "AccessDeniedException");
        // The health check and the admin API with the token are for everyone.
        let r = send(&router, remote, "GET", "/healthz", &[host]).await;
        assert_eq!(r.status, StatusCode::OK);
        let bearer = format!("Bearer {TOKEN}");
        let r = send(
            &router,
            remote,
            "GET",
            "/metrics",
            &[host, ("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = send(&router, remote, "GET", "/metrics", &[host]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // Loopback peers, IPv4 on a dual-stack socket included, use the AWS APIs.
        for peer in [LOCAL, "[::1]:50000", "[::ffff:127.0.0.1]:50000"] {
            let r = send(&router, peer, "POST", "/", &[DYNAMODB]).await;
            assert_eq!(
                (r.status, r.body.as_str()),
                (StatusCode::OK, "dynamodb"),
                "{peer}"
            );
        }
        // Bound to one address, a connection from that address is from this host.
        let router = endpoint(Access::new(([192, 0, 2, 1], 4566).into(), Some(token())));
        let r = send(&router, "192.0.2.1:50000", "POST", "/", &[DYNAMODB, host]).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = send(&router, remote, "POST", "/", &[DYNAMODB, host]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}
