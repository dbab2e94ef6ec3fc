//! Attribute and time-series reads and deletes, once for both backends (writes are in each
//! backend's `writes.rs`). Key lists are one parameter, shaped by the backend's `text_list`/`id_list`.

pub(crate) const ATTRS_ALL: &str = "SELECT attribute_key, bool_v, long_v, dbl_v, str_v, \
     CAST(json_v AS TEXT) AS json_v, last_update_ts FROM attributes WHERE entity_id = $1 AND scope = $2 \
     ORDER BY attribute_key";
pub(crate) const ATTR_KEYS: &str = "SELECT DISTINCT attribute_key FROM attributes WHERE entity_id = $1 \
     AND ($2 IS NULL OR scope = $2) ORDER BY attribute_key";
pub(crate) const LATEST_ALL: &str = "SELECT k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, \
     CAST(l.json_v AS TEXT) AS json_v FROM ts_kv_latest l JOIN ts_kv_dictionary k ON k.key_id = l.key_id \
     WHERE l.entity_id = $1 ORDER BY k.key";
pub(crate) const HISTORY_ASC: &str = "SELECT ts, bool_v, long_v, dbl_v, str_v, CAST(json_v AS TEXT) AS json_v \
     FROM ts_kv WHERE entity_id = $1 AND key_id = $2 AND ts >= $3 AND ts < $4 ORDER BY ts ASC LIMIT $5";
pub(crate) const HISTORY_DESC: &str = "SELECT ts, bool_v, long_v, dbl_v, str_v, CAST(json_v AS TEXT) AS json_v \
     FROM ts_kv WHERE entity_id = $1 AND key_id = $2 AND ts >= $3 AND ts < $4 ORDER BY ts DESC LIMIT $5";
/// Keys with points (a loose index scan over the primary key) or a latest value.
pub(crate) const TS_KEYS: &str = "WITH RECURSIVE k(key_id) AS ( \
       SELECT (SELECT min(key_id) FROM ts_kv WHERE entity_id = $1) \
       UNION ALL \
       SELECT (SELECT min(key_id) FROM ts_kv WHERE entity_id = $1 AND key_id > k.key_id) FROM k \
       WHERE k.key_id IS NOT NULL) \
     SELECT d.key FROM ts_kv_dictionary d WHERE d.key_id IN \
       (SELECT key_id FROM k WHERE key_id IS NOT NULL UNION SELECT key_id FROM ts_kv_latest WHERE entity_id = $1) \
     ORDER BY d.key";

/// Time-series keys with a latest value on any device of tenant `$1`.
pub(crate) const TENANT_TS_KEYS: &str = "SELECT DISTINCT k.key FROM ts_kv_latest l \
     JOIN ts_kv_dictionary k ON k.key_id = l.key_id JOIN devices d ON d.id = l.entity_id \
     WHERE d.tenant_id = $1";

/// Deletes up to `$2` points expired at `$1` (the partial index on `expires_at` finds them).
pub(crate) const DELETE_EXPIRED: &str = "DELETE FROM ts_kv WHERE (entity_id, key_id, ts) IN \
     (SELECT entity_id, key_id, ts FROM ts_kv WHERE expires_at <= $1 LIMIT $2)";

/// Makes the newest point of `$1` entity, `$2` key the latest value when it has none.
pub(crate) const REWRITE_LATEST: &str = "INSERT INTO ts_kv_latest \
     (entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v) \
     SELECT entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv \
     WHERE entity_id = $1 AND key_id = $2 ORDER BY ts DESC LIMIT 1 \
     ON CONFLICT (entity_id, key_id) DO NOTHING";

/// The history limit; 0 means none.
pub(crate) fn sql_limit(limit: u32) -> i64 {
    if limit == 0 {
        i64::MAX
    } else {
        i64::from(limit)
    }
}

