//! Requests answered at once: telemetry and attribute posts (committed before 200), attribute
//! reads, and refusals of bad input.

use serde_json::json;

use crate::common::TestApp;
use crate::support::{Api, TELEMETRY, attr_map, series};
use crate::{Http, clients};

pub async fn telemetry_and_attributes_are_committed_before_200(app: &TestApp) {
    let (id, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    let api = Api::tenant(app).await;

    let posted = dev
        .post(
            "telemetry",
            r#"{"ts": 1700000000000, "values": {"temperature": 21.5}}"#,
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text);
    assert!(posted.text.is_empty(), "ThingsBoard answers an empty body");
    // Committed before the 200: readable at once, without waiting.
    let latest = api
        .get(&format!(
            "{TELEMETRY}/{id}/values/timeseries?keys=temperature"
        ))
        .await
        .ok();
    assert_eq!(
        series(&latest, "temperature"),
        vec![(1_700_000_000_000, json!("21.5"))]
    );

    // The lenient JSON devices send is accepted, as over MQTT.
    let lenient = dev
        .post("telemetry", "{humidity: 40, 'mode': 'eco',}")
        .await;
    assert_eq!(lenient.status, 200, "{}", lenient.text);
    // An empty object is the SDK's connection test.
    assert_eq!(dev.post("telemetry", "{}").await.status, 200);

    let posted = dev
        .post("attributes", r#"{"firmware": "v1.2", "slots": 4}"#)
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text);
    let client = api
        .get(&format!("{TELEMETRY}/{id}/values/attributes/CLIENT_SCOPE"))
        .await
        .ok();
    let client = attr_map(&client);
    assert_eq!(client["firmware"], json!("v1.2"));
    assert_eq!(client["slots"], json!(4));
}

pub async fn bad_requests_are_refused_with_their_reason(app: &TestApp) {
    let (_, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);

    let unknown = Http::new(app, "no-such-token");
    for path in ["telemetry", "attributes"] {
        unknown.post(path, "{}").await.error(401, 10);
    }
    // An unknown token is remembered: asking again costs no lookup.
    let tokens = &clients::state(app).services.auth_cache.tokens;
    let lookups = tokens.lookups();
    unknown.get("attributes").await.error(401, 10);
    unknown.get("rpc?timeout=100").await.error(401, 10);
    unknown
        .get("attributes/updates?timeout=100")
        .await
        .error(401, 10);
    unknown.post("rpc/0", "{}").await.error(401, 10);
    unknown
        .post("rpc", r#"{"method": "m"}"#)
        .await
        .error(401, 10);
    assert_eq!(
        tokens.lookups(),
        lookups,
        "the unknown token was looked up again"
    );

    let message = dev.post("telemetry", "{not json").await.error(400, 31);
    assert!(message.contains("JSON"), "{message}");
    dev.post("attributes", "[1, 2]").await.error(400, 31);
    dev.post("telemetry", r#"{"ts": "soon", "values": {"a": 1}}"#)
        .await
        .error(400, 31);
    let message = dev.post("rpc/seven", "{}").await.error(400, 31);
    assert!(message.contains("seven"), "{message}");
    let message = dev.post("rpc", r#"{"params": {}}"#).await.error(400, 31);
    assert!(message.contains("method"), "{message}");
    dev.post("rpc", "[]").await.error(400, 31);
    let message = dev.get("rpc?timeout=-5").await.error(400, 31);
    assert!(message.contains("negative"), "{message}");
    dev.get("attributes/updates?timeout=later")
        .await
        .error(400, 31);
    // Nothing was left registered by the refused polls.
    crate::polls_open(app, 0).await;
}

pub async fn attribute_reads_have_thingsboards_shape(app: &TestApp) {
    let (id, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    let api = Api::tenant(app).await;
    assert_eq!(
        dev.post("attributes", r#"{"a": 1, "b": "two"}"#)
            .await
            .status,
        200
    );
    api.post(
        &format!("{TELEMETRY}/{id}/SHARED_SCOPE"),
        json!({"s": true, "t": {"deep": [1]}}),
    )
    .await
    .ok();

    let both = dev.get("attributes").await;
    assert_eq!(both.status, 200, "{}", both.text);
    assert_eq!(
        both.json(),
        json!({"client": {"a": 1, "b": "two"}, "shared": {"s": true, "t": {"deep": [1]}}})
    );
    let some = dev.get("attributes?clientKeys=b&sharedKeys=t").await.json();
    assert_eq!(
        some,
        json!({"client": {"b": "two"}, "shared": {"t": {"deep": [1]}}})
    );
    let shared_only = dev.get("attributes?sharedKeys=s,missing").await.json();
    assert_eq!(shared_only, json!({"shared": {"s": true}}));
    // A repeated parameter is one list (the SDK sends `sharedKeys` that way).
    let repeated = dev.get("attributes?sharedKeys=s&sharedKeys=t").await.json();
    assert_eq!(repeated, json!({"shared": {"s": true, "t": {"deep": [1]}}}));
    let none = dev.get("attributes?clientKeys=nothing").await.json();
    assert_eq!(none, json!({}));
}

/// A device's token is looked up once and then accepted from memory; a credentials change, a
/// rename and a deletion take effect at the next request all the same.
pub async fn tokens_are_cached_until_the_device_changes(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, _) = api
        .create_device(json!({"name": format!("cached-{}", uuid::Uuid::new_v4().simple())}))
        .await;
    let token = api.token_of(&id).await;
    let dev = Http::new(app, &token);
    let cache = &clients::state(app).services.auth_cache;
    assert_eq!(dev.get("attributes").await.status, 200);
    let (lookups, hits) = (cache.tokens.lookups(), cache.accepted.hits());
    for _ in 0..3 {
        let posted = dev.post("telemetry", r#"{"n": 1}"#).await;
        assert_eq!(posted.status, 200, "{}", posted.text);
    }
    assert_eq!(
        cache.tokens.lookups(),
        lookups,
        "no lookup for a known token"
    );
    assert_eq!(cache.accepted.hits(), hits + 3);

    // A rename is seen by the next request (the message carries the new name).
    let mut device = api.get(&format!("/api/device/{id}")).await.ok();
    device["name"] = json!(format!("renamed-{}", uuid::Uuid::new_v4().simple()));
    api.post("/api/device", device).await.ok();
    assert_eq!(dev.get("attributes").await.status, 200);
    assert_eq!(
        cache.tokens.lookups(),
        lookups + 1,
        "looked up again after the rename"
    );

    let renewed = format!("renewed-{}", uuid::Uuid::new_v4().simple());
    api.post(
        "/api/device/credentials",
        json!({
            "deviceId": {"entityType": "DEVICE", "id": id},
            "credentialsType": "ACCESS_TOKEN",
            "credentialsId": renewed,
        }),
    )
    .await
    .ok();
    dev.get("attributes").await.error(401, 10);
    let dev = Http::new(app, &renewed);
    assert_eq!(dev.get("attributes").await.status, 200);
    assert_eq!(dev.get("attributes").await.status, 200);
    api.delete(&format!("/api/device/{id}")).await.ok();
    dev.get("attributes").await.error(401, 10);
}
