//! The bridge between requests and [`crate::expr`]: reads a request's expressions and
//! placeholder maps, translates the legacy parameters (`Expected`, `AttributeUpdates`,
//! `AttributesToGet`, `KeyConditions`, `QueryFilter`, `ScanFilter`,
//! `ConditionalOperator`) into the same expressions, and reports unused placeholders once
//! every expression of the request is read.

use std::{cell::RefCell, collections::HashMap, sync::Arc};

use serde_json::{Map, Value as Json};

use super::request::Req;
use crate::{
    error::ApiError,
    expr::{self, ExprError, Placeholders},
    value::{AttributeValue, Item},
};

pub(crate) use crate::expr::SortKeyCondition;

fn validation(e: ExprError) -> ApiError {
    ApiError::validation(e.message)
}

/// A parsed condition (ConditionExpression, FilterExpression, or their legacy forms).
pub(crate) struct Condition(expr::Condition);

impl Condition {
    /// Evaluates the condition on an item; an absent item is an item without attributes.
    pub(crate) fn eval(&self, item: Option<&Item>) -> bool {
        static EMPTY: std::sync::OnceLock<Item> = std::sync::OnceLock::new();
        self.0
            .eval(item.unwrap_or_else(|| EMPTY.get_or_init(Item::new)))
    }

    /// The top-level attributes the condition reads.
    pub(crate) fn top_level_attributes(&self) -> impl Iterator<Item = &str> {
        self.0.top_level_attributes()
    }
}

/// A parsed update (UpdateExpression or AttributeUpdates).
#[derive(Clone)]
pub(crate) struct Update(Arc<expr::Update>);

impl Update {
    /// Applies the update to an item.
    pub(crate) fn apply(&self, item: &mut Item) -> Result<(), ApiError> {
        self.0.apply(item).map_err(validation)
    }

    /// The attributes (down to the nested paths) the update writes or removes, as
    /// `ReturnValues = UPDATED_OLD / UPDATED_NEW` returns them.
    pub(crate) fn updated_part(&self, item: &Item) -> Item {
        expr::Projection {
            paths: self.0.target_paths().cloned().collect(),
        }
        .apply(item)
    }

    /// The top-level attributes the update writes or removes.
    pub(crate) fn top_level_attributes(&self) -> impl Iterator<Item = &str> {
        self.0.top_level_attributes()
    }

    /// Whether the update only takes attributes away (REMOVE, DELETE): on an item that
    /// does not exist it does nothing, and creates no item.
    pub(crate) fn only_removes(&self) -> bool {
        self.0.set.is_empty() && self.0.add.is_empty()
    }
}

/// A parsed projection (ProjectionExpression or AttributesToGet).
pub(crate) struct Projection(expr::Projection);

impl Projection {
    /// The item as projected, or whole when there is no projection.
    pub(crate) fn apply_opt(projection: Option<&Projection>, item: Item) -> Item {
        match projection {
            Some(p) => p.0.apply(&item),
            None => item,
        }
    }
}

/// A key condition resolved to attribute names and values.
pub(crate) type KeyCondition = expr::KeyCondition;

/// The placeholder maps of a request, with the legacy parameters' translations.
pub(crate) struct ExprMaps {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    has_names: bool,
    has_values: bool,
    legacy: HashMap<&'static str, String>,
}

/// Names and values the legacy translations add; they can never clash with a client's,
/// which start with `#` and `:`.
struct Synth<'m> {
    names: &'m mut HashMap<String, String>,
    values: &'m mut HashMap<String, AttributeValue>,
    n: usize,
}

impl Synth<'_> {
    fn name(&mut self, attr: &str) -> String {
        self.n += 1;
        let key = format!("#nimbus_legacy_{}", self.n);
        self.names.insert(key.clone(), attr.to_owned());
        key
    }

    fn value(&mut self, v: AttributeValue) -> String {
        self.n += 1;
        let key = format!(":nimbus_legacy_{}", self.n);
        self.values.insert(key.clone(), v);
        key
    }
}

