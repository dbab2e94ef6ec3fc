//! SQLite implementation of the storage traits: WAL, one writer connection, a read pool, key lists
//! as JSON arrays expanded with `json_each`, chunked multi-row writes (`writes.rs`). The aggregates'
//! logic is shared (`storage::sql`).

mod writes;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::common::KeyCache;
use super::sql::{Dialect, migrations, stores};
use super::{Result, StorageError};
use crate::config::StorageConfig;

/// How long a statement waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page cache of the writer (negative = KiB): the time-series primary keys start with a random
/// UUID, so inserts touch pages all over the tree; SQLite's default 2 MiB thrashes early.
const WRITER_CACHE_KIB: &str = "-65536";

pub struct SqliteStore {
    /// Exactly one connection: SQLite has one writer, so queueing happens in the pool, not in locks.
    writer: SqlitePool,
    reader: SqlitePool,
    keys: KeyCache,
    sql: writes::InsertSql,
}

stores!(SqliteStore, sqlx::Sqlite, "sqlite", std::convert::identity);

/// Buckets of `[$3, $4)` of length $5; `$sum` is `sum(long_v)` only for SUM: it raises on overflow.
macro_rules! aggregate {
    ($sum:literal) => {
        concat!(
            "SELECT (ts - $3) / $5 AS idx, count(*) AS cnt, count(long_v) AS cnt_l, count(dbl_v) AS cnt_d, ",
            $sum,
            " AS sum_l, total(long_v) AS sum_lf, sum(dbl_v) AS sum_d, min(long_v) AS min_l, \
             max(long_v) AS max_l, min(dbl_v) AS min_d, max(dbl_v) AS max_d, min(str_v) AS min_s, \
             max(str_v) AS max_s FROM ts_kv WHERE entity_id = $1 AND key_id = $2 AND ts >= $3 AND ts < $4 \
             GROUP BY idx ORDER BY idx"
        )
    };
}

impl SqliteStore {
    const SQL: Dialect = Dialect {
        find: "instr",
        // `WHERE true` tells SQLite's parser that ON CONFLICT is the upsert clause.
        insert_keys: "INSERT INTO ts_kv_dictionary (key) SELECT value FROM json_each($1) WHERE true \
             ON CONFLICT (key) DO NOTHING",
        select_keys: "SELECT key, key_id FROM ts_kv_dictionary WHERE key IN (SELECT value FROM json_each($1))",
        attrs_some: "SELECT attribute_key, bool_v, long_v, dbl_v, str_v, json_v, last_update_ts \
             FROM attributes WHERE entity_id = $1 AND scope = $2 \
             AND attribute_key IN (SELECT value FROM json_each($3)) ORDER BY attribute_key",
        delete_attrs: "DELETE FROM attributes WHERE entity_id = $1 AND scope = $2 \
             AND attribute_key IN (SELECT value FROM json_each($3)) RETURNING attribute_key",
        latest_some: "SELECT k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, l.json_v FROM ts_kv_latest l \
             JOIN ts_kv_dictionary k ON k.key_id = l.key_id WHERE l.entity_id = $1 \
             AND k.key IN (SELECT value FROM json_each($2)) ORDER BY k.key",
        delete_points: "DELETE FROM ts_kv WHERE entity_id = $1 AND key_id IN (SELECT value FROM json_each($2)) \
             AND ($3 IS NULL OR (ts >= $3 AND ts < $4))",
        // Like ThingsBoard, a ranged delete removes the latest value only when it lies in the range.
        delete_latest: "DELETE FROM ts_kv_latest WHERE entity_id = $1 \
             AND key_id IN (SELECT value FROM json_each($2)) AND ($3 IS NULL OR (ts >= $3 AND ts < $4))",
        aggregate: aggregate!("NULL"),
        aggregate_sum: aggregate!("sum(long_v)"),
        expire_rpcs: "UPDATE rpc SET status = 'EXPIRED' WHERE expiration_time <= $1 \
             AND status IN ('QUEUED', 'SENT', 'TIMEOUT', 'DELIVERED') \
             AND (status <> 'DELIVERED' OR coalesce(json_extract(request, '$.oneway'), 0) = 0)",
        has_migrations: "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        // A transaction-consistent copy, taken while the writer goes on (readers do not block it).
        backup: Some("VACUUM INTO $1"),
        no_backup: "",
    };

    const MIGRATIONS: &[(i64, &str, &str)] = migrations!("sqlite":
        (1, "init", "0001_init.sql"),
        (2, "rpc", "0002_rpc.sql"),
        (3, "rpc_timeout", "0003_rpc_timeout.sql"),
        (4, "auth", "0004_auth.sql"),
        (5, "profiles", "0005_profiles.sql"),
        (6, "tenancy", "0006_tenancy.sql"),
        (7, "ota", "0007_ota.sql"),
        (9, "claims", "0009_claims.sql"),
        (10, "ota_assignment", "0010_ota_assignment.sql"),
        (11, "profile_ota", "0011_profile_ota.sql"),
        (13, "retention", "0013_retention.sql"),
    );

    /// Opens (creating if missing) the database file named by `sqlite://PATH` or `sqlite:PATH`.
    pub async fn connect(url: &str, options: &StorageConfig) -> Result<Self> {
        let synchronous =
            SqliteSynchronous::from_str(&options.sqlite_synchronous).map_err(|_| {
                StorageError::Database(format!(
                    "invalid sqlite_synchronous '{}': expected FULL or NORMAL",
                    options.sqlite_synchronous
                ))
            })?;
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // The writer connects first so that the file and its WAL exist before the readers open it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(connect.clone().pragma("cache_size", WRITER_CACHE_KIB))
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .test_before_acquire(false)
            .connect_with(connect)
            .await?;
        Ok(Self {
            writer,
            reader,
            keys: KeyCache::default(),
            sql: writes::InsertSql::new(),
        })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Key lists are one JSON array, so every statement text stays static.
    fn text_list(keys: &[String]) -> Result<String> {
        serde_json::to_string(keys).map_err(|e| StorageError::Database(e.to_string()))
    }

    fn id_list(ids: &[i32]) -> Result<String> {
        serde_json::to_string(ids).map_err(|e| StorageError::Database(e.to_string()))
    }

    fn clean_text(text: &str) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(text)
    }

    async fn close_pools(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
