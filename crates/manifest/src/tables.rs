//! `[tables.NAME]`.

use std::collections::BTreeMap;

use nimbus_core::{IndexSpec, KeyAttribute, Projection, ScalarType, StreamView, TableSpec, limits};

use crate::{
    context::Cx,
    decode::{Field, Str},
    diagnostic::Span,
    support::Feature,
};

const KEY_EXPECTED: &str = "a key such as { name = \"email\", type = \"S\" }";

pub(crate) fn decode(cx: &mut Cx<'_>, field: Field<'_>) -> BTreeMap<String, TableSpec> {
    let mut tables = BTreeMap::new();
    let Some(obj) = field.table(&mut cx.sink, "a table of tables, one per table name") else {
        return tables;
    };
    for (name, field) in obj.entries() {
        cx.declared_tables.insert(name.value.clone());
        if !limits::is_valid_table_name(&name.value) {
            name.reject(
                &mut cx.sink,
                "a table name of 3 to 255 letters, digits, `_`, `-` or `.`",
            );
        }
        if let Some(table) = decode_table(cx, &name, field) {
            tables.insert(name.value.clone(), table);
        }
    }
    tables
}

fn decode_table(cx: &mut Cx<'_>, name: &Str, field: Field<'_>) -> Option<TableSpec> {
    let mut obj = field.table(&mut cx.sink, "a table with `partition_key`")?;
    obj.span = name.span.clone();
    let partition_key = obj
        .require(&mut cx.sink, "partition_key", KEY_EXPECTED)
        .and_then(|f| key_attribute(cx, f));
    let sort_key = obj.take("sort_key").and_then(|f| key_attribute(cx, f));
    let global_indexes = obj
        .take("global_indexes")
        .map(|f| indexes(cx, f, IndexKind::Global))
        .unwrap_or_default();
    let local_indexes = obj
        .take("local_indexes")
        .map(|f| indexes(cx, f, IndexKind::Local))
        .unwrap_or_default();
    let ttl_attribute = obj.take("ttl_attribute").and_then(|f| {
        let s = f.string(&mut cx.sink, "an attribute name")?;
        if limits::KEY_ATTRIBUTE_NAME_LEN.contains(&s.value.len()) {
            Some(s.value)
        } else {
            s.reject(&mut cx.sink, "an attribute name of 1 to 255 bytes");
            None
        }
    });
    let stream = obj.take("stream").and_then(|f| stream_view(cx, f));
    obj.finish(&mut cx.sink);

    let partition_key = partition_key?;
    let mut table = TableSpec {
        name: name.value.clone(),
        partition_key,
        sort_key,
        global_indexes: Vec::new(),
        local_indexes: Vec::new(),
        ttl_attribute,
        stream,
    };
    check_indexes(cx, name, &mut table, global_indexes, local_indexes);
    Some(table)
}

fn key_attribute(cx: &mut Cx<'_>, field: Field<'_>) -> Option<KeyAttribute> {
    let mut obj = field.table(&mut cx.sink, KEY_EXPECTED)?;
    let name = obj
        .require(&mut cx.sink, "name", "the attribute name")
        .and_then(|f| f.string(&mut cx.sink, "an attribute name"));
    let ty = match obj.take("type") {
        None => Some(ScalarType::S),
        Some(f) => f
            .string(&mut cx.sink, "\"S\", \"N\" or \"B\"")
            .and_then(|s| match s.value.as_str() {
                "S" => Some(ScalarType::S),
                "N" => Some(ScalarType::N),
                "B" => Some(ScalarType::B),
                _ => {
                    s.reject(
                        &mut cx.sink,
                        "\"S\" (string), \"N\" (number) or \"B\" (binary)",
                    );
                    None
                }
            }),
    };
    obj.finish(&mut cx.sink);
    let name = name?;
    if !limits::KEY_ATTRIBUTE_NAME_LEN.contains(&name.value.len()) {
        name.reject(&mut cx.sink, "an attribute name of 1 to 255 bytes");
        return None;
    }
    Some(KeyAttribute {
        name: name.value,
        ty: ty?,
    })
}

