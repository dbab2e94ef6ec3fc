//! The one implementation of every aggregate's store, stamped out once per backend by `stores!`.
//!
//! The bodies are ordinary sqlx code, written once in macros and expanded in `postgres` and
//! `sqlite`: code generic over `sqlx::Database` would need a where-clause for every bound and read
//! type and for the pool and connection executors (no single trait implies them), on every function.
//! What differs between the databases is data each backend provides: its `Dialect` statements, the
//! shape of a list parameter (`text_list`/`id_list`), its pools (`reader`/`writer`) and its bulk
//! upserts (`writes.rs`). Statements use `$N` parameters on both databases.

pub(crate) mod accounts;
pub(crate) mod customers;
pub(crate) mod devices;
pub(crate) mod ota;
pub(crate) mod profiles;
pub(crate) mod rpc;
pub(crate) mod sessions;
pub(crate) mod telemetry;

pub(crate) use accounts::account_stores;
pub(crate) use customers::customer_stores;
pub(crate) use devices::device_stores;
pub(crate) use ota::ota_store;
pub(crate) use profiles::profile_store;
pub(crate) use rpc::rpc_store;
pub(crate) use sessions::session_store;
pub(crate) use telemetry::telemetry_stores;

/// SQL text that differs between PostgreSQL and SQLite; every other statement is shared.
pub(crate) struct Dialect {
    /// Adds the keys of `$1` (a key list) to `ts_kv_dictionary`, skipping known ones.
    pub insert_keys: &'static str,
    /// `(key, key_id)` of the keys of `$1` (a key list).
    pub select_keys: &'static str,
    /// `f(haystack, needle)`: the 1-based position of a substring, 0 when absent.
    pub find: &'static str,
    /// Attributes of some keys: `$1` entity, `$2` scope, `$3` key list.
    pub attrs_some: &'static str,
    /// Deletes attributes: `$1` entity, `$2` scope, `$3` key list; returns the deleted keys.
    pub delete_attrs: &'static str,
    /// Latest values of some keys: `$1` entity, `$2` key list.
    pub latest_some: &'static str,
    /// Deletes points: `$1` entity, `$2` key-id list, `[$3, $4)` or all when `$3` is NULL.
    pub delete_points: &'static str,
    /// Deletes latest values inside the range, as `delete_points`.
    pub delete_latest: &'static str,
    /// Buckets of `[$3, $4)` of length `$5` for `$1` entity, `$2` key id (not SUM).
    pub aggregate: &'static str,
    /// As `aggregate`, with the exact `sum_l` of SUM.
    pub aggregate_sum: &'static str,
    /// Marks overdue open RPCs (and delivered two-way ones) EXPIRED: `$1` now.
    pub expire_rpcs: &'static str,
    /// 1 when the migrations table exists, else 0.
    pub has_migrations: &'static str,
    /// Copies the database into the new file `$1`, when the backend can.
    pub backup: Option<&'static str>,
    /// Why `backup` cannot, when it is None.
    pub no_backup: &'static str,
}

/// The migrations of one backend's folder `migrations/<dir>/`, embedded.
macro_rules! migrations {
    ($dir:literal: $(($version:literal, $name:literal, $file:literal)),+ $(,)?) => {
        &[$((
            $version,
            $name,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $dir, "/", $file)),
        )),+]
    };
}
pub(crate) use migrations;

