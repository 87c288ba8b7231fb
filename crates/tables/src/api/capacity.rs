//! `ConsumedCapacity`, computed as DynamoDB charges: a write unit per started KB written,
//! a read unit per started 4 KB read (half for eventually consistent reads).

use serde_json::{Value as Json, json};

use super::request::Req;
use crate::{error::ApiError, schema::TableDef};

/// What the caller asked for in `ReturnConsumedCapacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    None,
    Total,
    Indexes,
}

impl Report {
    pub(crate) fn from_req(req: &Req<'_>) -> Result<Report, ApiError> {
        Ok(
            match req.opt_enum("ReturnConsumedCapacity", &["INDEXES", "TOTAL", "NONE"])? {
                Some("INDEXES") => Report::Indexes,
                Some("TOTAL") => Report::Total,
                _ => Report::None,
            },
        )
    }
}

/// Write units for an item of `bytes` bytes.
pub(crate) fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// Read units for `bytes` bytes read.
pub(crate) fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// A transaction's `ConsumedCapacity` list: per table, in the order first named, the
/// read and write units (already doubled, as DynamoDB charges transactions), or `None`
/// when not asked for.
pub(crate) fn transaction(
    report: Report,
    used: &[(std::sync::Arc<TableDef>, f64, f64)],
) -> Option<Json> {
    if report == Report::None {
        return None;
    }
    let mut tables: Vec<(&TableDef, f64, f64)> = Vec::new();
    for (def, read, write) in used {
        match tables.iter_mut().find(|(d, ..)| d.name == def.name) {
            Some(entry) => {
                entry.1 += read;
                entry.2 += write;
            }
            None => tables.push((def, *read, *write)),
        }
    }
    Some(
        tables
            .into_iter()
            .map(|(def, read, write)| {
                let mut out = json!({ "TableName": def.name, "CapacityUnits": read + write });
                if report == Report::Indexes {
                    let split = json!({
                        "CapacityUnits": read + write,
                        "ReadCapacityUnits": read,
                        "WriteCapacityUnits": write,
                    });
                    out["ReadCapacityUnits"] = json!(read);
                    out["WriteCapacityUnits"] = json!(write);
                    out["Table"] = split;
                }
                out
            })
            .collect(),
    )
}

/// The `ConsumedCapacity` member, or `None` when not asked for.
pub(crate) fn consumed(
    report: Report,
    def: &TableDef,
    units: f64,
    read: bool,
    index: Option<&str>,
) -> Option<Json> {
    let kind = if read {
        "ReadCapacityUnits"
    } else {
        "WriteCapacityUnits"
    };
    match report {
        Report::None => None,
        Report::Total => Some(json!({ "TableName": def.name, "CapacityUnits": units })),
        Report::Indexes => {
            let mut out = json!({
                "TableName": def.name,
                "CapacityUnits": units,
                kind: units,
            });
            match index {
                Some(name) => {
                    let global = def.global_indexes.iter().any(|i| i.name == name);
                    let member = if global {
                        "GlobalSecondaryIndexes"
                    } else {
                        "LocalSecondaryIndexes"
                    };
                    out[member] = json!({ name: { "CapacityUnits": units, kind: units } });
                    out["Table"] = json!({ "CapacityUnits": 0.0, kind: 0.0 });
                }
                None => out["Table"] = json!({ "CapacityUnits": units, kind: units }),
            }
            Some(out)
        }
    }
}
