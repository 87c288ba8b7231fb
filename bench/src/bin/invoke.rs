//! Function invocation on Nimbus, compared in the same run with cargo-lambda's local
//! emulator: warm throughput and latency of an echo function per runtime (provided/Rust,
//! Node.js, Python) at 1, 16 and 64 closed-loop callers; the cold start of each runtime
//! next to the language runtime's own start-up; the platform overhead of one warm call
//! over a minimal in-process HTTP echo server; and Nimbus's throughput over
//! cargo-lambda's.
//!
//! Usage: `invoke NIMBUS_BINARY BOOTSTRAP [SECONDS_PER_STEP] [COLD_RUNS]` (defaults 5 and
//! 10), where BOOTSTRAP is tests/fixtures/lambda-runtime-echo built in release mode;
//! `bench/run invoke` builds both and passes them. `CARGO_LAMBDA` names the cargo-lambda
//! program (default /opt/cargo-lambda/bin/cargo-lambda); `BENCH_SERVERS=nimbus` or
//! `BENCH_SERVERS=cargo-lambda` limits the run. bench/README.md defines each figure.

use std::{
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use nimbus_bench::{
    LoadFigures, Summary, Threads, closed_loop, cpu_time, free_port, human, per_each,
    ready_address, serve_in_background, start_up, tail, tree_cpu, tree_cpu_spent,
};
use serde_json::Value;
use tokio::{io::AsyncReadExt, runtime::Runtime};

/// Concurrent callers per warm step.
const CALLERS: [usize; 3] = [1, 16, 64];
/// Unmeasured load before each warm step runs in rounds of this length until the step
/// is warm: two rounds in a row within 10% of each other's rate and, on Nimbus, a round
/// without a cold start (64 Node.js or Python processes take seconds to start on two
/// cores).
const WARMUP_ROUND: Duration = Duration::from_secs(1);
/// The most warm-up rounds before measuring anyway.
const WARMUP_ROUNDS: usize = 120;
/// The event every call sends; the echo functions return it.
const PAYLOAD: &str = r#"{"message":"hello","n":42}"#;
/// The Nimbus functions measured: (runtime label, function name in the fixture app).
const FUNCTIONS: [(&str, &str); 3] = [
    ("provided", "echo-provided"),
    ("nodejs", "echo-nodejs"),
    ("python", "echo-python"),
];
/// Host variables a function process keeps; Nimbus passes the same ones.
const HOST_ENV: [&str; 4] = ["PATH", "LANG", "LC_ALL", "LC_CTYPE"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `BENCH_SERVERS` (unset: all) includes `name`.
fn selected(name: &str) -> bool {
    std::env::var("BENCH_SERVERS").map_or(true, |only| only.split(',').any(|s| s == name))
}

fn invoke_url(addr: SocketAddr, function: &str) -> String {
    format!("http://{addr}/2015-03-31/functions/{function}/invocations")
}

/// One synchronous invocation; its body when answered 2xx without a function error.
async fn invoke(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(PAYLOAD)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let function_error = response.headers().contains_key("x-amz-function-error");
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() && !function_error {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// A client that keeps its connection alive between calls.
fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a client without TLS builds")
}

/// `callers` closed loops against `url` for `window`, caller `i` on the keep-alive
/// connection of `clients[i]`.
async fn load(clients: &Arc<Vec<reqwest::Client>>, url: &str, window: Duration) -> LoadFigures {
    let clients = Arc::clone(clients);
    let url: Arc<str> = url.into();
    closed_loop(clients.len(), Duration::ZERO, window, move |i| {
        let client = clients[i].clone();
        let url = Arc::clone(&url);
        async move { invoke(&client, &url).await.is_ok() }
    })
    .await
}

/// Counts cold starts since it was last asked; `None` where the server does not say.
type ColdStarts<'a> = &'a mut dyn FnMut() -> Option<usize>;

/// One warm step: warm-up rounds until the step is warm (see [`WARMUP_ROUND`]), then the
/// measured window on the same connections. Returns the figures, the warm-up time and
/// the cold starts inside the window.
fn warm_step(
    rt: &Runtime,
    url: &str,
    callers: usize,
    window: Duration,
    cold_starts: ColdStarts<'_>,
) -> (LoadFigures, Duration, Option<usize>) {
    let clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (0..callers)
            .map(|_| client(Duration::from_secs(30)))
            .collect(),
    );
    let started = Instant::now();
    let mut last_rate: Option<f64> = None;
    for _ in 0..WARMUP_ROUNDS {
        let rate = rt.block_on(load(&clients, url, WARMUP_ROUND)).rate();
        let no_cold = cold_starts().is_none_or(|n| n == 0);
        let steady = last_rate.is_some_and(|last| (rate - last).abs() <= 0.1 * last.max(rate));
        if no_cold && steady {
            break;
        }
        last_rate = Some(rate);
    }
    let warmup = started.elapsed();
    let figures = rt.block_on(load(&clients, url, window));
    (figures, warmup, cold_starts())
}

/// A warm row of the output table.
struct Row {
    server: &'static str,
    runtime: &'static str,
    callers: usize,
    figures: LoadFigures,
    warmup: Duration,
    cold_in_window: Option<usize>,
}

impl Row {
    fn print(&self) {
        let (p50, p99) = self
            .figures
            .latency
            .map_or(("-".to_owned(), "-".to_owned()), |s| {
                (human(s.p50), human(s.p99))
            });
        let cold = self
            .cold_in_window
            .map_or("-".to_owned(), |n| n.to_string());
        println!(
            "| {} | {} | {} | {:.0} | {p50} | {p99} | {} | {:.0} s | {cold} |",
            self.server,
            self.runtime,
            self.callers,
            self.figures.rate(),
            self.figures.errors,
            self.warmup.as_secs_f64(),
        );
    }
}

/// Runs and prints the three warm steps against `url`, after one checked call.
fn warm_rows(
    rt: &Runtime,
    server: &'static str,
    runtime: &'static str,
    url: &str,
    window: Duration,
    cold_starts: ColdStarts<'_>,
) -> Result<(), String> {
    rt.block_on(invoke(&client(Duration::from_secs(30)), url))
        .map_err(|e| format!("{server} {runtime}: the first call failed: {e}"))?;
    for callers in CALLERS {
        let (figures, warmup, cold_in_window) =
            warm_step(rt, url, callers, window, &mut *cold_starts);
        Row {
            server,
            runtime,
            callers,
            figures,
            warmup,
            cold_in_window,
        }
        .print();
    }
    Ok(())
}

/// Sends SIGTERM to `target` (a pid, or `-PGID` for a process group) and waits up to
/// `grace` for `child` to exit, then SIGKILL.
fn stop(child: &mut Child, target: &str, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", target])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// A running `nimbus up`, its JSON log in a file.
struct Node {
    child: Child,
    log: PathBuf,
    services: SocketAddr,
    /// Bytes of the log already counted by [`Node::new_cold_starts`].
    scanned: u64,
}

impl Node {
    /// Starts `nimbus up APP` on free ports and waits for its "nimbus is ready" line.
    fn start(nimbus: &Path, app: &Path, log: &Path) -> Result<Node, String> {
        let (child, ready) = start_up(nimbus, app, log, &[], Duration::from_secs(30))?;
        Ok(Node {
            child,
            log: log.to_owned(),
            services: ready_address(&ready, "services")?,
            scanned: 0,
        })
    }

    /// The REPORT log line of `function` (the first one), once logged.
    fn invocation(&self, function: &str) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = text.lines().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["message"].as_str()?.starts_with("REPORT RequestId")
                    && v["function"] == function)
                    .then_some(v)
            });
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    /// Cold starts logged since the last call (`None` if the log cannot be read).
    fn new_cold_starts(&mut self) -> Option<usize> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.log).ok()?;
        file.seek(SeekFrom::Start(self.scanned)).ok()?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        // Whole lines only: a line still being written is counted next time.
        let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.scanned += end as u64;
        let cold = String::from_utf8_lossy(&text[..end])
            .lines()
            .filter(|line| line.contains("\"cold\":true"))
            .count();
        Some(cold)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // As a supervisor stops it: SIGTERM, then Nimbus stops its instances.
        let pid = self.child.id().to_string();
        stop(&mut self.child, &pid, Duration::from_secs(10));
    }
}

