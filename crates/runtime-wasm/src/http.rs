//! Between invocations and HTTP: an invocation becomes the request the component
//! handles (the gateway's HTTP request as it came, or one made from the payload's event),
//! and a JSON event's response becomes an API Gateway payload 2.0 structured result,
//! which the gateway's reply rules turn back into an HTTP response.

use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::Full;
use serde_json::{Map, Value as Json};

/// The header that marks a request made from a non-HTTP event (an async invocation, a
/// table stream, a queue or schedule record): such events reach the component as
/// `POST /` with the event JSON as the body, `content-type: application/json` and
/// `x-nimbus-event-source: lambda`. Requests made from API Gateway events do not carry it.
pub const EVENT_SOURCE_HEADER: &str = "x-nimbus-event-source";

/// The header carrying the invocation's request id (`awsRequestId`) to the component.
pub const REQUEST_ID_HEADER: &str = "x-nimbus-request-id";

/// The authority of requests that carry no `host`.
const DEFAULT_AUTHORITY: &str = "localhost";

/// The request the gateway hands on as it came ([`nimbus_core::Invocation::request`]),
/// as the component sees it: exactly the request [`request_for`] makes of the payload 2.0
/// event the gateway would have built for it. Repeated header lines are joined with `,`
/// and header names come in order, as the event's `headers` map has them; `cookie` lines
/// are split into cookies and joined again with `; ` (last); `host`, or else the target's
/// authority, becomes the authority; the target is re-encoded; `content-length` is left
/// out; a header value that is not UTF-8 is read with replacement characters.
///
/// # Errors
/// When the request target cannot be made again (as for the event).
pub(crate) fn request_from(request: Request<Bytes>) -> Result<Request<Full<Bytes>>, String> {
    let (parts, body) = request.into_parts();
    let mut cookies: Vec<String> = Vec::new();
    let mut names: Vec<&HeaderName> = parts.headers.keys().collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(names.len() + 1);
    for name in names {
        let mut values = parts.headers.get_all(name).iter();
        if name == header::COOKIE {
            for value in values {
                cookies.extend(
                    text(value)
                        .split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned),
                );
            }
            continue;
        }
        let value = match (values.next(), values.next()) {
            // The common case, one UTF-8 line: the value as it came.
            (Some(first), None) if std::str::from_utf8(first.as_bytes()).is_ok() => first.clone(),
            (first, second) => {
                let joined = first
                    .into_iter()
                    .chain(second)
                    .chain(values)
                    .map(|v| text(v).into_owned())
                    .collect::<Vec<_>>()
                    .join(",");
                match HeaderValue::from_str(&joined) {
                    Ok(value) => value,
                    Err(_) => continue,
                }
            }
        };
        headers.push((name.clone(), value));
    }
    push_cookies(&mut headers, &cookies);
    let host_line = headers
        .iter()
        .find(|(k, _)| k == header::HOST)
        .map(|(_, v)| v.clone());
    let host = match &host_line {
        // A value that is not text is not an authority either.
        Some(value) => Some(value.to_str().unwrap_or("")),
        None => parts.uri.authority().map(http::uri::Authority::as_str),
    };
    let head = Head {
        method: parts.method.clone(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        host,
        headers,
    };
    Ok(build(head)?.map(|()| Full::new(body)))
}

/// A header value as text, with replacement characters where it is not UTF-8 (as the
/// gateway puts values in events).
fn text(value: &HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

/// Adds the `cookie` header a list of cookies makes (none for no cookies), as an event's
/// `cookies` are passed on.
fn push_cookies<S: AsRef<str>>(headers: &mut Vec<(HeaderName, HeaderValue)>, cookies: &[S]) {
    if cookies.is_empty() {
        return;
    }
    let joined = cookies
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join("; ");
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.push((header::COOKIE, value));
    }
}

/// The HTTP request a JSON invocation stands for.
///
/// An API Gateway payload 2.0 event (`"version": "2.0"` with `requestContext.http`) or
/// 1.0 event (`httpMethod`) becomes the request the client made; anything else is an
/// event, sent as `POST /` (see [`EVENT_SOURCE_HEADER`]).
pub(crate) fn request_for(payload: &[u8]) -> Result<Request<Full<Bytes>>, String> {
    let event: Option<Map<String, Json>> = match serde_json::from_slice(payload) {
        Ok(Json::Object(o)) => Some(o),
        _ => None,
    };
    match event {
        Some(o) if is_v2(&o) => from_v2(&o),
        Some(o) if is_v1(&o) => from_v1(&o),
        _ => {
            let mut request = Request::new(Full::new(Bytes::copy_from_slice(payload)));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = http::Uri::from_static("http://localhost/");
            let headers = request.headers_mut();
            headers.insert(header::HOST, HeaderValue::from_static(DEFAULT_AUTHORITY));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(EVENT_SOURCE_HEADER, HeaderValue::from_static("lambda"));
            Ok(request)
        }
    }
}

