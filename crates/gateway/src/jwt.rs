//! The JWT authorizer: checks bearer tokens as API Gateway HTTP APIs' JWT authorizer does.
//!
//! [`JwtAuthorizer`] is built once per app from its [`JwtAuthSpec`] and asked about each
//! request to an `auth = "jwt"` route. It follows API Gateway's order:
//!
//! 1. The `Authorization` header holds the token, bare or after `Bearer `.
//! 2. The header's `alg` must be one the app accepts (never `none`), and the key picked by
//!    `kid` must be a key for that algorithm, so an HMAC token can never be checked with a
//!    public key used as the secret.
//! 3. The claims: `iss` equals the issuer; `aud` (or, when there is no `aud`, `client_id`)
//!    is one of the audiences; `exp` is required and not past; `nbf` and `iat` are not in
//!    the future; all three with the app's leeway.
//! 4. When the route names scopes, the token's `scp` (else `scope`) holds one of them.
//!
//! Tokens that pass steps 1 to 3 are remembered, by the exact token, in a bounded cache
//! ([`VERIFIED_CACHE_ENTRIES`]): a token seen again skips the signature check, but its
//! time claims are checked again against the clock on every request (an entry never
//! outlives the token's `exp`), its key must still be in the current key set (a JWKS
//! refresh that drops or replaces the key makes the next request verify afresh), and the
//! route's scopes are checked as for a new token. A reload builds a new authorizer, with
//! an empty cache.
//!
//! Nimbus goes further than API Gateway, which fetches only the issuer's `jwks_uri` and
//! accepts only RSA: keys may also come from a JWKS file, a PEM public key (RSA, EC or
//! Ed25519) or an HMAC secret, and a token without `kid` is accepted when the JWKS holds a
//! single key. The HTTP answer to a refused token is the router's.

use std::{
    env::VarError,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock, Weak},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use nimbus_core::{JwtAuthSpec, JwtKeys};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

/// How often keys fetched from a JWKS URL are fetched again.
const REFRESH_EVERY: Duration = Duration::from_secs(10 * 60);
/// The least time between two fetches caused by tokens with an unknown `kid`: such tokens
/// cost nothing to forge, so they must not be a way to hammer the key server.
const UNKNOWN_KID_GAP: Duration = Duration::from_secs(30);
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS document accepted; real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most verified tokens remembered per authorizer (a few KB each at most).
pub(crate) const VERIFIED_CACHE_ENTRIES: usize = 10_000;
/// Longest token remembered; longer ones are verified on every request.
const MAX_CACHED_TOKEN_BYTES: usize = 8 * 1024;

/// Checks the JWTs of requests to `auth = "jwt"` routes.
#[derive(Debug)]
pub(crate) struct JwtAuthorizer {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    leeway: u64,
    keys: Keys,
    /// Tokens whose signature, issuer and audience were checked, by the token.
    verified: quick_cache::sync::Cache<Box<str>, Arc<Checked>>,
}

/// What the checks that do not depend on the clock or the route established about a
/// token; kept in the authorizer's cache.
#[derive(Debug)]
struct Checked {
    /// The claims flattened to strings, as `requestContext.authorizer.jwt.claims` holds them.
    flat_claims: Value,
    /// The token's scopes, from `scp` or else `scope`.
    scopes: Vec<String>,
    /// The key set whose key verified the signature.
    keys: Arc<KeySet>,
    /// `exp`, `nbf` and `iat`, in seconds.
    exp: f64,
    nbf: Option<f64>,
    iat: Option<f64>,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedToken {
    checked: Arc<Checked>,
    /// Whether the route asked for scopes: API Gateway reports scopes only then.
    route_scoped: bool,
}

/// Why a request's token was refused.
///
/// The reason goes to the operator's log, and to the client in the `error_description` of
/// the `www-authenticate` header, as API Gateway tells why ("the token does not have a
/// valid audience"); the body is API Gateway's bare answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct Unauthorized {
    reason: String,
    /// What of the reason the client is told: without the authorizer's settings (its
    /// issuer, audiences, keys), which the operator's log line carries.
    public: String,
    insufficient_scope: bool,
}