/// Implements `AttributeStore` and `TimeseriesStore` for `$store` (see `stores!`).
macro_rules! telemetry_stores {
    ($store:ident) => {
        mod telemetry {
            use async_trait::async_trait;
            use futures::TryStreamExt as _;
            use uuid::Uuid;

            use super::rows::*;
            use crate::domain::{
                Aggregation, AttributeKv, AttributeScope, HistoryQuery, SortOrder, TsKv,
            };
            use crate::storage::common::{agg_interval, bucket_point};
            use crate::storage::sql::telemetry::*;
            use crate::storage::{AttributeStore, Result, TimeseriesStore};

            impl super::$store {
                async fn raw_history(
                    &self,
                    entity: Uuid,
                    key_id: i32,
                    q: &HistoryQuery,
                ) -> Result<Vec<TsKv>> {
                    let sql = match q.order {
                        SortOrder::Asc => HISTORY_ASC,
                        SortOrder::Desc => HISTORY_DESC,
                    };
                    let mut rows = sqlx::query(sql)
                        .bind(entity)
                        .bind(key_id)
                        .bind(q.start_ts)
                        .bind(q.end_ts)
                        .bind(sql_limit(q.limit))
                        .fetch(self.reader());
                    let mut out = Vec::new();
                    while let Some(row) = rows.try_next().await? {
                        if let Some(value) = value_of(&row)? {
                            out.push(TsKv {
                                ts: sqlx::Row::try_get(&row, "ts")?,
                                key: q.key.clone(),
                                value,
                            });
                        }
                    }
                    Ok(out)
                }

                async fn aggregated(
                    &self,
                    entity: Uuid,
                    key_id: i32,
                    q: &HistoryQuery,
                    interval: i64,
                ) -> Result<Vec<TsKv>> {
                    let sql = if q.agg == Aggregation::Sum {
                        Self::SQL.aggregate_sum
                    } else {
                        Self::SQL.aggregate
                    };
                    let mut rows = sqlx::query(sql)
                        .bind(entity)
                        .bind(key_id)
                        .bind(q.start_ts)
                        .bind(q.end_ts)
                        .bind(interval)
                        .fetch(self.reader());
                    let mut out = Vec::new();
                    while let Some(row) = rows.try_next().await? {
                        out.extend(bucket_point(q, interval, bucket_of(&row)?));
                    }
                    Ok(out)
                }
            }

            #[async_trait]
            impl AttributeStore for super::$store {
                async fn find_attributes(
                    &self,
                    entity: Uuid,
                    scope: AttributeScope,
                    keys: Option<&[String]>,
                ) -> Result<Vec<AttributeKv>> {
                    let query = match keys {
                        None => sqlx::query(ATTRS_ALL).bind(entity).bind(scope.code()),
                        Some([]) => return Ok(Vec::new()),
                        Some(keys) => sqlx::query(Self::SQL.attrs_some)
                            .bind(entity)
                            .bind(scope.code())
                            .bind(Self::text_list(keys)?),
                    };
                    let rows = query.fetch_all(self.reader()).await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in &rows {
                        if let Some(value) = value_of(row)? {
                            out.push(AttributeKv {
                                key: sqlx::Row::try_get(row, "attribute_key")?,
                                value,
                                last_update_ts: sqlx::Row::try_get(row, "last_update_ts")?,
                            });
                        }
                    }
                    Ok(out)
                }

                async fn attribute_keys(
                    &self,
                    entity: Uuid,
                    scope: Option<AttributeScope>,
                ) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(ATTR_KEYS)
                        .bind(entity)
                        .bind(scope.map(AttributeScope::code))
                        .fetch_all(self.reader())
                        .await?)
                }

                async fn delete_attributes(
                    &self,
                    entity: Uuid,
                    scope: AttributeScope,
                    keys: &[String],
                ) -> Result<Vec<String>> {
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut deleted: Vec<String> = sqlx::query_scalar(Self::SQL.delete_attrs)
                        .bind(entity)
                        .bind(scope.code())
                        .bind(Self::text_list(keys)?)
                        .fetch_all(self.writer())
                        .await?;
                    deleted.sort();
                    Ok(deleted)
                }
            }

            #[async_trait]
            impl TimeseriesStore for super::$store {
                async fn latest(&self, entity: Uuid, keys: Option<&[String]>) -> Result<Vec<TsKv>> {
                    let query = match keys {
                        None => sqlx::query(LATEST_ALL).bind(entity),
                        Some([]) => return Ok(Vec::new()),
                        Some(keys) => sqlx::query(Self::SQL.latest_some)
                            .bind(entity)
                            .bind(Self::text_list(keys)?),
                    };
                    let rows = query.fetch_all(self.reader()).await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in &rows {
                        if let Some(value) = value_of(row)? {
                            out.push(TsKv {
                                ts: sqlx::Row::try_get(row, "ts")?,
                                key: sqlx::Row::try_get(row, "key")?,
                                value,
                            });
                        }
                    }
                    Ok(out)
                }

                async fn history(&self, entity: Uuid, query: &HistoryQuery) -> Result<Vec<TsKv>> {
                    if query.end_ts <= query.start_ts {
                        return Ok(Vec::new());
                    }
                    let Some(key_id) = self.key_id(&query.key).await? else {
                        return Ok(Vec::new());
                    };
                    match agg_interval(query) {
                        None => self.raw_history(entity, key_id, query).await,
                        Some(interval) => self.aggregated(entity, key_id, query, interval).await,
                    }
                }

                async fn timeseries_keys(&self, entity: Uuid) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(TS_KEYS)
                        .bind(entity)
                        .fetch_all(self.reader())
                        .await?)
                }

                async fn tenant_timeseries_keys(&self, tenant: Uuid) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(TENANT_TS_KEYS)
                        .bind(tenant)
                        .fetch_all(self.reader())
                        .await?)
                }

                async fn delete_timeseries(
                    &self,
                    entity: Uuid,
                    keys: &[String],
                    range: Option<(i64, i64)>,
                    delete_latest: bool,
                    rewrite_latest: bool,
                ) -> Result<()> {
                    let mut ids = Vec::with_capacity(keys.len());
                    for key in keys {
                        ids.extend(self.key_id(key).await?);
                    }
                    if ids.is_empty() {
                        return Ok(());
                    }
                    let (start, end) = range.unzip();
                    let mut statements = vec![Self::SQL.delete_points];
                    if delete_latest {
                        statements.push(Self::SQL.delete_latest);
                    }
                    let mut tx = self.writer().begin().await?;
                    for sql in statements {
                        sqlx::query(sql)
                            .bind(entity)
                            .bind(Self::id_list(&ids)?)
                            .bind(start)
                            .bind(end)
                            .execute(&mut *tx)
                            .await?;
                    }
                    if delete_latest && rewrite_latest {
                        for id in &ids {
                            sqlx::query(REWRITE_LATEST)
                                .bind(entity)
                                .bind(*id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn delete_expired(&self, now: i64, limit: u32) -> Result<u64> {
                    let done = sqlx::query(DELETE_EXPIRED)
                        .bind(now)
                        .bind(i64::from(limit))
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}
pub(crate) use telemetry_stores;
