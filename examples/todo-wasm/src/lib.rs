//! Nimbus's CRUD example: a to-do list as a `wasi:http` component whose items live in a
//! Nimbus table.
//!
//! | request              | answer                                                        |
//! |----------------------|---------------------------------------------------------------|
//! | `GET /todos`         | 200, every item: `[{"id": "…", "title": "…", "done": false}]` |
//! | `POST /todos`        | 201, the new item; the body is `{"title": "…"}`               |
//! | `GET /todos/{id}`    | 200, the item                                                 |
//! | `PUT /todos/{id}`    | 200, the updated item; the body sets `title`, `done` or both  |
//! | `DELETE /todos/{id}` | 204                                                           |
//!
//! Errors answer `{"message": "…"}`: 400 when the body is not the JSON expected, 404 when
//! the item does not exist, 500 with the DynamoDB error's `type` when the table refuses a
//! request, 502 when the table cannot be reached.
//!
//! What it shows:
//!
//! - A component needs no SDK to use a table: the DynamoDB API is JSON over HTTP. This one
//!   sends it with outbound `wasi:http` requests to `AWS_ENDPOINT_URL`, which Nimbus sets
//!   to its services endpoint and lets wasm functions reach (other hosts need
//!   `allowed_outbound_hosts`). Nimbus does not check signatures, so the requests are
//!   unsigned. The table's name comes from the manifest's `environment`.
//! - An update that must not create the item: `PUT` sends `UpdateItem` with the condition
//!   `attribute_exists(id)` and turns DynamoDB's `ConditionalCheckFailedException` into 404.
//! - Ids drawn from the host's randomness (`wasi:random`).
//!
//! Try it with `nimbus up examples/todo-wasm`, then
//! `curl -X POST localhost:3000/todos -d '{"title":"write the docs"}'` and
//! `curl localhost:3000/todos`.

use std::io::{Read as _, Write as _};

use serde_json::{Value, json};
use wasip2::http::{
    outgoing_handler,
    types::{
        Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
        ResponseOutparam, Scheme,
    },
};

wasip2::http::proxy::export!(Todos);

struct Todos;

impl wasip2::exports::http::incoming_handler::Guest for Todos {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match route(&request) {
            Ok(reply) => reply,
            Err(error) => error.reply(),
        };
        respond(out, status, body);
    }
}

/// Why a request failed, each case with its own status.
enum Error {
    BadRequest(String),
    NotFound,
    /// The table answered with an error: its DynamoDB type and message.
    Table {
        kind: String,
        message: String,
    },
    /// The table could not be reached.
    Unreachable(String),
}

impl Error {
    fn reply(self) -> (u16, Option<Value>) {
        let (status, body) = match self {
            Error::BadRequest(message) => (400, json!({ "message": message })),
            Error::NotFound => (404, json!({ "message": "not found" })),
            Error::Table { kind, message } => (500, json!({ "message": message, "type": kind })),
            Error::Unreachable(message) => (502, json!({ "message": message })),
        };
        (status, Some(body))
    }
}

/// Picks the operation for the request's method and path.
fn route(request: &IncomingRequest) -> Result<(u16, Option<Value>), Error> {
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    // The gateway only sends the manifest's routes, so the path is `/todos` or `/todos/{id}`.
    let id = path.strip_prefix("/todos/").filter(|id| !id.is_empty());
    match (request.method(), id) {
        (Method::Get, None) => Ok((200, Some(list()?))),
        (Method::Post, None) => Ok((201, Some(create(&read_json(request)?)?))),
        (Method::Get, Some(id)) => Ok((200, Some(get(id)?))),
        (Method::Put, Some(id)) => Ok((200, Some(update(id, &read_json(request)?)?))),
        (Method::Delete, Some(id)) => delete(id).map(|()| (204, None)),
        _ => Err(Error::NotFound),
    }
}

