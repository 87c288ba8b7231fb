//! Starts the real `nimbus` binary for a test and stops it afterwards.
//!
//! A [`Nimbus`] runs `nimbus up` on a private copy of an app directory (or `nimbus serve`
//! on a temporary data directory) with both listeners on port 0, learns the bound
//! addresses from its JSON log, waits until both answer `GET /healthz`, and captures
//! everything it logs. Dropping it kills the process. Later issues' tests start their
//! nodes through this module.

#![allow(dead_code)] // Each test module uses its own part of the harness.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// Marks captured stdout lines, to tell them from the log on stderr.
const STDOUT_TAG: &str = "\u{1}stdout\u{1}";

/// How long a node may take to become ready before the test fails.
// Generous: `up` may first install dependencies (npm, pip, the AWS SDK for Python).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The `nimbus` binary built for these tests.
pub fn nimbus_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nimbus")
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An example app's directory.
pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// The directory of the real client programs the tests drive (`tests/clients`).
pub fn clients_dir() -> PathBuf {
    repo_root().join("tests/clients")
}

/// A program from the test clients' Python environment (`python`, `aws`), which
/// `scripts/test` installs from `tests/clients/requirements.txt`.
pub fn client_program(name: &str) -> PathBuf {
    let path = clients_dir().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs the test clients",
        path.display()
    );
    path
}

/// Runs a client program against `endpoint` and fails the test with its output unless
/// it succeeds.
pub fn run_client(program: &Path, args: &[&str], endpoint: &str) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .env("NIMBUS_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{text}",
        program.display(),
        out.status
    );
    text
}

/// Builds a Rust fixture under `tests/fixtures/NAME` (once per test run) and returns the
/// path of its `bootstrap` binary. The build shares the workspace's target directory (or
/// `CARGO_TARGET_DIR`), so it is incremental across runs.
pub fn rust_fixture(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let manifest = repo_root()
        .join("tests/fixtures")
        .join(name)
        .join("Cargo.toml");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from)
        // A target directory per fixture: each builds a binary named `bootstrap`.
        .join("fixtures")
        .join(name);
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the fixture {name} failed");
    let path = target.join("release/bootstrap");
    built.push((name.to_owned(), path.clone()));
    path
}

/// Runs `nimbus ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(nimbus_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the nimbus binary runs")
}

