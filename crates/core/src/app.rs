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
}

/// The app's authorizers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthSpec {
    /// The JWT authorizer, if declared.
    pub jwt: Option<JwtAuthSpec>,
    /// API keys, if declared.
    pub api_key: Option<ApiKeyAuthSpec>,
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
