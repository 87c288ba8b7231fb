//! Reads: single items, batches from one snapshot, key ranges and table statistics.

use std::ops::Bound;

use deadpool_postgres::Pool;
use tokio_postgres::{IsolationLevel, Portal, Row, Transaction, types::ToSql};

use super::{decode_item, err};
use crate::{
    engine::{EngineError, Page, RangeRead, TableStats},
    schema::TableDef,
    value::{Item, item_size},
};

/// A range read whose limit is below this is answered by one statement with that limit;
/// larger or unlimited reads page through a cursor, so a read that stops early (at the
/// byte budget) never pulls the rest of the range from the server.
const ONE_STATEMENT_LIMIT: usize = 1000;

/// Rows fetched by a cursor's first batch, and the most fetched by any later one.
const FIRST_BATCH: i32 = 128;
const MAX_BATCH: i32 = 4096;

pub(super) async fn get(
    pool: &Pool,
    table: &TableDef,
    key: &[u8],
) -> Result<Option<Item>, EngineError> {
    let client = pool.get().await.map_err(err)?;
    let statement = client
        .prepare_cached("SELECT item FROM nimbus_tables_items WHERE table_id = $1 AND key = $2")
        .await
        .map_err(err)?;
    match client
        .query_opt(&statement, &[&table.id, &key])
        .await
        .map_err(err)?
    {
        Some(row) => Ok(Some(decode_item(row.try_get(0).map_err(err)?)?)),
        None => Ok(None),
    }
}

/// One statement reads every key, so all come from one snapshot whatever the isolation.
pub(super) async fn get_many(
    pool: &Pool,
    keys: &[(std::sync::Arc<TableDef>, Vec<u8>)],
) -> Result<Vec<Option<Item>>, EngineError> {
    let mut out = vec![None; keys.len()];
    if keys.is_empty() {
        return Ok(out);
    }
    let ids: Vec<&str> = keys.iter().map(|(table, _)| table.id.as_str()).collect();
    let encoded: Vec<&[u8]> = keys.iter().map(|(_, key)| key.as_slice()).collect();
    let client = pool.get().await.map_err(err)?;
    let statement = client.prepare_cached(SELECT_KEYS).await.map_err(err)?;
    for row in client
        .query(&statement, &[&ids, &encoded])
        .await
        .map_err(err)?
    {
        let (position, item) = keyed_row(&row)?;
        if let Some(slot) = out.get_mut(position) {
            *slot = Some(item);
        }
    }
    Ok(out)
}

/// The current items of a list of `(table id, key)`, each row with the 1-based position
/// of its key in the list.
pub(super) const SELECT_KEYS: &str = "SELECT k.position, i.item
    FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS k(table_id, key, position)
    JOIN nimbus_tables_items AS i ON i.table_id = k.table_id AND i.key = k.key";

/// A row of [`SELECT_KEYS`]: the 0-based position and the item.
pub(super) fn keyed_row(row: &Row) -> Result<(usize, Item), EngineError> {
    let position: i64 = row.try_get(0).map_err(err)?;
    let position = usize::try_from(position - 1).map_err(err)?;
    Ok((position, decode_item(row.try_get(1).map_err(err)?)?))
}

pub(super) async fn stats(pool: &Pool, table: &TableDef) -> Result<TableStats, EngineError> {
    let client = pool.get().await.map_err(err)?;
    let statement = client
        .prepare_cached(
            "SELECT count(*), coalesce(sum(size), 0)::bigint
             FROM nimbus_tables_items WHERE table_id = $1",
        )
        .await
        .map_err(err)?;
    let row = client
        .query_one(&statement, &[&table.id])
        .await
        .map_err(err)?;
    let count: i64 = row.try_get(0).map_err(err)?;
    let size: i64 = row.try_get(1).map_err(err)?;
    Ok(TableStats {
        item_count: u64::try_from(count).map_err(err)?,
        size_bytes: u64::try_from(size).map_err(err)?,
    })
}

