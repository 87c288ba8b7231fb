//! Events on Nimbus: how fast durable async invocations are accepted, and how soon a
//! table write starts its stream trigger.
//!
//! 1. Write to trigger (run first, on a quiet node): one `PutItem` at a time on a table
//!    with a stream and a trigger (`batch_size = 1`, no batching window); the triggered
//!    function logs the wall-clock time its handler started for each record, and the
//!    latency is that time minus the time just before the `PutItem` was sent (same
//!    machine, same clock).
//! 2. Accepted events: CALLERS closed-loop callers send `Invoke` with
//!    `X-Amz-Invocation-Type: Event` to the services endpoint; each 202 means the event is
//!    in `events.redb`, committed with an fsync. Accepted events per second and latency.
//!
//! Usage: `events NIMBUS_BINARY [SECONDS] [WRITES]` (defaults 10 and 300); `bench/run
//! events` builds and passes the binary. The app is `bench/fixtures/events`, copied to a
//! fresh directory each run. bench/README.md defines each figure.

use std::{
    path::{Path, PathBuf},
    process::Child,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nimbus_bench::{
    Summary, Threads, closed_loop, human, ready_address, serve_in_background, start_up, stop, tail,
};
use serde_json::{Value, json};

/// Concurrent callers of part 1.
const CALLERS: usize = 64;
/// Unmeasured load before part 1's window.
const WARMUP: Duration = Duration::from_secs(2);
/// The event every async call sends.
const PAYLOAD: &str = r#"{"order":42,"items":["a","b"]}"#;
/// Longest wait for a write's trigger to be logged.
const TRIGGER_WAIT: Duration = Duration::from_secs(5);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running `nimbus up`, its JSON log in a file.
struct Node {
    child: Child,
    log: PathBuf,
    services: String,
}

impl Node {
    fn start(nimbus: &Path, app: &Path, log: &Path) -> Result<Node, String> {
        let (child, ready) = start_up(nimbus, app, log, &["--no-watch"], Duration::from_secs(120))?;
        Ok(Node {
            child,
            log: log.to_owned(),
            services: ready_address(&ready, "services")?.to_string(),
        })
    }

    /// `{item id: handler start, epoch ms}` for every record the trigger logged so far.
    fn triggered(&self) -> std::collections::HashMap<String, f64> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|line| line.contains("triggered"))
            .filter_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let message = v["message"].as_str()?;
                let at = message.find("{\"triggered\"")?;
                let logged: Value = serde_json::from_str(message[at..].trim_end()).ok()?;
                Some((
                    logged["triggered"].as_str()?.to_owned(),
                    logged["at"].as_f64()?,
                ))
            })
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Copies the fixture app to a fresh directory.
fn fresh_app() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let from = repo().join("bench/fixtures/events");
    for file in ["nimbus.toml", "index.js"] {
        std::fs::copy(from.join(file), dir.path().join(file))
            .map_err(|e| format!("cannot copy {file}: {e}"))?;
    }
    Ok(dir)
}

/// `CALLERS` closed-loop async invokes to `url` for `window`: accepted/s and latency.
async fn async_load(url: String, window: Duration) -> Result<nimbus_bench::LoadFigures, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CALLERS)
        .build()
        .map_err(|e| e.to_string())?;
    let probe = client
        .post(&url)
        .header("x-amz-invocation-type", "Event")
        .body(PAYLOAD)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if probe.status().as_u16() != 202 {
        return Err(format!("an async invoke answered {}", probe.status()));
    }
    let (client, url) = (Arc::new(client), Arc::new(url));
    Ok(closed_loop(CALLERS, WARMUP, window, move |_| {
        let (client, url) = (Arc::clone(&client), Arc::clone(&url));
        async move {
            client
                .post(url.as_str())
                .header("x-amz-invocation-type", "Event")
                .body(PAYLOAD)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 202)
        }
    })
    .await)
}

/// A bare axum server in this process, on a thread and runtime of its own as the other
/// programs run theirs, answering every invoke with an empty 202: the ceiling of this
/// client and machine for the same requests.
fn bare_server() -> String {
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        axum::routing::post(|_body: axum::body::Bytes| async { axum::http::StatusCode::ACCEPTED }),
    );
    let addr = serve_in_background(app, Threads::PerCore);
    format!("http://{addr}/2015-03-31/functions/accept/invocations")
}

/// What one load run measured, from either load generator.
struct Accepted {
    rate: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    errors: usize,
}