fn stream_view(cx: &mut Cx<'_>, field: Field<'_>) -> Option<StreamView> {
    let expected = "\"keys_only\", \"new_image\", \"old_image\" or \"new_and_old_images\"";
    let s = field.string(&mut cx.sink, expected)?;
    let view = match s.value.to_ascii_lowercase().as_str() {
        "keys_only" => StreamView::KeysOnly,
        "new_image" => StreamView::NewImage,
        "old_image" => StreamView::OldImage,
        "new_and_old_images" => StreamView::NewAndOldImages,
        _ => {
            s.reject(&mut cx.sink, expected);
            return None;
        }
    };
    // Kept even when unsupported, so that triggers on this table are not reported as
    // missing a stream as well; the error alone fails the manifest.
    cx.require_feature(
        Feature::TableStreams,
        s.span.clone(),
        &s.path,
        format!("{:?}", s.value),
    );
    Some(view)
}

#[derive(Clone, Copy, PartialEq)]
enum IndexKind {
    Global,
    Local,
}

/// An index as written, before it is checked against its table.
struct RawIndex {
    name: Str,
    partition_key: Option<KeyAttribute>,
    sort_key: Option<KeyAttribute>,
    /// Where `sort_key` is written, for problems with it.
    sort_key_place: Option<(Span, String)>,
    projection: Projection,
}

fn indexes(cx: &mut Cx<'_>, field: Field<'_>, kind: IndexKind) -> Vec<RawIndex> {
    let Some(items) = field.array(
        &mut cx.sink,
        "an array of indexes ([[tables.NAME.…_indexes]])",
    ) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| index(cx, item, kind))
        .collect()
}

fn index(cx: &mut Cx<'_>, field: Field<'_>, kind: IndexKind) -> Option<RawIndex> {
    let mut obj = field.table(&mut cx.sink, "an index with `name`")?;
    let name = obj
        .require(&mut cx.sink, "name", "the index name")
        .and_then(|f| f.string(&mut cx.sink, "an index name"));
    let partition_key = match kind {
        IndexKind::Global => obj
            .require(&mut cx.sink, "partition_key", KEY_EXPECTED)
            .and_then(|f| key_attribute(cx, f)),
        IndexKind::Local => None,
    };
    let sort_key_field = match kind {
        IndexKind::Global => obj.take("sort_key"),
        IndexKind::Local => obj.require(&mut cx.sink, "sort_key", KEY_EXPECTED),
    };
    let sort_key_place = sort_key_field
        .as_ref()
        .map(|f| (f.span.clone(), f.path.clone()));
    let sort_key = sort_key_field.and_then(|f| key_attribute(cx, f));
    let projection = obj
        .take("projection")
        .map_or(Some(Projection::All), |f| projection(cx, f));
    if kind == IndexKind::Local && obj.contains("partition_key") {
        let key = obj.take("partition_key");
        if let Some(key) = key {
            cx.sink.push(
                key.span.clone(),
                key.path.clone(),
                "`partition_key` on a local index",
                "no `partition_key`: a local index shares its table's partition key",
            );
        }
    }
    obj.finish(&mut cx.sink);
    let name = name?;
    if !limits::is_valid_table_name(&name.value) {
        name.reject(
            &mut cx.sink,
            "an index name of 3 to 255 letters, digits, `_`, `-` or `.`",
        );
        return None;
    }
    if kind == IndexKind::Global && partition_key.is_none() {
        return None;
    }
    Some(RawIndex {
        name,
        partition_key,
        sort_key,
        sort_key_place,
        projection: projection?,
    })
}

fn projection(cx: &mut Cx<'_>, field: Field<'_>) -> Option<Projection> {
    let expected = "\"all\", \"keys_only\" or { include = [\"attribute\", ...] }";
    if field.is_string() {
        let s = field.string(&mut cx.sink, expected)?;
        return match s.value.to_ascii_lowercase().as_str() {
            "all" => Some(Projection::All),
            "keys_only" => Some(Projection::KeysOnly),
            _ => {
                s.reject(&mut cx.sink, expected);
                None
            }
        };
    }
    let mut obj = field.table(&mut cx.sink, expected)?;
    let include = obj
        .require(&mut cx.sink, "include", "the attributes to project")
        .and_then(|f| {
            let (span, path) = (f.span.clone(), f.path.clone());
            let list = f.strings(&mut cx.sink, "an array of attribute names")?;
            // DynamoDB refuses an INCLUDE projection without attributes.
            if list.is_empty() {
                cx.sink.push(
                    span,
                    path,
                    "an empty array",
                    "at least one attribute (\"keys_only\" projects the keys alone)",
                );
                return None;
            }
            Some(list)
        });
    obj.finish(&mut cx.sink);
    Some(Projection::Include(
        include?.into_iter().map(|s| s.value).collect(),
    ))
}

