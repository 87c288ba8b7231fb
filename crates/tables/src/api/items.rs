//! Single-item operations: PutItem, GetItem, UpdateItem, DeleteItem.

use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::{
    Tables,
    capacity::{self, Report},
    exprs::{Condition, ExprMaps, Exprs, Projection, Update},
    internal,
    keys::{MAX_ITEM_BYTES, check_index_keys, check_item, check_key},
    request::Req,
};
use crate::{
    engine::{ItemWrite, WriteAction, WriteFailure, Written},
    error::ApiError,
    schema::TableDef,
    value::{Item, item_size, item_to_json},
};

/// `ReturnValuesOnConditionCheckFailure`: whether a failed condition returns the item.
pub(crate) fn return_on_failure(req: &Req<'_>) -> Result<bool, ApiError> {
    Ok(
        req.opt_enum("ReturnValuesOnConditionCheckFailure", &["ALL_OLD", "NONE"])?
            == Some("ALL_OLD"),
    )
}

/// A write's `ConditionExpression` with what a failure returns: checked inside the
/// engine's transaction against the item as it is.
pub(crate) struct Guard {
    condition: Option<Condition>,
    return_old: bool,
}

impl Guard {
    /// The request's condition (read through `exprs`) and
    /// `ReturnValuesOnConditionCheckFailure`.
    pub(crate) fn from_req(req: &Req<'_>, exprs: &Exprs<'_>) -> Result<Guard, ApiError> {
        Ok(Guard {
            condition: exprs.condition(req, "ConditionExpression")?,
            return_old: return_on_failure(req)?,
        })
    }

    /// Whether the request has a condition at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.condition.is_none()
    }

    /// `ConditionalCheckFailedException` (with the item when asked) unless the condition
    /// holds for `old`.
    pub(crate) fn check(&self, old: Option<&Item>) -> Result<(), ApiError> {
        match &self.condition {
            Some(condition) if !condition.eval(old) => Err(ApiError::condition_failed(
                old.filter(|_| self.return_old).cloned(),
            )),
            _ => Ok(()),
        }
    }
}

/// `ReturnValues`, one of `allowed` for the operation (DynamoDB's message for another
/// valid value names none).
fn return_values<'a>(req: &Req<'a>, allowed: &[&str]) -> Result<&'a str, ApiError> {
    let all = ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"];
    let value = req.opt_enum("ReturnValues", &all)?.unwrap_or("NONE");
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation("Return values set to invalid value"))
    }
}

/// Runs one item write and maps a refusal back to its error.
pub(crate) async fn write_one(tables: &Tables, write: ItemWrite) -> Result<Written, ApiError> {
    match tables.write(vec![write]).await {
        Ok(mut written) => Ok(written.pop().unwrap_or_default()),
        Err(WriteFailure::Rejected(mut reasons)) => {
            Err(reasons.pop().flatten().unwrap_or_else(ApiError::internal))
        }
        Err(WriteFailure::Storage(e)) => Err(internal(e)),
    }
}

fn with_capacity(mut out: Json, report: Report, def: &TableDef, units: f64, read: bool) -> Json {
    if let Some(c) = capacity::consumed(report, def, units, read, None) {
        out["ConsumedCapacity"] = c;
    }
    out
}

pub(super) async fn put_item(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(req.str("TableName")?)?;
    let item = req.item("Item")?;
    let key = check_item(&def, &item)?;
    let returns = return_values(req, &["NONE", "ALL_OLD"])?;
    let report = Report::from_req(req)?;
    let maps = ExprMaps::from_req(req)?;
    let exprs = maps.exprs();
    let guard = Guard::from_req(req, &exprs)?;
    exprs.finish()?;
    let size = item_size(&item);
    let written = write_one(
        tables,
        ItemWrite {
            table: Arc::clone(&def),
            key,
            decide: Box::new(move |old| {
                guard.check(old)?;
                Ok(WriteAction::Put(item))
            }),
        },
    )
    .await?;
    let mut out = json!({});
    if returns == "ALL_OLD"
        && let Some(old) = &written.old
    {
        out["Attributes"] = item_to_json(old);
    }
    let units = capacity::write_units(size.max(written.old.as_ref().map_or(0, item_size)));
    Ok(with_capacity(out, report, &def, units, false))
}

