//! Table-level operations: CreateTable, DescribeTable, ListTables, DeleteTable,
//! UpdateTable, TTL, tags, DescribeLimits, DescribeEndpoints.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::{Value as Json, json};

use super::{
    Tables, internal, now_millis,
    request::{Req, check_name, table_name_of},
};
use crate::{
    error::{ApiError, ErrorKind},
    schema::{
        ACCOUNT, IndexDef, KeyAttr, KeySchema, KeyType, ProjectionType, REGION, StreamDef, TableDef,
    },
};

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

/// A stream label: the creation time as DynamoDB prints it.
fn stream_label() -> String {
    StreamDef::label_at(now_millis())
}

/// The table definition for a table declared in `nimbus.toml`.
pub fn table_def_from_spec(spec: &nimbus_core::TableSpec) -> TableDef {
    let ty = |t: nimbus_core::ScalarType| match t {
        nimbus_core::ScalarType::S => KeyType::S,
        nimbus_core::ScalarType::N => KeyType::N,
        nimbus_core::ScalarType::B => KeyType::B,
    };
    let attr = |a: &nimbus_core::KeyAttribute| KeyAttr {
        name: a.name.clone(),
        ty: ty(a.ty),
    };
    let index = |i: &nimbus_core::IndexSpec| IndexDef {
        name: i.name.clone(),
        key: KeySchema {
            partition: attr(&i.partition_key),
            sort: i.sort_key.as_ref().map(attr),
        },
        projection: match &i.projection {
            nimbus_core::Projection::All => ProjectionType::All,
            nimbus_core::Projection::KeysOnly => ProjectionType::KeysOnly,
            nimbus_core::Projection::Include(a) => ProjectionType::Include(a.clone()),
        },
        throughput: None,
    };
    let key = KeySchema {
        partition: attr(&spec.partition_key),
        sort: spec.sort_key.as_ref().map(attr),
    };
    let global_indexes: Vec<IndexDef> = spec.global_indexes.iter().map(index).collect();
    let local_indexes: Vec<IndexDef> = spec.local_indexes.iter().map(index).collect();
    let attribute_definitions = key
        .attrs()
        .chain(
            global_indexes
                .iter()
                .chain(&local_indexes)
                .flat_map(|i| i.key.attrs()),
        )
        .map(|a| (a.name.clone(), a.ty))
        .collect();
    TableDef {
        name: spec.name.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        key,
        attribute_definitions,
        global_indexes,
        local_indexes,
        billing_mode: "PAY_PER_REQUEST".to_owned(),
        throughput: None,
        stream: spec.stream.map(|v| StreamDef {
            view_type: v.as_str().to_owned(),
            label: stream_label(),
            ended_ms: None,
        }),
        old_streams: Vec::new(),
        ttl_attribute: spec.ttl_attribute.clone(),
        tags: BTreeMap::new(),
        created: now(),
        deletion_protection: false,
    }
}

fn table_name<'a>(req: &Req<'a>) -> Result<&'a str, ApiError> {
    let name = table_name_of(req.str("TableName")?);
    check_name("tableName", name)?;
    Ok(name)
}

