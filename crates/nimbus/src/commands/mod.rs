//! The subcommands.

/// `println!` for the client commands: writes a line to stdout and returns an
/// `anyhow::Result`, an error when stdout is gone ([`StdoutClosed`] when its reader
/// closed it, as `nimbus logs | head` does) where `println!` would panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::commands::write_line(format_args!($($arg)*))
    };
}

mod build;
mod dlq;
mod invoke;
mod logs;
mod serve;
mod up;
mod validate;
mod version;
mod watch;

use std::process::ExitCode;

use clap::Subcommand;

pub use dlq::Dlq;
pub use invoke::Invoke;
pub use logs::Logs;
pub use serve::Serve;
pub use up::Up;
pub use validate::Validate;
pub use version::Version;

/// A `nimbus` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an app's nimbus.toml and report every problem.
    Validate(Validate),
    /// Run an app for development: validate it, then serve it from DIR/.nimbus.
    Up(Up),
    /// Run a long-lived node that serves deployed apps.
    Serve(Serve),
    /// Invoke a function of a running node and print its result.
    Invoke(Invoke),
    /// Print a function's log lines, and with --follow the new ones as they come.
    Logs(Logs),
    /// List, redrive or delete the dead letters of a function's async invocations.
    #[command(subcommand)]
    Dlq(Dlq),
    /// Print the version.
    Version(Version),
}

impl Command {
    /// Runs the command; the exit code is for outcomes that are not errors.
    ///
    /// A client command whose stdout its reader closed (`nimbus logs | head`) ends
    /// quietly with 0, as `cat` and `grep` do: the reader has what it wanted. `up` and
    /// `serve` print only their start-up summary and build progress there, drop what
    /// stdout cannot take ([`crate::progress::say`]), and keep serving.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = match self {
            Command::Up(cmd) => return cmd.run().await.map(|()| ExitCode::SUCCESS),
            Command::Serve(cmd) => return cmd.run().await.map(|()| ExitCode::SUCCESS),
            Command::Validate(cmd) => cmd.run().await,
            Command::Invoke(cmd) => cmd.run().await,
            Command::Logs(cmd) => cmd.run().await,
            Command::Dlq(cmd) => cmd.run().await,
            Command::Version(cmd) => cmd.run().await.map(|()| ExitCode::SUCCESS),
        };
        match client {
            Err(e) if e.is::<StdoutClosed>() => Ok(ExitCode::SUCCESS),
            other => other,
        }
    }
}

/// Stdout's reader closed it: what a client command prints has nowhere to go.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// The error of a failed write to stdout: [`StdoutClosed`] for a broken pipe (told
/// apart from a broken pipe to the node, which is a failure).
pub(crate) fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("cannot write to stdout")
    }
}

/// Writes `line` and a newline to stdout (what `outln!` expands to).
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{line}").map_err(stdout_error)
}

