//! Wasm functions on Nimbus, compared in the same run with `wasmtime serve` and a bare
//! HTTP server: throughput and latency of the hello-wasm component (examples/hello-wasm)
//! at 1 and 64 closed-loop connections, through Nimbus with `instances = "reuse"` and
//! `"per-request"`, through `wasmtime serve` with a fresh instance per request (its
//! default) and with instance reuse, and against an in-process axum server answering the
//! same bytes (the ceiling); Nimbus's per-request instantiation time from its log; and
//! the first request to a newly started node whose compiled code is cached.
//!
//! Usage: `wasm [SECONDS_PER_STEP]` (default 5). The program builds the component itself
//! (`cargo build --release --target wasm32-wasip2` into `$CARGO_TARGET_DIR/bench-wasm`,
//! `target/bench-wasm` when that is unset).
//! `NIMBUS` names the nimbus binary (default: `nimbus` beside this program), `WASMTIME`
//! the wasmtime CLI (default /opt/wasmtime/bin/wasmtime); `BENCH_SERVERS=nimbus` or
//! `BENCH_SERVERS=wasmtime` limits the run (the bare server always runs).
//! bench/README.md defines each figure.

use std::{
    io::BufRead as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use nimbus_bench::{
    LoadFigures, Summary, Threads, build_hello_wasm, closed_loop, cpu_time, free_port, human,
    per_each, ready_address, serve_in_background, start_up, stop, tail,
};
use serde_json::Value;
use tokio::runtime::Runtime;

/// Concurrent connections per step.
const CONNECTIONS: [usize; 2] = [1, 64];
/// Unmeasured load before each step runs in rounds of this length until two rounds in a
/// row are within 10% of each other's rate.
const WARMUP_ROUND: Duration = Duration::from_secs(1);
/// The most warm-up rounds before measuring anyway.
const WARMUP_ROUNDS: usize = 30;
/// The path every request asks for; the route is `GET /hello/{name}`.
const REQUEST_PATH: &str = "/hello/bench";
/// The component's content type, which the bare server answers with too.
const CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// The component's answer to the first request of an instance (with `GREETING` unset),
/// which the bare server answers with.
const BODY: &str = "Hello, bench! (request 1 of this instance)\n";
/// Starts of a node per first-request measurement, after one unmeasured start.
const FIRST_REQUEST_RUNS: usize = 10;
/// Where `cargo install wasmtime-cli --root /opt/wasmtime` puts the CLI.
const DEFAULT_WASMTIME: &str = "/opt/wasmtime/bin/wasmtime";
/// `wasmtime serve --max-instance-reuse-count` for its reuse row: Nimbus's reuse limit.
const WASMTIME_REUSE: &str = "1000";

/// Whether `BENCH_SERVERS` (unset: all) includes `name`.
fn selected(name: &str) -> bool {
    std::env::var("BENCH_SERVERS").map_or(true, |only| only.split(',').any(|s| s == name))
}

/// The app Nimbus serves: the component as `hello.wasm` behind `GET /hello/{name}`, with
/// instance mode `mode`.
fn manifest(mode: &str) -> String {
    format!(
        r#"name = "wasm-bench"

[functions.hello]
runtime = "wasm"
code = "hello.wasm"
memory_mb = 128
concurrency = {{ max = 64 }}
instances = "{mode}"

[[routes]]
route = "GET /hello/{{name}}"
function = "hello"
"#
    )
}

/// Writes the app for `mode` into `dir`, with a copy of the component.
fn prepare_app(dir: &Path, component: &Path, mode: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("nimbus.toml"), manifest(mode)).map_err(|e| e.to_string())?;
    std::fs::copy(component, dir.join("hello.wasm"))
        .map(drop)
        .map_err(|e| format!("cannot copy {}: {e}", component.display()))
}

/// A client that keeps its connection alive between requests.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client without TLS builds")
}

