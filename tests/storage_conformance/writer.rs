//! Cases: the group-commit writer's order and pipeline. Batches commit one after the other in the
//! order their requests arrived, so the last write of a key wins across batches; the next batch
//! is collected while the current one commits.

use std::time::{Duration, Instant};

use ferroboard::domain::{AttributeScope, KvValue, SortOrder};
use ferroboard::storage::{BatchConfig, DynStore, Result, WriteOp, Writer};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::common::Backend;
use super::fixtures::*;

const WAIT: Duration = Duration::from_secs(20);

fn writer(
    store: &DynStore,
    max_points: usize,
) -> (Writer, CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let config = BatchConfig {
        max_points,
        window: Duration::from_millis(3),
        queue: 1024,
    };
    let (w, task) = Writer::spawn(store.clone(), config, stop.clone());
    (w, stop, task)
}

/// Queues the writes in the order given (each is polled once, which queues it) and returns the
/// futures that wait for their commits.
async fn queue_in_order(
    w: &Writer,
    writes: Vec<Vec<WriteOp>>,
) -> Vec<BoxFuture<'static, Result<()>>> {
    let mut waiting = Vec::new();
    for ops in writes {
        let w = w.clone();
        let mut fut: BoxFuture<'static, Result<()>> = Box::pin(async move { w.write(ops).await });
        assert!(
            futures::poll!(fut.as_mut()).is_pending(),
            "a write finished before its commit"
        );
        waiting.push(fut);
    }
    waiting
}

async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// 200 writes of the same key at the same timestamp, one batch each: the last one is the stored
/// point, the latest value and the attribute.
async fn the_last_write_of_a_key_wins_across_batches(backend: Backend) {
    let db = super::open(backend).await;
    let (w, stop, task) = writer(&db.store, 1);
    let e = Uuid::new_v4();
    let writes = (0..200i64)
        .map(|i| {
            vec![
                ts_op(e, vec![pt(1000, "s", KvValue::Long(i))]),
                attr_op(e, AttributeScope::Client, 1000, &[("a", KvValue::Long(i))]),
            ]
        })
        .collect();
    for result in futures::future::join_all(queue_in_order(&w, writes).await).await {
        result.unwrap();
    }
    assert_eq!(w.batches(), 200, "every write was a batch of its own");
    let latest = db.store.latest(e, None).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(
        (latest[0].ts, &latest[0].value),
        (1000, &KvValue::Long(199))
    );
    let points = db
        .store
        .history(e, &history("s", 0, 2000, 10, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].value, KvValue::Long(199));
    let attrs = db
        .store
        .find_attributes(e, AttributeScope::Client, None)
        .await
        .unwrap();
    assert_eq!(attrs.len(), 1);
    assert_eq!(attrs[0].value, KvValue::Long(199));
    drop(w);
    stop.cancel();
    task.await.unwrap();
    db.store.close().await;
}

/// A connection of the test's own that holds the write lock of the points until dropped or
/// released: SQLite's RESERVED lock, PostgreSQL's EXCLUSIVE lock on `ts_kv`.
enum Blocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Blocker {
    async fn lock(backend: Backend, url: &str) -> Self {
        use sqlx::Connection as _;
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql("BEGIN; LOCK TABLE ts_kv IN EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self::Postgres(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// While a batch waits in its commit, the writes that arrive meanwhile are taken into the next
/// batch, which commits right after it.
async fn the_next_batch_is_collected_while_one_commits(backend: Backend) {
    let db = super::open(backend).await;
    let (w, stop, task) = writer(&db.store, 100_000);
    let first = Uuid::new_v4();
    // The key is known before the database is locked (new keys are added in a statement of their own).
    w.write(vec![ts_op(first, vec![pt(1, "s", KvValue::Long(0))])])
        .await
        .unwrap();
    assert_eq!(w.batches(), 1);
    let blocker = Blocker::lock(backend, &db._database.url).await;
    let a = queue_in_order(
        &w,
        vec![vec![ts_op(first, vec![pt(2, "s", KvValue::Long(1))])]],
    )
    .await;
    poll_until("the first batch to be handed to its commit", || {
        w.batches() == 2
    })
    .await;
    let others: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let writes = others
        .iter()
        .map(|e| vec![ts_op(*e, vec![pt(3, "s", KvValue::Long(3))])])
        .collect();
    let b = queue_in_order(&w, writes).await;
    poll_until("the queued writes to be taken into a batch", || {
        w.queued() == 0
    })
    .await;
    assert_eq!(
        w.batches(),
        2,
        "a batch was handed over while the one before still commits"
    );
    blocker.release().await;
    for result in futures::future::join_all(a.into_iter().chain(b)).await {
        result.unwrap();
    }
    assert_eq!(w.batches(), 3, "the ten writes were one batch");
    for e in others.iter().chain([&first]) {
        let latest = db.store.latest(*e, None).await.unwrap();
        assert_eq!(latest.len(), 1, "{e}");
    }
    drop(w);
    stop.cancel();
    task.await.unwrap();
    db.store.close().await;
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_write_of_a_key_wins_across_batches() {
        super::the_last_write_of_a_key_wins_across_batches(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_batch_is_collected_while_one_commits() {
        super::the_next_batch_is_collected_while_one_commits(super::Backend::Sqlite).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_write_of_a_key_wins_across_batches() {
        super::the_last_write_of_a_key_wins_across_batches(super::Backend::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_batch_is_collected_while_one_commits() {
        super::the_next_batch_is_collected_while_one_commits(super::Backend::Postgres).await;
    }
}
