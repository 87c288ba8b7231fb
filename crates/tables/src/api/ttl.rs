//! Time to live: a sweeper deletes items whose TTL attribute, a number of epoch seconds,
//! is in the past. As on DynamoDB, an attribute that is not a number, or that lies more
//! than five years in the past, never expires the item.

use std::{ops::Bound, sync::Arc};

use super::{Tables, internal};
use crate::{
    engine::{ItemWrite, RangeRead, WriteAction, WriteFailure},
    error::ApiError,
    schema::TableDef,
    value::{AttributeValue, Item},
};

/// Items examined per read while sweeping.
const SWEEP_PAGE: usize = 1000;
/// DynamoDB ignores expiry times more than five years old.
const MAX_AGE_SECONDS: f64 = 5.0 * 365.0 * 24.0 * 3600.0;

/// Whether `item` has expired at `now` (epoch seconds) under attribute `attr`.
pub(crate) fn expired(item: &Item, attr: &str, now: f64) -> bool {
    match item.get(attr) {
        Some(AttributeValue::N(n)) => n
            .to_f64()
            .is_some_and(|at| at < now && now - at <= MAX_AGE_SECONDS),
        _ => false,
    }
}

impl Tables {
    /// Deletes every expired item of every table with TTL enabled; returns how many.
    ///
    /// # Errors
    /// When the engine fails.
    pub async fn sweep_expired(&self, now: f64) -> Result<usize, ApiError> {
        self.refresh_if_stale().await;
        let defs: Vec<Arc<TableDef>> = self
            .table_names()
            .iter()
            .filter_map(|name| self.table(name).ok())
            .filter(|def| def.ttl_attribute.is_some())
            .collect();
        let mut deleted = 0;
        let mut failure = None;
        for def in defs {
            // One table that fails (deleted on another node since this one read the
            // catalog, say) does not keep the others from being swept.
            match self.sweep_table(&def, now).await {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(table = %def.name, error = %e.message, "cannot sweep a table's expired items");
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) if deleted == 0 => Err(e),
            _ => Ok(deleted),
        }
    }

    /// Deletes stream records older than the retention period (24 hours) at `now`.
    ///
    /// # Errors
    /// When the engine fails.
    pub async fn trim_streams(&self, now: f64) -> Result<(), ApiError> {
        for name in self.table_names() {
            if let Ok(def) = self.table(&name) {
                self.engine
                    .trim_streams(def, now - crate::engine::RETENTION_SECONDS)
                    .await
                    .map_err(internal)?;
            }
        }
        Ok(())
    }

    async fn sweep_table(&self, def: &Arc<TableDef>, now: f64) -> Result<usize, ApiError> {
        let Some(attr) = def.ttl_attribute.clone() else {
            return Ok(0);
        };
        let mut start = Bound::Unbounded;
        let mut deleted = 0;
        loop {
            let page = self
                .engine
                .range(RangeRead {
                    table: Arc::clone(def),
                    index: None,
                    start: start.clone(),
                    end: Bound::Unbounded,
                    forward: true,
                    limit: Some(SWEEP_PAGE),
                    max_bytes: usize::MAX,
                    segment: None,
                })
                .await
                .map_err(internal)?;
            let writes: Vec<ItemWrite> = page
                .items
                .iter()
                .filter(|item| expired(item, &attr, now))
                .filter_map(|item| def.encoded_key(item))
                .map(|key| {
                    let attr = attr.clone();
                    ItemWrite {
                        table: Arc::clone(def),
                        key,
                        // Checked again at write time: the item may have changed since.
                        decide: Box::new(move |current| {
                            Ok(match current {
                                Some(item) if expired(item, &attr, now) => WriteAction::Expire,
                                _ => WriteAction::Keep,
                            })
                        }),
                    }
                })
                .collect();
            if !writes.is_empty() {
                match self.write(writes).await {
                    Ok(written) => {
                        deleted += written
                            .iter()
                            .filter(|w| w.old.is_some() && w.new.is_none())
                            .count();
                    }
                    Err(WriteFailure::Storage(e)) => return Err(internal(e)),
                    Err(WriteFailure::Rejected(_)) => {}
                }
            }
            match (
                page.truncated,
                page.items.last().and_then(|i| def.encoded_key(i)),
            ) {
                (true, Some(last)) => start = Bound::Excluded(last),
                _ => break,
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_dynamodb() {
        let item = |v: AttributeValue| -> Item { [("exp".to_owned(), v)].into() };
        let n = |s: &str| AttributeValue::N(s.parse().unwrap());
        let now = 2_000_000_000.0;
        assert!(expired(&item(n("1999999999")), "exp", now));
        assert!(!expired(&item(n("2000000001")), "exp", now));
        assert!(!expired(&item(AttributeValue::S("1".into())), "exp", now));
        assert!(!expired(&item(n("1")), "exp", now), "older than five years");
        assert!(!expired(&item(n("1999999999")), "other", now));
    }
}
