//! Time series: the three body forms, latest (string and strict), history, aggregation, delete.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::support::*;

/// A device with time series saved in all three body forms; returns (base path, t0, before, after)
/// where [before, after] brackets the server timestamp of the first save.
async fn device_with_series(api: &Api) -> (String, i64, i64, i64) {
    let (id, _) = api.create_device(json!({"name": "ts-dev"})).await;
    let base = format!("{TELEMETRY}/{id}");
    let t0 = now_ms() - 3_600_000;
    let before = now_ms();
    api.post(
        &format!("{base}/timeseries/ANY?scope=ANY"),
        json!({"temperature": 21.5, "on": true}),
    )
    .await
    .ok();
    let after = now_ms();
    let ts_values = format!(
        r#"{{"ts": {t0}, "values": {{"setpoint": 25.0, "label": "hi", "cfg": {{"a": [1]}}}}}}"#
    );
    api.raw(
        Method::POST,
        &format!("{base}/timeseries/ANY"),
        "text/plain",
        ts_values.into_bytes(),
    )
    .await
    .ok();
    let array =
        json!([{"ts": t0, "values": {"count": 1}}, {"ts": t0 + 1000, "values": {"count": 2}}]);
    api.post(&format!("{base}/timeseries/ANY/0"), array)
        .await
        .ok();
    (base, t0, before, after)
}

async fn timeseries_save_and_latest(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (base, t0, before, after) = device_with_series(&api).await;
    let latest = api
        .get(&format!(
            "{base}/values/timeseries?keys=temperature,on,setpoint,label,cfg,count,nothing"
        ))
        .await
        .ok();
    let temp = series(&latest, "temperature");
    assert!(
        temp[0].0 >= before && temp[0].0 <= after,
        "server timestamp"
    );
    assert_eq!(temp[0].1, "21.5");
    assert_eq!(series(&latest, "on")[0].1, "true");
    assert_eq!(series(&latest, "setpoint"), [(t0, json!("25.0"))]);
    assert_eq!(series(&latest, "label")[0].1, "hi");
    assert_eq!(series(&latest, "cfg")[0].1, r#"{"a":[1]}"#);
    assert_eq!(series(&latest, "count"), [(t0 + 1000, json!("2"))]);
    let nothing = series(&latest, "nothing");
    assert!(nothing[0].1.is_null() && nothing[0].0 >= before);
}

async fn timeseries_strict_keys_and_errors(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (base, _, _, _) = device_with_series(&api).await;
    let strict = api
        .get(&format!("{base}/values/timeseries?keys=temperature,on,setpoint,count,cfg&useStrictDataTypes=true"))
        .await
        .ok();
    assert_eq!(series(&strict, "temperature")[0].1.to_string(), "21.5");
    assert_eq!(series(&strict, "on")[0].1, true);
    assert_eq!(series(&strict, "setpoint")[0].1.to_string(), "25.0");
    assert_eq!(series(&strict, "count")[0].1.to_string(), "2");
    assert_eq!(series(&strict, "cfg")[0].1, json!({"a": [1]}));

    let all = api.get(&format!("{base}/values/timeseries")).await.ok();
    assert_eq!(all.as_object().map(serde_json::Map::len), Some(6));
    let keys = api.get(&format!("{base}/keys/timeseries")).await.ok();
    let mut keys: Vec<String> = serde_json::from_value(keys).expect("key list");
    keys.sort();
    assert_eq!(
        keys,
        ["cfg", "count", "label", "on", "setpoint", "temperature"]
    );

    api.raw(
        Method::POST,
        &format!("{base}/timeseries/ANY"),
        "application/json",
        b"[1,".to_vec(),
    )
    .await
    .text_error(400, "Unable to parse time series payload: invalid JSON");
    let empty = api.post(&format!("{base}/timeseries/ANY"), json!({})).await;
    empty.text_error(400, "No time series data found in request body!");
}

/// A device with points of `l` (1..4, longs) and `d` (0.5..3.5) one second apart from `b`.
async fn device_with_history(api: &Api) -> (String, i64) {
    let (id, _) = api.create_device(json!({"name": "hist-dev"})).await;
    let base = format!("{TELEMETRY}/{id}");
    let b = (now_ms() / 1000) * 1000 - 86_400_000;
    let points: Vec<Value> = (0..4)
        .map(|i| json!({"ts": b + i * 1000, "values": {"l": i + 1, "d": (i as f64) + 0.5}}))
        .collect();
    api.post(&format!("{base}/timeseries/ANY"), Value::Array(points))
        .await
        .ok();
    (base, b)
}

/// GET on the legacy history route, asserting 200.
async fn history(api: &Api, base: &str, query: String) -> Value {
    api.get(&format!("{base}/values/timeseries?{query}"))
        .await
        .ok()
}

async fn history_range_limit_and_order(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (base, b) = device_with_history(&api).await;
    let h = |q: String| history(&api, &base, q);
    // [startTs, endTs), newest first by default; the legacy route and /history agree.
    let none = h(format!("keys=l,d&startTs={b}&endTs={}", b + 2000)).await;
    assert_eq!(
        series(&none, "l"),
        [(b + 1000, json!("2")), (b, json!("1"))]
    );
    assert_eq!(
        series(&none, "d"),
        [(b + 1000, json!("1.5")), (b, json!("0.5"))]
    );
    let newer = api
        .get(&format!(
            "{base}/values/timeseries/history?keys=l&startTs={b}&endTs={}",
            b + 2000
        ))
        .await
        .ok();
    assert_eq!(newer["l"], none["l"]);
    let empty = h(format!("keys=l&startTs={}&endTs={b}", b - 1000)).await;
    assert!(
        empty
            .get("l")
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty)),
        "{empty}"
    );
    let limited = h(format!("keys=l&startTs={b}&endTs={}&limit=2", b + 4000)).await;
    assert_eq!(
        series(&limited, "l"),
        [(b + 3000, json!("4")), (b + 2000, json!("3"))]
    );
    let asc = h(format!(
        "keys=l&startTs={b}&endTs={}&limit=2&orderBy=ASC",
        b + 4000
    ))
    .await;
    assert_eq!(series(&asc, "l"), [(b, json!("1")), (b + 1000, json!("2"))]);
    let repeated = h(format!(
        "key=l&startTs={b}&endTs={}&useStrictDataTypes=true",
        b + 1000
    ))
    .await;
    assert_eq!(series(&repeated, "l")[0].1.to_string(), "1");
    assert_eq!(
        h(format!("startTs={b}&endTs={}", b + 1000)).await,
        json!({})
    );
}