/// Why the authorizer could not be built from the manifest's `[auth.jwt]`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtSetupError {
    /// An algorithm name the authorizer does not know.
    #[error("{name:?} is not a supported signing algorithm")]
    Algorithm {
        /// The name as configured.
        name: String,
    },
    /// Nothing to accept: no algorithm or no audience.
    #[error("no {what} configured")]
    Empty {
        /// `algorithms` or `audiences`.
        what: &'static str,
    },
    /// HMAC algorithms with public keys, or asymmetric ones with a secret.
    #[error(
        "{algorithm:?} cannot be used with this key source \
         (HS256/HS384/HS512 need `secret_env`; the others need public keys)"
    )]
    MixedAlgorithms {
        /// The algorithm that does not suit the keys.
        algorithm: String,
    },
    /// A key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A key file or a fetched JWKS holds no key that can be used.
    #[error("{origin}: {reason}")]
    Keys {
        /// The file or URL.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The JWKS URL could not be fetched when the app started.
    #[error("cannot fetch the JWKS at {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The environment variable meant to hold the HMAC secret does not hold a usable one.
    #[error("environment variable {var} {reason}")]
    Secret {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl JwtAuthorizer {
    /// Builds the authorizer: reads the key file or the secret, or fetches the JWKS URL
    /// (and from then on refreshes it in the background).
    ///
    /// # Errors
    ///
    /// A [`JwtSetupError`] naming the file, URL or variable that gave no usable key, or the
    /// algorithm that cannot be used.
    pub(crate) async fn new(spec: &JwtAuthSpec) -> Result<JwtAuthorizer, JwtSetupError> {
        Self::build(spec, &|name| std::env::var(name), Timing::DEFAULT).await
    }

    async fn build(
        spec: &JwtAuthSpec,
        env: &(dyn Fn(&str) -> Result<String, VarError> + Sync),
        timing: Timing,
    ) -> Result<JwtAuthorizer, JwtSetupError> {
        let algorithms = spec
            .algorithms
            .iter()
            .map(|name| {
                name.parse::<Algorithm>()
                    .map_err(|_| JwtSetupError::Algorithm { name: name.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(JwtSetupError::Empty { what: "algorithms" });
        }
        if spec.audiences.is_empty() {
            return Err(JwtSetupError::Empty { what: "audiences" });
        }
        let symmetric = matches!(spec.keys, JwtKeys::SecretEnv(_));
        if let Some(bad) = algorithms
            .iter()
            .find(|a| (a.family() == AlgorithmFamily::Hmac) != symmetric)
        {
            return Err(JwtSetupError::MixedAlgorithms {
                algorithm: format!("{bad:?}"),
            });
        }
        let keys = match &spec.keys {
            JwtKeys::JwksFile(path) => {
                let origin = path.display().to_string();
                let (set, skipped) = parse_jwks(&read(path)?)
                    .map_err(|reason| JwtSetupError::Keys { origin, reason })?;
                for why in skipped {
                    tracing::warn!(file = %path.display(), "JWKS key skipped: {why}");
                }
                Keys::Fixed(Arc::new(set))
            }
            JwtKeys::PublicKeyPem(path) => {
                let key = key_from_pem(path, &read(path)?, &algorithms)?;
                Keys::Fixed(Arc::new(KeySet::single(key)))
            }
            JwtKeys::SecretEnv(var) => {
                let key = key_from_secret(var, env(var), &algorithms)?;
                Keys::Fixed(Arc::new(KeySet::single(key)))
            }
            JwtKeys::JwksUrl(url) => {
                let fetch_error = |reason| JwtSetupError::Fetch {
                    url: url.clone(),
                    reason,
                };
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .user_agent(concat!("nimbus/", env!("CARGO_PKG_VERSION")))
                    .redirect(reqwest::redirect::Policy::custom(jwks_redirect))
                    .build()
                    .map_err(|e| fetch_error(error_chain(&e)))?;
                let (set, skipped) = fetch_jwks(&client, url).await.map_err(fetch_error)?;
                for why in skipped {
                    tracing::warn!(url = %url, "JWKS key skipped: {why}");
                }
                let remote = Arc::new(RemoteKeys {
                    url: url.clone(),
                    client,
                    current: RwLock::new(Arc::new(set)),
                    last_unknown_kid_fetch: tokio::sync::Mutex::new(None),
                    unknown_kid_gap: timing.unknown_kid_gap,
                });
                let refresher = tokio::spawn(refresh_periodically(
                    Arc::downgrade(&remote),
                    timing.refresh_every,
                ));
                Keys::Remote { remote, refresher }
            }
        };
        Ok(JwtAuthorizer {
            issuer: spec.issuer.clone(),
            audiences: spec.audiences.clone(),
            algorithms,
            leeway: spec.leeway.as_secs(),
            keys,
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_ENTRIES),
        })
    }

    /// Checks the token in a request's `Authorization` header, and that it carries one of
    /// `required_scopes` when the route names any.
    ///
    /// # Errors
    ///
    /// [`Unauthorized`] with the first check the token failed.
    pub(crate) async fn verify(
        &self,
        authorization_header: Option<&str>,
        required_scopes: &[String],
    ) -> Result<VerifiedToken, Unauthorized> {
        let token = bearer_token(authorization_header)?;
        let checked = match self.remembered(token) {
            Some(checked) => checked,
            None => {
                let checked = Arc::new(self.check(token).await?);
                if token.len() <= MAX_CACHED_TOKEN_BYTES {
                    self.verified.insert(token.into(), Arc::clone(&checked));
                }
                checked
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            .floor();
        self.check_times(&checked, now)?;
        let scopes = &checked.scopes;
        if !required_scopes.is_empty() && !required_scopes.iter().any(|s| scopes.contains(s)) {
            return Err(Unauthorized {
                insufficient_scope: true,
                ..Unauthorized::hiding(
                    "the token does not have a scope the route needs",
                    format!("its scopes {scopes:?} hold none of {required_scopes:?}"),
                )
            });
        }
        Ok(VerifiedToken {
            checked,
            route_scoped: !required_scopes.is_empty(),
        })
    }

    /// The cached checks of `token`, unless the key set that verified it is no longer the
    /// current one.
    fn remembered(&self, token: &str) -> Option<Arc<Checked>> {
        let checked = self.verified.get(token)?;
        let current = match &self.keys {
            Keys::Fixed(set) => Arc::clone(set),
            Keys::Remote { remote, .. } => remote.current(),
        };
        if Arc::ptr_eq(&checked.keys, &current) {
            Some(checked)
        } else {
            self.verified.remove(token);
            None
        }
    }

    /// Steps 2 and 3 apart from the clock: the header, the key, the signature, the issuer
    /// and the audience.
    async fn check(&self, token: &str) -> Result<Checked, Unauthorized> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unreadable_header(token))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Unauthorized::hiding(
                "the token's signing algorithm is not accepted",
                format!("{:?}", header.alg),
            ));
        }
        // Only what is used is kept across the wait for keys: a whole header is large.
        let jsonwebtoken::Header { alg, kid, .. } = header;
        let kid = kid.as_deref();
        let keys = self.keys_for(kid).await;
        let key = keys.select(kid, alg)?;

        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        // Checked below: API Gateway falls back to `client_id`, which the crate does not.
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| Unauthorized::new(jwt_error_reason(&e)))?
            .claims;

        self.check_issuer(&claims)?;
        self.check_audience(&claims)?;
        let seconds = |name: &str| -> Result<Option<f64>, Unauthorized> {
            claims
                .get(name)
                .map(|v| {
                    v.as_f64().ok_or_else(|| {
                        Unauthorized::new(format!("the `{name}` claim is not a number of seconds"))
                    })
                })
                .transpose()
        };
        let exp =
            seconds("exp")?.ok_or_else(|| Unauthorized::new("the token has no `exp` claim"))?;
        let (nbf, iat) = (seconds("nbf")?, seconds("iat")?);
        Ok(Checked {
            flat_claims: flatten_claims(&claims),
            scopes: token_scopes(&claims),
            keys: Arc::clone(&keys),
            exp,
            nbf,
            iat,
        })
    }

    /// Step 3's clock checks at `now` (epoch seconds), on every request: `exp` not past, `nbf` and `iat` not in
    /// the future, each with the leeway.
    fn check_times(&self, checked: &Checked, now: f64) -> Result<(), Unauthorized> {
        let leeway = self.leeway as f64;
        if checked.exp < now - leeway {
            return Err(Unauthorized::new("the token has expired (exp)"));
        }
        if checked.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(Unauthorized::new("the token is not valid yet (nbf)"));
        }
        if checked.iat.is_some_and(|iat| iat > now + leeway) {
            return Err(Unauthorized::new(
                "the token was issued in the future (iat)",
            ));
        }
        Ok(())
    }

    /// The keys to look `kid` up in: for a JWKS URL, fetched again first when `kid` is new.
    async fn keys_for(&self, kid: Option<&str>) -> Arc<KeySet> {
        match &self.keys {
            Keys::Fixed(set) => Arc::clone(set),
            Keys::Remote { remote, .. } => {
                let set = remote.current();
                match kid {
                    // Rare, and its future (an HTTP fetch) is large: boxed, so that it
                    // does not enlarge every request's future.
                    Some(kid) if !set.has_kid(kid) => {
                        Box::pin(remote.fetch_for_unknown_kid(kid)).await
                    }
                    _ => set,
                }
            }
        }
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), Unauthorized> {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => Ok(()),
            Some(iss) => Err(Unauthorized::hiding(
                "the token does not have a valid issuer",
                format!("iss {iss} is not {:?}", self.issuer),
            )),
            None => Err(Unauthorized::new("the token has no `iss` claim")),
        }
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), Unauthorized> {
        let known = |a: &str| self.audiences.iter().any(|x| x == a);
        // API Gateway reads `client_id` only when there is no `aud` at all.
        let (name, ok) = match claims.get("aud") {
            Some(Value::String(aud)) => ("aud", known(aud)),
            Some(Value::Array(list)) => ("aud", list.iter().filter_map(Value::as_str).any(known)),
            Some(_) => ("aud", false),
            None => (
                "client_id",
                claims
                    .get("client_id")
                    .and_then(Value::as_str)
                    .is_some_and(known),
            ),
        };
        if ok {
            Ok(())
        } else {
            let got = claims
                .get(name)
                .map_or("nothing".to_owned(), Value::to_string);
            Err(Unauthorized::hiding(
                "the token does not have a valid audience",
                format!("{name} is {got}, expected one of {:?}", self.audiences),
            ))
        }
    }
}

