//! One instance: a process, its Runtime API endpoint, its output and its limits.

use std::{
    collections::VecDeque,
    os::fd::{AsFd, OwnedFd},
    pin::Pin,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use nimbus_core::{
    BoxFuture, FunctionSpec, Instance, Invocation, Outcome, Report, RuntimeKind, StartError,
    Stopper,
    logging::{self, FunctionLines},
};
use rustix::process::{Pid, Signal};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, ReadBuf},
    net::TcpListener,
    process::Command,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    ProcessConfig,
    api::{ApiState, Pending},
    shims,
};

/// How much of an invocation's output is kept for `X-Amz-Log-Type: Tail` (Lambda's 4 KB).
const LOG_TAIL_BYTES: usize = 4096;
/// Longest line of output kept; longer lines are cut, so that a function printing
/// gigabytes cannot exhaust the node's memory.
const MAX_LINE_BYTES: usize = 256 * 1024;
/// How often memory is checked during an invocation.
const MEMORY_CHECK: Duration = Duration::from_millis(100);

/// Lambda's limit on a function's initialisation (its init phase), which does not count
/// against the first invocation's timeout. A function whose timeout is longer may take as
/// long as its timeout (Lambda then starts it again within the invocation).
const INIT_LIMIT: Duration = Duration::from_secs(10);
/// How long a stopping instance gets between SIGTERM-like shutdown and the kill.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Output lines of the invocation in progress.
#[derive(Default)]
struct Output {
    lines: VecDeque<String>,
    bytes: usize,
    request_id: Option<String>,
    /// The line each output pipe (stdout, stderr) has begun and not ended yet.
    partial: [Partial; 2],
}

/// The start of a line, before its newline.
#[derive(Default)]
struct Partial {
    text: Vec<u8>,
    /// Whether anything was read into it (an empty line is a line; nothing is not).
    begun: bool,
    /// Whether the line before was logged unended by [`Output::flush`]: a newline
    /// that comes next ends that line, not an empty one.
    after_flush: bool,
}

impl Output {
    /// Takes what `pipe` delivered: each line it ends is logged, and what follows the
    /// last newline waits for the rest of its line, or for [`Output::flush`].
    fn feed(&mut self, pipe: usize, mut data: &[u8], function: &str) {
        while !data.is_empty() {
            let (text, ended) = match data.iter().position(|&b| b == b'\n') {
                Some(at) => (&data[..at], Some(at + 1)),
                None => (data, None),
            };
            let partial = &mut self.partial[pipe];
            if std::mem::take(&mut partial.after_flush)
                && text.is_empty()
                && !partial.begun
                && let Some(next) = ended
            {
                data = &data[next..];
                continue;
            }
            partial.begun = true;
            // A longer line is cut: the rest of it, up to its newline, is dropped.
            let room = MAX_LINE_BYTES.saturating_sub(partial.text.len());
            partial
                .text
                .extend_from_slice(&text[..text.len().min(room)]);
            match ended {
                Some(next) => {
                    self.end_line(pipe, function);
                    data = &data[next..];
                }
                None => break,
            }
        }
    }

    /// Logs the line `pipe` has begun, if it has one, as if it ended here.
    fn end_line(&mut self, pipe: usize, function: &str) {
        let partial = std::mem::take(&mut self.partial[pipe]);
        if !partial.begun {
            return;
        }
        let line = String::from_utf8_lossy(&partial.text)
            .trim_end_matches('\r')
            .to_owned();
        logging::write_lines(&FunctionLines {
            function,
            request_id: self.request_id.as_deref(),
            lines: &[&line],
            report: None,
        });
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > LOG_TAIL_BYTES && self.lines.len() > 1 {
            if let Some(front) = self.lines.pop_front() {
                self.bytes -= front.len() + 1;
            }
        }
    }

    /// Logs the lines the pipes have begun: at an invocation's end, so that output
    /// without a final newline is the invocation's own, not joined to the next's.
    fn flush(&mut self, function: &str) {
        for pipe in 0..self.partial.len() {
            let begun = self.partial[pipe].begun;
            self.end_line(pipe, function);
            self.partial[pipe].after_flush = begun;
        }
    }
}

