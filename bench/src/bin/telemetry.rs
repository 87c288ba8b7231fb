//! What telemetry costs: hello-world throughput through the gateway with telemetry off,
//! with the function log store and metrics on, and with those plus every request traced
//! and exported over OTLP/HTTP, in one run.
//!
//! Three `nimbus up` nodes serve the same app: `POST /echo` (a `provided` function, the
//! `lambda_runtime` echo fixture, 16 warm instances) and `GET /hello/{name}` (the
//! hello-wasm component). The nodes run at once; the same closed-loop load generator
//! drives one node at a time, the three taking turns for several rounds so that the
//! machine's drift between rounds reaches all three alike, each round starting from the
//! next of them. The trace receiver is an axum server in this process that accepts
//! `POST /v1/traces`, so the exporter does its whole work (batching, protobuf encoding,
//! HTTP). It keeps each request's body and decodes it between steps, to count the spans:
//! a collector's decoding runs on another machine in a deployment, and here it would take
//! the two cores the node is measured on.
//!
//! Usage: `telemetry ECHO_BOOTSTRAP [SECONDS_PER_STEP] [ROUNDS]` (defaults 5 and 5). The
//! `nimbus` binary is looked up next to this one. bench/README.md defines each figure.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, routing::post};
use nimbus_bench::{
    LoadFigures, Threads, build_hello_wasm, closed_loop, cpu_time, human, ready_address,
    serve_in_background, start_up, stop,
};

/// Concurrent keep-alive connections.
const CONNECTIONS: usize = 16;
/// Unmeasured load at the start of each step.
const STEP_WARMUP: Duration = Duration::from_secs(1);
/// The app every node serves.
const APP_MANIFEST: &str = r#"# Written by bench/src/bin/telemetry.rs.
name = "telemetry-bench"

[functions.echo]
runtime = "provided.al2023"
code = "provided"
concurrency = { max = 16, min_warm = 16 }

[functions.hello]
runtime = "wasm"
code = "hello.wasm"

[[routes]]
route = "POST /echo"
function = "echo"

[[routes]]
route = "GET /hello/{name}"
function = "hello"
"#;

/// One telemetry set-up of a node.
struct Setup {
    /// Its name in the tables.
    name: &'static str,
    /// Flags of `nimbus up` beyond the common ones.
    flags: &'static [&'static str],
    /// Whether the node exports traces to the receiver, sampling every request.
    traced: bool,
}

const SETUPS: [Setup; 3] = [
    Setup {
        name: "off",
        flags: &["--metrics", "off", "--log-store", "off"],
        traced: false,
    },
    Setup {
        name: "logs + metrics",
        flags: &[],
        traced: false,
    },
    Setup {
        name: "logs + metrics + traces (100%)",
        flags: &[],
        traced: true,
    },
];

/// The routes driven, each on its own.
const ROUTES: [(&str, &str); 2] = [
    ("provided echo", "POST /echo"),
    ("wasm hello", "GET /hello/bench"),
];

/// A running node.
struct Node {
    child: Child,
    gateway: SocketAddr,
    services: SocketAddr,
    /// Requests it answered.
    answered: Arc<AtomicU64>,
}

