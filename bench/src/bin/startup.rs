//! Startup to healthy: how long from spawning `nimbus up` until both listeners answer
//! `GET /healthz` with 200, for an app without functions and for the seed's example app.
//!
//! Usage: `startup [NIMBUS_BINARY] [RUNS]` (defaults: target/release/nimbus, 50).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nimbus_bench::{Summary, free_port};

fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let request = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One cold start of `nimbus up DIR`, timed from spawn to both listeners healthy; with
/// `idle`, also the resident memory after that long idle.
fn one_start(nimbus: &Path, dir: &Path) -> Duration {
    one_start_measuring(nimbus, dir, None).0
}

fn one_start_measuring(
    nimbus: &Path,
    dir: &Path,
    idle: Option<Duration>,
) -> (Duration, Option<u64>) {
    let (gateway, services) = (free_port(), free_port());
    let gateway: SocketAddr = ([127, 0, 0, 1], gateway).into();
    let services: SocketAddr = ([127, 0, 0, 1], services).into();
    let started = Instant::now();
    let mut child = Command::new(nimbus)
        .arg("up")
        .arg(dir)
        .arg("--listen")
        .arg(gateway.to_string())
        .arg("--services-listen")
        .arg(services.to_string())
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nimbus starts");
    let mut up = [false, false];
    while !(up[0] && up[1]) {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("nimbus did not become healthy within 10 s");
        }
        for (i, addr) in [gateway, services].into_iter().enumerate() {
            if !up[i] {
                up[i] = healthy(addr);
            }
        }
        if !(up[0] && up[1]) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let elapsed = started.elapsed();
    let rss = idle.and_then(|idle| {
        std::thread::sleep(idle);
        rss_kib(child.id())
    });
    // Stop it the way a supervisor would, and wait so the next run starts clean.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    (elapsed, rss)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nimbus = args
        .next()
        .unwrap_or_else(|| "target/release/nimbus".to_owned());
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50);
    let nimbus = Path::new(&nimbus);
    assert!(nimbus.is_file(), "no nimbus binary at {}", nimbus.display());

    let empty = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        empty.path().join("nimbus.toml"),
        "name = \"no-functions\"\n",
    )
    .expect("writes the manifest");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/user-registration");
    let example_copy = tempfile::tempdir().expect("a temporary directory");
    for file in ["nimbus.toml", "index.js", "package.json"] {
        std::fs::copy(example.join(file), example_copy.path().join(file)).expect("copies");
    }

    for (label, dir) in [
        ("app without functions", empty.path()),
        ("user-registration example", example_copy.path()),
    ] {
        one_start(nimbus, dir); // warm the page cache
        let samples: Vec<Duration> = (0..runs).map(|_| one_start(nimbus, dir)).collect();
        println!("startup to healthy, {label}: {}", Summary::of(samples));
        let (_, rss) = one_start_measuring(nimbus, dir, Some(Duration::from_secs(2)));
        if let Some(kib) = rss {
            println!(
                "idle resident memory after 2 s, {label}: {:.1} MiB",
                kib as f64 / 1024.0
            );
        }
    }
}
