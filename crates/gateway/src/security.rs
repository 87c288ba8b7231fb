//! Who may call a route, and how often: API keys with usage plans, rate limits per route,
//! Lambda authorizers, as API Gateway applies them.
//!
//! - API keys: the key in the `[auth.api_key]` header must be one of the app's keys
//!   (403 `{"message":"Forbidden"}` otherwise); a key on a usage plan is held to the plan's
//!   token bucket (429 `Too Many Requests`) and daily quota (429 `Limit Exceeded`), with
//!   `Retry-After`. Quotas count in memory: a restart starts the day again.
//! - Route rate limits: one token bucket per route (429 with `Retry-After`).
//! - Lambda authorizers (simple response format, payload 2.0): the identity sources must
//!   all be present (401 otherwise, without invoking); the function answers
//!   `{"isAuthorized": bool, "context": {...}}`; a denial is 403, a failure 500; decisions
//!   are cached per identity for the authorizer's TTL.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, Response, StatusCode},
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use nimbus_core::{
    ApiKeyAuthSpec, ApiKeyValue, Invoke, InvokeOptions, LambdaAuthorizerSpec, Outcome, RateLimit,
    invoke_to_end,
};
use serde_json::{Value as Json, json};

type Limiter = governor::DefaultDirectRateLimiter;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token bucket for `limit`.
pub(crate) fn limiter(limit: RateLimit) -> Limiter {
    let rate = NonZeroU32::new(limit.rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// Why a request is refused before its function runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: &'static str,
    retry_after: Option<u64>,
    /// The `www-authenticate` header: why a bearer token was refused.
    challenge: Option<String>,
}

impl Refusal {
    pub(crate) const UNAUTHORIZED: Refusal = Refusal {
        status: StatusCode::UNAUTHORIZED,
        message: "Unauthorized",
        retry_after: None,
        challenge: None,
    };
    pub(crate) const FORBIDDEN: Refusal = Refusal {
        status: StatusCode::FORBIDDEN,
        message: "Forbidden",
        retry_after: None,
        challenge: None,
    };
    const AUTHORIZER_FAILED: Refusal = Refusal {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "Internal Server Error",
        retry_after: None,
        challenge: None,
    };

    fn throttled(wait: Duration) -> Refusal {
        Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "Too Many Requests",
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            challenge: None,
        }
    }

    /// A JWT authorizer's refusal: 401 for a missing or invalid token, 403 for a valid one
    /// without the route's scopes, with API Gateway's `www-authenticate` header (`Bearer
    /// scope="..." error="invalid_token" error_description="..."`), which clients read to
    /// tell an expired token (refresh it) from a wrong one.
    pub(crate) fn bearer(insufficient_scope: bool, scopes: &[String], reason: &str) -> Refusal {
        // Quoted-string text: printable ASCII without `"` and `\`, and not too long (a
        // reason may quote the token's own claims).
        let quoted = |text: &str| -> String {
            text.chars()
                .map(|c| match c {
                    '"' | '\\' => '\'',
                    ' '..='~' => c,
                    _ => '?',
                })
                .take(256)
                .collect()
        };
        let (base, error) = if insufficient_scope {
            (Refusal::FORBIDDEN, "insufficient_scope")
        } else {
            (Refusal::UNAUTHORIZED, "invalid_token")
        };
        Refusal {
            challenge: Some(format!(
                "Bearer scope=\"{}\" error=\"{error}\" error_description=\"{}\"",
                quoted(&scopes.join(" ")),
                quoted(reason)
            )),
            ..base
        }
    }

    /// The answer, in API Gateway's shape.
    pub(crate) fn response(&self) -> Response<Body> {
        let mut response = crate::reply::message(self.status, self.message);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        if let Some(challenge) = self
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            response.headers_mut().insert("www-authenticate", challenge);
        }
        response
    }
}

/// Takes a token from `limiter`, or says how long to wait.
pub(crate) fn take(limiter: &Limiter) -> Result<(), Refusal> {
    limiter.check().map_err(|not_until| {
        Refusal::throttled(not_until.wait_time_from(DefaultClock::default().now()))
    })
}

/// Why the app's security settings cannot be put in force.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// An API key's environment variable is not set.
    #[error("API key {key}: environment variable {variable} is not set")]
    MissingKey {
        /// The key's name.
        key: String,
        /// The variable.
        variable: String,
    },
}

/// Requests per UTC day, counted in memory.
struct DailyQuota {
    limit: u64,
    /// (day number, requests that day)
    used: Mutex<(u64, u64)>,
}

