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
    seen: Mutex<HashMap<String, Token>>,
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

/// A token claimed for a running request, released when the request fails.
struct Claim<'a> {
    tokens: &'a Tokens,
    token: &'a str,
    fingerprint: Fingerprint,
    /// The writes went to the engine.
    submitted: bool,
    done: bool,
}

impl Claim<'_> {
    /// Records the request's success: a retry with the token is answered from now on.
    fn succeeded(mut self) {
        self.tokens.lock().insert(
            self.token.to_owned(),
            Token::Done(Instant::now(), self.fingerprint),
        );
        self.done = true;
    }

    /// Records that the writes were refused or failed in storage: nothing changed, so a
    /// retry runs them again.
    fn failed(mut self) {
        self.tokens.lock().remove(self.token);
        self.done = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut seen = self.tokens.lock();
        if self.submitted {
            // The caller went away while the writes were with the engine, which applies
            // a write it was handed: a retry must not apply them twice.
            seen.insert(
                self.token.to_owned(),
                Token::Done(Instant::now(), self.fingerprint),
            );
        } else {
            seen.remove(self.token);
        }
    }
}

impl Tokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Token>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `token` for a request, as DynamoDB answers a token's reuse: a retry of a
    /// request that succeeded returns `Ok(None)`; one still running is
    /// `TransactionInProgressException`; a different request is
    /// `IdempotentParameterMismatchException`.
    fn claim<'a>(
        &'a self,
        token: &'a str,
        fingerprint: Fingerprint,
    ) -> Result<Option<Claim<'a>>, ApiError> {
        let mut seen = self.lock();
        seen.retain(|_, t| match t {
            Token::Running(_) => true,
            Token::Done(at, _) => at.elapsed() < TOKEN_WINDOW,
        });
        match seen.get(token) {
            None => {
                seen.insert(token.to_owned(), Token::Running(fingerprint));
                Ok(Some(Claim {
                    tokens: self,
                    token,
                    fingerprint,
                    submitted: false,
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
    let mut claim = claim;
    if let Some(claim) = &mut claim {
        claim.submitted = true;
    }
    let result = tables.write(writes).await;
    if let Some(claim) = claim {
        if result.is_ok() {
            claim.succeeded();
        } else {
            claim.failed();
        }
    }
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

    fn kind(result: Result<Option<Claim<'_>>, ApiError>) -> Result<bool, ErrorKind> {
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
        running.succeeded();
        assert_eq!(kind(tokens.claim("t", a)), Ok(false), "answered, not run");
        assert_eq!(
            kind(tokens.claim("t", b)),
            Err(ErrorKind::IdempotentParameterMismatch)
        );

        // A refused request releases its token: the retry runs.
        tokens.claim("u", a).unwrap().expect("claimed").failed();
        let retry = tokens.claim("u", a).unwrap().expect("claimed again");
        // A request dropped before its writes were handed on releases it too ...
        drop(retry);
        let mut handed_on = tokens.claim("u", a).unwrap().expect("claimed again");
        // ... but one dropped after them counts as done: the engine applies what it took.
        handed_on.submitted = true;
        drop(handed_on);
        assert_eq!(kind(tokens.claim("u", a)), Ok(false));
    }
}
