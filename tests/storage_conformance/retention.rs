//! Cases: telemetry expiry (TTL) in bounded batches, the latest value rewritten after a delete,
//! pending migrations and the online backup.

use super::fixtures::*;
use ferroboard::domain::KvValue;
use ferroboard::storage::{SortOrder, Store};
use uuid::Uuid;

async fn stored_ts(store: &dyn Store, e: Uuid, key: &str) -> Vec<i64> {
    store
        .history(e, &history(key, 0, i64::MAX, 1000, SortOrder::Asc))
        .await
        .unwrap()
        .iter()
        .map(|p| p.ts)
        .collect()
}

pub async fn expired_points_are_deleted_in_bounded_batches(store: &dyn Store) {
    let (e, kept) = (Uuid::new_v4(), Uuid::new_v4());
    // Points at ts 1..=5 expiring 100 ms after their timestamps; one without a TTL.
    let points = (1..=5).map(|ts| pt(ts, "t", KvValue::Long(ts))).collect();
    store
        .commit(&[
            ts_op_ttl(e, points, 100),
            ts_op(kept, vec![pt(1, "t", KvValue::Long(0))]),
        ])
        .await
        .unwrap();
    // Nothing has expired at 100 (the first point expires at 101).
    assert_eq!(store.delete_expired(100, 10).await.unwrap(), 0);
    // At 103 three points have expired; a batch of 2 deletes two of them, the next the third.
    assert_eq!(store.delete_expired(103, 2).await.unwrap(), 2);
    assert_eq!(stored_ts(store, e, "t").await, vec![3, 4, 5]);
    assert_eq!(store.delete_expired(103, 2).await.unwrap(), 1);
    assert_eq!(stored_ts(store, e, "t").await, vec![4, 5]);
    assert_eq!(store.delete_expired(i64::MAX, 10).await.unwrap(), 2);
    assert!(stored_ts(store, e, "t").await.is_empty());
    // The latest value stays (as ThingsBoard keeps it), and points without a TTL are kept.
    assert_eq!(
        store.latest(e, None).await.unwrap(),
        vec![pt(5, "t", KvValue::Long(5))]
    );
    assert_eq!(stored_ts(store, kept, "t").await, vec![1]);
    // Writing a point again replaces its expiry: without a TTL it is kept.
    store
        .commit(&[ts_op_ttl(e, vec![pt(7, "t", KvValue::Long(7))], 1)])
        .await
        .unwrap();
    store
        .commit(&[ts_op(e, vec![pt(7, "t", KvValue::Long(8))])])
        .await
        .unwrap();
    assert_eq!(store.delete_expired(i64::MAX, 10).await.unwrap(), 0);
    assert_eq!(stored_ts(store, e, "t").await, vec![7]);
}

pub async fn deleted_latest_is_rewritten_when_asked(store: &dyn Store) {
    let e = Uuid::new_v4();
    let points = (1..=4)
        .flat_map(|i| {
            [
                pt(i * 10, "a", KvValue::Long(i)),
                pt(i * 10, "b", KvValue::Long(i)),
            ]
        })
        .collect();
    store.commit(&[ts_op(e, points)]).await.unwrap();
    // [30, 50) holds the latest values (ts 40): a rewrites to its point at 20, b is left without.
    store
        .delete_timeseries(e, &strs(&["a"]), Some((30, 50)), true, true)
        .await
        .unwrap();
    store
        .delete_timeseries(e, &strs(&["b"]), Some((30, 50)), true, false)
        .await
        .unwrap();
    assert_eq!(
        store.latest(e, None).await.unwrap(),
        vec![pt(20, "a", KvValue::Long(2))]
    );
    // Nothing left to rewrite from: no latest value.
    store
        .delete_timeseries(e, &strs(&["a"]), None, true, true)
        .await
        .unwrap();
    assert!(store.latest(e, None).await.unwrap().is_empty());
}

pub async fn no_migration_is_pending_after_migrate(store: &dyn Store) {
    assert_eq!(store.pending_migrations().await.unwrap(), vec![]);
}

pub async fn backup_copies_sqlite_and_names_pg_dump_for_postgres(store: &dyn Store) {
    let e = Uuid::new_v4();
    store
        .commit(&[ts_op(e, vec![pt(1, "t", KvValue::Long(42))])])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    match store.backend() {
        "sqlite" => {
            store.backup(&file).await.unwrap();
            // The copy is a complete database: it opens, has nothing pending and holds the data.
            let copy = ferroboard::storage::open(
                &format!("sqlite://{}", file.display()),
                &Default::default(),
            )
            .await
            .unwrap();
            assert_eq!(copy.pending_migrations().await.unwrap(), vec![]);
            assert_eq!(
                copy.latest(e, None).await.unwrap(),
                vec![pt(1, "t", KvValue::Long(42))]
            );
            copy.close().await;
            // An existing file is never overwritten.
            let again = store.backup(&file).await.unwrap_err().to_string();
            assert!(again.contains("exists already"), "{again}");
        }
        _ => {
            let refused = store.backup(&file).await.unwrap_err().to_string();
            assert!(refused.contains("pg_dump"), "{refused}");
            assert!(!file.exists());
        }
    }
}
