//! TransactWriteItems and TransactGetItems.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value as Json, json};

use super::{
    Tables,
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

/// Responses to recent TransactWriteItems by ClientRequestToken, so that a retry within
/// ten minutes is answered without running again.
#[derive(Default)]
pub(crate) struct Tokens {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Tokens {
    /// `Some(true)` when the token was used with the same request, `Some(false)` with a
    /// different one, `None` when unknown.
    fn check(&self, token: &str, fingerprint: u64) -> Option<bool> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, (at, _)| at.elapsed() < TOKEN_WINDOW);
        seen.get(token).map(|(_, f)| *f == fingerprint)
    }

    fn remember(&self, token: &str, fingerprint: u64) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.to_owned(), (Instant::now(), fingerprint));
    }
}

fn fingerprint(req: &Json) -> u64 {
    let mut body = req.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("ClientRequestToken");
        o.remove("ReturnConsumedCapacity");
    }
    u64::from(crc32fast::hash(body.to_string().as_bytes()))
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
    let token = req.opt_str("ClientRequestToken")?;
    let print = fingerprint(raw);
    if let Some(token) = token {
        match tables.tokens.check(token, print) {
            Some(true) => return Ok(json!({})),
            Some(false) => {
                return Err(ApiError::new(
                    ErrorKind::IdempotentParameterMismatch,
                    "Request parameters do not match the previous request with the same client token",
                ));
            }
            None => {}
        }
    }
    let mut writes = Vec::with_capacity(actions.len());
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
        writes.push(ItemWrite {
            table: def,
            key,
            decide,
        });
    }
    match tables.write(writes).await {
        Ok(_) => {
            if let Some(token) = token {
                tables.tokens.remember(token, print);
            }
            Ok(json!({}))
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
    for ((_, _, projection), item) in plans.into_iter().zip(items) {
        responses.push(match item {
            Some(item) => {
                json!({ "Item": item_to_json(&Projection::apply_opt(projection.as_ref(), item)) })
            }
            None => json!({}),
        });
    }
    Ok(json!({ "Responses": responses }))
}
