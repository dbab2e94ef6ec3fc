//! Telemetry retention end to end: TTLs from the REST call and from `retention.default_ttl_s`,
//! expired points deleted by the background cleanup (with its metric), and the REST delete's
//! `rewriteLatestIfDeleted` — on SQLite and PostgreSQL.

mod common;
#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::time::Duration;

use common::{Backend, TestApp, eventually};
use serde_json::{Value, json};
use support::{Api, TELEMETRY, now_ms};

const WAIT: Duration = Duration::from_secs(20);

async fn spawn(backend: Backend, default_ttl_s: u64) -> TestApp {
    common::spawn_app_with(backend, |c| {
        c.retention.cleanup_interval_ms = 100;
        c.retention.default_ttl_s = default_ttl_s;
    })
    .await
}

/// How many points of `key` the history endpoint returns.
async fn stored(api: &Api, device: &str, key: &str) -> usize {
    let body = api
        .get(&format!(
            "{TELEMETRY}/{device}/values/timeseries?keys={key}&startTs=0&endTs={}",
            now_ms() + 60_000
        ))
        .await
        .ok();
    body[key].as_array().map_or(0, Vec::len)
}

async fn expired_total(app: &TestApp) -> f64 {
    let text = Api::anonymous(app).get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix("ferroboard_telemetry_rows_expired_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn the_rest_ttl_expires_points_in_the_background(backend: Backend) {
    let app = spawn(backend, 0).await;
    let api = Api::tenant(&app).await;
    let (id, _) = api.create_device(json!({"name": "ttl-rest"})).await;
    let old = now_ms() - 60_000;
    let save = |ttl: Option<u32>, key: &str| {
        let path = match ttl {
            Some(ttl) => format!("{TELEMETRY}/{id}/timeseries/ANY/{ttl}"),
            None => format!("{TELEMETRY}/{id}/timeseries/ANY"),
        };
        (path, json!({"ts": old, "values": {key: 1}}))
    };
    for (ttl, key) in [(Some(1), "gone"), (None, "kept"), (Some(3600), "later")] {
        let (path, body) = save(ttl, key);
        api.post(&path, body).await.ok();
    }
    // A minute old with a TTL of 1 s: the cleanup deletes it; the others stay.
    eventually("the expired point is deleted", WAIT, || async {
        (stored(&api, &id, "gone").await == 0).then_some(())
    })
    .await;
    assert_eq!(
        stored(&api, &id, "kept").await,
        1,
        "no TTL, no default: kept"
    );
    assert_eq!(stored(&api, &id, "later").await, 1, "an hour's TTL: kept");
    // The latest value is not expired (as in ThingsBoard).
    let latest: Value = api
        .get(&format!("{TELEMETRY}/{id}/values/timeseries?keys=gone"))
        .await
        .ok();
    assert_eq!(latest["gone"][0]["ts"], json!(old), "{latest}");
    assert!(expired_total(&app).await >= 1.0);
    app.shutdown().await;
}

async fn the_default_ttl_applies_to_device_telemetry(backend: Backend) {
    let app = spawn(backend, 1).await;
    let api = Api::tenant(&app).await;
    let (id, _) = api.create_device(json!({"name": "ttl-default"})).await;
    let token = api.token_of(&id).await;
    let mut sock = common::raw_mqtt::session(&app, &token).await;
    let old = now_ms() - 60_000;
    common::raw_mqtt::publish_qos1(
        &mut sock,
        "v1/devices/me/telemetry",
        1,
        &format!(r#"{{"ts":{old},"values":{{"t":1}}}}"#),
    )
    .await;
    // Acknowledged, so committed: then it expires.
    common::raw_mqtt::puback(&mut sock, 1).await;
    // Its own TTL wins over the default.
    api.post(
        &format!("{TELEMETRY}/{id}/timeseries/ANY/3600"),
        json!({"ts": old, "values": {"own": 1}}),
    )
    .await
    .ok();
    eventually("the device's old point expired", WAIT, || async {
        (stored(&api, &id, "t").await == 0).then_some(())
    })
    .await;
    assert_eq!(stored(&api, &id, "own").await, 1);
    // It was stored: its latest value stays.
    let latest = api
        .get(&format!("{TELEMETRY}/{id}/values/timeseries?keys=t"))
        .await
        .ok();
    assert_eq!(latest["t"][0]["ts"], json!(old), "{latest}");
    drop(sock);
    app.shutdown().await;
}

async fn delete_rewrites_the_latest_value_when_asked(backend: Backend) {
    let app = common::spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, _) = api.create_device(json!({"name": "rewrite-latest"})).await;
    api.post(
        &format!("{TELEMETRY}/{id}/timeseries/ANY"),
        json!([{"ts": 10, "values": {"r": 1, "s": 1}}, {"ts": 20, "values": {"r": 2, "s": 2}}]),
    )
    .await
    .ok();
    for (key, rewrite) in [("r", true), ("s", false)] {
        api.delete(&format!(
            "{TELEMETRY}/{id}/timeseries/delete?keys={key}&startTs=15&endTs=25&rewriteLatestIfDeleted={rewrite}"
        ))
        .await
        .ok();
    }
    let latest = api
        .get(&format!("{TELEMETRY}/{id}/values/timeseries?keys=r,s"))
        .await
        .ok();
    assert_eq!(latest["r"], json!([{"ts": 10, "value": "1"}]), "{latest}");
    assert!(
        latest.get("s").is_none_or(|s| s[0]["value"].is_null()),
        "{latest}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_ttl_expires_points_in_the_background_sqlite() {
    the_rest_ttl_expires_points_in_the_background(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_ttl_expires_points_in_the_background_postgres() {
    the_rest_ttl_expires_points_in_the_background(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_ttl_applies_to_device_telemetry_sqlite() {
    the_default_ttl_applies_to_device_telemetry(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_ttl_applies_to_device_telemetry_postgres() {
    the_default_ttl_applies_to_device_telemetry(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_rewrites_the_latest_value_when_asked_sqlite() {
    delete_rewrites_the_latest_value_when_asked(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_rewrites_the_latest_value_when_asked_postgres() {
    delete_rewrites_the_latest_value_when_asked(Backend::Postgres).await;
}
