//! The PostgreSQL bulk write of the group commit: one statement per batch whatever its size, its
//! three upserts as data-modifying CTEs over `UNNEST(arrays)`, so it runs atomically in one
//! implicit transaction and costs one round trip (rows arrive deduplicated and sorted, so
//! `ON CONFLICT` never meets the same row twice and concurrent nodes lock rows in the same order).
//! It runs on a connection of its own, outside the pool: a pooled connection is pinged when it is
//! released, another round trip per batch.

use std::borrow::Cow;

use sqlx::Connection as _;
use uuid::Uuid;

use super::PgStore;
use crate::storage::common::{Coalesced, Cols};
use crate::storage::{Result, StorageError};

/// `$1..$9` every point (`ts_kv`), `$10` which of them is the newest of its key in the batch
/// (`ts_kv_latest`, kept when newer than the stored one), `$11..$19` the attributes.
const BATCH: &str = "WITH u AS MATERIALIZED (SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::int8[], \
     $4::bool[], $5::int8[], $6::float8[], $7::text[], $8::text[], $9::int8[], $10::bool[]) \
     AS r(e, k, t, b, l, d, s, j, x, newest)), \
     p AS (INSERT INTO ts_kv (entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v, expires_at) \
     SELECT e, k, t, b, l, d, s, j::jsonb, x FROM u \
     ON CONFLICT (entity_id, key_id, ts) DO UPDATE SET bool_v = EXCLUDED.bool_v, \
     long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, \
     json_v = EXCLUDED.json_v, expires_at = EXCLUDED.expires_at), \
     n AS (INSERT INTO ts_kv_latest (entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v) \
     SELECT e, k, t, b, l, d, s, j::jsonb FROM u WHERE newest \
     ON CONFLICT (entity_id, key_id) DO UPDATE SET ts = EXCLUDED.ts, bool_v = EXCLUDED.bool_v, \
     long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v \
     WHERE ts_kv_latest.ts <= EXCLUDED.ts), \
     a AS (INSERT INTO attributes \
     (entity_id, scope, attribute_key, bool_v, long_v, dbl_v, str_v, json_v, last_update_ts) \
     SELECT e, c, k, b, l, d, s, j::jsonb, t FROM UNNEST($11::uuid[], $12::int2[], $13::text[], \
     $14::bool[], $15::int8[], $16::float8[], $17::text[], $18::text[], $19::int8[]) \
     AS v(e, c, k, b, l, d, s, j, t) \
     ON CONFLICT (entity_id, scope, attribute_key) DO UPDATE SET bool_v = EXCLUDED.bool_v, \
     long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v, \
     last_update_ts = EXCLUDED.last_update_ts) \
     SELECT 1";

/// PostgreSQL refuses NUL in text. The writer refuses values holding one before they are batched
/// (`storage::checks`); other text (keys of lookups) has them dropped.
pub(super) fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', ""))
    } else {
        Cow::Borrowed(s)
    }
}

/// The value columns of many rows, as arrays.
#[derive(Default)]
struct Values<'a> {
    b: Vec<Option<bool>>,
    l: Vec<Option<i64>>,
    d: Vec<Option<f64>>,
    s: Vec<Option<Cow<'a, str>>>,
    j: Vec<Option<Cow<'a, str>>>,
}

impl<'a> Values<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            b: Vec::with_capacity(n),
            l: Vec::with_capacity(n),
            d: Vec::with_capacity(n),
            s: Vec::with_capacity(n),
            j: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, c: Cols<'a>) {
        self.b.push(c.b);
        self.l.push(c.l);
        self.d.push(c.d);
        self.s.push(c.s.map(pg_text));
        self.j.push(c.j.map(Cow::Borrowed));
    }

    fn bind<'q>(self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(self.b)
            .bind(self.l)
            .bind(self.d)
            .bind(self.s)
            .bind(self.j)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The batch statement with its nineteen arrays bound.
fn batch_query<'q>(batch: &'q Coalesced<'q>) -> PgQuery<'q> {
    let n = batch.points.len();
    let (mut e, mut k, mut t, mut x) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut values = Values::with_capacity(n);
    for p in &batch.points {
        e.push(p.entity);
        k.push(p.key_id);
        t.push(p.ts);
        x.push(p.expires_at);
        values.push(Cols::of(p.value));
    }
    let newest: Vec<bool> = batch.latest_flags().collect();
    let q = values.bind(sqlx::query(BATCH).bind(e).bind(k).bind(t));
    let q = q.bind(x).bind(newest);

    let n = batch.attrs.len();
    let mut e: Vec<Uuid> = Vec::with_capacity(n);
    let (mut scope, mut key, mut ts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut values = Values::with_capacity(n);
    for a in &batch.attrs {
        e.push(a.entity);
        scope.push(a.scope);
        key.push(pg_text(a.key));
        ts.push(a.ts);
        values.push(Cols::of(a.value));
    }
    values.bind(q.bind(e).bind(scope).bind(key)).bind(ts)
}

impl PgStore {
    /// The batch in one statement on the writer's own connection, opened when there is none (at
    /// the first batch, or after a failure that was not the database refusing the data).
    pub(super) async fn write_batch(&self, batch: &Coalesced<'_>) -> Result<()> {
        if batch.points.is_empty() && batch.attrs.is_empty() {
            return Ok(());
        }
        let mut slot = self.batch_conn.lock().await;
        let conn = match slot.as_mut() {
            Some(conn) => conn,
            None => {
                if self.pool.is_closed() {
                    return Err(StorageError::Database("the store is closed".into()));
                }
                slot.insert(sqlx::PgConnection::connect_with(&self.connect).await?)
            }
        };
        match batch_query(batch).execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // A refusal of the data leaves the connection usable; anything else may not.
                if !matches!(e, sqlx::Error::Database(_)) {
                    *slot = None;
                }
                Err(e.into())
            }
        }
    }

    /// Closes the writer's connection; later batches are refused.
    pub(super) async fn close_batch_conn(&self) {
        if let Some(conn) = self.batch_conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}
