//! PostgreSQL implementation of the storage traits: native UUID/JSONB columns, runtime queries,
//! multi-row `UNNEST` writes. Submodules hold the SQL of each aggregate.

mod accounts;
mod devices;
mod rpc;
mod telemetry;
mod writes;

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::common::KeyCache;
use super::{Result, Store, WriteOp};
use crate::config::StorageConfig;

mod rows {
    //! Row decoders for PostgreSQL rows (JSONB columns are selected as `::text`).
    super::super::common::row_decoders!(sqlx::postgres::PgRow, super::super::common::compact_json);
}

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0001_init.sql"
        )),
    ),
    (
        2,
        "rpc",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0002_rpc.sql"
        )),
    ),
    (
        3,
        "rpc_timeout",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0003_rpc_timeout.sql"
        )),
    ),
];

pub struct PgStore {
    pool: PgPool,
    keys: KeyCache,
}

impl PgStore {
    pub async fn connect(url: &str, options: &StorageConfig) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .connect_with(connect)
            .await?;
        Ok(Self {
            pool,
            keys: KeyCache::default(),
        })
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        super::common::migrator(MIGRATIONS).run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn commit(&self, ops: &[WriteOp]) -> Result<()> {
        self.commit_batch(ops).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
