//! `nimbus dlq list|show|redrive|delete FUNCTION`: the dead letters of a function's async
//! invocations, through the admin API of a running node.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the node is.
#[derive(Debug, Args)]
pub struct Endpoint {
    /// The node's services endpoint.
    #[arg(
        long,
        env = "NIMBUS_SERVICES_URL",
        default_value = "http://127.0.0.1:4566"
    )]
    services: String,
    #[command(flatten)]
    token: super::TokenArgs,
}

impl Endpoint {
    fn url(&self, function: &str, rest: &str) -> String {
        format!(
            "{}/nimbus/v1/functions/{function}/dlq{rest}",
            self.services.trim_end_matches('/')
        )
    }

    /// Sends a request and returns the JSON body (`Null` when empty), or fails with the
    /// node's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self
            .token
            .authorize(request)?
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.services))?;
        let status = response.status();
        let body = response.text().await.context("cannot read the response")?;
        let value: Value = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or(Value::String(body))
        };
        if !status.is_success() {
            let message = value["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            bail!("{status}: {message}");
        }
        Ok(value)
    }
}

/// The dead letters of a function's async invocations: events that failed every attempt
/// or grew too old.
#[derive(Debug, Subcommand)]
pub enum Dlq {
    /// List a function's dead letters, by id (the time their events were first accepted).
    List {
        /// The function.
        function: String,
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
        /// Where the node is.
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Print one dead letter as JSON, payload included.
    Show {
        /// The function.
        function: String,
        /// The entry's id (the event's request id).
        id: String,
        /// Where the node is.
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Queue dead letters again, with their attempts reset: all of the function's, or
    /// those named with --id.
    Redrive {
        /// The function.
        function: String,
        /// An entry to redrive (repeatable); without any, every entry is.
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        /// Where the node is.
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Delete one dead letter.
    Delete {
        /// The function.
        function: String,
        /// The entry's id.
        id: String,
        /// Where the node is.
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

/// One line for a dead letter: id, condition, attempts, last error.
fn summary(entry: &Value) -> String {
    let error = match (
        entry["error"]["errorType"].as_str(),
        entry["error"]["errorMessage"].as_str(),
    ) {
        // The function's own words, escaped where they would command the terminal.
        (Some(kind), Some(message)) => format!(
            "{}: {}",
            super::printable(kind, &[]),
            super::printable(message, &[])
        ),
        _ => "-".to_owned(),
    };
    format!(
        "{}  {}  attempts={}  last={}  {error}",
        entry["id"].as_str().unwrap_or("?"),
        entry["condition"].as_str().unwrap_or("?"),
        entry["attempts"],
        entry["lastAttemptAt"].as_str().unwrap_or("-"),
    )
}

impl Dlq {
    /// Runs the subcommand; exits 1 when something named was not there.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = reqwest::Client::new();
        match self {
            Dlq::List {
                function,
                json,
                endpoint,
            } => {
                // The node answers a page at a time; each names the next.
                let (mut all, mut after, mut listed) = (Vec::new(), None::<String>, 0);
                loop {
                    let rest = after
                        .as_ref()
                        .map_or_else(String::new, |a| format!("?after={a}"));
                    let value = endpoint
                        .send(client.get(endpoint.url(&function, &rest)))
                        .await?;
                    let entries = value["entries"].as_array().cloned().unwrap_or_default();
                    listed += entries.len();
                    if json {
                        all.extend(entries);
                    } else {
                        for entry in &entries {
                            outln!("{}", summary(entry))?;
                        }
                    }
                    match value["next"].as_str() {
                        Some(next) if after.as_deref() == Some(next) => {
                            bail!("the node named the same page twice ({next})");
                        }
                        Some(next) => after = Some(next.to_owned()),
                        None => break,
                    }
                }
                if json {
                    outln!("{}", serde_json::to_string_pretty(&all)?)?;
                } else if listed == 0 {
                    outln!("no dead letters for {function}")?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Dlq::Show {
                function,
                id,
                endpoint,
            } => {
                let value = endpoint
                    .send(client.get(endpoint.url(&function, &format!("/{id}"))))
                    .await?;
                outln!("{}", serde_json::to_string_pretty(&value)?)?;
                Ok(ExitCode::SUCCESS)
            }
            Dlq::Redrive {
                function,
                ids,
                endpoint,
            } => {
                let mut request = client.post(endpoint.url(&function, "/redrive"));
                if !ids.is_empty() {
                    request = request
                        .header("content-type", "application/json")
                        .body(json!({ "ids": ids }).to_string());
                }
                let value = endpoint.send(request).await?;
                let moved = value["redriven"].as_array().cloned().unwrap_or_default();
                for id in &moved {
                    outln!("{}", id.as_str().unwrap_or("?"))?;
                }
                eprintln!(
                    "redrove {} dead letter{} of {function}",
                    moved.len(),
                    if moved.len() == 1 { "" } else { "s" }
                );
                let missing = value["notFound"].as_array().cloned().unwrap_or_default();
                if missing.is_empty() {
                    return Ok(ExitCode::SUCCESS);
                }
                for id in &missing {
                    eprintln!(
                        "error: no dead letter {} for {function}",
                        id.as_str().unwrap_or("?")
                    );
                }
                Ok(ExitCode::FAILURE)
            }
            Dlq::Delete {
                function,
                id,
                endpoint,
            } => {
                endpoint
                    .send(client.delete(endpoint.url(&function, &format!("/{id}"))))
                    .await?;
                eprintln!("deleted dead letter {id} of {function}");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_show_the_error() {
        let entry = json!({
            "id": "0b7c4c1e-2a4f-4a8e-9a3e-6f4f2a1b9c10",
            "condition": "RetriesExhausted",
            "attempts": 3,
            "lastAttemptAt": "2024-01-01T00:00:00.000Z",
            "error": { "errorType": "Error", "errorMessage": "boom" }
        });
        assert_eq!(
            summary(&entry),
            "0b7c4c1e-2a4f-4a8e-9a3e-6f4f2a1b9c10  RetriesExhausted  attempts=3  last=2024-01-01T00:00:00.000Z  Error: boom"
        );
    }
}