/// Reads `KeySchema` against the declared attribute types.
fn key_schema(
    elements: &[Json],
    types: &BTreeMap<String, KeyType>,
    what: &str,
) -> Result<KeySchema, ApiError> {
    let mut hash = None;
    let mut range = None;
    if elements.is_empty() || elements.len() > 2 {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '[...]' at '{what}' failed to satisfy constraint: Member must have length less than or equal to 2"
        )));
    }
    for element in elements {
        let e = Req::parse(element)?;
        let name = e.str("AttributeName")?;
        let kind = e
            .opt_enum("KeyType", &["HASH", "RANGE"])?
            .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'keySchema.member.keyType' failed to satisfy constraint: Member must not be null"))?;
        let Some(ty) = types.get(name) else {
            return Err(ApiError::invalid_parameter(format!(
                "Some index key attributes are not defined in AttributeDefinitions. Keys: [{name}], AttributeDefinitions: [{}]",
                types.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let attr = KeyAttr {
            name: name.to_owned(),
            ty: *ty,
        };
        match (kind, &hash, &range) {
            ("HASH", None, _) => hash = Some(attr),
            ("RANGE", Some(_), None) => range = Some(attr),
            ("HASH", Some(_), _) => {
                return Err(ApiError::invalid_parameter(
                    "Too many hash keys specified.  All Dynamo DB tables must have exactly one hash key",
                ));
            }
            _ => {
                return Err(ApiError::invalid_parameter(
                    "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
                ));
            }
        }
    }
    let partition = hash.ok_or_else(|| {
        ApiError::invalid_parameter(
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
        )
    })?;
    if range.as_ref().is_some_and(|r| r.name == partition.name) {
        return Err(ApiError::invalid_parameter(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    Ok(KeySchema {
        partition,
        sort: range,
    })
}

fn projection(p: Option<Req<'_>>) -> Result<ProjectionType, ApiError> {
    let Some(p) = p else {
        return Err(ApiError::validation(
            "1 validation error detected: Value null at 'projection' failed to satisfy constraint: Member must not be null",
        ));
    };
    let kind = p.opt_enum("ProjectionType", &["ALL", "KEYS_ONLY", "INCLUDE"])?;
    let non_key: Option<Vec<String>> = match p.opt_array("NonKeyAttributes")? {
        None => None,
        Some(a) => Some(
            a.iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::new(ErrorKind::Serialization, "NonKeyAttributes must be strings")
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    match (kind, non_key) {
        (Some("INCLUDE"), Some(attrs)) if !attrs.is_empty() => Ok(ProjectionType::Include(attrs)),
        (Some("INCLUDE"), _) => Err(ApiError::invalid_parameter(
            "NonKeyAttributes must not be empty when ProjectionType is INCLUDE",
        )),
        (_, Some(_)) => Err(ApiError::invalid_parameter(
            "ProjectionType is ALL or KEYS_ONLY, but NonKeyAttributes is specified",
        )),
        (Some("KEYS_ONLY"), None) => Ok(ProjectionType::KeysOnly),
        (Some(_), None) => Ok(ProjectionType::All),
        (None, None) => Err(ApiError::invalid_parameter("Unknown ProjectionType: null")),
    }
}

fn throughput(t: Option<Req<'_>>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(t) = t else { return Ok(None) };
    let read = t.opt_u64("ReadCapacityUnits", 0)?;
    let write = t.opt_u64("WriteCapacityUnits", 0)?;
    match (read, write) {
        (Some(r), Some(w)) if r >= 1 && w >= 1 => Ok(Some((r, w))),
        (Some(_), Some(_)) => Err(ApiError::validation(
            "One or more parameter values were invalid: Read and write capacity units must be at least 1",
        )),
        _ => Err(ApiError::validation(
            "1 validation error detected: Value null at 'provisionedThroughput.readCapacityUnits' failed to satisfy constraint: Member must not be null",
        )),
    }
}

fn stream_spec(s: Option<Req<'_>>) -> Result<Option<Option<String>>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    let enabled = s.opt_bool("StreamEnabled")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'streamSpecification.streamEnabled' failed to satisfy constraint: Member must not be null")
    })?;
    let view = s.opt_enum(
        "StreamViewType",
        &["NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY"],
    )?;
    match (enabled, view) {
        (true, Some(v)) => Ok(Some(Some(v.to_owned()))),
        (true, None) => Err(ApiError::invalid_parameter(
            "You must specify a StreamViewType when enabling a stream",
        )),
        (false, Some(_)) => Err(ApiError::invalid_parameter(
            "You cannot modify StreamViewType when disabling a stream",
        )),
        (false, None) => Ok(Some(None)),
    }
}

fn string_array(req: &Req<'_>, key: &str) -> Result<Vec<String>, ApiError> {
    Ok(req
        .opt_array(key)?
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The `AttributeDefinitions` entries of a request, as (name, type) in order.
fn attribute_definitions(definitions: &[Json]) -> Result<Vec<(String, KeyType)>, ApiError> {
    definitions
        .iter()
        .map(|d| {
            let d = Req::parse(d)?;
            let attr = d.str("AttributeName")?;
            let ty = d
                .opt_enum("AttributeType", &["B", "N", "S"])?
                .and_then(KeyType::parse)
                .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'attributeDefinitions.member.attributeType' failed to satisfy constraint: Member must not be null"))?;
            Ok((attr.to_owned(), ty))
        })
        .collect()
}

pub(super) async fn create_table(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let name = table_name(req)?;
    let definitions = req.opt_array("AttributeDefinitions")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'attributeDefinitions' failed to satisfy constraint: Member must not be null")
    })?;
    let mut types = BTreeMap::new();
    for (attr, ty) in attribute_definitions(definitions)? {
        if types.insert(attr, ty).is_some() {
            return Err(ApiError::invalid_parameter(
                "Duplicate AttributeName found in AttributeDefinitions",
            ));
        }
    }
    let key = key_schema(
        req.opt_array("KeySchema")?.map_or(&[][..], Vec::as_slice),
        &types,
        "keySchema",
    )?;
    let billing_mode = req
        .opt_enum("BillingMode", &["PROVISIONED", "PAY_PER_REQUEST"])?
        .unwrap_or("PROVISIONED")
        .to_owned();
    let table_throughput = throughput(req.opt_struct("ProvisionedThroughput")?)?;
    match (billing_mode.as_str(), table_throughput) {
        ("PROVISIONED", None) => {
            return Err(ApiError::invalid_parameter(
                "ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
            ));
        }
        ("PAY_PER_REQUEST", Some(_)) => {
            return Err(ApiError::invalid_parameter(
                "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
            ));
        }
        _ => {}
    }

    let mut used: Vec<&str> = key.attrs().map(|a| a.name.as_str()).collect();
    let mut index_names: Vec<String> = Vec::new();
    let mut read_indexes = |key: &str, global: bool| -> Result<Vec<IndexDef>, ApiError> {
        let mut out = Vec::new();
        for raw in req.opt_array(key)?.map_or(&[][..], Vec::as_slice) {
            let i = Req::parse(raw)?;
            let index_name = i.str("IndexName")?;
            check_name("indexName", index_name)?;
            if index_names.iter().any(|n| n == index_name) {
                return Err(ApiError::invalid_parameter(format!(
                    "Duplicate index name: {index_name}"
                )));
            }
            index_names.push(index_name.to_owned());
            let ikey = key_schema(
                i.opt_array("KeySchema")?.map_or(&[][..], Vec::as_slice),
                &types,
                "keySchema",
            )?;
            let index_throughput = throughput(i.opt_struct("ProvisionedThroughput")?)?;
            if global && billing_mode == "PROVISIONED" && index_throughput.is_none() {
                return Err(ApiError::invalid_parameter(format!(
                    "ProvisionedThroughput must be specified for index: {index_name}"
                )));
            }
            out.push(IndexDef {
                name: index_name.to_owned(),
                key: ikey,
                projection: projection(i.opt_struct("Projection")?)?,
                throughput: index_throughput,
            });
        }
        Ok(out)
    };
    let global_indexes = read_indexes("GlobalSecondaryIndexes", true)?;
    let local_indexes = read_indexes("LocalSecondaryIndexes", false)?;
    if global_indexes.len() > nimbus_core::limits::MAX_GLOBAL_INDEXES {
        return Err(ApiError::invalid_parameter(
            "GlobalSecondaryIndex count exceeds the per-table limit of 20",
        ));
    }
    if local_indexes.len() > nimbus_core::limits::MAX_LOCAL_INDEXES {
        return Err(ApiError::invalid_parameter(
            "LocalSecondaryIndex count exceeds the per-table limit of 5",
        ));
    }
    for index in &local_indexes {
        if key.sort.is_none() {
            return Err(ApiError::invalid_parameter(
                "Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex",
            ));
        }
        if index.key.partition.name != key.partition.name || index.key.sort.is_none() {
            return Err(ApiError::invalid_parameter(format!(
                "Index KeySchema does not have the same leading hash key as table KeySchema for index: {}. index hash key: {}, table hash key: {}",
                index.name, index.key.partition.name, key.partition.name
            )));
        }
    }
    for index in global_indexes.iter().chain(&local_indexes) {
        used.extend(index.key.attrs().map(|a| a.name.as_str()));
    }
    used.sort_unstable();
    used.dedup();
    if used.len() != types.len() {
        return Err(ApiError::invalid_parameter(
            "Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
        ));
    }
    let stream = stream_spec(req.opt_struct("StreamSpecification")?)?
        .flatten()
        .map(|view_type| StreamDef {
            view_type,
            label: stream_label(),
            ended_ms: None,
        });
    let mut tags = BTreeMap::new();
    for tag in req.opt_array("Tags")?.map_or(&[][..], Vec::as_slice) {
        let t = Req::parse(tag)?;
        tags.insert(t.str("Key")?.to_owned(), t.str("Value")?.to_owned());
    }
    let def = TableDef {
        name: name.to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        key,
        attribute_definitions: types,
        global_indexes,
        local_indexes,
        billing_mode,
        throughput: table_throughput,
        stream,
        old_streams: Vec::new(),
        ttl_attribute: None,
        tags,
        created: now(),
        deletion_protection: req.opt_bool("DeletionProtectionEnabled")?.unwrap_or(false),
    };
    let _ddl = tables.lock_ddl().await?;
    if tables.table(name).is_ok() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Table already exists: {name}"),
        ));
    }
    if let Err(e) = tables.engine.create_table(def.clone()).await {
        return Err(if tables.created_elsewhere(name).await {
            ApiError::new(
                ErrorKind::ResourceInUse,
                format!("Table already exists: {name}"),
            )
        } else {
            internal(e)
        });
    }
    let def = tables.set_table(def);
    Ok(json!({ "TableDescription": describe(&def, None) }))
}

/// DynamoDB's `TableDescription`.
pub(crate) fn describe(def: &TableDef, stats: Option<crate::engine::TableStats>) -> Json {
    let stats = stats.unwrap_or_default();
    let throughput = |t: Option<(u64, u64)>| {
        let (r, w) = t.unwrap_or((0, 0));
        json!({ "NumberOfDecreasesToday": 0, "ReadCapacityUnits": r, "WriteCapacityUnits": w })
    };
    let projection = |p: &ProjectionType| match p {
        ProjectionType::All => json!({ "ProjectionType": "ALL" }),
        ProjectionType::KeysOnly => json!({ "ProjectionType": "KEYS_ONLY" }),
        ProjectionType::Include(a) => json!({ "ProjectionType": "INCLUDE", "NonKeyAttributes": a }),
    };
    let mut out = json!({
        "TableName": def.name,
        "TableId": def.id,
        "TableArn": def.arn(),
        "TableStatus": "ACTIVE",
        "CreationDateTime": def.created,
        "AttributeDefinitions": def.attribute_definitions.iter()
            .map(|(name, ty)| json!({ "AttributeName": name, "AttributeType": ty.as_str() }))
            .collect::<Vec<_>>(),
        "KeySchema": def.key.describe(),
        "ProvisionedThroughput": throughput(def.throughput),
        "TableSizeBytes": stats.size_bytes,
        "ItemCount": stats.item_count,
        "BillingModeSummary": { "BillingMode": def.billing_mode },
        "DeletionProtectionEnabled": def.deletion_protection,
    });
    let index = |i: &IndexDef, global: bool| {
        let mut j = json!({
            "IndexName": i.name,
            "KeySchema": i.key.describe(),
            "Projection": projection(&i.projection),
            "IndexSizeBytes": 0,
            "ItemCount": 0,
            "IndexArn": format!("{}/index/{}", def.arn(), i.name),
        });
        if global {
            j["IndexStatus"] = json!("ACTIVE");
            j["ProvisionedThroughput"] = throughput(i.throughput);
        }
        j
    };
    if !def.global_indexes.is_empty() {
        out["GlobalSecondaryIndexes"] = def.global_indexes.iter().map(|i| index(i, true)).collect();
    }
    if !def.local_indexes.is_empty() {
        out["LocalSecondaryIndexes"] = def.local_indexes.iter().map(|i| index(i, false)).collect();
    }
    if let Some(stream) = &def.stream {
        out["StreamSpecification"] =
            json!({ "StreamEnabled": true, "StreamViewType": stream.view_type });
    }
    // A stream turned off is still the latest until another is turned on.
    if let Some(stream) = def.stream.as_ref().or(def.old_streams.last()) {
        out["LatestStreamLabel"] = json!(stream.label);
        out["LatestStreamArn"] = json!(format!("{}/stream/{}", def.arn(), stream.label));
    }
    out
}

pub(super) async fn describe_table(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(table_name(req)?)?;
    let stats = tables
        .engine
        .stats(Arc::clone(&def))
        .await
        .map_err(internal)?;
    Ok(json!({ "Table": describe(&def, Some(stats)) }))
}

pub(super) fn list_tables(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let limit = req.opt_u64("Limit", 0)?.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value {} 100",
            if limit < 1 {
                "greater than or equal to 1, less than or equal to"
            } else {
                "less than or equal to"
            }
        )));
    }
    let start = req.opt_str("ExclusiveStartTableName")?;
    let names: Vec<String> = tables
        .table_names()
        .into_iter()
        .filter(|n| start.is_none_or(|s| n.as_str() > s))
        .collect();
    let limit = limit as usize;
    let page: Vec<&String> = names.iter().take(limit).collect();
    let mut out = json!({ "TableNames": page });
    if names.len() > limit
        && let Some(last) = page.last()
    {
        out["LastEvaluatedTableName"] = json!(last);
    }
    Ok(out)
}

