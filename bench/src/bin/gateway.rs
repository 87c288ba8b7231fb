//! The gateway's cost per request, two ways, in one run:
//!
//! 1. In process: `nimbus_gateway::router` in front of an invoker that answers at once,
//!    driven sequentially with `tower::ServiceExt::oneshot`, so what is timed is the
//!    gateway's own work (routing, authorization, event mapping, response mapping) plus
//!    axum's dispatch and the near-zero cost of the fake invoker. Routes without auth and
//!    with `auth = "jwt"` (RS256), next to a bare axum router answering the same bytes.
//! 2. End to end: hello-world throughput of `nimbus up` (one `provided` function, the
//!    `lambda_runtime` echo fixture, 16 warm instances) and of a bare axum server inside
//!    this process answering the same status, content type and body, both driven by the
//!    same closed-loop load generator at 1, 16 and 64 keep-alive connections.
//!
//! Usage: `gateway [SECONDS_PER_STEP]` (default 5). The `nimbus` binary is looked up next
//! to this one; the echo bootstrap under the same target directory at
//! `fixtures/release/bootstrap` (where `bench/run invoke` builds it) or
//! `fixtures/lambda-runtime-echo/release/bootstrap`. Without a bootstrap, part 2 is
//! skipped with a note. bench/README.md defines each figure.

