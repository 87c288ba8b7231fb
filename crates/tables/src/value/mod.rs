//! DynamoDB's attribute values and items, their JSON wire form, validation and size.

mod number;

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde_json::{Map, Value as Json};

pub use number::{Number, NumberError};

/// An item: attribute names to values.
pub type Item = BTreeMap<String, AttributeValue>;

/// Deepest nesting of lists and maps DynamoDB accepts.
pub const MAX_DEPTH: usize = 32;

/// One of DynamoDB's ten attribute types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// String.
    S(String),
    /// Number.
    N(Number),
    /// Binary.
    B(Vec<u8>),
    /// Boolean.
    Bool(bool),
    /// Null.
    Null,
    /// Map.
    M(BTreeMap<String, AttributeValue>),
    /// List.
    L(Vec<AttributeValue>),
    /// String set: non-empty, no duplicates, kept sorted.
    Ss(Vec<String>),
    /// Number set: non-empty, no duplicates, kept sorted.
    Ns(Vec<Number>),
    /// Binary set: non-empty, no duplicates, kept sorted.
    Bs(Vec<Vec<u8>>),
}

/// Why a JSON value is not an attribute value, split as DynamoDB splits it: a
/// `SerializationException` for JSON of the wrong shape, a `ValidationException` for a
/// well-formed but invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The JSON does not have the shape of an attribute value.
    #[error("{0}")]
    Serialization(String),
    /// The attribute value is not valid.
    #[error("{0}")]
    Validation(String),
}

fn invalid(message: impl Into<String>) -> ValueError {
    ValueError::Validation(format!(
        "One or more parameter values were invalid: {}",
        message.into()
    ))
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "NULL_VALUE",
        Json::Bool(_) => "BOOLEAN_VALUE",
        Json::Number(_) => "NUMBER_VALUE",
        Json::String(_) => "STRING_VALUE",
        Json::Array(_) => "START_ARRAY",
        Json::Object(_) => "START_OBJECT",
    }
}

fn expect_str<'a>(value: &'a Json, target: &str) -> Result<&'a str, ValueError> {
    value.as_str().ok_or_else(|| {
        ValueError::Serialization(format!(
            "{} cannot be converted to {target}",
            json_kind(value)
        ))
    })
}

fn expect_array(value: &Json) -> Result<&Vec<Json>, ValueError> {
    value.as_array().ok_or_else(|| {
        ValueError::Serialization(format!(
            "Unexpected {} where a list was expected",
            json_kind(value)
        ))
    })
}

fn number(s: &str) -> Result<Number, ValueError> {
    s.parse::<Number>()
        .map_err(|e| ValueError::Validation(e.to_string()))
}

fn binary(s: &str) -> Result<Vec<u8>, ValueError> {
    BASE64
        .decode(s)
        .map_err(|_| ValueError::Serialization("Base64 encoded value expected".to_owned()))
}

/// Sorts a set and rejects duplicates as DynamoDB does.
fn into_set<T: Ord + Clone>(
    mut items: Vec<T>,
    show: impl Fn(&T) -> String,
) -> Result<Vec<T>, ValueError> {
    let shown: Vec<String> = items.iter().map(&show).collect();
    items.sort();
    if items.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid(format!(
            "Input collection [{}] contains duplicates.",
            shown.join(", ")
        )));
    }
    Ok(items)
}