fn is_v2(o: &Map<String, Json>) -> bool {
    o.get("version").and_then(Json::as_str) == Some("2.0")
        && o.get("requestContext")
            .and_then(|c| c.get("http"))
            .is_some_and(Json::is_object)
}

fn is_v1(o: &Map<String, Json>) -> bool {
    o.get("httpMethod").is_some_and(Json::is_string)
        && o.get("requestContext").is_some_and(Json::is_object)
}

fn str_of(v: Option<&Json>) -> Option<&str> {
    v.and_then(Json::as_str)
}

fn from_v2(o: &Map<String, Json>) -> Result<Request<Full<Bytes>>, String> {
    let context = o.get("requestContext").unwrap_or(&Json::Null);
    let method = str_of(context["http"].get("method")).unwrap_or("GET");
    let path = str_of(o.get("rawPath"))
        .or_else(|| str_of(context["http"].get("path")))
        .unwrap_or("/");
    let query = str_of(o.get("rawQueryString")).unwrap_or("");
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(Json::Object(map)) = o.get("headers") {
        headers.extend(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), scalar(v)?))),
        );
    }
    let mut cookies: Vec<&str> = Vec::new();
    if let Some(Json::Array(list)) = o.get("cookies") {
        cookies.extend(list.iter().filter_map(Json::as_str));
        if !cookies.is_empty() {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("cookie"));
        }
    }
    let fallback_host = str_of(context.get("domainName"));
    let method = parse_method(method)?;
    let mut head = Head::of_event(method, path, query, &headers, fallback_host);
    push_cookies(&mut head.headers, &cookies);
    with_event_body(build(head)?, o)
}

fn from_v1(o: &Map<String, Json>) -> Result<Request<Full<Bytes>>, String> {
    let method = str_of(o.get("httpMethod")).unwrap_or("GET");
    let path = str_of(o.get("path")).unwrap_or("/");
    let mut pairs: Vec<(String, String)> = Vec::new();
    match (
        o.get("multiValueQueryStringParameters"),
        o.get("queryStringParameters"),
    ) {
        (Some(Json::Object(multi)), _) => {
            for (name, values) in multi {
                for value in values.as_array().into_iter().flatten() {
                    pairs.extend(scalar(value).map(|v| (name.clone(), v)));
                }
            }
        }
        (_, Some(Json::Object(single))) => {
            pairs.extend(
                single
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), scalar(v)?))),
            );
        }
        _ => {}
    }
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, String)> = Vec::new();
    match (o.get("multiValueHeaders"), o.get("headers")) {
        (Some(Json::Object(multi)), _) => {
            for (name, values) in multi {
                let values: Vec<String> = values
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(scalar)
                    .collect();
                headers.push((name.clone(), values.join(",")));
            }
        }
        (_, Some(Json::Object(single))) => {
            headers.extend(
                single
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), scalar(v)?))),
            );
        }
        _ => {}
    }
    let fallback_host = o
        .get("requestContext")
        .and_then(|c| str_of(c.get("domainName")));
    let method = parse_method(method)?;
    let head = Head::of_event(method, path, &query, &headers, fallback_host);
    with_event_body(build(head)?, o)
}

fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_method(method: &str) -> Result<Method, String> {
    Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("invalid HTTP method {method:?} in the event"))
}

/// What a request is made of, however the invocation carried it.
struct Head<'a> {
    method: Method,
    /// The raw path, not yet encoded.
    path: &'a str,
    /// The raw query string, not yet encoded (empty for none).
    query: &'a str,
    /// The header lines, in order (`host` and `content-length` among them are left out).
    headers: Vec<(HeaderName, HeaderValue)>,
    /// What names the authority: the `host` header, else what stands for it; the default
    /// authority when it is `None` or not an authority.
    host: Option<&'a str>,
}