/// The statement of a range read and its parameters (borrowed from `read` and `limit`).
fn range_statement<'a>(
    read: &'a RangeRead,
    limit: Option<&'a i64>,
) -> (String, Vec<&'a (dyn ToSql + Sync)>) {
    let mut params: Vec<&'a (dyn ToSql + Sync)> = vec![&read.table.id];
    let mut sql = match &read.index {
        Some(index) => {
            params.push(index);
            "SELECT item FROM nimbus_tables_index_entries WHERE table_id = $1 AND index_name = $2"
                .to_owned()
        }
        None => "SELECT item FROM nimbus_tables_items WHERE table_id = $1".to_owned(),
    };
    for (bound, inclusive, exclusive) in [(&read.start, ">=", ">"), (&read.end, "<=", "<")] {
        let (op, value) = match bound {
            Bound::Included(value) => (inclusive, value),
            Bound::Excluded(value) => (exclusive, value),
            Bound::Unbounded => continue,
        };
        params.push(value);
        sql.push_str(&format!(" AND key {op} ${}", params.len()));
    }
    sql.push_str(if read.forward {
        " ORDER BY key"
    } else {
        " ORDER BY key DESC"
    });
    if let Some(limit) = limit {
        params.push(limit);
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    (sql, params)
}

pub(super) async fn range(pool: &Pool, read: &RangeRead) -> Result<Page, EngineError> {
    let mut client = pool.get().await.map_err(err)?;
    // Reading stops at the limit without looking further (the page is then truncated
    // whatever follows), so `limit` rows always suffice when no segment filter skips any.
    if read.segment.is_none()
        && let Some(limit) = read.limit.filter(|&limit| limit < ONE_STATEMENT_LIMIT)
    {
        let limit = i64::try_from(limit).map_err(err)?;
        let (sql, params) = range_statement(read, Some(&limit));
        let statement = client.prepare_cached(&sql).await.map_err(err)?;
        let rows = client.query(&statement, &params).await.map_err(err)?;
        return page(read, &mut Cursor::Fetched(rows.into_iter())).await;
    }
    let (sql, params) = range_statement(read, None);
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(err)?;
    let statement = txn.prepare_cached(&sql).await.map_err(err)?;
    let portal = txn.bind(&statement, &params).await.map_err(err)?;
    let mut cursor = Cursor::Portal {
        txn: &txn,
        portal,
        rows: Vec::new().into_iter(),
        batch: FIRST_BATCH,
        done: false,
    };
    let page = page(read, &mut cursor).await?;
    drop(cursor);
    txn.commit().await.map_err(err)?;
    Ok(page)
}

/// Reads a page as the embedded engine does: items in order until the limit or the byte
/// budget is reached (skipping other segments' items), then whether anything follows.
async fn page(read: &RangeRead, rows: &mut Cursor<'_, '_>) -> Result<Page, EngineError> {
    let mut page = Page::default();
    let mut bytes = 0;
    loop {
        // DynamoDB reports a LastEvaluatedKey whenever it stops at the limit.
        let at_limit = read.limit.is_some_and(|limit| page.items.len() >= limit);
        if at_limit || bytes >= read.max_bytes {
            page.truncated = at_limit || rows.next().await?.is_some();
            break;
        }
        let Some(row) = rows.next().await? else { break };
        let item = decode_item(row.try_get(0).map_err(err)?)?;
        if let Some((segment, total)) = read.segment
            && read.table.segment_of(&item, total) != segment
        {
            continue;
        }
        bytes += item_size(&item);
        page.items.push(item);
    }
    Ok(page)
}

/// Rows of a range read: all fetched at once, or fetched in growing batches from a portal.
enum Cursor<'t, 'c> {
    Fetched(std::vec::IntoIter<Row>),
    Portal {
        txn: &'t Transaction<'c>,
        portal: Portal,
        rows: std::vec::IntoIter<Row>,
        batch: i32,
        done: bool,
    },
}

impl Cursor<'_, '_> {
    async fn next(&mut self) -> Result<Option<Row>, EngineError> {
        match self {
            Cursor::Fetched(rows) => Ok(rows.next()),
            Cursor::Portal {
                txn,
                portal,
                rows,
                batch,
                done,
            } => {
                if let Some(row) = rows.next() {
                    return Ok(Some(row));
                }
                if *done {
                    return Ok(None);
                }
                let fetched = txn.query_portal(portal, *batch).await.map_err(err)?;
                // A short batch means the portal has run to its end.
                *done = fetched.len() < usize::try_from(*batch).unwrap_or(usize::MAX);
                *batch = batch.saturating_mul(2).min(MAX_BATCH);
                *rows = fetched.into_iter();
                Ok(rows.next())
            }
        }
    }
}
