//! Devices, device profiles and credentials: JSON shapes, paging, errors, tenant isolation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::support::*;

async fn device_create_and_read(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, created) = api
        .create_device(
            json!({"name": "pump-07", "label": "Pump 7", "additionalInfo": {"gateway": false}}),
        )
        .await;
    assert_eq!(created["id"]["entityType"], "DEVICE");
    assert_eq!(created["name"], "pump-07");
    assert_eq!(created["label"], "Pump 7");
    assert_eq!(created["type"], "default");
    assert_eq!(created["deviceProfileId"]["entityType"], "DEVICE_PROFILE");
    assert_eq!(
        created["customerId"],
        json!({"entityType": "CUSTOMER", "id": NULL_UUID})
    );
    assert_eq!(created["tenantId"]["entityType"], "TENANT");
    assert_eq!(
        created["deviceData"],
        json!({"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"}})
    );
    assert_eq!(created["additionalInfo"], json!({"gateway": false}));
    assert!(
        created["firmwareId"].is_null()
            && created["softwareId"].is_null()
            && created["externalId"].is_null()
    );
    assert!(created["createdTime"].is_i64() && created["version"].is_i64());

    assert_eq!(api.get(&format!("/api/device/{id}")).await.ok(), created);
    let info = api.get(&format!("/api/device/info/{id}")).await.ok();
    assert_eq!(info["deviceProfileName"], "default");
    assert_eq!(info["active"], false);
    assert_eq!(info["customerIsPublic"], false);
    let by_name = api.get("/api/tenant/devices?deviceName=pump-07").await.ok();
    assert_eq!(by_name["id"]["id"], id.as_str());
    assert_eq!(
        api.get("/api/tenant/device?deviceName=pump-07").await.ok()["id"]["id"],
        id.as_str()
    );
    api.get("/api/tenant/device?deviceName=nope")
        .await
        .error(404, 32);

    let dup = api.post("/api/device", json!({"name": "pump-07"})).await;
    assert_eq!(dup.error(400, 31), "Device with such name already exists!");
}

async fn device_update_and_delete(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, created) = api.create_device(json!({"name": "pump-07"})).await;
    // Update: rename with the current version, then a stale version is a conflict.
    let mut update = created.clone();
    update["name"] = json!("pump-08");
    let updated = api.post("/api/device", update.clone()).await.ok();
    assert_eq!(updated["name"], "pump-08");
    assert_eq!(updated["id"], created["id"]);
    assert!(updated["version"].as_i64() > created["version"].as_i64());
    api.post("/api/device", update).await.error(409, 35);
    let mut ghost = created.clone();
    ghost["id"]["id"] = json!(MISSING_ID);
    ghost["version"] = Value::Null;
    api.post("/api/device", ghost).await.error(404, 32);

    api.delete(&format!("/api/device/{id}")).await.ok();
    let gone = api.get(&format!("/api/device/{id}")).await.error(404, 32);
    assert_eq!(gone, format!("Device with id [{id}] is not found"));
    api.delete(&format!("/api/device/{id}"))
        .await
        .error(404, 32);
}

async fn device_type_and_token(app: &TestApp) {
    let api = Api::tenant(app).await;
    // A type names a profile, created when missing; a token can be chosen.
    let (typed, typed_json) = api
        .create_device(json!({"name": "thermo-1", "type": "thermostat"}))
        .await;
    assert_eq!(typed_json["type"], "thermostat");
    let profile = api
        .get(&format!(
            "/api/deviceProfile/{}",
            typed_json["deviceProfileId"]["id"]
                .as_str()
                .unwrap_or_default()
        ))
        .await
        .ok();
    assert_eq!(profile["name"], "thermostat");
    assert_eq!(profile["default"], false);
    let (chosen, _) = api
        .create_device_with_token(json!({"name": "tok-1"}), "myToken123")
        .await;
    assert_eq!(api.token_of(&chosen).await, "myToken123");
    assert_eq!(api.token_of(&typed).await.len(), 20);
}

