//! The SQLite bulk writes of the group commit: multi-row upserts in a few fixed chunk sizes, so
//! every statement text is prepared once and then reused.

use std::sync::Arc;

use sqlx::AssertSqlSafe;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection};

use super::SqliteStore;
use crate::storage::Result;
use crate::storage::common::{AttrRow, Coalesced, Cols, PointRow};

type Query = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// Rows per statement, largest first; a batch is cut greedily into these sizes. 256 rows × 9
/// columns stays far below SQLite's 32766 variables.
const CHUNKS: [usize; 4] = [256, 32, 4, 1];

const POINT_HEAD: &str = "INSERT INTO ts_kv (entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v, \
     expires_at) VALUES ";
const POINT_TAIL: &str = " ON CONFLICT (entity_id, key_id, ts) DO UPDATE SET bool_v = excluded.bool_v, \
     long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v, json_v = excluded.json_v, \
     expires_at = excluded.expires_at";
const LATEST_HEAD: &str = "INSERT INTO ts_kv_latest (entity_id, key_id, ts, bool_v, long_v, dbl_v, str_v, json_v) VALUES ";
const LATEST_TAIL: &str = " ON CONFLICT (entity_id, key_id) DO UPDATE SET ts = excluded.ts, \
     bool_v = excluded.bool_v, long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v, \
     json_v = excluded.json_v WHERE excluded.ts >= ts_kv_latest.ts";
const ATTR_HEAD: &str = "INSERT INTO attributes \
     (entity_id, scope, attribute_key, bool_v, long_v, dbl_v, str_v, json_v, last_update_ts) VALUES ";
const ATTR_TAIL: &str = " ON CONFLICT (entity_id, scope, attribute_key) DO UPDATE SET bool_v = excluded.bool_v, \
     long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v, json_v = excluded.json_v, \
     last_update_ts = excluded.last_update_ts";

/// The statement texts of one multi-row upsert, one per chunk size.
struct Chunked {
    texts: Vec<(usize, Arc<str>)>,
}

impl Chunked {
    fn new(head: &str, columns: usize, tail: &str) -> Self {
        let row = format!("({})", vec!["?"; columns].join(","));
        let texts = CHUNKS
            .iter()
            .map(|&n| {
                (
                    n,
                    Arc::from(format!("{head}{}{tail}", vec![row.as_str(); n].join(","))),
                )
            })
            .collect();
        Self { texts }
    }

    /// Executes the upsert over `rows`, greedily in the largest chunks that fit.
    async fn run<T>(
        &self,
        conn: &mut SqliteConnection,
        rows: &[T],
        bind: fn(Query, &T) -> Query,
    ) -> Result<()> {
        let mut rest = rows;
        for (n, text) in &self.texts {
            while rest.len() >= *n {
                let (chunk, tail) = rest.split_at(*n);
                let query = chunk
                    .iter()
                    .fold(sqlx::query(AssertSqlSafe(text.clone())), bind);
                query.execute(&mut *conn).await?;
                rest = tail;
            }
        }
        Ok(())
    }
}

pub(super) struct InsertSql {
    points: Chunked,
    latest: Chunked,
    attrs: Chunked,
}

impl InsertSql {
    pub(super) fn new() -> Self {
        Self {
            points: Chunked::new(POINT_HEAD, 9, POINT_TAIL),
            latest: Chunked::new(LATEST_HEAD, 8, LATEST_TAIL),
            attrs: Chunked::new(ATTR_HEAD, 9, ATTR_TAIL),
        }
    }
}

fn bind_value(q: Query, c: Cols<'_>) -> Query {
    q.bind(c.b).bind(c.l).bind(c.d).bind(c.s).bind(c.j)
}

fn bind_point(q: Query, p: &PointRow<'_>) -> Query {
    bind_value(
        q.bind(p.entity).bind(p.key_id).bind(p.ts),
        Cols::of(p.value),
    )
}

/// A `ts_kv` row: the point and its expiry time.
fn bind_history_point(q: Query, p: &PointRow<'_>) -> Query {
    bind_point(q, p).bind(p.expires_at)
}

fn bind_attr(q: Query, a: &AttrRow<'_>) -> Query {
    bind_value(
        q.bind(a.entity).bind(a.scope).bind(a.key),
        Cols::of(a.value),
    )
    .bind(a.ts)
}

impl SqliteStore {
    /// The batch in one transaction on the writer connection: points, latest values, attributes.
    pub(super) async fn write_batch(&self, batch: &Coalesced<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let sql = &self.sql;
        sql.points
            .run(&mut tx, &batch.points, bind_history_point)
            .await?;
        sql.latest.run(&mut tx, &batch.latest, bind_point).await?;
        sql.attrs.run(&mut tx, &batch.attrs, bind_attr).await?;
        tx.commit().await?;
        Ok(())
    }
}