/// `{"attr": {"ComparisonOperator": ..., "AttributeValueList": [...]}}` (KeyConditions,
/// QueryFilter, ScanFilter, and Expected with ComparisonOperator) or `Expected`'s
/// `Value`/`Exists` form, as an expression.
fn legacy_conditions(
    conditions: &Map<String, Json>,
    operator: &str,
    synth: &mut Synth<'_>,
    param: &str,
) -> Result<String, ApiError> {
    let mut parts = Vec::new();
    for (attr, spec) in conditions {
        let spec = Req::parse(spec)?;
        let path = synth.name(attr);
        let list: Vec<AttributeValue> = match spec.opt_array("AttributeValueList")? {
            Some(values) => values
                .iter()
                .map(AttributeValue::from_json)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let comparison = spec.opt_str("ComparisonOperator")?;
        // Expected's two forms do not mix (the API reference: "if you use both sets of
        // parameters at once, DynamoDB will return a ValidationException").
        if (comparison.is_some() || spec.get("AttributeValueList").is_some())
            && (spec.get("Value").is_some() || spec.get("Exists").is_some())
        {
            return Err(ApiError::validation(format!(
                "One or more parameter values were invalid: Value and Exists cannot be used with AttributeValueList and ComparisonOperator for Attribute: {attr}"
            )));
        }
        let part = match comparison {
            Some(op) => {
                let arity = |n: usize| -> Result<(), ApiError> {
                    if list.len() == n {
                        Ok(())
                    } else {
                        Err(ApiError::validation(format!(
                            "One or more parameter values were invalid: Invalid number of argument(s) for the {op} ComparisonOperator"
                        )))
                    }
                };
                let one = |synth: &mut Synth<'_>| -> Result<String, ApiError> {
                    arity(1)?;
                    Ok(synth.value(list[0].clone()))
                };
                match op {
                    "EQ" => format!("{path} = {}", one(synth)?),
                    "NE" => format!("{path} <> {}", one(synth)?),
                    "LE" => format!("{path} <= {}", one(synth)?),
                    "LT" => format!("{path} < {}", one(synth)?),
                    "GE" => format!("{path} >= {}", one(synth)?),
                    "GT" => format!("{path} > {}", one(synth)?),
                    "BEGINS_WITH" => format!("begins_with({path}, {})", one(synth)?),
                    "CONTAINS" => format!("contains({path}, {})", one(synth)?),
                    "NOT_CONTAINS" => format!("NOT contains({path}, {})", one(synth)?),
                    "NOT_NULL" => {
                        arity(0)?;
                        format!("attribute_exists({path})")
                    }
                    "NULL" => {
                        arity(0)?;
                        format!("attribute_not_exists({path})")
                    }
                    "BETWEEN" => {
                        arity(2)?;
                        let lo = synth.value(list[0].clone());
                        let hi = synth.value(list[1].clone());
                        format!("{path} BETWEEN {lo} AND {hi}")
                    }
                    "IN" => {
                        if list.is_empty() {
                            arity(1)?;
                        }
                        let vs: Vec<String> = list.iter().map(|v| synth.value(v.clone())).collect();
                        format!("{path} IN ({})", vs.join(", "))
                    }
                    other => {
                        return Err(ApiError::validation(format!(
                            "1 validation error detected: Value '{other}' at '{param}.{attr}.member.comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
                        )));
                    }
                }
            }
            None => {
                // Expected's older form: Value and/or Exists.
                let value = spec
                    .get("Value")
                    .map(AttributeValue::from_json)
                    .transpose()?;
                match (spec.opt_bool("Exists")?, value) {
                    (Some(false), None) => format!("attribute_not_exists({path})"),
                    (Some(false), Some(_)) => {
                        return Err(ApiError::validation(
                            "One or more parameter values were invalid: Value cannot be used when Exists is false",
                        ));
                    }
                    (_, Some(v)) => format!("{path} = {}", synth.value(v)),
                    (_, None) => {
                        return Err(ApiError::validation(
                            "One or more parameter values were invalid: Value must be provided when Exists is true",
                        ));
                    }
                }
            }
        };
        parts.push(format!("({part})"));
    }
    Ok(parts.join(if operator == "OR" { " OR " } else { " AND " }))
}

