//! Device provisioning over HTTP (`POST /api/v1/provision`): creating devices with server-made or
//! chosen credentials, pre-provisioned devices, and every refusal; a provisioned device connects
//! over MQTT at once.

use serde_json::{Value, json};

use crate::common::{TestApp, raw_mqtt};
use crate::support::*;

async fn provisioning_profile(api: &Api, name: &str, kind: &str, key: &str) -> Value {
    api.post(
        "/api/deviceProfile",
        json!({
            "name": name,
            "provisionType": kind,
            "provisionDeviceKey": key,
            "profileData": {"provisionConfiguration": {"type": kind, "provisionDeviceSecret": "secret"}}
        }),
    )
    .await
    .ok()
}

async fn provision(api: &Api, body: Value) -> Value {
    api.post("/api/v1/provision", body).await.ok()
}

fn not_found() -> Value {
    json!({"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"})
}

fn failure() -> Value {
    json!({"errorMsg": "Failed to provision device!", "status": "FAILURE"})
}

async fn provision_new_devices(app: &TestApp) {
    let api = Api::tenant(app).await;
    let anonymous = Api::anonymous(app);
    let profile = provisioning_profile(&api, "field", "ALLOW_CREATE_NEW_DEVICES", "key-new").await;
    let body = json!({"deviceName": "p1", "provisionDeviceKey": "key-new", "provisionDeviceSecret": "secret"});
    let answer = provision(&anonymous, body.clone()).await;
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    assert_eq!(answer["credentialsType"], "ACCESS_TOKEN");
    let token = answer["credentialsValue"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(token.len(), 20);
    let device = api.get("/api/tenant/device?deviceName=p1").await.ok();
    assert_eq!(device["type"], "field");
    assert_eq!(device["deviceProfileId"], profile["id"]);
    let id = device["id"]["id"].as_str().expect("id");
    let attrs = api
        .get(&format!(
            "/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=provisionState"
        ))
        .await
        .ok();
    assert_eq!(attrs[0]["value"], "provisioned", "{attrs}");
    // It connects at once with what it got.
    let (_, rc) = raw_mqtt::connect(app, &token).await;
    assert_eq!(rc, 0);

    // The same name again: FAILURE; nothing else changes.
    assert_eq!(provision(&anonymous, body).await, failure());
    // A chosen token; a name trimmed.
    let answer = provision(
        &anonymous,
        json!({"deviceName": " p2 ", "provisionDeviceKey": "key-new", "provisionDeviceSecret": "secret",
               "credentialsType": "ACCESS_TOKEN", "token": "chosen-token"}),
    )
    .await;
    assert_eq!(answer["credentialsValue"], "chosen-token");
    api.get("/api/tenant/device?deviceName=p2").await.ok();
    // A token already taken: FAILURE, and no device is left behind.
    let answer = provision(
        &anonymous,
        json!({"deviceName": "p3", "provisionDeviceKey": "key-new", "provisionDeviceSecret": "secret", "token": "chosen-token"}),
    )
    .await;
    assert_eq!(answer, failure());
    api.get("/api/tenant/device?deviceName=p3")
        .await
        .error(404, 32);
    // MQTT_BASIC: the request says `username`, the answer `userName`.
    let answer = provision(
        &anonymous,
        json!({"deviceName": "p4", "provisionDeviceKey": "key-new", "provisionDeviceSecret": "secret",
               "credentialsType": "MQTT_BASIC", "clientId": "c4", "username": "u4", "password": "pw4"}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"credentialsValue": {"clientId": "c4", "userName": "u4", "password": "pw4"},
               "credentialsType": "MQTT_BASIC", "status": "SUCCESS"})
    );
    // X509_CERTIFICATE: the certificate in `hash`; the answer is its base64 body.
    let cert = rcgen::generate_simple_self_signed(vec!["p5".to_owned()]).expect("certificate");
    let pem = cert.cert.pem();
    let answer = provision(
        &anonymous,
        json!({"deviceName": "p5", "provisionDeviceKey": "key-new", "provisionDeviceSecret": "secret",
               "credentialsType": "X509_CERTIFICATE", "hash": pem}),
    )
    .await;
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    let body = answer["credentialsValue"].as_str().expect("body");
    assert!(
        !body.contains("BEGIN") && !body.contains('\n') && pem.contains(&body[..40]),
        "{body}"
    );
    // No name: a random one.
    let answer = provision(
        &anonymous,
        json!({"provisionDeviceKey": "key-new", "provisionDeviceSecret": "secret"}),
    )
    .await;
    assert_eq!(answer["status"], "SUCCESS");
    let page = api
        .get("/api/tenant/devices?pageSize=100&page=0&type=field")
        .await
        .ok();
    assert_eq!(page["totalElements"], 5, "{page}");
}

