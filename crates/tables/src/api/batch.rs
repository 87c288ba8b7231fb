//! BatchGetItem and BatchWriteItem.

use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use super::{
    Tables,
    capacity::{self, Report},
    exprs::{ExprMaps, Projection},
    internal,
    keys::{check_item, check_key},
    request::Req,
};
use crate::{
    engine::{ItemWrite, WriteAction, WriteFailure},
    error::ApiError,
    value::{item_from_json, item_size, item_to_json},
};

/// Most keys one BatchGetItem may ask for.
const MAX_BATCH_GET: usize = 100;
/// Most requests one BatchWriteItem may carry.
const MAX_BATCH_WRITE: usize = 25;

fn request_items<'a>(req: &Req<'a>) -> Result<&'a Map<String, Json>, ApiError> {
    req.opt_object("RequestItems")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null")
    })
}

pub(super) async fn batch_get_item(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let requests = request_items(req)?;
    if requests.is_empty() {
        return Err(ApiError::validation(
            "1 validation error detected: Value '{}' at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    let report = Report::from_req(req)?;
    let mut plans = Vec::new();
    let mut total = 0;
    for (table_name, body) in requests {
        let table_req = Req::parse(body)?;
        let def = tables.table(table_name)?;
        let keys = table_req.opt_array("Keys")?.ok_or_else(|| {
            ApiError::validation("1 validation error detected: Value null at 'requestItems.member.keys' failed to satisfy constraint: Member must not be null")
        })?;
        if keys.is_empty() {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '[]' at 'requestItems.{table_name}.member.keys' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )));
        }
        total += keys.len();
        if total > MAX_BATCH_GET {
            return Err(ApiError::validation(
                "Too many items requested for the BatchGetItem call",
            ));
        }
        let mut encoded = Vec::with_capacity(keys.len());
        for key in keys {
            let key = check_key(&def, &item_from_json(key)?)?;
            if encoded.contains(&key) {
                return Err(ApiError::validation(
                    "Provided list of item keys contains duplicates",
                ));
            }
            encoded.push(key);
        }
        let maps = ExprMaps::from_req(&table_req)?;
        let exprs = maps.exprs();
        let projection = exprs.projection(&table_req)?;
        exprs.finish()?;
        let consistent = table_req.opt_bool("ConsistentRead")?.unwrap_or(false);
        plans.push((def, encoded, projection, consistent));
    }
    let mut responses = Map::new();
    let mut consumed = Vec::new();
    for (def, keys, projection, consistent) in plans {
        let keys = keys.into_iter().map(|k| (Arc::clone(&def), k)).collect();
        let found = tables.engine.get_many(keys).await.map_err(internal)?;
        let mut items = Vec::new();
        // Each key is read as a GetItem is: its item rounded up to 4 KB on its own, a
        // missing one still a read.
        let mut units = 0.0;
        for item in found {
            units += capacity::read_units(item.as_ref().map_or(0, item_size), consistent);
            if let Some(item) = item {
                items.push(item_to_json(&Projection::apply_opt(
                    projection.as_ref(),
                    item,
                )));
            }
        }
        if let Some(c) = capacity::consumed(report, &def, units, true, None) {
            consumed.push(c);
        }
        responses.insert(def.name.clone(), Json::Array(items));
    }
    let mut out = json!({ "Responses": responses, "UnprocessedKeys": {} });
    if report != Report::None {
        out["ConsumedCapacity"] = Json::Array(consumed);
    }
    Ok(out)
}

pub(super) async fn batch_write_item(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let requests = request_items(req)?;
    // Counted before any entry is read: checking an entry for duplicates compares it with
    // every one before it.
    let count: usize = requests
        .values()
        .filter_map(Json::as_array)
        .map(Vec::len)
        .sum();
    if count > MAX_BATCH_WRITE {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{{...}}' at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {MAX_BATCH_WRITE}, Member must have length greater than or equal to 1]"
        )));
    }
    let report = Report::from_req(req)?;
    let mut writes = Vec::new();
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    let mut tables_written: Vec<Arc<crate::schema::TableDef>> = Vec::new();
    // Which of `tables_written` each write is to.
    let mut table_of: Vec<usize> = Vec::new();
    for (table_name, body) in requests {
        let def = tables.table(table_name)?;
        let Json::Array(entries) = body else {
            return Err(ApiError::new(
                crate::error::ErrorKind::Serialization,
                "Unexpected value where a list of write requests was expected",
            ));
        };
        if entries.is_empty() {
            return Err(ApiError::validation(
                "1 validation error detected: Value '[]' at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 25, Member must have length greater than or equal to 1]",
            ));
        }
        for entry in entries {
            let entry = Req::parse(entry)?;
            let (key, action) = match (
                entry.opt_struct("PutRequest")?,
                entry.opt_struct("DeleteRequest")?,
            ) {
                (Some(put), None) => {
                    let item = put.item("Item")?;
                    let key = check_item(&def, &item)?;
                    (key, WriteAction::Put(item))
                }
                (None, Some(delete)) => {
                    (check_key(&def, &delete.item("Key")?)?, WriteAction::Delete)
                }
                _ => {
                    return Err(ApiError::validation(
                        "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                    ));
                }
            };
            if seen.iter().any(|(t, k)| t == table_name && *k == key) {
                return Err(ApiError::validation(
                    "Provided list of item keys contains duplicates",
                ));
            }
            seen.push((table_name.clone(), key.clone()));
            table_of.push(tables_written.len());
            writes.push(ItemWrite {
                table: Arc::clone(&def),
                key,
                decide: Box::new(move |old| {
                    Ok(match action {
                        WriteAction::Delete if old.is_none() => WriteAction::Keep,
                        other => other,
                    })
                }),
            });
        }
        tables_written.push(def);
    }
    if writes.is_empty() {
        return Err(ApiError::validation(
            "1 validation error detected: Value '{}' at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    let written = match tables.write(writes).await {
        Ok(written) => written,
        Err(WriteFailure::Rejected(mut reasons)) => {
            return Err(reasons
                .iter_mut()
                .find_map(Option::take)
                .unwrap_or_else(ApiError::internal));
        }
        Err(WriteFailure::Storage(e)) => return Err(internal(e)),
    };
    let mut out = json!({ "UnprocessedItems": {} });
    if report != Report::None {
        // Each write is charged on its own, by the larger of the item before and after
        // (a delete of a missing item is still one unit).
        let mut units = vec![0.0; tables_written.len()];
        for (w, table) in written.iter().zip(&table_of) {
            units[*table] += capacity::write_units(
                w.new
                    .as_ref()
                    .map_or(0, item_size)
                    .max(w.old.as_ref().map_or(0, item_size)),
            );
        }
        out["ConsumedCapacity"] = tables_written
            .iter()
            .zip(units)
            .filter_map(|(def, units)| capacity::consumed(report, def, units, false, None))
            .collect();
    }
    Ok(out)
}