async fn device_errors_are_thingsboard_json(app: &TestApp) {
    let api = Api::tenant(app).await;
    api.get("/api/device/not-a-uuid").await.error(400, 31);
    api.get("/api/device/info/not-a-uuid").await.error(400, 31);
    let missing = api
        .get(&format!("/api/device/{MISSING_ID}"))
        .await
        .error(404, 32);
    assert_eq!(
        missing,
        format!("Device with id [{MISSING_ID}] is not found")
    );
    api.raw(
        Method::POST,
        "/api/device",
        "application/json",
        b"{\"name\": ".to_vec(),
    )
    .await
    .error(400, 31);
    api.post("/api/device", json!({"label": "no name"}))
        .await
        .error(400, 31);
    api.post("/api/device", json!([1, 2])).await.error(400, 31);
    api.get("/api/tenant/devices?pageSize=abc&page=0")
        .await
        .error(400, 31);
    api.get("/api/tenant/devices").await.error(400, 31);
    api.get("/api/no/such/route").await.error(404, 32);
}

async fn other_tenants_device_is_not_found(app: &TestApp) {
    let api = Api::tenant(app).await;
    // Another tenant's device is "not found", never "forbidden".
    let state = &app.app.as_ref().expect("running").state;
    let store = &state.services.store;
    let other = ferroboard::storage::Tenant {
        id: ferroboard::domain::TenantId::new(),
        title: "Other".into(),
        created_time: now_ms(),
    };
    store.create_tenant(&other).await.expect("tenant");
    let profile = ferroboard::services::accounts::default_profile(other.id, now_ms());
    store.create_profile(&profile).await.expect("profile");
    let device = ferroboard::storage::Device {
        id: ferroboard::domain::DeviceId::new(),
        tenant_id: other.id,
        customer_id: None,
        created_time: now_ms(),
        name: "foreign".into(),
        label: None,
        profile_id: profile.id,
        profile_name: profile.name.clone(),
        additional_info: json!({}),
        firmware_id: None,
        software_id: None,
        version: 1,
    };
    let creds = ferroboard::storage::DeviceCredentials {
        id: uuid::Uuid::new_v4(),
        device_id: device.id,
        created_time: now_ms(),
        credentials_type: "ACCESS_TOKEN".into(),
        credentials_id: "foreign-token".into(),
        credentials_value: None,
        version: 1,
    };
    store.create_device(&device, &creds).await.expect("device");
    api.get(&format!("/api/device/{}", device.id))
        .await
        .error(404, 32);
    api.get(&format!("/api/device/{}/credentials", device.id))
        .await
        .error(404, 32);
    api.delete(&format!("/api/device/{}", device.id))
        .await
        .error(404, 32);
    let listed = api
        .get("/api/tenant/devices?pageSize=100&page=0")
        .await
        .ok();
    assert_eq!(listed["totalElements"], 0);
    let ts = api
        .get(&format!("{TELEMETRY}/{}/keys/timeseries", device.id))
        .await;
    assert_eq!(ts.status, 404);
}

