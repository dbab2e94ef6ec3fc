//! Dialect-free helpers shared by the PostgreSQL and SQLite stores: typed value columns, batch
//! coalescing, the time-series key cache, paging order, conflict mapping and migrations.
//! Uses only domain types and sqlx error inspection; no SQL is executed here.

use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;

mod buckets;
mod rows;

pub(crate) use buckets::{Bucket, agg_interval, bucket_point};
pub(crate) use rows::row_decoders;

use super::{Result, SortOrder, StorageError, WriteOp};
use crate::domain::KvValue;

pub(crate) const DEVICE_NAME_TAKEN: &str = "Device with such name already exists!";
pub(crate) const CREDENTIALS_TAKEN: &str = "Specified credentials are already registered!";
pub(crate) const PROFILE_NAME_TAKEN: &str = "Device profile with such name already exists!";
pub(crate) const DEFAULT_PROFILE_TAKEN: &str =
    "Another default device profile is present in scope of current tenant!";
pub(crate) const PROVISION_KEY_TAKEN: &str =
    "Device profile with such provision device key already exists!";
pub(crate) const PROFILE_IN_USE: &str =
    "The device profile referenced by the devices cannot be deleted!";
pub(crate) const CUSTOMER_TITLE_TAKEN: &str = "Customer with such title already exists!";
pub(crate) const OTA_PACKAGE_IN_USE: &str =
    "The otaPackage referenced by the devices cannot be deleted!";
pub(crate) const OTA_FIRMWARE_OF_PROFILE: &str =
    "The otaPackage referenced by the device profile cannot be deleted!";
pub(crate) const OTA_SOFTWARE_OF_PROFILE: &str =
    "The software referenced by the device profile cannot be deleted!";
pub(crate) const OTA_PACKAGE_TAKEN: &str = "OtaPackage with such title and version already exists!";

/// A migrator over embedded `(version, description, sql)` migrations.
pub(crate) fn migrator(migrations: &[(i64, &str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr as _;
    sqlx::migrate::Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                sqlx::migrate::Migration::new(
                    *version,
                    std::borrow::Cow::Owned((*description).to_owned()),
                    sqlx::migrate::MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// One typed value spread over the five nullable value columns.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cols<'a> {
    pub b: Option<bool>,
    pub l: Option<i64>,
    pub d: Option<f64>,
    pub s: Option<&'a str>,
    pub j: Option<&'a str>,
}

impl<'a> Cols<'a> {
    pub fn of(value: &'a KvValue) -> Self {
        let mut c = Self::default();
        match value {
            KvValue::Bool(v) => c.b = Some(*v),
            KvValue::Long(v) => c.l = Some(*v),
            KvValue::Double(v) => c.d = Some(*v),
            KvValue::Str(v) => c.s = Some(v),
            KvValue::Json(v) => c.j = Some(v),
        }
        c
    }
}

/// The value held by the first non-null column; None when all are null (e.g. a NaN SQLite dropped).
pub(crate) fn value_of(
    b: Option<bool>,
    l: Option<i64>,
    d: Option<f64>,
    s: Option<String>,
    j: Option<String>,
) -> Option<KvValue> {
    if let Some(v) = b {
        return Some(KvValue::Bool(v));
    }
    if let Some(v) = l {
        return Some(KvValue::Long(v));
    }
    if let Some(v) = d {
        return Some(KvValue::Double(v));
    }
    if let Some(v) = s {
        return Some(KvValue::Str(v));
    }
    j.map(KvValue::Json)
}

/// Compact JSON text: JSONB renders with spaces after `:` and `,`. Only for PostgreSQL; SQLite keeps
/// the exact text it was given (re-serialising would rewrite e.g. `3e2` as `3e+2`).
pub(crate) fn compact_json(text: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v.to_string(),
        Err(_) => text,
    }
}

/// One time-series row to write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PointRow<'a> {
    pub entity: Uuid,
    pub key_id: i32,
    pub ts: i64,
    pub value: &'a KvValue,
    /// When the point expires (ms since the epoch); only `ts_kv` stores it.
    pub expires_at: Option<i64>,
}

/// One attribute row to write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttrRow<'a> {
    pub entity: Uuid,
    pub scope: i16,
    pub key: &'a str,
    pub value: &'a KvValue,
    pub ts: i64,
}

