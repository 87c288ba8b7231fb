//! Table changes: the catalog, index backfills and drops, table deletion. Each runs in one
//! transaction holding the table's advisory lock exclusively, so no write group of the
//! table runs beside it.

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::IsolationLevel;

use super::{LOCK_CLASS, decode_def, decode_item, encode_item, err, lock_order, table_lock};
use crate::{
    engine::EngineError,
    schema::{IndexDef, TableDef},
};

/// Items read per batch while backfilling an index.
const BACKFILL_BATCH: i32 = 512;

pub(super) async fn catalog(pool: &Pool) -> Result<Vec<TableDef>, EngineError> {
    let client = pool.get().await.map_err(err)?;
    let statement = client
        .prepare_cached("SELECT def::text FROM nimbus_tables_catalog ORDER BY name")
        .await
        .map_err(err)?;
    let rows = client.query(&statement, &[]).await.map_err(err)?;
    rows.iter()
        .map(|row| decode_def(row.try_get(0).map_err(err)?))
        .collect()
}

/// Begins a table change, with the tables' locks held exclusively.
async fn begin<'c>(
    client: &'c mut deadpool_postgres::Object,
    table_ids: &[&str],
) -> Result<Transaction<'c>, EngineError> {
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(err)?;
    let statement = txn
        .prepare_cached("SELECT pg_advisory_xact_lock($1::int4, $2::int4)")
        .await
        .map_err(err)?;
    for lock in lock_order(table_ids.iter().map(|id| table_lock(id))) {
        txn.execute(&statement, &[&LOCK_CLASS, &lock])
            .await
            .map_err(err)?;
    }
    Ok(txn)
}

fn def_json(def: &TableDef) -> Result<String, EngineError> {
    serde_json::to_string(def).map_err(err)
}

pub(super) async fn create_table(pool: &Pool, def: &TableDef) -> Result<(), EngineError> {
    let mut client = pool.get().await.map_err(err)?;
    let txn = begin(&mut client, &[&def.id]).await?;
    // Another node may have created a table of that name since this one read the
    // catalog: its table stays, and this creation fails.
    let inserted = txn
        .execute(
            "INSERT INTO nimbus_tables_catalog (name, id, def) VALUES ($1, $2, $3::text::jsonb)
             ON CONFLICT (name) DO NOTHING",
            &[&def.name, &def.id, &def_json(def)?],
        )
        .await
        .map_err(err)?;
    if inserted == 0 {
        return Err(EngineError(format!("table {} already exists", def.name)));
    }
    txn.commit().await.map_err(err)
}

fn indexes(def: &TableDef) -> impl Iterator<Item = &IndexDef> {
    def.global_indexes.iter().chain(&def.local_indexes)
}

pub(super) async fn update_table(pool: &Pool, def: &TableDef) -> Result<(), EngineError> {
    let mut client = pool.get().await.map_err(err)?;
    let previous = {
        // The id is fixed at creation; read it first to lock the right table.
        let row = client
            .query_opt(
                "SELECT def::text FROM nimbus_tables_catalog WHERE name = $1",
                &[&def.name],
            )
            .await
            .map_err(err)?;
        row.map(|row| row.try_get::<_, String>(0).map_err(err))
            .transpose()?
    };
    let previous_id = match &previous {
        Some(json) => decode_def(json)?.id,
        None => def.id.clone(),
    };
    let txn = begin(&mut client, &[&def.id, &previous_id]).await?;
    let previous: TableDef = match txn
        .query_opt(
            "SELECT def::text FROM nimbus_tables_catalog WHERE name = $1 FOR UPDATE",
            &[&def.name],
        )
        .await
        .map_err(err)?
    {
        Some(row) => decode_def(row.try_get(0).map_err(err)?)?,
        None => {
            return Err(EngineError(format!(
                "table {} is not in the catalog",
                def.name
            )));
        }
    };
    txn.execute(
        "UPDATE nimbus_tables_catalog SET id = $2, def = $3::text::jsonb WHERE name = $1",
        &[&def.name, &def.id, &def_json(def)?],
    )
    .await
    .map_err(err)?;
    // An index whose key or projection changed is dropped and built again.
    let dropped: Vec<&str> = indexes(&previous)
        .filter(|old| !indexes(def).any(|i| i.same_entries(old)))
        .map(|i| i.name.as_str())
        .collect();
    if !dropped.is_empty() {
        txn.execute(
            "DELETE FROM nimbus_tables_index_entries
             WHERE table_id = $1 AND index_name = ANY($2::text[])",
            &[&previous.id, &dropped],
        )
        .await
        .map_err(err)?;
    }
    let added: Vec<&IndexDef> = indexes(def)
        .filter(|new| !indexes(&previous).any(|i| i.same_entries(new)))
        .collect();
    if !added.is_empty() {
        backfill(&txn, def, &added).await?;
    }
    txn.commit().await.map_err(err)
}

/// Builds new indexes from every item of the table, a batch at a time.
async fn backfill(
    txn: &Transaction<'_>,
    def: &TableDef,
    added: &[&IndexDef],
) -> Result<(), EngineError> {
    let select = txn
        .prepare_cached("SELECT item FROM nimbus_tables_items WHERE table_id = $1")
        .await
        .map_err(err)?;
    let insert = txn
        .prepare_cached(super::write::UPSERT_ENTRIES)
        .await
        .map_err(err)?;
    let portal = txn.bind(&select, &[&def.id]).await.map_err(err)?;
    loop {
        let rows = txn
            .query_portal(&portal, BACKFILL_BATCH)
            .await
            .map_err(err)?;
        let mut names = Vec::new();
        let mut keys = Vec::new();
        let mut items = Vec::new();
        for row in &rows {
            let item = decode_item(row.try_get(0).map_err(err)?)?;
            for index in added {
                if let Some((key, projected)) = def.index_entry(index, &item) {
                    names.push(index.name.as_str());
                    keys.push(key);
                    items.push(encode_item(&projected));
                }
            }
        }
        if !names.is_empty() {
            let ids = vec![def.id.as_str(); names.len()];
            txn.execute(&insert, &[&ids, &names, &keys, &items])
                .await
                .map_err(err)?;
        }
        if rows.len() < usize::try_from(BACKFILL_BATCH).unwrap_or(usize::MAX) {
            return Ok(());
        }
    }
}

pub(super) async fn delete_table(pool: &Pool, def: &TableDef) -> Result<(), EngineError> {
    let mut client = pool.get().await.map_err(err)?;
    let txn = begin(&mut client, &[&def.id]).await?;
    txn.execute(
        "DELETE FROM nimbus_tables_catalog WHERE name = $1",
        &[&def.name],
    )
    .await
    .map_err(err)?;
    txn.execute(
        "DELETE FROM nimbus_tables_items WHERE table_id = $1",
        &[&def.id],
    )
    .await
    .map_err(err)?;
    // Every index of the table, including any a stale definition does not list.
    txn.execute(
        "DELETE FROM nimbus_tables_index_entries WHERE table_id = $1",
        &[&def.id],
    )
    .await
    .map_err(err)?;
    txn.execute(
        "DELETE FROM nimbus_tables_stream WHERE table_id = $1",
        &[&def.id],
    )
    .await
    .map_err(err)?;
    txn.execute(
        "DELETE FROM nimbus_tables_stream_sequences WHERE table_id = $1",
        &[&def.id],
    )
    .await
    .map_err(err)?;
    txn.commit().await.map_err(err)
}