/// A running process instance of a function.
pub struct ProcessInstance {
    function: Arc<FunctionSpec>,
    state: Arc<ApiState>,
    pending: mpsc::Sender<Pending>,
    server: JoinHandle<()>,
    kill: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    exited: watch::Receiver<Option<String>>,
    pid: Option<u32>,
    output: Arc<Mutex<Output>>,
    /// The output pipes, to see when their pumps have logged what is in them.
    pipes: Vec<Pipe>,
    started: Instant,
    invoked: bool,
    /// Peak resident memory seen, in MB.
    peak_mb: u64,
    /// When resident memory was last sampled.
    sampled: Option<Instant>,
    /// Stops this instance from outside; made once, handed to the dispatcher per call.
    stopper: Stopper,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The environment a function sees: Lambda's variables, dummy credentials, the services
/// endpoint and the manifest's `environment`; of the host's, only `PATH` and the locale.
fn environment(
    config: &ProcessConfig,
    function: &FunctionSpec,
    api: &str,
    tmp: Option<&std::path::Path>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for key in ["PATH", "LANG", "LC_ALL", "LC_CTYPE"] {
        if let Ok(v) = std::env::var(key) {
            env.push((key.to_owned(), v));
        }
    }
    // The instance's own temporary directory, under each name runtimes and tools read
    // (Node's `os.tmpdir()`, Python's `tempfile`, `mktemp`).
    if let Some(tmp) = tmp {
        for key in ["TMPDIR", "TMP", "TEMP"] {
            env.push((key.to_owned(), tmp.display().to_string()));
        }
    }
    let code = function.code.display().to_string();
    // As Lambda's, a custom runtime's code directory and its `lib` are searched for
    // shared libraries; the manifest may say otherwise. Not for Node.js and Python, run
    // by the host's interpreters: the path comes before the system's directories, and a
    // library the code ships (a `libstdc++`) would be loaded into the interpreter itself.
    if function.runtime.kind == RuntimeKind::Provided {
        env.push(("LD_LIBRARY_PATH".to_owned(), format!("{code}:{code}/lib")));
    }
    // As Lambda's `NODE_PATH`: the runtime's SDK, then the code's directory, after a
    // module's own `node_modules`; the manifest may say otherwise. The shim makes ES
    // modules, which do not read `NODE_PATH`, find the SDK too.
    if function.runtime.kind == RuntimeKind::Nodejs {
        let path = match &config.node_sdk {
            Some(sdk) => {
                env.push(("NIMBUS_NODE_SDK".to_owned(), sdk.display().to_string()));
                format!("{}:{code}", sdk.display())
            }
            None => code.clone(),
        };
        env.push(("NODE_PATH".to_owned(), path));
    }
    env.extend(nimbus_core::lambda::function_environment(
        function,
        &config.region,
        &config.services_endpoint,
    ));
    let runtime = [
        ("AWS_LAMBDA_RUNTIME_API", api.to_owned()),
        ("LAMBDA_TASK_ROOT", code),
        ("LAMBDA_RUNTIME_DIR", config.shims_dir.display().to_string()),
    ];
    env.extend(runtime.into_iter().map(|(k, v)| (k.to_owned(), v)));
    if function.runtime.kind == RuntimeKind::Python
        && let Some(deps) = &config.python_deps
    {
        let dir = deps.join(&function.name);
        if dir.is_dir() {
            env.push(("NIMBUS_PYTHON_DEPS".to_owned(), dir.display().to_string()));
        }
    }
    if function.runtime.kind == RuntimeKind::Python
        && let Some(sdk) = &config.python_sdk
    {
        env.push(("NIMBUS_PYTHON_SDK".to_owned(), sdk.display().to_string()));
    }
    env
}

/// The flags Lambda starts Node.js with for a function of `memory_mb`: the heap sized to
/// the function's memory (a tenth for the young generation, the rest for the old), so
/// that V8 collects before the process outgrows it, `global.gc`, and 80 KiB of HTTP
/// headers. Without them V8 sizes its heap by the host's memory, and a function that
/// fits its memory on Lambda outgrows it here and is killed.
fn node_flags(memory_mb: u32) -> [String; 4] {
    let young = memory_mb / 10;
    [
        "--expose-gc".to_owned(),
        "--max-http-header-size=81920".to_owned(),
        format!("--max-semi-space-size={}", (young / 2).max(1)),
        format!(
            "--max-old-space-size={}",
            memory_mb.saturating_sub(young).max(1)
        ),
    ]
}

/// How a process ended, in Lambda's words: `exit status 1`, `signal: killed` (Go's names
/// for signals, as Lambda's runtime interface reports them).
fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                1 => "hangup",
                2 => "interrupt",
                4 => "illegal instruction",
                6 => "aborted",
                7 => "bus error",
                8 => "floating point exception",
                9 => "killed",
                11 => "segmentation fault",
                13 => "broken pipe",
                15 => "terminated",
                other => return format!("signal: {other}"),
            };
            format!("signal: {name}")
        }
        (None, None) => status.to_string(),
    }
}

