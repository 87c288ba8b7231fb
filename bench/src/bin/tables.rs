//! PutItem and GetItem throughput and latency over HTTP with 1 KB items, for Nimbus and
//! for the DynamoDB emulators it is compared with, each started here and driven by the
//! same load generator (wrk, with a Lua script per operation) in the same run.
//!
//! Usage: `tables [SECONDS_PER_STEP]` (default 5). `BENCH_SERVERS=nimbus,dynoxide`
//! limits the run. Peers that are not installed are skipped with a note; bench/README.md
//! says how to install them.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nimbus_bench::free_port;
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

fn spawn(name: &'static str, program: &str, args: &[String], port: u16) -> Option<Server> {
    if let Ok(only) = std::env::var("BENCH_SERVERS")
        && !only.split(',').any(|s| s == name)
    {
        return None;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{dir}", &dir.path().display().to_string()))
        .collect();
    match Command::new(program)
        .args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
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
    let s = |v: &str| v.to_owned();
    let mut servers = Vec::new();
    // Beside this program: where `bench/run` built both (`$CARGO_TARGET_DIR/release`).
    let nimbus = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("nimbus")))
        .unwrap_or_else(|| repo().join("target/release/nimbus"))
        .display()
        .to_string();
    let port = free_port();
    servers.extend(spawn(
        "nimbus",
        &nimbus,
        &[
            s("serve"),
            s("--data-dir"),
            s("{dir}/data"),
            s("--listen"),
            format!("127.0.0.1:{}", free_port()),
            s("--services-listen"),
            format!("127.0.0.1:{port}"),
            s("--log-level"),
            s("warn"),
        ],
        port,
    ));
    let port = free_port();
    servers.extend(spawn(
        "dynoxide",
        "dynoxide",
        &[
            s("--port"),
            port.to_string(),
            s("--db-path"),
            s("{dir}/dynoxide.db"),
        ],
        port,
    ));
    let port = free_port();
    servers.extend(spawn(
        "dynalite",
        "dynalite",
        &[
            s("--port"),
            port.to_string(),
            s("--path"),
            s("{dir}/dynalite"),
            s("--createTableMs"),
            s("0"),
        ],
        port,
    ));
    let port = free_port();
    let moto = std::env::var("MOTO_SERVER").unwrap_or_else(|_| s("/opt/moto/bin/moto_server"));
    servers.extend(spawn("moto", &moto, &[s("-p"), port.to_string()], port));
    servers
}

const HEADERS: [(&str, &str); 3] = [
    ("content-type", "application/x-amz-json-1.0"),
    ("x-amz-date", "20260101T000000Z"),
    (
        "authorization",
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    ),
];

async fn call(
    client: &reqwest::Client,
    addr: SocketAddr,
    op: &str,
    body: &Value,
) -> Result<Value, String> {
    let mut request = client
        .post(format!("http://{addr}/"))
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"));
    for (k, v) in HEADERS {
        request = request.header(k, v);
    }
    let response = request
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

/// The wrk script for an operation: PutItem writes a new 1 KB item per request (keys
/// unique per thread), GetItem reads one of 100 items written beforehand.
fn script(op: &str) -> String {
    let payload = "x".repeat(1000);
    let mut lua = String::new();
    for (k, v) in HEADERS {
        lua.push_str(&format!("wrk.headers[\"{k}\"] = \"{v}\"\n"));
    }
    lua.push_str(&format!(
        "wrk.headers[\"x-amz-target\"] = \"DynamoDB_20120810.{op}\"\nwrk.method = \"POST\"\n"
    ));
    lua.push_str(
        "local threads = 0\nfunction setup(thread)\n  thread:set(\"tid\", threads)\n  threads = threads + 1\nend\nlocal n = 0\n",
    );
    match op {
        "PutItem" => lua.push_str(&format!(
            "function request()\n  n = n + 1\n  return wrk.format(nil, \"/\", nil, '{{\"TableName\":\"Bench\",\"Item\":{{\"pk\":{{\"S\":\"w' .. tid .. '-' .. n .. '\"}},\"data\":{{\"S\":\"{payload}\"}}}}}}')\nend\n"
        )),
        _ => lua.push_str(
            "function request()\n  n = n + 1\n  return wrk.format(nil, \"/\", nil, '{\"TableName\":\"Bench\",\"Key\":{\"pk\":{\"S\":\"seed-' .. (n % 100) .. '\"}}}')\nend\n",
        ),
    }
    lua
}

/// A wrk run's figures.
struct Figures {
    rate: f64,
    p50: String,
    p99: String,
    errors: u64,
}

fn run_wrk(addr: SocketAddr, op: &str, clients: usize, seconds: u64) -> Option<Figures> {
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join(format!("{op}.lua"));
    std::fs::write(&path, script(op)).ok()?;
    let threads = clients.min(2);
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &clients.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&path)
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|e| eprintln!("cannot run wrk: {e}"))
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    };
    let rate = field("Requests/sec:")?.parse().ok()?;
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Figures {
        rate,
        p50: field("50%")?,
        p99: field("99%")?,
        errors,
    })
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let client = reqwest::Client::new();
    let servers = start_servers();
    println!("| server | op | clients | ops/s | p50 | p99 | non-2xx |");
    println!("|---|---|---|---|---|---|---|");
    for server in &servers {
        let ready = runtime.block_on(async {
            if !wait_ready(&client, server.addr).await {
                return Err("not ready after 30 s".to_owned());
            }
            let table = json!({
                "TableName": "Bench",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST"
            });
            call(&client, server.addr, "CreateTable", &table).await?;
            for i in 0..100 {
                let item = json!({"TableName": "Bench", "Item": {"pk": {"S": format!("seed-{i}")}, "data": {"S": "x".repeat(1000)}}});
                call(&client, server.addr, "PutItem", &item).await?;
            }
            Ok(())
        });
        if let Err(e) = ready {
            eprintln!("skipping {}: {e}", server.name);
            continue;
        }
        for clients in [1, 64] {
            for op in ["PutItem", "GetItem"] {
                match run_wrk(server.addr, op, clients, seconds) {
                    Some(f) => println!(
                        "| {} | {op} | {clients} | {:.0} | {} | {} | {} |",
                        server.name, f.rate, f.p50, f.p99, f.errors
                    ),
                    None => eprintln!("{} {op} {clients}: wrk gave no figures", server.name),
                }
            }
        }
    }
}