/// Implements `Store` and every aggregate trait for `$store` on database `$db`. The store provides
/// `reader()` and `writer()` (pools), `keys` (the key cache), `SQL` (its `Dialect`), `MIGRATIONS`,
/// `text_list`/`id_list` (a list parameter), `clean_text` (text as the database stores it),
/// `write_batch` (the bulk upserts of one batch, in one transaction) and `close_pools`; `$json_text` turns
/// stored JSON text into the compact form.
macro_rules! stores {
    ($store:ident, $db:ty, $backend:literal, $json_text:path) => {
        /// A statement with its parameters, as paging binds them.
        type PageArgs = sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>;

        mod rows {
            //! Row decoders (JSON columns are read as text).
            $crate::storage::common::row_decoders!(<$db as sqlx::Database>::Row, $json_text);
        }

        $crate::storage::sql::account_stores!($store, $db);
        $crate::storage::sql::customer_stores!($store);
        $crate::storage::sql::device_stores!($store, $db);
        $crate::storage::sql::profile_store!($store);
        $crate::storage::sql::ota_store!($store);
        $crate::storage::sql::rpc_store!($store);
        $crate::storage::sql::session_store!($store, $db);
        $crate::storage::sql::telemetry_stores!($store);

        #[async_trait::async_trait]
        impl $crate::storage::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> $crate::storage::Result<()> {
                $crate::storage::common::migrator(Self::MIGRATIONS)
                    .run(self.writer())
                    .await?;
                Ok(())
            }

            async fn pending_migrations(&self) -> $crate::storage::Result<Vec<(i64, String)>> {
                let exists: i64 = sqlx::query_scalar(Self::SQL.has_migrations)
                    .fetch_one(self.reader())
                    .await?;
                let applied: Vec<i64> = if exists > 0 {
                    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                        .fetch_all(self.reader())
                        .await?
                } else {
                    Vec::new()
                };
                Ok(Self::MIGRATIONS
                    .iter()
                    .filter(|(version, _, _)| !applied.contains(version))
                    .map(|(version, name, _)| (*version, (*name).to_owned()))
                    .collect())
            }

            async fn backup(&self, path: &std::path::Path) -> $crate::storage::Result<()> {
                let Some(sql) = Self::SQL.backup else {
                    return Err($crate::storage::StorageError::Invalid(
                        Self::SQL.no_backup.to_owned(),
                    ));
                };
                if path.exists() {
                    return Err($crate::storage::StorageError::Invalid(format!(
                        "{} exists already: a backup never overwrites a file",
                        path.display()
                    )));
                }
                let target = path.to_str().ok_or_else(|| {
                    $crate::storage::StorageError::Invalid(format!(
                        "{} is not a UTF-8 path",
                        path.display()
                    ))
                })?;
                sqlx::query(sql).bind(target).execute(self.reader()).await?;
                Ok(())
            }

            async fn ping(&self) -> $crate::storage::Result<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            /// One transaction per batch: new keys first (in statements of their own, so a failed
            /// batch never leaves cached ids that were rolled back), then points, latest values and
            /// attributes, each coalesced and sorted so concurrent writers lock rows in one order
            /// (`write_batch` of the backend).
            async fn commit(
                &self,
                ops: &[$crate::storage::WriteOp],
            ) -> $crate::storage::Result<()> {
                if ops.is_empty() {
                    return Ok(());
                }
                self.resolve_keys(ops).await?;
                let batch = $crate::storage::common::coalesce(ops, &self.keys)?;
                self.write_batch(&batch).await
            }

            async fn close(&self) {
                self.close_pools().await;
            }
        }

        impl $store {
            /// Adds the batch's new time-series keys to the dictionary and caches their ids.
            async fn resolve_keys(
                &self,
                ops: &[$crate::storage::WriteOp],
            ) -> $crate::storage::Result<()> {
                let missing = self.keys.missing(ops);
                if missing.is_empty() {
                    return Ok(());
                }
                let stored: Vec<String> = missing
                    .iter()
                    .map(|k| Self::clean_text(k).into_owned())
                    .collect();
                // Two statements: the SELECT must see keys another node inserted after the INSERT began.
                sqlx::query(Self::SQL.insert_keys)
                    .bind(Self::text_list(&stored)?)
                    .execute(self.writer())
                    .await?;
                let pairs: Vec<(String, i32)> = sqlx::query_as(Self::SQL.select_keys)
                    .bind(Self::text_list(&stored)?)
                    .fetch_all(self.writer())
                    .await?;
                let ids: std::collections::HashMap<String, i32> = pairs.into_iter().collect();
                // Cached under the name the batch uses, even when characters had to be dropped.
                let resolved = missing
                    .iter()
                    .zip(&stored)
                    .filter_map(|(key, s)| ids.get(s).map(|id| (key.clone(), *id)))
                    .collect::<Vec<_>>();
                self.keys.insert_all(resolved)
            }

            /// One page: `select` with its filter's parameters bound by `bind` and LIMIT and OFFSET
            /// as the next two, and the total that `count` (the same filter) finds.
            async fn page<T>(
                &self,
                count: String,
                select: String,
                query: &$crate::domain::PageQuery,
                bind: impl Fn(PageArgs) -> PageArgs + Send,
                decode: fn(&<$db as sqlx::Database>::Row) -> $crate::storage::Result<T>,
            ) -> $crate::storage::Result<$crate::domain::Page<T>> {
                let (limit, offset) =
                    $crate::storage::common::limit_offset(query.page_size, query.page);
                let total = bind(sqlx::query(sqlx::AssertSqlSafe(count)))
                    .fetch_one(self.reader())
                    .await?;
                let rows = bind(sqlx::query(sqlx::AssertSqlSafe(select)))
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(self.reader())
                    .await?;
                Ok($crate::domain::Page {
                    data: rows
                        .iter()
                        .map(decode)
                        .collect::<$crate::storage::Result<_>>()?,
                    total_elements: sqlx::Row::try_get(&total, 0)?,
                })
            }

            /// The dictionary id of `key`, or None when no point was ever stored under it.
            async fn key_id(&self, key: &str) -> $crate::storage::Result<Option<i32>> {
                if let Some(id) = self.keys.get(key) {
                    return Ok(Some(id));
                }
                let id: Option<i32> =
                    sqlx::query_scalar("SELECT key_id FROM ts_kv_dictionary WHERE key = $1")
                        .bind(key)
                        .fetch_optional(self.reader())
                        .await?;
                if let Some(id) = id {
                    self.keys.insert_all([(key.to_owned(), id)])?;
                }
                Ok(id)
            }
        }
    };
}
pub(crate) use stores;