use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{HeaderValue, Request, StatusCode, header},
};
use nimbus_bench::{
    LoadFigures, Threads, closed_loop, human, ready_address, serve_in_background, start_up, stop,
};
use nimbus_core::{
    AppSpec, BoxFuture, HttpMethod, Invoke, InvokeError, InvokeOptions, InvokeResult, JwtAuthSpec,
    JwtKeys, Outcome, PayloadVersion, RouteAuth, RouteKey, RouteSpec,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Requests per route in part 1, after [`IN_PROCESS_WARMUP`] unmeasured ones.
const IN_PROCESS_REQUESTS: usize = 200_000;
/// Unmeasured requests per route before the measured ones in part 1.
const IN_PROCESS_WARMUP: usize = 20_000;
/// Part 1's measured requests run in this many rounds, the routes taking turns.
const IN_PROCESS_ROUNDS: usize = 10;
/// What the fake invoker returns: a payload 2.0 result.
const FUNCTION_RESULT: &str = r#"{"statusCode":200,"body":"hello"}"#;
/// Distinct tokens sent once each for the first-sighting row of part 1 (each is signed
/// by an `openssl` process, a few ms apiece).
const FRESH_TOKENS: usize = 2_000;
/// The body of every request.
const REQUEST_BODY: &str = r#"{"greeting":"hello","n":42}"#;
/// The query string of every request.
const QUERY: &str = "name=world&lang=en";
/// The JWT authorizer's issuer and audience, and the token's.
const ISSUER: &str = "https://auth.bench.example/";
const AUDIENCE: &str = "nimbus-bench";
/// Concurrent keep-alive connections per step of part 2.
const CONNECTIONS: [usize; 3] = [1, 16, 64];
/// Unmeasured load at the start of each step of part 2.
const STEP_WARMUP: Duration = Duration::from_secs(1);
/// Per-request log lines are the default; this filter keeps only the "nimbus is ready"
/// line, to show what they cost.
const QUIET_LOG_FILTER: &str = "warn,nimbus::commands=info";
/// The app of part 2: the echo behind `POST /hello`.
const APP_MANIFEST: &str = r#"# Written by bench/src/bin/gateway.rs.
name = "gateway-bench"

[functions.hello]
runtime = "provided.al2023"
code = "provided"
concurrency = { max = 16, min_warm = 16 }

[[routes]]
route = "POST /hello"
function = "hello"
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A duration in microseconds with one decimal, for figures well under a millisecond.
fn micros(d: Duration) -> String {
    format!("{:.1}us", d.as_secs_f64() * 1e6)
}

/// Signed difference `a - b` in the unit that suits it.
fn signed(a: Duration, b: Duration) -> String {
    if a >= b {
        format!("+{}", human(a - b))
    } else {
        format!("-{}", human(b - a))
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

// ---------------------------------------------------------------------------------------
// The token

/// Base64url without padding, as JWTs use it.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        // Three bytes make four characters; a last chunk of one or two makes two or three.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// An RS256 JWT with `claims`, signed by OpenSSL with the PEM private key at `key`.
fn sign_rs256(key: &Path, claims: &Value) -> Result<String, String> {
    let signing_input = format!(
        "{}.{}",
        base64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        base64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(signing_input.as_bytes())
        .map_err(|e| format!("cannot write to openssl: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!(
            "openssl dgst -sign failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(format!("{signing_input}.{}", base64url(&out.stdout)))
}

/// One token for the whole run, valid for a day.
fn bench_token() -> Result<String, String> {
    signed_token(None)
}

/// A token like [`bench_token`]'s, with a `jti` claim when `id` is given, so that each
/// is a token the gateway has never seen.
fn signed_token(id: Option<usize>) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1234",
        "iat": now,
        "exp": now + 24 * 3600,
        "scope": "items.read items.write",
    });
    if let Some(id) = id {
        claims["jti"] = json!(format!("bench-{id}"));
    }
    sign_rs256(
        &repo().join("crates/gateway/tests/keys/rsa-1-private.pem"),
        &claims,
    )
}

// ---------------------------------------------------------------------------------------
// Part 1: in process

/// An invoker that answers every invocation at once with [`FUNCTION_RESULT`].
struct Fixed;

impl Invoke for Fixed {
    fn invoke(
        &self,
        _function: &str,
        _payload: Vec<u8>,
        options: InvokeOptions,
    ) -> BoxFuture<'_, Result<InvokeResult, InvokeError>> {
        // Dropping `options` closes the stream channel: the gateway then waits for this
        // result, as for any function that does not stream.
        let result = InvokeResult {
            request_id: options.request_id.unwrap_or_default(),
            outcome: Outcome::Response(FUNCTION_RESULT.as_bytes().to_vec()),
            log_tail: String::new(),
        };
        Box::pin(async move { Ok(result) })
    }
}

fn route(path: &str, auth: RouteAuth) -> RouteSpec {
    RouteSpec {
        key: RouteKey::Route {
            method: HttpMethod::Post,
            path: path.parse().expect("the bench's route paths are valid"),
        },
        function: "hello".to_owned(),
        auth,
        payload: PayloadVersion::V2,
        rate_limit: None,
    }
}

/// `POST /open` without auth and `POST /secure` with the RS256 JWT authorizer.
fn in_process_app() -> AppSpec {
    let mut app = AppSpec::named("gateway-bench");
    app.auth.jwt = Some(JwtAuthSpec {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        algorithms: vec!["RS256".to_owned()],
        keys: JwtKeys::PublicKeyPem(repo().join("crates/gateway/tests/keys/rsa-1-public.pem")),
        leeway: Duration::from_secs(30),
    });
    app.routes = vec![
        route("/open", RouteAuth::None),
        route("/secure", RouteAuth::Jwt { scopes: vec![] }),
    ];
    app
}

/// A request as a browser or SDK sends it, as hyper hands it to the service (origin-form
/// URI, the peer's address in the extensions).
fn request(path: &str, token: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method("POST")
        .uri(format!("{path}?{QUERY}"))
        .header(header::HOST, "api.bench.example")
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        )
        .header(header::ACCEPT, "application/json")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, REQUEST_BODY.len())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(REQUEST_BODY))
        .expect("the bench's request is well-formed");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_123))));
    request
}

/// What a service answered, for checking that every request got the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// One request through `router`, timed from the call until the whole body is read.
async fn one(router: &Router, request: Request<Body>) -> (Duration, Answer) {
    let started = Instant::now();
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("an axum router does not fail");
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("the body is small and whole");
    let elapsed = started.elapsed();
    (
        elapsed,
        Answer {
            status,
            content_type,
            body,
        },
    )
}

/// One in-process series: a service and the request it is sent.
struct Series<'a> {
    label: &'static str,
    router: &'a Router,
    path: &'static str,
    /// Every answer must be this one.
    answer: Answer,
    samples: Vec<Duration>,
    /// The median of each round, to show how much the machine drifted.
    round_p50s: Vec<Duration>,
}

