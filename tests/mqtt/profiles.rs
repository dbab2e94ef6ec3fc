//! Device-profile MQTT settings over MQTT 3.1.1 and 5: custom topic filters, protobuf telemetry
//! and attributes, PUBACK on validation failure, shared attributes on subscribe, and sessions
//! closed when their profile changes.

use serde_json::{Value, json};

use crate::clients::*;
use crate::common::TestApp;
use crate::downlink::{v3_message, v3_suback};
use crate::support::Api;
use ferroboard::domain::{AttributeScope, DeviceId, KvValue};

const TELEMETRY_SCHEMA: &str = "syntax = \"proto3\";\npackage telemetry;\nmessage SensorDataReading {\n  optional double temperature = 1;\n}\n";
const ATTRIBUTES_SCHEMA: &str = "syntax = \"proto3\";\npackage attributes;\nmessage SensorConfiguration {\n  optional string firmwareVersion = 1;\n}\n";

fn mqtt_profile(name: &str, payload: Value, ack: bool) -> Value {
    json!({
        "name": name,
        "transportType": "MQTT",
        "profileData": {"transportConfiguration": {
            "type": "MQTT",
            "deviceTelemetryTopic": "sensors/+/telemetry",
            "deviceAttributesTopic": "sensors/+/attrs",
            "deviceAttributesSubscribeTopic": "cfg/#",
            "transportPayloadTypeConfiguration": payload,
            "sendAckOnValidationException": ack,
            "sendSharedAttributesOnSubscribe": true
        }}
    })
}

fn protobuf() -> Value {
    json!({
        "transportPayloadType": "PROTOBUF",
        "deviceTelemetryProtoSchema": TELEMETRY_SCHEMA,
        "deviceAttributesProtoSchema": ATTRIBUTES_SCHEMA
    })
}

/// A device of a new profile; its id, its token and the profile JSON.
async fn device_of(app: &TestApp, profile: Value) -> (DeviceId, String, Value) {
    let api = Api::tenant(app).await;
    let profile = api.post("/api/deviceProfile", profile).await.ok();
    let (id, _) = api
        .create_device(json!({"name": format!("d-{}", uuid::Uuid::new_v4().simple()), "deviceProfileId": profile["id"]}))
        .await;
    let token = api.token_of(&id).await;
    (DeviceId(id.parse().expect("uuid")), token, profile)
}

fn temperature(value: f64) -> Vec<u8> {
    let mut payload = vec![0x09];
    payload.extend_from_slice(&value.to_le_bytes());
    payload
}

fn firmware(version: &str) -> Vec<u8> {
    let mut payload = vec![0x0a, u8::try_from(version.len()).expect("short")];
    payload.extend_from_slice(version.as_bytes());
    payload
}

async fn latest(app: &TestApp, id: DeviceId, key: &str) -> Option<KvValue> {
    let rows = state(app)
        .services
        .store
        .latest(id.0, None)
        .await
        .expect("latest");
    rows.into_iter().find(|p| p.key == key).map(|p| p.value)
}

