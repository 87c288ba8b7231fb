//! Function logs in the admin API, and the log store they come from.
//!
//! `GET /nimbus/v1/functions/{name}/logs` answers the function's stored log lines, oldest
//! first: `{"function", "lines": [{"time", "timestamp", "request_id", "message"}]}`.
//! Parameters, all optional:
//!
//! - `since`, `until`: a duration before now (`10m`), an RFC 3339 time or epoch
//!   milliseconds;
//! - `request_id`: one invocation's lines;
//! - `filter`: lines containing this text (case-sensitive; at most 1024 bytes, as is
//!   `request_id`);
//! - `limit`: most lines (the newest that match; default and most 10000; fewer when their
//!   text passes 8 MB);
//! - `follow=true`: answer server-sent events instead, one `data:` JSON line each: the
//!   matching history, then new lines as they are logged, until the client goes away.
//!   An event named `missed` (`{"missed": n}`) says the client fell behind and `n` lines
//!   were skipped.
//!
//! Errors are `{"message"}`: 404 for an unknown function, 400 for a bad parameter, 503
//! when the node keeps no logs (`--log-store off`).

use std::{
    collections::{BTreeSet, VecDeque},
    convert::Infallible,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use axum::{
    Json, Router,
    extract::{
        Path, Query as QueryParams, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::{Stream, StreamExt, stream};
use nimbus_core::AppSpec;
use nimbus_telemetry::logs::{
    Followed, LogCapture, LogLine, LogStore, Position, Query, Retention, parse_time, to_millis,
};
use serde_json::json;
use tokio::sync::{Notify, broadcast, oneshot};

use crate::{DataDir, node::BindError};

/// The store's directory inside the data directory.
const LOGS_DIR: &str = "logs";

/// Opens the function log store in the data directory (unless `retention` is `None`) and
/// sends the process's function log lines to it.
pub(crate) fn open_store(
    data: &DataDir,
    retention: Option<Retention>,
) -> Result<Option<LogStore>, BindError> {
    let Some(retention) = retention else {
        tracing::info!("function log store off");
        return Ok(None);
    };
    let dir = data.path().join(LOGS_DIR);
    let store = LogStore::open(&dir, retention).map_err(|source| BindError::Logs {
        dir: dir.clone(),
        source,
    })?;
    LogCapture::global().attach(&store);
    tracing::info!(
        dir = %dir.display(),
        max_bytes = retention.max_bytes,
        max_age_secs = retention.max_age.as_secs(),
        "function log store open"
    );
    Ok(Some(store))
}

struct LogsApi {
    functions: BTreeSet<String>,
    store: Option<LogStore>,
}

pub(crate) fn router(app: Option<&AppSpec>, store: Option<LogStore>) -> Router {
    let functions = app
        .iter()
        .flat_map(|app| app.functions.keys().cloned())
        .collect();
    Router::new()
        .route("/nimbus/v1/functions/{name}/logs", get(logs))
        .method_not_allowed_fallback(|| async {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "the logs API answers GET only",
            )
        })
        .with_state(Arc::new(LogsApi { functions, store }))
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

fn bad(message: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, message)
}

/// A request's parameters, checked.
struct Asked {
    query: Query,
    follow: bool,
}

/// Longest `filter` or `request_id`, in bytes (CloudWatch Logs' limit for a filter
/// pattern).
const MAX_TEXT: usize = 1024;

/// The request's parameters, or what is wrong with them.
fn asked(params: Vec<(String, String)>, now: SystemTime) -> Result<Asked, String> {
    let mut query = Query::default();
    let mut follow = false;
    let time = |name: &str, value: &str| {
        parse_time(value, now)
            .map(to_millis)
            .map_err(|e| format!("bad `{name}`: {e}"))
    };
    for (name, value) in params {
        match name.as_str() {
            "since" => query.since = Some(time("since", &value)?),
            "until" => query.until = Some(time("until", &value)?),
            "request_id" | "filter" if value.len() > MAX_TEXT => {
                return Err(format!(
                    "bad `{name}`: longer than {MAX_TEXT} bytes ({})",
                    value.len()
                ));
            }
            "request_id" => query.request_id = Some(value),
            "filter" => query.filter = Some(value),
            "limit" => {
                query.limit = match value.parse::<usize>() {
                    Ok(n) if (1..=Query::DEFAULT_LIMIT).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "bad `limit` {value:?}: expected a number from 1 to {}",
                            Query::DEFAULT_LIMIT
                        ));
                    }
                }
            }
            "follow" => {
                follow = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(format!("bad `follow` {value:?}: expected true or false"));
                    }
                }
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; expected since, until, request_id, filter, limit or follow"
                ));
            }
        }
    }
    Ok(Asked { query, follow })
}