/// Listener flags shared by `up` and `serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListenArgs {
    /// Address of the gateway (the app's routes).
    #[arg(long, env = "NIMBUS_LISTEN", default_value = nimbus_server::Config::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Address of the services endpoint (AWS-compatible APIs, admin API, /healthz).
    #[arg(long, env = "NIMBUS_SERVICES_LISTEN", default_value = nimbus_server::Config::DEFAULT_SERVICES_LISTEN)]
    services_listen: std::net::SocketAddr,
    /// How long in-flight requests may take to finish after SIGINT or SIGTERM.
    #[arg(long, env = "NIMBUS_SHUTDOWN_GRACE", default_value = "4s", value_parser = humantime_duration)]
    shutdown_grace: std::time::Duration,
    /// Keep tables in this PostgreSQL database instead of the data directory
    /// (`postgres://user:password@host:5432/db`).
    #[arg(long, env = "NIMBUS_POSTGRES")]
    postgres: Option<String>,
    /// Longest a request waits for a free instance of a function at its concurrency
    /// limit before it is refused with 429.
    #[arg(long, env = "NIMBUS_MAX_QUEUE_WAIT", default_value = "10s", value_parser = humantime_duration)]
    max_queue_wait: std::time::Duration,
    /// Most requests that may wait for one function at its concurrency limit; one more is
    /// refused with 429 at once.
    #[arg(long, env = "NIMBUS_MAX_QUEUE_LENGTH", default_value_t = nimbus_server::DispatchConfig::DEFAULT_MAX_QUEUE_LENGTH)]
    max_queue_length: usize,
    /// Most invocations running at once on this node, all functions together.
    #[arg(long, env = "NIMBUS_MAX_CONCURRENCY", default_value_t = nimbus_server::DispatchConfig::DEFAULT_MAX_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrency: u32,
    /// How long an idle instance beyond `min_warm` is kept before it is stopped.
    #[arg(long, env = "NIMBUS_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime_duration)]
    idle_timeout: std::time::Duration,
    /// How often items whose TTL has passed are deleted.
    #[arg(long, env = "NIMBUS_TTL_SWEEP_INTERVAL", default_value = "10s", value_parser = positive_duration)]
    ttl_sweep_interval: std::time::Duration,
    /// Most connections each listener serves at once; more wait in the accept backlog
    /// until one closes.
    #[arg(long, env = "NIMBUS_MAX_CONNECTIONS", default_value_t = nimbus_server::Config::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// How long a client may take to send a request's headers (from connect for the first
    /// request) before it is disconnected.
    #[arg(long, env = "NIMBUS_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    header_read_timeout: std::time::Duration,
    /// How long a client may take to send a request's body (from the end of its headers)
    /// before the request is refused with 408 and an HTTP/1 connection closed; also how
    /// long it may leave a response's bytes untaken before it is disconnected.
    #[arg(long, env = "NIMBUS_BODY_READ_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    body_read_timeout: std::time::Duration,
    /// How long a connection with no request in flight is kept open for the next one.
    #[arg(long, env = "NIMBUS_KEEP_ALIVE_TIMEOUT", default_value = "75s", value_parser = positive_duration)]
    keep_alive_timeout: std::time::Duration,
    /// Largest request line and headers in bytes; larger requests get 431.
    #[arg(long, env = "NIMBUS_MAX_HEADER_BYTES", default_value_t = nimbus_server::Config::DEFAULT_MAX_HEADER_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=u64::from(u32::MAX)))]
    max_header_bytes: usize,
    /// PEM certificate chain: serve the gateway over HTTPS (with --tls-key).
    #[arg(
        long,
        env = "NIMBUS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "NIMBUS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
    /// The pace of async retries: a function error is retried 60 times this per attempt
    /// made (Lambda's minute, then two); an invocation that did not run (throttled) after
    /// a random delay up to this, doubling up to 5 minutes.
    #[arg(long, env = "NIMBUS_ASYNC_RETRY_BASE", default_value = "1s", value_parser = positive_duration)]
    async_retry_base: std::time::Duration,
    /// Keep every function's log lines in the data directory, for `nimbus logs` and the
    /// admin API (`on`), or keep none (`off`).
    #[arg(long, env = "NIMBUS_LOG_STORE", value_enum, default_value = "on")]
    log_store: Switch,
    /// Most log kept per function (`64MiB`, `512KiB`, `1GB` or bytes); the oldest lines go
    /// first.
    #[arg(long, env = "NIMBUS_LOG_RETENTION_SIZE", default_value = "64MiB", value_parser = byte_size)]
    log_retention_size: u64,
    /// How long function log lines are kept.
    #[arg(long, env = "NIMBUS_LOG_RETENTION_AGE", default_value = "7days", value_parser = positive_duration)]
    log_retention_age: std::time::Duration,
    /// Record Prometheus metrics and serve them on the services endpoint's `/metrics`
    /// (`on`), or record none (`off`: `/metrics` answers 404).
    #[arg(long, env = "NIMBUS_METRICS", value_enum, default_value = "on")]
    metrics: Switch,
    #[command(flatten)]
    token: TokenArgs,
}

/// The environment variable holding the services token itself (there is no flag for it:
/// a command line is visible to every user of the machine).
const TOKEN_ENV: &str = "NIMBUS_SERVICES_TOKEN";

/// The services token: required by a node's admin API and `/metrics` when set, and sent
/// by the commands that call them.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct TokenArgs {
    /// File holding the services token (or set NIMBUS_SERVICES_TOKEN to the token
    /// itself): the admin API and /metrics then need `Authorization: Bearer <token>`, and
    /// `nimbus logs` and `nimbus dlq` send it. Required when --services-listen is not a
    /// loopback address; at least 16 characters.
    #[arg(long, env = "NIMBUS_SERVICES_TOKEN_FILE", value_name = "FILE")]
    services_token_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    /// The token from --services-token-file or `NIMBUS_SERVICES_TOKEN`, if either is set.
    pub(crate) fn token(&self) -> anyhow::Result<Option<nimbus_server::ServicesToken>> {
        use anyhow::Context as _;
        let from_env = std::env::var_os(TOKEN_ENV);
        match (&self.services_token_file, from_env) {
            (Some(_), Some(_)) => anyhow::bail!(
                "the services token is given twice: use --services-token-file (NIMBUS_SERVICES_TOKEN_FILE) or {TOKEN_ENV}, not both"
            ),
            (Some(file), None) => {
                let place = file.display();
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the services token file {place}"))?;
                nimbus_server::ServicesToken::new(&text)
                    .with_context(|| format!("cannot use the services token in {place}"))
                    .map(Some)
            }
            (None, Some(value)) => {
                let text = value
                    .into_string()
                    .map_err(|_| anyhow::anyhow!("{TOKEN_ENV} is not UTF-8"))?;
                nimbus_server::ServicesToken::new(&text)
                    .with_context(|| format!("cannot use {TOKEN_ENV}"))
                    .map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// `request` with the token as `Authorization: Bearer`, when there is one.
    pub(crate) fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(match self.token()? {
            Some(token) => request.bearer_auth(token.as_str()),
            None => request,
        })
    }
}

/// A feature turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// A size in bytes: a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB).
fn byte_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 64MiB, 512KiB or 1000000"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    match number.checked_mul(scale) {
        Some(0) => Err("must be more than 0 bytes".to_owned()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{s:?} is too large")),
    }
}