async fn device_paging(app: &TestApp) {
    let api = Api::tenant(app).await;
    for (name, label) in [
        ("alpha", "North"),
        ("bravo", "south"),
        ("charlie", "North-2"),
        ("delta", ""),
        ("echo", "x"),
    ] {
        api.create_device(json!({"name": name, "label": label}))
            .await;
    }
    api.create_device(json!({"name": "foxtrot", "type": "meter"}))
        .await;
    let page = api.get("/api/tenant/devices?pageSize=2&page=0").await.ok();
    assert_eq!(page["totalElements"], 6);
    assert_eq!(page["totalPages"], 3);
    assert_eq!(page["hasNext"], true);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    let last = api.get("/api/tenant/devices?pageSize=2&page=2").await.ok();
    assert_eq!(last["hasNext"], false);

    let names = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|d| d["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let desc = api
        .get("/api/tenant/devices?pageSize=10&page=0&sortProperty=name&sortOrder=DESC")
        .await
        .ok();
    assert_eq!(
        names(&desc),
        ["foxtrot", "echo", "delta", "charlie", "bravo", "alpha"]
    );
    // textSearch: case-insensitive on name or label.
    let search = api
        .get("/api/tenant/devices?pageSize=10&page=0&textSearch=nORth&sortProperty=name&sortOrder=ASC")
        .await
        .ok();
    assert_eq!(names(&search), ["alpha", "charlie"]);
    let search = api
        .get("/api/tenant/devices?pageSize=10&page=0&textSearch=ECH")
        .await
        .ok();
    assert_eq!(names(&search), ["echo"]);
    let typed = api
        .get("/api/tenant/devices?pageSize=10&page=0&type=meter")
        .await
        .ok();
    assert_eq!(names(&typed), ["foxtrot"]);
    let infos = api
        .get("/api/tenant/deviceInfos?pageSize=10&page=0&type=meter")
        .await
        .ok();
    assert_eq!(infos["data"][0]["deviceProfileName"], "meter");

    api.get("/api/tenant/devices?pageSize=0&page=0")
        .await
        .error(400, 31);
    api.get("/api/tenant/devices?pageSize=5&page=-1")
        .await
        .error(400, 31);
    api.get("/api/tenant/devices?pageSize=5&page=0&sortOrder=SIDEWAYS")
        .await
        .error(400, 31);
}

async fn device_profiles(app: &TestApp) {
    let api = Api::tenant(app).await;
    let default = api.get("/api/deviceProfileInfo/default").await.ok();
    assert_eq!(default["name"], "default");
    assert_eq!(default["type"], "DEFAULT");
    assert_eq!(default["transportType"], "DEFAULT");
    let id = default["id"]["id"].as_str().expect("id").to_owned();
    let full = api.get(&format!("/api/deviceProfile/{id}")).await.ok();
    assert_eq!(full["default"], true);
    assert_eq!(full["provisionType"], "DISABLED");
    assert_eq!(
        full["profileData"]["provisionConfiguration"]["type"],
        "DISABLED"
    );
    assert_eq!(
        api.get(&format!("/api/deviceProfileInfo/{id}")).await.ok()["name"],
        "default"
    );
    api.get(&format!("/api/deviceProfile/{MISSING_ID}"))
        .await
        .error(404, 32);
    api.get("/api/deviceProfile/xyz").await.error(400, 31);

    let (_, device) = api
        .create_device(
            json!({"name": "d1", "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": id}}),
        )
        .await;
    assert_eq!(device["type"], "default");
    api.create_device(json!({"name": "d2", "type": "sensor"}))
        .await;
    let page = api
        .get("/api/deviceProfiles?pageSize=10&page=0&sortProperty=name&sortOrder=ASC")
        .await
        .ok();
    assert_eq!(page["totalElements"], 2);
    assert_eq!(page["data"][0]["name"], "default");
    assert_eq!(page["data"][1]["name"], "sensor");
    let bad = api
        .post(
            "/api/device",
            json!({"name": "d3", "deviceProfileId": {"id": MISSING_ID}}),
        )
        .await;
    bad.error(400, 31);
}