impl AttributeValue {
    /// DynamoDB's name of the value's type (`S`, `N`, `SS`, `BOOL`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            AttributeValue::S(_) => "S",
            AttributeValue::N(_) => "N",
            AttributeValue::B(_) => "B",
            AttributeValue::Bool(_) => "BOOL",
            AttributeValue::Null => "NULL",
            AttributeValue::M(_) => "M",
            AttributeValue::L(_) => "L",
            AttributeValue::Ss(_) => "SS",
            AttributeValue::Ns(_) => "NS",
            AttributeValue::Bs(_) => "BS",
        }
    }

    /// Reads DynamoDB's JSON form, such as `{"S": "text"}` or `{"M": {...}}`.
    ///
    /// # Errors
    /// A [`ValueError`] with DynamoDB's message.
    pub fn from_json(json: &Json) -> Result<AttributeValue, ValueError> {
        Self::from_json_at(json, 0)
    }

    fn from_json_at(json: &Json, depth: usize) -> Result<AttributeValue, ValueError> {
        if depth > MAX_DEPTH {
            return Err(invalid("Nesting Levels have exceeded supported limits"));
        }
        let Json::Object(fields) = json else {
            return Err(ValueError::Serialization(format!(
                "Unexpected value type in payload: {} where an AttributeValue structure was expected",
                json_kind(json)
            )));
        };
        // Members DynamoDB does not know are ignored, as its deserializer ignores them.
        let mut present = fields.iter().filter(|(k, v)| {
            matches!(
                k.as_str(),
                "S" | "N" | "B" | "BOOL" | "NULL" | "M" | "L" | "SS" | "NS" | "BS"
            ) && !v.is_null()
        });
        let Some((kind, value)) = present.next() else {
            return Err(ValueError::Validation(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
                    .to_owned(),
            ));
        };
        if present.next().is_some() {
            return Err(ValueError::Validation(
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"
                    .to_owned(),
            ));
        }
        Ok(match kind.as_str() {
            "S" => AttributeValue::S(expect_str(value, "String")?.to_owned()),
            "N" => AttributeValue::N(number(expect_str(value, "Number")?)?),
            "B" => AttributeValue::B(binary(expect_str(value, "Blob")?)?),
            "BOOL" => AttributeValue::Bool(value.as_bool().ok_or_else(|| {
                ValueError::Serialization(format!(
                    "{} cannot be converted to Boolean",
                    json_kind(value)
                ))
            })?),
            "NULL" => match value.as_bool() {
                Some(true) => AttributeValue::Null,
                Some(false) => {
                    return Err(invalid(
                        "Null attribute value types must have the value of true",
                    ));
                }
                None => {
                    return Err(ValueError::Serialization(format!(
                        "{} cannot be converted to Boolean",
                        json_kind(value)
                    )));
                }
            },
            "M" => {
                let Json::Object(entries) = value else {
                    return Err(ValueError::Serialization(format!(
                        "Unexpected {} where a map was expected",
                        json_kind(value)
                    )));
                };
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    map.insert(k.clone(), Self::from_json_at(v, depth + 1)?);
                }
                AttributeValue::M(map)
            }
            "L" => AttributeValue::L(
                expect_array(value)?
                    .iter()
                    .map(|v| Self::from_json_at(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            "SS" => {
                let items: Vec<String> = expect_array(value)?
                    .iter()
                    .map(|v| expect_str(v, "String").map(str::to_owned))
                    .collect::<Result<_, _>>()?;
                if items.is_empty() {
                    return Err(invalid("An string set  may not be empty"));
                }
                AttributeValue::Ss(into_set(items, Clone::clone)?)
            }
            "NS" => {
                let raw: Vec<&str> = expect_array(value)?
                    .iter()
                    .map(|v| expect_str(v, "String"))
                    .collect::<Result<_, _>>()?;
                if raw.is_empty() {
                    return Err(invalid("An number set  may not be empty"));
                }
                let items: Vec<Number> = raw.iter().map(|s| number(s)).collect::<Result<_, _>>()?;
                AttributeValue::Ns(into_set(items, ToString::to_string)?)
            }
            _ => {
                let items: Vec<Vec<u8>> = expect_array(value)?
                    .iter()
                    .map(|v| expect_str(v, "Blob").and_then(binary))
                    .collect::<Result<_, _>>()?;
                if items.is_empty() {
                    return Err(invalid("Binary sets should not be empty"));
                }
                AttributeValue::Bs(into_set(items, |b| BASE64.encode(b))?)
            }
        })
    }

    /// DynamoDB's JSON form.
    pub fn to_json(&self) -> Json {
        let (kind, value) = match self {
            AttributeValue::S(s) => ("S", Json::String(s.clone())),
            AttributeValue::N(n) => ("N", Json::String(n.to_string())),
            AttributeValue::B(b) => ("B", Json::String(BASE64.encode(b))),
            AttributeValue::Bool(b) => ("BOOL", Json::Bool(*b)),
            AttributeValue::Null => ("NULL", Json::Bool(true)),
            AttributeValue::M(m) => (
                "M",
                Json::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            ),
            AttributeValue::L(l) => ("L", Json::Array(l.iter().map(Self::to_json).collect())),
            AttributeValue::Ss(s) => ("SS", s.iter().cloned().map(Json::String).collect()),
            AttributeValue::Ns(s) => (
                "NS",
                s.iter().map(|n| Json::String(n.to_string())).collect(),
            ),
            AttributeValue::Bs(s) => (
                "BS",
                s.iter().map(|b| Json::String(BASE64.encode(b))).collect(),
            ),
        };
        let mut object = Map::with_capacity(1);
        object.insert(kind.to_owned(), value);
        Json::Object(object)
    }

    /// How deep lists and maps nest inside the value: 0 for a scalar or an empty list or
    /// map, 1 for a list or map of scalars.
    pub fn depth(&self) -> usize {
        match self {
            AttributeValue::M(m) => m.values().map(|v| 1 + v.depth()).max().unwrap_or(0),
            AttributeValue::L(l) => l.iter().map(|v| 1 + v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// The value's size as DynamoDB counts it toward the 400 KB item limit.
    pub fn size(&self) -> usize {
        match self {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => number_size(n),
            AttributeValue::B(b) => b.len(),
            AttributeValue::Bool(_) | AttributeValue::Null => 1,
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| k.len() + v.size() + 1).sum::<usize>()
            }
            AttributeValue::L(l) => 3 + l.iter().map(|v| v.size() + 1).sum::<usize>(),
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            AttributeValue::Ns(s) => s.iter().map(number_size).sum(),
            AttributeValue::Bs(s) => s.iter().map(Vec::len).sum(),
        }
    }
}

/// Numbers take about one byte per two significant digits, plus one (DynamoDB's rule).
fn number_size(n: &Number) -> usize {
    let (digits, _) = n.digits_and_exponent();
    digits.len().div_ceil(2) + 1
}

/// An item's size: attribute names plus values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.size()).sum()
}

/// Reads an item (`{"name": {"S": "..."}, ...}`).
///
/// # Errors
/// A [`ValueError`] for the first bad attribute.
pub fn item_from_json(json: &Json) -> Result<Item, ValueError> {
    let Json::Object(fields) = json else {
        return Err(ValueError::Serialization(format!(
            "Unexpected {} where a map of attribute values was expected",
            json_kind(json)
        )));
    };
    fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), AttributeValue::from_json(v)?)))
        .collect()
}

