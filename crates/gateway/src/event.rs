//! API Gateway events: an HTTP request as the HTTP API payload 2.0 event, or the REST
//! API proxy payload 1.0 event, filled as API Gateway fills them.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::http::{HeaderMap, Method, Uri, Version};
use nimbus_core::{PayloadVersion, RouteKey};
use serde_json::{Map, Value as Json, json};

use crate::Match;

/// The account id and API id Nimbus reports.
const ACCOUNT: &str = "000000000000";
const API_ID: &str = "nimbus";

/// What the gateway knows of one request.
pub(crate) struct RequestFacts<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) entrance: Option<Entrance>,
    pub(crate) request_id: &'a str,
    pub(crate) version: Version,
}

/// How the client reached the gateway: the scheme and port API Gateway reports to a
/// function in `x-forwarded-proto` and `x-forwarded-port`, so that an app behind it
/// (Express's `req.protocol`, a secure-cookie check) sees how it was called. The
/// listener puts one on every request it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entrance {
    /// Whether the connection is TLS.
    pub https: bool,
    /// The port the gateway accepted it on.
    pub port: u16,
}

impl Entrance {
    fn proto(self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// Whether a body is sent to the function as text rather than base64.
fn is_text(headers: &HeaderMap, body: &[u8]) -> bool {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    nimbus_core::lambda::is_textual_content_type(content_type) && std::str::from_utf8(body).is_ok()
}

fn body_fields(headers: &HeaderMap, body: &[u8]) -> (Json, bool) {
    use base64::Engine as _;
    if body.is_empty() {
        return (Json::Null, false);
    }
    if is_text(headers, body) {
        (
            Json::String(String::from_utf8_lossy(body).into_owned()),
            false,
        )
    } else {
        (
            Json::String(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        )
    }
}

/// A header value as text: as sent when it is UTF-8 (nearly always ASCII), else with
/// replacement characters.
fn header_text(value: &axum::http::HeaderValue) -> String {
    let bytes = value.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Header values by lowercased name, in order, with the client's address added to
/// `x-forwarded-for` as API Gateway adds it: a function that trusts the last address of
/// the list gets the one that connected, whatever the client wrote before it. Like API
/// Gateway, the gateway sets `x-forwarded-proto` and `x-forwarded-port` itself, in place
/// of any the client sent.
fn header_lists(
    headers: &HeaderMap,
    source_ip: &str,
    entrance: Option<Entrance>,
) -> BTreeMap<String, Vec<String>> {
    let mut lists: BTreeMap<String, Vec<String>> = headers
        .keys()
        .map(|name| {
            let values = headers.get_all(name).iter().map(header_text).collect();
            (name.as_str().to_owned(), values)
        })
        .collect();
    let values = lists.entry("x-forwarded-for".to_owned()).or_default();
    let last = values.pop();
    values.push(forwarded(last.as_deref(), source_ip));
    if let Some(entrance) = entrance {
        lists.insert(
            "x-forwarded-proto".to_owned(),
            vec![entrance.proto().to_owned()],
        );
        lists.insert(
            "x-forwarded-port".to_owned(),
            vec![entrance.port.to_string()],
        );
    }
    lists
}

/// The last `x-forwarded-for` line with the client's address after what it held.
fn forwarded(last: Option<&str>, source_ip: &str) -> String {
    match last {
        Some(last) => format!("{last}, {source_ip}"),
        None => source_ip.to_owned(),
    }
}

/// Adds the client's address to a request's `x-forwarded-for`, and sets its
/// `x-forwarded-proto` and `x-forwarded-port`, as [`header_lists`] does for an event: for
/// a component, which gets the request itself.
pub(crate) fn forward_for(
    headers: &mut HeaderMap,
    peer: Option<std::net::SocketAddr>,
    entrance: Option<Entrance>,
) {
    use axum::http::{HeaderValue, header::Entry, header::HeaderName};
    if let Some(entrance) = entrance {
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(entrance.proto()),
        );
        headers.insert(
            HeaderName::from_static("x-forwarded-port"),
            HeaderValue::from(entrance.port),
        );
    }
    let source_ip = source_ip_of(peer);
    let Ok(address) = HeaderValue::from_str(&source_ip) else {
        return;
    };
    let name = HeaderName::from_static("x-forwarded-for");
    let mut entry = match headers.entry(name) {
        // Most requests carry none.
        Entry::Vacant(vacant) => {
            vacant.insert(address);
            return;
        }
        Entry::Occupied(occupied) => occupied,
    };
    // The last line carries the address after what it held; kept as sent, with the
    // address on a line of its own, if the two cannot make one header value.
    let mut values: Vec<HeaderValue> = entry.iter().cloned().collect();
    let last = values.pop();
    let joined = last.as_ref().and_then(|last| {
        HeaderValue::from_str(&forwarded(Some(&header_text(last)), &source_ip)).ok()
    });
    match joined {
        Some(joined) => values.push(joined),
        None => values.extend(last.into_iter().chain([address])),
    }
    let mut values = values.into_iter();
    if let Some(first) = values.next() {
        entry.insert(first);
    }
    for value in values {
        entry.append(value);
    }
}

/// The address of the client, `requestContext.http.sourceIp`.
fn source_ip_of(peer: Option<std::net::SocketAddr>) -> String {
    peer.map_or_else(|| "127.0.0.1".to_owned(), |p| p.ip().to_string())
}

/// Query parameters, URL-decoded, by name, in order.
fn query_lists(query: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(k)).or_default().push(decode(v));
    }
    out
}

/// Percent-decoding, with `+` as a space, as query strings are decoded.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit. (`u8::from_str_radix` would also take a sign: `%+1`.)
fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `dd/Mon/yyyy:HH:mm:ss +0000`, API Gateway's `requestContext.time`.
fn clf_time(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!("{day:02}/{name}/{year}:{h:02}:{m:02}:{s:02} +0000")
}

/// The host the client asked for: its `Host` header, or for HTTP/2 the `:authority` that
/// stands for it.
fn domain(facts: &RequestFacts<'_>) -> String {
    facts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .or_else(|| facts.uri.authority().map(|a| a.as_str()))
        .map_or_else(|| "localhost".to_owned(), str::to_owned)
}

/// The event for `route` and `request`, in the route's payload version.
pub(crate) fn build(route: &Match<'_>, facts: &RequestFacts<'_>) -> Json {
    build_at(route, facts, SystemTime::now())
}

/// [`build`] for a request received at `now`.
fn build_at(route: &Match<'_>, facts: &RequestFacts<'_>, now: SystemTime) -> Json {
    match route.route.payload {
        PayloadVersion::V2 => v2(route, facts, now),
        PayloadVersion::V1 => v1(route, facts, now),
    }
}

fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn protocol_of(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

fn v2(route: &Match<'_>, facts: &RequestFacts<'_>, now: SystemTime) -> Json {
    let raw_query = facts.uri.query().unwrap_or("").to_owned();
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    let source_ip = source_ip_of(facts.peer);
    for (name, values) in header_lists(facts.headers, &source_ip, facts.entrance) {
        if name == "cookie" {
            for v in &values {
                cookies.extend(
                    v.split(';')
                        .map(|c| c.trim().to_owned())
                        .filter(|c| !c.is_empty()),
                );
            }
            continue;
        }
        headers.insert(name, Json::String(values.join(",")));
    }
    let domain = domain(facts);
    let user_agent = facts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route_key = route.route.key.to_string();
    let (body, base64) = body_fields(facts.headers, facts.body);
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": facts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or(""),
            "http": {
                "method": facts.method.as_str(),
                "path": facts.uri.path(),
                "protocol": protocol_of(facts.version),
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": facts.request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": clf_time(now),
            "timeEpoch": epoch_millis(now),
        },
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    let query = query_lists(&raw_query);
    if !query.is_empty() {
        event["queryStringParameters"] = query
            .into_iter()
            .map(|(k, v)| (k, Json::String(v.join(","))))
            .collect::<Map<_, _>>()
            .into();
    }
    if !route.params.is_empty() {
        event["pathParameters"] = params(&route.params);
    }
    if !body.is_null() {
        event["body"] = body;
    }
    event
}

fn params(params: &[(String, String)]) -> Json {
    params
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect::<Map<_, _>>()
        .into()
}

/// Percent-decoding of a path (`+` stays `+`).
pub(crate) fn decode_path(s: &str) -> String {
    decode(&s.replace('+', "%2B"))
}

fn v1(route: &Match<'_>, facts: &RequestFacts<'_>, now: SystemTime) -> Json {
    let source_ip = source_ip_of(facts.peer);
    let lists = header_lists(facts.headers, &source_ip, facts.entrance);
    let headers: Map<String, Json> = lists
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Json::String(v.last().cloned().unwrap_or_default()),
            )
        })
        .collect();
    let multi_headers: Map<String, Json> =
        lists.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let query = query_lists(facts.uri.query().unwrap_or(""));
    let (query_single, query_multi) = if query.is_empty() {
        (Json::Null, Json::Null)
    } else {
        (
            query
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Json::String(v.last().cloned().unwrap_or_default()),
                    )
                })
                .collect::<Map<_, _>>()
                .into(),
            query
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>()
                .into(),
        )
    };
    let (resource, path_params) = match &route.route.key {
        RouteKey::Route { path, .. } => (path.to_string(), route.params.clone()),
        // `$default` stands for a REST API with a greedy `/{proxy+}` resource at its root:
        // what follows the root is its `proxy` parameter. The root itself is the `/`
        // resource, which has no parameter.
        RouteKey::Default => match facts.uri.path().strip_prefix('/') {
            Some(rest) if !rest.is_empty() => (
                "/{proxy+}".to_owned(),
                vec![("proxy".to_owned(), decode_path(rest))],
            ),
            _ => ("/".to_owned(), Vec::new()),
        },
    };
    let domain = domain(facts);
    let user_agent = facts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok());
    let (body, base64) = body_fields(facts.headers, facts.body);
    json!({
        "resource": resource,
        "path": facts.uri.path(),
        "httpMethod": facts.method.as_str(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query_single,
        "multiValueQueryStringParameters": query_multi,
        "pathParameters": if path_params.is_empty() { Json::Null } else { params(&path_params) },
        "stageVariables": Json::Null,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or(""),
            "extendedRequestId": facts.request_id,
            "httpMethod": facts.method.as_str(),
            "identity": {
                "sourceIp": source_ip,
                "userAgent": user_agent,
                "accessKey": Json::Null, "accountId": Json::Null, "caller": Json::Null,
                "cognitoAuthenticationProvider": Json::Null, "cognitoAuthenticationType": Json::Null,
                "cognitoIdentityId": Json::Null, "cognitoIdentityPoolId": Json::Null,
                "principalOrgId": Json::Null, "user": Json::Null, "userArn": Json::Null,
            },
            "path": facts.uri.path(),
            "protocol": protocol_of(facts.version),
            "requestId": facts.request_id,
            "requestTime": clf_time(now),
            "requestTimeEpoch": epoch_millis(now),
            "resourceId": API_ID,
            "resourcePath": resource,
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// Entry points for the `gateway` fuzz target (`fuzz/fuzz_targets/gateway.rs`): the
/// request-to-event mapping and the reply rules, reachable from outside the crate. Not
/// part of the crate's API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    use axum::http::{HeaderName, HeaderValue};
    use futures_util::FutureExt as _;
    use nimbus_core::{Outcome, RouteAuth, RouteSpec};

    use super::*;
    use crate::RouteTable;

    /// The routes fuzzed requests are matched against: literals, a parameter, greedy
    /// parameters, `ANY` and `$default`.
    pub const ROUTES: [&str; 5] = [
        "GET /items/{id}",
        "POST /items",
        "ANY /files/{path+}",
        "GET /a/{b}/c/{rest+}",
        "$default",
    ];

    /// A route for `key` (`METHOD /path` or `$default`), or `None` when it does not parse.
    pub(crate) fn route(key: &str, payload: PayloadVersion) -> Option<RouteSpec> {
        let key = if key == "$default" {
            RouteKey::Default
        } else {
            let (method, path) = key.split_once(' ')?;
            RouteKey::Route {
                method: method.parse().ok()?,
                path: path.parse().ok()?,
            }
        };
        Some(RouteSpec {
            key,
            function: "fuzz".to_owned(),
            auth: RouteAuth::None,
            payload,
            rate_limit: None,
        })
    }

    fn payload(v1: bool) -> PayloadVersion {
        if v1 {
            PayloadVersion::V1
        } else {
            PayloadVersion::V2
        }
    }

    /// The event for a request given as raw parts, matched against [`ROUTES`] in payload
    /// 1.0 (`v1`) or 2.0; `None` when the parts do not make an HTTP request (a bad
    /// method, target, header name or header value).
    pub fn event(
        v1: bool,
        method: &[u8],
        target: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> Option<Json> {
        let method = Method::from_bytes(method).ok()?;
        let uri = Uri::try_from(target).ok()?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            );
        }
        let routes = ROUTES
            .iter()
            .map(|key| route(key, payload(v1)))
            .collect::<Option<Vec<_>>>()
            .expect("the fuzz routes parse");
        let table = RouteTable::new(&routes).expect("the fuzz routes fit in one table");
        let found = table
            .find(method.as_str(), uri.path())
            .expect("`$default` matches every request");
        let facts = RequestFacts {
            method: &method,
            uri: &uri,
            headers: &map,
            body,
            peer: None,
            entrance: None,
            request_id: "fuzz",
            version: Version::HTTP_11,
        };
        Some(build_at(
            &found,
            &facts,
            UNIX_EPOCH + Duration::from_millis(1_583_348_638_390),
        ))
    }

    /// A request's headers as the gateway hands the request to a wasm component: with
    /// the client's address added to `x-forwarded-for`, for the peer [`event`] fills in.
    pub fn pass_on(headers: &mut HeaderMap) {
        forward_for(headers, None, None);
    }

    /// The request body an event carries, decoded (empty when it has none); `None` when
    /// `body` and `isBase64Encoded` disagree.
    pub fn body(event: &Json) -> Option<Vec<u8>> {
        use base64::Engine as _;
        match (&event["body"], &event["isBase64Encoded"]) {
            (Json::Null, Json::Bool(false)) => Some(Vec::new()),
            (Json::String(s), Json::Bool(false)) => Some(s.clone().into_bytes()),
            (Json::String(s), Json::Bool(true)) => {
                base64::engine::general_purpose::STANDARD.decode(s).ok()
            }
            _ => None,
        }
    }

    /// What a client receives from the gateway.
    #[derive(Debug)]
    pub struct Reply {
        /// The status code.
        pub status: u16,
        /// The header lines, in order.
        pub headers: Vec<(String, Vec<u8>)>,
        /// The body.
        pub body: Vec<u8>,
    }

    /// What the gateway answers when a function returns `result`, by the reply rules of
    /// payload 1.0 (`v1`) or 2.0.
    pub fn reply(v1: bool, result: &[u8]) -> Reply {
        let response = crate::reply::from_outcome(Outcome::Response(result.to_vec()), payload(v1));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .now_or_never()
            .expect("a reply's body is in memory")
            .expect("an in-memory body reads");
        Reply {
            status,
            headers,
            body: body.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_time_is_api_gateway_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_583_348_638);
        assert_eq!(clf_time(t), "04/Mar/2020:19:03:58 +0000");
    }

    #[test]
    fn query_strings_decode_and_keep_duplicates() {
        let q = query_lists("a=1&a=2&b=x%20y&c=&d+e=f+g");
        assert_eq!(q["a"], ["1", "2"]);
        assert_eq!(q["b"], ["x y"]);
        assert_eq!(q["c"], [""]);
        assert_eq!(q["d e"], ["f g"]);
    }

    #[test]
    fn a_requests_forwarded_for_ends_with_the_client() {
        let peer = Some(std::net::SocketAddr::from(([192, 0, 2, 7], 5000)));
        let mut headers = HeaderMap::new();
        forward_for(&mut headers, peer, None);
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        forward_for(&mut headers, peer, None);
        let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(values, ["10.0.0.1", "10.0.0.2, 192.0.2.7"]);
    }

    #[test]
    fn the_gateway_sets_forwarded_proto_and_port_in_place_of_the_clients() {
        let peer = Some(std::net::SocketAddr::from(([192, 0, 2, 7], 5000)));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.append("x-forwarded-port", "443".parse().unwrap());
        headers.append("x-forwarded-port", "444".parse().unwrap());
        let entrance = Entrance {
            https: false,
            port: 3000,
        };
        forward_for(&mut headers, peer, Some(entrance));
        assert_eq!(headers["x-forwarded-proto"], "http");
        let ports: Vec<_> = headers.get_all("x-forwarded-port").iter().collect();
        assert_eq!(ports, ["3000"]);
        let lists = header_lists(
            &headers,
            "192.0.2.7",
            Some(Entrance {
                https: true,
                port: 8443,
            }),
        );
        assert_eq!(lists["x-forwarded-proto"], ["https"]);
        assert_eq!(lists["x-forwarded-port"], ["8443"]);
        // Without a listener's word (the fuzz harness), what the client sent stays.
        let lists = header_lists(&headers, "192.0.2.7", None);
        assert_eq!(lists["x-forwarded-proto"], ["http"]);
    }

    #[test]
    fn only_two_hex_digits_make_an_escape() {
        assert_eq!(decode("%41%4a%4A"), "AJJ");
        // `from_str_radix` would read `+1` as a number.
        assert_eq!(decode("%+1%-1%zz%4"), "% 1%-1%zz%4");
        assert_eq!(decode_path("a+b%2Fc"), "a+b/c");
    }
}

#[cfg(test)]
#[path = "../tests/golden/mod.rs"]
mod golden;
