//! The engine's relations, created on connect and versioned.

use deadpool_postgres::Object;
use tokio_postgres::IsolationLevel;

use super::{LOCK_CLASS, SCHEMA_LOCK, err};
use crate::engine::EngineError;

/// The layout this build reads and writes; a database with a higher version was made by a
/// newer Nimbus and is refused rather than misread.
pub(super) const SCHEMA_VERSION: i64 = 1;

const META: &str = "CREATE TABLE IF NOT EXISTS nimbus_tables_meta (
    name text PRIMARY KEY,
    value text NOT NULL
)";

const RELATIONS: &str = r#"
CREATE TABLE IF NOT EXISTS nimbus_tables_catalog (
    name text COLLATE "C" PRIMARY KEY,
    id text NOT NULL UNIQUE,
    def jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS nimbus_tables_items (
    table_id text NOT NULL,
    key bytea NOT NULL,
    size bigint NOT NULL,
    item bytea NOT NULL,
    PRIMARY KEY (table_id, key)
);
CREATE TABLE IF NOT EXISTS nimbus_tables_index_entries (
    table_id text NOT NULL,
    index_name text NOT NULL,
    key bytea NOT NULL,
    item bytea NOT NULL,
    PRIMARY KEY (table_id, index_name, key)
);
CREATE TABLE IF NOT EXISTS nimbus_tables_stream (
    table_id text NOT NULL,
    seq bigint NOT NULL,
    label text NOT NULL,
    created double precision NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (table_id, seq)
);
-- A stream's records by label: a table's streams share its numbering, and reading one
-- (a disabled one, say) must not walk the others' records.
CREATE INDEX IF NOT EXISTS nimbus_tables_stream_by_label
    ON nimbus_tables_stream (table_id, label, seq);
CREATE TABLE IF NOT EXISTS nimbus_tables_stream_sequences (
    table_id text PRIMARY KEY,
    last_seq bigint NOT NULL
);
"#;

/// Creates what is missing, under a lock so that nodes starting together do not race on
/// `CREATE TABLE IF NOT EXISTS` (which is not safe against a concurrent creation).
pub(super) async fn create(client: &mut Object) -> Result<(), EngineError> {
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(err)?;
    txn.execute(
        "SELECT pg_advisory_xact_lock($1::int4, $2::int4)",
        &[&LOCK_CLASS, &SCHEMA_LOCK],
    )
    .await
    .map_err(err)?;
    txn.batch_execute(META).await.map_err(err)?;
    let row = txn
        .query_opt(
            "SELECT value FROM nimbus_tables_meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .map_err(err)?;
    if let Some(row) = row {
        let value: String = row.try_get(0).map_err(err)?;
        let version: i64 = value.parse().map_err(|_| {
            EngineError(format!(
                "nimbus_tables_meta has an invalid schema_version {value:?}"
            ))
        })?;
        if version > SCHEMA_VERSION {
            return Err(EngineError(format!(
                "the database's table schema is version {version}, newer than this Nimbus \
                 understands ({SCHEMA_VERSION}); upgrade Nimbus"
            )));
        }
    }
    txn.batch_execute(RELATIONS).await.map_err(err)?;
    txn.execute(
        "INSERT INTO nimbus_tables_meta (name, value) VALUES ('schema_version', $1)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&SCHEMA_VERSION.to_string()],
    )
    .await
    .map_err(err)?;
    txn.commit().await.map_err(err)
}
