//! TransactWriteItems and TransactGetItems.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value as Json, json};

use super::{
    Tables,
    capacity::{self, Report},
    exprs::{ExprMaps, Projection},
    internal,
    items::Guard,
    keys::{MAX_ITEM_BYTES, check_index_keys, check_item, check_key},
    request::Req,
};
use crate::{
    engine::{ItemWrite, WriteAction, WriteFailure},
    error::{ApiError, CancellationReason, ErrorKind},
    value::{item_size, item_to_json},
};

/// Most actions in one transaction.
const MAX_ACTIONS: usize = 100;
/// How long a ClientRequestToken makes a retry idempotent.
const TOKEN_WINDOW: Duration = Duration::from_secs(600);

/// TransactWriteItems by ClientRequestToken: those in progress, and those that succeeded
/// in the last ten minutes, so that a retry is answered without running again.
#[derive(Default)]
pub(crate) struct Tokens {
    seen: Arc<Mutex<HashMap<String, Token>>>,
}

/// What a token's first request became.
enum Token {
    /// Still running.
    Running(Fingerprint),
    /// Succeeded at the time.
    Done(Instant, Fingerprint),
}

/// A request's SHA-256, without its token and capacity setting.
type Fingerprint = [u8; 32];

/// A token claimed for a running request. Its writes' task records how they ended
/// ([`Claim::ended`]); a claim dropped before that (the request was refused before its
/// writes were made) releases the token.
struct Claim {
    seen: Arc<Mutex<HashMap<String, Token>>>,
    token: String,
    fingerprint: Fingerprint,
    done: bool,
}

impl Claim {
    /// Records how the writes ended: after a success a retry with the token is answered
    /// without running; after a refusal or a storage failure nothing changed, and a retry
    /// runs them again.
    fn ended(mut self, succeeded: bool) {
        let mut seen = lock_tokens(&self.seen);
        if succeeded {
            seen.insert(
                self.token.clone(),
                Token::Done(Instant::now(), self.fingerprint),
            );
        } else {
            seen.remove(&self.token);
        }
        self.done = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.done {
            lock_tokens(&self.seen).remove(&self.token);
        }
    }
}

fn lock_tokens(
    seen: &Mutex<HashMap<String, Token>>,
) -> std::sync::MutexGuard<'_, HashMap<String, Token>> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tokens {
    /// Claims `token` for a request, as DynamoDB answers a token's reuse: a retry of a
    /// request that succeeded returns `Ok(None)`; one still running is
    /// `TransactionInProgressException`; a different request is
    /// `IdempotentParameterMismatchException`.
    fn claim(&self, token: &str, fingerprint: Fingerprint) -> Result<Option<Claim>, ApiError> {
        let mut seen = lock_tokens(&self.seen);
        seen.retain(|_, t| match t {
            Token::Running(_) => true,
            Token::Done(at, _) => at.elapsed() < TOKEN_WINDOW,
        });
        match seen.get(token) {
            None => {
                seen.insert(token.to_owned(), Token::Running(fingerprint));
                Ok(Some(Claim {
                    seen: Arc::clone(&self.seen),
                    token: token.to_owned(),
                    fingerprint,
                    done: false,
                }))
            }
            Some(Token::Running(f) | Token::Done(_, f)) if *f != fingerprint => Err(ApiError::new(
                ErrorKind::IdempotentParameterMismatch,
                "Request parameters do not match the previous request with the same client token",
            )),
            Some(Token::Running(_)) => Err(ApiError::new(
                ErrorKind::TransactionInProgress,
                "The transaction with the given request token is already in progress.",
            )),
            Some(Token::Done(..)) => Ok(None),
        }
    }
}

fn fingerprint(req: &Json) -> Fingerprint {
    use sha2::Digest as _;
    let mut body = req.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("ClientRequestToken");
        o.remove("ReturnConsumedCapacity");
    }
    sha2::Sha256::digest(body.to_string().as_bytes()).into()
}