fn legacy_updates(updates: &Map<String, Json>, synth: &mut Synth<'_>) -> Result<String, ApiError> {
    let (mut set, mut remove, mut add, mut delete) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (attr, spec) in updates {
        let spec = Req::parse(spec)?;
        let path = synth.name(attr);
        let value = spec
            .get("Value")
            .map(AttributeValue::from_json)
            .transpose()?;
        match (spec.opt_str("Action")?.unwrap_or("PUT"), value) {
            ("PUT", Some(v)) => set.push(format!("{path} = {}", synth.value(v))),
            // Legacy ADD appends to a list (or makes one), which the expression ADD
            // does not do.
            ("ADD", Some(v @ AttributeValue::L(_))) => {
                let empty = synth.value(AttributeValue::L(Vec::new()));
                let v = synth.value(v);
                set.push(format!(
                    "{path} = list_append(if_not_exists({path}, {empty}), {v})"
                ));
            }
            ("ADD", Some(v)) => add.push(format!("{path} {}", synth.value(v))),
            ("DELETE", Some(v)) => delete.push(format!("{path} {}", synth.value(v))),
            ("DELETE", None) => remove.push(path),
            (action @ ("PUT" | "ADD"), None) => {
                return Err(ApiError::validation(format!(
                    "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified, action: {action}"
                )));
            }
            (other, _) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'attributeUpdates.{attr}.member.action' failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"
                )));
            }
        }
    }
    let mut clauses = Vec::new();
    for (keyword, parts) in [
        ("SET", set),
        ("REMOVE", remove),
        ("ADD", add),
        ("DELETE", delete),
    ] {
        if !parts.is_empty() {
            clauses.push(format!("{keyword} {}", parts.join(", ")));
        }
    }
    Ok(clauses.join(" "))
}

/// Which legacy parameter stands for which expression parameter.
const PAIRS: [(&str, &str); 6] = [
    ("Expected", "ConditionExpression"),
    ("AttributeUpdates", "UpdateExpression"),
    ("AttributesToGet", "ProjectionExpression"),
    ("KeyConditions", "KeyConditionExpression"),
    ("QueryFilter", "FilterExpression"),
    ("ScanFilter", "FilterExpression"),
];

impl ExprMaps {
    /// Reads the placeholder maps and translates legacy parameters.
    pub(crate) fn from_req(req: &Req<'_>) -> Result<ExprMaps, ApiError> {
        let names = req.names()?;
        let values = req.values()?;
        if names.as_ref().is_some_and(HashMap::is_empty) {
            return Err(ApiError::validation(
                "ExpressionAttributeNames must not be empty",
            ));
        }
        if values.as_ref().is_some_and(HashMap::is_empty) {
            return Err(ApiError::validation(
                "ExpressionAttributeValues must not be empty",
            ));
        }
        // A Query's legacy KeyConditions may go with the expression parameters (DynamoDB
        // takes KeyConditions with a ProjectionExpression or FilterExpression); the other
        // legacy parameters may not.
        let legacy_used: Vec<&str> = PAIRS
            .iter()
            .map(|(l, _)| *l)
            .filter(|l| *l != "KeyConditions" && req.get(l).is_some())
            .collect();
        let expression_used: Vec<&str> = [
            "ConditionExpression",
            "UpdateExpression",
            "ProjectionExpression",
            "KeyConditionExpression",
            "FilterExpression",
        ]
        .into_iter()
        .filter(|e| req.get(e).is_some())
        .collect();
        if !legacy_used.is_empty() && !expression_used.is_empty() {
            return Err(ApiError::validation(format!(
                "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {{{}}} Expression parameters: {{{}}}",
                legacy_used.join(", "),
                expression_used.join(", ")
            )));
        }
        let key_conditions = req.get("KeyConditions").is_some();
        if key_conditions && req.get("KeyConditionExpression").is_some() {
            return Err(ApiError::validation(
                "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {KeyConditions} Expression parameters: {KeyConditionExpression}",
            ));
        }
        if expression_used.is_empty() {
            if names.is_some() {
                return Err(ApiError::validation(
                    "ExpressionAttributeNames can only be specified when using expressions",
                ));
            }
            if values.is_some() {
                return Err(ApiError::validation(
                    "ExpressionAttributeValues can only be specified when using expressions",
                ));
            }
        }
        let mut maps = ExprMaps {
            has_names: names.is_some(),
            has_values: values.is_some(),
            names: names.unwrap_or_default(),
            values: values.unwrap_or_default(),
            legacy: HashMap::new(),
        };
        if legacy_used.is_empty() && !key_conditions {
            return Ok(maps);
        }
        let operator = req
            .opt_enum("ConditionalOperator", &["AND", "OR"])?
            .unwrap_or("AND");
        let mut synth = Synth {
            names: &mut maps.names,
            values: &mut maps.values,
            n: 0,
        };
        let mut legacy = HashMap::new();
        for (param, target) in PAIRS {
            let text = match param {
                "AttributeUpdates" => match req.opt_object(param)? {
                    Some(updates) if !updates.is_empty() => legacy_updates(updates, &mut synth)?,
                    _ => continue,
                },
                "AttributesToGet" => match req.opt_array(param)? {
                    Some(attrs) => {
                        let mut paths = Vec::new();
                        for attr in attrs {
                            let attr = attr.as_str().ok_or_else(|| {
                                ApiError::validation("AttributesToGet must be strings")
                            })?;
                            paths.push(synth.name(attr));
                        }
                        paths.join(", ")
                    }
                    None => continue,
                },
                _ => match req.opt_object(param)? {
                    Some(conditions) if !conditions.is_empty() => {
                        legacy_conditions(conditions, operator, &mut synth, param)?
                    }
                    _ => continue,
                },
            };
            legacy.insert(target, text);
        }
        maps.legacy = legacy;
        Ok(maps)
    }

