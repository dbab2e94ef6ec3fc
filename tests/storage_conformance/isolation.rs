//! Cases: one message's data never fails another's in the group-commit writer. Data no database
//! can hold is refused before the batch; data the database refuses at commit fails only the
//! message that carried it, and the batch's other messages are committed.

use std::time::Duration;

use ferroboard::domain::{AttributeScope, KvValue};
use ferroboard::storage::{BatchConfig, DynStore, StorageError, WriteOp, Writer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::common::{Backend, REFUSED, refuse_marker};
use super::fixtures::*;

/// A writer whose batches stay open long enough that concurrent writes share one.
fn writer(store: &DynStore) -> (Writer, CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let config = BatchConfig {
        max_points: 100_000,
        window: Duration::from_millis(300),
        queue: 1024,
    };
    let (w, task) = Writer::spawn(store.clone(), config, stop.clone());
    (w, stop, task)
}

async fn latest_str(store: &DynStore, entity: Uuid) -> Option<KvValue> {
    let latest = store.latest(entity, None).await.unwrap();
    latest.into_iter().find(|p| p.key == "s").map(|p| p.value)
}

/// Writes `good` messages and the `bad` ones at once; the good ones must be stored and each bad one
/// refused as `Invalid`.
async fn one_bad_among_many(store: &DynStore, bad: Vec<WriteOp>) {
    let (w, stop, task) = writer(store);
    let good: Vec<Uuid> = (0..16).map(|_| Uuid::new_v4()).collect();
    let mut writes = Vec::new();
    for (i, e) in good.iter().enumerate() {
        let op = ts_op(
            *e,
            vec![pt(1000 + i as i64, "s", KvValue::Str(format!("ok {i}")))],
        );
        writes.push((true, vec![op]));
        if i == 7 {
            for b in &bad {
                writes.push((false, vec![b.clone()]));
            }
        }
    }
    let results = futures::future::join_all(writes.into_iter().map(|(ok, ops)| {
        let w = w.clone();
        async move { (ok, w.write(ops).await) }
    }))
    .await;
    for (ok, result) in &results {
        if *ok {
            assert!(result.is_ok(), "a good message failed: {result:?}");
        } else {
            assert!(
                matches!(result, Err(StorageError::Invalid(_))),
                "a bad message was not refused as invalid: {result:?}"
            );
        }
    }
    for (i, e) in good.iter().enumerate() {
        assert_eq!(
            latest_str(store, *e).await,
            Some(KvValue::Str(format!("ok {i}")))
        );
    }
    drop(w);
    stop.cancel();
    task.await.unwrap();
}

async fn data_no_database_holds_is_refused_before_the_batch(backend: Backend) {
    let db = super::open(backend).await;
    let e = Uuid::new_v4();
    let bad = vec![
        ts_op(e, vec![pt(1, &"k".repeat(256), KvValue::Long(1))]),
        ts_op(e, vec![pt(1, "s", KvValue::Str("nul \0 inside".into()))]),
        ts_op(
            e,
            vec![pt(1, "j", KvValue::Json(r#"{"a":"\u0000"}"#.into()))],
        ),
        attr_op(
            e,
            AttributeScope::Server,
            1,
            &[(&"a".repeat(3000), KvValue::Bool(true))],
        ),
    ];
    one_bad_among_many(&db.store, bad).await;
    assert!(db.store.latest(e, None).await.unwrap().is_empty());
    db.store.close().await;
}

async fn data_the_database_refuses_fails_only_its_message(backend: Backend) {
    let db = super::open(backend).await;
    refuse_marker(backend, &db._database.url).await;
    let e = Uuid::new_v4();
    let mut bad = vec![ts_op(e, vec![pt(1, "s", KvValue::Str(REFUSED.into()))])];
    if backend == Backend::Postgres {
        // JSON text PostgreSQL's jsonb does not take.
        bad.push(ts_op(
            Uuid::new_v4(),
            vec![pt(1, "j", KvValue::Json("{not json".into()))],
        ));
    }
    one_bad_among_many(&db.store, bad).await;
    assert_eq!(latest_str(&db.store, e).await, None);
    db.store.close().await;
}

/// When the database does not answer, nothing is split or refused as invalid: every message of
/// the batch gets the database's error (MQTT 3.1.1 devices re-send, REST callers see 500).
async fn a_database_that_does_not_answer_fails_writes_as_they_are(backend: Backend) {
    let db = super::open(backend).await;
    let (w, stop, task) = writer(&db.store);
    db.store.close().await;
    let writes = (0..4).map(|i| {
        let w = w.clone();
        async move {
            let op = ts_op(Uuid::new_v4(), vec![pt(1, "s", KvValue::Long(i))]);
            w.write(vec![op]).await
        }
    });
    for result in futures::future::join_all(writes).await {
        assert!(
            matches!(result, Err(StorageError::Database(_))),
            "{result:?}"
        );
    }
    drop(w);
    stop.cancel();
    task.await.unwrap();
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_that_does_not_answer_fails_writes_as_they_are() {
        super::a_database_that_does_not_answer_fails_writes_as_they_are(super::Backend::Sqlite)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_no_database_holds_is_refused_before_the_batch() {
        super::data_no_database_holds_is_refused_before_the_batch(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_the_database_refuses_fails_only_its_message() {
        super::data_the_database_refuses_fails_only_its_message(super::Backend::Sqlite).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_that_does_not_answer_fails_writes_as_they_are() {
        super::a_database_that_does_not_answer_fails_writes_as_they_are(super::Backend::Postgres)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_no_database_holds_is_refused_before_the_batch() {
        super::data_no_database_holds_is_refused_before_the_batch(super::Backend::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_the_database_refuses_fails_only_its_message() {
        super::data_the_database_refuses_fails_only_its_message(super::Backend::Postgres).await;
    }
}