/// Copies an app directory (without state or installed modules) into a fresh temporary
/// directory, so tests never share a data directory or its lock.
pub fn copy_app(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    copy_dir(src, dir.path());
    dir
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".nimbus" || name == "node_modules" || name == "target" {
            continue;
        }
        let target = dst.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// How to start a node.
pub struct Builder {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    /// Kept alive as long as the node: the app copy or data directory.
    temp: Option<tempfile::TempDir>,
    dir: PathBuf,
    /// The working directory of the process, when not the test's.
    cwd: Option<PathBuf>,
}

impl Builder {
    /// `nimbus up` on a private copy of `app_dir`.
    pub fn up(app_dir: &Path) -> Builder {
        let temp = copy_app(app_dir);
        let dir = temp.path().to_path_buf();
        Builder {
            args: vec!["up".into(), dir.clone().into()],
            envs: Vec::new(),
            temp: Some(temp),
            dir,
            cwd: None,
        }
    }

    /// `nimbus up` on `app_dir` itself (for tests about the directory's own state).
    pub fn up_in_place(app_dir: &Path) -> Builder {
        Builder {
            args: vec!["up".into(), app_dir.into()],
            envs: Vec::new(),
            temp: None,
            dir: app_dir.to_path_buf(),
            cwd: None,
        }
    }

    /// `nimbus up RELATIVE` run from `cwd`, as a user typing `nimbus up app` does.
    pub fn up_relative(cwd: &Path, relative: &str) -> Builder {
        Builder {
            args: vec!["up".into(), relative.into()],
            envs: Vec::new(),
            temp: None,
            dir: cwd.join(relative),
            cwd: Some(cwd.to_path_buf()),
        }
    }

    /// `nimbus serve` on a fresh data directory.
    pub fn serve() -> Builder {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join("data");
        Builder {
            args: vec!["serve".into(), "--data-dir".into(), dir.clone().into()],
            envs: Vec::new(),
            temp: Some(temp),
            dir,
            cwd: None,
        }
    }

    /// `nimbus serve` on a given data directory (for restart and crash tests).
    pub fn serve_in(dir: &Path) -> Builder {
        Builder {
            args: vec!["serve".into(), "--data-dir".into(), dir.into()],
            envs: Vec::new(),
            temp: None,
            dir: dir.to_path_buf(),
            cwd: None,
        }
    }

    /// Keeps tables in PostgreSQL (`NIMBUS_TEST_POSTGRES`, default
    /// `postgres://postgres@127.0.0.1:5432/test`), in a fresh schema of this node's own.
    pub fn postgres(self) -> Builder {
        let url = postgres_schema_url();
        self.arg("--postgres").arg(url)
    }

    /// Adds arguments.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Builder {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Builder {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts the process without waiting for it to be ready.
    pub fn spawn(self) -> Nimbus {
        let mut command = Command::new(nimbus_bin());
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
            .args(&self.args)
            .args(["--log-format", "json", "--log-level", "debug"]);
        // Free ports unless the test chose an address, by flag or environment.
        let chosen = |flag: &str, var: &str| {
            self.args.iter().any(|a| a == flag) || self.envs.iter().any(|(k, _)| k == var)
        };
        if !chosen("--listen", "NIMBUS_LISTEN") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        if !chosen("--services-listen", "NIMBUS_SERVICES_LISTEN") {
            command.args(["--services-listen", "127.0.0.1:0"]);
        }
        command
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the nimbus binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        for (stream, tx) in [
            (Box::new(stderr) as Box<dyn Read + Send>, Some(ready_tx)),
            (Box::new(stdout), None),
        ] {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(tx) = &tx
                        && let Some(addrs) = ready_addresses(&line)
                    {
                        let _ = tx.send(addrs);
                    }
                    // stderr carries the log; stdout what the command prints for people.
                    let tagged = if tx.is_some() {
                        line
                    } else {
                        format!("{STDOUT_TAG}{line}")
                    };
                    logs.lock().unwrap().push(tagged);
                }
            });
        }
        Nimbus {
            child,
            ready: ready_rx,
            addrs: None,
            logs,
            dir: self.dir,
            _temp: self.temp,
        }
    }

    /// Starts the process and waits until both listeners answer `GET /healthz`.
    pub fn start(self) -> Nimbus {
        let mut node = self.spawn();
        node.wait_ready();
        node
    }
}

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    std::env::var("NIMBUS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Creates a fresh schema and returns a URL whose connections use it.
pub fn postgres_schema_url() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = postgres_url();
    let schema = format!(
        "nimbus_e2e_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .arg(&base)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .output()
        .expect("psql runs (scripts/test needs PostgreSQL's client)");
    assert!(
        out.status.success(),
        "cannot create schema {schema} on {base}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// The gateway and services addresses from the "nimbus is ready" log line.
fn ready_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value["message"] != "nimbus is ready" {
        return None;
    }
    let gateway = value["gateway"].as_str()?.parse().ok()?;
    let services = value["services"].as_str()?.parse().ok()?;
    Some((gateway, services))
}

/// A running `nimbus` process.
pub struct Nimbus {
    child: Child,
    ready: mpsc::Receiver<(SocketAddr, SocketAddr)>,
    addrs: Option<(SocketAddr, SocketAddr)>,
    logs: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// An HTTP response, as far as the tests look at it.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends one HTTP/1.1 request and reads the whole response (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, rest) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {raw:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Nimbus {
    /// Waits for the ready log line and for both listeners to answer `GET /healthz`.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addrs = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "nimbus exited before it was ready ({status}):\n{}",
                    self.logs()
                );
            }
            match self.ready.recv_timeout(Duration::from_millis(20)) {
                Ok(addrs) => break addrs,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => panic!("nimbus did not report ready in time:\n{}", self.logs()),
            }
        };
        self.addrs = Some(addrs);
        for addr in [addrs.0, addrs.1] {
            loop {
                match http(addr, "GET", "/healthz", &[], "") {
                    Ok(r) if r.status == 200 => break,
                    _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                    other => panic!(
                        "{addr}/healthz never answered 200: {other:?}\n{}",
                        self.logs()
                    ),
                }
            }
        }
    }

    /// The gateway's address.
    pub fn gateway(&self) -> SocketAddr {
        self.addrs.expect("the node is ready").0
    }

    /// The services endpoint's address.
    pub fn services(&self) -> SocketAddr {
        self.addrs.expect("the node is ready").1
    }

    /// The app copy (for `up`) or data directory (for `serve`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far, stdout and stderr.
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.strip_prefix(STDOUT_TAG).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `timeout` until the output contains `needle` (output is read by other
    /// threads, so a line may arrive just after the response that follows it); says
    /// whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_logs(needle, 1, timeout)
    }

    /// Waits up to `timeout` until the output contains `needle` at least `count` times.
    pub fn wait_for_logs(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().matches(needle).count() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the process wrote to stderr: its log.
    pub fn stderr(&self) -> String {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.starts_with(STDOUT_TAG))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process with SIGKILL and reaps it, as a crash would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nimbus {
    fn drop(&mut self) {
        self.kill();
    }
}