async fn credentials_update(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (first, _) = api.create_device(json!({"name": "c1"})).await;
    let (second, _) = api.create_device(json!({"name": "c2"})).await;
    let creds = api
        .get(&format!("/api/device/{first}/credentials"))
        .await
        .ok();
    assert!(
        creds["id"]["id"].is_string() && creds["id"].get("entityType").is_none(),
        "{creds}"
    );
    assert_eq!(
        creds["deviceId"],
        json!({"entityType": "DEVICE", "id": first})
    );
    assert_eq!(creds["credentialsType"], "ACCESS_TOKEN");
    assert!(creds["credentialsValue"].is_null());
    assert!(creds["createdTime"].is_i64() && creds["version"].is_i64());

    let mut change = creds.clone();
    change["credentialsId"] = json!("new-token-1");
    let saved = api
        .post("/api/device/credentials", change.clone())
        .await
        .ok();
    assert_eq!(saved["credentialsId"], "new-token-1");
    assert_eq!(saved["id"], creds["id"]);
    assert_eq!(api.token_of(&first).await, "new-token-1");

    let taken = api.token_of(&second).await;
    let mut dup = saved.clone();
    dup["credentialsId"] = json!(taken);
    let msg = api
        .post("/api/device/credentials", dup)
        .await
        .error(400, 31);
    assert_eq!(msg, "Specified credentials are already registered!");
    let mut control = saved.clone();
    control["credentialsId"] = json!("bad\ntoken");
    api.post("/api/device/credentials", control)
        .await
        .error(400, 31);
    // X.509 credentials without a certificate (tests/mqtt/tls.rs covers the certificates).
    let mut x509 = saved.clone();
    x509["credentialsType"] = json!("X509_CERTIFICATE");
    let msg = api
        .post("/api/device/credentials", x509)
        .await
        .error(400, 31);
    assert_eq!(msg, "Device certificate should be specified!");
    let mut ghost = saved;
    ghost["deviceId"]["id"] = json!(MISSING_ID);
    api.post("/api/device/credentials", ghost)
        .await
        .error(404, 32);
    assert_eq!(api.token_of(&first).await, "new-token-1");
}

/// SHA3-256 hex of "c1" and of "c1|u1" (computed independently of the server).
const SHA3_C1: &str = "ab5bf8237bfef4e170e5fe31bddc751df1802439bf089b870ae3427ff2e08cce";
const SHA3_C1_U1: &str = "95e1382dda9250cb60f0993b19536f67cadb9285dc5dcf00504ab010b8cdf8a8";

/// The device's credentials turned into an MQTT_BASIC request with this `credentialsValue`.
async fn basic_body(api: &Api, device: &str, value: Value) -> Value {
    let mut body = api
        .get(&format!("/api/device/{device}/credentials"))
        .await
        .ok();
    body["credentialsType"] = json!("MQTT_BASIC");
    body["credentialsId"] = json!("ignored-by-the-server");
    body["credentialsValue"] = value;
    body
}

