//! Shared pieces of the benchmark programs: timing summaries and process helpers.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Order statistics of a set of timings.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Fastest.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
    /// Number of samples.
    pub n: usize,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn of(mut samples: Vec<Duration>) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Summary {
            min: samples[0],
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: samples[samples.len() - 1],
            n: samples.len(),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "n={} min={:.1}ms p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
            self.n,
            ms(self.min),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// A free loopback port (released before returning, so there is a small race).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A duration in the unit that suits it: microseconds below a millisecond, else ms.
pub fn human(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}us", d.as_micros())
    } else {
        format!("{:.2}ms", d.as_secs_f64() * 1000.0)
    }
}

/// What a closed-loop run measured inside its window.
#[derive(Debug, Clone)]
pub struct LoadFigures {
    /// Calls that succeeded, started and finished inside the window.
    pub completed: usize,
    /// Calls that failed inside the window.
    pub errors: usize,
    /// The measured window.
    pub window: Duration,
    /// Latencies of the successful calls (`None` when there were none).
    pub latency: Option<Summary>,
}

impl LoadFigures {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }
}

/// Drives `call` from `callers` concurrent closed loops: each caller sends its next call
/// as soon as the previous one answered. Calls during the first `warmup` are not counted;
/// then calls that start and finish within `window` are. `call(i)` makes one call for
/// caller `i` and says whether it succeeded.
pub async fn closed_loop<F, Fut>(
    callers: usize,
    warmup: Duration,
    window: Duration,
    call: F,
) -> LoadFigures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let call = std::sync::Arc::new(call);
    let from = std::time::Instant::now() + warmup;
    let until = from + window;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let call = std::sync::Arc::clone(&call);
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                loop {
                    let sent = std::time::Instant::now();
                    if sent >= until {
                        break;
                    }
                    let ok = call(i).await;
                    let done = std::time::Instant::now();
                    if sent >= from && done <= until {
                        if ok {
                            latencies.push(done - sent);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok((l, e)) => {
                latencies.extend(l);
                errors += e;
            }
            // Its calls are missing from the figures; say so rather than stop the run.
            Err(e) => eprintln!("a caller stopped: {e}"),
        }
    }
    LoadFigures {
        completed: latencies.len(),
        errors,
        window,
        latency: (!latencies.is_empty()).then(|| Summary::of(latencies)),
    }
}

/// A process's parent, command name (`comm`, at most 15 bytes) and CPU time so far (user
/// and system, not its children's), from `/proc/PID/stat` (Linux).
fn proc_stat(pid: u32) -> Option<(u32, String, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ, 100 on Linux.
    Some((ppid, comm, Duration::from_millis(ticks * 10)))
}

/// The CPU time `pid` has used so far, user and system (not its children's), from
/// `/proc/PID/stat`; `None` where that cannot be read.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    proc_stat(pid).map(|(_, _, cpu)| cpu)
}

/// CPU time used so far by each process of a tree, by pid, with its command name.
pub type TreeCpu = std::collections::HashMap<u32, (String, Duration)>;

/// `total` shared out over `count` (at least one) equal parts: CPU per request.
pub fn per_each(total: Duration, count: usize) -> Duration {
    total.div_f64(count.max(1) as f64)
}

/// The CPU time used so far by `root` and by each of its living descendants. Read twice,
/// the difference is what a process tree (a server and the function processes it
/// started) spent in between.
pub fn tree_cpu(root: u32) -> TreeCpu {
    let mut all = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = proc_stat(pid) {
            all.insert(pid, stat);
        }
    }
    let mut tree = TreeCpu::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        if let Some((_, comm, cpu)) = all.get(&pid) {
            tree.insert(pid, (comm.clone(), *cpu));
            next.extend(
                all.iter()
                    .filter(|(_, (ppid, ..))| *ppid == pid)
                    .map(|(child, _)| *child),
            );
        }
    }
    tree
}

/// What a process tree spent between two [`tree_cpu`] readings, split in two: processes
/// whose command name is one of `functions`, and the others. A process that ended in
/// between is not counted; one that started counts from zero.
pub fn tree_cpu_spent(
    before: &TreeCpu,
    after: &TreeCpu,
    functions: &[&str],
) -> (Duration, Duration) {
    let (mut others, mut function) = (Duration::ZERO, Duration::ZERO);
    for (pid, (comm, cpu)) in after {
        let spent = cpu.saturating_sub(before.get(pid).map_or(Duration::ZERO, |(_, c)| *c));
        if functions.contains(&comm.as_str()) {
            function += spent;
        } else {
            others += spent;
        }
    }
    (others, function)
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit, then kills it.
pub fn stop(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `nimbus up APP` on free loopback ports with JSON logs written to `log` and the
/// `extra` arguments, and waits up to `within` for its "nimbus is ready" line. Returns
/// the process and that line, which names the `gateway` and `services` addresses. A
/// node that exits or does not get ready is reported with the end of its log.
pub fn start_up(
    nimbus: &Path,
    app: &Path,
    log: &Path,
    extra: &[&str],
    within: Duration,
) -> Result<(Child, serde_json::Value), String> {
    let file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut child = Command::new(nimbus)
        .arg("up")
        .arg(app)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--services-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json"])
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("NIMBUS_LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", nimbus.display()))?;
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let ready = text.lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["message"] == "nimbus is ready").then_some(v)
        });
        if let Some(ready) = ready {
            return Ok((child, ready));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("nimbus up exited ({status}):\n{}", tail(log, 20)));
        }
        if Instant::now() > deadline {
            stop(&mut child, Duration::from_secs(5));
            return Err(format!(
                "nimbus up not ready in {} s:\n{}",
                within.as_secs(),
                tail(log, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The address named `field` (`gateway` or `services`) in a "nimbus is ready" line.
pub fn ready_address(
    ready: &serde_json::Value,
    field: &str,
) -> Result<std::net::SocketAddr, String> {
    ready[field]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("the ready line names no {field} address: {ready}"))
}

/// How a baseline server's runtime is built.
#[derive(Debug, Clone, Copy)]
pub enum Threads {
    /// One thread (tokio's current-thread runtime).
    One,
    /// As many workers as cores, as Nimbus runs its own.
    PerCore,
}

/// Serves `app` on a free loopback port from a thread and a tokio runtime of its own, so
/// that a baseline server never shares the load generator's runtime. Returns its address.
pub fn serve_in_background(app: axum::Router, threads: Threads) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a listener can be non-blocking");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    std::thread::spawn(move || {
        let rt = match threads {
            Threads::One => tokio::runtime::Builder::new_current_thread(),
            Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
        }
        .enable_all()
        .build()
        .expect("a runtime");
        rt.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("tokio takes the listener");
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("baseline server stopped: {e}");
            }
        });
    });
    addr
}

/// The repository's root directory.
pub fn repo() -> std::path::PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

/// Builds examples/hello-wasm for wasm32-wasip2 under the benchmarks' own target
/// directory (`$CARGO_TARGET_DIR/bench-wasm`) and returns the component's path.
pub fn build_hello_wasm() -> Result<std::path::PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo().join("target"), std::path::PathBuf::from)
        .join("bench-wasm");
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(repo().join("examples/hello-wasm/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build of examples/hello-wasm failed: {status}"
        ));
    }
    let component = target.join("wasm32-wasip2/release/hello_wasm.wasm");
    if component.is_file() {
        Ok(component)
    } else {
        Err(format!("no component at {}", component.display()))
    }
}