impl Drop for Node {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

/// What the trace receiver has taken in.
#[derive(Default)]
struct Received {
    requests: AtomicU64,
    bytes: AtomicU64,
    spans: AtomicU64,
    /// Bodies not yet decoded.
    held: Mutex<Vec<Bytes>>,
}

impl Received {
    /// Decodes the held bodies and counts their spans.
    fn count(&self) {
        let held = std::mem::take(&mut *self.held.lock().expect("not poisoned"));
        let spans: u64 = held.iter().map(|body| spans_in(body)).sum();
        self.spans.fetch_add(spans, Ordering::Relaxed);
    }
}

/// The spans in an OTLP/HTTP protobuf export request (0 when it does not decode).
fn spans_in(body: &[u8]) -> u64 {
    use prost::Message as _;
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
        .map_or(0, |request| {
            request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum()
        })
}

fn receiver(received: &Arc<Received>) -> SocketAddr {
    let received = Arc::clone(received);
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let received = Arc::clone(&received);
            async move {
                received.requests.fetch_add(1, Ordering::Relaxed);
                received
                    .bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                received.held.lock().expect("not poisoned").push(body);
                // An empty ExportTraceServiceResponse.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    serve_in_background(app, Threads::One)
}

fn write_app(bootstrap: &Path, component: &Path) -> Result<tempfile::TempDir, String> {
    let app = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(app.path().join("provided")).map_err(|e| e.to_string())?;
    std::fs::write(app.path().join("nimbus.toml"), APP_MANIFEST).map_err(|e| e.to_string())?;
    std::fs::copy(bootstrap, app.path().join("provided/bootstrap"))
        .map_err(|e| format!("cannot copy {}: {e}", bootstrap.display()))?;
    std::fs::copy(component, app.path().join("hello.wasm"))
        .map_err(|e| format!("cannot copy {}: {e}", component.display()))?;
    Ok(app)
}

fn start(
    nimbus: &Path,
    app: &Path,
    log: &Path,
    setup: &Setup,
    otlp: SocketAddr,
) -> Result<Node, String> {
    let endpoint = format!("http://{otlp}");
    let mut flags = vec!["--no-watch"];
    flags.extend(setup.flags);
    if setup.traced {
        flags.extend([
            "--otlp-endpoint",
            endpoint.as_str(),
            "--trace-sample-ratio",
            "1",
        ]);
    }
    let (child, ready) = start_up(nimbus, app, log, &flags, Duration::from_secs(60))?;
    Ok(Node {
        child,
        gateway: ready_address(&ready, "gateway")?,
        services: ready_address(&ready, "services")?,
        answered: Arc::default(),
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client without TLS builds")
}

async fn call(client: &reqwest::Client, gateway: SocketAddr, route: &str) -> bool {
    let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
    let url = format!("http://{gateway}{path}");
    let request = if method == "POST" {
        client.post(url).body(r#"{"greeting":"hello"}"#)
    } else {
        client.get(url)
    };
    match request.send().await {
        Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// Drives `route` on `node` for `window` after [`STEP_WARMUP`]; every answered request,
/// warm-up included, is counted in `node.answered`.
async fn load(node: &Node, route: &'static str, window: Duration) -> LoadFigures {
    let clients: Arc<Vec<reqwest::Client>> = Arc::new((0..CONNECTIONS).map(|_| client()).collect());
    let (gateway, answered) = (node.gateway, Arc::clone(&node.answered));
    closed_loop(CONNECTIONS, STEP_WARMUP, window, move |i| {
        let client = clients[i].clone();
        let answered = Arc::clone(&answered);
        async move {
            let ok = call(&client, gateway, route).await;
            if ok {
                answered.fetch_add(1, Ordering::Relaxed);
            }
            ok
        }
    })
    .await
}

/// Whether the node's `/metrics` answers (it should for every set-up but "off").
async fn metrics_status(services: SocketAddr) -> String {
    match client()
        .get(format!("http://{services}/metrics"))
        .send()
        .await
    {
        Ok(response) => response.status().as_u16().to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run(bootstrap: &Path, window: Duration, rounds: usize) -> Result<(), String> {
    let nimbus = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("nimbus");
    let component = build_hello_wasm()?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let received = Arc::new(Received::default());
    let otlp = receiver(&received);
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut apps = Vec::new();
    let mut nodes = Vec::new();
    for (i, setup) in SETUPS.iter().enumerate() {
        let app = write_app(bootstrap, &component)?;
        let log = logs.path().join(format!("node-{i}.log"));
        nodes.push(start(&nimbus, app.path(), &log, setup, otlp)?);
        apps.push(app);
    }
    // Every instance warm on every node before the first measured step.
    for node in &nodes {
        for (_, route) in ROUTES {
            rt.block_on(load(node, route, Duration::from_secs(2)));
        }
    }
    let before = received.requests.load(Ordering::Relaxed);
    if before == 0 {
        return Err("the traced node exported nothing during warm-up".to_owned());
    }
    for (setup, node) in SETUPS.iter().zip(&nodes) {
        println!(
            "- {}: GET /metrics answers {}",
            setup.name,
            rt.block_on(metrics_status(node.services))
        );
    }

    println!(
        "\n## Telemetry cost: hello-world throughput, {CONNECTIONS} connections, {} s warm-up \
         then {} s per step, {rounds} rounds\n",
        STEP_WARMUP.as_secs(),
        window.as_secs()
    );
    println!("| round | route | set-up | req/s | p50 | p99 | errors | node CPU per request |");
    println!("|---|---|---|---|---|---|---|---|");
    // rates[route][setup] over the rounds.
    let mut rates = vec![vec![Vec::new(); SETUPS.len()]; ROUTES.len()];
    let mut cpu = vec![vec![Vec::new(); SETUPS.len()]; ROUTES.len()];
    for round in 1..=rounds {
        for (r, (route_name, route)) in ROUTES.iter().enumerate() {
            // Each round starts from the next set-up, so that none always follows the
            // same one (the traced node's export, a warm cache) or runs first.
            for step in 0..SETUPS.len() {
                let s = (step + round - 1) % SETUPS.len();
                let (setup, node) = (&SETUPS[s], &nodes[s]);
                let (cpu_before, answered_before) = (
                    cpu_time(node.child.id()),
                    node.answered.load(Ordering::Relaxed),
                );
                let figures = rt.block_on(load(node, route, window));
                let answered = node.answered.load(Ordering::Relaxed) - answered_before;
                // The node's own CPU (a wasm function runs inside it; a process function's
                // work is its own process's, not counted) per request answered.
                let per_request = match (cpu_before, cpu_time(node.child.id())) {
                    (Some(a), Some(b)) if answered > 0 => {
                        Some((b - a).as_secs_f64() * 1e6 / answered as f64)
                    }
                    _ => None,
                };
                cpu[r][s].push(per_request);
                let (p50, p99) = figures
                    .latency
                    .map_or(("-".to_owned(), "-".to_owned()), |l| {
                        (human(l.p50), human(l.p99))
                    });
                println!(
                    "| {round} | {route_name} | {} | {:.0} | {p50} | {p99} | {} | {} |",
                    setup.name,
                    figures.rate(),
                    figures.errors,
                    per_request.map_or_else(|| "-".to_owned(), |us| format!("{us:.1}us"))
                );
                rates[r][s].push(figures.rate());
                received.count();
            }
        }
    }
    println!(
        "\n| route | set-up | median req/s | throughput lost vs off (median of the rounds' own ratios) | node CPU per request (median) | node CPU per request vs off (median of the rounds' own ratios) |"
    );
    println!("|---|---|---|---|---|---|");
    for (r, (route_name, _)) in ROUTES.iter().enumerate() {
        for (s, setup) in SETUPS.iter().enumerate() {
            let m = median(rates[r][s].clone());
            // Each round's own ratio: the set-ups of one round ran back to back.
            let ratios: Vec<f64> = rates[r][s]
                .iter()
                .zip(&rates[r][0])
                .map(|(x, o)| if *o > 0.0 { 1.0 - x / o } else { 0.0 })
                .collect();
            let cost = if s == 0 {
                "-".to_owned()
            } else {
                format!("{:+.1}%", median(ratios) * 100.0)
            };
            let us = median(cpu[r][s].iter().flatten().copied().collect());
            // The node's CPU per request against the "off" node's in the same round: it
            // moves less with the machine's drift than throughput does, since the load
            // generator's share of the cores is left out.
            let cpu_ratios: Vec<f64> = cpu[r][s]
                .iter()
                .zip(&cpu[r][0])
                .filter_map(|(x, o)| Some(x.as_ref()? / o.as_ref()?))
                .collect();
            let cpu_cost = if s == 0 || cpu_ratios.is_empty() {
                "-".to_owned()
            } else {
                format!("{:+.1}%", (median(cpu_ratios) - 1.0) * 100.0)
            };
            println!(
                "| {route_name} | {} | {m:.0} | {cost} | {us:.1}us | {cpu_cost} |",
                setup.name
            );
        }
    }
    // The exporter sends what it holds at least every 5 s (OTEL_BSP_SCHEDULE_DELAY).
    std::thread::sleep(Duration::from_secs(7));
    received.count();
    let traced = SETUPS
        .iter()
        .zip(&nodes)
        .filter(|(setup, _)| setup.traced)
        .map(|(_, node)| node.answered.load(Ordering::Relaxed))
        .sum::<u64>();
    let spans = received.spans.load(Ordering::Relaxed);
    println!(
        "\nThe trace receiver took {} export requests ({} KB) holding {spans} spans, for the \
         {traced} requests the traced node answered: {:.2} spans per request (each request \
         makes a gateway span and a function span; cold starts and waits add more, \
         and fewer means spans were dropped).",
        received.requests.load(Ordering::Relaxed),
        received.bytes.load(Ordering::Relaxed) / 1024,
        spans as f64 / traced.max(1) as f64
    );
    drop(nodes);
    drop(apps);
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(bootstrap) = args.next().map(PathBuf::from) else {
        eprintln!("usage: telemetry ECHO_BOOTSTRAP [SECONDS_PER_STEP] [ROUNDS]");
        std::process::exit(2);
    };
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    if let Err(e) = run(&bootstrap, Duration::from_secs(seconds), rounds) {
        eprintln!("telemetry bench failed: {e}");
        std::process::exit(1);
    }
}
