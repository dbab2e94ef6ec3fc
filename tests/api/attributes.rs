//! Attributes: the three save routes, reads by scope and key, keys, delete, text error bodies.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::support::*;

/// A device with SERVER and SHARED attributes saved through all three routes; returns (id, base path).
async fn device_with_attributes(api: &Api) -> (String, String) {
    let (id, _) = api.create_device(json!({"name": "attr-dev"})).await;
    let base = format!("{TELEMETRY}/{id}");
    let server = json!({"targetTemp": 22, "ratio": 25.0, "mode": "eco", "cfg": {"a": 1}, "on": true, "num": "42"});
    api.post(&format!("{base}/SERVER_SCOPE"), server).await.ok();
    // tb-ce-client sends text/plain; the v2 and legacy routes save too.
    let shared = br#"{"interval": 30}"#.to_vec();
    let v2 = format!("{base}/attributes/SHARED_SCOPE");
    api.raw(Method::POST, &v2, "text/plain", shared).await.ok();
    let legacy = format!("/api/plugins/telemetry/{id}/SHARED_SCOPE");
    api.post(&legacy, json!({"color": "red"})).await.ok();
    (id, base)
}

async fn attributes_save_and_read(app: &TestApp) {
    let api = Api::tenant(app).await;
    let before = now_ms();
    let (_, base) = device_with_attributes(&api).await;
    let rows = api
        .get(&format!("{base}/values/attributes/SERVER_SCOPE"))
        .await
        .ok();
    let got = attr_map(&rows);
    assert_eq!(got["targetTemp"].to_string(), "22");
    assert_eq!(got["ratio"].to_string(), "25.0");
    assert_eq!(got["mode"], "eco");
    assert_eq!(got["cfg"], json!({"a": 1}));
    assert_eq!(got["on"], true);
    assert_eq!(
        got["num"].to_string(),
        "42",
        "numeric strings are typed as numbers"
    );
    let ts = rows[0]["lastUpdateTs"].as_i64().expect("lastUpdateTs");
    assert!(ts >= before && ts <= now_ms());

    let some_keys = format!("{base}/values/attributes/SERVER_SCOPE?keys=mode,missing,on");
    let some = attr_map(&api.get(&some_keys).await.ok());
    let mut some: Vec<&String> = some.keys().collect();
    some.sort();
    assert_eq!(some, ["mode", "on"]);
    let all = attr_map(&api.get(&format!("{base}/values/attributes")).await.ok());
    assert_eq!(all.len(), 8);
    assert_eq!(all["interval"].to_string(), "30");
}

async fn attributes_keys_and_delete(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, base) = device_with_attributes(&api).await;
    let mut keys = api
        .get(&format!("{base}/keys/attributes/SHARED_SCOPE"))
        .await
        .ok();
    keys.as_array_mut()
        .expect("keys")
        .sort_by_key(Value::to_string);
    assert_eq!(keys, json!(["color", "interval"]));
    let all_keys = api.get(&format!("{base}/keys/attributes")).await.ok();
    assert_eq!(all_keys.as_array().map(Vec::len), Some(8));

    api.delete(&format!("{base}/SERVER_SCOPE?keys=mode,cfg,nothing"))
        .await
        .ok();
    let server = format!("{base}/values/attributes/SERVER_SCOPE");
    let left = attr_map(&api.get(&server).await.ok());
    assert!(!left.contains_key("mode") && !left.contains_key("cfg") && left.contains_key("on"));
    let legacy = format!("/api/plugins/telemetry/{id}/SHARED_SCOPE?keys=color");
    api.delete(&legacy).await.ok();
    let shared = attr_map(
        &api.get(&format!("{base}/values/attributes/SHARED_SCOPE"))
            .await
            .ok(),
    );
    assert_eq!(shared.keys().collect::<Vec<_>>(), ["interval"]);
}

async fn attribute_errors(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, _) = api.create_device(json!({"name": "attr-err"})).await;
    let base = format!("{TELEMETRY}/{id}");
    api.post(&format!("{base}/CLIENT_SCOPE"), json!({"a": 1}))
        .await
        .text_error(400, "Invalid scope: CLIENT_SCOPE");
    api.raw(
        Method::POST,
        &format!("{base}/SERVER_SCOPE"),
        "application/json",
        b"{oops".to_vec(),
    )
    .await
    .text_error(400, "Invalid JSON");
    api.post(&format!("{base}/SERVER_SCOPE"), json!({}))
        .await
        .text_error(400, "No attributes data found in request body!");
    api.delete(&format!("{base}/SERVER_SCOPE?keys="))
        .await
        .text_error(400, "Empty keys: []");
    api.post(&format!("{base}/BOGUS_SCOPE"), json!({"a": 1}))
        .await
        .error(400, 31);
    api.get(&format!("{base}/values/attributes/BOGUS_SCOPE"))
        .await
        .error(400, 31);
    api.post(
        &format!("/api/plugins/telemetry/ASSET/{id}/SERVER_SCOPE"),
        json!({"a": 1}),
    )
    .await
    .error(400, 31);
    api.post(&format!("{TELEMETRY}/xyz/SERVER_SCOPE"), json!({"a": 1}))
        .await
        .error(400, 31);
    let missing = api
        .post(
            &format!("{TELEMETRY}/{MISSING_ID}/SERVER_SCOPE"),
            json!({"a": 1}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

crate::both_backends!(
    attributes_save_and_read,
    attributes_keys_and_delete,
    attribute_errors
);
