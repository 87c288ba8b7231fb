//! Between Lambda payloads and HTTP: an invocation's payload becomes the request the
//! component handles, and its response becomes an API Gateway payload 2.0 structured
//! result, which the gateway's reply rules turn back into an HTTP response.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::Full;
use serde_json::{Map, Value as Json, json};

/// The header that marks a request made from a non-HTTP event (an async invocation, a
/// table stream, a queue or schedule record): such events reach the component as
/// `POST /` with the event JSON as the body, `content-type: application/json` and
/// `x-nimbus-event-source: lambda`. Requests made from API Gateway events do not carry it.
pub const EVENT_SOURCE_HEADER: &str = "x-nimbus-event-source";

/// The header carrying the invocation's request id (`awsRequestId`) to the component.
pub const REQUEST_ID_HEADER: &str = "x-nimbus-request-id";

/// The authority of requests that carry no `host`.
const DEFAULT_AUTHORITY: &str = "localhost";

/// The HTTP request an invocation stands for.
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
    if let Some(Json::Array(cookies)) = o.get("cookies") {
        let cookies: Vec<&str> = cookies.iter().filter_map(Json::as_str).collect();
        if !cookies.is_empty() {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("cookie"));
            headers.push(("cookie".to_owned(), cookies.join("; ")));
        }
    }
    let fallback_host = str_of(context.get("domainName"));
    build(method, path, query, headers, fallback_host, o)
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
    build(method, path, &query, headers, fallback_host, o)
}

fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn build(
    method: &str,
    path: &str,
    query: &str,
    headers: Vec<(String, String)>,
    fallback_host: Option<&str>,
    event: &Map<String, Json>,
) -> Result<Request<Full<Bytes>>, String> {
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("invalid HTTP method {method:?} in the event"))?;
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str())
        .or(fallback_host)
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .unwrap_or(DEFAULT_AUTHORITY)
        .to_owned();
    let mut target = encode_target(if path.starts_with('/') { path } else { "/" });
    if !query.is_empty() {
        target.push('?');
        target.push_str(&encode_target(query));
    }
    let uri: http::Uri = format!("http://{host}{target}")
        .parse()
        .map_err(|e| format!("invalid request target {target:?}: {e}"))?;
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
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let map = request.headers_mut();
    for (name, value) in headers {
        // A header the client could not have sent is left out rather than failing the
        // request: the gateway already accepted it.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        if name != header::HOST && name != header::CONTENT_LENGTH {
            map.append(name, value);
        }
    }
    if let Ok(host) = HeaderValue::from_str(&host) {
        map.insert(header::HOST, host);
    }
    Ok(request)
}

/// Percent-encodes what may not appear in a request target as is (spaces, controls,
/// non-ASCII, `"<>\^`{|}#`), leaving existing escapes alone.
fn encode_target(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        if b.is_ascii_graphic() && !br#""<>\^`{|}#"#.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// Whether a body of this content type goes out as text rather than base64.
fn is_textual(content_type: Option<&str>) -> bool {
    content_type.is_none_or(nimbus_core::lambda::is_textual_content_type)
}

/// The payload 2.0 structured result for a component's response:
/// `{"statusCode", "headers", "cookies", "body", "isBase64Encoded"}`. `set-cookie`
/// headers become `cookies`; repeated headers are joined with `, `; the body is base64
/// when it is not UTF-8 or its content type is not textual.
pub(crate) fn result_for(parts: &http::response::Parts, body: &[u8]) -> Vec<u8> {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == header::SET_COOKIE {
            cookies.push(Json::String(value));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Json::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Json::String(value));
            }
        }
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) if is_textual(content_type) => (text.to_owned(), false),
        _ => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut result = json!({
        "statusCode": parts.status.as_u16(),
        "headers": headers,
        "body": body,
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        result["cookies"] = Json::Array(cookies);
    }
    result.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn response(headers: &[(&str, &str)]) -> http::response::Parts {
        let mut builder = http::Response::builder().status(201);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn responses_become_structured_results() {
        let parts = response(&[
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-m", "1"),
            ("x-m", "2"),
        ]);
        let result: Json = serde_json::from_slice(&result_for(&parts, b"hello")).unwrap();
        assert_eq!(
            result,
            json!({
                "statusCode": 201,
                "headers": {"content-type": "text/plain", "x-m": "1, 2"},
                "cookies": ["a=1", "b=2"],
                "body": "hello",
                "isBase64Encoded": false
            })
        );
        let parts = response(&[("content-type", "image/png")]);
        let result: Json = serde_json::from_slice(&result_for(&parts, b"png")).unwrap();
        assert_eq!(result["body"], "cG5n");
        assert_eq!(result["isBase64Encoded"], true);
        let parts = response(&[]);
        let result: Json = serde_json::from_slice(&result_for(&parts, &[0xff, 0])).unwrap();
        assert_eq!(result["isBase64Encoded"], true);
        let result: Json = serde_json::from_slice(&result_for(&parts, b"{}")).unwrap();
        assert_eq!(result["body"], "{}");
        assert_eq!(result["isBase64Encoded"], false);
    }
}
