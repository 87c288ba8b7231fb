//! Reading request members with DynamoDB's errors: a member of the wrong JSON type is a
//! `SerializationException`, a missing or out-of-range one a `ValidationException` in the
//! "1 validation error detected" form.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::{
    error::{ApiError, ErrorKind},
    value::{AttributeValue, Item, item_from_json},
};

/// The members of a request body.
pub(crate) struct Req<'a> {
    body: &'a Map<String, Json>,
}

/// The constraint text DynamoDB uses for a missing member.
fn null_member(member: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
    ))
}

/// lowerCamelCase of a member name, as DynamoDB names members in validation messages.
fn camel(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn wrong_type(key: &str, expected: &str, found: &Json) -> ApiError {
    let kind = match found {
        Json::Null => "NULL_VALUE",
        Json::Bool(_) => "BOOLEAN_VALUE",
        Json::Number(_) => "NUMBER_VALUE",
        Json::String(_) => "STRING_VALUE",
        Json::Array(_) => "START_ARRAY",
        Json::Object(_) => "START_OBJECT",
    };
    ApiError::new(
        ErrorKind::Serialization,
        format!("{kind} can not be converted to {expected} (member {key})"),
    )
}

impl<'a> Req<'a> {
    /// Parses a request body; it must be a JSON object.
    pub(crate) fn parse(body: &'a Json) -> Result<Req<'a>, ApiError> {
        match body {
            Json::Object(body) => Ok(Req { body }),
            _ => Err(ApiError::new(
                ErrorKind::Serialization,
                "Start of structure or map found where not expected",
            )),
        }
    }

    /// The raw member.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Json> {
        self.body.get(key).filter(|v| !v.is_null())
    }

    /// An optional string member.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(key, "String", other)),
        }
    }

    /// A required string member.
    pub(crate) fn str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.opt_str(key)?.ok_or_else(|| null_member(&camel(key)))
    }

    /// An optional boolean member.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "Boolean", other)),
        }
    }

    /// An optional integer member of at least `min` (the member's documented minimum,
    /// named in the error for a smaller or negative value).
    pub(crate) fn opt_u64(&self, key: &str, min: u64) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Number(n)) => match n.as_u64() {
                Some(v) if v >= min => Ok(Some(v)),
                _ => Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value greater than or equal to {min}",
                    camel(key)
                ))),
            },
            Some(other) => Err(wrong_type(key, "Long", other)),
        }
    }

    /// An optional array member.
    pub(crate) fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Json>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Array(a)) => Ok(Some(a)),
            Some(other) => Err(wrong_type(key, "List", other)),
        }
    }

    /// An optional object member.
    pub(crate) fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Json>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Object(o)) => Ok(Some(o)),
            Some(other) => Err(wrong_type(key, "Map", other)),
        }
    }

    /// An optional nested structure.
    pub(crate) fn opt_struct(&self, key: &str) -> Result<Option<Req<'a>>, ApiError> {
        Ok(self.opt_object(key)?.map(|body| Req { body }))
    }

    /// An optional item (map of attribute values).
    pub(crate) fn opt_item(&self, key: &str) -> Result<Option<Item>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(json) => Ok(Some(item_from_json(json)?)),
        }
    }

    /// A required item.
    pub(crate) fn item(&self, key: &str) -> Result<Item, ApiError> {
        self.opt_item(key)?.ok_or_else(|| null_member(&camel(key)))
    }

    /// `ExpressionAttributeNames`.
    pub(crate) fn names(&self) -> Result<Option<HashMap<String, String>>, ApiError> {
        let Some(map) = self.opt_object("ExpressionAttributeNames")? else {
            return Ok(None);
        };
        map.iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k.clone(), s.clone())),
                other => Err(wrong_type("ExpressionAttributeNames", "String", other)),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// `ExpressionAttributeValues`.
    pub(crate) fn values(&self) -> Result<Option<HashMap<String, AttributeValue>>, ApiError> {
        let Some(map) = self.opt_object("ExpressionAttributeValues")? else {
            return Ok(None);
        };
        map.iter()
            .map(|(k, v)| {
                AttributeValue::from_json(v)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| match e {
                        crate::value::ValueError::Validation(m) => ApiError::validation(format!(
                            "ExpressionAttributeValues contains invalid value: {m} for key {k}"
                        )),
                        other => other.into(),
                    })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// An enum-valued string member, checked against its allowed values.
    pub(crate) fn opt_enum(
        &self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Option<&'a str>, ApiError> {
        match self.opt_str(key)? {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v)),
            Some(v) => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                camel(key),
                allowed.join(", ")
            ))),
        }
    }
}

/// The table name in `name`: `name` itself, or the name part of a table ARN
/// (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`), which DynamoDB takes wherever it takes
/// a table name.
pub(crate) fn table_name_of(name: &str) -> &str {
    let mut parts = name.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("dynamodb"), Some(_), Some(_), Some(resource)) => resource
            .strip_prefix("table/")
            .filter(|table| !table.contains('/'))
            .unwrap_or(name),
        _ => name,
    }
}

/// Checks a table or index name as DynamoDB's request validation does.
pub(crate) fn check_name(member: &str, name: &str) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if name.len() < 3 {
        problems.push("Member must have length greater than or equal to 3");
    }
    if name.len() > 255 {
        problems.push("Member must have length less than or equal to 255");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        problems.push("Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
    }
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    let details: Vec<String> = problems
        .iter()
        .map(|p| format!("Value '{name}' at '{member}' failed to satisfy constraint: {p}"))
        .collect();
    Err(ApiError::validation(format!(
        "{n} validation error{} detected: {}",
        if n == 1 { "" } else { "s" },
        details.join("; ")
    )))
}
