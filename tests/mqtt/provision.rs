//! Provisioning over MQTT: `provision` as user name, the request on `/provision/request`, the
//! answer on `/provision/response`; a provisioned device connects at once; wrong topics and
//! malformed requests close the connection with their reason.

use serde_json::json;

use crate::clients::*;
use crate::common::TestApp;
use crate::downlink::{v3_message, v3_suback};
use crate::support::Api;
use rumqttc::v5::mqttbytes::v5 as m5;

pub(crate) async fn provisioning_over_mqtt(app: &TestApp) {
    let api = Api::tenant(app).await;
    api.post(
        "/api/deviceProfile",
        json!({"name": "field", "provisionType": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceKey": "mqtt-key",
               "profileData": {"provisionConfiguration": {"type": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceSecret": "mqtt-secret"}}}),
    )
    .await
    .ok();
    let mut c3 = v3(app, Some("provision"), 30);
    v3_connack(&mut c3)
        .await
        .expect("provisioning connection accepted");
    let qos = rumqttc::QoS::AtLeastOnce;
    c3.client
        .subscribe("/provision/response", qos)
        .await
        .expect("queued");
    assert_eq!(
        v3_suback(&mut c3).await,
        vec![rumqttc::mqttbytes::v4::SubscribeReasonCode::Success(qos)]
    );
    let request = json!({"deviceName": "mqtt-1", "provisionDeviceKey": "mqtt-key", "provisionDeviceSecret": "mqtt-secret"});
    c3.client
        .publish("/provision/request", qos, false, request.to_string())
        .await
        .expect("queued");
    let (_, answer) = v3_message(&mut c3, "/provision/response").await;
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    let token = answer["credentialsValue"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut device = v3(app, Some(&token), 30);
    v3_connack(&mut device)
        .await
        .expect("the provisioned device connects");
    // A wrong secret: NOT_FOUND on the same connection.
    let wrong = json!({"deviceName": "mqtt-2", "provisionDeviceKey": "mqtt-key", "provisionDeviceSecret": "nope"});
    c3.client
        .publish("/provision/request", qos, false, wrong.to_string())
        .await
        .expect("queued");
    let (_, answer) = v3_message(&mut c3, "/provision/response").await;
    assert_eq!(
        answer,
        json!({"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"})
    );
    // Any other topic closes the connection.
    c3.client
        .publish("v1/devices/me/telemetry", qos, false, "{}")
        .await
        .expect("queued");
    v3_closed(&mut c3).await;

    // MQTT 5: the reasons are told.
    let mut r5 = Raw5::connect(app, "provision").await;
    r5.publish("/provision", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, "{}")
        .await;
    assert_eq!(
        r5.disconnect_reason().await,
        m5::DisconnectReasonCode::TopicNameInvalid
    );
    let mut r5 = Raw5::connect(app, "provision").await;
    let null = json!({"deviceName": null, "provisionDeviceKey": "mqtt-key", "provisionDeviceSecret": "mqtt-secret"});
    r5.publish(
        "/provision/request",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        null.to_string(),
    )
    .await;
    assert_eq!(
        r5.disconnect_reason().await,
        m5::DisconnectReasonCode::ImplementationSpecificError
    );
    api.get("/api/tenant/device?deviceName=mqtt-2")
        .await
        .error(404, 32);
}