async fn provision_refusals(app: &TestApp) {
    let api = Api::tenant(app).await;
    let anonymous = Api::anonymous(app);
    provisioning_profile(&api, "field", "ALLOW_CREATE_NEW_DEVICES", "key-a").await;
    provisioning_profile(&api, "off", "DISABLED", "key-off").await;
    let with = |key: &str, secret: &str| json!({"deviceName": "x", "provisionDeviceKey": key, "provisionDeviceSecret": secret});
    assert_eq!(
        provision(&anonymous, with("key-a", "wrong")).await,
        not_found()
    );
    assert_eq!(
        provision(&anonymous, with("no-such-key", "secret")).await,
        not_found()
    );
    assert_eq!(provision(&anonymous, with("", "")).await, not_found());
    assert_eq!(
        provision(&anonymous, with("key-off", "secret")).await,
        not_found()
    );
    assert_eq!(
        provision(&anonymous, json!({"deviceName": "  ", "provisionDeviceKey": "key-a", "provisionDeviceSecret": "secret"})).await,
        failure()
    );
    // Not a provision request at all: 400.
    let malformed = [
        json!({"deviceName": "x", "provisionDeviceSecret": "secret"}),
        json!({"deviceName": null, "provisionDeviceKey": "key-a", "provisionDeviceSecret": "secret"}),
        json!({"provisionDeviceKey": "key-a", "provisionDeviceSecret": "secret", "credentialsType": "MQTT_BASIC", "clientId": "c", "username": null}),
        json!({"provisionDeviceKey": "key-a", "provisionDeviceSecret": "secret", "credentialsType": "LWM2M"}),
        json!({"provisionDeviceKey": "key-a", "provisionDeviceSecret": "secret", "credentialsType": "X509_CERTIFICATE", "hash": "not a certificate"}),
        json!([1]),
    ];
    for body in malformed {
        let msg = anonymous
            .post("/api/v1/provision", body.clone())
            .await
            .error(400, 31);
        assert!(
            msg.starts_with("Invalid provision request"),
            "{body}: {msg}"
        );
    }
    let page = api.get("/api/tenant/devices?pageSize=10&page=0").await.ok();
    assert_eq!(page["totalElements"], 0, "nothing created: {page}");
}

async fn provision_pre_provisioned(app: &TestApp) {
    let api = Api::tenant(app).await;
    let anonymous = Api::anonymous(app);
    let profile =
        provisioning_profile(&api, "pre", "CHECK_PRE_PROVISIONED_DEVICES", "key-pre").await;
    let (id, _) = api
        .create_device_with_token(
            json!({"name": "made", "deviceProfileId": profile["id"]}),
            "made-token",
        )
        .await;
    api.create_device(json!({"name": "elsewhere"})).await;
    let with = |name: &str| json!({"deviceName": name, "provisionDeviceKey": "key-pre", "provisionDeviceSecret": "secret", "token": "ignored"});
    let answer = provision(&anonymous, with("made")).await;
    assert_eq!(
        answer,
        json!({"credentialsValue": "made-token", "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"})
    );
    assert_eq!(
        provision(&anonymous, with("made")).await,
        failure(),
        "only once"
    );
    assert_eq!(provision(&anonymous, with("unknown")).await, failure());
    assert_eq!(
        provision(&anonymous, with("elsewhere")).await,
        failure(),
        "another profile's device"
    );
    assert_eq!(api.token_of(&id).await, "made-token");
}

crate::both_backends!(
    provision_new_devices,
    provision_refusals,
    provision_pre_provisioned
);