/// A batch reduced to what must reach the database, each list sorted by primary key so that
/// concurrent writers lock rows in the same order.
#[derive(Debug, Default)]
pub(crate) struct Coalesced<'a> {
    /// One row per (entity, key, ts); the last write in the batch wins.
    pub points: Vec<PointRow<'a>>,
    /// One row per (entity, key): the newest point of the batch.
    pub latest: Vec<PointRow<'a>>,
    /// One row per (entity, scope, key); the last write in the batch wins.
    pub attrs: Vec<AttrRow<'a>>,
}

impl Coalesced<'_> {
    /// For each of `points`, whether it is the newest of its (entity, key) in the batch, i.e.
    /// one of `latest`.
    pub fn latest_flags(&self) -> impl Iterator<Item = bool> + '_ {
        let ps = &self.points;
        (0..ps.len()).map(move |i| {
            ps.get(i + 1)
                .is_none_or(|next| (next.entity, next.key_id) != (ps[i].entity, ps[i].key_id))
        })
    }
}

/// Coalesces a batch. Every time-series key must already be in `keys`.
pub(crate) fn coalesce<'a>(ops: &'a [WriteOp], keys: &KeyCache) -> Result<Coalesced<'a>> {
    let ids = keys.snapshot(ops)?;
    let mut points = Vec::new();
    let mut attrs = Vec::new();
    for op in ops {
        match op {
            WriteOp::Timeseries {
                entity,
                points: ps,
                ttl_ms,
            } => {
                for p in ps {
                    let key_id = ids.get(p.key.as_str()).copied().ok_or_else(|| {
                        StorageError::Database(format!("unresolved key '{}'", p.key))
                    })?;
                    points.push(PointRow {
                        entity: *entity,
                        key_id,
                        ts: p.ts,
                        value: &p.value,
                        expires_at: ttl_ms.map(|ttl| p.ts.saturating_add(ttl)),
                    });
                }
            }
            WriteOp::Attributes {
                entity,
                scope,
                kvs,
                ts,
            } => {
                attrs.extend(kvs.iter().map(|kv| AttrRow {
                    entity: *entity,
                    scope: scope.code(),
                    key: kv.key.as_str(),
                    value: &kv.value,
                    ts: *ts,
                }));
            }
        }
    }
    // Stable sorts keep batch order among equal keys, so "keep the last of a run" is last-write-wins.
    points.sort_by_key(|p| (p.entity, p.key_id, p.ts));
    let points = keep_last(points, |a, b| {
        (a.entity, a.key_id, a.ts) == (b.entity, b.key_id, b.ts)
    });
    let latest = keep_last(points.clone(), |a, b| {
        (a.entity, a.key_id) == (b.entity, b.key_id)
    });
    attrs.sort_by(|a, b| (a.entity, a.scope, a.key).cmp(&(b.entity, b.scope, b.key)));
    let attrs = keep_last(attrs, |a, b| {
        (a.entity, a.scope, a.key) == (b.entity, b.scope, b.key)
    });
    Ok(Coalesced {
        points,
        latest,
        attrs,
    })
}

/// Keeps the last element of every run of `same` elements.
fn keep_last<T: Copy>(items: Vec<T>, same: impl Fn(&T, &T) -> bool) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    let mut iter = items.into_iter().peekable();
    while let Some(item) = iter.next() {
        if iter.peek().is_none_or(|next| !same(&item, next)) {
            out.push(item);
        }
    }
    out
}

/// The time-series key dictionary as seen by this process (ids never change once assigned).
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    ids: RwLock<HashMap<String, i32>>,
}

