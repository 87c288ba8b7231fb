//! `[[routes]]`.

use std::collections::BTreeMap;

use nimbus_core::{
    AuthSpec, FunctionSpec, HttpMethod, PathSegment, PayloadVersion, RouteAuth, RouteKey,
    RoutePath, RouteSpec, RuntimeKind,
};

use crate::{context::Cx, decode::Field, support::Feature};

pub(crate) fn decode(
    cx: &mut Cx<'_>,
    field: Field<'_>,
    functions: &BTreeMap<String, FunctionSpec>,
    auth: &AuthSpec,
) -> Vec<RouteSpec> {
    let Some(items) = field.array(&mut cx.sink, "an array of routes ([[routes]])") else {
        return Vec::new();
    };
    // Route keys seen so far by shape, to report duplicates where the second one stands.
    let mut seen: BTreeMap<(Option<HttpMethod>, String), String> = BTreeMap::new();
    // Every distinct method and path so far, for the pairs the router refuses.
    let mut placed: Vec<(HttpMethod, RoutePath, String)> = Vec::new();
    let mut routes = Vec::new();
    for item in items {
        let Some(mut obj) = item.table(&mut cx.sink, "a route with `route` and `function`") else {
            continue;
        };
        let key = obj
            .require(&mut cx.sink, "route", "a route key such as \"POST /users\"")
            .and_then(|f| f.string(&mut cx.sink, "a route key such as \"POST /users\""));
        let function = obj
            .require(
                &mut cx.sink,
                "function",
                "the name of the function the route invokes",
            )
            .and_then(|f| f.string(&mut cx.sink, "a function name"));
        let auth_kind = obj
            .take("auth")
            .and_then(|f| f.string(&mut cx.sink, "\"none\", \"jwt\", \"api_key\" or \"lambda\""));
        let authorizer = obj
            .take("authorizer")
            .and_then(|f| f.string(&mut cx.sink, "the name of an [auth.lambda.NAME] authorizer"));
        let rate_limit = obj
            .take("rate_limit")
            .map(|f| crate::app::rate_limit(cx, f));
        let scopes_field = obj.take("scopes");
        let scopes_place = scopes_field
            .as_ref()
            .map(|f| (f.span.clone(), f.path.clone(), f.found()));
        let scopes = scopes_field.map(|f| f.strings(&mut cx.sink, "an array of scopes"));
        let payload = obj
            .take("payload")
            .and_then(|f| f.string(&mut cx.sink, "\"2.0\" or \"1.0\""));
        obj.finish(&mut cx.sink);

        let parsed_key = key.as_ref().and_then(|key| {
            let parsed = parse_route_key(&key.value);
            if let Err(expected) = &parsed {
                key.reject(&mut cx.sink, expected.clone());
            }
            parsed.ok()
        });
        if let (Some(key), Some(parsed)) = (&key, &parsed_key) {
            let shape = match parsed {
                RouteKey::Default => (None, "$default".to_owned()),
                RouteKey::Route { method, path } => (Some(*method), path.shape()),
            };
            if let Some(first) = seen.get(&shape) {
                key.reject(
                    &mut cx.sink,
                    format!("a route that no earlier route already matches (`{first}` does)"),
                );
            } else if let RouteKey::Route { method, path } = parsed
                && let Some((_, _, first)) = placed
                    .iter()
                    .find(|(m, p, _)| m == method && router_conflict(p, path))
            {
                key.reject(
                    &mut cx.sink,
                    format!(
                        "a route the router can hold beside `{first}`: a `{{name}}` and a `{{name+}}` cannot follow the same segments (a `{{name+}}` route also matches a single segment)"
                    ),
                );
            } else {
                seen.insert(shape, key.value.clone());
                if let RouteKey::Route { method, path } = parsed {
                    placed.push((*method, path.clone(), key.value.clone()));
                }
            }
        }

        let target = function.as_ref().and_then(|f| {
            if !cx.declared_functions.contains(&f.value) {
                let known: Vec<&str> = cx.declared_functions.iter().map(String::as_str).collect();
                f.reject(&mut cx.sink, declared("function", &known));
            }
            // A declared function with errors of its own has been reported already.
            functions.get(&f.value)
        });

        let lambda_route = auth_kind.as_ref().is_some_and(|k| k.value == "lambda");
        let route_auth = match auth_kind {
            None => Some(RouteAuth::None),
            Some(kind) => match kind.value.as_str() {
                "none" => Some(RouteAuth::None),
                "jwt" => {
                    let supported = cx.require_feature(
                        Feature::JwtAuth,
                        kind.span.clone(),
                        &kind.path,
                        format!("{:?}", kind.value),
                    );
                    // Declared but invalid: reported already.
                    if supported && auth.jwt.is_none() && !cx.declared_jwt {
                        kind.reject(
                            &mut cx.sink,
                            "an authorizer the app declares: add [auth.jwt]",
                        );
                    }
                    Some(RouteAuth::Jwt { scopes: Vec::new() })
                }
                "api_key" => {
                    let supported = cx.require_feature(
                        Feature::ApiKeys,
                        kind.span.clone(),
                        &kind.path,
                        format!("{:?}", kind.value),
                    );
                    // Declared but invalid: reported already.
                    if supported && auth.api_key.is_none() && !cx.declared_api_key {
                        kind.reject(
                            &mut cx.sink,
                            "an authorizer the app declares: add [auth.api_key]",
                        );
                    }
                    Some(RouteAuth::ApiKey)
                }
                "lambda" => {
                    let names: Vec<&str> =
                        cx.declared_authorizers.iter().map(String::as_str).collect();
                    match (&authorizer, names.as_slice()) {
                        (Some(a), _) if auth.lambda.contains_key(&a.value) => {
                            Some(RouteAuth::Lambda {
                                authorizer: a.value.clone(),
                            })
                        }
                        // Declared but invalid: reported already.
                        (Some(a), _) if names.contains(&a.value.as_str()) => None,
                        (Some(a), _) => {
                            let expected = declared("[auth.lambda] authorizer", &names);
                            a.reject(&mut cx.sink, expected);
                            None
                        }
                        // One authorizer declared: it is the one.
                        (None, [only]) => auth.lambda.get(*only).map(|a| RouteAuth::Lambda {
                            authorizer: a.name.clone(),
                        }),
                        (None, _) => {
                            kind.reject(
                                &mut cx.sink,
                                "`authorizer = \"NAME\"` naming one of the [auth.lambda] authorizers beside it",
                            );
                            None
                        }
                    }
                }
                _ => {
                    kind.reject(&mut cx.sink, "\"none\", \"jwt\", \"api_key\" or \"lambda\"");
                    None
                }
            },
        };
        if let Some(a) = &authorizer
            && !lambda_route
        {
            a.reject(
                &mut cx.sink,
                "no `authorizer`: it applies to `auth = \"lambda\"` routes",
            );
        }
        let route_auth = match (route_auth, scopes) {
            (auth, None) => auth,
            (Some(RouteAuth::Jwt { .. }), Some(scopes)) => scopes.map(|scopes| RouteAuth::Jwt {
                scopes: scopes.into_iter().map(|s| s.value).collect(),
            }),
            (_, Some(_)) => {
                if let Some((span, path, found)) = scopes_place {
                    cx.sink.push(
                        span,
                        path,
                        found,
                        "no `scopes`: scopes apply to `auth = \"jwt\"` routes",
                    );
                }
                None
            }
        };

        let payload = match payload {
            None => Some(PayloadVersion::V2),
            Some(p) => {
                let version = match p.value.as_str() {
                    "2.0" => Some(PayloadVersion::V2),
                    "1.0" => Some(PayloadVersion::V1),
                    _ => {
                        p.reject(&mut cx.sink, "\"2.0\" (HTTP API) or \"1.0\" (REST API)");
                        None
                    }
                };
                if target.is_some_and(|t| t.runtime.kind == RuntimeKind::Wasm) {
                    p.reject(
                        &mut cx.sink,
                        "no `payload`: wasm functions receive the HTTP request itself",
                    );
                    None
                } else {
                    version
                }
            }
        };

        let rate_limit = match rate_limit {
            None => Some(None),
            Some(limit) => limit.map(Some),
        };
        if let (Some(key), Some(target), Some(auth), Some(payload), Some(rate_limit)) =
            (parsed_key, target, route_auth, payload, rate_limit)
        {
            routes.push(RouteSpec {
                key,
                function: target.name.clone(),
                auth,
                payload,
                rate_limit,
            });
        }
    }
    routes
}