async fn history_aggregation(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (base, b) = device_with_history(&api).await;
    let h = |q: String| history(&api, &base, q);
    // Aggregation over two 2-second buckets, stamped at their midpoints, ascending.
    let expect = [
        ("AVG", 1.5, 3.5),
        ("MIN", 1.0, 3.0),
        ("MAX", 2.0, 4.0),
        ("SUM", 3.0, 7.0),
        ("COUNT", 2.0, 2.0),
    ];
    for (agg, first, second) in expect {
        let q = format!(
            "keys=l&startTs={b}&endTs={}&interval=2000&agg={agg}&useStrictDataTypes=true",
            b + 4000
        );
        let got = series(&h(q).await, "l");
        let numbers: Vec<(i64, f64)> = got
            .iter()
            .map(|(t, v)| (*t, v.as_f64().expect("number")))
            .collect();
        assert_eq!(numbers, [(b + 1000, first), (b + 3000, second)], "{agg}");
    }
    let avg = h(format!(
        "keys=d&startTs={b}&endTs={}&interval=2000&agg=AVG",
        b + 4000
    ))
    .await;
    assert_eq!(
        series(&avg, "d"),
        [(b + 1000, json!("1.0")), (b + 3000, json!("3.0"))]
    );
    // The last bucket is clipped to endTs; its midpoint moves with it.
    let clipped = h(format!(
        "keys=l&startTs={b}&endTs={}&interval=2000&agg=COUNT",
        b + 3000
    ))
    .await;
    assert_eq!(series(&clipped, "l").last().map(|p| p.0), Some(b + 2500));
    // Interval 0 means no aggregation.
    let zero = h(format!(
        "keys=l&startTs={b}&endTs={}&interval=0&agg=AVG",
        b + 2000
    ))
    .await;
    assert_eq!(series(&zero, "l").len(), 2);
}

async fn history_parameter_errors(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (base, b) = device_with_history(&api).await;
    let bad = |q: String| {
        let api = &api;
        let base = base.clone();
        async move {
            api.get(&format!("{base}/values/timeseries/history?{q}"))
                .await
        }
    };
    bad(format!(
        "keys=l&startTs={b}&endTs={}&agg=MEDIAN&interval=1000",
        b + 1000
    ))
    .await
    .error(400, 31);
    bad(format!("keys=l&startTs={b}&endTs={}&orderBy=UP", b + 1000))
        .await
        .error(400, 31);
    bad(format!("keys=l&startTs={b}")).await.error(400, 31);
    let too_many = bad(format!(
        "keys=l&startTs={b}&endTs={}&agg=AVG&interval=1000",
        b + 86_400_000
    ))
    .await;
    assert_eq!(too_many.status, 400);
}

async fn timeseries_delete(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, _) = api.create_device(json!({"name": "del-dev"})).await;
    let base = format!("{TELEMETRY}/{id}");
    let b = (now_ms() / 1000) * 1000 - 86_400_000;
    let points: Vec<Value> = (0..4)
        .map(|i| json!({"ts": b + i * 1000, "values": {"a": i, "z": i}}))
        .collect();
    api.post(&format!("{base}/timeseries/ANY"), Value::Array(points))
        .await
        .ok();

    api.delete(&format!(
        "{base}/timeseries/delete?keys=a&startTs={b}&endTs={}&deleteLatest=false",
        b + 2000
    ))
    .await
    .ok();
    let hist = api
        .get(&format!(
            "{base}/values/timeseries?keys=a&startTs={b}&endTs={}",
            b + 4000
        ))
        .await
        .ok();
    assert_eq!(
        series(&hist, "a"),
        [(b + 3000, json!("3")), (b + 2000, json!("2"))]
    );

    api.delete(&format!(
        "{base}/timeseries/delete?keys=z&deleteAllDataForKeys=true"
    ))
    .await
    .ok();
    let latest = api
        .get(&format!("{base}/values/timeseries?keys=z"))
        .await
        .ok();
    assert!(series(&latest, "z")[0].1.is_null());
    let keys = api.get(&format!("{base}/keys/timeseries")).await.ok();
    assert_eq!(keys, json!(["a"]));

    api.delete(&format!("{base}/timeseries/delete?keys=a"))
        .await
        .text_error(
            400,
            "When deleteAllDataForKeys is false, start and end timestamp values shouldn't be empty",
        );
    api.delete(&format!(
        "{base}/timeseries/delete?keys=&deleteAllDataForKeys=true"
    ))
    .await
    .text_error(400, "Empty keys: []");
}

crate::both_backends!(
    timeseries_save_and_latest,
    timeseries_strict_keys_and_errors,
    history_range_limit_and_order,
    history_aggregation,
    history_parameter_errors,
    timeseries_delete,
);
