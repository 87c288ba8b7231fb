//! Query and Scan.

use std::{ops::Bound, sync::Arc};

use serde_json::{Value as Json, json};

use super::{
    Tables,
    capacity::{self, Report},
    exprs::{ExprMaps, Exprs, Projection, SortKeyCondition},
    internal,
    request::Req,
};
use crate::{
    engine::RangeRead,
    error::ApiError,
    key,
    schema::{IndexDef, KeySchema, TableDef},
    value::{AttributeValue, Item, item_from_json, item_size, item_to_json},
};

/// DynamoDB's page size: a Query or Scan reads at most 1 MB before it stops.
const PAGE_BYTES: usize = 1024 * 1024;

/// The table or index a read goes through.
struct Source<'a> {
    def: &'a TableDef,
    index: Option<&'a IndexDef>,
    global: bool,
}

impl Source<'_> {
    fn key(&self) -> &KeySchema {
        self.index.map_or(&self.def.key, |i| &i.key)
    }

    /// The key attributes a LastEvaluatedKey carries: the index's, then the table's.
    fn position_attrs(&self) -> Vec<&str> {
        let mut attrs: Vec<&str> = self.key().attrs().map(|a| a.name.as_str()).collect();
        if self.index.is_some() {
            for a in self.def.key.attrs() {
                if !attrs.contains(&a.name.as_str()) {
                    attrs.push(&a.name);
                }
            }
        }
        attrs
    }

    /// The encoded position of an item (for ExclusiveStartKey).
    fn encode_position(&self, item: &Item) -> Option<Vec<u8>> {
        let mut out = key::encode(&self.key().key_of(item)?);
        if self.index.is_some() {
            for v in self.def.key.key_of(item)? {
                key::encode_into(&mut out, v);
            }
        }
        Some(out)
    }

    fn last_key(&self, item: &Item) -> Item {
        self.position_attrs()
            .into_iter()
            .filter_map(|name| item.get(name).map(|v| (name.to_owned(), v.clone())))
            .collect()
    }
}

fn source<'a>(def: &'a TableDef, req: &Req<'_>) -> Result<Source<'a>, ApiError> {
    match req.opt_str("IndexName")? {
        None => Ok(Source {
            def,
            index: None,
            global: false,
        }),
        Some(name) => {
            let (index, global) = def.index(name).ok_or_else(|| {
                ApiError::validation(format!(
                    "The table does not have the specified index: {name}"
                ))
            })?;
            if global && req.opt_bool("ConsistentRead")? == Some(true) {
                return Err(ApiError::validation(
                    "Consistent reads are not supported on global secondary indexes",
                ));
            }
            Ok(Source {
                def,
                index: Some(index),
                global,
            })
        }
    }
}

fn exclusive_start(source: &Source<'_>, req: &Req<'_>) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(json) = req.get("ExclusiveStartKey") else {
        return Ok(None);
    };
    let start = item_from_json(json)?;
    let invalid = || {
        ApiError::validation(
            "The provided starting key is invalid: The provided key element does not match the schema",
        )
    };
    if start.len() != source.position_attrs().len() {
        return Err(ApiError::validation(
            "The provided starting key is invalid: Exclusive Start Key must have same size as table's key schema",
        ));
    }
    source.encode_position(&start).map(Some).ok_or_else(invalid)
}

/// The `Select` a read answers with: as given (checked against the projection and the
/// source), else `SPECIFIC_ATTRIBUTES` with a projection, `ALL_PROJECTED_ATTRIBUTES` on
/// an index and `ALL_ATTRIBUTES` on a table, as DynamoDB defaults.
fn select<'a>(req: &Req<'a>, has_projection: bool, index: bool) -> Result<&'a str, ApiError> {
    let select = req.opt_enum(
        "Select",
        &[
            "ALL_ATTRIBUTES",
            "ALL_PROJECTED_ATTRIBUTES",
            "SPECIFIC_ATTRIBUTES",
            "COUNT",
        ],
    )?;
    match select {
        Some("SPECIFIC_ATTRIBUTES") if !has_projection => Err(ApiError::validation(
            "Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES",
        )),
        Some(s) if s != "SPECIFIC_ATTRIBUTES" && has_projection => {
            Err(ApiError::validation(format!(
                "Cannot specify the ProjectionExpression or AttributesToGet when choosing to get {s}"
            )))
        }
        Some("ALL_PROJECTED_ATTRIBUTES") if !index => Err(ApiError::validation(
            "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName",
        )),
        Some(s) => Ok(s),
        None if has_projection => Ok("SPECIFIC_ATTRIBUTES"),
        None if index => Ok("ALL_PROJECTED_ATTRIBUTES"),
        None => Ok("ALL_ATTRIBUTES"),
    }
}

fn limit(req: &Req<'_>) -> Result<Option<usize>, ApiError> {
    Ok(req
        .opt_u64("Limit", 1)?
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
}

fn intersect_start(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (x, y) => {
            let key = |b: &Bound<Vec<u8>>| match b {
                Bound::Included(v) | Bound::Excluded(v) => v.clone(),
                Bound::Unbounded => Vec::new(),
            };
            if key(&x) > key(&y) || (key(&x) == key(&y) && matches!(x, Bound::Excluded(_))) {
                x
            } else {
                y
            }
        }
    }
}