/// Copies the fixture app into `dir` and adds the Rust echo as `provided/bootstrap`.
fn prepare_app(dir: &Path, bootstrap: &Path) -> std::io::Result<()> {
    let fixture = repo().join("bench/fixtures/invoke");
    for sub in ["provided", "nodejs", "python"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for file in ["nimbus.toml", "nodejs/index.js", "python/echo.py"] {
        std::fs::copy(fixture.join(file), dir.join(file))?;
    }
    std::fs::copy(bootstrap, dir.join("provided/bootstrap"))?;
    Ok(())
}

/// Warm rows for every function on a running node.
fn nimbus_warm(rt: &Runtime, node: &mut Node, window: Duration) {
    for (runtime, function) in FUNCTIONS {
        let url = invoke_url(node.services, function);
        let result = warm_rows(rt, "nimbus", runtime, &url, window, &mut || {
            node.new_cold_starts()
        });
        if let Err(e) = result {
            eprintln!("{e}\n{}", tail(&node.log, 10));
        }
    }
}

/// `cargo lambda watch` on a copy of the echo fixture's package, in its own process group
/// (it runs cargo, which runs the function).
struct CargoLambda {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl CargoLambda {
    /// Starts the emulator and waits for its invoke port. The function is compiled on the
    /// first invocation.
    fn start() -> Result<CargoLambda, String> {
        let program = std::env::var("CARGO_LAMBDA")
            .unwrap_or_else(|_| "/opt/cargo-lambda/bin/cargo-lambda".to_owned());
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let fixture = repo().join("tests/fixtures/lambda-runtime-echo");
        std::fs::create_dir_all(dir.path().join("src")).map_err(|e| e.to_string())?;
        for file in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
            std::fs::copy(fixture.join(file), dir.path().join(file))
                .map_err(|e| format!("cannot copy the fixture's {file}: {e}"))?;
        }
        // Outside the copy, so its build is reused by the next run.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo().join("target"), PathBuf::from)
            .join("cargo-lambda");
        let log = dir.path().join("cargo-lambda.log");
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let port = free_port();
        let child = Command::new(&program)
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            // The same release build and concurrency limit Nimbus's function gets.
            .args(["--release", "--concurrency", "64", "--ignore-changes"])
            // Not `--target-dir`: cargo-lambda 1.9.2 also passes that to `cargo metadata`,
            // which rejects it.
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let mut peer = CargoLambda {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(peer.addr).is_err() {
            if let Ok(Some(status)) = peer.child.try_wait() {
                return Err(format!(
                    "{program} exited ({status}):\n{}",
                    tail(&peer.log, 20)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{program} did not listen on {} within 60 s:\n{}",
                    peer.addr,
                    tail(&peer.log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(peer)
    }

    /// Calls the function until it answers, while cargo compiles it.
    fn first_call(&mut self, rt: &Runtime, url: &str) -> Result<Duration, String> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30 * 60);
        let client = client(Duration::from_secs(30 * 60));
        loop {
            let error = match rt.block_on(invoke(&client, url)) {
                Ok(_) => return Ok(started.elapsed()),
                Err(e) => e,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "cargo-lambda exited ({status}) before the function answered ({error}):\n{}",
                    tail(&self.log, 30)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the function did not answer within 30 min ({error}):\n{}",
                    tail(&self.log, 30)
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for CargoLambda {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        stop(&mut self.child, &group, Duration::from_secs(10));
    }
}

/// Starts cargo-lambda and waits until it has compiled the function and answered once;
/// returns it with the function's invoke URL.
fn start_cargo_lambda(rt: &Runtime) -> Result<(CargoLambda, String), String> {
    let mut peer = CargoLambda::start()?;
    // cargo-lambda names a function after its binary: the fixture's `[[bin]]` is
    // `bootstrap`.
    let url = invoke_url(peer.addr, "bootstrap");
    let compiled = peer.first_call(rt, &url)?;
    eprintln!(
        "cargo-lambda: first call answered after {:.1} s (compiling the function)",
        compiled.as_secs_f64()
    );
    Ok((peer, url))
}

/// Command names of the echo function's processes: Nimbus runs the binary as
/// `bootstrap`, cargo-lambda under its package name (`comm` keeps 15 bytes).
const FUNCTION_PROCESSES: [&str; 2] = ["bootstrap", "lambda-runtime-"];

/// The CPU one side of an alternating comparison used over its rounds.
#[derive(Debug, Default, Clone, Copy)]
struct CpuSpent {
    /// The server's own processes (Nimbus; cargo-lambda and the cargo it runs).
    server: Duration,
    /// The function processes it started.
    function: Duration,
    /// This program: the load generator (and, for the in-process echo, the server too).
    load: Duration,
}

impl CpuSpent {
    fn total(&self) -> Duration {
        self.server + self.function + self.load
    }
}

/// One side of an alternating comparison: its URL and the process tree serving it, if
/// not this program.
type Side<'a> = (&'a str, Option<u32>);

/// Drives `side` for one window, adding the CPU its processes and this program used.
fn measured_round(
    rt: &Runtime,
    clients: &Arc<Vec<reqwest::Client>>,
    (url, root): Side<'_>,
    round: Duration,
    spent: &mut CpuSpent,
) -> LoadFigures {
    let me = std::process::id();
    let tree = || root.map(tree_cpu).unwrap_or_default();
    // This program's own reading of /proc stays outside its figure.
    let tree_before = tree();
    let load_before = cpu_time(me);
    let figures = rt.block_on(load(clients, url, round));
    let load_after = cpu_time(me);
    let tree_after = tree();
    let (server, function) = tree_cpu_spent(&tree_before, &tree_after, &FUNCTION_PROCESSES);
    spent.server += server;
    spent.function += function;
    if let (Some(before), Some(after)) = (load_before, load_after) {
        spent.load += after.saturating_sub(before);
    }
    figures
}

/// Alternates `rounds` windows of `round` at `callers` callers between `a` and `b`, so
/// both see the same machine at nearly the same time; each side's figures per round and
/// the CPU it used.
fn interleaved(
    rt: &Runtime,
    (a, b): (Side<'_>, Side<'_>),
    callers: usize,
    rounds: usize,
    round: Duration,
) -> ((Vec<LoadFigures>, CpuSpent), (Vec<LoadFigures>, CpuSpent)) {
    let clients = || -> Arc<Vec<reqwest::Client>> {
        Arc::new(
            (0..callers)
                .map(|_| client(Duration::from_secs(30)))
                .collect(),
        )
    };
    let (clients_a, clients_b) = (clients(), clients());
    let (mut side_a, mut side_b) = (
        (Vec::new(), CpuSpent::default()),
        (Vec::new(), CpuSpent::default()),
    );
    for _ in 0..rounds {
        side_a
            .0
            .push(measured_round(rt, &clients_a, a, round, &mut side_a.1));
        side_b
            .0
            .push(measured_round(rt, &clients_b, b, round, &mut side_b.1));
    }
    (side_a, side_b)
}

/// Where the CPU of the 16-caller comparison went, per call, and the most Nimbus's rate
/// could be over cargo-lambda's on this machine if Nimbus itself cost nothing: the
/// function processes and the load generator would still spend what they spend.
fn print_cpu_split(sides: [(&str, &[LoadFigures], CpuSpent); 2]) {
    println!();
    println!(
        "CPU per call at 16 callers over the alternating rounds (user + system, from /proc; the machine has {} cores):",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!();
    println!(
        "| server | calls | server's own processes | function processes | load generator | total | cores busy |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, rounds, spent) in &sides {
        let calls: usize = rounds.iter().map(|f| f.completed).sum();
        let wall: f64 = rounds.iter().map(|f| f.window.as_secs_f64()).sum();
        println!(
            "| {name} | {calls} | {} | {} | {} | {} | {:.2} |",
            human(per_each(spent.server, calls)),
            human(per_each(spent.function, calls)),
            human(per_each(spent.load, calls)),
            human(per_each(spent.total(), calls)),
            spent.total().as_secs_f64() / wall.max(f64::EPSILON),
        );
    }
    let [(_, n_rounds, n), (_, p_rounds, p)] = sides;
    let n_calls: usize = n_rounds.iter().map(|f| f.completed).sum();
    let p_calls: usize = p_rounds.iter().map(|f| f.completed).sum();
    let floor = per_each(n.function + n.load, n_calls);
    let peer = per_each(p.total(), p_calls);
    if !floor.is_zero() {
        println!();
        println!(
            "With both CPU-bound, a Nimbus that cost no CPU at all would still spend {} per call on the function process and the load generator, against cargo-lambda's {} in all: at most {:.1}x cargo-lambda's rate on this machine.",
            human(floor),
            human(peer),
            peer.as_secs_f64() / floor.as_secs_f64()
        );
    }
}

/// The median of the rounds' p50 latencies.
fn median_p50(rounds: &[LoadFigures]) -> Option<Duration> {
    let p50s: Vec<Duration> = rounds
        .iter()
        .filter_map(|f| f.latency.map(|s| s.p50))
        .collect();
    (!p50s.is_empty()).then(|| Summary::of(p50s).p50)
}

/// Successful calls per second over all rounds.
fn total_rate(rounds: &[LoadFigures]) -> f64 {
    let completed: usize = rounds.iter().map(|f| f.completed).sum();
    let seconds: f64 = rounds.iter().map(|f| f.window.as_secs_f64()).sum();
    completed as f64 / seconds
}

/// A minimal HTTP echo server on its own thread and single-threaded runtime: the floor
/// any HTTP invoke path pays with this client on this machine.
fn start_echo_server() -> SocketAddr {
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        axum::routing::post(|body: axum::body::Bytes| async move {
            ([("content-type", "application/json")], body)
        }),
    );
    serve_in_background(app, Threads::One)
}

/// Cold starts of one function over fresh nodes, with the language runtime's own
/// start-up sampled right after each.
struct Cold {
    runtime: &'static str,
    first_call: Summary,
    init: Option<Summary>,
    own: Result<Summary, String>,
    /// Invocations the log did not mark cold (expected: none).
    not_cold: usize,
}

/// One sample of a language runtime's own start-up.
type OwnStart<'a> = &'a mut dyn FnMut() -> Result<Duration, String>;

/// Starts a fresh node (state directory removed) `runs` times, plus one unmeasured start
/// that warms the page cache, and times the first invocation of `function` on each; after
/// each node has stopped, takes one sample of `own`, so both see the same machine.
fn cold_starts(
    rt: &Runtime,
    (nimbus, app, logs): (&Path, &Path, &Path),
    (runtime, function): (&'static str, &str),
    runs: usize,
    own: OwnStart<'_>,
) -> Result<Cold, String> {
    let log = logs.join(format!("cold-{runtime}.log"));
    let (mut calls, mut inits, mut owns, mut not_cold) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut own_error = None;
    for run in 0..=runs {
        let _ = std::fs::remove_dir_all(app.join(".nimbus"));
        let node = Node::start(nimbus, app, &log)?;
        let client = client(Duration::from_secs(30));
        let url = invoke_url(node.services, function);
        let started = Instant::now();
        rt.block_on(invoke(&client, &url))
            .map_err(|e| format!("{function}: cold invocation failed: {e}"))?;
        let elapsed = started.elapsed();
        let line = node.invocation(function);
        drop(node);
        let own_sample = own();
        if run == 0 {
            continue;
        }
        calls.push(elapsed);
        match own_sample {
            Ok(d) => owns.push(d),
            Err(e) => own_error = Some(e),
        }
        match line {
            Some(v) => {
                if v["cold"] != true {
                    not_cold += 1;
                }
                if let Some(ms) = v["init_ms"].as_f64() {
                    inits.push(Duration::from_secs_f64(ms / 1000.0));
                }
            }
            None => eprintln!("{function}: no REPORT log line"),
        }
    }
    let _ = std::fs::remove_file(&log);
    Ok(Cold {
        runtime,
        first_call: Summary::of(calls),
        init: (!inits.is_empty()).then(|| Summary::of(inits)),
        own: match own_error {
            Some(e) => Err(e),
            None => Ok(Summary::of(owns)),
        },
        not_cold,
    })
}

/// A command with the environment Nimbus gives a function process (host `PATH` and
/// locale only), so `node` and `python3` resolve as they do for Nimbus.
fn function_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for key in HOST_ENV {
        if let Ok(v) = std::env::var(key) {
            command.env(key, v);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Spawn to exit of `program args`.
fn spawn_to_exit(program: &str, args: &[&str]) -> Result<Duration, String> {
    let started = Instant::now();
    let status = function_command(Path::new(program))
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let elapsed = started.elapsed();
    if status.success() {
        Ok(elapsed)
    } else {
        Err(format!("{program} {args:?} failed: {status}"))
    }
}

/// Spawn of the Rust bootstrap until its first `GET /2018-06-01/runtime/invocation/next`
/// reaches a listener of ours. The bootstrap blocks on that request, so this is its
/// start-up: the span Nimbus reports as Init Duration, measured without Nimbus.
fn bootstrap_to_next(rt: &Runtime, bootstrap: &Path) -> Result<Duration, String> {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let api = listener.local_addr().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = function_command(bootstrap)
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "echo-provided")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/echo-provided")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bootstrap.display()))?;
        let request = tokio::time::timeout(Duration::from_secs(10), async {
            let (mut stream, _) = listener.accept().await?;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(2).any(|w| w == b"\r\n") {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(head)
        })
        .await;
        let elapsed = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        let head = match request {
            Ok(Ok(head)) => head,
            Ok(Err(e)) => return Err(format!("bootstrap: {e}")),
            Err(_) => return Err("bootstrap: no request within 10 s".to_owned()),
        };
        if head.starts_with(b"GET /2018-06-01/runtime/invocation/next ") {
            Ok(elapsed)
        } else {
            Err(format!(
                "bootstrap: unexpected first request {:?}",
                String::from_utf8_lossy(&head)
            ))
        }
    })
}

/// Says which interpreter `python3` on `PATH` runs and how long that interpreter takes
/// to start when run directly: a version manager's shim (pyenv's is a bash script) can
/// cost more than the interpreter itself.
fn python_note(runs: usize) {
    let which = function_command(Path::new("python3"))
        .args(["-c", "import sys; print(sys.executable)"])
        .stdout(Stdio::piped())
        .output();
    let Ok(out) = which else { return };
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("python3"))
            .find(|p| p.is_file())
    });
    let samples: Result<Vec<Duration>, String> = (0..=runs)
        .map(|_| spawn_to_exit(&exe, &["-c", "pass"]))
        .collect();
    match samples {
        Ok(samples) => println!(
            "\n`python3` on PATH is {}, which runs {exe}; that interpreter run directly starts in {} (p50).",
            on_path.map_or_else(|| "?".to_owned(), |p| p.display().to_string()),
            human(Summary::of(samples[1..].to_vec()).p50)
        ),
        Err(e) => eprintln!("python3 interpreter: {e}"),
    }
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

/// How each runtime's own start-up is measured, as the cold-start table says it.
fn own_start_how(runtime: &str) -> &'static str {
    match runtime {
        "provided" => "bootstrap: spawn to its first GET /invocation/next",
        "nodejs" => "`node -e 0`: spawn to exit",
        _ => "`python3 -c pass`: spawn to exit",
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: invoke NIMBUS_BINARY BOOTSTRAP [SECONDS_PER_STEP] [COLD_RUNS]";
    let nimbus = PathBuf::from(args.next().expect(usage));
    let bootstrap = PathBuf::from(args.next().expect(usage));
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let cold_runs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    assert!(nimbus.is_file(), "no nimbus binary at {}", nimbus.display());
    assert!(
        bootstrap.is_file(),
        "no bootstrap at {}",
        bootstrap.display()
    );
    let window = Duration::from_secs(seconds);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let app = tempfile::tempdir().expect("a temporary directory");
    prepare_app(app.path(), &bootstrap).expect("copies the fixture app");
    // Outside the app directory, which `nimbus up` watches for code changes.
    let logs = tempfile::tempdir().expect("a temporary directory");

    // Other work on the machine skews every figure; say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!(
            "load average before the run (1, 5, 15 min): {}",
            load.join(" ")
        );
    }
    println!(
        "warm: closed loop, one keep-alive connection per caller, warm-up until steady then {seconds} s per step; payload {PAYLOAD}"
    );
    println!();
    println!(
        "| server | function | callers | inv/s | p50 | p99 | errors | warm-up | cold starts in window |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let echo = invoke_url(start_echo_server(), "echo");
    warm_rows(&rt, "in-process echo", "-", &echo, window, &mut || None)
        .expect("the in-process echo server answers");

    // The peer compiles its function first, before anything is measured.
    let peer = if selected("cargo-lambda") {
        start_cargo_lambda(&rt)
    } else {
        Err("left out by BENCH_SERVERS".to_owned())
    };
    let mut node = if selected("nimbus") {
        Node::start(&nimbus, app.path(), &logs.path().join("warm.log"))
            .map_err(|e| eprintln!("nimbus: not measured: {e}"))
            .ok()
    } else {
        None
    };
    if let Some(node) = node.as_mut() {
        nimbus_warm(&rt, node, window);
    }
    let peer_rows = match &peer {
        Ok((cargo_lambda, url)) => {
            warm_rows(&rt, "cargo-lambda", "provided", url, window, &mut || None)
                .map_err(|e| format!("{e}\n{}", tail(&cargo_lambda.log, 20)))
        }
        Err(e) => Err(e.clone()),
    };
    if let Err(e) = &peer_rows {
        println!("| cargo-lambda | provided | - | not measured | | | | | |");
        eprintln!("cargo-lambda: not measured: {e}");
    }
    println!(
        "| cargo-lambda | nodejs, python | - | no peer: cargo-lambda runs only Rust functions | | | | | |"
    );

    // The two comparisons against a reference, in alternating rounds on the warm servers,
    // so that other load on the machine falls on both sides alike.
    let rounds = 2 * seconds as usize;
    let round = Duration::from_millis(500);
    let overhead = node.as_ref().map(|node| {
        let url = invoke_url(node.services, "echo-provided");
        // Latency only: no process tree to read.
        let ((n, _), (b, _)) = interleaved(&rt, ((&url, None), (&echo, None)), 1, rounds, round);
        (median_p50(&n), median_p50(&b))
    });
    let ratio = match (&node, &peer, &peer_rows) {
        (Some(node), Ok((cargo_lambda, peer_url)), Ok(_)) => {
            let url = invoke_url(node.services, "echo-provided");
            let sides = (
                (url.as_str(), Some(node.child.id())),
                (peer_url.as_str(), Some(cargo_lambda.child.id())),
            );
            let ((n, n_cpu), (p, p_cpu)) = interleaved(&rt, sides, 16, rounds, round);
            let rates = (total_rate(&n), total_rate(&p));
            Ok((rates, [("nimbus", n, n_cpu), ("cargo-lambda", p, p_cpu)]))
        }
        (None, ..) => Err("Nimbus not measured".to_owned()),
        _ => Err("cargo-lambda not measured".to_owned()),
    };
    drop(node);
    drop(peer);

    let mut colds = Vec::new();
    if selected("nimbus") {
        for function in FUNCTIONS {
            let mut own: Box<dyn FnMut() -> Result<Duration, String>> = match function.0 {
                "provided" => Box::new(|| bootstrap_to_next(&rt, &bootstrap)),
                "nodejs" => Box::new(|| spawn_to_exit("node", &["-e", "0"])),
                _ => Box::new(|| spawn_to_exit("python3", &["-c", "pass"])),
            };
            let paths = (nimbus.as_path(), app.path(), logs.path());
            match cold_starts(&rt, paths, function, cold_runs, &mut *own) {
                Ok(c) => colds.push(c),
                Err(e) => eprintln!("cold start {}: not measured: {e}", function.0),
            }
        }
    }
    if !colds.is_empty() {
        println!();
        println!(
            "cold start: first invocation on a fresh `nimbus up` (state directory removed), n={cold_runs} per runtime, p50; the runtime's own start-up sampled after each"
        );
        println!();
        println!(
            "| runtime | first invocation | Init Duration (Nimbus log) | runtime's own start-up | measured as | cold minus own start-up |"
        );
        println!("|---|---|---|---|---|---|");
        for cold in &colds {
            let init = cold.init.map_or("-".to_owned(), |s| human(s.p50));
            let (own_text, gap) = match &cold.own {
                Ok(s) => (human(s.p50), signed(cold.first_call.p50, s.p50)),
                Err(e) => (format!("not measured: {e}"), "-".to_owned()),
            };
            println!(
                "| {} | {} | {init} | {own_text} | {} | {gap} |",
                cold.runtime,
                human(cold.first_call.p50),
                own_start_how(cold.runtime),
            );
            if cold.not_cold > 0 {
                eprintln!(
                    "{}: {} of {cold_runs} first invocations were not logged as cold",
                    cold.runtime, cold.not_cold
                );
            }
        }
        if colds.iter().any(|c| c.runtime == "python") {
            python_note(cold_runs);
        }
    }

    if let Ok((_, sides)) = &ratio {
        let [(a, an, ac), (b, bn, bc)] = sides;
        print_cpu_split([(a, an, *ac), (b, bn, *bc)]);
    }
    println!();
    println!("| figure | measured | target | |");
    println!("|---|---|---|---|");
    if let Some((Some(n), Some(b))) = overhead {
        println!(
            "| platform overhead, warm provided call, p50 at 1 caller | {} ({} Nimbus - {} in-process echo; medians of {rounds} alternating 0.5 s rounds) | < 100us | {} |",
            signed(n, b),
            human(n),
            human(b),
            met(n < b + Duration::from_micros(100))
        );
    }
    match &ratio {
        Ok(((n, p), _)) if *p > 0.0 => println!(
            "| throughput at 16 callers, Nimbus / cargo-lambda (Rust echo) | {:.1}x ({n:.0}/s / {p:.0}/s over {rounds} alternating 0.5 s rounds each) | >= 3x | {} |",
            n / p,
            met(*n >= 3.0 * p)
        ),
        Ok(_) => println!(
            "| throughput at 16 callers, Nimbus / cargo-lambda (Rust echo) | cargo-lambda answered nothing | >= 3x | |"
        ),
        Err(e) => println!(
            "| throughput at 16 callers, Nimbus / cargo-lambda (Rust echo) | no ratio: {e} | >= 3x | |"
        ),
    }
    for cold in &colds {
        if let Ok(own) = &cold.own {
            let (first, own) = (cold.first_call.p50, own.p50);
            println!(
                "| cold start minus own start-up, {}, p50 | {} ({} - {}) | <= +10ms | {} |",
                cold.runtime,
                signed(first, own),
                human(first),
                human(own),
                met(first <= own + Duration::from_millis(10))
            );
        }
    }
}
