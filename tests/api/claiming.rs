//! Device claiming: the device's claim message over MQTT (`v1/devices/me/claim`) and HTTP
//! (`POST /api/v1/{token}/claim`), a customer user's claim by device name with ThingsBoard's
//! bodies (SUCCESS, FAILURE, CLAIMED), preset `claimingData`, and reclaiming.

use serde_json::json;

use crate::common::TestApp;
use crate::common::raw_mqtt;
use crate::support::*;
use crate::tenancy::new_customer;

fn claim_path(name: &str) -> String {
    format!("/api/customer/device/{name}/claim")
}

/// A claim refused with ThingsBoard's bare JSON string.
fn refused(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 400, "{}", resp.text);
    assert_eq!(resp.json(), json!(what), "{}", resp.text);
}

async fn claiming_over_http_and_rest(app: &TestApp) {
    let admin = Api::tenant(app).await;
    let anon = Api::anonymous(app);
    let (customer, user) = new_customer(app, &admin, "Owner").await;
    let (_, rival) = new_customer(app, &admin, "Rival").await;
    let (id, _) = admin.create_device(json!({"name": "sensor-1"})).await;
    let token = admin.token_of(&id).await;
    let open = |key: &str| json!({"secretKey": key, "durationMs": 60000});

    // No window yet.
    refused(
        &user
            .post(&claim_path("sensor-1"), json!({"secretKey": "k"}))
            .await,
        "FAILURE",
    );
    // The device opens one; a wrong key fails and closes it (ThingsBoard evicts the window).
    anon.post(&format!("/api/v1/{token}/claim"), open("k1"))
        .await
        .ok();
    refused(
        &user
            .post(&claim_path("sensor-1"), json!({"secretKey": "nope"}))
            .await,
        "FAILURE",
    );
    refused(
        &user
            .post(&claim_path("sensor-1"), json!({"secretKey": "k1"}))
            .await,
        "FAILURE",
    );
    // Bad requests and callers.
    anon.post("/api/v1/no-such-token/claim", open("k1"))
        .await
        .error(401, 10);
    let bad = anon
        .raw(
            reqwest::Method::POST,
            &format!("/api/v1/{token}/claim"),
            "application/json",
            b"[1]".to_vec(),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    anon.post(&format!("/api/v1/{token}/claim"), open("k2"))
        .await
        .ok();
    admin
        .post(&claim_path("sensor-1"), json!({"secretKey": "k2"}))
        .await
        .error(403, 20);
    user.post(&claim_path("no-such-device"), json!({"secretKey": "k2"}))
        .await
        .error(404, 32);
    // The right key within the window: the customer owns the device.
    let claimed = user
        .post(&claim_path("sensor-1"), json!({"secretKey": "k2"}))
        .await
        .ok();
    assert_eq!(claimed["response"], "SUCCESS");
    assert_eq!(claimed["device"]["customerId"]["id"], customer.as_str());
    assert_eq!(claimed["device"]["name"], "sensor-1");
    user.get(&format!("/api/device/{id}")).await.ok();
    // A second claim, by anyone: CLAIMED. A claimed device opens no new window.
    refused(
        &rival
            .post(&claim_path("sensor-1"), json!({"secretKey": "k2"}))
            .await,
        "CLAIMED",
    );
    anon.post(&format!("/api/v1/{token}/claim"), open("k3"))
        .await
        .ok();
    refused(
        &rival
            .post(&claim_path("sensor-1"), json!({"secretKey": "k3"}))
            .await,
        "CLAIMED",
    );

    // Reclaiming: only the owner (or the tenant administrator); then it can be claimed again.
    rival.delete(&claim_path("sensor-1")).await.error(403, 20);
    user.delete(&claim_path("sensor-1")).await.ok();
    let device = admin.get(&format!("/api/device/{id}")).await.ok();
    assert_eq!(device["customerId"]["id"], NULL_UUID);
    admin
        .delete(&claim_path("no-such-device"))
        .await
        .error(404, 32);

    // Claim data preset as the server attribute claimingData (ThingsBoard's alternative): an
    // ended one fails, a current one with an empty key succeeds and is removed.
    let preset = |expiration: i64| json!({"claimingData": json!({"secretKey": "", "expirationTime": expiration}).to_string()});
    admin
        .post(&format!("{TELEMETRY}/{id}/SERVER_SCOPE"), preset(1000))
        .await
        .ok();
    refused(
        &rival.post(&claim_path("sensor-1"), json!({})).await,
        "FAILURE",
    );
    admin
        .post(
            &format!("{TELEMETRY}/{id}/SERVER_SCOPE"),
            preset(now_ms() + 60_000),
        )
        .await
        .ok();
    let claimed = rival.post(&claim_path("sensor-1"), json!({})).await.ok();
    assert_eq!(claimed["response"], "SUCCESS");
    let attrs = attr_map(
        &admin
            .get(&format!("{TELEMETRY}/{id}/values/attributes/SERVER_SCOPE"))
            .await
            .ok(),
    );
    assert!(!attrs.contains_key("claimingData"), "{attrs:?}");
    admin.delete(&claim_path("sensor-1")).await.ok();
}

async fn claiming_over_mqtt(app: &TestApp) {
    let admin = Api::tenant(app).await;
    let (customer, user) = new_customer(app, &admin, "Mqtt Owner").await;
    let (id, _) = admin.create_device(json!({"name": "mqtt-sensor"})).await;
    let token = admin.token_of(&id).await;
    let mut sock = raw_mqtt::session(app, &token).await;
    raw_mqtt::publish_qos1(
        &mut sock,
        "v1/devices/me/claim",
        1,
        r#"{"secretKey":"m1","durationMs":60000}"#,
    )
    .await;
    // The PUBACK comes after the window is stored.
    raw_mqtt::puback(&mut sock, 1).await;
    let claimed = user
        .post(&claim_path("mqtt-sensor"), json!({"secretKey": "m1"}))
        .await
        .ok();
    assert_eq!(claimed["device"]["customerId"]["id"], customer.as_str());
    // An empty claim message uses the defaults (empty key); a claimed device is acknowledged
    // and opens nothing.
    admin.delete(&claim_path("mqtt-sensor")).await.ok();
    raw_mqtt::publish_qos1(&mut sock, "v1/devices/me/claim", 2, "").await;
    raw_mqtt::puback(&mut sock, 2).await;
    let claimed = user.post(&claim_path("mqtt-sensor"), json!({})).await.ok();
    assert_eq!(claimed["response"], "SUCCESS");
    raw_mqtt::publish_qos1(&mut sock, "v1/devices/me/claim", 3, "{}").await;
    raw_mqtt::puback(&mut sock, 3).await;
    refused(
        &user.post(&claim_path("mqtt-sensor"), json!({})).await,
        "CLAIMED",
    );
}

crate::both_backends!(claiming_over_http_and_rest, claiming_over_mqtt);