pub(super) async fn delete_table(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let name = table_name(req)?;
    let _ddl = tables.lock_ddl().await?;
    let def = tables.table(name)?;
    if def.deletion_protection {
        return Err(ApiError::validation(
            "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.",
        ));
    }
    let stats = tables
        .engine
        .stats(Arc::clone(&def))
        .await
        .map_err(internal)?;
    tables
        .engine
        .delete_table(Arc::clone(&def))
        .await
        .map_err(internal)?;
    tables.remove_table(name);
    let mut description = describe(&def, Some(stats));
    description["TableStatus"] = json!("DELETING");
    Ok(json!({ "TableDescription": description }))
}

pub(super) async fn update_table(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let name = table_name(req)?;
    let _ddl = tables.lock_ddl().await?;
    let mut def = (*tables.table(name)?).clone();
    let mut changed = false;
    let mut types = def.attribute_definitions.clone();
    let given = req
        .opt_array("AttributeDefinitions")?
        .map_or(&[][..], Vec::as_slice);
    for (attr, ty) in attribute_definitions(given)? {
        if let Some(existing) = types.get(&attr)
            && *existing != ty
        {
            return Err(ApiError::invalid_parameter(format!(
                "Cannot change the type of key attribute {attr}"
            )));
        }
        types.insert(attr, ty);
    }
    if let Some(mode) = req.opt_enum("BillingMode", &["PROVISIONED", "PAY_PER_REQUEST"])? {
        def.billing_mode = mode.to_owned();
        if mode == "PAY_PER_REQUEST" {
            def.throughput = None;
        }
        changed = true;
    }
    if let Some(t) = throughput(req.opt_struct("ProvisionedThroughput")?)? {
        if def.billing_mode == "PAY_PER_REQUEST" {
            return Err(ApiError::invalid_parameter(
                "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
            ));
        }
        def.throughput = Some(t);
        changed = true;
    }
    if def.billing_mode == "PROVISIONED" && def.throughput.is_none() {
        return Err(ApiError::invalid_parameter(
            "ProvisionedThroughput must be specified when BillingMode is PROVISIONED",
        ));
    }
    if let Some(p) = req.opt_bool("DeletionProtectionEnabled")? {
        def.deletion_protection = p;
        changed = true;
    }
    if let Some(stream) = stream_spec(req.opt_struct("StreamSpecification")?)? {
        match (stream, &def.stream) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(format!(
                    "Table already has an enabled stream: {}",
                    def.arn()
                )));
            }
            (None, None) => {
                return Err(ApiError::validation(
                    "Table already has no stream enabled".to_owned(),
                ));
            }
            (view, _) => {
                // A stream turned off stays readable (DISABLED) for a day.
                def.end_stream(now_millis());
                def.stream = view.map(|view_type| StreamDef {
                    view_type,
                    label: stream_label(),
                    ended_ms: None,
                });
            }
        }
        changed = true;
    }
    let index_updates = req
        .opt_array("GlobalSecondaryIndexUpdates")?
        .map_or(&[][..], Vec::as_slice);
    let creates_or_deletes = index_updates
        .iter()
        .filter(|u| u.get("Create").is_some() || u.get("Delete").is_some())
        .count();
    if creates_or_deletes > 1 {
        return Err(ApiError::new(
            ErrorKind::LimitExceeded,
            "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table",
        ));
    }
    for update in index_updates {
        let u = Req::parse(update)?;
        if let Some(create) = u.opt_struct("Create")? {
            let index_name = create.str("IndexName")?;
            check_name("indexName", index_name)?;
            if def.index(index_name).is_some() {
                return Err(ApiError::validation(format!(
                    "One or more parameter values were invalid: Index with name: {index_name} already exists"
                )));
            }
            let ikey = key_schema(
                create
                    .opt_array("KeySchema")?
                    .map_or(&[][..], Vec::as_slice),
                &types,
                "keySchema",
            )?;
            if def.global_indexes.len() >= nimbus_core::limits::MAX_GLOBAL_INDEXES {
                return Err(ApiError::validation(
                    "GlobalSecondaryIndex count exceeds the per-table limit of 20",
                ));
            }
            def.global_indexes.push(IndexDef {
                name: index_name.to_owned(),
                key: ikey,
                projection: projection(create.opt_struct("Projection")?)?,
                throughput: throughput(create.opt_struct("ProvisionedThroughput")?)?,
            });
        } else if let Some(delete) = u.opt_struct("Delete")? {
            let index_name = delete.str("IndexName")?;
            let before = def.global_indexes.len();
            def.global_indexes.retain(|i| i.name != index_name);
            if def.global_indexes.len() == before {
                return Err(ApiError::new(
                    ErrorKind::ResourceNotFound,
                    format!("Requested resource not found: Index: {index_name} not found"),
                ));
            }
        } else if let Some(update) = u.opt_struct("Update")? {
            let index_name = update.str("IndexName")?;
            let t = throughput(update.opt_struct("ProvisionedThroughput")?)?;
            let Some(index) = def.global_indexes.iter_mut().find(|i| i.name == index_name) else {
                return Err(ApiError::new(
                    ErrorKind::ResourceNotFound,
                    format!("Requested resource not found: Index: {index_name} not found"),
                ));
            };
            index.throughput = t;
        }
        changed = true;
    }
    // Keep only definitions that some key still uses.
    let used: Vec<String> = def
        .key
        .attrs()
        .chain(
            def.global_indexes
                .iter()
                .chain(&def.local_indexes)
                .flat_map(|i| i.key.attrs()),
        )
        .map(|a| a.name.clone())
        .collect();
    types.retain(|name, _| used.contains(name));
    def.attribute_definitions = types;
    if !changed {
        return Err(ApiError::validation(
            "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required",
        ));
    }
    let def = tables.replace_table(def).await?;
    let stats = tables
        .engine
        .stats(Arc::clone(&def))
        .await
        .map_err(internal)?;
    Ok(json!({ "TableDescription": describe(&def, Some(stats)) }))
}