impl KeyCache {
    pub fn get(&self, key: &str) -> Option<i32> {
        self.ids.read().ok()?.get(key).copied()
    }

    /// Time-series keys of the batch that are not cached yet, deduplicated.
    pub fn missing(&self, ops: &[WriteOp]) -> Vec<String> {
        let Ok(ids) = self.ids.read() else {
            return Vec::new();
        };
        let mut missing: Vec<String> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Timeseries { points, .. } => Some(points),
                WriteOp::Attributes { .. } => None,
            })
            .flatten()
            .filter(|p| !ids.contains_key(&p.key))
            .map(|p| p.key.clone())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    pub fn insert_all(&self, pairs: impl IntoIterator<Item = (String, i32)>) -> Result<()> {
        let mut ids = self.ids.write().map_err(|_| poisoned())?;
        ids.extend(pairs);
        Ok(())
    }

    /// Copies the ids of the batch's keys so the lock is not held while coalescing.
    fn snapshot<'a>(&self, ops: &'a [WriteOp]) -> Result<HashMap<&'a str, i32>> {
        let ids = self.ids.read().map_err(|_| poisoned())?;
        let mut out = HashMap::new();
        for op in ops {
            if let WriteOp::Timeseries { points, .. } = op {
                for p in points {
                    if let Some(id) = ids.get(&p.key) {
                        out.insert(p.key.as_str(), *id);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn poisoned() -> StorageError {
    StorageError::Database("key cache lock poisoned".into())
}

/// `ORDER BY` for a page of devices; the property names are ThingsBoard's.
pub(crate) fn device_order(property: Option<&str>, order: SortOrder) -> String {
    let column = match property {
        Some("name") => Some("d.name"),
        Some("label") => Some("d.label"),
        Some("type" | "deviceProfileName") => Some("p.name"),
        _ => None,
    };
    order_by(column, "d", order)
}

/// `ORDER BY` for a page of tenants (alias `t`).
pub(crate) fn tenant_order(property: Option<&str>, order: SortOrder) -> String {
    let column = matches!(property, Some("title" | "name")).then_some("t.title");
    order_by(column, "t", order)
}

/// `ORDER BY` for a page of customers (alias `c`).
pub(crate) fn customer_order(property: Option<&str>, order: SortOrder) -> String {
    let column = matches!(property, Some("title" | "name")).then_some("c.title");
    order_by(column, "c", order)
}

/// `ORDER BY` for a page of users (alias `u`).
pub(crate) fn user_order(property: Option<&str>, order: SortOrder) -> String {
    let column = match property {
        Some("email" | "name") => Some("u.email"),
        Some("firstName") => Some("u.first_name"),
        Some("lastName") => Some("u.last_name"),
        _ => None,
    };
    order_by(column, "u", order)
}

/// `ORDER BY` for a page of device profiles.
pub(crate) fn profile_order(property: Option<&str>, order: SortOrder) -> String {
    let column = match property {
        Some("name") => Some("p.name"),
        Some("description") => Some("p.description"),
        _ => None,
    };
    order_by(column, "p", order)
}

/// `ORDER BY` for a page of RPCs (table alias `r`); the property names are ThingsBoard's.
pub(crate) fn rpc_order(property: Option<&str>, order: SortOrder) -> String {
    let column = match property {
        Some("expirationTime") => Some("r.expiration_time"),
        Some("request") => Some("r.request"),
        Some("response") => Some("r.response"),
        Some("status") => Some("r.status"),
        _ => None,
    };
    order_by(column, "r", order)
}

/// `ORDER BY` for a page of OTA packages.
pub(crate) fn ota_order(property: Option<&str>, order: SortOrder) -> String {
    let column = match property {
        Some("title" | "name") => Some("o.title"),
        Some("version") => Some("o.version"),
        Some("type") => Some("o.type"),
        Some("tag") => Some("o.tag"),
        Some("url") => Some("o.url"),
        Some("fileName") => Some("o.file_name"),
        Some("dataSize") => Some("o.data_size"),
        _ => None,
    };
    order_by(column, "o", order)
}

/// Sorts by `column` (NULLs as PostgreSQL places them by default), then by creation and id.
fn order_by(column: Option<&str>, table: &str, order: SortOrder) -> String {
    let (dir, nulls) = match order {
        SortOrder::Asc => ("ASC", "NULLS LAST"),
        SortOrder::Desc => ("DESC", "NULLS FIRST"),
    };
    let tail = format!("{table}.created_time {dir}, {table}.id {dir}");
    match column {
        Some(c) => format!(" ORDER BY {c} {dir} {nulls}, {tail}"),
        None => format!(" ORDER BY {tail}"),
    }
}

/// `LIMIT` and `OFFSET` of a page, saturated to what SQL accepts.
pub(crate) fn limit_offset(page_size: u32, page: u32) -> (i64, i64) {
    let size = i64::from(page_size);
    (size, size.saturating_mul(i64::from(page)))
}

/// Maps a unique violation to `Conflict(text)`, where `pick` gets the constraint name (PostgreSQL)
/// or the message (SQLite names the columns); anything else is a database error.
pub(crate) fn conflict(e: sqlx::Error, pick: impl FnOnce(&str) -> String) -> StorageError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let what = db.constraint().unwrap_or_else(|| db.message());
        return StorageError::Conflict(pick(what));
    }
    StorageError::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AttributeScope, TsKv};

    fn ts(ts: i64, key: &str, v: i64) -> TsKv {
        TsKv {
            ts,
            key: key.into(),
            value: KvValue::Long(v),
        }
    }

    #[test]
    fn coalesce_dedupes_points_and_keeps_newest_latest() {
        let e = Uuid::from_u128(1);
        let ops = vec![
            WriteOp::Timeseries {
                entity: e,
                points: vec![ts(20, "t", 1), ts(10, "t", 2)],
                ttl_ms: None,
            },
            WriteOp::Timeseries {
                entity: e,
                points: vec![ts(20, "t", 3), ts(5, "h", 4)],
                ttl_ms: None,
            },
            WriteOp::Attributes {
                entity: e,
                scope: AttributeScope::Client,
                kvs: vec![crate::domain::Kv {
                    key: "a".into(),
                    value: KvValue::Long(1),
                }],
                ts: 1,
            },
            WriteOp::Attributes {
                entity: e,
                scope: AttributeScope::Client,
                kvs: vec![crate::domain::Kv {
                    key: "a".into(),
                    value: KvValue::Long(2),
                }],
                ts: 2,
            },
        ];
        let keys = KeyCache::default();
        assert_eq!(keys.missing(&ops), vec!["h".to_owned(), "t".to_owned()]);
        keys.insert_all([("t".to_owned(), 1), ("h".to_owned(), 2)])
            .unwrap();
        assert!(keys.missing(&ops).is_empty());
        let c = coalesce(&ops, &keys).unwrap();
        let pts: Vec<_> = c
            .points
            .iter()
            .map(|p| (p.key_id, p.ts, p.value.clone()))
            .collect();
        assert_eq!(
            pts,
            vec![
                (1, 10, KvValue::Long(2)),
                (1, 20, KvValue::Long(3)),
                (2, 5, KvValue::Long(4))
            ]
        );
        let latest: Vec<_> = c
            .latest
            .iter()
            .map(|p| (p.key_id, p.ts, p.value.clone()))
            .collect();
        assert_eq!(
            latest,
            vec![(1, 20, KvValue::Long(3)), (2, 5, KvValue::Long(4))]
        );
        let flagged: Vec<_> = c
            .points
            .iter()
            .zip(c.latest_flags())
            .filter(|(_, newest)| *newest)
            .map(|(p, _)| (p.key_id, p.ts))
            .collect();
        assert_eq!(flagged, vec![(1, 20), (2, 5)]);
        assert_eq!(c.attrs.len(), 1);
        assert_eq!((c.attrs[0].value, c.attrs[0].ts), (&KvValue::Long(2), 2));
    }
}