fn list() -> Result<Value, Error> {
    let mut todos = Vec::new();
    let mut request = json!({ "TableName": table() });
    // A Scan answers a page (up to 1 MB) at a time; `LastEvaluatedKey` says where to go on.
    loop {
        let page = dynamodb("Scan", &request)?;
        let items = page["Items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        todos.extend(items.iter().map(from_item));
        match page.get("LastEvaluatedKey") {
            Some(key) => request["ExclusiveStartKey"] = key.clone(),
            None => return Ok(Value::Array(todos)),
        }
    }
}

fn create(body: &Value) -> Result<Value, Error> {
    let Some(title) = body["title"].as_str() else {
        return Err(Error::BadRequest("expected {\"title\": \"...\"}".into()));
    };
    let id = new_id();
    dynamodb(
        "PutItem",
        &json!({
            "TableName": table(),
            "Item": { "id": { "S": id }, "title": { "S": title }, "done": { "BOOL": false } },
        }),
    )?;
    Ok(json!({ "id": id, "title": title, "done": false }))
}

fn get(id: &str) -> Result<Value, Error> {
    let found = dynamodb(
        "GetItem",
        &json!({ "TableName": table(), "Key": { "id": { "S": id } } }),
    )?;
    found.get("Item").map(from_item).ok_or(Error::NotFound)
}

fn update(id: &str, body: &Value) -> Result<Value, Error> {
    let mut sets = Vec::new();
    let mut values = json!({});
    if let Some(title) = body.get("title") {
        let title = title
            .as_str()
            .ok_or_else(|| Error::BadRequest("title must be a string".into()))?;
        sets.push("title = :title");
        values[":title"] = json!({ "S": title });
    }
    if let Some(done) = body.get("done") {
        let done = done
            .as_bool()
            .ok_or_else(|| Error::BadRequest("done must be true or false".into()))?;
        sets.push("done = :done");
        values[":done"] = json!({ "BOOL": done });
    }
    if sets.is_empty() {
        return Err(Error::BadRequest("expected title, done or both".into()));
    }
    let updated = dynamodb(
        "UpdateItem",
        &json!({
            "TableName": table(),
            "Key": { "id": { "S": id } },
            "UpdateExpression": format!("SET {}", sets.join(", ")),
            // Without it, UpdateItem would create the item.
            "ConditionExpression": "attribute_exists(id)",
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }),
    );
    match updated {
        Ok(updated) => Ok(from_item(&updated["Attributes"])),
        Err(Error::Table { kind, .. }) if kind == "ConditionalCheckFailedException" => {
            Err(Error::NotFound)
        }
        Err(error) => Err(error),
    }
}

/// Deleting an item that is not there succeeds too, as DynamoDB's DeleteItem does.
fn delete(id: &str) -> Result<(), Error> {
    dynamodb(
        "DeleteItem",
        &json!({ "TableName": table(), "Key": { "id": { "S": id } } }),
    )
    .map(drop)
}

fn table() -> String {
    std::env::var("TABLE_NAME").unwrap_or_else(|_| "Todos".into())
}

/// A random 128-bit id, as 32 hex digits.
fn new_id() -> String {
    let random = wasip2::random::random::get_random_u64;
    format!("{:016x}{:016x}", random(), random())
}

/// A to-do item as the API shows it, from the item in DynamoDB's typed JSON
/// (`{"id": {"S": "…"}, "title": {"S": "…"}, "done": {"BOOL": false}}`).
fn from_item(item: &Value) -> Value {
    json!({
        "id": item["id"]["S"],
        "title": item["title"]["S"],
        "done": item["done"]["BOOL"].as_bool().unwrap_or(false),
    })
}

/// Calls a DynamoDB operation on the services endpoint and returns its answer.
fn dynamodb(operation: &str, body: &Value) -> Result<Value, Error> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| Error::Unreachable("AWS_ENDPOINT_URL is not set".into()))?;
    let headers = [
        ("content-type", "application/x-amz-json-1.0".to_owned()),
        ("x-amz-target", format!("DynamoDB_20120810.{operation}")),
    ];
    let (status, answer) = post(&endpoint, &headers, body.to_string().as_bytes())
        .map_err(|e| Error::Unreachable(format!("cannot reach {endpoint}: {e}")))?;
    let answer: Value = serde_json::from_slice(&answer)
        .map_err(|e| Error::Unreachable(format!("{operation} answered something not JSON: {e}")))?;
    if status == 200 {
        return Ok(answer);
    }
    // `__type` is `namespace#Name`: the name is what callers tell errors apart by.
    let kind = answer["__type"].as_str().unwrap_or("UnknownError");
    let kind = kind.rsplit('#').next().unwrap_or(kind).to_owned();
    let message = answer["message"].as_str().unwrap_or_default();
    Err(Error::Table {
        message: format!("{operation} failed: {kind}: {message}"),
        kind,
    })
}

/// Sends `POST /` to `endpoint` (such as `http://127.0.0.1:4566`) and returns the status
/// and body of the answer.
fn post(endpoint: &str, headers: &[(&str, String)], body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let (scheme, authority) = match endpoint.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => (Scheme::Http, endpoint),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let authority = authority.trim_end_matches('/');
    let set = request
        .set_method(&Method::Post)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some("/")));
    set.map_err(|()| format!("not a URL: {endpoint}"))?;
    let outgoing = request.body().map_err(|()| "request body taken twice")?;
    // Hand the request to the host before writing its body: the host sends the body as it
    // is written, so a body larger than the host's buffer cannot stall the write.
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    {
        let mut stream = outgoing
            .write()
            .map_err(|()| "request stream taken twice")?;
        stream.write_all(body).map_err(|e| e.to_string())?;
        stream.flush().map_err(|e| e.to_string())?;
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;

    let response = loop {
        match future.get() {
            Some(result) => break result.map_err(|()| "response taken twice")?,
            None => future.subscribe().block(),
        }
    };
    let response = response.map_err(|e| format!("{e:?}"))?;
    let incoming = response
        .consume()
        .map_err(|()| "response body taken twice")?;
    let mut bytes = Vec::new();
    {
        let mut stream = incoming
            .stream()
            .map_err(|()| "response stream taken twice")?;
        stream.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    }
    Ok((response.status(), bytes))
}

/// The request's body as JSON, or 400.
fn read_json(request: &IncomingRequest) -> Result<Value, Error> {
    let unreadable = || Error::BadRequest("cannot read the request body".into());
    let body = request.consume().map_err(|()| unreadable())?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|()| unreadable())?;
        stream.read_to_end(&mut bytes).map_err(|_| unreadable())?;
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("invalid JSON: {e}")))
}

/// Answers with `status` and, if given, a JSON body.
fn respond(out: ResponseOutparam, status: u16, body: Option<Value>) {
    let headers = Fields::new();
    if body.is_some() {
        let _ = headers.append("content-type", b"application/json");
    }
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Some(body) = body
        && let Ok(mut stream) = outgoing.write()
    {
        let _ = stream.write_all(body.to_string().as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
