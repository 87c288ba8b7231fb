//! A function's result as an HTTP response, by API Gateway's rules for each payload
//! version, and the gateway's own error answers.

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Response, StatusCode, header},
};
use base64::Engine as _;
use nimbus_core::{HttpResponse, InvokeError, Outcome, PayloadVersion};
use serde_json::Value as Json;

/// API Gateway's own JSON error answer.
pub(crate) fn message(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(
        serde_json::json!({ "message": text }).to_string(),
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to a function error or a malformed result: a 502, whose message HTTP APIs
/// and REST APIs spell differently.
fn internal_error(version: PayloadVersion) -> Response<Body> {
    let text = match version {
        PayloadVersion::V2 => "Internal Server Error",
        PayloadVersion::V1 => "Internal server error",
    };
    message(StatusCode::BAD_GATEWAY, text)
}

/// The response for an invocation that could not run.
pub(crate) fn from_invoke_error(e: &InvokeError, version: PayloadVersion) -> Response<Body> {
    match e {
        InvokeError::Throttled(_) => message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        InvokeError::NotFound(_) | InvokeError::Unavailable(_) => {
            let text = match version {
                PayloadVersion::V2 => "Internal Server Error",
                PayloadVersion::V1 => "Internal server error",
            };
            message(StatusCode::INTERNAL_SERVER_ERROR, text)
        }
    }
}

/// The response for an invocation's outcome.
pub(crate) fn from_outcome(outcome: Outcome, version: PayloadVersion) -> Response<Body> {
    match outcome {
        outcome if outcome.is_timeout() => match version {
            PayloadVersion::V2 => message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            PayloadVersion::V1 => {
                message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
            }
        },
        Outcome::Error { .. } => internal_error(version),
        Outcome::Http(response) => from_http(response, version),
        Outcome::Response(bytes) => {
            let Ok(json) = serde_json::from_slice::<Json>(&bytes) else {
                return internal_error(version);
            };
            match (version, json) {
                (_, Json::Object(o)) if o.contains_key("statusCode") => {
                    structured(&o, version).unwrap_or_else(|| internal_error(version))
                }
                // Payload 2.0 treats any other valid JSON as the body of a 200.
                (PayloadVersion::V2, _) => {
                    let mut response = Response::new(Body::from(bytes));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    response
                }
                (PayloadVersion::V1, _) => internal_error(version),
            }
        }
    }
}

/// The response a function gave to the request it was handed as it came: as it is
/// (status, every header line, body), with the default content type a payload 2.0 route
/// gives a structured result that names none, so that a client sees the same response
/// either way.
fn from_http(response: HttpResponse, version: PayloadVersion) -> Response<Body> {
    let HttpResponse {
        status,
        mut headers,
        body,
    } = response;
    if version == PayloadVersion::V2 && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Most header names a function's response may set: http's `HeaderMap` holds 24,576 and
/// panics past that, and the gateway adds its own after the function's.
pub(crate) const MAX_HEADER_NAMES: usize = 10_000;

/// `{statusCode, headers, multiValueHeaders, cookies, body, isBase64Encoded}`; `None`
/// when malformed (more than [`MAX_HEADER_NAMES`] names, too).
fn structured(
    o: &serde_json::Map<String, Json>,
    version: PayloadVersion,
) -> Option<Response<Body>> {
    let status = match o.get("statusCode")? {
        Json::Number(n) => n.as_u64()?,
        Json::String(s) if version == PayloadVersion::V2 => s.parse().ok()?,
        _ => return None,
    };
    let status = StatusCode::from_u16(u16::try_from(status).ok()?).ok()?;
    let base64 = o
        .get("isBase64Encoded")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let body: Vec<u8> = match o.get("body") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::String(s)) if base64 => {
            base64::engine::general_purpose::STANDARD.decode(s).ok()?
        }
        Some(Json::String(s)) => s.clone().into_bytes(),
        // API Gateway requires a string body; 2.0 is lenient and serialises other JSON.
        Some(other) if version == PayloadVersion::V2 => other.to_string().into_bytes(),
        Some(_) => return None,
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let scalar = |v: &Json| match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    if let Some(Json::Object(map)) = o.get("headers") {
        for (name, value) in map {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            // A map that cannot take more names (the http crate's limit) is malformed.
            headers
                .try_insert(name, HeaderValue::from_str(&scalar(value)?).ok()?)
                .ok()?;
        }
    }
    // API Gateway merges the two maps; for a name in both, the `headers` value is dropped.
    if let Some(Json::Object(map)) = o.get("multiValueHeaders") {
        for (name, values) in map {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            headers.remove(&name);
            for v in values.as_array()?.iter().filter_map(scalar) {
                headers
                    .try_append(name.clone(), HeaderValue::from_str(&v).ok()?)
                    .ok()?;
            }
        }
    }
    if version == PayloadVersion::V2
        && let Some(Json::Array(cookies)) = o.get("cookies")
    {
        for cookie in cookies.iter().filter_map(Json::as_str) {
            headers
                .try_append(header::SET_COOKIE, HeaderValue::from_str(cookie).ok()?)
                .ok()?;
        }
    }
    // Room is left for the headers the gateway adds (content type, request id, CORS).
    if headers.keys_len() > MAX_HEADER_NAMES {
        return None;
    }
    if version == PayloadVersion::V2 && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str, v: PayloadVersion) -> Response<Body> {
        from_outcome(Outcome::Response(json.as_bytes().to_vec()), v)
    }

    #[test]
    fn structured_results() {
        let r = ok(
            r#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["a=b"],"body":"hi"}"#,
            PayloadVersion::V2,
        );
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers()["set-cookie"], "a=b");
        let r = ok(
            r#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#,
            PayloadVersion::V1,
        );
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// More header names than a response can hold (the http crate refuses past 24,576)
    /// make a malformed result, answered 502, where they used to panic the request.
    #[test]
    fn a_result_with_too_many_headers_is_malformed() {
        let names: Vec<String> = (0..30_000).map(|n| format!("\"x-{n}\":\"v\"")).collect();
        let headers = names.join(",");
        for (field, version) in [
            (format!(r#""headers":{{{headers}}}"#), PayloadVersion::V2),
            (
                format!(
                    r#""multiValueHeaders":{{{}}}"#,
                    headers.replace(":\"v\"", ":[\"v\"]")
                ),
                PayloadVersion::V1,
            ),
        ] {
            let r = ok(&format!(r#"{{"statusCode":200,{field}}}"#), version);
            assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        }
    }

    #[test]
    fn v2_accepts_bare_json_and_v1_does_not() {
        let r = ok(r#"{"hello":"world"}"#, PayloadVersion::V2);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            ok(r#"{"hello":"world"}"#, PayloadVersion::V1).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            ok(r#"{"statusCode":"abc"}"#, PayloadVersion::V2).status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn http_responses_are_answered_as_they_are() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("image/png"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        let response = HttpResponse {
            status: StatusCode::IM_A_TEAPOT,
            headers: headers.clone(),
            body: axum::body::Bytes::from_static(&[0xff, 0]),
        };
        for version in [PayloadVersion::V2, PayloadVersion::V1] {
            let r = from_outcome(Outcome::Http(response.clone()), version);
            assert_eq!(r.status(), StatusCode::IM_A_TEAPOT);
            // The content type given is kept, and each cookie is its own line.
            assert_eq!(r.headers(), &headers);
        }
    }

    #[test]
    fn errors_and_timeouts() {
        let timeout = Outcome::platform_error("Sandbox.Timedout", "t");
        assert_eq!(
            from_outcome(timeout.clone(), PayloadVersion::V2).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            from_outcome(timeout, PayloadVersion::V1).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        let error = Outcome::platform_error("Error", "e");
        assert_eq!(
            from_outcome(error, PayloadVersion::V2).status(),
            StatusCode::BAD_GATEWAY
        );
        // A function's own error, whatever it is named, is an error, not a timeout.
        let claimed = Outcome::Error {
            error_type: "Sandbox.Timedout".to_owned(),
            payload: b"{}".to_vec(),
            platform: false,
        };
        assert_eq!(
            from_outcome(claimed, PayloadVersion::V2).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            from_invoke_error(
                &InvokeError::Throttled(nimbus_core::ThrottleLimit::Function),
                PayloadVersion::V2
            )
            .status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