pub(super) async fn update_time_to_live(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let name = table_name(req)?;
    let spec = req.opt_struct("TimeToLiveSpecification")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null")
    })?;
    let enabled = spec.opt_bool("Enabled")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: Member must not be null")
    })?;
    let attribute = spec.str("AttributeName")?;
    let _ddl = tables.lock_ddl().await?;
    let mut def = (*tables.table(name)?).clone();
    match (enabled, &def.ttl_attribute) {
        (true, Some(_)) => {
            return Err(ApiError::validation("TimeToLive is already enabled"));
        }
        (false, None) => {
            return Err(ApiError::validation("TimeToLive is already disabled"));
        }
        (false, Some(current)) if current != attribute => {
            return Err(ApiError::validation(format!(
                "TimeToLive is active on a different AttributeName: current AttributeName is {current}"
            )));
        }
        _ => {}
    }
    def.ttl_attribute = enabled.then(|| attribute.to_owned());
    tables.replace_table(def).await?;
    Ok(json!({ "TimeToLiveSpecification": { "Enabled": enabled, "AttributeName": attribute } }))
}

pub(super) fn describe_time_to_live(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = tables.table(table_name(req)?)?;
    Ok(match &def.ttl_attribute {
        Some(attr) => {
            json!({ "TimeToLiveDescription": { "TimeToLiveStatus": "ENABLED", "AttributeName": attr } })
        }
        None => json!({ "TimeToLiveDescription": { "TimeToLiveStatus": "DISABLED" } }),
    })
}