/// Checks indexes against their table and each other, and keeps the valid ones.
fn check_indexes(
    cx: &mut Cx<'_>,
    name: &Str,
    table: &mut TableSpec,
    global: Vec<RawIndex>,
    local: Vec<RawIndex>,
) {
    // DynamoDB keeps one type per attribute name across the table's and indexes' keys.
    let mut types: BTreeMap<String, ScalarType> = BTreeMap::new();
    types.insert(table.partition_key.name.clone(), table.partition_key.ty);
    if let Some(sort) = &table.sort_key {
        if sort.name == table.partition_key.name {
            name.reject(
                &mut cx.sink,
                format!(
                    "a sort key other than the partition key `{}` (DynamoDB needs two attributes)",
                    sort.name
                ),
            );
            table.sort_key = None;
        } else {
            types.insert(sort.name.clone(), sort.ty);
        }
    }
    let mut names: Vec<String> = Vec::new();
    let counts = [
        (IndexKind::Global, global.len(), limits::MAX_GLOBAL_INDEXES),
        (IndexKind::Local, local.len(), limits::MAX_LOCAL_INDEXES),
    ];
    for (kind, raw) in global
        .into_iter()
        .map(|r| (IndexKind::Global, r))
        .chain(local.into_iter().map(|r| (IndexKind::Local, r)))
    {
        if names.contains(&raw.name.value) {
            raw.name.reject(
                &mut cx.sink,
                "an index name not used by another index of this table",
            );
            continue;
        }
        names.push(raw.name.value.clone());
        if kind == IndexKind::Local && table.sort_key.is_none() {
            raw.name.reject(
                &mut cx.sink,
                "no local index on a table without `sort_key` (DynamoDB requires a composite key)",
            );
            continue;
        }
        let partition_key = match kind {
            IndexKind::Global => raw.partition_key,
            IndexKind::Local => Some(table.partition_key.clone()),
        };
        let Some(partition_key) = partition_key else {
            continue;
        };
        if let (Some(sort), Some((span, path))) = (&raw.sort_key, &raw.sort_key_place)
            && sort.name == partition_key.name
        {
            let whose = match kind {
                IndexKind::Global => "the index's",
                IndexKind::Local => "the table's",
            };
            cx.sink.push(
                span.clone(),
                path.clone(),
                format!("sort key `{}`", sort.name),
                format!(
                    "a sort key other than {whose} partition key `{}` (DynamoDB needs two attributes)",
                    partition_key.name
                ),
            );
            continue;
        }
        let mut clash = false;
        for key in std::iter::once(&partition_key).chain(raw.sort_key.as_ref()) {
            match types.get(&key.name) {
                Some(ty) if *ty != key.ty => {
                    raw.name.reject(
                        &mut cx.sink,
                        format!(
                            "key attribute `{}` typed {} as elsewhere in the table, not {}",
                            key.name,
                            ty.as_str(),
                            key.ty.as_str()
                        ),
                    );
                    clash = true;
                }
                _ => {
                    types.insert(key.name.clone(), key.ty);
                }
            }
        }
        if clash {
            continue;
        }
        let spec = IndexSpec {
            name: raw.name.value,
            partition_key,
            sort_key: raw.sort_key,
            projection: raw.projection,
        };
        match kind {
            IndexKind::Global => table.global_indexes.push(spec),
            IndexKind::Local => table.local_indexes.push(spec),
        }
    }
    for (kind, count, max) in counts {
        if count > max {
            let key = match kind {
                IndexKind::Global => "global_indexes",
                IndexKind::Local => "local_indexes",
            };
            cx.sink.push(
                name.span.clone(),
                format!("{}.{key}", name.path),
                format!("{count} indexes"),
                format!("at most {max}"),
            );
        }
    }
    let projected: usize = table
        .global_indexes
        .iter()
        .chain(&table.local_indexes)
        .map(|i| match &i.projection {
            Projection::Include(attrs) => attrs.len(),
            _ => 0,
        })
        .sum();
    if projected > limits::MAX_PROJECTED_ATTRIBUTES {
        cx.sink.push(
            name.span.clone(),
            name.path.clone(),
            format!("{projected} attributes in INCLUDE projections"),
            format!(
                "at most {} across the table's indexes",
                limits::MAX_PROJECTED_ATTRIBUTES
            ),
        );
    }
}