const DAY: u64 = 86_400;

impl DailyQuota {
    fn take(&self) -> Result<(), Refusal> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let today = now / DAY;
        let mut used = lock(&self.used);
        if used.0 != today {
            *used = (today, 0);
        }
        if used.1 >= self.limit {
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "Limit Exceeded",
                retry_after: Some((today + 1) * DAY - now),
                challenge: None,
            });
        }
        used.1 += 1;
        Ok(())
    }
}

struct Key {
    name: String,
    limiter: Option<Limiter>,
    quota: Option<DailyQuota>,
}

/// The app's API keys.
pub(crate) struct ApiKeys {
    header: String,
    by_value: HashMap<String, Key>,
}

impl ApiKeys {
    /// The keys of `spec`, with their values read (from the environment where asked).
    pub(crate) fn new(spec: &ApiKeyAuthSpec) -> Result<ApiKeys, SecurityError> {
        let mut by_value = HashMap::new();
        for key in &spec.keys {
            let value = match &key.value {
                ApiKeyValue::Literal(v) => v.clone(),
                ApiKeyValue::Env(variable) => std::env::var(variable)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| SecurityError::MissingKey {
                        key: key.name.clone(),
                        variable: variable.clone(),
                    })?,
            };
            let plan = key.plan.as_ref().and_then(|p| spec.plans.get(p));
            by_value.insert(
                value,
                Key {
                    name: key.name.clone(),
                    limiter: plan.and_then(|p| p.rate_limit).map(limiter),
                    quota: plan.and_then(|p| p.quota_per_day).map(|limit| DailyQuota {
                        limit,
                        used: Mutex::new((0, 0)),
                    }),
                },
            );
        }
        Ok(ApiKeys {
            header: spec.header.clone(),
            by_value,
        })
    }

    /// Admits a request carrying a known key within its plan; returns the key's name and
    /// the key.
    pub(crate) fn admit<'h>(&self, headers: &'h HeaderMap) -> Result<(&str, &'h str), Refusal> {
        let value = headers
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::FORBIDDEN)?;
        let key = self.by_value.get(value).ok_or(Refusal::FORBIDDEN)?;
        if let Some(limiter) = &key.limiter {
            take(limiter)?;
        }
        if let Some(quota) = &key.quota {
            quota.take()?;
        }
        Ok((&key.name, value))
    }
}

/// What a Lambda authorizer decided for one identity.
#[derive(Clone)]
enum Decision {
    Allow(Json),
    Deny,
}

struct Authorizer {
    spec: LambdaAuthorizerSpec,
    cache: Mutex<HashMap<String, (Instant, Decision)>>,
}

/// Most cached decisions per authorizer; the oldest half is dropped beyond it.
const CACHE_ENTRIES: usize = 10_000;

/// The app's Lambda authorizers.
pub(crate) struct LambdaAuthorizers {
    by_name: HashMap<String, Authorizer>,
}

