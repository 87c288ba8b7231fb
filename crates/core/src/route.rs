//! Routes: how the gateway maps HTTP requests to functions.

use std::{fmt, str::FromStr};

use serde::{Serialize, Serializer};

/// An HTTP method a route matches; `Any` matches every method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `HEAD`
    Head,
    /// `OPTIONS`
    Options,
    /// `ANY`: every method.
    Any,
}

impl HttpMethod {
    /// Every method, for error messages.
    pub const ALL: [HttpMethod; 8] = [
        HttpMethod::Get,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
        HttpMethod::Head,
        HttpMethod::Options,
        HttpMethod::Any,
    ];

    /// The method's name as written in a route key.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Head => "HEAD",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Any => "ANY",
        }
    }
}

impl FromStr for HttpMethod {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HttpMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or(())
    }
}

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// Matches exactly this text.
    Literal(String),
    /// `{name}`: matches one segment and binds it.
    Param(String),
    /// `{name+}`: the last segment, matching the rest of the path.
    Greedy(String),
}

/// A route path such as `/users/{id}` or `/{proxy+}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePath {
    segments: Vec<PathSegment>,
}

/// Why a route path is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePathError {
    /// The path does not begin with `/`.
    NoLeadingSlash,
    /// `//`, or a `/` at the end of a path other than `/`.
    EmptySegment,
    /// A `{`/`}` that does not enclose a whole segment, or a bad parameter name.
    BadParam(String),
    /// A literal segment with characters a URL path cannot hold unescaped.
    BadLiteral(String),
    /// A `{name+}` that is not the last segment.
    GreedyNotLast(String),
    /// The same parameter twice.
    DuplicateParam(String),
}

impl fmt::Display for RoutePathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePathError::NoLeadingSlash => f.write_str("a path must begin with `/`"),
            RoutePathError::EmptySegment => {
                f.write_str("a path may not contain `//` or end with `/` (except `/` itself)")
            }
            RoutePathError::BadParam(s) => write!(
                f,
                "segment `{s}` is not a literal, `{{name}}` or `{{name+}}` (names are letters, digits, `_`, `-`, `.`)"
            ),
            RoutePathError::BadLiteral(s) => write!(
                f,
                "segment `{s}` has characters a URL path cannot hold (spaces, `?`, `#`, ...)"
            ),
            RoutePathError::GreedyNotLast(s) => {
                write!(f, "greedy segment `{s}` must be the last segment")
            }
            RoutePathError::DuplicateParam(s) => {
                write!(f, "parameter `{s}` appears twice")
            }
        }
    }
}

/// RFC 3986 `pchar`: unreserved, percent-encoded, sub-delims, `:` and `@`.
fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@".contains(&b)
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl FromStr for RoutePath {
    type Err = RoutePathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix('/').ok_or(RoutePathError::NoLeadingSlash)?;
        if rest.is_empty() {
            return Ok(RoutePath {
                segments: Vec::new(),
            });
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(RoutePathError::EmptySegment);
            }
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(inner) => {
                    let (name, greedy) = match inner.strip_suffix('+') {
                        Some(name) => (name, true),
                        None => (inner, false),
                    };
                    if !is_param_name(name) {
                        return Err(RoutePathError::BadParam((*part).to_owned()));
                    }
                    if names.contains(&name) {
                        return Err(RoutePathError::DuplicateParam(name.to_owned()));
                    }
                    names.push(name);
                    if greedy {
                        if i + 1 != parts.len() {
                            return Err(RoutePathError::GreedyNotLast((*part).to_owned()));
                        }
                        PathSegment::Greedy(name.to_owned())
                    } else {
                        PathSegment::Param(name.to_owned())
                    }
                }
                None if part.contains(['{', '}']) => {
                    return Err(RoutePathError::BadParam((*part).to_owned()));
                }
                None if !part.bytes().all(is_path_char) => {
                    return Err(RoutePathError::BadLiteral((*part).to_owned()));
                }
                None => PathSegment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        Ok(RoutePath { segments })
    }
}