fn table_from_arn(tables: &Tables, req: &Req<'_>) -> Result<Arc<TableDef>, ApiError> {
    let arn = req.str("ResourceArn")?;
    let prefix = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/");
    let name = arn
        .strip_prefix(&prefix)
        .or_else(|| {
            // Clients configured for another region or account still name the table last.
            arn.starts_with("arn:aws:dynamodb:")
                .then(|| arn.rsplit_once("table/").map(|(_, n)| n))
                .flatten()
        })
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| {
            ApiError::validation(format!(
                "Invalid TableArn: Invalid ResourceArn provided as input {arn}"
            ))
        })?;
    tables.table(name).map_err(|_| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Requested resource not found: ResourcArn: {arn} not found"),
        )
    })
}

pub(super) async fn tag_resource(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let _ddl = tables.lock_ddl().await?;
    let mut def = (*table_from_arn(tables, req)?).clone();
    let tags = req.opt_array("Tags")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null")
    })?;
    for tag in tags {
        let t = Req::parse(tag)?;
        def.tags
            .insert(t.str("Key")?.to_owned(), t.str("Value")?.to_owned());
    }
    if def.tags.len() > 50 {
        return Err(ApiError::validation(
            "Too many tags: a resource may have at most 50",
        ));
    }
    tables.replace_table(def).await?;
    Ok(json!({}))
}

pub(super) async fn untag_resource(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let _ddl = tables.lock_ddl().await?;
    let mut def = (*table_from_arn(tables, req)?).clone();
    for key in string_array(req, "TagKeys")? {
        def.tags.remove(&key);
    }
    tables.replace_table(def).await?;
    Ok(json!({}))
}

pub(super) fn list_tags_of_resource(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let def = table_from_arn(tables, req)?;
    let tags: Vec<Json> = def
        .tags
        .iter()
        .map(|(k, v)| json!({ "Key": k, "Value": v }))
        .collect();
    Ok(json!({ "Tags": tags }))
}

pub(super) fn describe_limits() -> Json {
    json!({
        "AccountMaxReadCapacityUnits": 80000,
        "AccountMaxWriteCapacityUnits": 80000,
        "TableMaxReadCapacityUnits": 40000,
        "TableMaxWriteCapacityUnits": 40000,
    })
}

pub(super) fn describe_endpoints() -> Json {
    json!({ "Endpoints": [{ "Address": format!("dynamodb.{REGION}.amazonaws.com"), "CachePeriodInMinutes": 1440 }] })
}
