//! Device credentials changed over REST, seen from MQTT: MQTT_BASIC logins, the old access token
//! refused, and the live session closed (v5 DISCONNECT 0x98) when the credentials change or the
//! device is deleted.

use serde_json::{Value, json};

use crate::clients::*;
use crate::common::{TestApp, eventually};
use crate::support::Api;
use ferroboard::domain::{DeviceId, KvValue};
use rumqttc::v5::mqttbytes::v5 as m5;

/// A device created over REST: its id and access token.
async fn rest_device(api: &Api, name: &str) -> (DeviceId, String) {
    let (id, _) = api.create_device(json!({ "name": name })).await;
    let token = api.token_of(&id).await;
    (DeviceId(id.parse().expect("uuid")), token)
}

/// Replaces the device's credentials over REST; `value` is the MQTT_BASIC JSON, None for a token.
async fn set_credentials(api: &Api, device: DeviceId, kind: &str, id: &str, value: Option<&str>) {
    let mut body = api
        .get(&format!("/api/device/{device}/credentials"))
        .await
        .ok();
    body["credentialsType"] = json!(kind);
    body["credentialsId"] = json!(id);
    body["credentialsValue"] = value.map_or(Value::Null, |v| json!(v));
    let saved = api.post("/api/device/credentials", body).await.ok();
    assert_eq!(saved["credentialsType"], kind, "{saved}");
}

async fn connected(app: &TestApp, device: DeviceId) {
    eventually("session registered", WAIT, || async {
        state(app).sessions.is_connected(device).then_some(())
    })
    .await;
}

pub(crate) async fn mqtt_basic_credentials_from_rest(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = rest_device(&api, "basic-1").await;

    // A live session authenticated by the token is closed by the change: DISCONNECT 0x98.
    let mut live = Raw5::connect(app, &token).await;
    connected(app, id).await;
    set_credentials(
        &api,
        id,
        "MQTT_BASIC",
        "",
        Some(r#"{"userName":"u1","password":"p1"}"#),
    )
    .await;
    assert_eq!(
        live.disconnect_reason().await,
        m5::DisconnectReasonCode::AdministrativeAction
    );

    // The old token no longer connects.
    let mut old3 = v3(app, Some(&token), 30);
    let err = v3_connack(&mut old3).await.expect_err("old token refused");
    assert!(err.contains("NotAuthorized"), "{err}");
    let mut old5 = v5(app, Some(&token));
    let err = v5_connack(&mut old5).await.expect_err("old token refused");
    assert!(err.contains("NotAuthorized"), "{err}");

    // A wrong password is refused: v3 5, v5 0x87.
    let mut wrong3 = v3_login(app, Some("u1"), "nope", 30);
    let err = v3_connack(&mut wrong3)
        .await
        .expect_err("wrong password refused");
    assert!(err.contains("NotAuthorized"), "{err}");
    let mut wrong5 = v5_login(app, Some("u1"), "nope");
    let err = v5_connack(&mut wrong5)
        .await
        .expect_err("wrong password refused");
    assert!(err.contains("NotAuthorized"), "{err}");

    // User name and password log in; telemetry is stored for the device.
    let mut basic = v3_login(app, Some("u1"), "p1", 30);
    v3_connack(&mut basic).await.expect("MQTT_BASIC accepted");
    basic
        .client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"basic":7}"#,
        )
        .await
        .expect("queued");
    v3_puback(&mut basic).await;
    let latest = state(app)
        .services
        .store
        .latest(id.0, Some(&["basic".to_owned()]))
        .await
        .expect("latest");
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(latest[0].value, KvValue::Long(7));

    // Back to an access token: the MQTT 3.1.1 session is closed, the user name is refused and
    // the new token connects.
    set_credentials(&api, id, "ACCESS_TOKEN", "token-after-basic", None).await;
    v3_closed(&mut basic).await;
    let mut gone = v3_login(app, Some("u1"), "p1", 30);
    let err = v3_connack(&mut gone).await.expect_err("user name refused");
    assert!(err.contains("NotAuthorized"), "{err}");
    let mut again = v5(app, Some("token-after-basic"));
    v5_connack(&mut again).await.expect("new token accepted");
}

pub(crate) async fn deleting_the_device_closes_its_session(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = rest_device(&api, "doomed").await;
    let mut live = Raw5::connect(app, &token).await;
    connected(app, id).await;
    api.delete(&format!("/api/device/{id}")).await.ok();
    assert_eq!(
        live.disconnect_reason().await,
        m5::DisconnectReasonCode::AdministrativeAction
    );
    eventually("session unregistered", WAIT, || async {
        (!state(app).sessions.is_connected(id)).then_some(())
    })
    .await;
    let mut again = v5(app, Some(&token));
    let err = v5_connack(&mut again)
        .await
        .expect_err("deleted device refused");
    assert!(err.contains("NotAuthorized"), "{err}");

    // MQTT 3.1.1 has no reason codes: the connection is closed.
    let (id3, token3) = rest_device(&api, "doomed-3").await;
    let mut c3 = v3(app, Some(&token3), 30);
    v3_connack(&mut c3).await.expect("connected");
    connected(app, id3).await;
    api.delete(&format!("/api/device/{id3}")).await.ok();
    v3_closed(&mut c3).await;
}
