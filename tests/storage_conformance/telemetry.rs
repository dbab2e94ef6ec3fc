//! Cases: attributes and time series (commit, latest, history, aggregation, deletes, types).

use super::fixtures::*;
use ferroboard::domain::{AttributeScope, KvValue, TsKv};
use ferroboard::storage::{Aggregation, SortOrder, Store, WriteOp};
use uuid::Uuid;

pub async fn timeseries_duplicates_and_latest_order(store: &dyn Store) {
    let e = Uuid::new_v4();
    store
        .commit(&[
            ts_op(
                e,
                vec![
                    pt(100, "t", KvValue::Long(1)),
                    pt(100, "t", KvValue::Long(2)),
                    pt(50, "h", KvValue::Long(7)),
                ],
            ),
            ts_op(
                e,
                vec![
                    pt(100, "t", KvValue::Double(3.5)),
                    pt(90, "t", KvValue::Long(0)),
                ],
            ),
        ])
        .await
        .unwrap();
    let t = store
        .history(e, &history("t", 0, 1000, 100, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        pairs(&t),
        vec![(90, KvValue::Long(0)), (100, KvValue::Double(3.5))],
        "last write wins per ts"
    );
    assert_eq!(
        store.latest(e, None).await.unwrap(),
        vec![
            pt(50, "h", KvValue::Long(7)),
            pt(100, "t", KvValue::Double(3.5))
        ]
    );

    // An older point is stored but does not replace the newer latest value.
    store
        .commit(&[ts_op(e, vec![pt(80, "t", KvValue::Long(-1))])])
        .await
        .unwrap();
    assert_eq!(
        store.latest(e, Some(&strs(&["t"]))).await.unwrap(),
        vec![pt(100, "t", KvValue::Double(3.5))]
    );
    assert_eq!(
        store
            .history(e, &history("t", 0, 1000, 100, SortOrder::Asc))
            .await
            .unwrap()
            .len(),
        3
    );
    // The same timestamp again replaces it; a newer one too.
    store
        .commit(&[ts_op(e, vec![pt(100, "t", KvValue::Str("same".into()))])])
        .await
        .unwrap();
    assert_eq!(
        store.latest(e, Some(&strs(&["t"]))).await.unwrap(),
        vec![pt(100, "t", KvValue::Str("same".into()))]
    );
    store
        .commit(&[ts_op(e, vec![pt(101, "t", KvValue::Bool(true))])])
        .await
        .unwrap();
    assert_eq!(
        store.latest(e, Some(&strs(&["t", "nope"]))).await.unwrap(),
        vec![pt(101, "t", KvValue::Bool(true))]
    );
    assert!(store.latest(e, Some(&[])).await.unwrap().is_empty());

    assert_eq!(store.timeseries_keys(e).await.unwrap(), strs(&["h", "t"]));
    assert!(
        store
            .timeseries_keys(Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.latest(Uuid::new_v4(), None).await.unwrap().is_empty());
}

pub async fn history_range_limit_and_order(store: &dyn Store) {
    let e = Uuid::new_v4();
    let points = (0..10).map(|i| pt(i * 10, "v", KvValue::Long(i))).collect();
    store
        .commit(&[
            ts_op(e, points),
            ts_op(Uuid::new_v4(), vec![pt(20, "v", KvValue::Long(99))]),
        ])
        .await
        .unwrap();
    let range = store
        .history(e, &history("v", 20, 50, 100, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        range.iter().map(|p| p.ts).collect::<Vec<_>>(),
        vec![20, 30, 40],
        "end is exclusive"
    );
    assert!(range.iter().all(|p| p.key == "v"));
    let desc = store
        .history(e, &history("v", 20, 50, 100, SortOrder::Desc))
        .await
        .unwrap();
    assert_eq!(
        desc.iter().map(|p| p.ts).collect::<Vec<_>>(),
        vec![40, 30, 20]
    );
    let first = store
        .history(e, &history("v", 0, 1000, 2, SortOrder::Asc))
        .await
        .unwrap();
    assert_eq!(
        pairs(&first),
        vec![(0, KvValue::Long(0)), (10, KvValue::Long(1))]
    );
    let last = store
        .history(e, &history("v", 0, 1000, 2, SortOrder::Desc))
        .await
        .unwrap();
    assert_eq!(
        pairs(&last),
        vec![(90, KvValue::Long(9)), (80, KvValue::Long(8))]
    );
    assert!(
        store
            .history(e, &history("v", 50, 50, 10, SortOrder::Asc))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .history(e, &history("unknown", 0, 1000, 10, SortOrder::Asc))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn aggregations(store: &dyn Store) {
    let e = Uuid::new_v4();
    // Buckets of 100 over [0, 350): [0,100) longs, [100,200) mixed, [200,300) empty,
    // [300,350) strings only (clipped). A point at 350 is outside the range.
    let points = vec![
        pt(10, "x", KvValue::Long(4)),
        pt(20, "x", KvValue::Long(6)),
        pt(30, "x", KvValue::Long(-1)),
        pt(110, "x", KvValue::Long(1)),
        pt(120, "x", KvValue::Double(2.5)),
        pt(130, "x", KvValue::Bool(true)),
        pt(310, "x", KvValue::Str("pear".into())),
        pt(320, "x", KvValue::Str("apple".into())),
        pt(350, "x", KvValue::Long(1000)),
    ];
    store.commit(&[ts_op(e, points)]).await.unwrap();

    let avg = store
        .history(e, &agg("x", 0, 350, 100, Aggregation::Avg))
        .await
        .unwrap();
    assert_eq!(
        pairs(&avg),
        vec![(50, KvValue::Double(3.0)), (150, KvValue::Double(1.75))]
    );
    assert!(avg.iter().all(|p| p.key == "x"));
    let sum = store
        .history(e, &agg("x", 0, 350, 100, Aggregation::Sum))
        .await
        .unwrap();
    assert_eq!(
        pairs(&sum),
        vec![(50, KvValue::Long(9)), (150, KvValue::Double(3.5))]
    );
    let min = store
        .history(e, &agg("x", 0, 350, 100, Aggregation::Min))
        .await
        .unwrap();
    assert_eq!(
        pairs(&min),
        vec![
            (50, KvValue::Long(-1)),
            (150, KvValue::Double(1.0)),
            (325, KvValue::Str("apple".into()))
        ]
    );
    let max = store
        .history(e, &agg("x", 0, 350, 100, Aggregation::Max))
        .await
        .unwrap();
    assert_eq!(
        pairs(&max),
        vec![
            (50, KvValue::Long(6)),
            (150, KvValue::Double(2.5)),
            (325, KvValue::Str("pear".into()))
        ]
    );
    let count = store
        .history(e, &agg("x", 0, 350, 100, Aggregation::Count))
        .await
        .unwrap();
    assert_eq!(
        pairs(&count),
        vec![
            (50, KvValue::Long(3)),
            (150, KvValue::Long(3)),
            (325, KvValue::Long(2))
        ]
    );

    // Doubles only: MIN/MAX stay doubles, a whole-number SUM stays a double.
    let d = Uuid::new_v4();
    store
        .commit(&[ts_op(
            d,
            vec![
                pt(1, "y", KvValue::Double(1.5)),
                pt(2, "y", KvValue::Double(2.5)),
            ],
        )])
        .await
        .unwrap();
    let q = |a| agg("y", 0, 10, 10, a);
    assert_eq!(
        pairs(&store.history(d, &q(Aggregation::Sum)).await.unwrap()),
        vec![(5, KvValue::Double(4.0))]
    );
    assert_eq!(
        pairs(&store.history(d, &q(Aggregation::Max)).await.unwrap()),
        vec![(5, KvValue::Double(2.5))]
    );
    // A range that is not a multiple of the interval: one bucket clipped at the end.
    assert_eq!(
        pairs(
            &store
                .history(d, &agg("y", 1, 4, 1000, Aggregation::Count))
                .await
                .unwrap()
        ),
        vec![(2, KvValue::Long(2))]
    );
    // Interval 0 means raw points.
    assert_eq!(
        store
            .history(d, &agg("y", 0, 10, 0, Aggregation::Avg))
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn delete_timeseries_ranges_and_latest(store: &dyn Store) {
    let e = Uuid::new_v4();
    let points: Vec<TsKv> = (1..=5)
        .flat_map(|i| {
            [
                pt(i * 10, "a", KvValue::Long(i)),
                pt(i * 10, "b", KvValue::Long(i)),
            ]
        })
        .collect();
    store.commit(&[ts_op(e, points)]).await.unwrap();
    let ts_of = |points: Vec<TsKv>| points.iter().map(|p| p.ts).collect::<Vec<_>>();

    // Range [20, 40), latest kept (its point at 50 is outside the range).
    store
        .delete_timeseries(e, &strs(&["a"]), Some((20, 40)), true, false)
        .await
        .unwrap();
    assert_eq!(
        ts_of(
            store
                .history(e, &history("a", 0, 100, 100, SortOrder::Asc))
                .await
                .unwrap()
        ),
        vec![10, 40, 50]
    );
    assert_eq!(
        ts_of(
            store
                .history(e, &history("b", 0, 100, 100, SortOrder::Asc))
                .await
                .unwrap()
        )
        .len(),
        5
    );
    assert_eq!(
        store.latest(e, Some(&strs(&["a"]))).await.unwrap(),
        vec![pt(50, "a", KvValue::Long(5))]
    );

    // A range covering the latest value with delete_latest removes it.
    store
        .delete_timeseries(e, &strs(&["a"]), Some((45, 100)), true, false)
        .await
        .unwrap();
    assert!(
        store
            .latest(e, Some(&strs(&["a"])))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ts_of(
            store
                .history(e, &history("a", 0, 100, 100, SortOrder::Asc))
                .await
                .unwrap()
        ),
        vec![10, 40]
    );

    // Without a range: all points; without delete_latest: latest survives.
    store
        .delete_timeseries(e, &strs(&["b", "never-stored"]), None, false, false)
        .await
        .unwrap();
    assert!(
        store
            .history(e, &history("b", 0, 100, 100, SortOrder::Asc))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.latest(e, Some(&strs(&["b"]))).await.unwrap(),
        vec![pt(50, "b", KvValue::Long(5))]
    );
    assert_eq!(store.timeseries_keys(e).await.unwrap(), strs(&["a", "b"]));
    store
        .delete_timeseries(e, &strs(&["a", "b"]), None, true, false)
        .await
        .unwrap();
    assert!(store.latest(e, None).await.unwrap().is_empty());
    assert!(store.timeseries_keys(e).await.unwrap().is_empty());
}

pub async fn typed_values_round_trip(store: &dyn Store) {
    let e = Uuid::new_v4();
    let values = vec![
        ("b1", KvValue::Bool(true)),
        ("b2", KvValue::Bool(false)),
        ("l1", KvValue::Long(i64::MAX)),
        ("l2", KvValue::Long(i64::MIN)),
        ("l3", KvValue::Long(0)),
        ("d1", KvValue::Double(25.0)),
        ("d2", KvValue::Double(-0.1)),
        ("d3", KvValue::Double(1.0e300)),
        ("s1", KvValue::Str("héllo \"wörld\" ✓".into())),
        ("s2", KvValue::Str(String::new())),
        ("s3", KvValue::Str("42".into())),
        (
            "j1",
            KvValue::Json(r#"{"a":1.5,"b":[4,true,null,"x"],"c":{"d":-2}}"#.into()),
        ),
        ("j2", KvValue::Json("[1,2.0,3e2]".into())),
    ];
    let points = values.iter().map(|(k, v)| pt(7, k, v.clone())).collect();
    let kvs: Vec<(&str, KvValue)> = values.clone();
    store
        .commit(&[
            ts_op(e, points),
            attr_op(e, AttributeScope::Server, 9, &kvs),
        ])
        .await
        .unwrap();

    let mut expected: Vec<TsKv> = values.iter().map(|(k, v)| pt(7, k, v.clone())).collect();
    // JSON numbers keep their literal form, except that JSONB canonicalises exponents.
    let j2 = if store.backend() == "postgres" {
        "[1,2.0,300]"
    } else {
        "[1,2.0,3e2]"
    };
    if let Some(p) = expected.iter_mut().find(|p| p.key == "j2") {
        p.value = KvValue::Json(j2.into());
    }
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(store.latest(e, None).await.unwrap(), expected);
    for p in &expected {
        let got = store
            .history(e, &history(&p.key, 0, 10, 10, SortOrder::Asc))
            .await
            .unwrap();
        assert_eq!(got, vec![p.clone()], "history of {}", p.key);
    }
    let attrs = store
        .find_attributes(e, AttributeScope::Server, None)
        .await
        .unwrap();
    let attrs: Vec<TsKv> = attrs
        .into_iter()
        .map(|a| pt(a.last_update_ts - 2, &a.key, a.value))
        .collect();
    assert_eq!(attrs, expected);
}

pub async fn large_batches_and_many_keys(store: &dyn Store) {
    // Sizes that exercise every chunk size of the multi-row writers, many keys and entities.
    let entities: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
    let ops: Vec<WriteOp> = (0..1237)
        .map(|i: i64| {
            let e = entities[(i % 7) as usize];
            ts_op(
                e,
                vec![
                    pt(i, &format!("k{}", i % 13), KvValue::Long(i)),
                    pt(i, "all", KvValue::Double(i as f64)),
                ],
            )
        })
        .collect();
    store.commit(&ops).await.unwrap();
    let mut total = 0;
    for e in &entities {
        total += store
            .history(*e, &history("all", 0, 2000, 0, SortOrder::Asc))
            .await
            .unwrap()
            .len();
        assert_eq!(store.latest(*e, None).await.unwrap().len(), 14);
    }
    assert_eq!(total, 1237, "limit 0 returns every point");
    let attrs: Vec<(String, KvValue)> = (0..301)
        .map(|i| (format!("a{i:03}"), KvValue::Long(i)))
        .collect();
    let kvs: Vec<(&str, KvValue)> = attrs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    store
        .commit(&[attr_op(entities[0], AttributeScope::Client, 1, &kvs)])
        .await
        .unwrap();
    assert_eq!(
        store.attribute_keys(entities[0], None).await.unwrap().len(),
        301
    );
    store.commit(&[]).await.unwrap();
}