async fn credentials_mqtt_basic(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (first, _) = api.create_device(json!({"name": "b1"})).await;
    let (second, _) = api.create_device(json!({"name": "b2"})).await;
    let before = api
        .get(&format!("/api/device/{first}/credentials"))
        .await
        .ok();

    // User name and password: the id is the user name; the value is re-serialized compactly.
    let body = basic_body(
        &api,
        &first,
        json!(r#"{ "userName" : "u1", "password": "p1" }"#),
    )
    .await;
    let saved = api.post("/api/device/credentials", body).await.ok();
    assert_eq!(saved["credentialsType"], "MQTT_BASIC");
    assert_eq!(saved["credentialsId"], "u1");
    assert_eq!(
        saved["credentialsValue"],
        r#"{"userName":"u1","password":"p1"}"#
    );
    assert_eq!(saved["id"], before["id"]);
    let read = api
        .get(&format!("/api/device/{first}/credentials"))
        .await
        .ok();
    assert_eq!(read, saved);

    // Client id only, then client id and user name: SHA3-256 hex ids.
    let body = basic_body(&api, &first, json!(r#"{"clientId":"c1"}"#)).await;
    let saved = api.post("/api/device/credentials", body).await.ok();
    assert_eq!(saved["credentialsId"], SHA3_C1);
    assert_eq!(saved["credentialsValue"], r#"{"clientId":"c1"}"#);
    let body = basic_body(
        &api,
        &first,
        json!(r#"{"clientId":"c1","userName":"u1","password":"p1"}"#),
    )
    .await;
    let saved = api.post("/api/device/credentials", body).await.ok();
    assert_eq!(saved["credentialsId"], SHA3_C1_U1);
    assert_eq!(
        saved["credentialsValue"],
        r#"{"clientId":"c1","userName":"u1","password":"p1"}"#
    );

    // Refusals leave the stored credentials unchanged.
    let invalid = "Invalid credentials body for simple mqtt credentials!";
    for (value, expected) in [
        (
            json!(r#"{"clientId":"","userName":""}"#),
            "Both mqtt client id and user name are empty!",
        ),
        (
            json!(r#"{"password":"p1"}"#),
            "Both mqtt client id and user name are empty!",
        ),
        (
            json!(r#"{"clientId":"c2","password":"p2"}"#),
            "Password cannot be specified along with client id",
        ),
        (Value::Null, invalid),
        (json!("not json"), invalid),
        (json!(r#"["u1"]"#), invalid),
        (json!({"userName": "u9"}), invalid),
    ] {
        let body = basic_body(&api, &first, value.clone()).await;
        let msg = api
            .post("/api/device/credentials", body)
            .await
            .error(400, 31);
        assert_eq!(msg, expected, "credentialsValue {value}");
    }
    let mut missing = basic_body(&api, &first, Value::Null).await;
    missing
        .as_object_mut()
        .expect("object")
        .remove("credentialsValue");
    let msg = api
        .post("/api/device/credentials", missing)
        .await
        .error(400, 31);
    assert_eq!(msg, invalid);
    let read = api
        .get(&format!("/api/device/{first}/credentials"))
        .await
        .ok();
    assert_eq!(read["credentialsId"], SHA3_C1_U1);

    // A stale version is a conflict, as for access tokens.
    let mut stale = basic_body(&api, &first, json!(r#"{"userName":"u1"}"#)).await;
    stale["version"] = json!(stale["version"].as_i64().expect("version") - 1);
    api.post("/api/device/credentials", stale)
        .await
        .error(409, 35);

    // A derived id another device already uses is refused, whatever the types.
    let body = basic_body(&api, &first, json!(r#"{"userName":"u1","password":"p1"}"#)).await;
    api.post("/api/device/credentials", body).await.ok();
    let taken = "Specified credentials are already registered!";
    let body = basic_body(&api, &second, json!(r#"{"userName":"u1"}"#)).await;
    let msg = api
        .post("/api/device/credentials", body)
        .await
        .error(400, 31);
    assert_eq!(msg, taken);
    let second_token = api.token_of(&second).await;
    let body = basic_body(
        &api,
        &first,
        json!(format!(r#"{{"userName":"{second_token}"}}"#)),
    )
    .await;
    let msg = api
        .post("/api/device/credentials", body)
        .await
        .error(400, 31);
    assert_eq!(msg, taken);

    // Back to an access token; the user name is then free for the other device.
    let mut back = api
        .get(&format!("/api/device/{first}/credentials"))
        .await
        .ok();
    back["credentialsType"] = json!("ACCESS_TOKEN");
    back["credentialsId"] = json!("token-again");
    let saved = api.post("/api/device/credentials", back).await.ok();
    assert_eq!(saved["credentialsType"], "ACCESS_TOKEN");
    assert_eq!(saved["credentialsId"], "token-again");
    assert!(saved["credentialsValue"].is_null(), "{saved}");
    let body = basic_body(&api, &second, json!(r#"{"userName":"u1"}"#)).await;
    let saved = api.post("/api/device/credentials", body).await.ok();
    assert_eq!(saved["credentialsId"], "u1");
}

crate::both_backends!(
    device_create_and_read,
    device_update_and_delete,
    device_type_and_token,
    device_errors_are_thingsboard_json,
    other_tenants_device_is_not_found,
    device_paging,
    device_profiles,
    credentials_update,
    credentials_mqtt_basic,
);
