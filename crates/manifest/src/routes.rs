//! `[[routes]]`.

use std::collections::BTreeMap;

use nimbus_core::{
    AuthSpec, FunctionSpec, HttpMethod, PayloadVersion, RouteAuth, RouteKey, RoutePath, RouteSpec,
    RuntimeKind,
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
            } else {
                seen.insert(shape, key.value.clone());
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
                    if supported && auth.jwt.is_none() {
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
                    if supported && auth.api_key.is_none() {
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
    Ok(RouteKey::Route { method, path })
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
}
