//! The Nimbus admin API on the services endpoint, under `/nimbus/v1/`: the dead-letter
//! store of async invocations.
//!
//! - `GET /nimbus/v1/functions/{name}/dlq[?limit=N&after=ID]`: the function's dead
//!   letters in the order their events were accepted, a page at a time (`next` in the
//!   answer is the `after` of the next page).
//! - `GET /nimbus/v1/functions/{name}/dlq/{id}`: one of them.
//! - `DELETE /nimbus/v1/functions/{name}/dlq/{id}`: deletes one.
//! - `POST /nimbus/v1/functions/{name}/dlq/redrive`: queues them again (all of them, or
//!   those a `{"ids": [...]}` body names), with their attempts reset.
//!
//! Errors are JSON: `{"message": "..."}` with the status saying what kind. With a
//! services token, every route needs `Authorization: Bearer <token>` (see `access`).

use std::{collections::HashSet, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use nimbus_events::{EventId, QueueError};
use serde_json::{Value, json};

use crate::lambda::{Lambda, function_name};

pub(crate) fn router(lambda: &Arc<Lambda>) -> Router {
    Router::new()
        .route("/nimbus/v1/functions/{name}/dlq", get(list))
        .route("/nimbus/v1/functions/{name}/dlq/redrive", post(redrive))
        .route(
            "/nimbus/v1/functions/{name}/dlq/{id}",
            get(show).delete(delete),
        )
        .method_not_allowed_fallback(|| async {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "this method is not allowed on this path of the admin API",
            )
        })
        .with_state(Arc::clone(lambda))
}

/// A path's parameters, or a 400 in the admin API's shape (a segment that is not
/// UTF-8 once decoded, for one).
fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, Problem> {
    path.map(|Path(t)| t)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text()))
}

/// Runs a read of the event store on the blocking pool: a page of dead letters may
/// be megabytes read from disk, which would hold up an async worker.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(read).await {
        Ok(result) => result.map_err(Problem::from),
        Err(e) => Err(problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// An admin API error: a status and a message, answered as `{"message": ...}`.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    message: String,
}

pub(crate) fn problem(status: StatusCode, message: impl Into<String>) -> Problem {
    Problem {
        status,
        message: message.into(),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "message": self.message }))).into_response()
    }
}

impl From<QueueError> for Problem {
    fn from(e: QueueError) -> Problem {
        tracing::error!(error = %e, "admin API: the async event store failed");
        problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// The function's name when the app has it.
fn function(lambda: &Lambda, name: &str) -> Result<String, Problem> {
    lambda
        .function(name)
        .map(|f| f.name.clone())
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                format!("no function named {:?} in this app", function_name(name)),
            )
        })
}

fn event_id(id: &str) -> Result<EventId, Problem> {
    id.parse()
        .map_err(|e: nimbus_events::BadEventId| problem(StatusCode::BAD_REQUEST, e.to_string()))
}

fn no_entry(name: &str, id: EventId) -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        format!("no dead letter {id} for function {name}"),
    )
}

/// Most dead letters in one page of the listing, and the page size when none is asked.
const PAGE: usize = 1000;

/// The listing's query: `limit` (1 to [`PAGE`]) and `after` (the `next` of the page before).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list(
    State(lambda): State<Arc<Lambda>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let name = function(&lambda, &path(name)?)?;
    let Query(query) = query.map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = match query.limit {
        None => PAGE,
        Some(n @ 1..=PAGE) => n,
        Some(n) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                format!("limit must be between 1 and {PAGE}, not {n}"),
            ));
        }
    };
    let after = query.after.as_deref().map(event_id).transpose()?;
    let events = Arc::clone(&lambda.events);
    let function = name.clone();
    let (entries, next) = blocking(move || events.dead_letters(&function, after, limit)).await?;
    let mut body = json!({
        "function": name,
        "count": entries.len(),
        "entries": entries.iter().map(nimbus_events::DeadLetter::to_json).collect::<Vec<_>>(),
    });
    if let Some(next) = next {
        body["next"] = Value::String(next.to_string());
    }
    Ok(Json(body).into_response())
}

async fn show(
    State(lambda): State<Arc<Lambda>>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let (name, id) = path(params)?;
    let name = function(&lambda, &name)?;
    let id = event_id(&id)?;
    let events = Arc::clone(&lambda.events);
    let function = name.clone();
    match blocking(move || events.dead_letter(&function, id)).await? {
        Some(entry) => Ok(Json(entry.to_json()).into_response()),
        None => Err(no_entry(&name, id)),
    }
}

async fn delete(
    State(lambda): State<Arc<Lambda>>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let (name, id) = path(params)?;
    let name = function(&lambda, &name)?;
    let id = event_id(&id)?;
    if lambda.events.delete_dead_letter(&name, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_entry(&name, id))
    }
}

/// The ids a redrive body names: `None` for all (no body, or no `ids`).
fn redrive_ids(body: &[u8]) -> Result<Option<Vec<EventId>>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let expected = "a JSON body such as {\"ids\": [\"<id>\", ...]}, or none to redrive every entry";
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, format!("{expected}: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(problem(StatusCode::BAD_REQUEST, expected));
    };
    if let Some(key) = object.keys().find(|k| *k != "ids") {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("unknown key {key:?}; expected {expected}"),
        ));
    }
    let Some(ids) = object.get("ids") else {
        return Ok(None);
    };
    let Some(ids) = ids.as_array() else {
        return Err(problem(StatusCode::BAD_REQUEST, expected));
    };
    ids.iter()
        .map(|id| match id.as_str() {
            Some(id) => event_id(id),
            None => Err(problem(StatusCode::BAD_REQUEST, expected)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

async fn redrive(
    State(lambda): State<Arc<Lambda>>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, Problem> {
    let name = function(&lambda, &path(name)?)?;
    let ids = redrive_ids(&body)?;
    let asked = ids.clone().unwrap_or_default();
    let moved = lambda.events.redrive(&name, ids).await?;
    let found: HashSet<EventId> = moved.iter().copied().collect();
    let not_found: Vec<String> = asked
        .into_iter()
        .filter(|id| !found.contains(id))
        .map(|id| id.to_string())
        .collect();
    if !moved.is_empty() {
        tracing::info!(function = %name, events = moved.len(), "dead letters redriven");
    }
    Ok(Json(json!({
        "function": name,
        "redriven": moved.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "notFound": not_found,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_bodies() {
        assert_eq!(redrive_ids(b"").unwrap(), None);
        assert_eq!(redrive_ids(b" \n").unwrap(), None);
        assert_eq!(redrive_ids(b"{}").unwrap(), None);
        let id = EventId::random();
        let body = format!("{{\"ids\":[\"{id}\"]}}");
        assert_eq!(redrive_ids(body.as_bytes()).unwrap(), Some(vec![id]));
        for bad in [
            &b"[1]"[..],
            b"{\"ids\":\"x\"}",
            b"{\"ids\":[\"nope\"]}",
            b"{\"id\":[]}",
            b"{",
        ] {
            assert_eq!(
                redrive_ids(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
