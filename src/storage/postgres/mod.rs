//! PostgreSQL implementation of the storage traits: native UUID/JSONB columns, key lists as arrays,
//! one-statement `UNNEST` batch writes (`writes.rs`). The aggregates' logic is shared (`storage::sql`).

mod writes;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::Result;
use super::common::KeyCache;
use super::sql::{Dialect, migrations, stores};
use crate::config::StorageConfig;

pub struct PgStore {
    pool: PgPool,
    keys: KeyCache,
    /// How `batch_conn` is (re)opened.
    connect: PgConnectOptions,
    /// The group commit's own connection (`writes.rs`); None until the first batch and after a
    /// failure that may have broken it.
    batch_conn: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
}

stores!(
    PgStore,
    sqlx::Postgres,
    "postgres",
    crate::storage::common::compact_json
);

/// Buckets of `[$3, $4)` of length $5. `sum(bigint)` is numeric: exact when it fits a bigint.
macro_rules! aggregate {
    () => {
        "SELECT (ts - $3) / $5 AS idx, count(*) AS cnt, count(long_v) AS cnt_l, count(dbl_v) AS cnt_d, \
         CASE WHEN sum(long_v) BETWEEN -9223372036854775808 AND 9223372036854775807 THEN sum(long_v)::int8 END AS sum_l, \
         sum(long_v)::float8 AS sum_lf, sum(dbl_v) AS sum_d, min(long_v) AS min_l, max(long_v) AS max_l, \
         min(dbl_v) AS min_d, max(dbl_v) AS max_d, min(str_v) AS min_s, max(str_v) AS max_s FROM ts_kv \
         WHERE entity_id = $1 AND key_id = $2 AND ts >= $3 AND ts < $4 GROUP BY idx ORDER BY idx"
    };
}

impl PgStore {
    const SQL: Dialect = Dialect {
        find: "strpos",
        insert_keys: "INSERT INTO ts_kv_dictionary (key) SELECT unnest($1::text[]) ORDER BY 1 \
             ON CONFLICT (key) DO NOTHING",
        select_keys: "SELECT key, key_id FROM ts_kv_dictionary WHERE key = ANY($1)",
        attrs_some: "SELECT attribute_key, bool_v, long_v, dbl_v, str_v, json_v::text AS json_v, last_update_ts \
             FROM attributes WHERE entity_id = $1 AND scope = $2 AND attribute_key = ANY($3) ORDER BY attribute_key",
        delete_attrs: "DELETE FROM attributes WHERE entity_id = $1 AND scope = $2 AND attribute_key = ANY($3) \
             RETURNING attribute_key",
        latest_some: "SELECT k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, l.json_v::text AS json_v \
             FROM ts_kv_latest l JOIN ts_kv_dictionary k ON k.key_id = l.key_id \
             WHERE l.entity_id = $1 AND k.key = ANY($2) ORDER BY k.key",
        delete_points: "DELETE FROM ts_kv WHERE entity_id = $1 AND key_id = ANY($2) \
             AND ($3::int8 IS NULL OR (ts >= $3 AND ts < $4))",
        // Like ThingsBoard, a ranged delete removes the latest value only when it lies in the range.
        delete_latest: "DELETE FROM ts_kv_latest WHERE entity_id = $1 AND key_id = ANY($2) \
             AND ($3::int8 IS NULL OR (ts >= $3 AND ts < $4))",
        aggregate: aggregate!(),
        aggregate_sum: aggregate!(),
        expire_rpcs: "UPDATE rpc SET status = 'EXPIRED' WHERE expiration_time <= $1 \
             AND status IN ('QUEUED', 'SENT', 'TIMEOUT', 'DELIVERED') \
             AND (status <> 'DELIVERED' OR coalesce((request->>'oneway')::boolean, false) = false)",
        has_migrations: "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename = '_sqlx_migrations'",
        backup: None,
        no_backup: "ferroboard backup copies SQLite databases only: back up PostgreSQL with pg_dump \
             (e.g. pg_dump --format=custom --file=ferroboard.dump DATABASE_URL; restore with pg_restore), \
             see docs/operations.md",
    };

    const MIGRATIONS: &[(i64, &str, &str)] = migrations!("postgres":
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

    pub async fn connect(url: &str, options: &StorageConfig) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .connect_with(connect.clone())
            .await?;
        Ok(Self {
            pool,
            keys: KeyCache::default(),
            connect,
            batch_conn: tokio::sync::Mutex::new(None),
        })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Key lists are `text[]`.
    fn text_list(keys: &[String]) -> Result<&[String]> {
        Ok(keys)
    }

    fn id_list(ids: &[i32]) -> Result<&[i32]> {
        Ok(ids)
    }

    /// PostgreSQL refuses NUL in text; like ThingsBoard, it is dropped rather than failing the batch.
    fn clean_text(text: &str) -> std::borrow::Cow<'_, str> {
        writes::pg_text(text)
    }

    async fn close_pools(&self) {
        self.pool.close().await;
        self.close_batch_conn().await;
    }
}
