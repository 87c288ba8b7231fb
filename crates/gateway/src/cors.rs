//! CORS for the whole API, as API Gateway HTTP APIs apply their CORS configuration: the
//! gateway answers preflight requests itself (whatever the routes), adds the configured
//! headers to responses for requests that carry an `Origin`, and drops CORS headers the
//! function set.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header},
};
use nimbus_core::CorsSpec;

/// The app's CORS policy.
pub(crate) struct Cors {
    spec: CorsSpec,
}

fn joined(items: &[String]) -> Option<HeaderValue> {
    HeaderValue::from_str(&items.join(",")).ok()
}

impl Cors {
    pub(crate) fn new(spec: CorsSpec) -> Cors {
        Cors { spec }
    }

    /// Whether `origin` is allowed: `*`, an exact origin (case-insensitive), or the
    /// scheme wildcards `https://*` and `http://*`.
    fn allows(&self, origin: &str) -> bool {
        self.spec.allow_origins.iter().any(|allowed| {
            allowed == "*"
                || allowed.eq_ignore_ascii_case(origin)
                || allowed
                    .strip_suffix('*')
                    .filter(|scheme| scheme.ends_with("://"))
                    .is_some_and(|scheme| {
                        origin.len() > scheme.len()
                            && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                    })
        })
    }

    /// The allowed request origin, if the request carries one that is allowed.
    fn origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        self.allows(origin.to_str().ok()?).then_some(origin)
    }

    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        // With credentials a browser refuses `*`: echo the origin instead.
        if self.spec.allow_origins.iter().any(|o| o == "*") && !self.spec.allow_credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight request (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), or `None` for any other request.
    pub(crate) fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response<Body>> {
        if method != Method::OPTIONS
            || !headers.contains_key(header::ORIGIN)
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let Some(origin) = self.origin(headers) else {
            // Not an allowed origin: no CORS headers, and the browser refuses.
            return Some(response);
        };
        let out = response.headers_mut();
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        out.insert(header::VARY, HeaderValue::from_static("origin"));
        let wildcard = |items: &[String]| items.iter().any(|i| i == "*");
        // `*` in methods or headers allows whatever the browser asks for.
        let methods = if wildcard(&self.spec.allow_methods) {
            headers.get(header::ACCESS_CONTROL_REQUEST_METHOD).cloned()
        } else {
            joined(&self.spec.allow_methods)
        };
        if let Some(methods) = methods.filter(|m| !m.is_empty()) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        let allowed_headers = if wildcard(&self.spec.allow_headers) {
            headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned()
        } else {
            joined(&self.spec.allow_headers)
        };
        if let Some(h) = allowed_headers.filter(|h| !h.is_empty()) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h);
        }
        if let Some(age) = self.spec.max_age {
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(age.as_secs()),
            );
        }
        if self.spec.allow_credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        Some(response)
    }

    /// Puts the policy's headers on a response to a request with `request_headers`,
    /// replacing any CORS headers the function set.
    pub(crate) fn decorate(&self, request_headers: &HeaderMap, response: &mut Response<Body>) {
        let out = response.headers_mut();
        for name in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            out.remove(name);
        }
        let Some(origin) = self.origin(request_headers) else {
            return;
        };
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        out.append(header::VARY, HeaderValue::from_static("origin"));
        if self.spec.allow_credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = joined(&self.spec.expose_headers).filter(|v| !v.is_empty()) {
            out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::new(CorsSpec {
            allow_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allow_methods: vec!["GET".to_owned(), "POST".to_owned()],
            allow_headers: vec!["content-type".to_owned()],
            expose_headers: vec!["x-request-id".to_owned()],
            max_age: Some(Duration::from_secs(600)),
            allow_credentials: credentials,
        })
    }

    fn request(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn preflights_are_answered_for_allowed_origins() {
        let c = cors(&["https://shop.example.com"], true);
        let h = request(&[
            ("origin", "https://shop.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        let r = c.preflight(&Method::OPTIONS, &h).unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let out = r.headers();
        assert_eq!(
            out["access-control-allow-origin"],
            "https://shop.example.com"
        );
        assert_eq!(out["access-control-allow-methods"], "GET,POST");
        assert_eq!(out["access-control-allow-headers"], "content-type");
        assert_eq!(out["access-control-max-age"], "600");
        assert_eq!(out["access-control-allow-credentials"], "true");
        // Another origin: answered, without CORS headers.
        let other = request(&[
            ("origin", "https://evil.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        let r = c.preflight(&Method::OPTIONS, &other).unwrap();
        assert!(!r.headers().contains_key("access-control-allow-origin"));
        // Not a preflight.
        assert!(c.preflight(&Method::OPTIONS, &request(&[])).is_none());
        assert!(c.preflight(&Method::GET, &h).is_none());
    }

    #[test]
    fn wildcards_match_as_api_gateway_documents() {
        let c = cors(&["https://*"], false);
        assert!(c.allows("https://a.example.com"));
        assert!(!c.allows("http://a.example.com"));
        assert!(cors(&["*"], false).allows("http://anything"));
    }

    #[test]
    fn responses_get_the_policy_not_the_functions_headers() {
        let c = cors(&["*"], false);
        let mut r = Response::new(Body::empty());
        r.headers_mut().insert(
            "access-control-allow-origin",
            HeaderValue::from_static("https://x"),
        );
        c.decorate(&request(&[("origin", "https://a.example.com")]), &mut r);
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert_eq!(r.headers()["access-control-expose-headers"], "x-request-id");
        // No Origin: no CORS headers at all.
        let mut r = Response::new(Body::empty());
        r.headers_mut().insert(
            "access-control-allow-origin",
            HeaderValue::from_static("https://x"),
        );
        c.decorate(&HeaderMap::new(), &mut r);
        assert!(!r.headers().contains_key("access-control-allow-origin"));
    }
}
