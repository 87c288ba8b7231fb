//! Checks of items and keys against a table's schema, with DynamoDB's messages.

use crate::{
    error::ApiError,
    schema::TableDef,
    value::{AttributeValue, Item, item_size},
};

/// Largest item (DynamoDB's 400 KB).
pub(crate) const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Largest partition key value.
const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// Largest sort key value.
const MAX_SORT_KEY_BYTES: usize = 1024;

fn key_bytes(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::B(b) => b.len(),
        other => other.size(),
    }
}

fn is_empty_key(v: &AttributeValue) -> bool {
    matches!(v, AttributeValue::S(s) if s.is_empty())
        || matches!(v, AttributeValue::B(b) if b.is_empty())
}

/// Checks the key attributes of a full item (PutItem, BatchWriteItem's PutRequest) and
/// the item's size and index keys; returns the encoded primary key.
pub(crate) fn check_item(def: &TableDef, item: &Item) -> Result<Vec<u8>, ApiError> {
    for (i, attr) in def.key.attrs().enumerate() {
        let Some(value) = item.get(&attr.name) else {
            return Err(ApiError::invalid_parameter(format!(
                "Missing the key {} in the item",
                attr.name
            )));
        };
        if !attr.ty.matches(value) {
            return Err(ApiError::invalid_parameter(format!(
                "Type mismatch for key {} expected: {} actual: {}",
                attr.name,
                attr.ty.as_str(),
                value.type_name()
            )));
        }
        check_key_value(&attr.name, value, i == 0)?;
    }
    if item_size(item) > MAX_ITEM_BYTES {
        return Err(ApiError::validation(
            "Item size has exceeded the maximum allowed size",
        ));
    }
    check_index_keys(def, item)?;
    Ok(def
        .encoded_key(item)
        .expect("the key attributes were just checked"))
}

fn check_key_value(name: &str, value: &AttributeValue, partition: bool) -> Result<(), ApiError> {
    if is_empty_key(value) {
        return Err(ApiError::validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty {} value. Key: {name}",
            if matches!(value, AttributeValue::S(_)) {
                "string"
            } else {
                "binary"
            }
        )));
    }
    let (limit, what) = if partition {
        (MAX_PARTITION_KEY_BYTES, "hashkey")
    } else {
        (MAX_SORT_KEY_BYTES, "rangekey")
    };
    if key_bytes(value) > limit {
        return Err(ApiError::invalid_parameter(format!(
            "Size of {what} has exceeded the maximum size limit of{limit} bytes"
        )));
    }
    Ok(())
}

/// Index key attributes present in an item must have the index's types and not be empty.
pub(crate) fn check_index_keys(def: &TableDef, item: &Item) -> Result<(), ApiError> {
    for index in def.global_indexes.iter().chain(&def.local_indexes) {
        for attr in index.key.attrs() {
            let Some(value) = item.get(&attr.name) else {
                continue;
            };
            if !attr.ty.matches(value) {
                return Err(ApiError::invalid_parameter(format!(
                    "Type mismatch for Index Key {} Expected: {} Actual: {} IndexName: {}",
                    attr.name,
                    attr.ty.as_str(),
                    value.type_name(),
                    index.name
                )));
            }
            if is_empty_key(value) {
                return Err(ApiError::invalid_parameter(format!(
                    "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty {} value. IndexName: {}, IndexKey: {}",
                    if matches!(value, AttributeValue::S(_)) {
                        "string"
                    } else {
                        "binary"
                    },
                    index.name,
                    attr.name
                )));
            }
        }
    }
    Ok(())
}

/// Checks a `Key` parameter: exactly the table's key attributes, with their types.
pub(crate) fn check_key(def: &TableDef, key: &Item) -> Result<Vec<u8>, ApiError> {
    let mismatch = || ApiError::validation("The provided key element does not match the schema");
    if key.len() != def.key.attrs().count() {
        return Err(mismatch());
    }
    for (i, attr) in def.key.attrs().enumerate() {
        let value = key.get(&attr.name).ok_or_else(mismatch)?;
        if !attr.ty.matches(value) {
            return Err(mismatch());
        }
        check_key_value(&attr.name, value, i == 0)?;
    }
    Ok(def
        .encoded_key(key)
        .expect("the key attributes were just checked"))
}