/// `text` safe to print on a terminal: control characters other than tab and those in
/// `keep` are written escaped (`\r`, `\u{1b}`), so that what a function wrote cannot
/// move the cursor, rewrite earlier lines or send the terminal commands.
pub(crate) fn printable<'t>(text: &'t str, keep: &[char]) -> std::borrow::Cow<'t, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\t' && !keep.contains(&c);
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn humantime_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0s".to_owned()),
        d => Ok(d),
    }
}

impl ListenArgs {
    /// The node's configuration.
    ///
    /// # Errors
    /// When the services token cannot be read or is not a valid one.
    pub(crate) fn config(&self) -> anyhow::Result<nimbus_server::Config> {
        Ok(nimbus_server::Config {
            listen: self.listen,
            services_listen: self.services_listen,
            shutdown_grace: self.shutdown_grace,
            ttl_sweep_interval: self.ttl_sweep_interval,
            postgres: self.postgres.clone(),
            dispatch: nimbus_server::DispatchConfig {
                max_queue_wait: self.max_queue_wait,
                max_queue_length: self.max_queue_length,
                idle_timeout: self.idle_timeout,
                max_concurrency: self.max_concurrency,
            },
            python_sdk: None,
            node_sdk: None,
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            max_header_bytes: self.max_header_bytes,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            async_retry_base: self.async_retry_base,
            log_retention: (self.log_store == Switch::On).then_some(
                nimbus_telemetry::logs::Retention {
                    max_bytes: self.log_retention_size,
                    max_age: self.log_retention_age,
                },
            ),
            metrics: self.metrics == Switch::On,
            services_token: self.token.token()?,
        })
    }
}

/// Serves `node` until SIGINT or SIGTERM, logging where it listens.
pub(crate) async fn serve_until_signal(node: nimbus_server::Node) -> anyhow::Result<()> {
    tracing::info!(
        gateway = %node.gateway_addr(),
        services = %node.services_addr(),
        data_dir = %node.data_dir().path().display(),
        "nimbus is ready"
    );
    let stopped = node.run(shutdown_signal()).await?;
    match stopped {
        nimbus_server::Stopped::Drained => tracing::info!("stopped"),
        nimbus_server::Stopped::GraceExpired => {
            tracing::warn!("stopped; requests still in flight after the grace period were cut off")
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stop requested"),
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!(signal = "SIGINT", "stop requested");
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn a_zero_ttl_sweep_interval_is_refused() {
        let parse = |interval: &str| {
            crate::Cli::try_parse_from(["nimbus", "up", "--ttl-sweep-interval", interval])
        };
        let refused = parse("0s").expect_err("0s would panic the sweeper");
        assert!(
            refused.to_string().contains("must be longer than 0s"),
            "{refused}"
        );
        assert!(parse("1s").is_ok());
    }

    #[test]
    fn no_watch_takes_the_usual_spellings_of_a_boolean() {
        // What NIMBUS_NO_WATCH may be: clap checks env values against the value parser.
        let command = <crate::Cli as clap::CommandFactory>::command();
        let up = command.find_subcommand("up").expect("up is a subcommand");
        let arg = up
            .get_arguments()
            .find(|a| a.get_id() == "no_watch")
            .expect("up has --no-watch");
        let accepted: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_owned())
            .collect();
        for value in ["1", "true", "yes", "on", "0", "false", "no", "off"] {
            assert!(accepted.iter().any(|a| a == value), "{value}: {accepted:?}");
        }
    }

    #[test]
    fn a_closed_stdout_is_told_apart() {
        let closed = stdout_error(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(closed.is::<StdoutClosed>());
        let full = stdout_error(std::io::Error::other("disk full"));
        assert!(!full.is::<StdoutClosed>());
        assert!(format!("{full:#}").contains("disk full"));
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(byte_size("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(byte_size("512 KiB"), Ok(512 * 1024));
        assert_eq!(byte_size("1GB"), Ok(1_000_000_000));
        assert_eq!(byte_size("1000"), Ok(1000));
        for bad in ["", "MiB", "0", "12 parsecs", "99999999999999999999GiB"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }
}