/// A new directory under `root` that only this user may enter, named uniquely (a name
/// taken already fails its creation). The name is short: a Unix socket's path, which
/// programs make in `TMPDIR` (Python's `multiprocessing`), is at most 107 bytes.
async fn private_dir(root: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = root.join(&id[..12]);
    let made = dir.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::create_dir_all(made.parent().unwrap_or(&made))?;
        std::fs::DirBuilder::new().mode(0o700).create(&made)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(dir)
}

/// Removes `dir` and what is in it, off the runtime's threads (it may hold much).
async fn remove_dir(dir: std::path::PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

fn command(config: &ProcessConfig, function: &FunctionSpec) -> Command {
    match function.runtime.kind {
        RuntimeKind::Nodejs => {
            let mut c = Command::new("node");
            c.args(node_flags(function.memory_mb));
            c.arg(shims::node(&config.shims_dir));
            c
        }
        RuntimeKind::Python => {
            let mut c = Command::new("python3");
            c.arg(shims::python(&config.shims_dir));
            c
        }
        RuntimeKind::Provided | RuntimeKind::Wasm => Command::new(function.code.join("bootstrap")),
    }
}

/// Longest an invocation's end waits for the output pumps to log what the function wrote
/// before it answered (a function whose background work writes without pause would
/// otherwise hold every invocation up).
const CATCH_UP: Duration = Duration::from_millis(50);

/// One of the process's output pipes, as the invocation sees it: whether its pump has
/// logged everything it read.
struct Pipe {
    /// The pipe's read end (a duplicate), to ask how many bytes wait in it.
    fd: OwnedFd,
    /// Set when the pump last found the pipe empty, cleared when it goes to read:
    /// while it is set, every byte read has been logged or is held as the pipe's
    /// begun line.
    idle: Arc<AtomicBool>,
}

impl Pipe {
    /// Whether every byte written to the pipe so far has been logged: the pipe is
    /// empty and the pump found it empty after logging what it read before. (Read in
    /// this order, a read the pump makes in between leaves `idle` cleared.)
    fn caught_up(&self) -> bool {
        let empty = rustix::io::ioctl_fionread(&self.fd).is_ok_and(|n| n == 0);
        empty && self.idle.load(Ordering::Acquire)
    }
}

/// A pipe's reading end that tells its [`Pipe`] when it is found empty.
struct Watched<R> {
    inner: R,
    idle: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Asked for more: what was read before is logged, or held as the pipe's begun
        // line (the pump reads no further before it has done one or the other).
        self.idle.store(false, Ordering::Release);
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        // Empty for now, closed (a function may close its stdout), or failing: nothing
        // more to wait for.
        let nothing = match &polled {
            Poll::Pending | Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => buf.filled().len() == before,
        };
        if nothing {
            self.idle.store(true, Ordering::Release);
        }
        polled
    }
}