fn intersect_end(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (x, y) => {
            let key = |b: &Bound<Vec<u8>>| match b {
                Bound::Included(v) | Bound::Excluded(v) => v.clone(),
                Bound::Unbounded => Vec::new(),
            };
            if key(&x) < key(&y) || (key(&x) == key(&y) && matches!(x, Bound::Excluded(_))) {
                x
            } else {
                y
            }
        }
    }
}

fn end_of(prefix: &[u8]) -> Bound<Vec<u8>> {
    key::prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded)
}

/// The table's items for entries read from a local index (in the same order; an item
/// deleted since the index was read is left out).
async fn fetch_from_table(
    tables: &Tables,
    def: &Arc<TableDef>,
    entries: Vec<Item>,
) -> Result<Vec<Item>, ApiError> {
    let keys = entries
        .iter()
        .filter_map(|entry| def.encoded_key(entry))
        .map(|key| (Arc::clone(def), key))
        .collect();
    let items = tables.engine.get_many(keys).await.map_err(internal)?;
    Ok(items.into_iter().flatten().collect())
}

/// Runs a read and shapes the response: filter, projection, Select, counts, paging.
/// `query` is whether it is a Query (whose filter may not name the key attributes).
#[allow(clippy::too_many_arguments)]
async fn run(
    tables: &Tables,
    req: &Req<'_>,
    query: bool,
    source: &Source<'_>,
    def: &Arc<TableDef>,
    exprs: Exprs<'_>,
    mut start: Bound<Vec<u8>>,
    mut end: Bound<Vec<u8>>,
    forward: bool,
    segment: Option<(u32, u32)>,
) -> Result<Json, ApiError> {
    let filter = exprs.condition(req, "FilterExpression")?;
    let projection = exprs.projection(req)?;
    exprs.finish()?;
    if query
        && let Some(filter) = &filter
        && let Some(key) = filter
            .top_level_attributes()
            .find(|name| source.key().attrs().any(|a| a.name == *name))
    {
        return Err(ApiError::validation(format!(
            "Filter Expression can only contain non-primary key attributes: Primary key attribute: {key}"
        )));
    }
    let select = select(req, projection.is_some(), source.index.is_some())?;
    if select == "ALL_ATTRIBUTES"
        && let Some(index) = source.index
        && source.global
        && index.projection != crate::schema::ProjectionType::All
    {
        return Err(ApiError::validation(
            "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index ".to_owned() + &index.name + " because its projection type is not ALL",
        ));
    }
    let consistent = req.opt_bool("ConsistentRead")?.unwrap_or(false);
    let report = Report::from_req(req)?;
    if let Some(position) = exclusive_start(source, req)? {
        if forward {
            start = intersect_start(start, Bound::Excluded(position));
        } else {
            end = intersect_end(end, Bound::Excluded(position));
        }
    }
    let page = tables
        .engine
        .range(RangeRead {
            table: Arc::clone(def),
            index: source.index.map(|i| i.name.clone()),
            start,
            end,
            forward,
            limit: limit(req)?,
            max_bytes: PAGE_BYTES,
            segment,
        })
        .await
        .map_err(internal)?;
    let scanned = page.items.len();
    let bytes: usize = page.items.iter().map(item_size).sum();
    let last = page
        .truncated
        .then(|| page.items.last().map(|item| source.last_key(item)))
        .flatten();
    // A local index that does not project every attribute has the rest fetched from the
    // table when the read asks for them (all attributes, a projection or a filter), as
    // DynamoDB does; a global index refuses such a Select above.
    let fetch = source.index.is_some_and(|index| {
        !source.global && index.projection != crate::schema::ProjectionType::All
    }) && (select == "ALL_ATTRIBUTES" || projection.is_some() || filter.is_some());
    let page_items = if fetch {
        fetch_from_table(tables, def, page.items).await?
    } else {
        page.items
    };
    let mut items = Vec::new();
    for item in page_items {
        if filter.as_ref().is_none_or(|f| f.eval(Some(&item))) {
            items.push(item);
        }
    }
    // Items fetched whole from the table are cut back to the index's projection when
    // that is what the read asked for.
    if fetch
        && select == "ALL_PROJECTED_ATTRIBUTES"
        && let Some(index) = source.index
    {
        for item in &mut items {
            if let Some((_, projected)) = def.index_entry(index, item) {
                *item = projected;
            }
        }
    }
    let mut out = json!({ "Count": items.len(), "ScannedCount": scanned });
    if select != "COUNT" {
        out["Items"] = items
            .into_iter()
            .map(|item| item_to_json(&Projection::apply_opt(projection.as_ref(), item)))
            .collect();
    }
    if let Some(last) = last {
        out["LastEvaluatedKey"] = item_to_json(&last);
    }
    if let Some(c) = capacity::consumed(
        report,
        def,
        capacity::read_units(bytes, consistent),
        true,
        source.index.map(|i| i.name.as_str()),
    ) {
        out["ConsumedCapacity"] = c;
    }
    Ok(out)
}