impl Drop for JwtAuthorizer {
    fn drop(&mut self) {
        if let Keys::Remote { refresher, .. } = &self.keys {
            refresher.abort();
        }
    }
}

impl VerifiedToken {
    /// What API Gateway puts at `requestContext.authorizer.jwt` in a payload 2.0 event:
    /// `{"claims": {...}, "scopes": [...]}`.
    ///
    /// As API Gateway does, every claim value becomes a string: numbers and booleans as
    /// written, arrays as `[a b c]`, objects as `map[k:v]` (the renderings of API Gateway's
    /// Go runtime), and null claims are left out. `scopes` is `null` unless the route named
    /// scopes; then it lists the token's scopes.
    pub(crate) fn authorizer_context(&self) -> Value {
        let scopes = if self.route_scoped {
            json!(self.checked.scopes)
        } else {
            Value::Null
        };
        json!({ "claims": self.checked.flat_claims.clone(), "scopes": scopes })
    }

    /// The token's claims, flattened to strings.
    #[cfg(test)]
    pub(crate) fn claims(&self) -> &Value {
        &self.checked.flat_claims
    }

    /// The token's scopes, from `scp` or else `scope`.
    #[cfg(test)]
    pub(crate) fn scopes(&self) -> &[String] {
        &self.checked.scopes
    }
}

/// The claims as API Gateway flattens them: every value a string, null claims left out.
fn flatten_claims(claims: &Map<String, Value>) -> Value {
    let flat: Map<String, Value> = claims
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => {
                    let mut out = String::new();
                    go_text(other, &mut out);
                    out
                }
            };
            (k.clone(), Value::String(text))
        })
        .collect();
    Value::Object(flat)
}

impl Unauthorized {
    /// A refusal whose reason the client may be told whole.
    fn new(reason: impl Into<String>) -> Unauthorized {
        let reason = reason.into();
        Unauthorized {
            public: reason.clone(),
            reason,
            insufficient_scope: false,
        }
    }

    /// A refusal the client is told `public` of, and the operator's log `detail` too.
    fn hiding(public: &str, detail: String) -> Unauthorized {
        Unauthorized {
            reason: format!("{public}: {detail}"),
            public: public.to_owned(),
            insufficient_scope: false,
        }
    }

    /// Why the token was refused, for a debug log line.
    pub(crate) fn reason(&self) -> &str {
        &self.reason
    }

    /// Why the token was refused, for the client (the `www-authenticate` header's
    /// `error_description`): the authorizer's settings left out.
    pub(crate) fn public(&self) -> &str {
        &self.public
    }

    /// Whether the token was valid but lacked every scope the route asks for (OAuth's
    /// `insufficient_scope`), rather than invalid.
    pub(crate) fn is_insufficient_scope(&self) -> bool {
        self.insufficient_scope
    }
}

/// How often keys from a URL are refreshed; shortened by the tests.
#[derive(Debug, Clone, Copy)]
struct Timing {
    refresh_every: Duration,
    unknown_kid_gap: Duration,
}

impl Timing {
    const DEFAULT: Timing = Timing {
        refresh_every: REFRESH_EVERY,
        unknown_kid_gap: UNKNOWN_KID_GAP,
    };
}

#[derive(Debug)]
enum Keys {
    /// From a file or the environment, read once.
    Fixed(Arc<KeySet>),
    /// From a JWKS URL, refreshed by `refresher` and on unknown `kid`s.
    Remote {
        remote: Arc<RemoteKeys>,
        refresher: JoinHandle<()>,
    },
}

#[derive(Debug)]
struct KeySet {
    keys: Vec<Key>,
    /// A lone key from a PEM file or a secret has no `kid`: it verifies whatever `kid` the
    /// token names.
    any_kid: bool,
}

#[derive(Debug)]
struct Key {
    kid: Option<String>,
    /// The one algorithm the key is for, when the JWK or its curve says.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`: a key of another family never
    /// may, whatever the token's header claims.
    fn suits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

impl KeySet {
    fn single(key: Key) -> KeySet {
        KeySet {
            keys: vec![key],
            any_kid: true,
        }
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.any_kid || self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, Unauthorized> {
        let candidates: Vec<&Key> = match (kid, self.any_kid) {
            (Some(kid), false) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            _ => self.keys.iter().collect(),
        };
        match (kid, candidates.as_slice()) {
            (Some(kid), []) => Err(Unauthorized::hiding(
                "the token's signing key is not known",
                format!("no key has the kid {kid:?}"),
            )),
            (None, [_, _, ..]) => Err(Unauthorized::hiding(
                "the token's signing key is not known",
                format!(
                    "the token has no kid and the JWKS holds {} keys",
                    candidates.len()
                ),
            )),
            _ => candidates
                .into_iter()
                .find(|k| k.suits(alg))
                .ok_or_else(|| {
                    Unauthorized::hiding(
                        "the token's signing key is not known",
                        format!("no key is a key for {alg:?}"),
                    )
                }),
        }
    }
}

#[derive(Debug)]
struct RemoteKeys {
    url: String,
    client: reqwest::Client,
    current: RwLock<Arc<KeySet>>,
    /// When a token's unknown `kid` last caused a fetch; held while fetching so that a burst
    /// of such tokens makes one fetch.
    last_unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
    unknown_kid_gap: Duration,
}

impl RemoteKeys {
    fn current(&self) -> Arc<KeySet> {
        // A panic elsewhere cannot leave an `Arc` half-written: the keys stay usable.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Fetches the JWKS again; on failure keeps the keys it has and logs why.
    async fn refresh(&self) {
        match fetch_jwks(&self.client, &self.url).await {
            Ok((set, skipped)) => {
                for why in skipped {
                    tracing::debug!(url = %self.url, "JWKS key skipped: {why}");
                }
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, "JWKS refresh failed, keeping the keys loaded before: {reason}");
            }
        }
    }