/// Starts pumping `stream`, output pipe number `pipe`, into the log; the [`Pipe`] that
/// follows it, unless its descriptor cannot be duplicated (the invocation then does not
/// wait for it).
fn watch_pipe<S>(
    stream: S,
    pipe: usize,
    function: &str,
    output: &Arc<Mutex<Output>>,
) -> Option<Pipe>
where
    S: AsyncRead + AsFd + Unpin + Send + 'static,
{
    // Close-on-exec: other functions' processes must not inherit a reading end.
    let fd = rustix::io::fcntl_dupfd_cloexec(stream.as_fd(), 0).ok();
    let idle = Arc::new(AtomicBool::new(false));
    let watched = Watched {
        inner: stream,
        idle: Arc::clone(&idle),
    };
    pump(watched, pipe, function.to_owned(), Arc::clone(output));
    fd.map(|fd| Pipe { fd, idle })
}

/// Copies a stream of output into the log, line by line, tagged with the invocation.
/// Every byte read is in the log or in the pipe's partial line before the next read, so
/// that a [`Pipe`] found caught up has nothing of its own left to log.
fn pump(
    mut stream: impl AsyncRead + Unpin + Send + 'static,
    pipe: usize,
    function: String,
    output: Arc<Mutex<Output>>,
) {
    tokio::spawn(async move {
        let mut chunk = vec![0; 16 * 1024];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            lock(&output).feed(pipe, &chunk[..n], &function);
        }
        lock(&output).end_line(pipe, &function);
    });
}

/// Resident memory of a process in MB, from /proc (Linux).
fn rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

fn kill_now(kill: &Mutex<Option<oneshot::Sender<()>>>) {
    if let Some(kill) = lock(kill).take() {
        let _ = kill.send(());
    }
}

/// Sends `signal` to the process group that the bootstrap with `pid` leads: the
/// bootstrap and what it started (a shell bootstrap's `curl`, say). A group that is gone
/// already is not an error.
fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// SIGTERM, as Lambda sends at shutdown, then after the grace SIGKILL for a process still
/// running; both to the bootstrap's whole process group. Returns once it has ended. What
/// is left of its group is killed as soon as the bootstrap ends, however it ends (so
/// children do not get the rest of the grace once the bootstrap is gone).
async fn terminate(
    pid: Option<u32>,
    mut exited: watch::Receiver<Option<String>>,
    kill: &Mutex<Option<oneshot::Sender<()>>>,
) {
    if let Some(pid) = pid
        && exited.borrow().is_none()
    {
        signal_group(pid, Signal::TERM);
    }
    let ended = tokio::time::timeout(STOP_GRACE, exited.wait_for(Option::is_some))
        .await
        .is_ok();
    if let Some(pid) = pid
        && !ended
    {
        signal_group(pid, Signal::KILL);
    }
    kill_now(kill);
    let _ = exited.wait_for(Option::is_some).await;
}