pub(super) async fn query(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(req.str("TableName")?)?;
    let source = source(&def, req)?;
    let maps = ExprMaps::from_req(req)?;
    let exprs = maps.exprs();
    let schema = source.key();
    let condition = exprs.key_condition(
        req,
        &schema.partition.name,
        schema.sort.as_ref().map(|s| s.name.as_str()),
    )?;
    if condition.partition.0 != schema.partition.name {
        return Err(ApiError::validation(format!(
            "Query condition missed key schema element: {}",
            schema.partition.name
        )));
    }
    if !schema.partition.ty.matches(&condition.partition.1) {
        return Err(ApiError::validation(
            "One or more parameter values were invalid: Condition parameter type does not match schema type",
        ));
    }
    let prefix = key::encode(&[&condition.partition.1]);
    let (start, end) = match &condition.sort {
        None => (Bound::Included(prefix.clone()), end_of(&prefix)),
        Some((name, cond)) => {
            let Some(sort) = &schema.sort else {
                return Err(ApiError::validation(format!(
                    "Query condition missed key schema element: {name}"
                )));
            };
            if &sort.name != name {
                return Err(ApiError::validation(format!(
                    "Query condition missed key schema element: {}",
                    sort.name
                )));
            }
            let with = |v: &AttributeValue| -> Result<Vec<u8>, ApiError> {
                if !sort.ty.matches(v) {
                    return Err(ApiError::validation(
                        "One or more parameter values were invalid: Condition parameter type does not match schema type",
                    ));
                }
                let mut k = prefix.clone();
                key::encode_into(&mut k, v);
                Ok(k)
            };
            match cond {
                SortKeyCondition::Eq(v) => {
                    let k = with(v)?;
                    (Bound::Included(k.clone()), end_of(&k))
                }
                SortKeyCondition::Lt(v) => {
                    (Bound::Included(prefix.clone()), Bound::Excluded(with(v)?))
                }
                SortKeyCondition::Le(v) => (Bound::Included(prefix.clone()), end_of(&with(v)?)),
                SortKeyCondition::Gt(v) => (end_of(&with(v)?), end_of(&prefix)),
                SortKeyCondition::Ge(v) => (Bound::Included(with(v)?), end_of(&prefix)),
                SortKeyCondition::Between(low, high) => {
                    if key_order(low, high) == Some(std::cmp::Ordering::Greater) {
                        return Err(ApiError::validation(format!(
                            "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {{{}:{}}}, upper bound operand: AttributeValue: {{{}:{}}}",
                            low.type_name(),
                            show(low),
                            high.type_name(),
                            show(high)
                        )));
                    }
                    (Bound::Included(with(low)?), end_of(&with(high)?))
                }
                SortKeyCondition::BeginsWith(v) => {
                    let raw: &[u8] = match v {
                        AttributeValue::S(s) if sort.ty == crate::schema::KeyType::S => {
                            s.as_bytes()
                        }
                        AttributeValue::B(b) if sort.ty == crate::schema::KeyType::B => b,
                        _ => {
                            return Err(ApiError::validation(
                                "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N",
                            ));
                        }
                    };
                    let mut k = prefix.clone();
                    k.extend(key::encode_prefix(raw));
                    (Bound::Included(k.clone()), end_of(&k))
                }
            }
        }
    };
    let forward = req.opt_bool("ScanIndexForward")?.unwrap_or(true);
    run(
        tables, req, true, &source, &def, exprs, start, end, forward, None,
    )
    .await
}

/// DynamoDB's order of two key values of one type.
fn key_order(a: &AttributeValue, b: &AttributeValue) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (AttributeValue::S(x), AttributeValue::S(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (AttributeValue::N(x), AttributeValue::N(y)) => Some(x.cmp(y)),
        (AttributeValue::B(x), AttributeValue::B(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn show(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) => s.clone(),
        AttributeValue::N(n) => n.to_string(),
        other => other.to_json().to_string(),
    }
}

pub(super) async fn scan(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(req.str("TableName")?)?;
    let source = source(&def, req)?;
    let segment = match (req.opt_u64("Segment", 0)?, req.opt_u64("TotalSegments", 1)?) {
        (None, None) => None,
        (Some(segment), Some(total)) => {
            if total > 1_000_000 {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{total}' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to 1000000"
                )));
            }
            if segment >= total {
                return Err(ApiError::validation(format!(
                    "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {segment} is not less than TotalSegments: {total}"
                )));
            }
            Some((segment as u32, total as u32))
        }
        (Some(_), None) => {
            return Err(ApiError::validation(
                "The TotalSegments parameter is required but was not present in the request when Segment parameter is present",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::validation(
                "The Segment parameter is required but was not present in the request when parameter TotalSegments is present",
            ));
        }
    };
    let maps = ExprMaps::from_req(req)?;
    let exprs = maps.exprs();
    run(
        tables,
        req,
        false,
        &source,
        &def,
        exprs,
        Bound::Unbounded,
        Bound::Unbounded,
        true,
        segment,
    )
    .await
}
