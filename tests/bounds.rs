//! Bounds on what input can make the server hold, against the real server: the per-tenant
//! time-series key quota, REST key and id lists, and the request timeout (page sizes: the unit
//! tests of `api::paging`) — on SQLite
//! and PostgreSQL where storage is involved.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use common::raw_mqtt::{puback, publish_qos1, session};
use common::{Backend, TestApp};
use ferroboard::domain::KvValue;
use serde_json::json;
use support::Api;

const TELEMETRY: &str = "v1/devices/me/telemetry";

async fn device(api: &Api) -> (uuid::Uuid, String) {
    let name = format!("bound-{}", uuid::Uuid::new_v4().simple());
    let (id, _) = api.create_device(json!({ "name": name })).await;
    let token = api.token_of(&id).await;
    (id.parse().expect("uuid"), token)
}

async fn latest_keys(app: &TestApp, id: uuid::Uuid) -> Vec<String> {
    let state = &app.app.as_ref().expect("running").state;
    let mut keys: Vec<String> = state
        .services
        .store
        .latest(id, None)
        .await
        .expect("latest")
        .into_iter()
        .map(|p| p.key)
        .collect();
    keys.sort();
    keys
}

async fn the_tenant_key_quota_refuses_new_keys_only(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (first, token) = device(&api).await;
    let (second, other_token) = device(&api).await;
    let mut sock = session(app, &token).await;
    publish_qos1(&mut sock, TELEMETRY, 1, r#"{"a":1,"b":2}"#).await;
    puback(&mut sock, 1).await;
    // The quota (3) counts keys over all devices of the tenant.
    let mut other = session(app, &other_token).await;
    publish_qos1(&mut other, TELEMETRY, 1, r#"{"c":3}"#).await;
    puback(&mut other, 1).await;
    // A fourth key is refused, with every other value of its message.
    publish_qos1(&mut sock, TELEMETRY, 2, r#"{"a":10,"d":4}"#).await;
    puback(&mut sock, 2).await;
    // Known keys still go through.
    publish_qos1(&mut other, TELEMETRY, 2, r#"{"a":5,"c":6}"#).await;
    puback(&mut other, 2).await;
    assert_eq!(latest_keys(app, first).await, ["a", "b"]);
    assert_eq!(latest_keys(app, second).await, ["a", "c"]);
    let state = &app.app.as_ref().expect("running").state;
    let a = state
        .services
        .store
        .latest(first, Some(&["a".to_owned()]))
        .await
        .expect("latest");
    assert_eq!(
        a[0].value,
        KvValue::Long(1),
        "the refused message stored nothing"
    );
}

async fn rest_lists_are_bounded(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, _) = device(&api).await;
    // More than 1000 deviceIds, more than 200 keys: 400 naming the limit.
    let ids = vec![id.to_string(); 1001].join(",");
    let msg = api
        .get(&format!("/api/devices?deviceIds={ids}"))
        .await
        .error(400, 31);
    assert!(msg.contains("at most 1000"), "{msg}");
    let keys: Vec<String> = (0..201).map(|i| format!("k{i}")).collect();
    let path = format!(
        "/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys={}",
        keys.join(",")
    );
    let msg = api.get(&path).await.error(400, 31);
    assert!(msg.contains("at most 200 keys"), "{msg}");
    let path = format!(
        "/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys={}",
        keys[..200].join(",")
    );
    api.get(&path).await.ok();
}

both_backends!(rest_lists_are_bounded);

async fn with_quota(backend: Backend) {
    let app = common::spawn_app_with(backend, |c| {
        c.limits.max_timeseries_keys_per_tenant = 3;
    })
    .await;
    the_tenant_key_quota_refuses_new_keys_only(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_key_quota_refuses_new_keys_only_sqlite() {
    with_quota(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_key_quota_refuses_new_keys_only_postgres() {
    with_quota(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_413() {
    let app = common::spawn_app_with(Backend::Sqlite, |c| c.http.max_body_bytes = 2048).await;
    let api = Api::tenant(&app).await;
    let big = json!({"name": "big", "label": "x".repeat(4096)});
    api.post("/api/device", big).await.error(413, 31);
    let small = json!({"name": "small", "label": "x".repeat(512)});
    api.post("/api/device", small).await.ok();
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_request_timeout_gets_408() {
    let app = common::spawn_app_with(Backend::Sqlite, |c| {
        c.http.request_timeout_ms = 1000;
        c.rpc.min_timeout_ms = 100;
        c.rpc.default_timeout_ms = 500;
    })
    .await;
    let api = Api::tenant(&app).await;
    let (id, _) = device(&api).await;
    // An RPC asking to wait 60 s for a device that never answers.
    let resp = api
        .post(
            &format!("/api/plugins/rpc/twoway/{id}"),
            json!({"method": "m", "params": {}, "timeout": 60_000}),
        )
        .await;
    let msg = resp.error(408, 2);
    assert!(msg.contains("http.request_timeout_ms"), "{msg}");
    app.shutdown().await;
}

/// Client-side RPC requests waiting for the rules' answer hold an entry and a timer each: at most
/// `mqtt.max_inflight` per session; one more (or a request id already waiting) ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_client_rpcs_are_bounded_per_session() {
    use tokio::io::AsyncReadExt;
    let app = common::spawn_app_with(Backend::Sqlite, |c| c.mqtt.max_inflight = 2).await;
    let api = Api::tenant(&app).await;
    let (_, token) = device(&api).await;
    // The default rules only log methods other than getCurrentTime: these wait for their timeout.
    let request = r#"{"method":"noAnswer","params":{}}"#;
    for refused_id in ["3", "1"] {
        let mut sock = session(&app, &token).await;
        publish_qos1(&mut sock, "v1/devices/me/rpc/request/1", 1, request).await;
        puback(&mut sock, 1).await;
        publish_qos1(&mut sock, "v1/devices/me/rpc/request/2", 2, request).await;
        puback(&mut sock, 2).await;
        let topic = format!("v1/devices/me/rpc/request/{refused_id}");
        publish_qos1(&mut sock, &topic, 3, request).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "request {refused_id}: session closed, got {read:?}"
        );
    }
    app.shutdown().await;
}