impl From<nimbus_bench::LoadFigures> for Accepted {
    fn from(f: nimbus_bench::LoadFigures) -> Accepted {
        Accepted {
            rate: f.rate(),
            p50: f.latency.map(|s| s.p50),
            p99: f.latency.map(|s| s.p99),
            errors: f.errors,
        }
    }
}

/// `CALLERS` connections of `wrk` (one thread: a load generator written in C takes far
/// less of the two cores than the reqwest one) posting async invokes to `url` for
/// `window`, after [`WARMUP`] of the same unmeasured. `None` when `wrk` is not installed.
fn wrk_load(url: &str, window: Duration) -> Option<Result<Accepted, String>> {
    let script = match tempfile::NamedTempFile::new() {
        Ok(f) => f,
        Err(e) => return Some(Err(e.to_string())),
    };
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = '{PAYLOAD}'\nwrk.headers[\"X-Amz-Invocation-Type\"] = \"Event\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    if let Err(e) = std::fs::write(script.path(), lua) {
        return Some(Err(e.to_string()));
    }
    let run = |seconds: u64| {
        std::process::Command::new("wrk")
            .args([
                "-t1",
                &format!("-c{CALLERS}"),
                &format!("-d{seconds}s"),
                "--latency",
                "-s",
            ])
            .arg(script.path())
            .arg(url)
            .output()
    };
    match run(WARMUP.as_secs().max(1)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("cannot run wrk: {e}"))),
        Ok(_) => {}
    }
    let output = match run(window.as_secs().max(1)) {
        Ok(o) => o,
        Err(e) => return Some(Err(format!("cannot run wrk: {e}"))),
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    Some(parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}")))
}

/// Reads `wrk --latency`'s report: requests and seconds, non-2xx answers and socket
/// errors, and the 50% and 99% latencies.
fn parse_wrk(text: &str) -> Option<Accepted> {
    let duration = |s: &str| -> Option<Duration> {
        let split = s.find(|c: char| c.is_ascii_alphabetic())?;
        let (n, unit) = s.split_at(split);
        let n: f64 = n.parse().ok()?;
        let secs = match unit {
            "us" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            _ => return None,
        };
        Some(Duration::from_secs_f64(secs))
    };
    let (mut requests, mut seconds, mut errors) = (None, None, 0usize);
    let (mut p50, mut p99) = (None, None);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [n, "requests", "in", took, ..] => {
                requests = n.parse::<f64>().ok();
                seconds = duration(took.trim_end_matches(',')).map(|d| d.as_secs_f64());
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<usize>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<usize>().ok())
                    .sum::<usize>();
            }
            ["50%", d] => p50 = duration(d),
            ["99%", d] => p99 = duration(d),
            _ => {}
        }
    }
    let (requests, seconds) = (requests?, seconds?);
    Some(Accepted {
        rate: (requests - errors as f64).max(0.0) / seconds,
        p50,
        p99,
        errors,
    })
}

