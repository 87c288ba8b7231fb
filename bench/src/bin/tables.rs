//! PutItem and GetItem throughput and latency over HTTP, for Nimbus and for the
//! DynamoDB emulators it is compared with, each started here and driven by the same
//! client in the same run.
//!
//! Usage: `tables [SECONDS_PER_STEP]` (default 5). Peers that are not installed are
//! skipped with a note; see bench/README.md for how to install them.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use nimbus_bench::{Summary, free_port};
use serde_json::{Value, json};

/// A server under test.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn spawn(
    name: &'static str,
    program: &str,
    args: &[String],
    port: u16,
    dir: tempfile::TempDir,
) -> Option<Server> {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => Some(Server {
            name,
            child,
            addr: ([127, 0, 0, 1], port).into(),
            _dir: dir,
        }),
        Err(e) => {
            eprintln!("skipping {name}: cannot start {program}: {e}");
            None
        }
    }
}

fn start_servers() -> Vec<Server> {
    let mut servers = Vec::new();
    let dir = || tempfile::tempdir().expect("a temporary directory");
    let nimbus = repo().join("target/release/nimbus");
    let port = free_port();
    let d = dir();
    let data = d.path().join("data").display().to_string();
    servers.extend(spawn(
        "nimbus",
        &nimbus.display().to_string(),
        &[
            "serve".into(),
            "--data-dir".into(),
            data,
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--services-listen".into(),
            format!("127.0.0.1:{port}"),
            "--log-level".into(),
            "warn".into(),
        ],
        port,
        d,
    ));
    let port = free_port();
    let d = dir();
    let db = d.path().join("dynoxide.db").display().to_string();
    servers.extend(spawn(
        "dynoxide",
        "dynoxide",
        &["--port".into(), port.to_string(), "--db-path".into(), db],
        port,
        d,
    ));
    let port = free_port();
    let d = dir();
    let path = d.path().join("dynalite").display().to_string();
    servers.extend(spawn(
        "dynalite",
        "dynalite",
        &["--port".into(), port.to_string(), "--path".into(), path],
        port,
        d,
    ));
    let port = free_port();
    servers.extend(spawn(
        "moto",
        "moto_server",
        &["-p".into(), port.to_string()],
        port,
        dir(),
    ));
    servers
}

async fn call(
    client: &reqwest::Client,
    addr: SocketAddr,
    op: &str,
    body: &Value,
) -> Result<Value, String> {
    let response = client
        .post(format!("http://{addr}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        Err(format!("{status}: {text}"))
    }
}

async fn wait_ready(client: &reqwest::Client, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if call(client, addr, "ListTables", &json!({})).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Runs `op` from `clients` concurrent tasks for `duration`; returns (ops/s, latencies).
async fn load(
    client: &reqwest::Client,
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    make: Arc<dyn Fn(usize, u64) -> (&'static str, Value) + Send + Sync>,
) -> (f64, Summary, usize) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let make = Arc::clone(&make);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut i = 0u64;
                while start.elapsed() < duration {
                    let (op, body) = make(c, i);
                    let t = Instant::now();
                    match call(&client, addr, op, &body).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                    i += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("a load task finishes");
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = all.len();
    (
        n as f64 / elapsed,
        Summary::of(if all.is_empty() {
            vec![Duration::ZERO]
        } else {
            all
        }),
        errors,
    )
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let step = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("a client");
        let servers = start_servers();
        let payload = "x".repeat(1000);
        println!("| server | op | clients | ops/s | p50 | p99 | errors |");
        println!("|---|---|---|---|---|---|---|");
        for server in &servers {
            if !wait_ready(&client, server.addr).await {
                eprintln!("skipping {}: not ready after 30 s", server.name);
                continue;
            }
            let table = json!({
                "TableName": "Bench",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST"
            });
            if let Err(e) = call(&client, server.addr, "CreateTable", &table).await {
                eprintln!("skipping {}: CreateTable failed: {e}", server.name);
                continue;
            }
            for clients in [1, 64] {
                let p = payload.clone();
                let put: Arc<dyn Fn(usize, u64) -> (&'static str, Value) + Send + Sync> = Arc::new(move |c, i| {
                    ("PutItem", json!({"TableName": "Bench", "Item": {"pk": {"S": format!("k{c}-{i}")}, "data": {"S": p}}}))
                });
                let (rate, lat, errors) = load(&client, server.addr, clients, step, put).await;
                println!("| {} | PutItem | {clients} | {rate:.0} | {:.2} ms | {:.2} ms | {errors} |", server.name, ms(lat.p50), ms(lat.p99));
                let get: Arc<dyn Fn(usize, u64) -> (&'static str, Value) + Send + Sync> = Arc::new(move |c, i| {
                    ("GetItem", json!({"TableName": "Bench", "Key": {"pk": {"S": format!("k{c}-{}", i % 100)}}}))
                });
                let (rate, lat, errors) = load(&client, server.addr, clients, step, get).await;
                println!("| {} | GetItem | {clients} | {rate:.0} | {:.2} ms | {:.2} ms | {errors} |", server.name, ms(lat.p50), ms(lat.p99));
            }
        }
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