pub(super) async fn get_item(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(req.str("TableName")?)?;
    let key = check_key(&def, &req.item("Key")?)?;
    let consistent = req.opt_bool("ConsistentRead")?.unwrap_or(false);
    let report = Report::from_req(req)?;
    let maps = ExprMaps::from_req(req)?;
    let exprs = maps.exprs();
    let projection = exprs.projection(req)?;
    exprs.finish()?;
    let item = tables
        .engine
        .get(Arc::clone(&def), key)
        .await
        .map_err(internal)?;
    let units = capacity::read_units(item.as_ref().map_or(0, item_size), consistent);
    let mut out = json!({});
    if let Some(item) = item {
        out["Item"] = item_to_json(&Projection::apply_opt(projection.as_ref(), item));
    }
    Ok(with_capacity(out, report, &def, units, true))
}

pub(super) async fn delete_item(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(req.str("TableName")?)?;
    let key = check_key(&def, &req.item("Key")?)?;
    let returns = return_values(req, &["NONE", "ALL_OLD"])?;
    let report = Report::from_req(req)?;
    let maps = ExprMaps::from_req(req)?;
    let exprs = maps.exprs();
    let guard = Guard::from_req(req, &exprs)?;
    exprs.finish()?;
    let written = write_one(
        tables,
        ItemWrite {
            table: Arc::clone(&def),
            key,
            decide: Box::new(move |old| {
                guard.check(old)?;
                Ok(if old.is_some() {
                    WriteAction::Delete
                } else {
                    WriteAction::Keep
                })
            }),
        },
    )
    .await?;
    let mut out = json!({});
    if returns == "ALL_OLD"
        && let Some(old) = &written.old
    {
        out["Attributes"] = item_to_json(old);
    }
    let units = capacity::write_units(written.old.as_ref().map_or(0, item_size));
    Ok(with_capacity(out, report, &def, units, false))
}

pub(super) async fn update_item(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(req.str("TableName")?)?;
    let key_item = req.item("Key")?;
    let key = check_key(&def, &key_item)?;
    let returns = return_values(
        req,
        &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
    )?
    .to_owned();
    let report = Report::from_req(req)?;
    let maps = ExprMaps::from_req(req)?;
    let exprs = maps.exprs();
    let guard = Guard::from_req(req, &exprs)?;
    let update = exprs.update(req)?;
    exprs.finish()?;
    if let Some(update) = &update {
        for attr in update.top_level_attributes() {
            if def.key.attrs().any(|k| k.name == attr) {
                return Err(ApiError::invalid_parameter(format!(
                    "Cannot update attribute {attr}. This attribute is part of the key"
                )));
            }
        }
    }
    let check_def = Arc::clone(&def);
    let decide_update = update.clone();
    let written = write_one(
        tables,
        ItemWrite {
            table: Arc::clone(&def),
            key,
            decide: Box::new(move |old| {
                guard.check(old)?;
                if old.is_none() && decide_update.as_ref().is_some_and(Update::only_removes) {
                    return Ok(WriteAction::Keep);
                }
                let mut item = old.cloned().unwrap_or_else(|| key_item.clone());
                if let Some(update) = &decide_update {
                    update.apply(&mut item)?;
                }
                if item_size(&item) > MAX_ITEM_BYTES {
                    return Err(ApiError::validation(
                        "Item size to update has exceeded the maximum allowed size",
                    ));
                }
                check_index_keys(&check_def, &item)?;
                Ok(WriteAction::Put(item))
            }),
        },
    )
    .await?;
    let mut out = json!({});
    let pick = |item: &Option<Item>| -> Option<Item> {
        Some(update.as_ref()?.updated_part(item.as_ref()?))
    };
    let attributes = match returns.as_str() {
        "ALL_OLD" => written.old.clone(),
        "ALL_NEW" => written.new.clone(),
        "UPDATED_OLD" => pick(&written.old),
        "UPDATED_NEW" => pick(&written.new),
        _ => None,
    };
    if let Some(attributes) = attributes.filter(|a| !a.is_empty()) {
        out["Attributes"] = item_to_json(&attributes);
    }
    let size = written
        .new
        .as_ref()
        .map_or(0, item_size)
        .max(written.old.as_ref().map_or(0, item_size));
    Ok(with_capacity(
        out,
        report,
        &def,
        capacity::write_units(size),
        false,
    ))
}
