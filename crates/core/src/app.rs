//! The app: everything one `nimbus.toml` declares.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Serialize;

use crate::{EventSpec, FunctionSpec, RouteSpec, TableSpec, function::duration_secs};

/// Where the JWT authorizer gets the keys that verify signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtKeys {
    /// A JWKS document on disk.
    JwksFile(PathBuf),
    /// A JWKS document fetched (and refreshed) from a URL.
    JwksUrl(String),
    /// One public key in PEM form on disk.
    PublicKeyPem(PathBuf),
    /// An HMAC secret read from this environment variable of the Nimbus process.
    SecretEnv(String),
}

/// The app's JWT authorizer (`auth = "jwt"` routes use it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtAuthSpec {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry one.
    pub audiences: Vec<String>,
    /// Accepted signing algorithms.
    pub algorithms: Vec<String>,
    /// The verification keys.
    pub keys: JwtKeys,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "duration_secs")]
    pub leeway: Duration,
}

/// The app's API keys (`auth = "api_key"` routes use them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyAuthSpec {
    /// The request header carrying the key.
    pub header: String,
    /// The keys callers may present.
    pub keys: Vec<ApiKeySpec>,
    /// Usage plans by name: what keys on them may do.
    pub plans: BTreeMap<String, UsagePlan>,
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeySpec {
    /// Its name (for logs and metrics; never the value).
    pub name: String,
    /// Where its value comes from.
    pub value: ApiKeyValue,
    /// The usage plan it is on, if any (no plan: no limits beyond the routes').
    pub plan: Option<String>,
}

/// Where an API key's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyValue {
    /// Written in the manifest.
    #[serde(serialize_with = "redacted")]
    Literal(String),
    /// Read from this environment variable of the Nimbus process at startup.
    Env(String),
}

fn redacted<S: serde::Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("***")
}

/// A usage plan: a rate limit and a daily quota per key, as API Gateway's usage plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsagePlan {
    /// Steady rate and burst per key.
    pub rate_limit: Option<RateLimit>,
    /// Most requests per key per day (UTC), if limited.
    pub quota_per_day: Option<u64>,
}

/// A token bucket: `rate` requests per second refill it, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Requests per second, steady.
    pub rate: u32,
    /// Requests at once.
    pub burst: u32,
}

/// A Lambda authorizer: a function that decides whether a request may pass (API
/// Gateway's simple response format, payload 2.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LambdaAuthorizerSpec {
    /// The authorizer's name (`authorizer = "NAME"` on routes).
    pub name: String,
    /// The function that decides.
    pub function: String,
    /// Where the identity comes from (`$request.header.NAME`,
    /// `$request.querystring.NAME`); a request missing any of them is refused without
    /// invoking the function, and results are cached per identity.
    pub identity_source: Vec<String>,
    /// How long a decision is cached per identity; zero turns caching off.
    #[serde(with = "duration_secs")]
    pub ttl: Duration,
}

/// The app's authorizers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthSpec {
    /// The JWT authorizer, if declared.
    pub jwt: Option<JwtAuthSpec>,
    /// API keys, if declared.
    pub api_key: Option<ApiKeyAuthSpec>,
    /// Lambda authorizers by name.
    pub lambda: BTreeMap<String, LambdaAuthorizerSpec>,
}

/// CORS for the whole API, as API Gateway HTTP APIs configure it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CorsSpec {
    /// Allowed origins (`*` for any).
    pub allow_origins: Vec<String>,
    /// Allowed methods.
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts.
    pub expose_headers: Vec<String>,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "duration_opt_secs")]
    pub max_age: Option<Duration>,
    /// Whether credentials are allowed.
    pub allow_credentials: bool,
}

mod duration_opt_secs {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

/// A validated app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSpec {
    /// The app's name.
    pub name: String,
    /// Tables by name.
    pub tables: BTreeMap<String, TableSpec>,
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// Routes, in declaration order.
    pub routes: Vec<RouteSpec>,
    /// Event triggers, in declaration order.
    pub events: Vec<EventSpec>,
    /// Authorizers.
    pub auth: AuthSpec,
    /// CORS, if on.
    pub cors: Option<CorsSpec>,
}

impl AppSpec {
    /// An app with a name and nothing else.
    pub fn named(name: impl Into<String>) -> Self {
        AppSpec {
            name: name.into(),
            tables: BTreeMap::new(),
            functions: BTreeMap::new(),
            routes: Vec::new(),
            events: Vec::new(),
            auth: AuthSpec::default(),
            cors: None,
        }
    }
}