/// "one of the declared Xs: a, b" or "a declared X (none are declared)".
pub(crate) fn declared(what: &str, known: &[&str]) -> String {
    if known.is_empty() {
        format!("the name of a declared {what} (none are declared)")
    } else {
        format!("the name of a declared {what}: {}", known.join(", "))
    }
}

/// Parses `$default` or `METHOD /path`; the error says what was expected.
pub(crate) fn parse_route_key(s: &str) -> Result<RouteKey, String> {
    if s == "$default" {
        return Ok(RouteKey::Default);
    }
    let shape = "a route key \"METHOD /path\" (METHOD one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY) or \"$default\"";
    let Some((method, path)) = s.split_once(' ') else {
        return Err(shape.to_owned());
    };
    let Ok(method) = method.parse::<HttpMethod>() else {
        return Err(shape.to_owned());
    };
    let path: RoutePath = path.parse().map_err(|e| format!("a valid path: {e}"))?;
    check_path(&path)?;
    Ok(RouteKey::Route { method, path })
}

/// The most `{name}` parameters a path may have: the gateway's router (matchit 0.8)
/// renames them `{a}` to `{y}` and panics at the 26th. A greedy `{name+}` is not renamed
/// and does not count.
const MAX_PARAMS: usize = 25;

/// What the core's path syntax allows but the gateway cannot match.
fn check_path(path: &RoutePath) -> Result<(), String> {
    for segment in path.segments() {
        // The gateway matches the percent-decoded path, so an escape in a literal never
        // matches what it stands for. Characters a literal cannot hold (non-ASCII ones,
        // spaces) are refused by the path syntax itself: a parameter matches them.
        if let PathSegment::Literal(text) = segment
            && text.contains('%')
        {
            return Err(format!(
                "a valid path: segment `{text}` has `%`, but requests are matched percent-decoded, so an escape does not match the character it encodes: write the character itself, or match characters a literal cannot hold with a `{{name}}` parameter"
            ));
        }
    }
    let params = path
        .segments()
        .iter()
        .filter(|s| matches!(s, PathSegment::Param(_)))
        .count();
    if params > MAX_PARAMS {
        return Err(format!(
            "a valid path: {params} `{{name}}` parameters, more than the {MAX_PARAMS} the router holds (a greedy `{{name+}}` is not counted)"
        ));
    }
    Ok(())
}