impl Series<'_> {
    /// `count` sequential requests; `measured` keeps their timings.
    async fn batch(&mut self, token: &str, count: usize, measured: bool) -> Result<(), String> {
        let mut samples = Vec::with_capacity(count);
        for i in 0..count {
            let (elapsed, answer) = one(self.router, request(self.path, token)).await;
            if answer != self.answer {
                return Err(format!(
                    "{}: request {i} answered differently: {answer:?}",
                    self.label
                ));
            }
            samples.push(elapsed);
        }
        if measured {
            samples.sort_unstable();
            self.round_p50s.push(samples[samples.len() / 2]);
            self.samples.extend(samples);
        }
        Ok(())
    }

    fn print_row(&mut self) {
        let n = self.samples.len();
        let total: Duration = self.samples.iter().sum();
        self.samples.sort_unstable();
        self.round_p50s.sort_unstable();
        let at = |q: f64| micros(self.samples[((n - 1) as f64 * q).round() as usize]);
        println!(
            "| {} | {n} | {} | {} | {} | {} | {} - {} |",
            self.label,
            at(0.5),
            at(0.9),
            at(0.99),
            micros(total / n as u32),
            micros(self.round_p50s[0]),
            micros(self.round_p50s[self.round_p50s.len() - 1]),
        );
    }

    fn p50(&self) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        sorted[sorted.len() / 2]
    }
}

