//! Package chunks over MQTT 3.1.1 and HTTP: assignment on the device, chunk sizes remembered per request id,
//! the end of the file, the refused `v2/fw/response/+` filter, errors on `v2/fw/error`, and a
//! package that cannot be deleted while assigned.

use rumqttc::QoS;
use rumqttc::mqttbytes::v4 as m4;
use serde_json::json;

use crate::clients::{V3, v3, v3_connack, wait_for};
use crate::common::TestApp;
use crate::support::Api;
use crate::{create_package, default_profile, image, upload};

/// The next PUBLISH from the server: (topic, payload).
async fn next_publish(c: &mut V3) -> (String, Vec<u8>) {
    wait_for(&mut c.events, "PUBLISH from the server", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::Publish(p))) => {
            Some((p.topic.clone(), p.payload.to_vec()))
        }
        _ => None,
    })
    .await
}

async fn request(c: &mut V3, topic: &str, payload: &str) -> (String, Vec<u8>) {
    c.client
        .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
        .await
        .expect("queued");
    next_publish(c).await
}

async fn chunks_over_mqtt(app: &TestApp) {
    let api = Api::tenant(app).await;
    let profile = default_profile(&api).await;
    let pkg = create_package(&api, &profile, "FIRMWARE", "fw", "1.0").await;
    let id = pkg["id"]["id"].as_str().unwrap().to_owned();
    let data = image(2500);
    upload(&api, &id, "?checksumAlgorithm=SHA256", &[], &data)
        .await
        .ok();
    let sw = create_package(&api, &profile, "SOFTWARE", "sw", "1.0").await;

    // Assigning checks the package: its type, and that it has data.
    let bad = api
        .post("/api/device", json!({"name": "d0", "firmwareId": sw["id"]}))
        .await;
    assert_eq!(
        bad.error(400, 31),
        "Can't assign firmware with type: SOFTWARE"
    );
    let bad = api
        .post("/api/device", json!({"name": "d0", "softwareId": sw["id"]}))
        .await;
    assert_eq!(bad.error(400, 31), "Can't assign software with empty data!");
    let device = api
        .post(
            "/api/device?accessToken=ota-token-1",
            json!({"name": "ota-dev", "firmwareId": pkg["id"]}),
        )
        .await
        .ok();
    assert_eq!(device["firmwareId"]["id"], id.as_str());
    let deleted = api.delete(&format!("/api/otaPackage/{id}")).await;
    assert_eq!(
        deleted.error(400, 31),
        "The otaPackage referenced by the devices cannot be deleted!"
    );

    let mut c = v3(app, Some("ota-token-1"), 30);
    v3_connack(&mut c).await.expect("connected");
    // The SDK's filter is refused without closing the session; chunks come all the same.
    c.client
        .subscribe("v2/fw/response/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    let codes = wait_for(&mut c.events, "SUBACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::SubAck(s))) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![m4::SubscribeReasonCode::Failure]);

    let (topic, bytes) = request(&mut c, "v2/fw/request/1/chunk/0", "1000").await;
    assert_eq!(topic, "v2/fw/response/1/chunk/0");
    assert_eq!(bytes, &data[..1000]);
    // An empty payload: the size remembered for request 1.
    let (topic, bytes) = request(&mut c, "v2/fw/request/1/chunk/2", "").await;
    assert_eq!(topic, "v2/fw/response/1/chunk/2");
    assert_eq!(bytes, &data[2000..]);
    let (_, bytes) = request(&mut c, "v2/fw/request/1/chunk/3", "").await;
    assert!(bytes.is_empty(), "past the end: an empty chunk");
    // No size ever given: the whole file.
    let (_, bytes) = request(&mut c, "v2/fw/request/2/chunk/0", "").await;
    assert_eq!(bytes, data);

    let (topic, text) = request(&mut c, "v2/fw/request/3/chunk/0", "abc").await;
    assert_eq!(topic, "v2/fw/error");
    assert_eq!(String::from_utf8(text).unwrap(), "Invalid chunk size: abc");
    let (topic, text) = request(&mut c, "v2/fw/request/3/chunk/x", "100").await;
    assert_eq!(topic, "v2/fw/error");
    assert_eq!(String::from_utf8(text).unwrap(), "Invalid chunk index: x");
    // Larger than a PUBLISH may be: the largest chunk that fits (here the whole small file).
    let (topic, bytes) = request(&mut c, "v2/fw/request/4/chunk/0", "70000").await;
    assert_eq!(topic, "v2/fw/response/4/chunk/0");
    assert_eq!(bytes, data);
    // Nothing assigned for software: the error is on the firmware error topic, as ThingsBoard.
    let (topic, text) = request(&mut c, "v2/sw/request/5/chunk/0", "100").await;
    assert_eq!(topic, "v2/fw/error");
    assert_eq!(String::from_utf8(text).unwrap(), "NOT_FOUND");
    // The session is still served.
    let (topic, bytes) = request(&mut c, "v2/fw/request/6/chunk/1", "2000").await;
    assert_eq!(topic, "v2/fw/response/6/chunk/1");
    assert_eq!(bytes, &data[2000..]);
    c.client.disconnect().await.ok();

    // Over HTTP: the same bytes by range, the whole file streamed, the title and version checked.
    let get = |query: String| {
        let url = format!("{}/api/v1/ota-token-1/{query}", api.base);
        async move {
            let resp = reqwest::get(url).await.expect("GET");
            (
                resp.status().as_u16(),
                resp.bytes().await.expect("body").to_vec(),
            )
        }
    };
    let (status, bytes) = get("firmware?title=fw&version=1.0&size=1000&chunk=1".into()).await;
    assert_eq!((status, bytes.as_slice()), (200, &data[1000..2000]));
    let (status, bytes) = get("firmware?title=fw&version=1.0&size=1000&chunk=9".into()).await;
    assert_eq!((status, bytes.len()), (200, 0), "past the end");
    let (status, bytes) = get("firmware?title=fw&version=1.0".into()).await;
    assert_eq!((status, bytes), (200, data.clone()));
    let (status, _) = get("firmware?title=fw&version=2.0".into()).await;
    assert_eq!(status, 400, "another version");
    let (status, _) = get("firmware?title=fw".into()).await;
    assert_eq!(status, 400, "version missing");
    let (status, _) = get("firmware?title=fw&version=1.0&size=-5".into()).await;
    assert_eq!(status, 400);
    let (status, _) = get("software?title=sw&version=1.0".into()).await;
    assert_eq!(status, 404, "nothing assigned");

    // Unassigned, the package can be deleted.
    let mut body = device.clone();
    body["firmwareId"] = serde_json::Value::Null;
    let saved = api.post("/api/device", body).await.ok();
    assert!(saved["firmwareId"].is_null());
    api.delete(&format!("/api/otaPackage/{id}")).await.ok();
}

crate::both_backends!(chunks_over_mqtt);
