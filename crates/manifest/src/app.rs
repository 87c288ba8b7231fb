//! The document root, `[auth]` and `[cors]`, and the order sections are decoded in.

use std::time::Duration;

use std::collections::BTreeMap;

use nimbus_core::{
    ApiKeyAuthSpec, ApiKeySpec, ApiKeyValue, AppSpec, AuthSpec, CorsSpec, JwtAuthSpec, JwtKeys,
    LambdaAuthorizerSpec, RateLimit, UsagePlan,
};

use crate::{
    context::Cx,
    decode::{Field, Obj},
    diagnostic::Span,
    events, functions, routes,
    support::Feature,
    tables,
};

/// Decodes the whole document; `None` when something was wrong (the problems are in the
/// sink).
pub(crate) fn decode(cx: &mut Cx<'_>, mut root: Obj<'_>) -> Option<AppSpec> {
    let name = root
        .require(&mut cx.sink, "name", "the app's name, such as \"user-registration\"")
        .and_then(|f| f.string(&mut cx.sink, "the app's name"))
        .and_then(|s| {
            let ok = (1..=64).contains(&s.value.len())
                && s.value.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            if !ok {
                s.reject(
                    &mut cx.sink,
                    "an app name of 1 to 64 letters, digits, `-` or `_`, starting with a letter or digit",
                );
            }
            ok.then_some(s.value)
        });
    // Sections are read in dependency order: routes and events refer to functions,
    // tables and authorizers.
    let tables = root
        .take("tables")
        .map(|f| tables::decode(cx, f))
        .unwrap_or_default();
    let functions = root
        .take("functions")
        .map(|f| functions::decode(cx, f))
        .unwrap_or_default();
    let auth = root
        .take("auth")
        .map_or_else(AuthSpec::default, |f| auth(cx, f));
    let cors = root.take("cors").and_then(|f| cors(cx, f));
    let routes = root
        .take("routes")
        .map(|f| routes::decode(cx, f, &functions, &auth))
        .unwrap_or_default();
    let events = root
        .take("events")
        .map(|f| events::decode(cx, f, &functions, &tables))
        .unwrap_or_default();
    root.finish(&mut cx.sink);
    Some(AppSpec {
        name: name?,
        tables,
        functions,
        routes,
        events,
        auth,
        cors,
    })
}

fn auth(cx: &mut Cx<'_>, field: Field<'_>) -> AuthSpec {
    let mut spec = AuthSpec::default();
    let Some(mut obj) = field.table(
        &mut cx.sink,
        "a table with [auth.jwt], [auth.api_key] or [auth.lambda.NAME]",
    ) else {
        return spec;
    };
    if let Some(f) = obj.take("jwt") {
        cx.declared_jwt = true;
        let (span, path) = (f.span.clone(), f.path.clone());
        if cx.require_feature(
            Feature::JwtAuth,
            span.clone(),
            &path,
            "[auth.jwt]".to_owned(),
        ) {
            spec.jwt = reported(cx, span, path, |cx| jwt(cx, f));
        }
    }
    if let Some(f) = obj.take("api_key") {
        cx.declared_api_key = true;
        let (span, path) = (f.span.clone(), f.path.clone());
        if cx.require_feature(
            Feature::ApiKeys,
            span.clone(),
            &path,
            "[auth.api_key]".to_owned(),
        ) {
            spec.api_key = reported(cx, span, path, |cx| api_key(cx, f));
        }
    }
    if let Some(f) = obj.take("lambda")
        && let Some(table) = f.table(&mut cx.sink, "a table of authorizers: [auth.lambda.NAME]")
    {
        for (name, f) in table.entries() {
            cx.declared_authorizers.insert(name.value.clone());
            let (span, path) = (name.span.clone(), name.path.clone());
            if let Some(authorizer) =
                reported(cx, span, path, |cx| lambda_authorizer(cx, &name.value, f))
            {
                spec.lambda.insert(name.value.clone(), authorizer);
            }
        }
    }
    obj.finish(&mut cx.sink);
    spec
}