/// Runs part 1 and prints its table; returns the JWT route's p50.
async fn in_process(token: String) -> Result<Duration, String> {
    let health = nimbus_gateway::Health {
        app: Some("gateway-bench".to_owned()),
        version: "bench",
    };
    let (gateway, _reloader) =
        nimbus_gateway::router(Some(in_process_app()), health, Arc::new(Fixed))
            .await
            .map_err(|e| format!("the gateway does not start: {e}"))?;
    let (_, answer) = one(&gateway, request("/open", &token)).await;
    if answer.status != StatusCode::OK {
        return Err(format!(
            "the gateway answered {} {:?}",
            answer.status, answer.body
        ));
    }
    // The floor: axum itself, reading the same request and answering the same bytes.
    let bare = {
        let answer = answer.clone();
        Router::new().route(
            "/open",
            axum::routing::post(move |_body: Bytes| {
                let answer = answer.clone();
                async move {
                    let mut response = axum::response::Response::new(Body::from(answer.body));
                    *response.status_mut() = answer.status;
                    if let Some(ct) = answer.content_type {
                        response.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    response
                }
            }),
        )
    };
    let series = |label, router, path| Series {
        label,
        router,
        path,
        answer: answer.clone(),
        samples: Vec::with_capacity(IN_PROCESS_REQUESTS),
        round_p50s: Vec::with_capacity(IN_PROCESS_ROUNDS),
    };
    let mut all = [
        series("bare axum router, same answer (floor)", &bare, "/open"),
        series("gateway, POST /open, auth none", &gateway, "/open"),
        series(
            "gateway, POST /secure, auth jwt (RS256)",
            &gateway,
            "/secure",
        ),
    ];
    for s in &mut all {
        s.batch(&token, IN_PROCESS_WARMUP, false).await?;
    }
    // In rounds, so that a machine that slows down or speeds up during the run weighs on
    // every row alike.
    for _ in 0..IN_PROCESS_ROUNDS {
        for s in &mut all {
            s.batch(&token, IN_PROCESS_REQUESTS / IN_PROCESS_ROUNDS, true)
                .await?;
        }
    }

    println!(
        "## Part 1: gateway cost per request, in process\n\n\
         sequential `oneshot` on a clone of the router, {IN_PROCESS_REQUESTS} requests per row \
         in {IN_PROCESS_ROUNDS} interleaved rounds after {IN_PROCESS_WARMUP} unmeasured; \
         `POST PATH?{QUERY}` with host, user-agent, accept, accept-encoding, content-type, \
         content-length and a bearer token, body {REQUEST_BODY}; the invoker answers \
         {FUNCTION_RESULT} at once (its cost is included and near zero); the gateway \
         answered {} {:?} {:?}\n",
        answer.status, answer.content_type, answer.body,
    );
    println!("| service | requests | p50 | p90 | p99 | mean | p50 of the rounds, min - max |");
    println!("|---|---|---|---|---|---|---|");
    for s in &mut all {
        s.print_row();
    }
    let [floor, open, secure] = &all;
    // First sightings: every request carries a token the gateway has not verified before,
    // so each pays the RS256 signature check.
    let fresh: Vec<String> = (0..FRESH_TOKENS)
        .map(|i| signed_token(Some(i)))
        .collect::<Result<_, _>>()?;
    let mut first = series(
        "gateway, POST /secure, auth jwt (RS256), a new token each request",
        &gateway,
        "/secure",
    );
    for token in &fresh {
        let (elapsed, got) = one(&gateway, request("/secure", token)).await;
        if got != first.answer {
            return Err(format!("a new token answered differently: {got:?}"));
        }
        first.samples.push(elapsed);
    }
    first.round_p50s.push(first.p50());
    first.print_row();
    println!();
    println!(
        "p50 over the bare router: auth none {}, auth jwt {}; JWT verification (jwt - none) {}",
        micros(open.p50().saturating_sub(floor.p50())),
        micros(secure.p50().saturating_sub(floor.p50())),
        micros(secure.p50().saturating_sub(open.p50())),
    );
    println!();
    Ok(secure.p50())
}

// ---------------------------------------------------------------------------------------
// Part 2: end to end

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit, then SIGKILL.
/// A running `nimbus up`, its JSON log in a file.
struct Node {
    child: Child,
    log: PathBuf,
    gateway: SocketAddr,
    /// Bytes of the log already scanned by [`Node::new_cold_starts`].
    scanned: u64,
}

impl Node {
    /// Starts `nimbus up APP` on free ports and waits for its "nimbus is ready" line.
    fn start(
        nimbus: &Path,
        app: &Path,
        log: &Path,
        log_filter: Option<&str>,
    ) -> Result<Node, String> {
        let mut extra = vec!["--no-watch"];
        if let Some(filter) = log_filter {
            extra.extend(["--log-level", filter]);
        }
        let (child, ready) = start_up(nimbus, app, log, &extra, Duration::from_secs(30))?;
        Ok(Node {
            child,
            log: log.to_owned(),
            gateway: ready_address(&ready, "gateway")?,
            scanned: 0,
        })
    }

    /// Cold starts logged since the last call (`None` when the log cannot be read or does
    /// not log invocations).
    fn new_cold_starts(&mut self) -> Option<usize> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.log).ok()?;
        file.seek(SeekFrom::Start(self.scanned)).ok()?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        // Whole lines only: a line still being written is counted next time.
        let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.scanned += end as u64;
        let lines = String::from_utf8_lossy(&text[..end]);
        let logged = lines.contains("\"message\":\"REPORT RequestId");
        let cold = lines
            .lines()
            .filter(|line| line.contains("\"cold\":true"))
            .count();
        (logged || cold > 0).then_some(cold)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // As a supervisor stops it: SIGTERM, then Nimbus stops its instances.
        stop(&mut self.child, Duration::from_secs(10));
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The echo bootstrap built under the target directory this program runs from.
fn find_bootstrap(target: &Path) -> Option<PathBuf> {
    [
        "fixtures/release/bootstrap",
        "fixtures/lambda-runtime-echo/release/bootstrap",
    ]
    .into_iter()
    .map(|p| target.join(p))
    .find(|p| p.is_file())
}

/// One request as the load generator sends it; the answer when it is 200.
async fn call(client: &reqwest::Client, url: &str, token: &str) -> Result<Answer, String> {
    let response = client
        .post(url)
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        )
        .header(header::ACCEPT, "application/json")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(REQUEST_BODY)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status == StatusCode::OK {
        Ok(Answer {
            status,
            content_type,
            body,
        })
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// A client that keeps its one connection alive between calls.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client without TLS builds")
}

/// `connections` closed loops against `url` for `window` after [`STEP_WARMUP`], each on
/// its own keep-alive connection; a call counts when it is answered 200 with a body of
/// `body_len` bytes.
async fn load(
    url: &str,
    token: &str,
    connections: usize,
    window: Duration,
    body_len: usize,
) -> LoadFigures {
    let clients: Arc<Vec<reqwest::Client>> = Arc::new((0..connections).map(|_| client()).collect());
    let url: Arc<str> = url.into();
    let token: Arc<str> = token.into();
    closed_loop(connections, STEP_WARMUP, window, move |i| {
        let client = clients[i].clone();
        let (url, token) = (Arc::clone(&url), Arc::clone(&token));
        async move {
            call(&client, &url, &token)
                .await
                .is_ok_and(|a| a.body.len() == body_len)
        }
    })
    .await
}

/// A bare axum server answering every request with `answer`, on its own multi-threaded
/// runtime (as many workers as cores, as Nimbus's) on its own thread.
fn start_bare_server(answer: Answer) -> SocketAddr {
    let app = Router::new().fallback(move |_body: Bytes| {
        let answer = answer.clone();
        async move {
            let mut response = axum::response::Response::new(Body::from(answer.body));
            *response.status_mut() = answer.status;
            if let Some(ct) = answer.content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
        }
    });
    serve_in_background(app, Threads::PerCore)
}

/// A row of part 2's table.
struct Row {
    server: &'static str,
    connections: usize,
    figures: LoadFigures,
    cold: Option<usize>,
}

impl Row {
    fn print(&self) {
        let (p50, p99) = self
            .figures
            .latency
            .map_or(("-".to_owned(), "-".to_owned()), |s| {
                (human(s.p50), human(s.p99))
            });
        let cold = self.cold.map_or("-".to_owned(), |n| n.to_string());
        println!(
            "| {} | {} | {:.0} | {p50} | {p99} | {} | {cold} |",
            self.server,
            self.connections,
            self.figures.rate(),
            self.figures.errors,
        );
    }
}

const NIMBUS: &str = "nimbus up";
const NIMBUS_QUIET: &str = "nimbus up, request logs off";
const BARE: &str = "bare axum server";

/// A temporary app directory: [`APP_MANIFEST`] with `bootstrap` as its function.
fn write_app(bootstrap: &Path) -> Result<tempfile::TempDir, String> {
    let app = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(app.path().join("provided")).map_err(|e| e.to_string())?;
    std::fs::write(app.path().join("nimbus.toml"), APP_MANIFEST).map_err(|e| e.to_string())?;
    std::fs::copy(bootstrap, app.path().join("provided/bootstrap"))
        .map_err(|e| format!("cannot copy {}: {e}", bootstrap.display()))?;
    Ok(app)
}

/// Runs part 2 and prints its tables.
fn end_to_end(
    rt: &tokio::runtime::Runtime,
    nimbus: &Path,
    bootstrap: &Path,
    token: &str,
    window: Duration,
) -> Result<(), String> {
    // One app directory per node: each keeps its state, and its lock, in DIR/.nimbus.
    let (app, quiet_app) = (write_app(bootstrap)?, write_app(bootstrap)?);
    // Outside the app directories.
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut node = Node::start(nimbus, app.path(), &logs.path().join("default.log"), None)?;
    let mut quiet = Node::start(
        nimbus,
        quiet_app.path(),
        &logs.path().join("quiet.log"),
        Some(QUIET_LOG_FILTER),
    )?;
    let url = |addr: SocketAddr| format!("http://{addr}/hello?{QUERY}");
    let (nimbus_url, quiet_url) = (url(node.gateway), url(quiet.gateway));

    // The answer the bare server gives is the gateway's; the echo's body has the same
    // length on every call (its varying fields are fixed-width).
    let first = rt.block_on(call(&client(), &nimbus_url, token))?;
    let body_len = first.body.len();
    rt.block_on(call(&client(), &quiet_url, token))?;
    let bare_url = url(start_bare_server(first.clone()));
    // All 16 instances warm before the first measured step, on both nodes.
    for u in [&nimbus_url, &quiet_url] {
        rt.block_on(load(u, token, 16, Duration::from_secs(2), body_len));
    }
    node.new_cold_starts();
    quiet.new_cold_starts();

    println!(
        "## Part 2: hello-world end to end\n\n\
         `nimbus up` (one `provided` function, the lambda_runtime echo, \
         concurrency {{ max = 16, min_warm = 16 }}, route `POST /hello`, payload 2.0, JSON \
         logs to a file) and a bare axum server in the bench process answering the same \
         status, content type and {body_len}-byte body ({} {:?}); the same closed-loop \
         load generator (reqwest, one keep-alive connection per caller) on the same \
         request as part 1; {} s warm-up then {} s per step; \"{NIMBUS_QUIET}\" runs with \
         `--log-level {QUIET_LOG_FILTER}`\n",
        first.status,
        first.content_type,
        STEP_WARMUP.as_secs(),
        window.as_secs(),
    );
    println!("| server | connections | req/s | p50 | p99 | errors | cold starts in step |");
    println!("|---|---|---|---|---|---|---|");
    let mut rows: Vec<Row> = Vec::new();
    for connections in CONNECTIONS {
        for (server, target) in [
            (BARE, &bare_url),
            (NIMBUS, &nimbus_url),
            (NIMBUS_QUIET, &quiet_url),
        ] {
            let figures = rt.block_on(load(target, token, connections, window, body_len));
            let cold = match server {
                NIMBUS => node.new_cold_starts(),
                NIMBUS_QUIET => quiet.new_cold_starts(),
                _ => None,
            };
            let row = Row {
                server,
                connections,
                figures,
                cold,
            };
            row.print();
            rows.push(row);
        }
    }
    drop(node);
    drop(quiet);

    let find = |server: &str, connections: usize| {
        rows.iter()
            .find(|r| r.server == server && r.connections == connections)
    };
    println!();
    println!(
        "| connections | p50 nimbus - bare | p50 nimbus (request logs off) - bare | req/s nimbus / bare |"
    );
    println!("|---|---|---|---|");
    for connections in CONNECTIONS {
        let (Some(bare), Some(n), Some(q)) = (
            find(BARE, connections),
            find(NIMBUS, connections),
            find(NIMBUS_QUIET, connections),
        ) else {
            continue;
        };
        let p50 = |r: &Row| r.figures.latency.map(|s| s.p50);
        let gap = |r: &Row| match (p50(r), p50(bare)) {
            (Some(a), Some(b)) => format!("{} ({} - {})", signed(a, b), human(a), human(b)),
            _ => "-".to_owned(),
        };
        let ratio = if bare.figures.rate() > 0.0 {
            format!("{:.2}", n.figures.rate() / bare.figures.rate())
        } else {
            "-".to_owned()
        };
        println!("| {connections} | {} | {} | {ratio} |", gap(n), gap(q));
    }
    println!();
    Ok(())
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("usage: gateway [SECONDS_PER_STEP]"))
        .unwrap_or(5);
    let window = Duration::from_secs(seconds);
    let exe = std::env::current_exe().expect("the path of this program");
    let release = exe.parent().expect("a program lives in a directory");
    let nimbus = release.join("nimbus");
    let target = release
        .parent()
        .expect("release/ lives in the target directory");

    let token = bench_token().expect("signs the bench's JWT");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    // Other work on the machine skews every figure; say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!(
            "load average before the run (1, 5, 15 min): {}\n",
            load.join(" ")
        );
    }

    // On a worker thread, as a connection's task runs in a server: the gateway's spawned
    // invocation task then starts on the same worker.
    let jwt_p50 = rt
        .block_on(rt.spawn(in_process(token.clone())))
        .expect("part 1 does not panic")
        .unwrap_or_else(|e| panic!("part 1: {e}"));

    if !nimbus.is_file() {
        eprintln!(
            "part 2 skipped: no nimbus binary at {} (cargo build --release -p nimbus)",
            nimbus.display()
        );
    } else if let Some(bootstrap) = find_bootstrap(target) {
        if let Err(e) = end_to_end(&rt, &nimbus, &bootstrap, &token, window) {
            eprintln!("part 2 not measured: {e}");
        }
    } else {
        eprintln!(
            "part 2 skipped: no echo bootstrap under {}/fixtures; build it with \
             cargo build --release --manifest-path tests/fixtures/lambda-runtime-echo/Cargo.toml --target-dir {}/fixtures",
            target.display(),
            target.display()
        );
    }

    println!("| figure | measured | target | |");
    println!("|---|---|---|---|");
    println!(
        "| gateway overhead per request, in process, auth jwt (RS256), p50 | {} | < 30us | {} |",
        micros(jwt_p50),
        met(jwt_p50 < Duration::from_micros(30))
    );
}
