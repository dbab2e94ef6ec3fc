//! SQLite implementation of the storage traits: WAL, one writer connection, a read pool,
//! runtime queries. Submodules hold the SQL of each aggregate.

mod accounts;
mod devices;
mod rpc;
mod telemetry;
mod writes;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::common::KeyCache;
use super::{Result, StorageError, Store, WriteOp};
use crate::config::StorageConfig;

mod rows {
    //! Row decoders for SQLite rows.
    super::super::common::row_decoders!(sqlx::sqlite::SqliteRow, std::convert::identity);
}

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_init.sql"
        )),
    ),
    (
        2,
        "rpc",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0002_rpc.sql"
        )),
    ),
    (
        3,
        "rpc_timeout",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0003_rpc_timeout.sql"
        )),
    ),
];

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

impl SqliteStore {
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
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        super::common::migrator(MIGRATIONS)
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn commit(&self, ops: &[WriteOp]) -> Result<()> {
        self.commit_batch(ops).await
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