/// Decodes a declared authorizer and makes sure a refusal fails the manifest. Routes that
/// use a declared but invalid authorizer are not reported again (and `auth = "lambda"`
/// ones are dropped), so an authorizer refused without a problem in the sink would leave
/// its routes unprotected or missing while the manifest passed.
fn reported<T>(
    cx: &mut Cx<'_>,
    span: Span,
    path: String,
    decode: impl FnOnce(&mut Cx<'_>) -> Option<T>,
) -> Option<T> {
    let before = cx.sink.count();
    let decoded = decode(cx);
    if decoded.is_none() && cx.sink.count() == before {
        cx.sink.push(
            span,
            path,
            "an authorizer Nimbus cannot use",
            "a valid authorizer",
        );
    }
    decoded
}

/// `{ rate = N, burst = M }`: a token bucket.
pub(crate) fn rate_limit(cx: &mut Cx<'_>, field: Field<'_>) -> Option<RateLimit> {
    let mut obj = field.table(&mut cx.sink, "a table such as { rate = 10, burst = 20 }")?;
    let rate = obj
        .require(&mut cx.sink, "rate", "requests per second")
        .and_then(|f| f.int(&mut cx.sink, 1..=1_000_000));
    let burst = obj
        .require(&mut cx.sink, "burst", "requests at once")
        .and_then(|f| f.int(&mut cx.sink, 1..=1_000_000));
    obj.finish(&mut cx.sink);
    Some(RateLimit {
        rate: rate?,
        burst: burst?,
    })
}

fn lambda_authorizer(
    cx: &mut Cx<'_>,
    name: &str,
    field: Field<'_>,
) -> Option<LambdaAuthorizerSpec> {
    let mut obj = field.table(
        &mut cx.sink,
        "a table such as { function = \"authorize\", identity_source = [\"$request.header.authorization\"] }",
    )?;
    let function = obj
        .require(
            &mut cx.sink,
            "function",
            "the function that authorizes requests",
        )
        .and_then(|f| f.string(&mut cx.sink, "a function name"))
        .and_then(|f| {
            if cx.declared_functions.contains(&f.value) {
                Some(f.value)
            } else {
                let known: Vec<&str> = cx.declared_functions.iter().map(String::as_str).collect();
                f.reject(&mut cx.sink, routes::declared("function", &known));
                None
            }
        });
    let identity_source = obj.take("identity_source").map_or_else(
        || Some(vec!["$request.header.authorization".to_owned()]),
        |f| {
            let (span, path) = (f.span.clone(), f.path.clone());
            let items = f.strings(
                &mut cx.sink,
                "an array such as [\"$request.header.authorization\"]",
            )?;
            // Without a source every request would carry the same (empty) identity.
            if items.is_empty() {
                cx.sink.push(
                    span,
                    path,
                    "an empty array",
                    "at least one identity source: $request.header.NAME or $request.querystring.NAME",
                );
                return None;
            }
            let mut ok = true;
            for item in &items {
                let valid = ["$request.header.", "$request.querystring."]
                    .iter()
                    .any(|p| item.value.strip_prefix(p).is_some_and(|n| !n.is_empty()));
                if !valid {
                    item.reject(
                        &mut cx.sink,
                        "$request.header.NAME or $request.querystring.NAME",
                    );
                    ok = false;
                }
            }
            ok.then(|| items.into_iter().map(|s| s.value).collect())
        },
    );
    let ttl = obj.take("ttl").map_or(Some(Duration::from_secs(300)), |f| {
        f.duration(&mut cx.sink, Duration::ZERO..=Duration::from_secs(3600))
    });
    obj.finish(&mut cx.sink);
    Some(LambdaAuthorizerSpec {
        name: name.to_owned(),
        function: function?,
        identity_source: identity_source?,
        ttl: ttl?,
    })
}

/// Algorithms the JWT authorizer may accept; `none` never is.
const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

fn jwt(cx: &mut Cx<'_>, field: Field<'_>) -> Option<JwtAuthSpec> {
    let mut obj = field.table(
        &mut cx.sink,
        "a table with `issuer`, `audiences` and a key source",
    )?;
    let issuer = obj
        .require(&mut cx.sink, "issuer", "the `iss` tokens must carry")
        .and_then(|f| {
            f.string(
                &mut cx.sink,
                "the issuer, such as \"https://issuer.example.com/\"",
            )
        });
    let audiences = obj
        .require(&mut cx.sink, "audiences", "the accepted `aud` values")
        .and_then(|f| {
            let span = f.span.clone();
            let path = f.path.clone();
            let list = f.strings(&mut cx.sink, "an array of audiences")?;
            if list.is_empty() {
                cx.sink
                    .push(span, path, "an empty array", "at least one audience");
                return None;
            }
            Some(list.into_iter().map(|s| s.value).collect::<Vec<_>>())
        });
    let algorithms_field = obj.take("algorithms");
    let algorithms_place = algorithms_field
        .as_ref()
        .map_or((obj.span.clone(), obj.path.clone()), |f| {
            (f.span.clone(), f.path.clone())
        });
    let algorithms = algorithms_field.map_or_else(
        || Some(vec!["RS256".to_owned()]),
        |f| {
            let (span, path) = (f.span.clone(), f.path.clone());
            let list = f.strings(&mut cx.sink, "an array of algorithms such as [\"RS256\"]")?;
            let mut ok = true;
            if list.is_empty() {
                cx.sink
                    .push(span, path, "an empty array", "at least one algorithm");
                ok = false;
            }
            for alg in &list {
                if !JWT_ALGORITHMS.contains(&alg.value.as_str()) {
                    alg.reject(
                        &mut cx.sink,
                        format!("a signing algorithm: one of {}", JWT_ALGORITHMS.join(", ")),
                    );
                    ok = false;
                }
            }
            ok.then(|| list.into_iter().map(|s| s.value).collect::<Vec<_>>())
        },
    );
    let leeway = obj
        .take("leeway")
        .map_or(Some(Duration::from_secs(30)), |f| {
            f.duration(&mut cx.sink, Duration::ZERO..=Duration::from_secs(300))
        });
    let mut sources = Vec::new();
    for key in ["jwks_file", "jwks_url", "public_key_pem", "secret_env"] {
        if let Some(f) = obj.take(key)
            && let Some(s) = f.string(&mut cx.sink, "a string")
        {
            sources.push((key, s));
        }
    }
    let span = obj.span.clone();
    let path = obj.path.clone();
    obj.finish(&mut cx.sink);
    let keys = match sources.as_slice() {
        [(key, s)] => match *key {
            "jwks_file" | "public_key_pem" => {
                let file = cx.resolve(&s.value);
                if file.is_file() {
                    Some(if *key == "jwks_file" {
                        JwtKeys::JwksFile(file)
                    } else {
                        JwtKeys::PublicKeyPem(file)
                    })
                } else {
                    s.reject(&mut cx.sink, "a file that exists, relative to nimbus.toml");
                    None
                }
            }
            "jwks_url" => {
                if s.value.starts_with("https://") || is_local_http(&s.value) {
                    Some(JwtKeys::JwksUrl(s.value.clone()))
                } else {
                    s.reject(
                        &mut cx.sink,
                        "an https:// URL, or http:// with the host exactly localhost, 127.0.0.1 or [::1] (keys fetched in clear text from elsewhere could be swapped in transit)",
                    );
                    None
                }
            }
            _ => {
                let ok = s
                    .value
                    .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && s.value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if ok {
                    Some(JwtKeys::SecretEnv(s.value.clone()))
                } else {
                    s.reject(
                        &mut cx.sink,
                        "the name of an environment variable holding the secret",
                    );
                    None
                }
            }
        },
        found => {
            cx.sink.push(
                span,
                path,
                format!("{} key sources", found.len()),
                "exactly one of `jwks_file`, `jwks_url`, `public_key_pem` or `secret_env`",
            );
            None
        }
    };
    let algorithms = algorithms?;
    let keys = keys?;
    // An HMAC secret must not verify asymmetric algorithms and the reverse: mixing them
    // is the algorithm-confusion attack.
    let symmetric = matches!(keys, JwtKeys::SecretEnv(_));
    if let Some(bad) = algorithms.iter().find(|a| a.starts_with("HS") != symmetric) {
        let expected = if symmetric {
            "HS256, HS384 or HS512 with `secret_env`"
        } else {
            "asymmetric algorithms with public keys (HS* needs `secret_env`)"
        };
        let (span, path) = algorithms_place;
        cx.sink.push(span, path, format!("{bad:?}"), expected);
        return None;
    }
    Some(JwtAuthSpec {
        issuer: issuer?.value,
        audiences: audiences?,
        algorithms,
        keys,
        leeway: leeway?,
    })
}

fn api_key(cx: &mut Cx<'_>, field: Field<'_>) -> Option<ApiKeyAuthSpec> {
    let mut obj = field.table(
        &mut cx.sink,
        "a table such as { header = \"x-api-key\", keys = [...] }",
    )?;
    let header = obj
        .take("header")
        .map_or(Some("x-api-key".to_owned()), |f| {
            let s = f.string(&mut cx.sink, "a header name")?;
            if is_token(&s.value) {
                Some(s.value.to_ascii_lowercase())
            } else {
                s.reject(&mut cx.sink, "an HTTP header name");
                None
            }
        });
    let mut plans = BTreeMap::new();
    // Every plan name, valid or not: a key naming an invalid plan is not reported again.
    let mut declared = Vec::new();
    if let Some(f) = obj.take("plans")
        && let Some(table) = f.table(
            &mut cx.sink,
            "a table of usage plans: [auth.api_key.plans.NAME]",
        )
    {
        for (name, f) in table.entries() {
            declared.push(name.value.clone());
            if let Some(plan) = usage_plan(cx, f) {
                plans.insert(name.value.clone(), plan);
            }
        }
    }
    let keys = obj
        .require(&mut cx.sink, "keys", "the API keys callers may present")
        .and_then(|f| {
            f.array(
                &mut cx.sink,
                "an array of keys such as [{ name = \"partner\", value_env = \"PARTNER_KEY\" }]",
            )
        })
        .map(|items| {
            let mut keys = Vec::new();
            let mut ok = true;
            let mut seen = SeenKeys::default();
            for item in items {
                match api_key_entry(cx, item, &plans, &declared, &mut seen) {
                    Some(key) => keys.push(key),
                    None => ok = false,
                }
            }
            ok.then_some(keys)
        });
    obj.finish(&mut cx.sink);
    Some(ApiKeyAuthSpec {
        header: header?,
        keys: keys??,
        plans,
    })
}

fn usage_plan(cx: &mut Cx<'_>, field: Field<'_>) -> Option<UsagePlan> {
    let mut obj = field.table(
        &mut cx.sink,
        "a table such as { rate = 10, burst = 20, quota_per_day = 1000 }",
    )?;
    let rate = obj.take("rate").map(|f| f.int(&mut cx.sink, 1..=1_000_000));
    let burst = obj
        .take("burst")
        .map(|f| f.int(&mut cx.sink, 1..=1_000_000));
    let quota = obj
        .take("quota_per_day")
        .map(|f| f.int(&mut cx.sink, 1..=u32::MAX));
    let (span, path) = (obj.span.clone(), obj.path.clone());
    obj.finish(&mut cx.sink);
    let rate_limit = match (rate, burst) {
        (None, None) => None,
        (Some(rate), Some(burst)) => Some(RateLimit {
            rate: rate?,
            burst: burst?,
        }),
        _ => {
            cx.sink.push(
                span,
                path,
                "only one of `rate` and `burst`",
                "both `rate` and `burst`, or neither",
            );
            return None;
        }
    };
    Some(UsagePlan {
        rate_limit,
        quota_per_day: match quota {
            None => None,
            Some(q) => Some(u64::from(q?)),
        },
    })
}

/// Shortest literal API key accepted (API Gateway's minimum is 20 characters).
const MIN_KEY_LENGTH: usize = 20;

/// The keys read so far, each by the path of the first key that has it. The gateway finds
/// a key by its value and names it by its name (in logs, `apiKeyId` and quotas): two keys
/// sharing either would be merged, the last one winning with its plan.
#[derive(Default)]
struct SeenKeys {
    names: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
    envs: BTreeMap<String, String>,
}

fn api_key_entry(
    cx: &mut Cx<'_>,
    field: Field<'_>,
    plans: &BTreeMap<String, UsagePlan>,
    declared: &[String],
    seen: &mut SeenKeys,
) -> Option<ApiKeySpec> {
    let mut obj = field.table(
        &mut cx.sink,
        "a key such as { name = \"partner\", value_env = \"PARTNER_KEY\", plan = \"basic\" }",
    )?;
    let name = obj
        .require(&mut cx.sink, "name", "the key's name")
        .and_then(|f| f.string(&mut cx.sink, "a name"));
    let value = obj
        .take("value")
        .and_then(|f| f.string(&mut cx.sink, "the key itself"));
    let value_env = obj
        .take("value_env")
        .and_then(|f| f.string(&mut cx.sink, "an environment variable name"));
    let plan = obj
        .take("plan")
        .and_then(|f| f.string(&mut cx.sink, "a plan name"));
    let (span, path) = (obj.span.clone(), obj.path.clone());
    obj.finish(&mut cx.sink);
    let name = name.and_then(|n| match seen.names.get(&n.value) {
        Some(first) => {
            n.reject(
                &mut cx.sink,
                format!("a name no other key has (`{first}` has it)"),
            );
            None
        }
        None => {
            seen.names.insert(n.value.clone(), path.clone());
            Some(n)
        }
    });
    let value = match (value, value_env) {
        (Some(v), None) => {
            if v.value.len() < MIN_KEY_LENGTH || v.value.chars().any(char::is_whitespace) {
                v.reject(
                    &mut cx.sink,
                    format!("a key of at least {MIN_KEY_LENGTH} characters without spaces"),
                );
                None
            } else if let Some(first) = seen.values.get(&v.value) {
                // The value is a secret: the message names the other key, not the value.
                cx.sink.push(
                    v.span,
                    v.path,
                    format!("the value of `{first}`"),
                    "a value no other key has",
                );
                None
            } else {
                seen.values.insert(v.value.clone(), path.clone());
                Some(ApiKeyValue::Literal(v.value))
            }
        }
        (None, Some(e)) => match seen.envs.get(&e.value) {
            Some(first) => {
                e.reject(
                    &mut cx.sink,
                    format!("a variable no other key reads (`{first}` reads it)"),
                );
                None
            }
            None => {
                seen.envs.insert(e.value.clone(), path.clone());
                Some(ApiKeyValue::Env(e.value))
            }
        },
        (a, b) => {
            let found = if a.is_some() && b.is_some() {
                "both `value` and `value_env`"
            } else {
                "neither `value` nor `value_env`"
            };
            cx.sink
                .push(span, path, found, "exactly one of `value` and `value_env`");
            None
        }
    };
    let plan = match plan {
        None => Some(None),
        Some(p) if plans.contains_key(&p.value) => Some(Some(p.value)),
        Some(p) => {
            if !declared.contains(&p.value) {
                let known: Vec<&str> = declared.iter().map(String::as_str).collect();
                p.reject(&mut cx.sink, routes::declared("usage plan", &known));
            }
            None
        }
    };
    Some(ApiKeySpec {
        name: name?.value,
        value: value?,
        plan: plan?,
    })
}

/// Whether `url` is plain `http://` to this machine: keys fetched in clear text could be
/// swapped in transit, so only a key server here may be reached that way. The authority
/// (up to the first `/`, `?` or `#`) must be exactly `localhost`, `127.0.0.1` or `[::1]`
/// and an optional port; anything else, such as `localhost.evil.example`, a user info
/// (`localhost@evil.example`) or a `\` (a path separator to the fetching client), is
/// refused rather than interpreted.
fn is_local_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .find_map(|host| authority.strip_prefix(host));
    match port {
        Some("") => true,
        Some(port) => port.strip_prefix(':').is_some_and(|p| {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0)
        }),
        None => false,
    }
}