    /// The keys after fetching them again for a token whose `kid` is unknown, unless such
    /// a fetch happened less than `unknown_kid_gap` ago.
    async fn fetch_for_unknown_kid(&self, kid: &str) -> Arc<KeySet> {
        let mut last = self.last_unknown_kid_fetch.lock().await;
        let set = self.current();
        // Another request may have fetched the key while this one waited.
        if set.has_kid(kid) || last.is_some_and(|t| t.elapsed() < self.unknown_kid_gap) {
            return set;
        }
        *last = Some(Instant::now());
        self.refresh().await;
        self.current()
    }
}

/// Refreshes the keys every `every` until the authorizer is dropped.
async fn refresh_periodically(remote: Weak<RemoteKeys>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(remote) = remote.upgrade() else {
            return;
        };
        remote.refresh().await;
    }
}

/// Which redirects a JWKS fetch follows: at most five, each to `https`, or to plain
/// `http` on the host it came from. The manifest lets a JWKS URL use plain `http` on
/// this machine only; a redirect must not take the keys' source to plain `http`
/// elsewhere (an `https` JWKS server redirecting to `http` would hand the keys to
/// anyone on the path).
fn jwks_redirect(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    if attempt.previous().len() > 5 {
        return attempt.error("more than 5 redirects");
    }
    let next = attempt.url();
    let same_host = |previous: &reqwest::Url| {
        previous.scheme() == "http" && previous.host_str() == next.host_str()
    };
    if next.scheme() == "https" || attempt.previous().last().is_some_and(same_host) {
        attempt.follow()
    } else {
        let refusal = format!("a redirect to {next}, plain http on another host");
        attempt.error(refusal)
    }
}

/// Fetches and parses a JWKS: the keys, and why any were skipped.
async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<(KeySet, Vec<String>), String> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the server answered HTTP {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

/// The usable signing keys of a JWKS document, and why the others were skipped.
fn parse_jwks(bytes: &[u8]) -> Result<(KeySet, Vec<String>), String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let Some(members) = doc.get("keys").and_then(Value::as_array) else {
        return Err("not a JWKS document: no \"keys\" array".to_owned());
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, member) in members.iter().enumerate() {
        match key_from_jwk(member) {
            Ok(key) => keys.push(key),
            Err(why) => {
                let kid = member
                    .get("kid")
                    .map_or("no kid".to_owned(), Value::to_string);
                skipped.push(format!("key {i} ({kid}): {why}"));
            }
        }
    }
    if keys.is_empty() {
        let mut reason = "holds no usable signing key".to_owned();
        if !skipped.is_empty() {
            reason = format!("{reason} ({})", skipped.join("; "));
        }
        return Err(reason);
    }
    Ok((
        KeySet {
            keys,
            any_kid: false,
        },
        skipped,
    ))
}

fn key_from_jwk(member: &Value) -> Result<Key, String> {
    let jwk: Jwk = serde_json::from_value(member.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err("its `use` is not \"sig\"".to_owned());
    }
    let declared = jwk
        .common
        .key_algorithm
        .map(|a| Algorithm::try_from(a).map_err(|_| format!("its alg {a} does not sign JWTs")))
        .transpose()?;
    // The curve fixes the algorithm of EC and OKP keys.
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => None,
        AlgorithmParameters::EllipticCurve(ec) => Some(match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err(format!("curve {:?} is not supported", ec.curve)),
        }),
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
            _ => return Err(format!("curve {:?} is not supported", okp.curve)),
        },
        // A JWKS publishes public keys; a shared secret in one is a mistake, not a key.
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric (oct) key; a JWKS may hold only public keys".to_owned());
        }
        _ => return Err("its key type is not supported".to_owned()),
    };
    let alg = match (declared, implied) {
        (Some(d), Some(i)) if d != i => {
            return Err(format!("its alg {d:?} does not suit its curve"));
        }
        (d, i) => d.or(i),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    if let Some(alg) = alg
        && alg.family() != key.family()
    {
        return Err(format!("its alg {alg:?} does not suit its key type"));
    }
    Ok(Key {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

fn key_from_pem(path: &Path, pem: &[u8], algorithms: &[Algorithm]) -> Result<Key, JwtSetupError> {
    let problem = |reason: String| JwtSetupError::Keys {
        origin: path.display().to_string(),
        reason,
    };
    if String::from_utf8_lossy(pem).contains("PRIVATE KEY-----") {
        return Err(problem(
            "holds a private key; give the public key (`openssl pkey -in KEY -pubout`)".to_owned(),
        ));
    }
    let key = DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .map_err(|_| problem("not a PEM public key (RSA, EC or Ed25519)".to_owned()))?;
    if let Some(alg) = algorithms.iter().find(|a| a.family() != key.family()) {
        return Err(problem(format!(
            "holds {:?} key, which cannot verify {alg:?}",
            key.family()
        )));
    }
    Ok(Key {
        kid: None,
        alg: None,
        key,
    })
}

fn key_from_secret(
    var: &str,
    value: Result<String, VarError>,
    algorithms: &[Algorithm],
) -> Result<Key, JwtSetupError> {
    let problem = |reason: String| JwtSetupError::Secret {
        var: var.to_owned(),
        reason,
    };
    let secret = value.map_err(|e| {
        problem(match e {
            VarError::NotPresent => "is not set".to_owned(),
            VarError::NotUnicode(_) => "is not valid UTF-8".to_owned(),
        })
    })?;
    // RFC 7518 §3.2: an HMAC key at least as long as the hash's output.
    let needed = algorithms
        .iter()
        .map(|a| match a {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        })
        .max()
        .unwrap_or(32);
    if secret.len() < needed {
        return Err(problem(format!(
            "holds {} bytes; the configured algorithms need a secret of at least {needed} \
             (RFC 7518 section 3.2)",
            secret.len()
        )));
    }
    Ok(Key {
        kid: None,
        alg: None,
        key: DecodingKey::from_secret(secret.as_bytes()),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, JwtSetupError> {
    std::fs::read(path).map_err(|source| JwtSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The token in an `Authorization` header: API Gateway takes it bare or after `Bearer`.
fn bearer_token(header: Option<&str>) -> Result<&str, Unauthorized> {
    let value = header
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Unauthorized::new("the request has no Authorization header"))?;
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
        _ => value,
    };
    // A token is base64url and dots: any other byte makes it fail to decode later.
    if token.is_empty() || token.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(Unauthorized::new(
            "the Authorization header is not a token or `Bearer <token>`",
        ));
    }
    Ok(token)
}

/// Why a token's header was refused, naming its `alg` when there is one (`none` above all).
fn unreadable_header(token: &str) -> Unauthorized {
    let alg = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").cloned());
    Unauthorized::new(match alg {
        Some(alg) => format!("algorithm {alg} is not one the authorizer accepts"),
        None => "the token is not a JWT".to_owned(),
    })
}

fn jwt_error_reason(e: &jsonwebtoken::errors::Error) -> String {
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired (exp)".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidSignature => "the signature does not verify".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => {
            format!("the `{claim}` claim is not a number of seconds")
        }
        _ => format!("the token is not valid: {e}"),
    }
}

/// The token's scopes: `scp` (a list or a space-separated string), else `scope`.
fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let list = |v: &Value| match v {
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    };
    claims
        .get("scp")
        .and_then(list)
        .or_else(|| claims.get("scope").and_then(list))
        .unwrap_or_default()
}

/// Renders a claim as Go's `%v` does, which is how API Gateway flattens claims.
fn go_text(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_text(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Go prints a map's keys sorted.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push_str("map[");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_text(v, out);
            }
            out.push(']');
        }
    }
}