/// Whether the gateway's router refuses to hold both paths (of the same method). It
/// refuses a `{name}` and a `{name+}` at the same position after the same segments (a
/// literal, or a parameter whatever its name), whatever follows; it holds every other
/// pair of different paths, a literal beside either kind of parameter included.
fn router_conflict(a: &RoutePath, b: &RoutePath) -> bool {
    let same = |x: &PathSegment, y: &PathSegment| match (x, y) {
        (PathSegment::Literal(x), PathSegment::Literal(y)) => x == y,
        (PathSegment::Param(_), PathSegment::Param(_))
        | (PathSegment::Greedy(_), PathSegment::Greedy(_)) => true,
        _ => false,
    };
    a.segments()
        .iter()
        .zip(b.segments())
        .find(|(x, y)| !same(x, y))
        .is_some_and(|pair| {
            matches!(
                pair,
                (PathSegment::Param(_), PathSegment::Greedy(_))
                    | (PathSegment::Greedy(_), PathSegment::Param(_))
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys() {
        assert_eq!(parse_route_key("$default"), Ok(RouteKey::Default));
        assert_eq!(
            parse_route_key("GET /users/{id}").unwrap().to_string(),
            "GET /users/{id}"
        );
        assert!(parse_route_key("get /users").is_err());
        assert!(parse_route_key("GET users").is_err());
        assert!(parse_route_key("GET  /users").is_err());
        assert!(parse_route_key("FETCH /").is_err());
    }

    #[test]
    fn literals_hold_no_escapes() {
        assert!(parse_route_key("GET /caf%C3%A9").is_err());
        assert!(parse_route_key("GET /a/{id}/100%25").is_err());
        assert!(parse_route_key("GET /a+b/~c/d:e@f").is_ok());
    }

    #[test]
    fn paths_hold_at_most_25_parameters() {
        let params = |n: usize| (0..n).map(|i| format!("/{{p{i}}}")).collect::<String>();
        assert!(parse_route_key(&format!("GET {}", params(25))).is_ok());
        assert!(parse_route_key(&format!("GET {}", params(26))).is_err());
        // The greedy segment is not renamed by the router, so it does not count.
        assert!(parse_route_key(&format!("GET {}/{{rest+}}", params(25))).is_ok());
    }

    #[test]
    fn router_conflicts_are_a_parameter_beside_a_greedy_segment() {
        let conflict = |a: &str, b: &str| {
            let (a, b): (RoutePath, RoutePath) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(router_conflict(&a, &b), router_conflict(&b, &a));
            router_conflict(&a, &b)
        };
        // The pairs matchit 0.8.4's own tests refuse.
        assert!(conflict("/users/{id}", "/users/{proxy+}"));
        assert!(conflict("/cmd/{tool}/{sub}", "/cmd/{path+}"));
        assert!(conflict("/{id}", "/{path+}"));
        assert!(conflict("/{a}/x/{b}", "/{c}/x/{d+}"));
        // The pairs it holds.
        assert!(!conflict("/users/me", "/users/{proxy+}"));
        assert!(!conflict("/users/me", "/users/{id}"));
        assert!(!conflict("/users", "/users/{proxy+}"));
        assert!(!conflict("/", "/{proxy+}"));
        assert!(!conflict("/a/{id}", "/b/{proxy+}"));
        assert!(!conflict("/{a}/foo", "/{b}/bar"));
        assert!(!conflict("/users/{id}/posts", "/users/{uid}/{rest+}"));
    }
}
