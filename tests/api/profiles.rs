//! Device profiles over REST: save with profileData, delete rules, the default profile, device
//! assignment, and another tenant's profiles.

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::support::*;

fn mqtt_profile(name: &str, key: &str) -> Value {
    json!({
        "name": name,
        "description": "thermostats",
        "type": "DEFAULT",
        "transportType": "MQTT",
        "provisionType": "ALLOW_CREATE_NEW_DEVICES",
        "provisionDeviceKey": key,
        "profileData": {
            "configuration": {"type": "DEFAULT"},
            "transportConfiguration": {
                "type": "MQTT",
                "deviceTelemetryTopic": "sensors/+/telemetry",
                "deviceAttributesTopic": "",
                "transportPayloadTypeConfiguration": {"transportPayloadType": "JSON"}
            },
            "provisionConfiguration": {"type": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceSecret": "s-1"},
            "alarms": null
        }
    })
}

async fn profile_save_and_read(app: &TestApp) {
    let api = Api::tenant(app).await;
    let saved = api
        .post("/api/deviceProfile", mqtt_profile("thermostat", "k-1"))
        .await
        .ok();
    assert_eq!(saved["id"]["entityType"], "DEVICE_PROFILE");
    assert_eq!(saved["name"], "thermostat");
    assert_eq!(saved["default"], false);
    assert_eq!(saved["transportType"], "MQTT");
    assert_eq!(saved["provisionType"], "ALLOW_CREATE_NEW_DEVICES");
    assert_eq!(saved["provisionDeviceKey"], "k-1");
    let transport = &saved["profileData"]["transportConfiguration"];
    assert_eq!(transport["deviceTelemetryTopic"], "sensors/+/telemetry");
    assert_eq!(
        transport["deviceAttributesTopic"], "v1/devices/me/attributes",
        "blank: the default"
    );
    assert_eq!(
        transport["deviceAttributesSubscribeTopic"],
        "v1/devices/me/attributes"
    );
    assert_eq!(transport["sendAckOnValidationException"], false);
    assert_eq!(
        saved["profileData"]["provisionConfiguration"],
        json!({"type": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceSecret": "s-1"})
    );
    let id = saved["id"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        api.get(&format!("/api/deviceProfile/{id}")).await.ok(),
        saved
    );
    let info = api.get(&format!("/api/deviceProfileInfo/{id}")).await.ok();
    assert_eq!(info["transportType"], "MQTT");

    // Duplicates: the name per tenant, the provisioning key everywhere.
    let dup = api
        .post("/api/deviceProfile", mqtt_profile("thermostat", "k-2"))
        .await;
    assert_eq!(
        dup.error(400, 31),
        "Device profile with such name already exists!"
    );
    let dup = api
        .post("/api/deviceProfile", mqtt_profile("other", "k-1"))
        .await;
    assert_eq!(
        dup.error(400, 31),
        "Device profile with such provision device key already exists!"
    );
    let second_default = api
        .post("/api/deviceProfile", json!({"name": "d2", "default": true}))
        .await;
    assert_eq!(
        second_default.error(400, 31),
        "Another default device profile is present in scope of current tenant!"
    );

    // Update: the body as read back, changed.
    let mut body = saved.clone();
    body["name"] = json!("thermostat-2");
    body["profileData"]["transportConfiguration"]["deviceTelemetryTopic"] = json!("t/#");
    let updated = api.post("/api/deviceProfile", body).await.ok();
    assert_eq!(updated["name"], "thermostat-2");
    assert_eq!(updated["createdTime"], saved["createdTime"]);
    assert_eq!(
        updated["profileData"]["transportConfiguration"]["deviceTelemetryTopic"],
        "t/#"
    );
    assert_eq!(
        api.get(&format!("/api/deviceProfile/{id}")).await.ok(),
        updated
    );
    let mut missing = updated.clone();
    missing["id"]["id"] = json!(MISSING_ID);
    api.post("/api/deviceProfile", missing).await.error(404, 32);

    // A minimal body: DEFAULT transport, provisioning disabled.
    let plain = api
        .post("/api/deviceProfile", json!({"name": "plain"}))
        .await
        .ok();
    assert_eq!(plain["transportType"], "DEFAULT");
    assert_eq!(plain["provisionType"], "DISABLED");
    assert_eq!(
        plain["profileData"]["transportConfiguration"],
        json!({"type": "DEFAULT"})
    );
}

async fn profile_validation(app: &TestApp) {
    let api = Api::tenant(app).await;
    let cases = [
        (
            json!({"name": " "}),
            "Device profile name should be specified!",
        ),
        (
            json!({"name": "p", "profileData": 5}),
            "Device profile data should be an object!",
        ),
        (
            json!({"name": "p", "profileData": {"transportConfiguration": {"type": "MQTT", "deviceTelemetryTopic": "a/#/b"}}}),
            "invalid telemetry topic filter 'a/#/b'",
        ),
        (
            json!({"name": "p", "profileData": {"transportConfiguration": {"type": "MQTT", "deviceAttributesSubscribeTopic": "x+"}}}),
            "invalid attributes subscribe topic filter 'x+'",
        ),
        (
            json!({"name": "p", "transportType": "COAP"}),
            "transport type COAP is not supported",
        ),
        (
            json!({"name": "p", "provisionType": "DISABLED", "profileData": {"provisionConfiguration": {"type": "ALLOW_CREATE_NEW_DEVICES"}}}),
            "differs from its provisionConfiguration type",
        ),
        (
            json!({"name": "p", "provisionType": "SOMETIMES"}),
            "Provision type SOMETIMES is not supported",
        ),
        (
            json!({"name": "p", "profileData": {"transportConfiguration": {"type": "MQTT", "sendAckOnValidationException": "yes"}}}),
            "sendAckOnValidationException should be a boolean",
        ),
        (
            json!({"name": "p", "profileData": {"transportConfiguration": {"type": "MQTT", "transportPayloadTypeConfiguration": {
                "transportPayloadType": "PROTOBUF",
                "deviceTelemetryProtoSchema": "syntax = \"proto3\";\nmessage T {\n  double x = 1\n}\n",
                "deviceAttributesProtoSchema": "syntax = \"proto3\";\nmessage A { string v = 1; }\n"
            }}}}),
            "failed to compile telemetry proto schema: line 4",
        ),
        (
            json!({"name": "p", "profileData": {"transportConfiguration": {"type": "MQTT", "transportPayloadTypeConfiguration": {
                "transportPayloadType": "PROTOBUF",
                "deviceTelemetryProtoSchema": "syntax = \"proto3\";\nmessage T { double x = 1; }\n"
            }}}}),
            "attributes proto schema should be specified!",
        ),
    ];
    for (body, expected) in cases {
        let msg = api
            .post("/api/deviceProfile", body.clone())
            .await
            .error(400, 31);
        assert!(msg.contains(expected), "{body}: {msg}");
    }
    let page = api.get("/api/deviceProfiles?pageSize=10&page=0").await.ok();
    assert_eq!(page["totalElements"], 1, "nothing saved: {page}");
}

async fn profile_delete_and_default(app: &TestApp) {
    let api = Api::tenant(app).await;
    let default = api.get("/api/deviceProfileInfo/default").await.ok();
    let default_id = default["id"]["id"].as_str().expect("id").to_owned();
    let msg = api
        .delete(&format!("/api/deviceProfile/{default_id}"))
        .await
        .error(400, 31);
    assert_eq!(msg, "Deletion of Default Device Profile is prohibited!");

    let p = api
        .post("/api/deviceProfile", json!({"name": "p"}))
        .await
        .ok();
    let pid = p["id"]["id"].as_str().expect("id").to_owned();
    let (device, _) = api
        .create_device(
            json!({"name": "d", "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": pid}}),
        )
        .await;
    let msg = api
        .delete(&format!("/api/deviceProfile/{pid}"))
        .await
        .error(400, 31);
    assert_eq!(
        msg,
        "The device profile referenced by the devices cannot be deleted!"
    );

    // The default moves to p; the old default can then go.
    let now_default = api
        .post(&format!("/api/deviceProfile/{pid}/default"), json!({}))
        .await
        .ok();
    assert_eq!(now_default["default"], true);
    assert_eq!(
        api.get("/api/deviceProfileInfo/default").await.ok()["id"]["id"],
        pid.as_str()
    );
    let old = api
        .get(&format!("/api/deviceProfile/{default_id}"))
        .await
        .ok();
    assert_eq!(old["default"], false);
    api.post(
        &format!("/api/deviceProfile/{MISSING_ID}/default"),
        json!({}),
    )
    .await
    .error(404, 32);
    let deleted = api
        .delete(&format!("/api/deviceProfile/{default_id}"))
        .await;
    assert_eq!(deleted.status, 200);
    api.get(&format!("/api/deviceProfile/{default_id}"))
        .await
        .error(404, 32);
    api.delete(&format!("/api/deviceProfile/{default_id}"))
        .await
        .error(404, 32);
    api.delete(&format!("/api/device/{device}")).await.ok();
}

async fn device_profile_assignment(app: &TestApp) {
    let api = Api::tenant(app).await;
    let a = api
        .post("/api/deviceProfile", json!({"name": "a"}))
        .await
        .ok();
    let (id, device) = api
        .create_device(json!({"name": "d", "deviceProfileId": a["id"]}))
        .await;
    assert_eq!(device["type"], "a");
    assert_eq!(device["deviceProfileId"], a["id"]);
    // `type` names a profile (created when missing).
    let mut body = device.clone();
    body["deviceProfileId"] = Value::Null;
    body["type"] = json!("b");
    let moved = api.post("/api/device", body).await.ok();
    assert_eq!(moved["type"], "b");
    let b = api
        .get("/api/deviceProfiles?pageSize=10&page=0&textSearch=b")
        .await
        .ok();
    assert_eq!(b["data"][0]["id"], moved["deviceProfileId"]);
    // Back by id.
    let mut body = moved.clone();
    body["deviceProfileId"] = a["id"].clone();
    body["type"] = json!("b");
    assert_eq!(api.post("/api/device", body).await.ok()["type"], "a");

    // Another tenant's profile: 403 for the profile routes, 400 for a device pointing at it;
    // nothing changes.
    let foreign = foreign_profile(app).await;
    api.get(&format!("/api/deviceProfile/{foreign}"))
        .await
        .error(403, 20);
    api.delete(&format!("/api/deviceProfile/{foreign}"))
        .await
        .error(403, 20);
    api.post(&format!("/api/deviceProfile/{foreign}/default"), json!({}))
        .await
        .error(403, 20);
    api.post(
        "/api/deviceProfile",
        json!({"id": {"entityType": "DEVICE_PROFILE", "id": foreign}, "name": "mine"}),
    )
    .await
    .error(403, 20);
    let mut body = api.get(&format!("/api/device/{id}")).await.ok();
    body["deviceProfileId"] = json!({"entityType": "DEVICE_PROFILE", "id": foreign});
    let msg = api.post("/api/device", body).await.error(400, 31);
    assert_eq!(
        msg,
        "Device can`t be referencing to device profile from different tenant!"
    );
    let msg = api
        .post(
            "/api/device",
            json!({"name": "e", "deviceProfileId": {"id": foreign}}),
        )
        .await
        .error(400, 31);
    assert_eq!(
        msg,
        "Device can`t be referencing to device profile from different tenant!"
    );
    assert_eq!(
        api.get(&format!("/api/device/{id}")).await.ok()["type"],
        "a"
    );
    let state = &app.app.as_ref().expect("running").state;
    let owner = state
        .services
        .store
        .profile_owner(ferroboard::domain::DeviceProfileId(
            foreign.parse().expect("uuid"),
        ))
        .await
        .expect("owner");
    let kept = state
        .services
        .store
        .get_profile(
            owner.expect("kept"),
            ferroboard::domain::DeviceProfileId(foreign.parse().expect("uuid")),
        )
        .await
        .expect("read");
    assert_eq!(kept.expect("kept").name, "default");
}

/// A default profile of a new tenant; its id.
async fn foreign_profile(app: &TestApp) -> String {
    let store = &app.app.as_ref().expect("running").state.services.store;
    let other = ferroboard::storage::Tenant {
        id: ferroboard::domain::TenantId::new(),
        title: "Other".into(),
        created_time: now_ms(),
    };
    store.create_tenant(&other).await.expect("tenant");
    let profile = ferroboard::services::accounts::default_profile(other.id, now_ms());
    store.create_profile(&profile).await.expect("profile");
    profile.id.0.to_string()
}

crate::both_backends!(
    profile_save_and_read,
    profile_validation,
    profile_delete_and_default,
    device_profile_assignment,
);