pub(super) async fn transact_write_items(
    tables: &Tables,
    req: &Req<'_>,
    raw: &Json,
) -> Result<Json, ApiError> {
    let actions = req.opt_array("TransactItems")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'transactItems' failed to satisfy constraint: Member must not be null")
    })?;
    if actions.is_empty() || actions.len() > MAX_ACTIONS {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to {MAX_ACTIONS}, Member must have length greater than or equal to 1"
        )));
    }
    let print = fingerprint(raw);
    let claim = match req.opt_str("ClientRequestToken")? {
        Some(token) => match tables.tokens.claim(token, print)? {
            Some(claim) => Some(claim),
            None => return Ok(json!({})),
        },
        None => None,
    };
    let report = Report::from_req(req)?;
    let mut writes = Vec::with_capacity(actions.len());
    // Which actions only check (charged as reads).
    let mut checks = Vec::with_capacity(actions.len());
    let mut tables_of = Vec::with_capacity(actions.len());
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    for action in actions {
        let action = Req::parse(action)?;
        let kinds = ["ConditionCheck", "Put", "Delete", "Update"];
        let present: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| action.get(k).is_some())
            .collect();
        let [kind] = present.as_slice() else {
            return Err(ApiError::validation(
                "TransactItems can only contain one of Check, Put, Update or Delete",
            ));
        };
        let body = action.opt_struct(kind)?.ok_or_else(ApiError::internal)?;
        let def = tables.table(body.str("TableName")?)?;
        let maps = ExprMaps::from_req(&body)?;
        let exprs = maps.exprs();
        let guard = Guard::from_req(&body, &exprs)?;
        let (key, decide): (Vec<u8>, crate::engine::Decide) = match *kind {
            "Put" => {
                let item = body.item("Item")?;
                let key = check_item(&def, &item)?;
                (
                    key,
                    Box::new(move |old| {
                        guard.check(old)?;
                        Ok(WriteAction::Put(item))
                    }),
                )
            }
            "Delete" => {
                let key = check_key(&def, &body.item("Key")?)?;
                (
                    key,
                    Box::new(move |old| {
                        guard.check(old)?;
                        Ok(if old.is_some() {
                            WriteAction::Delete
                        } else {
                            WriteAction::Keep
                        })
                    }),
                )
            }
            "ConditionCheck" => {
                let key = check_key(&def, &body.item("Key")?)?;
                if guard.is_empty() {
                    return Err(ApiError::validation(
                        "1 validation error detected: Value null at 'transactItems.1.member.conditionCheck.conditionExpression' failed to satisfy constraint: Member must not be null",
                    ));
                }
                (
                    key,
                    Box::new(move |old| {
                        guard.check(old)?;
                        Ok(WriteAction::Keep)
                    }),
                )
            }
            _ => {
                let key_item = body.item("Key")?;
                let key = check_key(&def, &key_item)?;
                let update = exprs.update(&body)?.ok_or_else(|| {
                    ApiError::validation("1 validation error detected: Value null at 'transactItems.1.member.update.updateExpression' failed to satisfy constraint: Member must not be null")
                })?;
                for attr in update.top_level_attributes() {
                    if def.key.attrs().any(|k| k.name == attr) {
                        return Err(ApiError::invalid_parameter(format!(
                            "Cannot update attribute {attr}. This attribute is part of the key"
                        )));
                    }
                }
                let check_def = Arc::clone(&def);
                (
                    key,
                    Box::new(move |old| {
                        guard.check(old)?;
                        if old.is_none() && update.only_removes() {
                            return Ok(WriteAction::Keep);
                        }
                        let mut item = old.cloned().unwrap_or(key_item);
                        update.apply(&mut item)?;
                        if item_size(&item) > MAX_ITEM_BYTES {
                            return Err(ApiError::validation(
                                "Item size to update has exceeded the maximum allowed size",
                            ));
                        }
                        check_index_keys(&check_def, &item)?;
                        Ok(WriteAction::Put(item))
                    }),
                )
            }
        };
        exprs.finish()?;
        if seen.iter().any(|(t, k)| *t == def.name && *k == key) {
            return Err(ApiError::validation(
                "Transaction request cannot include multiple operations on one item",
            ));
        }
        seen.push((def.name.clone(), key.clone()));
        checks.push(*kind == "ConditionCheck");
        tables_of.push(Arc::clone(&def));
        writes.push(ItemWrite {
            table: def,
            key,
            decide,
        });
    }
    // The writes run on a task of their own, which records how they ended: a caller
    // that goes away (a client timing out and retrying with the same token) must not
    // leave the token claimed for ever, nor marked done when the writes were not made.
    let result = tables
        .write_detached(writes, move |result| {
            if let Some(claim) = claim {
                claim.ended(result.is_ok());
            }
        })
        .await;
    match result {
        Ok(written) => {
            let mut out = json!({});
            // A transaction costs twice what the same reads and writes cost alone.
            let used: Vec<_> = written
                .iter()
                .zip(&checks)
                .zip(&tables_of)
                .map(|((w, check), def)| {
                    let size = w
                        .new
                        .as_ref()
                        .map_or(0, item_size)
                        .max(w.old.as_ref().map_or(0, item_size));
                    if *check {
                        (Arc::clone(def), 2.0 * capacity::read_units(size, true), 0.0)
                    } else {
                        (Arc::clone(def), 0.0, 2.0 * capacity::write_units(size))
                    }
                })
                .collect();
            if let Some(c) = capacity::transaction(report, &used) {
                out["ConsumedCapacity"] = c;
            }
            Ok(out)
        }
        // A table deleted since the request was checked: DynamoDB answers that at once,
        // not as a cancellation.
        Err(WriteFailure::Rejected(mut reasons))
            if reasons
                .iter()
                .flatten()
                .any(|e| e.kind == ErrorKind::ResourceNotFound) =>
        {
            Err(reasons
                .iter_mut()
                .find_map(|r| r.take().filter(|e| e.kind == ErrorKind::ResourceNotFound))
                .unwrap_or_else(ApiError::table_not_found))
        }
        Err(WriteFailure::Rejected(reasons)) => Err(cancelled(reasons)),
        Err(WriteFailure::Storage(e)) => Err(internal(e)),
    }
}

