//! Beyond ThingsBoard: a chunk larger than the device's connection allows is answered with the
//! largest chunk that fits (MQTT 5 says its size in a `chunk_size` user property), and a device
//! resumes a download at any chunk index after reconnecting.

use rumqttc::mqttbytes::v4 as m4;
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{QoS, v5};

use crate::clients::{V3, V5, v3, v3_connack, v5_connack, v5_with, wait_for};
use crate::common::TestApp;
use crate::support::Api;
use crate::{create_package, default_profile, image, upload};

/// A device with firmware of `len` bytes assigned; returns the file.
async fn device_with_firmware(api: &Api, token: &str, len: usize) -> Vec<u8> {
    let profile = default_profile(api).await;
    let pkg = create_package(api, &profile, "FIRMWARE", token, "1.0").await;
    let id = pkg["id"]["id"].as_str().expect("id").to_owned();
    let data = image(len);
    upload(api, &id, "?checksumAlgorithm=MD5", &[], &data)
        .await
        .ok();
    api.create_device_with_token(json_device(token, &pkg), token)
        .await;
    data
}

fn json_device(name: &str, pkg: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": name, "firmwareId": pkg["id"]})
}

async fn v3_chunk(c: &mut V3, request: &str, index: u64, payload: &str) -> (String, Vec<u8>) {
    c.client
        .publish(
            format!("v2/fw/request/{request}/chunk/{index}"),
            QoS::AtLeastOnce,
            false,
            payload.as_bytes().to_vec(),
        )
        .await
        .expect("queued");
    wait_for(&mut c.events, "chunk", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::Publish(p))) => {
            Some((p.topic.clone(), p.payload.to_vec()))
        }
        _ => None,
    })
    .await
}

/// (topic, payload, `chunk_size` user property).
async fn v5_chunk(
    c: &mut V5,
    request: &str,
    index: u64,
    payload: &str,
) -> (String, Vec<u8>, Option<String>) {
    c.client
        .publish(
            format!("v2/fw/request/{request}/chunk/{index}"),
            v5::mqttbytes::QoS::AtLeastOnce,
            false,
            payload.as_bytes().to_vec(),
        )
        .await
        .expect("queued");
    wait_for(&mut c.events, "chunk", |ev| match ev {
        Ok(v5::Event::Incoming(m5::Packet::Publish(p))) => {
            let size = p.properties.as_ref().and_then(|props| {
                props
                    .user_properties
                    .iter()
                    .find(|(k, _)| k == "chunk_size")
                    .map(|(_, v)| v.clone())
            });
            Some((
                String::from_utf8(p.topic.to_vec()).expect("topic"),
                p.payload.to_vec(),
                size,
            ))
        }
        _ => None,
    })
    .await
}

async fn oversized_chunks_shrink(app: &TestApp) {
    let api = Api::tenant(app).await;
    let data = device_with_firmware(&api, "ota-shrink", 200_000).await;

    // MQTT 3.1.1: within the server's mqtt.max_packet_size (65536), chunk after chunk.
    let mut c = v3(app, Some("ota-shrink"), 30);
    v3_connack(&mut c).await.expect("connected");
    let (topic, first) = v3_chunk(&mut c, "1", 0, "100000").await;
    assert_eq!(topic, "v2/fw/response/1/chunk/0");
    let size = first.len();
    assert!(
        size < 65536 && size > 60_000,
        "the largest that fits: {size}"
    );
    assert_eq!(first, &data[..size]);
    let (_, second) = v3_chunk(&mut c, "1", 1, "").await;
    assert_eq!(second, &data[size..2 * size], "the same size again");
    // The whole file asked for: chunks of the largest size, too.
    let (_, whole) = v3_chunk(&mut c, "2", 0, "").await;
    assert_eq!(whole, first);
    c.client.disconnect().await.ok();

    // MQTT 5 with a Maximum Packet Size of 4096: chunks fit it, and say their size.
    let mut opts = v5::MqttOptions::new("ota-shrink-v5", "127.0.0.1", app.mqtt_port);
    opts.set_credentials("ota-shrink", "");
    opts.set_max_packet_size(Some(4096));
    let mut c = v5_with(opts);
    v5_connack(&mut c).await.expect("connected");
    let mut got = Vec::new();
    let (topic, bytes, property) = v5_chunk(&mut c, "9", 0, "60000").await;
    assert_eq!(topic, "v2/fw/response/9/chunk/0");
    let size: usize = property
        .expect("chunk_size user property")
        .parse()
        .expect("number");
    assert_eq!(bytes.len(), size);
    assert!(size < 4096 && size > 3900, "the largest that fits: {size}");
    got.extend_from_slice(&bytes);
    let mut index = 1;
    while got.len() < data.len() {
        let (_, bytes, _) = v5_chunk(&mut c, "9", index, "").await;
        assert!(!bytes.is_empty(), "chunk {index} is not past the end");
        got.extend_from_slice(&bytes);
        index += 1;
    }
    assert_eq!(got, data);
    // A size that fits is served as asked, without the property.
    let (_, bytes, property) = v5_chunk(&mut c, "10", 3, "1000").await;
    assert_eq!((bytes.as_slice(), property), (&data[3000..4000], None));
    c.client.disconnect().await.ok();
}

async fn resume_after_reconnect(app: &TestApp) {
    let api = Api::tenant(app).await;
    let data = device_with_firmware(&api, "ota-resume", 10_000).await;
    let mut c = v3(app, Some("ota-resume"), 30);
    v3_connack(&mut c).await.expect("connected");
    for i in 0..3 {
        let (_, bytes) = v3_chunk(&mut c, "7", i, "1000").await;
        assert_eq!(bytes, &data[i as usize * 1000..(i as usize + 1) * 1000]);
    }
    c.client.disconnect().await.ok();
    let mut c = v3(app, Some("ota-resume"), 30);
    v3_connack(&mut c).await.expect("connected");
    // The same request id at the next index, and any index after it.
    let (topic, bytes) = v3_chunk(&mut c, "7", 3, "1000").await;
    assert_eq!(topic, "v2/fw/response/7/chunk/3");
    assert_eq!(bytes, &data[3000..4000]);
    let (_, bytes) = v3_chunk(&mut c, "7", 8, "").await;
    assert_eq!(bytes, &data[8000..9000], "the size remembered again");
    let (_, bytes) = v3_chunk(&mut c, "8", 9, "1000").await;
    assert_eq!(bytes, &data[9000..]);
    let (_, bytes) = v3_chunk(&mut c, "8", 10, "").await;
    assert!(bytes.is_empty(), "past the end");
    c.client.disconnect().await.ok();
}

crate::both_backends!(oversized_chunks_shrink, resume_after_reconnect);