impl LambdaAuthorizers {
    pub(crate) fn new<'a>(specs: impl IntoIterator<Item = &'a LambdaAuthorizerSpec>) -> Self {
        LambdaAuthorizers {
            by_name: specs
                .into_iter()
                .map(|spec| {
                    (
                        spec.name.clone(),
                        Authorizer {
                            spec: spec.clone(),
                            cache: Mutex::new(HashMap::new()),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Asks authorizer `name` about a request whose payload 2.0 event is `event`;
    /// returns the context to pass on in `requestContext.authorizer.lambda`.
    pub(crate) async fn authorize(
        &self,
        name: &str,
        invoker: &Arc<dyn Invoke>,
        mut event: Json,
    ) -> Result<Json, Refusal> {
        let authorizer = self.by_name.get(name).ok_or(Refusal::AUTHORIZER_FAILED)?;
        let identity =
            identity_of(&authorizer.spec.identity_source, &event).ok_or(Refusal::UNAUTHORIZED)?;
        let cache_key = identity.join("\u{0}");
        let ttl = authorizer.spec.ttl;
        if !ttl.is_zero()
            && let Some((at, decision)) = lock(&authorizer.cache).get(&cache_key).cloned()
            && at.elapsed() < ttl
        {
            return decision_result(decision);
        }
        if let Json::Object(fields) = &mut event {
            let route_key = fields.get("routeKey").cloned().unwrap_or(Json::Null);
            fields.insert("type".into(), json!("REQUEST"));
            fields.insert(
                "routeArn".into(),
                json!(format!(
                    "arn:aws:execute-api:us-east-1:000000000000:nimbus/$default/{}",
                    route_key.as_str().unwrap_or("").replacen(' ', "", 1)
                )),
            );
            fields.insert("identitySource".into(), json!(identity));
            fields.remove("body");
            fields.remove("isBase64Encoded");
        }
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        // To its end, as any invocation, if the client goes away meanwhile.
        let result = invoke_to_end(
            invoker,
            &authorizer.spec.function,
            payload,
            InvokeOptions::default(),
        )
        .await;
        let decision = match result {
            Ok(r) => match r.outcome {
                // An authorizer gets a JSON event, so `Http` does not come back; were it to,
                // its structured result is what the authorizer answered.
                outcome @ (Outcome::Response(_) | Outcome::Http(_)) => {
                    match serde_json::from_slice::<Json>(&outcome.into_payload()) {
                        Ok(Json::Object(answer)) => match answer.get("isAuthorized") {
                            Some(Json::Bool(true)) => Decision::Allow(
                                answer.get("context").cloned().unwrap_or_else(|| json!({})),
                            ),
                            Some(Json::Bool(false)) => Decision::Deny,
                            _ => {
                                tracing::warn!(
                                    authorizer = name,
                                    "the authorizer's answer has no boolean isAuthorized"
                                );
                                return Err(Refusal::AUTHORIZER_FAILED);
                            }
                        },
                        _ => {
                            tracing::warn!(
                                authorizer = name,
                                "the authorizer's answer is not a JSON object"
                            );
                            return Err(Refusal::AUTHORIZER_FAILED);
                        }
                    }
                }
                Outcome::Error { error_type, .. } => {
                    tracing::warn!(authorizer = name, error_type, "the authorizer failed");
                    return Err(Refusal::AUTHORIZER_FAILED);
                }
            },
            Err(e) => {
                tracing::warn!(authorizer = name, error = %e, "the authorizer could not run");
                return Err(Refusal::AUTHORIZER_FAILED);
            }
        };
        if !ttl.is_zero() {
            let mut cache = lock(&authorizer.cache);
            if cache.len() >= CACHE_ENTRIES {
                let mut ages: Vec<(String, Instant)> =
                    cache.iter().map(|(k, (at, _))| (k.clone(), *at)).collect();
                ages.sort_by_key(|(_, at)| *at);
                for (k, _) in ages.into_iter().take(CACHE_ENTRIES / 2) {
                    cache.remove(&k);
                }
            }
            cache.insert(cache_key, (Instant::now(), decision.clone()));
        }
        decision_result(decision)
    }
}

fn decision_result(decision: Decision) -> Result<Json, Refusal> {
    match decision {
        Decision::Allow(context) => Ok(context),
        Decision::Deny => Err(Refusal::FORBIDDEN),
    }
}

/// The identity source values, from a payload 2.0 event; `None` when one is missing or
/// empty.
fn identity_of(sources: &[String], event: &Json) -> Option<Vec<String>> {
    sources
        .iter()
        .map(|source| {
            let value = if let Some(name) = source.strip_prefix("$request.header.") {
                event["headers"][name.to_ascii_lowercase()].as_str()
            } else if let Some(name) = source.strip_prefix("$request.querystring.") {
                event["queryStringParameters"][name].as_str()
            } else {
                None
            };
            value.filter(|v| !v.is_empty()).map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::{ApiKeySpec, BoxFuture, InvokeError, InvokeResult, UsagePlan};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn keys(plan: UsagePlan) -> ApiKeys {
        ApiKeys::new(&ApiKeyAuthSpec {
            header: "x-api-key".to_owned(),
            keys: vec![ApiKeySpec {
                name: "partner".to_owned(),
                value: ApiKeyValue::Literal("k-0123456789abcdefghij".to_owned()),
                plan: Some("p".to_owned()),
            }],
            plans: [("p".to_owned(), plan)].into_iter().collect(),
        })
        .unwrap()
    }

    fn with_key(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn keys_are_checked_and_held_to_their_plan() {
        let keys = keys(UsagePlan {
            rate_limit: Some(RateLimit { rate: 1, burst: 2 }),
            quota_per_day: None,
        });
        assert_eq!(keys.admit(&HeaderMap::new()), Err(Refusal::FORBIDDEN));
        assert_eq!(keys.admit(&with_key("wrong")), Err(Refusal::FORBIDDEN));
        let good = with_key("k-0123456789abcdefghij");
        let admitted = Ok(("partner", "k-0123456789abcdefghij"));
        assert_eq!(keys.admit(&good), admitted);
        assert_eq!(keys.admit(&good), admitted);
        let refused = keys.admit(&good).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        assert_eq!(refused.response().headers()["retry-after"], "1");
    }

    #[test]
    fn a_daily_quota_runs_out_until_tomorrow() {
        let keys = keys(UsagePlan {
            rate_limit: None,
            quota_per_day: Some(2),
        });
        let good = with_key("k-0123456789abcdefghij");
        assert!(keys.admit(&good).is_ok());
        assert!(keys.admit(&good).is_ok());
        let refused = keys.admit(&good).unwrap_err();
        assert_eq!(refused.message, "Limit Exceeded");
        assert!(refused.retry_after.is_some_and(|s| (1..=DAY).contains(&s)));
    }

    #[test]
    fn a_missing_key_variable_is_a_setup_error() {
        let spec = ApiKeyAuthSpec {
            header: "x-api-key".to_owned(),
            keys: vec![ApiKeySpec {
                name: "k".to_owned(),
                value: ApiKeyValue::Env("NIMBUS_TEST_UNSET_KEY_VARIABLE".to_owned()),
                plan: None,
            }],
            plans: Default::default(),
        };
        assert!(matches!(
            ApiKeys::new(&spec),
            Err(SecurityError::MissingKey { .. })
        ));
    }

    /// An authorizer function that allows the token "good" and counts its calls.
    #[derive(Default)]
    struct Decider {
        calls: AtomicUsize,
    }

    impl Invoke for Decider {
        fn invoke(
            &self,
            _function: &str,
            payload: Vec<u8>,
            _options: InvokeOptions,
        ) -> BoxFuture<'_, Result<InvokeResult, InvokeError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let event: Json = serde_json::from_slice(&payload).unwrap();
            assert_eq!(event["type"], "REQUEST");
            let allowed = event["identitySource"] == json!(["good"]);
            let answer = json!({"isAuthorized": allowed, "context": {"user": "u1"}});
            Box::pin(async move {
                Ok(InvokeResult {
                    request_id: "r".to_owned(),
                    outcome: Outcome::Response(answer.to_string().into_bytes()),
                    log_tail: String::new(),
                })
            })
        }
    }

    fn authorizers(ttl: Duration) -> LambdaAuthorizers {
        LambdaAuthorizers::new(&[LambdaAuthorizerSpec {
            name: "a".to_owned(),
            function: "authz".to_owned(),
            identity_source: vec!["$request.header.authorization".to_owned()],
            ttl,
        }])
    }

    fn event(token: Option<&str>) -> Json {
        let mut headers = serde_json::Map::new();
        if let Some(t) = token {
            headers.insert("authorization".into(), json!(t));
        }
        json!({"version": "2.0", "routeKey": "GET /x", "headers": headers})
    }

    #[tokio::test]
    async fn lambda_authorizers_decide_and_are_cached_per_identity() {
        let decider = Arc::new(Decider::default());
        let invoker = Arc::clone(&decider) as Arc<dyn Invoke>;
        let auth = authorizers(Duration::from_secs(60));
        assert_eq!(
            auth.authorize("a", &invoker, event(Some("good"))).await,
            Ok(json!({"user": "u1"}))
        );
        assert_eq!(
            auth.authorize("a", &invoker, event(Some("good"))).await,
            Ok(json!({"user": "u1"}))
        );
        assert_eq!(decider.calls.load(Ordering::SeqCst), 1, "cached");
        assert_eq!(
            auth.authorize("a", &invoker, event(Some("bad"))).await,
            Err(Refusal::FORBIDDEN)
        );
        // A missing identity is refused without asking the function.
        assert_eq!(
            auth.authorize("a", &invoker, event(None)).await,
            Err(Refusal::UNAUTHORIZED)
        );
        assert_eq!(decider.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_zero_ttl_asks_every_time() {
        let decider = Arc::new(Decider::default());
        let invoker = Arc::clone(&decider) as Arc<dyn Invoke>;
        let auth = authorizers(Duration::ZERO);
        for _ in 0..3 {
            assert!(
                auth.authorize("a", &invoker, event(Some("good")))
                    .await
                    .is_ok()
            );
        }
        assert_eq!(decider.calls.load(Ordering::SeqCst), 3);
    }
}