    /// The reader of this request's expressions.
    pub(crate) fn exprs(&self) -> Exprs<'_> {
        Exprs {
            ph: RefCell::new(Placeholders::new(
                (self.has_names || !self.legacy.is_empty()).then_some(&self.names),
                (self.has_values || !self.legacy.is_empty()).then_some(&self.values),
            )),
            legacy: &self.legacy,
        }
    }
}

/// Reads a request's expressions, tracking which placeholders they use.
pub(crate) struct Exprs<'a> {
    ph: RefCell<Placeholders<'a>>,
    legacy: &'a HashMap<&'static str, String>,
}

impl<'a> Exprs<'a> {
    /// The expression `param` of the request, or the one written for it from legacy
    /// parameters; the placeholders are told which (see `Placeholders::from_legacy`).
    fn source<'r>(
        &'r self,
        req: &Req<'r>,
        param: &'static str,
    ) -> Result<Option<&'r str>, ApiError> {
        let (text, legacy) = match req.opt_str(param)? {
            Some(s) => (Some(s), false),
            None => (self.legacy.get(param).map(String::as_str), true),
        };
        self.ph.borrow_mut().from_legacy = legacy;
        Ok(text)
    }

    /// A condition parameter (`ConditionExpression` or `FilterExpression`).
    pub(crate) fn condition(
        &self,
        req: &Req<'_>,
        param: &'static str,
    ) -> Result<Option<Condition>, ApiError> {
        let Some(src) = self.source(req, param)? else {
            return Ok(None);
        };
        expr::parse_condition(src, param, &mut self.ph.borrow_mut())
            .map(|c| Some(Condition(c)))
            .map_err(validation)
    }

    /// `UpdateExpression`.
    pub(crate) fn update(&self, req: &Req<'_>) -> Result<Option<Update>, ApiError> {
        let Some(src) = self.source(req, "UpdateExpression")? else {
            return Ok(None);
        };
        expr::parse_update(src, &mut self.ph.borrow_mut())
            .map(|u| Some(Update(Arc::new(u))))
            .map_err(validation)
    }

    /// `ProjectionExpression`.
    pub(crate) fn projection(&self, req: &Req<'_>) -> Result<Option<Projection>, ApiError> {
        let Some(src) = self.source(req, "ProjectionExpression")? else {
            return Ok(None);
        };
        expr::parse_projection(src, &mut self.ph.borrow_mut())
            .map(|p| Some(Projection(p)))
            .map_err(validation)
    }

    /// `KeyConditionExpression` (required for Query), resolved against the key schema the
    /// query reads (`pk`, `sk`), which picks the partition condition and gives DynamoDB's
    /// messages for conditions on other attributes.
    pub(crate) fn key_condition(
        &self,
        req: &Req<'_>,
        pk: &str,
        sk: Option<&str>,
    ) -> Result<KeyCondition, ApiError> {
        let Some(src) = self.source(req, "KeyConditionExpression")? else {
            return Err(ApiError::validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
            ));
        };
        expr::parse_key_conditions(src, &mut self.ph.borrow_mut())
            .and_then(|conditions| conditions.resolve(pk, sk))
            .map_err(validation)
    }

    /// Reports placeholders no expression used.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        self.ph.into_inner().check_unused().map_err(validation)
    }
}
