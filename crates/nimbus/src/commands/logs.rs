//! `nimbus logs FUNCTION`: a function's stored log lines, through the admin API of a
//! running node, and with `--follow` the new ones as they come.

use std::{io::Write, process::ExitCode};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// Print a function's log: Lambda's START, END and REPORT lines and the function's own
/// output, oldest first.
#[derive(Debug, Args)]
pub struct Logs {
    /// The function.
    function: String,
    /// Keep printing new lines as they are logged, until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only lines logged since then: a duration before now (`10m`, `2h`), an RFC 3339 time
    /// (`2024-05-01T12:00:00Z`) or epoch milliseconds.
    #[arg(long)]
    since: Option<String>,
    /// Only lines logged until then (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only the lines of this invocation.
    #[arg(long)]
    request_id: Option<String>,
    /// Only lines containing this text (case-sensitive).
    #[arg(long)]
    filter: Option<String>,
    /// Most lines of history printed: the newest that match (at most 10000).
    #[arg(long)]
    limit: Option<u32>,
    /// Print each line as a JSON object (`time`, `timestamp`, `request_id`, `message`).
    #[arg(long)]
    json: bool,
    /// The node's services endpoint.
    #[arg(
        long,
        visible_alias = "endpoint",
        env = "NIMBUS_SERVICES_URL",
        default_value = "http://127.0.0.1:4566"
    )]
    services: String,
    #[command(flatten)]
    token: super::TokenArgs,
}

impl Logs {
    /// Prints the lines; with --follow runs until interrupted or the node stops.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let url = format!(
            "{}/nimbus/v1/functions/{}/logs",
            self.services.trim_end_matches('/'),
            self.function
        );
        let mut params: Vec<(&str, String)> = Vec::new();
        let optional = [
            ("since", &self.since),
            ("until", &self.until),
            ("request_id", &self.request_id),
            ("filter", &self.filter),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                params.push((name, value.clone()));
            }
        }
        if let Some(limit) = self.limit {
            params.push(("limit", limit.to_string()));
        }
        if self.follow {
            params.push(("follow", "true".to_owned()));
        }
        let request = reqwest::Client::new().get(&url).query(&params);
        let mut response = self
            .token
            .authorize(request)?
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.services))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("{status}: {message}");
        }
        let mut out = std::io::stdout().lock();
        if !self.follow {
            let body: Value = response.json().await.context("cannot read the response")?;
            for line in body["lines"].as_array().into_iter().flatten() {
                self.print(&mut out, line)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut events = SseParser::default();
        while let Some(chunk) = response
            .chunk()
            .await
            .context("the node stopped sending lines")?
        {
            for event in events.push(&chunk) {
                match event.name.as_deref() {
                    None | Some("message") => {
                        let line: Value = serde_json::from_str(&event.data)
                            .with_context(|| format!("a line that is not JSON: {}", event.data))?;
                        self.print(&mut out, &line)?;
                    }
                    Some("missed") => {
                        let missed = serde_json::from_str::<Value>(&event.data)
                            .ok()
                            .and_then(|v| v["missed"].as_u64())
                            .unwrap_or(0);
                        eprintln!("warning: fell behind; {missed} lines were skipped");
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn print(&self, out: &mut impl Write, line: &Value) -> anyhow::Result<()> {
        if self.json {
            writeln!(out, "{line}").map_err(super::stdout_error)?;
        } else {
            // Text as a function wrote it, escaped where it would command the terminal.
            writeln!(
                out,
                "{} {} {}",
                super::printable(line["time"].as_str().unwrap_or("-"), &[]),
                super::printable(line["request_id"].as_str().unwrap_or("-"), &[]),
                super::printable(line["message"].as_str().unwrap_or_default(), &[])
            )
            .map_err(super::stdout_error)?;
        }
        // Followers read the lines as they come, through a pipe as well as a terminal.
        out.flush().map_err(super::stdout_error)?;
        Ok(())
    }
}

/// One server-sent event.
#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    name: Option<String>,
    data: String,
}

/// Splits a server-sent event stream into events, across chunk boundaries.
#[derive(Debug, Default)]
struct SseParser {
    pending: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(SseEvent {
                        name: self.name.take(),
                        data,
                    });
                }
                self.name = None;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                "event" => self.name = Some(value.to_owned()),
                // Comments (keep-alives), ids and retry hints.
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_escape_what_would_command_a_terminal() {
        let logs = Logs {
            function: "f".to_owned(),
            follow: false,
            since: None,
            until: None,
            request_id: None,
            filter: None,
            limit: None,
            json: false,
            services: String::new(),
            token: super::super::TokenArgs::default(),
        };
        let mut out = Vec::new();
        let line = serde_json::json!({
            "time": "2026-11-30T00:00:00.000Z",
            "request_id": "r1",
            "message": "a\tb\r2024-01-01T00:00:00.000Z forged REPORT\u{1b}[2K\u{9b}",
        });
        logs.print(&mut out, &line).unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert_eq!(
            printed,
            "2026-11-30T00:00:00.000Z r1 a\tb\\r2024-01-01T00:00:00.000Z forged REPORT\\u{1b}[2K\\u{9b}\n"
        );
        assert_eq!(super::super::printable("plain", &[]), "plain");
        assert_eq!(super::super::printable("a\nb\r", &['\n']), "a\nb\\r");
    }

    #[test]
    fn events_are_split_across_chunks() {
        let mut parser = SseParser::default();
        assert_eq!(parser.push(b": keep-alive\n\ndata: {\"a\""), vec![]);
        let events = parser.push(b":1}\n\nevent: missed\ndata: {\"missed\":2}\r\n\r\n");
        assert_eq!(
            events,
            vec![
                SseEvent {
                    name: None,
                    data: "{\"a\":1}".to_owned()
                },
                SseEvent {
                    name: Some("missed".to_owned()),
                    data: "{\"missed\":2}".to_owned()
                },
            ]
        );
    }
}