/// An HTTP token (RFC 9110): header names and methods.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn cors(cx: &mut Cx<'_>, field: Field<'_>) -> Option<CorsSpec> {
    let (span, path) = (field.span.clone(), field.path.clone());
    let supported = cx.require_feature(Feature::Cors, span, &path, "[cors]".to_owned());
    let mut obj = field.table(&mut cx.sink, "a table with `allow_origins`")?;
    let mut list = |obj: &mut Obj<'_>, key: &'static str, tokens: bool| {
        obj.take(key).map_or(Some(Vec::new()), |f| {
            let items = f.strings(&mut cx.sink, "an array of strings")?;
            let mut ok = true;
            for item in &items {
                if tokens && item.value != "*" && !is_token(&item.value) {
                    item.reject(&mut cx.sink, "an HTTP token or \"*\"");
                    ok = false;
                }
            }
            ok.then(|| items.into_iter().map(|s| s.value).collect::<Vec<_>>())
        })
    };
    let allow_origins = list(&mut obj, "allow_origins", false);
    let allow_methods = list(&mut obj, "allow_methods", true);
    let allow_headers = list(&mut obj, "allow_headers", true);
    let expose_headers = list(&mut obj, "expose_headers", true);
    let max_age = obj
        .take("max_age")
        .map(|f| f.duration(&mut cx.sink, Duration::ZERO..=Duration::from_secs(86_400)));
    let allow_credentials = obj
        .take("allow_credentials")
        .map_or(Some(false), |f| f.bool(&mut cx.sink));
    let (span, path) = (obj.span.clone(), obj.path.clone());
    obj.finish(&mut cx.sink);
    let spec = CorsSpec {
        allow_origins: allow_origins?,
        allow_methods: allow_methods?,
        allow_headers: allow_headers?,
        expose_headers: expose_headers?,
        max_age: max_age.map_or(Some(None), |d| d.map(Some))?,
        allow_credentials: allow_credentials?,
    };
    // A scheme wildcard (`https://*`) admits every site of that scheme: with credentials
    // it would hand any such site the user's credentialed responses, as `*` would.
    if spec.allow_credentials
        && let Some(wildcard) = spec
            .allow_origins
            .iter()
            .find(|o| *o == "*" || o.ends_with("://*"))
    {
        cx.sink.push(
            span,
            path,
            format!("allow_credentials = true with allow_origins containing \"{wildcard}\""),
            "explicit origins when credentials are allowed (a wildcard would let any site read credentialed responses)",
        );
        return None;
    }
    supported.then_some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_key_servers_are_this_machine_only() {
        for local in [
            "http://localhost/jwks.json",
            "http://localhost",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]:9000/.well-known/jwks.json",
            "http://localhost?x=1",
        ] {
            assert!(is_local_http(local), "{local}");
        }
        for remote in [
            "http://localhost.evil.example/",
            "http://localhost@evil.example/",
            "http://localhost:80@evil.example/",
            "http://user@localhost/",
            "http://127.0.0.1.nip.io/",
            "http://[::1].evil.example/",
            "http://localhost\\@evil.example/",
            "http://localhost:/",
            "http://localhost:+80/",
            "http://localhost:0/",
            "http://localhost:65536/",
            "http://LOCALHOST/",
            "http://evil.example/localhost",
            "https://localhost/",
        ] {
            assert!(!is_local_http(remote), "{remote}");
        }
    }

    #[test]
    fn an_authorizer_refused_without_a_problem_fails_the_manifest() {
        let mut cx = Cx {
            sink: Default::default(),
            base_dir: std::path::Path::new("."),
            support: crate::Support::everything(),
            declared_functions: Default::default(),
            declared_tables: Default::default(),
            declared_authorizers: Default::default(),
            declared_jwt: false,
            declared_api_key: false,
        };
        let silent: Option<()> = reported(&mut cx, 0..4, "auth.jwt".to_owned(), |_| None);
        assert_eq!(silent, None);
        assert_eq!(cx.sink.count(), 1);
        // A refusal that was reported is not reported twice.
        reported(&mut cx, 0..4, "auth.jwt".to_owned(), |cx| {
            cx.sink.push(0..4, "auth.jwt.issuer", "42", "a string");
            None::<()>
        });
        assert_eq!(cx.sink.count(), 2);
    }
}
