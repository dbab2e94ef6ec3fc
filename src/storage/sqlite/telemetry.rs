//! SQLite: attribute and time-series reads and deletes (writes are in `writes.rs`).
//! Key lists are bound as one JSON array and expanded with `json_each`, so every text is static.

use async_trait::async_trait;
use futures::TryStreamExt as _;
use uuid::Uuid;

use super::SqliteStore;
use super::rows::{bucket_of, value_of};
use crate::domain::{AttributeScope, TsKv};
use crate::storage::common::{agg_interval, bucket_point};
use crate::storage::{
    AttributeKv, AttributeStore, HistoryQuery, Result, SortOrder, StorageError, TimeseriesStore,
};

const ATTRS_ALL: &str = "SELECT attribute_key, bool_v, long_v, dbl_v, str_v, json_v, last_update_ts \
     FROM attributes WHERE entity_id = ?1 AND scope = ?2 ORDER BY attribute_key";
const ATTRS_SOME: &str = "SELECT attribute_key, bool_v, long_v, dbl_v, str_v, json_v, last_update_ts \
     FROM attributes WHERE entity_id = ?1 AND scope = ?2 AND attribute_key IN (SELECT value FROM json_each(?3)) \
     ORDER BY attribute_key";
const LATEST_ALL: &str = "SELECT k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, l.json_v FROM ts_kv_latest l \
     JOIN ts_kv_dictionary k ON k.key_id = l.key_id WHERE l.entity_id = ?1 ORDER BY k.key";
const LATEST_SOME: &str = "SELECT k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, l.json_v FROM ts_kv_latest l \
     JOIN ts_kv_dictionary k ON k.key_id = l.key_id WHERE l.entity_id = ?1 \
     AND k.key IN (SELECT value FROM json_each(?2)) ORDER BY k.key";
const HISTORY_ASC: &str = "SELECT ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv \
     WHERE entity_id = ?1 AND key_id = ?2 AND ts >= ?3 AND ts < ?4 ORDER BY ts ASC LIMIT ?5";
const HISTORY_DESC: &str = "SELECT ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv \
     WHERE entity_id = ?1 AND key_id = ?2 AND ts >= ?3 AND ts < ?4 ORDER BY ts DESC LIMIT ?5";
/// Buckets of `[?3, ?4)` of length ?5. `{sum}` is `sum(long_v)` only for SUM: it raises on overflow.
const AGGREGATE: &str = "SELECT (ts - ?3) / ?5 AS idx, count(*) AS cnt, count(long_v) AS cnt_l, \
     count(dbl_v) AS cnt_d, {sum} AS sum_l, total(long_v) AS sum_lf, sum(dbl_v) AS sum_d, \
     min(long_v) AS min_l, max(long_v) AS max_l, min(dbl_v) AS min_d, max(dbl_v) AS max_d, \
     min(str_v) AS min_s, max(str_v) AS max_s FROM ts_kv \
     WHERE entity_id = ?1 AND key_id = ?2 AND ts >= ?3 AND ts < ?4 GROUP BY idx ORDER BY idx";
/// Keys with points (a loose index scan over the primary key) or a latest value.
const TS_KEYS: &str = "WITH RECURSIVE k(key_id) AS ( \
       SELECT (SELECT min(key_id) FROM ts_kv WHERE entity_id = ?1) \
       UNION ALL \
       SELECT (SELECT min(key_id) FROM ts_kv WHERE entity_id = ?1 AND key_id > k.key_id) FROM k \
       WHERE k.key_id IS NOT NULL) \
     SELECT d.key FROM ts_kv_dictionary d WHERE d.key_id IN \
       (SELECT key_id FROM k WHERE key_id IS NOT NULL UNION SELECT key_id FROM ts_kv_latest WHERE entity_id = ?1) \
     ORDER BY d.key";