/// A `TransactionCanceledException` listing every action's reason in order.
fn cancelled(reasons: Vec<Option<ApiError>>) -> ApiError {
    let reasons: Vec<CancellationReason> = reasons
        .into_iter()
        .map(|r| match r {
            None => CancellationReason {
                code: "None".to_owned(),
                message: None,
                item: None,
            },
            Some(e) => CancellationReason {
                code: match e.kind {
                    ErrorKind::ConditionalCheckFailed => "ConditionalCheckFailed",
                    ErrorKind::Validation => "ValidationError",
                    _ => "InternalServerError",
                }
                .to_owned(),
                message: Some(e.message),
                item: e.item,
            },
        })
        .collect();
    let codes: Vec<&str> = reasons.iter().map(|r| r.code.as_str()).collect();
    ApiError {
        cancellation_reasons: reasons.clone(),
        ..ApiError::new(
            ErrorKind::TransactionCanceled,
            format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
        )
    }
}

pub(super) async fn transact_get_items(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let actions = req.opt_array("TransactItems")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'transactItems' failed to satisfy constraint: Member must not be null")
    })?;
    if actions.is_empty() || actions.len() > MAX_ACTIONS {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to {MAX_ACTIONS}, Member must have length greater than or equal to 1"
        )));
    }
    let report = Report::from_req(req)?;
    let mut plans = Vec::with_capacity(actions.len());
    for action in actions {
        let action = Req::parse(action)?;
        let get = action.opt_struct("Get")?.ok_or_else(|| {
            ApiError::validation("1 validation error detected: Value null at 'transactItems.1.member.get' failed to satisfy constraint: Member must not be null")
        })?;
        let def = tables.table(get.str("TableName")?)?;
        let key = check_key(&def, &get.item("Key")?)?;
        let maps = ExprMaps::from_req(&get)?;
        let exprs = maps.exprs();
        let projection = exprs.projection(&get)?;
        exprs.finish()?;
        plans.push((def, key, projection));
    }
    // One snapshot for every item, as the transaction promises.
    let keys = plans
        .iter()
        .map(|(def, key, _)| (Arc::clone(def), key.clone()))
        .collect();
    let items = tables.engine.get_many(keys).await.map_err(internal)?;
    let mut responses = Vec::with_capacity(plans.len());
    let mut used = Vec::with_capacity(plans.len());
    for ((def, _, projection), item) in plans.into_iter().zip(items) {
        let size = item.as_ref().map_or(0, item_size);
        used.push((def, 2.0 * capacity::read_units(size, true), 0.0));
        responses.push(match item {
            Some(item) => {
                json!({ "Item": item_to_json(&Projection::apply_opt(projection.as_ref(), item)) })
            }
            None => json!({}),
        });
    }
    let mut out = json!({ "Responses": responses });
    if let Some(c) = capacity::transaction(report, &used) {
        out["ConsumedCapacity"] = c;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<Option<Claim>, ApiError>) -> Result<bool, ErrorKind> {
        result.map(|claim| claim.is_some()).map_err(|e| e.kind)
    }

    #[test]
    fn a_token_is_claimed_once_and_answers_retries_by_what_became_of_it() {
        let tokens = Tokens::default();
        let (a, b) = ([1; 32], [2; 32]);
        let running = tokens
            .claim("t", a)
            .unwrap()
            .expect("a new token is claimed");
        assert_eq!(
            kind(tokens.claim("t", a)),
            Err(ErrorKind::TransactionInProgress)
        );
        assert_eq!(
            kind(tokens.claim("t", b)),
            Err(ErrorKind::IdempotentParameterMismatch)
        );
        running.ended(true);
        assert_eq!(kind(tokens.claim("t", a)), Ok(false), "answered, not run");
        assert_eq!(
            kind(tokens.claim("t", b)),
            Err(ErrorKind::IdempotentParameterMismatch)
        );

        // A refused request releases its token: the retry runs.
        tokens.claim("u", a).unwrap().expect("claimed").ended(false);
        let retry = tokens.claim("u", a).unwrap().expect("claimed again");
        // A request dropped before its writes were made releases it too.
        drop(retry);
        assert_eq!(kind(tokens.claim("u", a)), Ok(true));
    }

    /// A caller that stops waiting while its writes run does not decide what becomes of
    /// the token: the writes' task does, when they end.
    #[tokio::test]
    async fn an_abandoned_transaction_finishes_and_records_its_token() {
        let tables = Tables::open(Arc::new(crate::engine::Embedded::in_memory().unwrap()))
            .await
            .unwrap();
        let table = json!({
            "TableName": "Tokens",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        });
        let call = |op: &str, body: &Json| {
            let target = format!("DynamoDB_20120810.{op}");
            let body = body.to_string();
            let tables = &tables;
            async move { tables.handle(&target, body.as_bytes()).await }
        };
        call("CreateTable", &table).await.unwrap();
        let add = json!({
            "ClientRequestToken": "once",
            "TransactItems": [{"Update": {
                "TableName": "Tokens",
                "Key": {"pk": {"S": "n"}},
                "UpdateExpression": "ADD v :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}}
            }}]
        });
        // Polled once (far enough to hand its writes on), then dropped.
        {
            let mut abandoned = std::pin::pin!(call("TransactWriteItems", &add));
            let waker = std::task::Waker::noop();
            let _ = abandoned
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker));
        }
        // The retry is answered either as still running or as done, never run again.
        let mut answered = None;
        for _ in 0..200 {
            match call("TransactWriteItems", &add).await {
                Err(e) if e.kind == ErrorKind::TransactionInProgress => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => {
                    answered = Some(other);
                    break;
                }
            }
        }
        assert_eq!(
            answered.expect("the abandoned transaction ended").unwrap(),
            json!({})
        );
        let got = call(
            "GetItem",
            &json!({"TableName": "Tokens", "Key": {"pk": {"S": "n"}}}),
        )
        .await
        .unwrap();
        assert_eq!(got["Item"]["v"]["N"], "1", "applied once");
    }
}