impl RoutePath {
    /// The segments, in order; empty for `/`.
    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// The path with parameter names erased (`/users/{}`), so that two paths that match the
    /// same requests compare equal.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                PathSegment::Literal(text) => out.push_str(text),
                PathSegment::Param(_) => out.push_str("{}"),
                PathSegment::Greedy(_) => out.push_str("{+}"),
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

impl fmt::Display for RoutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            match segment {
                PathSegment::Literal(text) => write!(f, "/{text}")?,
                PathSegment::Param(name) => write!(f, "/{{{name}}}")?,
                PathSegment::Greedy(name) => write!(f, "/{{{name}+}}")?,
            }
        }
        Ok(())
    }
}

/// What a route matches: a method and path, or `$default` for whatever no route matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteKey {
    /// `METHOD /path`.
    Route {
        /// The method, or `Any`.
        method: HttpMethod,
        /// The path pattern.
        path: RoutePath,
    },
    /// `$default`: requests that match no other route.
    Default,
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteKey::Route { method, path } => write!(f, "{} {path}", method.as_str()),
            RouteKey::Default => f.write_str("$default"),
        }
    }
}

impl Serialize for RouteKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which API Gateway event format a process function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PayloadVersion {
    /// REST API proxy integration format (1.0).
    #[serde(rename = "1.0")]
    V1,
    /// HTTP API format (2.0), the default.
    #[serde(rename = "2.0")]
    V2,
}

/// How a route authenticates callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAuth {
    /// Anyone may call.
    None,
    /// A valid JWT from the app's `[auth.jwt]` issuer, with these scopes.
    Jwt {
        /// Scopes the token must carry (any one of them, as API Gateway checks).
        scopes: Vec<String>,
    },
    /// A key from the app's API keys, in the `[auth.api_key]` header.
    ApiKey,
    /// The decision of a Lambda authorizer from `[auth.lambda.NAME]`.
    Lambda {
        /// The authorizer's name.
        authorizer: String,
    },
}

/// A route the app declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSpec {
    /// What it matches.
    pub key: RouteKey,
    /// The function it invokes.
    pub function: String,
    /// Who may call it.
    pub auth: RouteAuth,
    /// The event format the function receives.
    pub payload: PayloadVersion,
    /// Requests per second for the route as a whole, if limited.
    pub rate_limit: Option<crate::RateLimit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_gateway_paths() {
        let path: RoutePath = "/users/{id}/files/{key+}".parse().unwrap();
        assert_eq!(path.shape(), "/users/{}/files/{+}");
        assert_eq!(path.to_string(), "/users/{id}/files/{key+}");
        assert_eq!("/".parse::<RoutePath>().unwrap().shape(), "/");
    }

    #[test]
    fn rejects_malformed_paths() {
        use RoutePathError::*;
        assert_eq!("users".parse::<RoutePath>(), Err(NoLeadingSlash));
        assert_eq!("/users/".parse::<RoutePath>(), Err(EmptySegment));
        assert_eq!("/a//b".parse::<RoutePath>(), Err(EmptySegment));
        assert_eq!("/a{b}".parse::<RoutePath>(), Err(BadParam("a{b}".into())));
        assert_eq!("/{}".parse::<RoutePath>(), Err(BadParam("{}".into())));
        assert_eq!(
            "/{p+}/x".parse::<RoutePath>(),
            Err(GreedyNotLast("{p+}".into()))
        );
        assert_eq!(
            "/{a}/{a}".parse::<RoutePath>(),
            Err(DuplicateParam("a".into()))
        );
        assert_eq!("/a b".parse::<RoutePath>(), Err(BadLiteral("a b".into())));
        assert_eq!("/a?b".parse::<RoutePath>(), Err(BadLiteral("a?b".into())));
    }
}