const DELETE_POINTS: &str = "DELETE FROM ts_kv WHERE entity_id = ?1 AND key_id = ?2 AND (?3 IS NULL OR (ts >= ?3 AND ts < ?4))";
/// Like ThingsBoard, a ranged delete removes the latest value only when it lies in the range.
const DELETE_LATEST: &str = "DELETE FROM ts_kv_latest WHERE entity_id = ?1 AND key_id = ?2 AND (?3 IS NULL OR (ts >= ?3 AND ts < ?4))";

fn json_list(keys: &[String]) -> Result<String> {
    serde_json::to_string(keys).map_err(|e| StorageError::Database(e.to_string()))
}

/// SQLite's "no limit" for the history limit 0.
fn sql_limit(limit: u32) -> i64 {
    if limit == 0 { -1 } else { i64::from(limit) }
}

#[async_trait]
impl AttributeStore for SqliteStore {
    async fn find_attributes(
        &self,
        entity: Uuid,
        scope: AttributeScope,
        keys: Option<&[String]>,
    ) -> Result<Vec<AttributeKv>> {
        let query = match keys {
            None => sqlx::query(ATTRS_ALL).bind(entity).bind(scope.code()),
            Some([]) => return Ok(Vec::new()),
            Some(keys) => sqlx::query(ATTRS_SOME)
                .bind(entity)
                .bind(scope.code())
                .bind(json_list(keys)?),
        };
        let rows = query.fetch_all(&self.reader).await?;
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
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT attribute_key FROM attributes WHERE entity_id = ?1 AND (?2 IS NULL OR scope = ?2) \
             ORDER BY attribute_key",
        )
        .bind(entity)
        .bind(scope.map(AttributeScope::code))
        .fetch_all(&self.reader)
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
        let mut deleted: Vec<String> = sqlx::query_scalar(
            "DELETE FROM attributes WHERE entity_id = ?1 AND scope = ?2 \
             AND attribute_key IN (SELECT value FROM json_each(?3)) RETURNING attribute_key",
        )
        .bind(entity)
        .bind(scope.code())
        .bind(json_list(keys)?)
        .fetch_all(&self.writer)
        .await?;
        deleted.sort();
        Ok(deleted)
    }
}

impl SqliteStore {
    async fn raw_history(&self, entity: Uuid, key_id: i32, q: &HistoryQuery) -> Result<Vec<TsKv>> {
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
            .fetch(&self.reader);
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
        let sum = if q.agg == crate::storage::Aggregation::Sum {
            "sum(long_v)"
        } else {
            "NULL"
        };
        let sql = AGGREGATE.replace("{sum}", sum);
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(entity)
            .bind(key_id)
            .bind(q.start_ts)
            .bind(q.end_ts)
            .bind(interval)
            .fetch(&self.reader);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            out.extend(bucket_point(q, interval, bucket_of(&row)?));
        }
        Ok(out)
    }
}

#[async_trait]
impl TimeseriesStore for SqliteStore {
    async fn latest(&self, entity: Uuid, keys: Option<&[String]>) -> Result<Vec<TsKv>> {
        let query = match keys {
            None => sqlx::query(LATEST_ALL).bind(entity),
            Some([]) => return Ok(Vec::new()),
            Some(keys) => sqlx::query(LATEST_SOME).bind(entity).bind(json_list(keys)?),
        };
        let rows = query.fetch_all(&self.reader).await?;
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
            .fetch_all(&self.reader)
            .await?)
    }

    async fn delete_timeseries(
        &self,
        entity: Uuid,
        keys: &[String],
        range: Option<(i64, i64)>,
        delete_latest: bool,
    ) -> Result<()> {
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            ids.extend(self.key_id(key).await?);
        }
        let (start, end) = range.unzip();
        let mut statements = vec![DELETE_POINTS];
        if delete_latest {
            statements.push(DELETE_LATEST);
        }
        let mut tx = self.writer.begin().await?;
        for id in ids {
            for sql in &statements {
                sqlx::query(*sql)
                    .bind(entity)
                    .bind(id)
                    .bind(start)
                    .bind(end)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