impl ProcessInstance {
    /// Starts the process and its Runtime API endpoint.
    ///
    /// # Errors
    /// When the endpoint cannot listen or the process cannot be spawned.
    pub async fn start(
        config: Arc<ProcessConfig>,
        function: Arc<FunctionSpec>,
    ) -> Result<ProcessInstance, StartError> {
        let fail = |reason: String| StartError {
            function: function.name.clone(),
            reason,
        };
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| fail(format!("cannot listen for the Runtime API: {e}")))?;
        let api = listener
            .local_addr()
            .map_err(|e| fail(e.to_string()))?
            .to_string();
        let (pending, pending_rx) = mpsc::channel(1);
        let arn = format!(
            "arn:aws:lambda:{}:000000000000:function:{}",
            config.region, function.name
        );
        let state = ApiState::new(pending_rx, arn);
        let router = crate::api::router(Arc::clone(&state));
        let server = tokio::spawn(async move {
            let _ = axum::serve(crate::api::Capped::new(listener), router).await;
        });
        let started = Instant::now();
        let tmp = match &config.tmp_root {
            Some(root) => match private_dir(root).await {
                Ok(dir) => Some(dir),
                Err(e) => {
                    server.abort();
                    return Err(fail(format!(
                        "cannot make the instance's temporary directory in {}: {e}",
                        root.display()
                    )));
                }
            },
            None => None,
        };
        let mut cmd = command(&config, &function);
        cmd.current_dir(&function.code)
            .env_clear()
            .envs(environment(&config, &function, &api, tmp.as_deref()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so that stopping it reaches what it started too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                server.abort();
                if let Some(tmp) = tmp {
                    remove_dir(tmp).await;
                }
                return Err(fail(format!(
                    "cannot run the {} runtime: {e}",
                    function.runtime.kind
                )));
            }
        };
        let output = Arc::new(Mutex::new(Output::default()));
        let mut pipes = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            pipes.extend(watch_pipe(stdout, 0, &function.name, &output));
        }
        if let Some(stderr) = child.stderr.take() {
            pipes.extend(watch_pipe(stderr, 1, &function.name, &output));
        }
        let pid = child.id();
        let (kill, kill_rx) = oneshot::channel::<()>();
        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let text = match status {
                Ok(s) => exit_text(s),
                Err(e) => e.to_string(),
            };
            // What the bootstrap started (`miner &`) would outlive it, out of every
            // limit and still writing to the function's log: the group goes with it,
            // before the end is told (so that a stop returns with it gone). While a
            // member lives, the group's id cannot be given to a new process.
            if let Some(pid) = pid {
                signal_group(pid, Signal::KILL);
            }
            let _ = exit_tx.send(Some(text));
            // With the whole group gone, nothing writes there any more.
            if let Some(tmp) = tmp {
                remove_dir(tmp).await;
            }
        });
        let kill = Arc::new(Mutex::new(Some(kill)));
        let stopper: Stopper = {
            let (exited, kill) = (exited.clone(), Arc::clone(&kill));
            Arc::new(move || {
                let (exited, kill) = (exited.clone(), Arc::clone(&kill));
                Box::pin(async move { terminate(pid, exited, &kill).await })
            })
        };
        Ok(ProcessInstance {
            function,
            state,
            pending,
            server,
            kill,
            exited,
            pid,
            output,
            pipes,
            started,
            invoked: false,
            peak_mb: 0,
            sampled: None,
            stopper,
        })
    }

    fn kill_now(&self) {
        kill_now(&self.kill);
    }

    /// Waits for the end of the start-up: the runtime's first `/next`, its
    /// `/init/error`, or its exit (which the invocation then reports); `false` when none
    /// came within the init limit.
    async fn initialised(&self) -> bool {
        let limit = INIT_LIMIT.max(self.function.timeout);
        let mut exited = self.exited.clone();
        let remaining = limit.saturating_sub(self.started.elapsed());
        tokio::select! {
            () = self.state.initialised.notified() => true,
            _ = exited.wait_for(Option::is_some) => true,
            () = tokio::time::sleep(remaining) => lock(&self.state.first_next).is_some(),
        }
    }

    async fn run(&mut self, mut invocation: Invocation) -> Report {
        let request_id = invocation.request_id.clone();
        let first = !self.invoked;
        self.invoked = true;
        // The init phase is not the invocation's: the timeout counts from the end of the
        // start-up (the runtime's first `/next`), as on Lambda, where a cold start whose
        // init takes longer than the function's timeout still succeeds.
        if first {
            let initialised = self.initialised().await;
            // A start-up that failed (and said so) or never ended: the invocation does
            // not run.
            let failed = if initialised {
                self.state.init_error()
            } else {
                let message = format!(
                    "RequestId: {request_id} Error: the runtime did not initialise within {:.2} seconds",
                    INIT_LIMIT.max(self.function.timeout).as_secs_f64()
                );
                Some(Outcome::platform_error(
                    nimbus_core::TIMEOUT_ERROR,
                    &message,
                ))
            };
            if let Some(outcome) = failed {
                self.kill_now();
                return Report {
                    outcome,
                    reusable: false,
                    init_duration: Some(self.started.elapsed()),
                    log_tail: String::new(),
                    max_memory_mb: Some(self.peak_mb),
                    run_duration: Some(Duration::ZERO),
                };
            }
            invocation.deadline = SystemTime::now() + self.function.timeout;
        }
        let running = Instant::now();
        {
            let mut out = lock(&self.output);
            // A line begun since the last invocation ended is the last one's (or the
            // start-up's), not this one's.
            out.flush(&self.function.name);
            out.lines.clear();
            out.bytes = 0;
            out.request_id = Some(request_id.clone());
        }
        let timeout = invocation
            .deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let (done, mut done_rx) = oneshot::channel();
        let mut exited = self.exited.clone();
        // A process that has already ended, or whose endpoint is gone, cannot take it.
        let gone = exited.borrow().is_some()
            || self
                .pending
                .send(Pending { invocation, done })
                .await
                .is_err();
        let (outcome, reusable) = if gone {
            (self.exit_outcome(&request_id), false)
        } else {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            // The first check comes after a period: a quick invocation costs no /proc read.
            let mut memory =
                tokio::time::interval_at(tokio::time::Instant::now() + MEMORY_CHECK, MEMORY_CHECK);
            let mut peak = 0;
            loop {
                tokio::select! {
                    outcome = &mut done_rx => {
                        let reusable = outcome.is_ok()
                            && self.state.init_error().is_none()
                            && !self.state.exiting.load(std::sync::atomic::Ordering::SeqCst);
                        let outcome = outcome.unwrap_or_else(|_| self.exit_outcome(&request_id));
                        break (outcome, reusable);
                    }
                    () = &mut deadline => {
                        self.kill_now();
                        let message = format!(
                            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                            self.function.timeout.as_secs_f64()
                        );
                        break (Outcome::platform_error(nimbus_core::TIMEOUT_ERROR, &message), false);
                    }
                    _ = exited.wait_for(Option::is_some) => {
                        // The runtime may have answered just before exiting.
                        let outcome = match done_rx.try_recv() {
                            Ok(outcome) => outcome,
                            Err(_) => self.exit_outcome(&request_id),
                        };
                        break (outcome, false);
                    }
                    _ = memory.tick() => {
                        let rss = self.pid.and_then(rss_mb);
                        self.sampled = Some(Instant::now());
                        peak = peak.max(rss.unwrap_or(0));
                        self.peak_mb = self.peak_mb.max(peak);
                        if rss.is_some_and(|mb| mb > u64::from(self.function.memory_mb)) {
                            self.kill_now();
                            let message = format!(
                                "RequestId: {request_id} Error: Runtime exited with error: signal: killed (memory above {} MB)",
                                self.function.memory_mb
                            );
                            break (Outcome::platform_error("Runtime.OutOfMemory", &message), false);
                        }
                    }
                }
            }
        };
        let init_duration = first.then(|| {
            lock(&self.state.first_next).map_or_else(
                || self.started.elapsed(),
                |at| at.duration_since(self.started),
            )
        });
        // What the function wrote before it answered is in the pipes by now (the runtimes
        // flush stdout before they post a result): wait until the pumps have logged it,
        // so that it comes before END and carries this invocation's request id.
        let waiting = Instant::now();
        let mut tries = 0u32;
        let mut caught_up = self.pipes.iter().all(Pipe::caught_up);
        while !caught_up && waiting.elapsed() < CATCH_UP {
            tries += 1;
            if tries < 16 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            caught_up = self.pipes.iter().all(Pipe::caught_up);
        }
        // The request id stays until the next invocation's: lines the function wrote
        // during this one can still be in the pipe (Node.js writes stdout to a pipe
        // asynchronously), and they are this invocation's, not nobody's.
        let log_tail = {
            let mut out = lock(&self.output);
            // A line without its newline, once everything written is read, is ended
            // here. Not while output is still coming (the function's background work
            // writes on): its line may be half-way through, and ends with its newline,
            // or before the next invocation starts.
            if caught_up {
                out.flush(&self.function.name);
            }
            out.lines.iter().cloned().collect::<Vec<_>>().join("\n")
        };
        // A sample at most every period, also for instances serving quick invocations
        // back to back (each /proc read costs tens of microseconds).
        if self.sampled.is_none_or(|at| at.elapsed() >= MEMORY_CHECK)
            && let Some(mb) = self.pid.and_then(rss_mb)
        {
            self.sampled = Some(Instant::now());
            self.peak_mb = self.peak_mb.max(mb);
        }
        Report {
            outcome,
            reusable,
            init_duration,
            log_tail,
            max_memory_mb: Some(self.peak_mb),
            run_duration: Some(running.elapsed()),
        }
    }

    /// The outcome of an invocation during which the process ended: its init error if it
    /// reported one, else Lambda's `Runtime.ExitError`.
    fn exit_outcome(&self, request_id: &str) -> Outcome {
        if let Some(init) = self.state.init_error() {
            return init;
        }
        let status = self
            .exited
            .borrow()
            .clone()
            .unwrap_or_else(|| "unknown status".to_owned());
        // A runtime that exits 0 in the middle of an invocation gave no error to report.
        let message = if status == "exit status 0" {
            format!("RequestId: {request_id} Error: Runtime exited without providing a reason")
        } else {
            format!("RequestId: {request_id} Error: Runtime exited with error: {status}")
        };
        Outcome::platform_error("Runtime.ExitError", &message)
    }
}