/// Writes an item in DynamoDB's JSON form.
pub fn item_to_json(item: &Item) -> Json {
    Json::Object(item.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_every_type() {
        let j = json!({
            "s": {"S": "x"}, "n": {"N": "1.50"}, "b": {"B": "AAE="}, "t": {"BOOL": true},
            "z": {"NULL": true}, "m": {"M": {"a": {"L": [{"N": "1"}]}}},
            "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["10", "2"]}, "bs": {"BS": ["AQ=="]}
        });
        let item = item_from_json(&j).unwrap();
        let back = item_to_json(&item);
        assert_eq!(back["n"], json!({"N": "1.5"}));
        assert_eq!(back["ss"], json!({"SS": ["a", "b"]}));
        assert_eq!(back["ns"], json!({"NS": ["2", "10"]}));
        assert_eq!(item_from_json(&back).unwrap(), item);
    }

    #[test]
    fn rejects_what_dynamodb_rejects() {
        let err = |j: Json| AttributeValue::from_json(&j).unwrap_err();
        assert!(matches!(err(json!({})), ValueError::Validation(m) if m.contains("is empty")));
        assert!(
            matches!(err(json!({"S": "a", "N": "1"})), ValueError::Validation(m) if m.contains("more than one"))
        );
        assert!(matches!(err(json!({"S": 1})), ValueError::Serialization(_)));
        assert!(matches!(
            err(json!({"NULL": false})),
            ValueError::Validation(_)
        ));
        assert!(
            matches!(err(json!({"SS": []})), ValueError::Validation(m) if m.contains("may not be empty"))
        );
        assert!(
            matches!(err(json!({"SS": ["a", "a"]})), ValueError::Validation(m) if m.contains("contains duplicates"))
        );
        assert!(
            matches!(err(json!({"NS": ["1", "1.0"]})), ValueError::Validation(m) if m.contains("contains duplicates"))
        );
        assert!(
            matches!(err(json!({"N": "x"})), ValueError::Validation(m) if m.contains("cannot be converted into a number"))
        );
        assert!(matches!(err(json!("x")), ValueError::Serialization(_)));
        let mut deep = json!({"S": "x"});
        for _ in 0..40 {
            deep = json!({"L": [deep]});
        }
        assert!(matches!(err(deep), ValueError::Validation(m) if m.contains("Nesting")));
    }

    #[test]
    fn sizes_follow_dynamodb() {
        let item = item_from_json(&json!({"ab": {"S": "xyz"}, "n": {"N": "12345"}})).unwrap();
        assert_eq!(item_size(&item), 2 + 3 + 1 + 4);
    }
}