pub(crate) async fn profile_topics_and_protobuf(app: &TestApp) {
    use rumqttc::v5::mqttbytes::v5::PubAckReason;
    let (id, token, _) = device_of(app, mqtt_profile("proto", protobuf(), false)).await;
    let mut c5 = Raw5::connect(app, &token).await;
    let qos = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    c5.publish("sensors/s1/telemetry", qos, temperature(21.5))
        .await;
    assert_eq!(c5.puback().await, PubAckReason::Success);
    assert_eq!(
        latest(app, id, "temperature").await,
        Some(KvValue::Double(21.5))
    );
    c5.publish("sensors/s1/attrs", qos, firmware("v1.2")).await;
    assert_eq!(c5.puback().await, PubAckReason::Success);
    let attrs = state(app)
        .services
        .store
        .find_attributes(id.0, AttributeScope::Client, None)
        .await
        .expect("attributes");
    assert_eq!(attrs.len(), 1);
    assert_eq!(
        (attrs[0].key.as_str(), &attrs[0].value),
        ("firmwareVersion", &KvValue::Str("v1.2".into()))
    );
    // The custom filter replaces the v1 topic; v2 topics keep working with the profile's format.
    c5.publish("v1/devices/me/telemetry", qos, r#"{"temperature":1}"#)
        .await;
    assert_eq!(c5.puback().await, PubAckReason::TopicNameInvalid);
    c5.publish("v2/t", qos, temperature(23.0)).await;
    assert_eq!(c5.puback().await, PubAckReason::Success);
    assert_eq!(
        latest(app, id, "temperature").await,
        Some(KvValue::Double(23.0))
    );
    // Not protobuf where the profile expects it: an invalid payload.
    c5.publish("sensors/s1/telemetry", qos, [0xff, 0xff, 0xff])
        .await;
    assert_eq!(c5.puback().await, PubAckReason::PayloadFormatInvalid);
}

pub(crate) async fn validation_exception_ack(app: &TestApp) {
    let json_payload = json!({"transportPayloadType": "JSON"});
    for (ack, name) in [(true, "acks"), (false, "closes")] {
        let (id, token, _) = device_of(app, mqtt_profile(name, json_payload.clone(), ack)).await;
        let mut c3 = v3(app, Some(&token), 30);
        v3_connack(&mut c3).await.expect("connected");
        let qos = rumqttc::QoS::AtLeastOnce;
        c3.client
            .publish("sensors/a/telemetry", qos, false, "{not json")
            .await
            .expect("queued");
        if ack {
            v3_puback(&mut c3).await;
            // The session stays: the next message is stored.
            c3.client
                .publish("sensors/a/telemetry", qos, false, r#"{"k":7}"#)
                .await
                .expect("queued");
            v3_puback(&mut c3).await;
            assert_eq!(latest(app, id, "k").await, Some(KvValue::Long(7)));
        } else {
            v3_closed(&mut c3).await;
        }
    }
}

/// A device of a new JSON profile named `name`, with the shared attribute `target` = 21 saved.
async fn device_with_shared_target(app: &TestApp, name: &str) -> (DeviceId, String, Value) {
    let (id, token, profile) = device_of(
        app,
        mqtt_profile(name, json!({"transportPayloadType": "JSON"}), false),
    )
    .await;
    let kv = ferroboard::domain::Kv {
        key: "target".into(),
        value: KvValue::Long(21),
    };
    state(app)
        .services
        .save_attributes(id.0, AttributeScope::Shared, vec![kv], 1)
        .await
        .expect("saved");
    (id, token, profile)
}

/// A 3.1.1 session of `token` subscribed (and granted QoS 1) to a topic the profile sends
/// shared attributes on subscribe for.
async fn subscribed_v3(app: &TestApp, token: &str) -> V3 {
    let mut c3 = v3(app, Some(token), 30);
    v3_connack(&mut c3).await.expect("connected");
    c3.client
        .subscribe("cfg/x", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("queued");
    assert_eq!(
        v3_suback(&mut c3).await,
        vec![rumqttc::mqttbytes::v4::SubscribeReasonCode::Success(
            rumqttc::QoS::AtLeastOnce
        )]
    );
    c3
}

pub(crate) async fn shared_attributes_on_subscribe_and_profile_changes(app: &TestApp) {
    let (id, token, profile) = device_with_shared_target(app, "shared").await;
    let mut c3 = subscribed_v3(app, &token).await;
    let (topic, body) = v3_message(&mut c3, "v1/devices/me/attributes").await;
    assert_eq!(topic, "v1/devices/me/attributes");
    assert_eq!(body, json!({"target": 21}));

    // Saving the profile closes its devices' sessions; they reconnect under the new settings.
    let api = Api::tenant(app).await;
    let mut changed = profile.clone();
    changed["profileData"]["transportConfiguration"]["deviceTelemetryTopic"] =
        json!("other/telemetry");
    api.post("/api/deviceProfile", changed).await.ok();
    v3_closed(&mut c3).await;
    let mut again = v3(app, Some(&token), 30);
    v3_connack(&mut again).await.expect("reconnected");
    again
        .client
        .publish(
            "other/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"n":1}"#,
        )
        .await
        .expect("queued");
    v3_puback(&mut again).await;
    assert_eq!(latest(app, id, "n").await, Some(KvValue::Long(1)));
}

/// The shared attributes sent on subscribe go to the subscribing session only: an HTTP long poll
/// of the device waiting for attribute updates is answered by the next real update, not by them.
pub(crate) async fn shared_attributes_on_subscribe_go_to_the_subscriber_only(app: &TestApp) {
    let (id, token, _) = device_with_shared_target(app, "shared-own").await;
    let url = format!(
        "{}/api/v1/{token}/attributes/updates?timeout=20000",
        app.http
    );
    let poll = tokio::spawn(async move {
        let resp = reqwest::get(url).await.expect("GET");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    });
    crate::common::eventually("the long poll open", WAIT, || async {
        (state(app).sessions.polls() == 1).then_some(())
    })
    .await;

    let mut c3 = subscribed_v3(app, &token).await;
    let (_, body) = v3_message(&mut c3, "v1/devices/me/attributes").await;
    assert_eq!(body, json!({"target": 21}));

    // Saved over REST: pushed to the device's sessions and polls.
    let api = Api::tenant(app).await;
    api.post(
        &format!("/api/plugins/telemetry/DEVICE/{}/SHARED_SCOPE", id.0),
        json!({"other": 5}),
    )
    .await
    .ok();
    let (status, text) = poll.await.expect("poll task");
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        answer,
        json!({"other": 5}),
        "the update, not the subscriber's snapshot"
    );
    let (_, body) = v3_message(&mut c3, "v1/devices/me/attributes").await;
    assert_eq!(body, json!({"other": 5}));
    c3.client.disconnect().await.ok();
}