impl Instance for ProcessInstance {
    fn invoke(&mut self, invocation: Invocation) -> BoxFuture<'_, Report> {
        Box::pin(self.run(invocation))
    }

    fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // SIGTERM, and SIGKILL after the grace, while the runtime's long poll waits:
            // as on Lambda, `next` does not answer a runtime that is being stopped.
            // (Ending the poll first, with a 410, made runtimes built on the
            // `lambda_runtime` crate panic: a backtrace note in the log at every idle
            // stop.) Then the invocation channel closes, which answers a poll still open
            // with a 410.
            terminate(self.pid, self.exited.clone(), &self.kill).await;
            let (closed, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut self.pending, closed));
            self.server.abort();
        })
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(Arc::clone(&self.stopper))
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        self.kill_now();
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_gets_lambdas_heap_for_the_functions_memory() {
        assert_eq!(
            node_flags(128),
            [
                "--expose-gc",
                "--max-http-header-size=81920",
                "--max-semi-space-size=6",
                "--max-old-space-size=116",
            ]
        );
        assert_eq!(node_flags(1024)[3], "--max-old-space-size=922");
    }

    #[test]
    fn an_ended_process_is_described_in_lambdas_words() {
        use std::os::unix::process::ExitStatusExt as _;
        let status = std::process::ExitStatus::from_raw;
        assert_eq!(exit_text(status(1 << 8)), "exit status 1");
        assert_eq!(exit_text(status(0)), "exit status 0");
        assert_eq!(exit_text(status(9)), "signal: killed");
        assert_eq!(exit_text(status(11)), "signal: segmentation fault");
        assert_eq!(exit_text(status(64)), "signal: 64");
    }

    fn lines(out: &Output) -> Vec<&str> {
        out.lines.iter().map(String::as_str).collect()
    }

    #[test]
    fn lines_are_ended_by_newlines_or_by_a_flush() {
        let mut out = Output::default();
        out.feed(0, b"one\ntw", "f");
        out.feed(1, b"err\r\n\n", "f");
        assert_eq!(lines(&out), ["one", "err", ""]);
        out.feed(0, b"o\nthr", "f");
        assert_eq!(lines(&out), ["one", "err", "", "two"]);
        out.flush("f");
        assert_eq!(lines(&out), ["one", "err", "", "two", "thr"]);
        // The newline that ends the flushed line makes no empty line of its own; one
        // after it does.
        out.feed(0, b"\n\nfour\n", "f");
        assert_eq!(lines(&out), ["one", "err", "", "two", "thr", "", "four"]);
        // A flush with nothing begun logs nothing.
        out.flush("f");
        assert_eq!(out.lines.len(), 7);
    }

    #[test]
    fn a_long_line_is_cut_and_the_rest_of_it_dropped() {
        let mut out = Output::default();
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        out.feed(0, &long[..1000], "f");
        out.feed(0, &long[1000..], "f");
        out.feed(0, b"yyy\n", "f");
        assert_eq!(lines(&out), ["x".repeat(MAX_LINE_BYTES)]);
        out.feed(0, b"next\n", "f");
        // The tail keeps the newest lines within its 4 KB.
        assert_eq!(lines(&out), ["next"]);
    }
}