/// An error and its causes, `: `-separated: reqwest's own message alone rarely says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Router, extract::State, http::StatusCode, routing::get};
    use jsonwebtoken::{EncodingKey, Header, encode};

    use super::*;

    const ISSUER: &str = "https://issuer.example.com/";
    const AUDIENCE: &str = "api://nimbus";

    fn key_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name)
    }

    fn spec(keys: JwtKeys, algorithms: &[&str]) -> JwtAuthSpec {
        JwtAuthSpec {
            issuer: ISSUER.to_owned(),
            audiences: vec![AUDIENCE.to_owned(), "second-audience".to_owned()],
            algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
            keys,
            leeway: Duration::from_secs(30),
        }
    }

    fn now() -> i64 {
        i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    }

    fn claims() -> Value {
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now(), "exp": now() + 600 })
    }

    /// `claims` with `changes` applied; a null change removes the claim.
    fn with(mut claims: Value, changes: Value) -> Value {
        let object = claims.as_object_mut().unwrap();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                object.remove(k);
            } else {
                object.insert(k.clone(), v.clone());
            }
        }
        claims
    }

    /// A token signed with one of the test keys.
    fn sign(alg: Algorithm, kid: Option<&str>, private_key: &str, claims: &Value) -> String {
        let pem = std::fs::read(key_path(private_key)).unwrap();
        let key = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem).unwrap(),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem).unwrap(),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&pem).unwrap(),
            AlgorithmFamily::Hmac => EncodingKey::from_secret(&pem),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &key).unwrap()
    }

    fn rsa1(claims: &Value) -> String {
        sign(Algorithm::RS256, Some("rsa-1"), "rsa-1-private.pem", claims)
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    async fn jwks_file() -> JwtAuthorizer {
        let keys = JwtKeys::JwksFile(key_path("jwks.json"));
        JwtAuthorizer::new(&spec(keys, &["RS256", "ES256", "EdDSA"]))
            .await
            .unwrap()
    }

    async fn pem(file: &str, algorithms: &[&str]) -> JwtAuthorizer {
        JwtAuthorizer::new(&spec(JwtKeys::PublicKeyPem(key_path(file)), algorithms))
            .await
            .unwrap()
    }

    async fn accepts(auth: &JwtAuthorizer, token: &str) -> VerifiedToken {
        match auth.verify(Some(&format!("Bearer {token}")), &[]).await {
            Ok(verified) => verified,
            Err(e) => panic!("refused: {e}"),
        }
    }

    async fn rejects(auth: &JwtAuthorizer, token: &str, why: &str) {
        let header = format!("Bearer {token}");
        let err = auth.verify(Some(&header), &[]).await.unwrap_err();
        let reason = err.to_string();
        assert!(reason.contains(why), "{reason:?} should say {why:?}");
        assert!(!err.is_insufficient_scope());
    }

    #[tokio::test]
    async fn tokens_verify_against_a_jwks_file_by_kid() {
        let auth = jwks_file().await;
        let verified = accepts(&auth, &rsa1(&claims())).await;
        assert_eq!(verified.claims()["sub"], "user-1");
        assert!(verified.scopes().is_empty());
        let es = sign(
            Algorithm::ES256,
            Some("ec-1"),
            "ec-1-private.pem",
            &claims(),
        );
        accepts(&auth, &es).await;
        let ed = sign(
            Algorithm::EdDSA,
            Some("ed-1"),
            "ed-1-private.pem",
            &claims(),
        );
        accepts(&auth, &ed).await;
    }

    #[tokio::test]
    async fn tokens_verify_against_pem_public_keys() {
        let es = pem("ec-1-public.pem", &["ES256"]).await;
        accepts(
            &es,
            &sign(Algorithm::ES256, None, "ec-1-private.pem", &claims()),
        )
        .await;
        // One key, so whatever kid the token names does not matter.
        let named = sign(Algorithm::ES256, Some("x"), "ec-1-private.pem", &claims());
        accepts(&es, &named).await;
        let other = sign(Algorithm::ES256, None, "ec-1-private.pem", &claims());
        rejects(&pem("ed-1-public.pem", &["EdDSA"]).await, &other, "ES256").await;

        let rsa = pem("rsa-1-public.pem", &["RS256", "PS512"]).await;
        accepts(
            &rsa,
            &sign(Algorithm::RS256, None, "rsa-1-private.pem", &claims()),
        )
        .await;
        accepts(
            &rsa,
            &sign(Algorithm::PS512, None, "rsa-1-private.pem", &claims()),
        )
        .await;
        let ed = pem("ed-1-public.pem", &["EdDSA"]).await;
        accepts(
            &ed,
            &sign(Algorithm::EdDSA, None, "ed-1-private.pem", &claims()),
        )
        .await;
    }

    // Edition 2024 makes `std::env::set_var` unsafe and the workspace forbids `unsafe`, so
    // this test hands the authorizer the variable; the next one reads the real environment.
    #[tokio::test]
    async fn hs256_tokens_verify_with_the_secret_from_the_environment() {
        const VAR: &str = "NIMBUS_TEST_JWT_SECRET_7F3A";
        const SECRET: &str = "a test secret of 32 bytes or more";
        let env = |name: &str| {
            if name == VAR {
                Ok(SECRET.to_owned())
            } else {
                Err(VarError::NotPresent)
            }
        };
        let spec = spec(JwtKeys::SecretEnv(VAR.to_owned()), &["HS256"]);
        let auth = JwtAuthorizer::build(&spec, &env, Timing::DEFAULT)
            .await
            .unwrap();
        let header = Header::new(Algorithm::HS256);
        let token = encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        accepts(&auth, &token.unwrap()).await;
        let wrong = EncodingKey::from_secret(b"another secret of 32 bytes or more");
        let forged = encode(&header, &claims(), &wrong).unwrap();
        rejects(&auth, &forged, "signature").await;
    }

    #[tokio::test]
    async fn the_secret_comes_from_the_process_environment() {
        // Cargo sets this variable for the tests it runs; a short value is refused.
        let value = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let spec = spec(
            JwtKeys::SecretEnv("CARGO_MANIFEST_DIR".to_owned()),
            &["HS256"],
        );
        match JwtAuthorizer::new(&spec).await {
            Ok(auth) => {
                assert!(value.len() >= 32);
                let key = EncodingKey::from_secret(value.as_bytes());
                let token = encode(&Header::new(Algorithm::HS256), &claims(), &key).unwrap();
                accepts(&auth, &token).await;
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains("CARGO_MANIFEST_DIR"), "{message}");
                assert!(message.contains(&format!("holds {} bytes", value.len())));
            }
        }
        let unset = JwtKeys::SecretEnv("NIMBUS_TEST_JWT_UNSET_9C41".to_owned());
        let e = JwtAuthorizer::new(&self::spec(unset, &["HS256"]))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable NIMBUS_TEST_JWT_UNSET_9C41 is not set"
        );
    }

    #[tokio::test]
    async fn time_claims_are_checked_with_the_leeway() {
        let auth = jwks_file().await;
        let changed = |changes: Value| rsa1(&with(claims(), changes));
        rejects(&auth, &changed(json!({ "exp": now() - 120 })), "expired").await;
        rejects(
            &auth,
            &changed(json!({ "nbf": now() + 120 })),
            "not valid yet",
        )
        .await;
        let future = changed(json!({ "iat": now() + 120 }));
        rejects(&auth, &future, "issued in the future").await;
        rejects(&auth, &changed(json!({ "exp": null })), "no `exp` claim").await;
        rejects(&auth, &changed(json!({ "exp": "tomorrow" })), "exp").await;
        rejects(&auth, &changed(json!({ "nbf": "now" })), "nbf").await;
        // Within the 30 s leeway.
        accepts(&auth, &changed(json!({ "exp": now() - 10 }))).await;
        accepts(&auth, &changed(json!({ "nbf": now() + 10 }))).await;
        accepts(&auth, &changed(json!({ "iat": now() + 10 }))).await;
    }

    #[tokio::test]
    async fn issuer_and_audience_must_match() {
        let auth = jwks_file().await;
        let changed = |changes: Value| rsa1(&with(claims(), changes));
        let other_issuer = changed(json!({ "iss": "https://evil.example.com/" }));
        rejects(
            &auth,
            &other_issuer,
            "is not \"https://issuer.example.com/\"",
        )
        .await;
        rejects(&auth, &changed(json!({ "iss": null })), "no `iss`").await;
        let other_audience = changed(json!({ "aud": "someone-else" }));
        rejects(&auth, &other_audience, "valid audience").await;
        rejects(&auth, &changed(json!({ "aud": null })), "valid audience").await;
        accepts(&auth, &changed(json!({ "aud": ["x", "second-audience"] }))).await;
        // Without `aud`, API Gateway takes `client_id`; with one, `aud` decides.
        let client = changed(json!({ "aud": null, "client_id": AUDIENCE }));
        accepts(&auth, &client).await;
        let both = changed(json!({ "aud": "someone-else", "client_id": AUDIENCE }));
        rejects(&auth, &both, "valid audience").await;
    }

    #[tokio::test]
    async fn the_key_is_picked_by_kid() {
        let auth = jwks_file().await;
        let unknown = sign(
            Algorithm::RS256,
            Some("rsa-9"),
            "rsa-1-private.pem",
            &claims(),
        );
        rejects(&auth, &unknown, "kid \"rsa-9\"").await;
        // The client is told why without the authorizer's settings.
        let refused = auth
            .verify(Some(&format!("Bearer {unknown}")), &[])
            .await
            .unwrap_err();
        assert_eq!(refused.public(), "the token's signing key is not known");
        let no_kid = sign(Algorithm::RS256, None, "rsa-1-private.pem", &claims());
        rejects(&auth, &no_kid, "no kid and the JWKS holds 3 keys").await;
        // A JWKS of one key serves tokens without kid.
        let single = JwtKeys::JwksFile(key_path("jwks-single.json"));
        let single = JwtAuthorizer::new(&spec(single, &["RS256"])).await.unwrap();
        accepts(&single, &no_kid).await;
    }

    #[tokio::test]
    async fn signatures_must_verify() {
        let auth = jwks_file().await;
        let other_key = sign(
            Algorithm::RS256,
            Some("rsa-1"),
            "rsa-2-private.pem",
            &claims(),
        );
        rejects(&auth, &other_key, "signature does not verify").await;

        let token = rsa1(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let admin = with(claims(), json!({ "sub": "admin" }));
        let payload = b64(&serde_json::to_vec(&admin).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        rejects(&auth, &tampered, "signature does not verify").await;
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        rejects(&auth, &unsigned, "signature does not verify").await;
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let auth = jwks_file().await;
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(&serde_json::to_vec(&claims()).unwrap());
        let err = auth
            .verify(Some(&format!("{header}.{payload}.")), &[])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm \"none\" is not one the authorizer accepts"
        );
        let spec = spec(JwtKeys::JwksFile(key_path("jwks.json")), &["none"]);
        let e = JwtAuthorizer::new(&spec).await.unwrap_err();
        assert!(matches!(e, JwtSetupError::Algorithm { .. }), "{e}");
    }

    #[tokio::test]
    async fn algorithm_confusion_is_refused() {
        // The classic attack: HMAC-sign with the server's public key as the secret.
        let auth = pem("rsa-1-public.pem", &["RS256"]).await;
        let confused = sign(Algorithm::HS256, None, "rsa-1-public.pem", &claims());
        rejects(&auth, &confused, "HS256").await;
        // Algorithms not configured are refused even with the right key.
        let rs384 = sign(Algorithm::RS384, None, "rsa-1-private.pem", &claims());
        rejects(&auth, &rs384, "RS384").await;
        // Mixing HMAC with public keys is refused when the app starts...
        let mixed = spec(
            JwtKeys::PublicKeyPem(key_path("rsa-1-public.pem")),
            &["RS256", "HS256"],
        );
        let e = JwtAuthorizer::new(&mixed).await.unwrap_err();
        assert!(matches!(e, JwtSetupError::MixedAlgorithms { .. }), "{e}");
        // ...and a public key is never a key for HMAC, nor an RSA key for ECDSA.
        let pem_bytes = std::fs::read(key_path("rsa-1-public.pem")).unwrap();
        let path = key_path("rsa-1-public.pem");
        let key = key_from_pem(&path, &pem_bytes, &[Algorithm::RS256]).unwrap();
        let lone = KeySet::single(key);
        assert!(lone.select(None, Algorithm::HS256).is_err());
        assert!(lone.select(None, Algorithm::RS256).is_ok());
        let jwks = jwks_file().await;
        let es_as_rsa = sign(
            Algorithm::ES256,
            Some("rsa-1"),
            "ec-1-private.pem",
            &claims(),
        );
        rejects(&jwks, &es_as_rsa, "no key is a key for ES256").await;
    }

    #[tokio::test]
    async fn scopes_are_checked_when_the_route_names_them() {
        let auth = jwks_file().await;
        let scoped = |scopes: Value| rsa1(&with(claims(), scopes));
        let required = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let verify = |token: String, names: &[&str]| {
            let header = format!("Bearer {token}");
            let required = required(names);
            let auth = &auth;
            async move { auth.verify(Some(&header), &required).await }
        };

        let token = scoped(json!({ "scope": "read write" }));
        let ok = verify(token.clone(), &["write", "admin"]).await.unwrap();
        assert_eq!(ok.scopes(), ["read", "write"]);
        assert_eq!(ok.authorizer_context()["scopes"], json!(["read", "write"]));
        let err = verify(token.clone(), &["admin"]).await.unwrap_err();
        assert!(err.is_insufficient_scope(), "{err}");
        // No scopes asked: any token passes, and API Gateway reports no scopes.
        let ok = verify(token, &[]).await.unwrap();
        assert_eq!(ok.authorizer_context()["scopes"], Value::Null);

        let scp = scoped(json!({ "scp": ["orders/read", "orders/write"] }));
        verify(scp, &["orders/read"]).await.unwrap();
        let scp_text = scoped(json!({ "scp": "orders/read orders/write" }));
        verify(scp_text, &["orders/write"]).await.unwrap();
        // `scp` wins over `scope`.
        let both = scoped(json!({ "scp": ["a"], "scope": "b" }));
        let err = verify(both, &["b"]).await.unwrap_err();
        assert!(err.is_insufficient_scope());
        let err = verify(rsa1(&claims()), &["read"]).await.unwrap_err();
        assert!(err.is_insufficient_scope());
        assert_eq!(
            err.to_string(),
            "the token does not have a scope the route needs: its scopes [] hold none of [\"read\"]"
        );
        assert_eq!(
            err.public(),
            "the token does not have a scope the route needs"
        );
    }

    #[tokio::test]
    async fn the_token_is_taken_bare_or_after_bearer() {
        let auth = jwks_file().await;
        let token = rsa1(&claims());
        for header in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("  Bearer   {token} "),
            token.clone(),
        ] {
            auth.verify(Some(&header), &[]).await.unwrap();
        }
        let refused = |header: Option<&'static str>, why: &'static str| {
            let auth = &auth;
            async move {
                let err = auth.verify(header, &[]).await.unwrap_err();
                assert!(err.to_string().contains(why), "{header:?}: {err}");
            }
        };
        refused(None, "no Authorization header").await;
        refused(Some(""), "no Authorization header").await;
        refused(Some("Basic dXNlcjpwYXNz"), "not a token").await;
        refused(Some("Bearer"), "not a JWT").await;
        refused(Some("Bearer a.b.c d"), "not a token").await;
    }

    #[tokio::test]
    async fn the_request_context_flattens_claims_to_strings() {
        let auth = jwks_file().await;
        let claims = json!({
            "iss": ISSUER,
            "aud": [AUDIENCE, "x"],
            "sub": "user-1",
            "exp": 4_102_444_800_i64,
            "iat": 1_700_000_000,
            "email_verified": true,
            "ratio": 1.5,
            "cognito:groups": ["admin", "dev"],
            "address": { "zip": "100", "country": "JP" },
            "nickname": null,
            "scope": "read write",
        });
        let verified = auth
            .verify(Some(&rsa1(&claims)), &["read".to_owned()])
            .await
            .unwrap();
        assert_eq!(
            verified.authorizer_context(),
            json!({
                "claims": {
                    "iss": ISSUER,
                    "aud": "[api://nimbus x]",
                    "sub": "user-1",
                    "exp": "4102444800",
                    "iat": "1700000000",
                    "email_verified": "true",
                    "ratio": "1.5",
                    "cognito:groups": "[admin dev]",
                    "address": "map[country:JP zip:100]",
                    "scope": "read write",
                },
                "scopes": ["read", "write"],
            })
        );
    }

    /// A JWKS endpoint on 127.0.0.1 whose answer the test changes, counting requests.
    #[derive(Clone)]
    struct KeyServer {
        answer: Arc<Mutex<(StatusCode, String)>>,
        hits: Arc<AtomicUsize>,
    }

    impl KeyServer {
        async fn start(jwks_file: &str) -> (KeyServer, String) {
            let server = KeyServer {
                answer: Arc::new(Mutex::new((StatusCode::OK, String::new()))),
                hits: Arc::new(AtomicUsize::new(0)),
            };
            server.serve(jwks_file);
            let app = Router::new()
                .route(
                    "/.well-known/jwks.json",
                    get(|State(s): State<KeyServer>| async move {
                        s.hits.fetch_add(1, Ordering::SeqCst);
                        s.answer.lock().unwrap().clone()
                    }),
                )
                .with_state(server.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!(
                "http://{}/.well-known/jwks.json",
                listener.local_addr().unwrap()
            );
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            (server, url)
        }

        fn serve(&self, jwks_file: &str) {
            let body = std::fs::read_to_string(key_path(jwks_file)).unwrap();
            *self.answer.lock().unwrap() = (StatusCode::OK, body);
        }

        fn fail(&self) {
            *self.answer.lock().unwrap() = (StatusCode::INTERNAL_SERVER_ERROR, "down".into());
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }

        /// Waits (boundedly) until the server has answered `n` requests.
        async fn wait_for_hits(&self, n: usize) {
            for _ in 0..400 {
                if self.hits() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the key server got {} requests, not {n}", self.hits());
        }
    }

    #[tokio::test]
    async fn a_jwks_url_is_fetched_again_for_an_unknown_kid_at_most_every_30_s() {
        let (server, url) = KeyServer::start("jwks.json").await;
        let auth = JwtAuthorizer::new(&spec(JwtKeys::JwksUrl(url), &["RS256"]))
            .await
            .unwrap();
        assert_eq!(server.hits(), 1);
        accepts(&auth, &rsa1(&claims())).await;
        assert_eq!(server.hits(), 1, "a known kid needs no fetch");

        // The issuer rotates in a new key: its first token makes the authorizer look again.
        server.serve("jwks-rotated.json");
        let rsa2 = sign(
            Algorithm::RS256,
            Some("rsa-2"),
            "rsa-2-private.pem",
            &claims(),
        );
        accepts(&auth, &rsa2).await;
        assert_eq!(server.hits(), 2);

        // Forged kids cannot make it hammer the key server.
        for _ in 0..5 {
            let forged = sign(
                Algorithm::RS256,
                Some("rsa-9"),
                "rsa-2-private.pem",
                &claims(),
            );
            rejects(&auth, &forged, "kid \"rsa-9\"").await;
        }
        assert_eq!(server.hits(), 2);
    }

    /// An RS256 authorizer on the keys at `url`, refreshed every 50 ms, fetching for an
    /// unknown kid at most once an hour.
    async fn refreshed_every_50_ms(url: String) -> JwtAuthorizer {
        let timing = Timing {
            refresh_every: Duration::from_millis(50),
            unknown_kid_gap: Duration::from_secs(3600),
        };
        let spec = spec(JwtKeys::JwksUrl(url), &["RS256"]);
        JwtAuthorizer::build(&spec, &|_| Err(VarError::NotPresent), timing)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_jwks_url_is_refreshed_periodically_and_a_failed_refresh_keeps_the_keys() {
        let (server, url) = KeyServer::start("jwks.json").await;
        let auth = refreshed_every_50_ms(url).await;
        // Spend the one fetch an unknown kid may cause, so only the timer fetches below.
        let rsa2 = sign(
            Algorithm::RS256,
            Some("rsa-2"),
            "rsa-2-private.pem",
            &claims(),
        );
        rejects(&auth, &rsa2, "kid \"rsa-2\"").await;

        server.fail();
        let failed_from = server.hits();
        server.wait_for_hits(failed_from + 3).await;
        accepts(&auth, &rsa1(&claims())).await;

        server.serve("jwks-rotated.json");
        // Two more requests: the first of them has certainly finished and been stored.
        let served_from = server.hits();
        server.wait_for_hits(served_from + 2).await;
        accepts(&auth, &rsa2).await;

        drop(auth);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after_drop = server.hits();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            server.hits(),
            after_drop,
            "a dropped authorizer stops refreshing"
        );
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_a_refresh_drops_its_key() {
        let (server, url) = KeyServer::start("jwks-rotated.json").await;
        let auth = refreshed_every_50_ms(url).await;
        let rsa2 = sign(
            Algorithm::RS256,
            Some("rsa-2"),
            "rsa-2-private.pem",
            &claims(),
        );
        accepts(&auth, &rsa2).await;
        accepts(&auth, &rsa2).await;
        assert_eq!(auth.verified.len(), 1, "the token is remembered");

        // The issuer withdraws rsa-2: once a refresh has stored the new set, the token
        // is checked again and refused.
        server.serve("jwks.json");
        let from = server.hits();
        server.wait_for_hits(from + 2).await;
        rejects(&auth, &rsa2, "kid \"rsa-2\"").await;
    }

    #[tokio::test]
    async fn a_remembered_token_meets_the_clock_and_the_route_on_every_request() {
        let auth = jwks_file().await;
        let exp = now() + 600;
        let token = rsa1(&with(claims(), json!({ "scp": "read", "exp": exp })));
        let first = accepts(&auth, &token).await;
        assert_eq!(auth.verified.len(), 1);
        let again = accepts(&auth, &token).await;
        assert!(
            Arc::ptr_eq(&first.checked, &again.checked),
            "served from the cache"
        );

        // The route's scopes are checked on a hit as on a first sight.
        let header = format!("Bearer {token}");
        let refused = auth
            .verify(Some(&header), &["write".to_owned()])
            .await
            .unwrap_err();
        assert!(refused.is_insufficient_scope());
        let ok = auth
            .verify(Some(&header), &["read".to_owned()])
            .await
            .unwrap();
        assert_eq!(ok.scopes(), ["read"]);

        // The clock: accepted up to `exp` plus the leeway, refused after.
        let leeway = auth.leeway as i64;
        let at = |t: i64| auth.check_times(&first.checked, t as f64);
        assert!(at(exp + leeway).is_ok());
        let late = at(exp + leeway + 1).unwrap_err();
        assert!(late.to_string().contains("expired"), "{late}");
        let iat = first.checked.iat.unwrap() as i64;
        let early = at(iat - leeway - 1).unwrap_err();
        assert!(early.to_string().contains("future"), "{early}");

        // A forged token is never remembered.
        let last = if token.ends_with('A') { 'E' } else { 'A' };
        let forged = format!("{}{last}", &token[..token.len() - 1]);
        assert!(
            auth.verify(Some(&format!("Bearer {forged}")), &[])
                .await
                .is_err()
        );
        assert_eq!(auth.verified.len(), 1);
    }

    #[tokio::test]
    async fn setup_errors_name_the_file_url_or_variable() {
        let missing = key_path("no-such-jwks.json");
        let e = JwtAuthorizer::new(&spec(JwtKeys::JwksFile(missing.clone()), &["RS256"]))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );

        let private = JwtKeys::PublicKeyPem(key_path("rsa-1-private.pem"));
        let e = JwtAuthorizer::new(&spec(private, &["RS256"]))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("rsa-1-private.pem: holds a private key"),
            "{e}"
        );

        let not_a_key = JwtKeys::PublicKeyPem(key_path("jwks.json"));
        let e = JwtAuthorizer::new(&spec(not_a_key, &["RS256"]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a PEM public key"), "{e}");

        let ec_for_rsa = JwtKeys::PublicKeyPem(key_path("ec-1-public.pem"));
        let e = JwtAuthorizer::new(&spec(ec_for_rsa, &["RS256"]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot verify RS256"), "{e}");

        let (server, url) = KeyServer::start("jwks.json").await;
        server.fail();
        let e = JwtAuthorizer::new(&spec(JwtKeys::JwksUrl(url.clone()), &["RS256"]))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot fetch the JWKS at {url}: \
                 the server answered HTTP 500 Internal Server Error"
            )
        );

        // Redirects are followed on the same host, never to plain http on another.
        let (_server, keys) = KeyServer::start("jwks.json").await;
        let redirect = |to: String| {
            Router::new().route(
                "/jwks.json",
                get(move || {
                    let to = to.clone();
                    async move { axum::response::Redirect::temporary(&to) }
                }),
            )
        };
        let serve = |app: Router| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            addr
        };
        let elsewhere = keys.replace("127.0.0.1", "localhost");
        let away = serve(redirect(elsewhere)).await;
        let url = format!("http://{away}/jwks.json");
        let e = JwtAuthorizer::new(&spec(JwtKeys::JwksUrl(url), &["RS256"]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("plain http on another host"), "{e}");
        let near = serve(redirect(keys)).await;
        let url = format!("http://{near}/jwks.json");
        assert!(
            JwtAuthorizer::new(&spec(JwtKeys::JwksUrl(url), &["RS256"]))
                .await
                .is_ok()
        );

        // A port nothing listens on any more.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
        drop(closed);
        let e = JwtAuthorizer::new(&spec(JwtKeys::JwksUrl(url.clone()), &["RS256"]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&url), "{e}");
    }

    #[test]
    fn a_jwks_keeps_only_public_signing_keys() {
        let jwks = json!({ "keys": [
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
            { "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" },
            { "kty": "EC", "kid": "mismatch", "alg": "ES384", "crv": "P-256", "x": "AA", "y": "AA" },
        ]});
        let err = parse_jwks(&serde_json::to_vec(&jwks).unwrap())
            .err()
            .unwrap();
        assert!(err.starts_with("holds no usable signing key"), "{err}");
        for kid in ["secret", "enc", "p521", "mismatch"] {
            assert!(err.contains(&format!("\"{kid}\"")), "{err}");
        }
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"not json").is_err());
    }
}