impl<'a> Head<'a> {
    /// The head an event's fields give. A header the client could not have sent is left
    /// out rather than failing the request: the gateway already accepted it.
    fn of_event(
        method: Method,
        path: &'a str,
        query: &'a str,
        headers: &'a [(String, String)],
        fallback_host: Option<&'a str>,
    ) -> Head<'a> {
        let host = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.as_str())
            .or(fallback_host);
        let headers = headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect();
        Head {
            method,
            path,
            query,
            headers,
            host,
        }
    }
}

/// Most header lines an event may give a component's request (API Gateway takes 10 KB
/// of headers; http's `HeaderMap` panics past 24,576 names).
const MAX_EVENT_HEADERS: usize = 1_000;

/// The request `head` describes, without its body yet. Both kinds of invocation come
/// through here, so that the component sees the same request for the same HTTP request.
fn build(head: Head<'_>) -> Result<Request<()>, String> {
    let host = head
        .host
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .unwrap_or(DEFAULT_AUTHORITY);
    let path = if head.path.starts_with('/') {
        head.path
    } else {
        "/"
    };
    let query = head.query;
    let write_target = |out: &mut String| {
        encode_target(out, path);
        if !query.is_empty() {
            out.push('?');
            encode_target(out, query);
        }
    };
    // The URI is written into one buffer, which becomes the URI's own.
    let mut uri = String::with_capacity(16 + host.len() + path.len() + query.len());
    uri.push_str("http://");
    uri.push_str(host);
    write_target(&mut uri);
    let uri = http::Uri::try_from(uri).map_err(|e| {
        let mut target = String::new();
        write_target(&mut target);
        format!("invalid request target {target:?}: {e}")
    })?;
    let mut request = Request::new(());
    *request.method_mut() = head.method;
    *request.uri_mut() = uri;
    if head.headers.len() > MAX_EVENT_HEADERS {
        return Err(format!(
            "the event has {} header lines; at most {MAX_EVENT_HEADERS} are passed to a component",
            head.headers.len()
        ));
    }
    let map = request.headers_mut();
    map.reserve(head.headers.len() + 4);
    for (name, value) in head.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            map.append(name, value);
        }
    }
    if let Ok(host) = HeaderValue::from_str(host) {
        map.insert(header::HOST, host);
    }
    Ok(request)
}