/// One request: whether it was answered 200 with its whole body.
async fn hit(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// One checked request: the content type and body when answered 200.
async fn answer(client: &reqwest::Client, url: &str) -> Result<(String, String), String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status == 200 {
        Ok((content_type, body))
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Checks that `url` answers as the component does (the bare server's answer, but for
/// the instance's request count, which grows with reuse).
fn check_answer(rt: &Runtime, label: &str, url: &str) -> Result<(), String> {
    let (content_type, body) = rt
        .block_on(answer(&client(), url))
        .map_err(|e| format!("{label}: the first request failed: {e}"))?;
    if content_type != CONTENT_TYPE || !body.starts_with("Hello, bench! (request ") {
        return Err(format!(
            "{label}: unexpected answer: content-type {content_type:?}, body {body:?}"
        ));
    }
    Ok(())
}

/// Closed loops against `url`, caller `i` on the keep-alive connection of `clients[i]`.
async fn load(clients: &Arc<Vec<reqwest::Client>>, url: &str, window: Duration) -> LoadFigures {
    let clients = Arc::clone(clients);
    let url: Arc<str> = url.into();
    closed_loop(clients.len(), Duration::ZERO, window, move |i| {
        let client = clients[i].clone();
        let url = Arc::clone(&url);
        async move { hit(&client, &url).await }
    })
    .await
}

fn clients(n: usize) -> Arc<Vec<reqwest::Client>> {
    Arc::new((0..n).map(|_| client()).collect())
}

/// One step: warm-up rounds until steady (see [`WARMUP_ROUND`]), then the measured
/// window on the same connections. Returns the figures and the warm-up time.
fn step(rt: &Runtime, url: &str, connections: usize, window: Duration) -> (LoadFigures, Duration) {
    let clients = clients(connections);
    let started = Instant::now();
    let mut last_rate: Option<f64> = None;
    for _ in 0..WARMUP_ROUNDS {
        let rate = rt.block_on(load(&clients, url, WARMUP_ROUND)).rate();
        if last_rate.is_some_and(|last| (rate - last).abs() <= 0.1 * last.max(rate)) {
            break;
        }
        last_rate = Some(rate);
    }
    let warmup = started.elapsed();
    (rt.block_on(load(&clients, url, window)), warmup)
}

/// A server under load: its label in the tables and its URL.
struct Target {
    label: &'static str,
    url: String,
    /// The server's process, when it is not this program.
    pid: Option<u32>,
}

/// Runs and prints the steps against `target`; the figures per connection count.
fn rows(rt: &Runtime, target: &Target, window: Duration) -> Vec<(usize, LoadFigures)> {
    let mut figures = Vec::new();
    for connections in CONNECTIONS {
        let (f, warmup) = step(rt, &target.url, connections, window);
        let (p50, p99) = f.latency.map_or(("-".to_owned(), "-".to_owned()), |s| {
            (human(s.p50), human(s.p99))
        });
        println!(
            "| {} | {connections} | {:.0} | {p50} | {p99} | {} | {:.0} s |",
            target.label,
            f.rate(),
            f.errors,
            warmup.as_secs_f64()
        );
        figures.push((connections, f));
    }
    figures
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit, then SIGKILL.
/// A running `nimbus up`, its JSON log in a file.
struct Node {
    child: Child,
    log: PathBuf,
    gateway: SocketAddr,
}

impl Node {
    /// Starts `nimbus up APP` on free ports without watching the code and waits for its
    /// "nimbus is ready" line.
    fn start(nimbus: &Path, app: &Path, log: &Path) -> Result<Node, String> {
        let (child, ready) = start_up(nimbus, app, log, &["--no-watch"], Duration::from_secs(30))?;
        Ok(Node {
            child,
            log: log.to_owned(),
            gateway: ready_address(&ready, "gateway")?,
        })
    }

    fn url(&self) -> String {
        format!("http://{}{REQUEST_PATH}", self.gateway)
    }

    /// The `init_ms` of every REPORT log line so far, and the number of those lines.
    fn init_durations(&self) -> (Vec<Duration>, usize) {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return (Vec::new(), 0);
        };
        let (mut inits, mut lines) = (Vec::new(), 0);
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            if !line.contains("\"REPORT RequestId") {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if !v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("REPORT RequestId"))
            {
                continue;
            }
            lines += 1;
            if let Some(ms) = v["init_ms"].as_f64() {
                inits.push(Duration::from_secs_f64(ms / 1000.0));
            }
        }
        (inits, lines)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

/// A running `wasmtime serve`.
struct Wasmtime {
    child: Child,
    addr: SocketAddr,
}

impl Wasmtime {
    /// Starts `wasmtime serve` on `component` with `extra` options and waits until it
    /// answers 200.
    fn start(
        rt: &Runtime,
        program: &Path,
        component: &Path,
        extra: &[&str],
        log: &Path,
    ) -> Result<Wasmtime, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let file = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .args(["serve", "-S", "cli=y", "-O", "pooling-allocator=y"])
            .arg("--addr")
            .arg(addr.to_string())
            .args(extra)
            .arg(component)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let mut server = Wasmtime { child, addr };
        let url = server.url();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if rt.block_on(hit(&client(), &url)) {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "wasmtime serve exited ({status}):\n{}",
                    tail(log, 20)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "wasmtime serve not answering in 120 s:\n{}",
                    tail(log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://{}{REQUEST_PATH}", self.addr)
    }
}

impl Drop for Wasmtime {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

/// The ceiling: an axum server on its own thread and multi-threaded tokio runtime (as
/// Nimbus and `wasmtime serve` run theirs) answering every `GET /hello/{name}` with the
/// component's status, content type and body.
fn start_bare_server() -> SocketAddr {
    let app = axum::Router::new().route(
        "/hello/{name}",
        axum::routing::get(|| async { ([("content-type", CONTENT_TYPE)], BODY) }),
    );
    serve_in_background(app, Threads::PerCore)
}

/// What one server's rounds of an alternating comparison gave: the figures per round,
/// and the CPU (user + system) its process and this program (the load generator; also the
/// server, for the in-process one) used over them.
struct Alternated {
    rounds: Vec<LoadFigures>,
    server_cpu: Duration,
    load_cpu: Duration,
}

/// Alternates `rounds` windows of `round` at `connections` connections over `targets`
/// (after one unmeasured round each), so all see the same machine at nearly the same
/// time.
fn interleaved(
    rt: &Runtime,
    targets: &[&Target],
    connections: usize,
    rounds: usize,
    round: Duration,
) -> Vec<Alternated> {
    let pools: Vec<_> = targets.iter().map(|_| clients(connections)).collect();
    for (target, pool) in targets.iter().zip(&pools) {
        rt.block_on(load(pool, &target.url, round));
    }
    let mut all: Vec<Alternated> = targets
        .iter()
        .map(|_| Alternated {
            rounds: Vec::new(),
            server_cpu: Duration::ZERO,
            load_cpu: Duration::ZERO,
        })
        .collect();
    let me = std::process::id();
    let spent = |pid: Option<u32>, before: Option<Duration>| match (before, pid.and_then(cpu_time))
    {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => Duration::ZERO,
    };
    for _ in 0..rounds {
        for ((target, pool), a) in targets.iter().zip(&pools).zip(&mut all) {
            let (server_before, load_before) = (target.pid.and_then(cpu_time), cpu_time(me));
            a.rounds.push(rt.block_on(load(pool, &target.url, round)));
            a.server_cpu += spent(target.pid, server_before);
            a.load_cpu += spent(Some(me), load_before);
        }
    }
    all
}

/// `spent` per request answered in `rounds`.
fn cpu_per_request(spent: Duration, rounds: &[LoadFigures]) -> String {
    human(per_each(spent, rounds.iter().map(|f| f.completed).sum()))
}

/// Successful requests per second over all rounds.
fn total_rate(rounds: &[LoadFigures]) -> f64 {
    let completed: usize = rounds.iter().map(|f| f.completed).sum();
    let seconds: f64 = rounds.iter().map(|f| f.window.as_secs_f64()).sum();
    completed as f64 / seconds
}

/// The first request to a node started `runs` times on `app` (plus one unmeasured start
/// first), timed from send, on a new connection, to the whole answer. With `cached`,
/// the app's state directory (and so `.nimbus/wasm-cache`) is kept between starts; else
/// it is removed before each, so the component is compiled on that request.
fn first_requests(
    rt: &Runtime,
    (nimbus, app, log): (&Path, &Path, &Path),
    cached: bool,
    runs: usize,
) -> Result<Summary, String> {
    let mut samples = Vec::new();
    for run in 0..=runs {
        if !cached {
            let _ = std::fs::remove_dir_all(app.join(".nimbus"));
        }
        let node = Node::start(nimbus, app, log)?;
        let url = node.url();
        let client = client();
        let started = Instant::now();
        rt.block_on(answer(&client, &url))
            .map_err(|e| format!("first request failed: {e}"))?;
        let elapsed = started.elapsed();
        drop(node);
        if run > 0 {
            samples.push(elapsed);
        }
    }
    Ok(Summary::of(samples))
}

/// Files under `dir`, recursively (to show that the compiled-code cache was written).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| {
                let path = e.path();
                if path.is_dir() { count_files(&path) } else { 1 }
            })
            .sum()
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".to_owned(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// A ratio row of the figure table: `a / b` against `at_least`.
fn ratio_row(what: &str, a: (&str, Option<f64>), b: (&str, Option<f64>), at_least: f64) {
    let target = if at_least < 1.0 {
        format!(">= {:.0}%", at_least * 100.0)
    } else {
        format!(">= {at_least:.1}x")
    };
    match (a.1, b.1) {
        (Some(x), Some(y)) if y > 0.0 => {
            let ratio = x / y;
            let shown = if at_least < 1.0 {
                format!("{:.0}%", ratio * 100.0)
            } else {
                format!("{ratio:.2}x")
            };
            println!(
                "| {what} | {shown} ({} {x:.0}/s / {} {y:.0}/s) | {target} | {} |",
                a.0,
                b.0,
                met(ratio >= at_least)
            );
        }
        _ => println!("| {what} | not measured | {target} | |"),
    }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let window = Duration::from_secs(seconds);
    let nimbus = std::env::var_os("NIMBUS").map_or_else(
        || {
            std::env::current_exe()
                .expect("the program's own path")
                .with_file_name("nimbus")
        },
        PathBuf::from,
    );
    let wasmtime =
        PathBuf::from(std::env::var_os("WASMTIME").unwrap_or_else(|| DEFAULT_WASMTIME.into()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let component = build_hello_wasm().expect("the hello-wasm component builds");
    let apps = tempfile::tempdir().expect("a temporary directory");
    // Outside the app directories.
    let logs = tempfile::tempdir().expect("a temporary directory");
    // The first-request starts get an app of their own, so its state directory starts
    // empty whatever the load steps left.
    let [reuse_app, per_request_app, first_app] = [
        ("reuse", "reuse"),
        ("per-request", "per-request"),
        ("first", "reuse"),
    ]
    .map(|(name, mode)| {
        let dir = apps.path().join(name);
        prepare_app(&dir, &component, mode).expect("writes the app");
        dir
    });

    println!(
        "load average before the run (1, 5, 15 min): {}",
        load_average()
    );
    println!(
        "component: {} ({} bytes); GET {REQUEST_PATH}; closed loop, one keep-alive connection per caller, warm-up until steady then {seconds} s per step",
        component.display(),
        std::fs::metadata(&component).map_or(0, |m| m.len())
    );
    println!();
    println!("| server | connections | req/s | p50 | p99 | errors | warm-up |");
    println!("|---|---|---|---|---|---|---|");

    let bare = Target {
        label: "bare axum (in-process)",
        url: format!("http://{}{REQUEST_PATH}", start_bare_server()),
        pid: None,
    };
    check_answer(&rt, bare.label, &bare.url).expect("the bare server answers");
    rows(&rt, &bare, window);

    let start_node = |mode: &str, dir: &Path| -> Option<(Node, Target)> {
        if !selected("nimbus") {
            return None;
        }
        let label = if mode == "reuse" {
            "nimbus, reuse"
        } else {
            "nimbus, per-request"
        };
        let started =
            Node::start(&nimbus, dir, &logs.path().join(format!("{mode}.log"))).and_then(|node| {
                let url = node.url();
                check_answer(&rt, label, &url)?;
                let pid = Some(node.child.id());
                Ok((node, Target { label, url, pid }))
            });
        started
            .map_err(|e| eprintln!("{label}: not measured: {e}"))
            .ok()
    };
    let reuse = start_node("reuse", &reuse_app);
    let reuse_rows = reuse.as_ref().map(|(_, t)| rows(&rt, t, window));
    let per_request = start_node("per-request", &per_request_app);
    if let Some((_, t)) = &per_request {
        rows(&rt, t, window);
    }

    let start_wasmtime = |label: &'static str, extra: &[&str], log: &str| {
        if !selected("wasmtime") {
            return None;
        }
        if !wasmtime.is_file() {
            eprintln!(
                "{label}: not measured: no wasmtime at {}",
                wasmtime.display()
            );
            return None;
        }
        Wasmtime::start(&rt, &wasmtime, &component, extra, &logs.path().join(log))
            .and_then(|server| {
                let url = server.url();
                check_answer(&rt, label, &url)?;
                let pid = Some(server.child.id());
                Ok((server, Target { label, url, pid }))
            })
            .map_err(|e| eprintln!("{label}: not measured: {e}"))
            .ok()
    };
    let fresh = start_wasmtime(
        "wasmtime serve, fresh instance per request",
        &[],
        "wasmtime-fresh.log",
    );
    if let Some((_, t)) = &fresh {
        rows(&rt, t, window);
    }
    let reused = start_wasmtime(
        "wasmtime serve, reuse up to 1000",
        &["--max-instance-reuse-count", WASMTIME_REUSE],
        "wasmtime-reuse.log",
    );
    if let Some((_, t)) = &reused {
        rows(&rt, t, window);
    }
    for (label, measured) in [
        ("nimbus, reuse", reuse.is_some()),
        ("nimbus, per-request", per_request.is_some()),
        (
            "wasmtime serve, fresh instance per request",
            fresh.is_some(),
        ),
        ("wasmtime serve, reuse up to 1000", reused.is_some()),
    ] {
        if !measured {
            println!("| {label} | - | not measured | | | | |");
        }
    }

    // The ratios, from alternating rounds at 64 connections on the warm servers, so that
    // other load on the machine falls on all of them alike.
    let rounds = 2 * seconds as usize;
    let round = Duration::from_millis(500);
    let targets: Vec<&Target> = [
        Some(&bare),
        reuse.as_ref().map(|(_, t)| t),
        per_request.as_ref().map(|(_, t)| t),
        fresh.as_ref().map(|(_, t)| t),
        reused.as_ref().map(|(_, t)| t),
    ]
    .into_iter()
    .flatten()
    .collect();
    let alternating = interleaved(&rt, &targets, 64, rounds, round);
    let rates: Vec<(&'static str, f64)> = targets
        .iter()
        .zip(&alternating)
        .map(|(t, a)| (t.label, total_rate(&a.rounds)))
        .collect();
    let rate_of = |label: &str| rates.iter().find(|(l, _)| *l == label).map(|(_, r)| *r);
    println!();
    println!(
        "64 connections, {rounds} alternating 0.5 s rounds per server (after one unmeasured round each):"
    );
    println!();
    println!(
        "| server | req/s | p50 (median of rounds) | p99 (median of rounds) | errors | server CPU per request | load generator CPU per request |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (t, a) in targets.iter().zip(&alternating) {
        let f = &a.rounds;
        let median = |pick: fn(&Summary) -> Duration| {
            let v: Vec<Duration> = f
                .iter()
                .filter_map(|r| r.latency.as_ref().map(pick))
                .collect();
            (!v.is_empty()).then(|| human(Summary::of(v).p50))
        };
        let server_cpu = if t.pid.is_some() {
            cpu_per_request(a.server_cpu, f)
        } else {
            "in the load generator's".to_owned()
        };
        println!(
            "| {} | {:.0} | {} | {} | {} | {server_cpu} | {} |",
            t.label,
            total_rate(f),
            median(|s| s.p50).unwrap_or_else(|| "-".to_owned()),
            median(|s| s.p99).unwrap_or_else(|| "-".to_owned()),
            f.iter().map(|r| r.errors).sum::<usize>(),
            cpu_per_request(a.load_cpu, f),
        );
    }

    // Instantiation, from the per-request node's own log over its whole run.
    let inits = per_request.as_ref().map(|(node, _)| node.init_durations());
    drop(per_request);
    drop(reuse);
    drop(fresh);
    drop(reused);

    let firsts = if selected("nimbus") {
        let log = logs.path().join("first.log");
        let paths = (nimbus.as_path(), first_app.as_path(), log.as_path());
        let uncached = first_requests(&rt, paths, false, FIRST_REQUEST_RUNS)
            .map_err(|e| eprintln!("first request, uncached: not measured: {e}"))
            .ok();
        let cached = first_requests(&rt, paths, true, FIRST_REQUEST_RUNS)
            .map_err(|e| eprintln!("first request, cached: not measured: {e}"))
            .ok();
        Some((uncached, cached))
    } else {
        None
    };
    if let Some((uncached, cached)) = &firsts {
        println!();
        println!(
            "first request to a newly started `nimbus up` (reuse mode), new connection, send to whole answer, n={FIRST_REQUEST_RUNS} starts each after one unmeasured:"
        );
        println!();
        println!("| compiled code | p50 | p90 | max |");
        println!("|---|---|---|---|");
        for (what, s) in [
            ("not cached (`.nimbus` removed before each start)", uncached),
            ("cached (`.nimbus/wasm-cache` kept between starts)", cached),
        ] {
            match s {
                Some(s) => println!(
                    "| {what} | {} | {} | {} |",
                    human(s.p50),
                    human(s.p90),
                    human(s.max)
                ),
                None => println!("| {what} | not measured | | |"),
            }
        }
        println!();
        println!(
            "files in .nimbus/wasm-cache after the cached starts: {}",
            count_files(&first_app.join(".nimbus/wasm-cache"))
        );
    }

    println!();
    println!("| figure | measured | target | |");
    println!("|---|---|---|---|");
    ratio_row(
        "throughput at 64 connections, Nimbus reuse / wasmtime serve reuse",
        ("nimbus", rate_of("nimbus, reuse")),
        ("wasmtime", rate_of("wasmtime serve, reuse up to 1000")),
        1.0,
    );
    ratio_row(
        "throughput at 64 connections, Nimbus reuse / bare axum",
        ("nimbus", rate_of("nimbus, reuse")),
        ("bare", rate_of("bare axum (in-process)")),
        0.6,
    );
    ratio_row(
        "throughput at 64 connections, Nimbus per-request / wasmtime serve fresh instance",
        ("nimbus", rate_of("nimbus, per-request")),
        (
            "wasmtime",
            rate_of("wasmtime serve, fresh instance per request"),
        ),
        2.0,
    );
    match &inits {
        Some((inits, lines)) if !inits.is_empty() => {
            let s = Summary::of(inits.clone());
            println!(
                "| instantiation, per-request mode, p50 (`init_ms` of {} of {lines} REPORT log lines; p99 {}) | {} | < 50us | {} |",
                s.n,
                human(s.p99),
                human(s.p50),
                met(s.p50 < Duration::from_micros(50))
            );
        }
        _ => println!("| instantiation, per-request mode, p50 | not measured | < 50us | |"),
    }
    for (connections, f) in reuse_rows.iter().flatten() {
        if let Some(s) = f.latency {
            println!(
                "| p99, Nimbus reuse, {connections} connection{} (steps above) | {} | < 2ms | {} |",
                if *connections == 1 { "" } else { "s" },
                human(s.p99),
                met(s.p99 < Duration::from_millis(2))
            );
        }
    }
    match firsts.as_ref().and_then(|(_, cached)| cached.as_ref()) {
        Some(s) => println!(
            "| first request, newly started node, compiled code cached, p50 (n={}) | {} | < 5ms | {} |",
            s.n,
            human(s.p50),
            met(s.p50 < Duration::from_millis(5))
        ),
        None => println!("| first request, compiled code cached, p50 | not measured | < 5ms | |"),
    }
    println!();
    println!(
        "load average after the run (1, 5, 15 min): {}",
        load_average()
    );
}