async fn logs(
    State(api): State<Arc<LogsApi>>,
    name: Result<Path<String>, PathRejection>,
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let name = match name {
        Ok(Path(name)) => name,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if !api.functions.contains(&name) {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no function named {name:?} in this app"),
        );
    }
    let Some(store) = api.store.clone() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node keeps no function logs (it was started with --log-store off)",
        );
    };
    let params = match params {
        Ok(QueryParams(params)) => params,
        Err(e) => return bad(format!("bad parameters: {e}")),
    };
    let Asked { query, follow } = match asked(params, store.now()) {
        Ok(asked) => asked,
        Err(message) => return bad(message),
    };
    // Following starts before the history is read, so that no line falls between.
    let live = follow.then(|| store.subscribe(&name));
    let history = {
        let (store, name, query) = (store.clone(), name.clone(), query.clone());
        tokio::task::spawn_blocking(move || store.query(&name, &query)).await
    };
    let history = match history {
        Ok(Ok(history)) => history,
        Ok(Err(e)) => {
            tracing::error!(function = %name, error = %e, "cannot read a function's log");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the log of {name}: {e}"),
            );
        }
        Err(e) => {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    match live {
        None => Json(json!({
            "function": name,
            "lines": history.lines.iter().map(LogLine::to_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Some(live) => Sse::new(follow_events(history.lines, history.end, live, query))
            .keep_alive(KeepAlive::default())
            .into_response(),
    }
}

fn line_event(line: &LogLine) -> Event {
    Event::default().data(line.to_json().to_string())
}

/// Most bytes of line text a follower may fall behind by before it misses lines: the
/// live lines are taken from the store's broadcast as they come and wait here for a slow
/// client, so that a stalled one holds at most this much (the broadcast alone would hold
/// thousands of lines of up to 256 KiB each for it).
const FOLLOW_BYTES: usize = 8 * 1024 * 1024;

/// What a queued line is counted as besides its text (the line's record and its request
/// id), so that empty lines count too.
const LINE_OVERHEAD: usize = 128;

fn weight(followed: &Followed) -> usize {
    followed.line.message.len() + LINE_OVERHEAD
}

/// The live lines a follower has not been sent yet.
#[derive(Default)]
struct Behind {
    lines: VecDeque<Arc<Followed>>,
    bytes: usize,
    /// Lines dropped since the client was last told.
    missed: u64,
    /// The store stopped following.
    closed: bool,
}

#[derive(Default)]
struct Pending {
    behind: Mutex<Behind>,
    ready: Notify,
}

fn lock(pending: &Pending) -> MutexGuard<'_, Behind> {
    pending
        .behind
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn missed_event(missed: u64) -> Event {
    Event::default()
        .event("missed")
        .data(json!({ "missed": missed }).to_string())
}

/// The history's lines, then the live lines after its end that the query wants.
fn follow_events(
    history: Vec<LogLine>,
    end: Position,
    live: broadcast::Receiver<Arc<Followed>>,
    query: Query,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let pending = Arc::new(Pending::default());
    // Dropped with the stream (the client went away), which ends the task.
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(take_live(live, end, query, Arc::clone(&pending), stopped));
    let past = stream::iter(history).map(|line| Ok(line_event(&line)));
    let new = stream::unfold((pending, stop), |(pending, stop)| async move {
        loop {
            let event = {
                let mut behind = lock(&pending);
                if behind.missed > 0 {
                    Some(missed_event(std::mem::take(&mut behind.missed)))
                } else if let Some(followed) = behind.lines.pop_front() {
                    behind.bytes -= weight(&followed);
                    Some(line_event(&followed.line))
                } else if behind.closed {
                    return None;
                } else {
                    None
                }
            };
            match event {
                Some(event) => return Some((Ok(event), (pending, stop))),
                None => pending.ready.notified().await,
            }
        }
    });
    past.chain(new)
}

/// Takes a follower's live lines from the store's broadcast into `pending`, dropping the
/// oldest past [`FOLLOW_BYTES`], until the store or the client stops.
async fn take_live(
    mut live: broadcast::Receiver<Arc<Followed>>,
    end: Position,
    query: Query,
    pending: Arc<Pending>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let received = tokio::select! {
            received = live.recv() => received,
            _ = &mut stopped => return,
        };
        {
            let mut behind = lock(&pending);
            match received {
                Ok(followed) => {
                    if followed.position <= end || !query.matches(&followed.line) {
                        continue;
                    }
                    behind.bytes += weight(&followed);
                    behind.lines.push_back(followed);
                    while behind.bytes > FOLLOW_BYTES && behind.lines.len() > 1 {
                        if let Some(old) = behind.lines.pop_front() {
                            behind.bytes -= weight(&old);
                            behind.missed += 1;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => behind.missed += missed,
                Err(broadcast::error::RecvError::Closed) => behind.closed = true,
            }
        }
        pending.ready.notify_one();
        if lock(&pending).closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn line(n: u64) -> LogLine {
        LogLine {
            time: 1_700_000_000_000 + n,
            request_id: Some(format!("r{n}")),
            message: format!("line {n}"),
        }
    }

    fn at(offset: u64) -> Position {
        Position { segment: 1, offset }
    }

    /// A follower that falls behind by more than the follow buffer is told how many
    /// lines it missed, then goes on with the newest; lines already in the history are
    /// not sent twice.
    #[tokio::test]
    async fn a_follower_that_falls_behind_is_told_what_it_missed() {
        let (sender, live) = broadcast::channel(2);
        // Line 1 is in the history and also arrives live: it is skipped by position.
        for n in 1..=6 {
            sender
                .send(Arc::new(Followed {
                    line: line(n),
                    position: at(n * 100),
                }))
                .unwrap();
        }
        drop(sender);
        let events = follow_events(vec![line(1)], at(100), live, Query::default());
        let response = Sse::new(events).into_response();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 4, "{text}");
        assert!(events[0].contains("\"line 1\""), "{text}");
        // Lines 1 to 4 were overwritten in the buffer of 2 before the client read any.
        assert_eq!(events[1], "event: missed\ndata: {\"missed\":4}");
        assert!(events[2].contains("\"line 5\""), "{text}");
        assert!(events[3].contains("\"line 6\""), "{text}");
    }

    /// A client that reads nothing while a function prints long lines holds at most
    /// [`FOLLOW_BYTES`] of them; it is told how many it missed, then gets the newest.
    #[tokio::test]
    async fn a_stalled_follower_holds_a_bounded_number_of_bytes() {
        let (sender, live) = broadcast::channel(16);
        let half = FOLLOW_BYTES / 2 + 1;
        let events = follow_events(Vec::new(), at(0), live, Query::default());
        for n in 1..=3u8 {
            let line = LogLine {
                time: 1_700_000_000_000,
                request_id: None,
                message: char::from(b'0' + n).to_string().repeat(half),
            };
            let position = at(u64::from(n) * 100);
            sender.send(Arc::new(Followed { line, position })).unwrap();
        }
        drop(sender);
        // The lines are taken off the broadcast while the client reads nothing.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let response = Sse::new(events).into_response();
        let body = axum::body::to_bytes(response.into_body(), 4 * FOLLOW_BYTES)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], "event: missed\ndata: {\"missed\":2}");
        assert!(events[1].contains("\"333"));
    }

    #[test]
    fn parameters_are_checked() {
        let now = nimbus_telemetry::logs::from_millis(1_700_000_000_000);
        let ok = asked(
            params(&[
                ("since", "10m"),
                ("until", "1700000000000"),
                ("request_id", "r"),
                ("filter", "REPORT"),
                ("limit", "5"),
                ("follow", "true"),
            ]),
            now,
        )
        .unwrap_or_else(|_| panic!("valid parameters"));
        assert_eq!(ok.query.since, Some(1_700_000_000_000 - 600_000));
        assert_eq!(ok.query.until, Some(1_700_000_000_000));
        assert_eq!(ok.query.limit, 5);
        assert!(ok.follow);
        for (bad, says) in [
            ([("since", "soon")], "bad `since`"),
            ([("limit", "0")], "bad `limit`"),
            ([("follow", "maybe")], "bad `follow`"),
            ([("tail", "1")], "unknown parameter \"tail\""),
        ] {
            let message = asked(params(&bad), now)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} is refused"));
            assert!(message.starts_with(says), "{message}");
        }
        let long = "x".repeat(MAX_TEXT + 1);
        for name in ["filter", "request_id"] {
            let message = asked(params(&[(name, long.as_str())]), now)
                .err()
                .unwrap_or_else(|| panic!("a long {name} is refused"));
            assert!(message.starts_with(&format!("bad `{name}`")), "{message}");
        }
        let longest = "x".repeat(MAX_TEXT);
        assert!(asked(params(&[("filter", longest.as_str())]), now).is_ok());
    }
}