/// `request` with the body an event carries (`body`, base64-decoded when
/// `isBase64Encoded`).
fn with_event_body(
    request: Request<()>,
    event: &Map<String, Json>,
) -> Result<Request<Full<Bytes>>, String> {
    let body = match event.get("body") {
        Some(Json::String(s))
            if event
                .get("isBase64Encoded")
                .and_then(Json::as_bool)
                .unwrap_or(false) =>
        {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("the event's body is not valid base64: {e}"))?
        }
        Some(Json::String(s)) => s.clone().into_bytes(),
        None | Some(Json::Null) => Vec::new(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(request.map(|()| Full::new(Bytes::from(body))))
}

/// Appends `raw` to `out` with what may not appear in a request target as is (spaces,
/// controls, non-ASCII, `"<>\^`{|}#`) percent-encoded, leaving existing escapes alone.
fn encode_target(out: &mut String, raw: &str) {
    for &b in raw.as_bytes() {
        if b.is_ascii_graphic() && !br#""<>\^`{|}#"#.contains(&b) {
            out.push(char::from(b));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Percent-encodes all but unreserved characters (a query name or value).
fn encode_component(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(request: &Request<Full<Bytes>>) -> (String, String, Vec<(String, String)>) {
        (
            request.method().to_string(),
            request.uri().to_string(),
            request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect(),
        )
    }

    async fn body(request: Request<Full<Bytes>>) -> Vec<u8> {
        use http_body_util::BodyExt as _;
        request
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn v2_events_become_the_client_request() {
        let event = json!({
            "version": "2.0",
            "routeKey": "POST /users/{id}",
            "rawPath": "/users/a b",
            "rawQueryString": "x=1&y=%20",
            "cookies": ["s=1", "t=2"],
            "headers": {"host": "api.test:3000", "content-type": "text/plain", "x-a": "1,2"},
            "requestContext": {"http": {"method": "PUT", "path": "/users/a b"}},
            "body": "aGk=",
            "isBase64Encoded": true
        });
        let request = request_for(event.to_string().as_bytes()).unwrap();
        let (method, uri, headers) = parts(&request);
        assert_eq!(method, "PUT");
        assert_eq!(uri, "http://api.test:3000/users/a%20b?x=1&y=%20");
        assert!(headers.contains(&("x-a".into(), "1,2".into())));
        assert!(headers.contains(&("cookie".into(), "s=1; t=2".into())));
        assert!(headers.contains(&("host".into(), "api.test:3000".into())));
        assert!(!headers.iter().any(|(k, _)| k == EVENT_SOURCE_HEADER));
        assert_eq!(body(request).await, b"hi");
    }

    #[tokio::test]
    async fn v1_events_become_the_client_request() {
        let event = json!({
            "version": "1.0",
            "httpMethod": "GET",
            "path": "/p",
            "multiValueQueryStringParameters": {"q": ["a b", "c"]},
            "multiValueHeaders": {"accept": ["text/html", "*/*"]},
            "requestContext": {"domainName": "d.test"},
            "body": null,
            "isBase64Encoded": false
        });
        let request = request_for(event.to_string().as_bytes()).unwrap();
        let (method, uri, headers) = parts(&request);
        assert_eq!(method, "GET");
        assert_eq!(uri, "http://d.test/p?q=a%20b&q=c");
        assert!(headers.contains(&("accept".into(), "text/html,*/*".into())));
        assert!(body(request).await.is_empty());
    }

    #[tokio::test]
    async fn other_events_are_posted() {
        let payload = br#"{"Records":[{"eventName":"INSERT"}]}"#;
        let request = request_for(payload).unwrap();
        let (method, uri, headers) = parts(&request);
        assert_eq!(method, "POST");
        assert_eq!(uri, "http://localhost/");
        assert!(headers.contains(&(EVENT_SOURCE_HEADER.into(), "lambda".into())));
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        assert_eq!(body(request).await, payload);
        // A version 2.0 document without requestContext.http is an ordinary event.
        let request = request_for(br#"{"version":"2.0"}"#).unwrap();
        assert_eq!(request.method(), Method::POST);
    }

    #[test]
    fn bad_events_are_refused() {
        let event = json!({
            "version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "G T"}}
        });
        assert!(request_for(event.to_string().as_bytes()).is_err());
        let event = json!({
            "version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "GET"}},
            "body": "%%%", "isBase64Encoded": true
        });
        assert!(request_for(event.to_string().as_bytes()).is_err());
    }

    /// A request as the gateway receives it, and the payload 2.0 event the gateway
    /// builds for it.
    fn raw_and_event(
        method: &str,
        target: &str,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> Option<(Request<Bytes>, Vec<u8>)> {
        let event = nimbus_gateway::fuzzing::event(
            false,
            method.as_bytes(),
            target.as_bytes(),
            headers,
            body,
        )?;
        let mut request = Request::new(Bytes::copy_from_slice(body));
        *request.method_mut() = Method::from_bytes(method.as_bytes()).ok()?;
        *request.uri_mut() = target.parse().ok()?;
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            );
        }
        nimbus_gateway::fuzzing::pass_on(request.headers_mut());
        Some((request, event.to_string().into_bytes()))
    }

    /// Everything the component sees of a request, header values as bytes.
    type Seen = (Method, String, Vec<(String, Vec<u8>)>, Vec<u8>);

    fn seen(request: Request<Full<Bytes>>) -> Seen {
        use http_body_util::BodyExt as _;
        use std::future::Future as _;
        let headers = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let (method, uri) = (request.method().clone(), request.uri().to_string());
        // A `Full` body is ready at once.
        let mut collect = std::pin::pin!(request.into_body().collect());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Ok(body)) = collect.as_mut().poll(&mut cx) else {
            panic!("a full body is ready")
        };
        (method, uri, headers, body.to_bytes().to_vec())
    }

    /// What the component sees of `raw`, and of the event the gateway makes of it.
    fn both_ways(
        method: &str,
        target: &str,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> Option<(Seen, Seen)> {
        let (raw, event) = raw_and_event(method, target, headers, body)?;
        let direct = seen(request_from(raw).expect("a request the gateway took is passed on"));
        let via_event = seen(request_for(&event).expect("the gateway's event makes a request"));
        Some((direct, via_event))
    }

    #[test]
    fn a_request_passed_on_is_the_one_its_event_makes() {
        let (direct, via_event) = both_ways(
            "PUT",
            "/users/a%20b/%E2%82%AC?x=1&y=%20&z=a+b",
            &[
                (b"Host", b"api.test:3000"),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"5"),
                (b"x-a", b"1"),
                (b"cookie", b"s=1; t=2"),
                (b"x-a", b"2"),
                (b"cookie", b" u=3 ;;"),
                (b"accept", b"*/*"),
                (b"x-latin", b"caf\xe9"),
            ],
            &[0, 159, 146, 150, 255],
        )
        .unwrap();
        assert_eq!(direct, via_event);
        let (method, uri, headers, body) = direct;
        assert_eq!(method, Method::PUT);
        assert_eq!(
            uri,
            "http://api.test:3000/users/a%20b/%E2%82%AC?x=1&y=%20&z=a+b"
        );
        let header = |name: &str| -> Vec<&[u8]> {
            headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_slice())
                .collect()
        };
        assert_eq!(header("x-a"), [b"1,2"]);
        assert_eq!(header("cookie"), [b"s=1; t=2; u=3"]);
        assert_eq!(header("host"), [b"api.test:3000"]);
        assert_eq!(header("x-latin"), ["caf\u{fffd}".as_bytes()]);
        // The gateway adds the client's address.
        assert_eq!(header("x-forwarded-for"), [b"127.0.0.1"]);
        assert!(header("content-length").is_empty());
        assert_eq!(body, [0, 159, 146, 150, 255]);
        // Names in order, as the event's map has them; the cookies, then the host, last.
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "accept",
                "content-type",
                "x-a",
                "x-forwarded-for",
                "x-latin",
                "cookie",
                "host"
            ]
        );
    }

    #[test]
    fn without_a_usable_host_the_authority_is_the_targets_or_the_default() {
        for (target, headers, authority) in [
            ("http://h2.test:8443/p", &[][..], "h2.test:8443"),
            ("/p", &[][..], "localhost"),
            ("/p", &[(&b"host"[..], &b"not a host"[..])][..], "localhost"),
            // Two host lines make one value, as in the event (a comma may be in a name).
            (
                "/p",
                &[
                    (&b"host"[..], &b"a.test"[..]),
                    (&b"host"[..], &b"b.test"[..]),
                ][..],
                "a.test,b.test",
            ),
            ("/p", &[(&b"cookie"[..], &b" ; "[..])][..], "localhost"),
        ] {
            let (direct, via_event) = both_ways("GET", target, headers, b"").unwrap();
            assert_eq!(direct, via_event, "{target} {headers:?}");
            assert_eq!(direct.1, format!("http://{authority}/p"));
            assert!(!direct.2.iter().any(|(k, _)| k == "cookie"));
        }
    }

    /// An event naming more headers than a request takes is refused, not a panic (http's
    /// map panics past 24,576 names).
    #[test]
    fn an_event_with_too_many_headers_is_refused() {
        let event = |n: usize| {
            let headers: serde_json::Map<String, Json> = (0..n)
                .map(|i| (format!("x-{i}"), Json::String("v".to_owned())))
                .collect();
            serde_json::json!({
                "version": "2.0",
                "rawPath": "/",
                "headers": headers,
                "requestContext": { "http": { "method": "GET", "path": "/" } },
            })
            .to_string()
        };
        assert!(request_for(event(10).as_bytes()).is_ok());
        let refused = request_for(event(30_000).as_bytes()).unwrap_err();
        assert!(refused.contains("at most 1000"), "{refused}");
    }

    proptest::proptest! {
        #[test]
        fn any_request_passed_on_is_the_one_its_event_makes(
            method in proptest::sample::select(vec!["GET", "POST", "DELETE", "PATCH", "OPTIONS", "PURGE"]),
            path in "(/[a-zA-Z0-9%+~._!$&'()*,;=:@-]{0,6}){1,3}",
            query in proptest::option::of("[a-zA-Z0-9%+=&?/._~ -]{0,12}"),
            headers in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["host", "Cookie", "x-a", "X-B", "content-type", "content-length", "accept"]),
                    proptest::collection::vec(
                        proptest::sample::select(vec![b'a', b'Z', b'0', b' ', b';', b',', b'=', b':', b'.', b'\t', b'/', 0xc3, 0xa9, 0xff]),
                        0..10,
                    ),
                ),
                0..8,
            ),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..16),
        ) {
            let target = match &query {
                Some(q) => format!("{path}?{}", q.replace(' ', "+")),
                None => path.clone(),
            };
            let headers: Vec<(&[u8], &[u8])> =
                headers.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())).collect();
            let both = both_ways(method, &target, &headers, &body);
            proptest::prop_assume!(both.is_some());
            let (direct, via_event) = both.unwrap();
            proptest::prop_assert_eq!(direct, via_event);
        }
    }
}
