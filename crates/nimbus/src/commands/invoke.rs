//! `nimbus invoke FUNCTION [--async]`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Args;

/// Invokes a function of a running node through its Lambda API and prints the result.
#[derive(Debug, Args)]
pub struct Invoke {
    /// The function.
    function: String,
    /// The event: JSON text, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Queue the event and return at once (InvocationType Event): prints the request id
    /// the function will run with; failures are retried, then dead-lettered.
    #[arg(long = "async")]
    asynchronous: bool,
    /// The node's services endpoint.
    #[arg(
        long,
        env = "NIMBUS_SERVICES_URL",
        default_value = "http://127.0.0.1:4566"
    )]
    services: String,
}

impl Invoke {
    /// Prints the function's response on stdout and its log tail on stderr; exits 1
    /// when the function failed. With `--async`, prints the queued event's request id.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let payload = match self.payload.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the payload from {path}"))?,
            None => self.payload.clone(),
        };
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.services.trim_end_matches('/'),
            self.function
        );
        let request = reqwest::Client::new().post(&url).body(payload);
        let request = if self.asynchronous {
            request.header("x-amz-invocation-type", "Event")
        } else {
            request.header("x-amz-log-type", "Tail")
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.services))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.context("cannot read the response")?;
        if !status.is_success() {
            bail!("{status}: {body}");
        }
        if self.asynchronous {
            let id = headers
                .get("x-amzn-requestid")
                .and_then(|v| v.to_str().ok())
                .context("the node accepted the event but sent no request id")?;
            outln!("{id}")?;
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(tail) = headers
            .get("x-amz-log-result")
            .and_then(|v| v.to_str().ok())
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(tail)
        {
            // The function's own lines, escaped where they would command the terminal.
            eprint!(
                "{}",
                super::printable(&String::from_utf8_lossy(&bytes), &['\n'])
            );
        }
        outln!("{body}")?;
        if let Some(kind) = headers
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
        {
            eprintln!("function error: {kind}");
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}