/// Part 2: accepted async events per second at [`CALLERS`] callers, Nimbus then the bare
/// server, with the reqwest load generator and, when it is installed, with `wrk`.
async fn accepted(node: &Node, window: Duration) -> Result<(), String> {
    let nimbus_url = format!(
        "http://{}/2015-03-31/functions/accept/invocations",
        node.services
    );
    let bare_url = bare_server();
    let mut rows: Vec<(&str, &str, Accepted)> = vec![
        (
            "nimbus",
            "reqwest",
            async_load(nimbus_url.clone(), window).await?.into(),
        ),
        (
            "bare axum server, 202 at once",
            "reqwest",
            async_load(bare_url.clone(), window).await?.into(),
        ),
    ];
    match wrk_load(&nimbus_url, window) {
        None => println!("(wrk is not installed: `apt-get install wrk` adds its rows)\n"),
        Some(nimbus) => {
            rows.push(("nimbus", "wrk -t1", nimbus?));
            if let Some(bare) = wrk_load(&bare_url, window) {
                rows.push(("bare axum server, 202 at once", "wrk -t1", bare?));
            }
        }
    }
    println!("## Accepted async events\n");
    println!(
        "Nimbus answers 202 once the event is committed with an fsync; the bare server answers 202 at once\n"
    );
    println!("| server | load generator | callers | window | accepted/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let show = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), human);
    for (label, client, a) in &rows {
        println!(
            "| {label} | {client} | {CALLERS} | {} s | {:.0} | {} | {} | {} |",
            window.as_secs(),
            a.rate,
            show(a.p50),
            show(a.p99),
            a.errors
        );
    }
    println!();
    println!("| figure | load generator | measured | target | |");
    println!("|---|---|---|---|---|");
    for client in ["reqwest", "wrk -t1"] {
        let find = |server: &str| {
            rows.iter()
                .find(|(s, c, _)| *s == server && *c == client)
                .map(|(_, _, a)| a)
        };
        let (Some(nimbus), Some(bare)) = (find("nimbus"), find("bare axum server, 202 at once"))
        else {
            continue;
        };
        println!(
            "| durable async events accepted per second, {CALLERS} callers | {client} | {:.0} ({:.2}x the bare server) | >= 20000 | {} |",
            nimbus.rate,
            nimbus.rate / bare.rate,
            if nimbus.rate >= 20_000.0 {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    Ok(())
}

/// Part 1: from `PutItem` to the trigger's handler starting, `writes` times.
async fn write_to_trigger(node: &Node, writes: usize) -> Result<(), String> {
    let client = reqwest::Client::new();
    let url = format!("http://{}/", node.services);
    let put = |id: String| {
        let body =
            json!({ "TableName": "Items", "Item": { "id": { "S": id }, "v": { "N": "1" } } });
        client
            .post(&url)
            .header("x-amz-target", "DynamoDB_20120810.PutItem")
            .header("content-type", "application/x-amz-json-1.0")
            .body(body.to_string())
            .send()
    };
    // One unmeasured write wakes everything up.
    let first = put("warm".to_owned()).await.map_err(|e| e.to_string())?;
    if !first.status().is_success() {
        return Err(format!("PutItem answered {}", first.status()));
    }
    wait_for(node, "warm").await?;
    let mut samples = Vec::with_capacity(writes);
    for i in 0..writes {
        let id = format!("w{i}");
        let sent = now_ms();
        let answer = put(id.clone()).await.map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("PutItem answered {}", answer.status()));
        }
        let started = wait_for(node, &id).await?;
        samples.push(Duration::from_secs_f64(
            ((started - sent) / 1000.0).max(0.0),
        ));
    }
    let s = Summary::of(samples);
    println!("## Table write to stream trigger start\n");
    println!("one PutItem at a time; the next is sent once the trigger has logged the last\n");
    println!("| writes | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} |\n",
        s.n,
        human(s.p50),
        human(s.p90),
        human(s.p99),
        human(s.max)
    );
    println!("| figure | measured | target | |");
    println!("|---|---|---|---|");
    println!(
        "| write-to-trigger p50 | {} | < 10ms | {} |",
        human(s.p50),
        if s.p50 < Duration::from_millis(10) {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

/// Waits until the trigger has logged item `id`; its handler's start, epoch ms.
async fn wait_for(node: &Node, id: &str) -> Result<f64, String> {
    let deadline = Instant::now() + TRIGGER_WAIT;
    loop {
        if let Some(at) = node.triggered().get(id) {
            return Ok(*at);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the trigger did not log {id} within {TRIGGER_WAIT:?}:\n{}",
                tail(&node.log, 20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nimbus = PathBuf::from(
        args.next()
            .expect("usage: events NIMBUS [SECONDS] [WRITES]"),
    );
    let seconds: u64 = args
        .next()
        .map_or(10, |s| s.parse().expect("SECONDS is a number"));
    let writes: usize = args
        .next()
        .map_or(300, |s| s.parse().expect("WRITES is a number"));
    let app = fresh_app().unwrap_or_else(|e| panic!("{e}"));
    let log = app.path().join("nimbus.log");
    let node = Node::start(&nimbus, app.path(), &log).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    // The trigger first: the accepted events of the other part are delivered in the
    // background for a long while after it.
    if let Err(e) = rt.block_on(write_to_trigger(&node, writes)) {
        eprintln!("write to trigger: {e}");
    }
    if let Err(e) = rt.block_on(accepted(&node, Duration::from_secs(seconds))) {
        eprintln!("accepted events: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 5s test @ http://127.0.0.1:4566/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.02ms  20.00ms   80.00%
    Req/Sec    20.50k     1.00k   22.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    3.50ms
     90%    4.00ms
     99%    1.20s
  102400 requests in 5.00s, 8.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:  20480.00
Transfer/sec:      1.60MB
";
        let a = parse_wrk(report).expect("a report");
        assert_eq!(a.errors, 17);
        assert!((a.rate - (102_400.0 - 17.0) / 5.0).abs() < 1e-6);
        assert_eq!(a.p50, Some(Duration::from_micros(812)));
        assert_eq!(a.p99, Some(Duration::from_millis(1200)));
        assert!(parse_wrk("wrk: connection refused").is_none());
    }
}
