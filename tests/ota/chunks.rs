//! Beyond ThingsBoard: a chunk larger than the device's connection allows is answered with the
//! largest chunk that fits (MQTT 5 says its size in a `chunk_size` user property), a device
//! resumes a download at any chunk index after reconnecting, and chunk requests sent back to
//! back are all answered (a bounded number of them unanswered at once).

use rumqttc::mqttbytes::v4 as m4;
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{QoS, v5};

use crate::clients::{V3, V5, v3, v3_connack, v3_with, v5_connack, v5_with, wait_for};
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

/// The chunk requests of `indices` (request id 1, 100 bytes each), published without waiting.
async fn pipeline(c: &V3, indices: std::ops::Range<u64>) {
    for i in indices {
        c.client
            .publish(
                format!("v2/fw/request/1/chunk/{i}"),
                QoS::AtLeastOnce,
                false,
                b"100".to_vec(),
            )
            .await
            .expect("queued");
    }
}

/// The chunk index of an answer's topic.
fn chunk_index(topic: &str) -> usize {
    topic
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("chunk topic")
}

/// The next `n` PUBLISHes from the server.
async fn publishes(c: &mut V3, n: usize) -> Vec<m4::Publish> {
    let mut got = Vec::new();
    while got.len() < n {
        let p = wait_for(&mut c.events, "chunk answer", |ev| match ev {
            Ok(rumqttc::Event::Incoming(m4::Packet::Publish(p))) => Some(p.clone()),
            _ => None,
        })
        .await;
        got.push(p);
    }
    got
}

async fn pipelined_chunk_requests_are_all_answered(app: &TestApp) {
    let api = Api::tenant(app).await;
    let data = device_with_firmware(&api, "ota-pipe", 5_000).await;
    let mut c = v3(app, Some("ota-pipe"), 30);
    v3_connack(&mut c).await.expect("connected");
    // Twelve requests back to back: every chunk, each once, and the session stays open.
    pipeline(&c, 0..12).await;
    let mut got = publishes(&mut c, 12).await;
    got.sort_by_key(|p| chunk_index(&p.topic));
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.topic, format!("v2/fw/response/1/chunk/{i}"));
        assert_eq!(p.payload.as_ref(), &data[i * 100..(i + 1) * 100]);
    }
    let (topic, bytes) = v3_chunk(&mut c, "1", 12, "").await;
    assert_eq!(topic, "v2/fw/response/1/chunk/12");
    assert_eq!(bytes, &data[1200..1300]);
    c.client.disconnect().await.ok();

    // A device that acknowledges nothing: sixteen answers wait for their PUBACK, the requests
    // beyond are refused naming the limit; acknowledged, the session is served again.
    let mut opts = rumqttc::MqttOptions::new("ota-pipe-noack", "127.0.0.1", app.mqtt_port);
    opts.set_credentials("ota-pipe", "");
    opts.set_manual_acks(true);
    let mut c = v3_with(opts);
    v3_connack(&mut c).await.expect("connected");
    pipeline(&c, 0..18).await;
    let got = publishes(&mut c, 18).await;
    let (chunks, errors): (Vec<_>, Vec<_>) = got.iter().partition(|p| p.topic != "v2/fw/error");
    let mut indices: Vec<usize> = chunks.iter().map(|p| chunk_index(&p.topic)).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..16).collect::<Vec<_>>(), "the first sixteen");
    for p in &errors {
        assert_eq!(
            String::from_utf8_lossy(&p.payload),
            "Too many chunk requests waiting for their answer (at most 16)"
        );
    }
    assert_eq!(errors.len(), 2);
    for p in &chunks {
        c.client.ack(p).await.expect("ack queued");
    }
    c.client
        .publish(
            "v2/fw/request/2/chunk/3",
            QoS::AtLeastOnce,
            false,
            b"1000".to_vec(),
        )
        .await
        .expect("queued");
    let p = publishes(&mut c, 1).await.remove(0);
    assert_eq!(p.topic, "v2/fw/response/2/chunk/3");
    assert_eq!(p.payload.as_ref(), &data[3000..4000]);
    c.client.disconnect().await.ok();
}

crate::both_backends!(
    oversized_chunks_shrink,
    resume_after_reconnect,
    pipelined_chunk_requests_are_all_answered
);
