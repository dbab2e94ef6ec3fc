//! The PostgreSQL bulk writes of the group commit: one `INSERT .. SELECT FROM UNNEST(arrays)` per
//! table whatever the batch size (rows arrive deduplicated and sorted, so `ON CONFLICT` never meets
//! the same row twice and concurrent nodes lock rows in the same order).

use std::borrow::Cow;

use uuid::Uuid;

use super::PgStore;
use crate::storage::Result;
use crate::storage::common::{AttrRow, Cols, PointRow, PointTable};

const POINTS: &str = "INSERT INTO ts_kv (entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v, \
     expires_at) SELECT e, k, t, b, l, d, s, j::jsonb, x FROM UNNEST($1::uuid[], $2::int4[], $3::int8[], \
     $4::bool[], $5::int8[], $6::float8[], $7::text[], $8::text[], $9::int8[]) AS u(e, k, t, b, l, d, s, j, x) \
     ON CONFLICT (entity_id, key_id, ts) DO UPDATE SET bool_v = EXCLUDED.bool_v, long_v = EXCLUDED.long_v, \
     dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v, expires_at = EXCLUDED.expires_at";
const LATEST: &str = "INSERT INTO ts_kv_latest (entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v) \
     SELECT e, k, t, b, l, d, s, j::jsonb FROM UNNEST($1::uuid[], $2::int4[], $3::int8[], $4::bool[], \
     $5::int8[], $6::float8[], $7::text[], $8::text[]) AS u(e, k, t, b, l, d, s, j) \
     ON CONFLICT (entity_id, key_id) DO UPDATE SET ts = EXCLUDED.ts, bool_v = EXCLUDED.bool_v, \
     long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v \
     WHERE ts_kv_latest.ts <= EXCLUDED.ts";
const ATTRS: &str = "INSERT INTO attributes \
     (entity_id, scope, attribute_key, bool_v, long_v, dbl_v, str_v, json_v, last_update_ts) \
     SELECT e, c, k, b, l, d, s, j::jsonb, t FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::bool[], \
     $5::int8[], $6::float8[], $7::text[], $8::text[], $9::int8[]) AS u(e, c, k, b, l, d, s, j, t) \
     ON CONFLICT (entity_id, scope, attribute_key) DO UPDATE SET bool_v = EXCLUDED.bool_v, \
     long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v, \
     last_update_ts = EXCLUDED.last_update_ts";

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

impl PgStore {
    pub(super) async fn write_points(
        &self,
        conn: &mut sqlx::PgConnection,
        table: PointTable,
        rows: &[PointRow<'_>],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let (sql, history) = match table {
            PointTable::History => (POINTS, true),
            PointTable::Latest => (LATEST, false),
        };
        let mut expires = Vec::with_capacity(if history { rows.len() } else { 0 });
        let (mut e, mut k, mut t) = (
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
        );
        let mut values = Values::default();
        for p in rows {
            e.push(p.entity);
            k.push(p.key_id);
            t.push(p.ts);
            values.push(Cols::of(p.value));
            if history {
                expires.push(p.expires_at);
            }
        }
        let mut query = values.bind(sqlx::query(sql).bind(e).bind(k).bind(t));
        if history {
            query = query.bind(expires);
        }
        query.execute(conn).await?;
        Ok(())
    }

    pub(super) async fn write_attrs(
        &self,
        conn: &mut sqlx::PgConnection,
        rows: &[AttrRow<'_>],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut e: Vec<Uuid> = Vec::with_capacity(rows.len());
        let mut scope = Vec::with_capacity(rows.len());
        let mut key = Vec::with_capacity(rows.len());
        let mut ts = Vec::with_capacity(rows.len());
        let mut values = Values::default();
        for a in rows {
            e.push(a.entity);
            scope.push(a.scope);
            key.push(pg_text(a.key));
            ts.push(a.ts);
            values.push(Cols::of(a.value));
        }
        let q = sqlx::query(ATTRS).bind(e).bind(scope).bind(key);
        values.bind(q).bind(ts).execute(conn).await?;
        Ok(())
    }
}
