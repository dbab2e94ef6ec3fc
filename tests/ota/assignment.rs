//! Assignment on devices and device profiles (the device's own package wins), the `fw_*` /
//! `sw_*` SHARED attributes pushed to the device when its package changes, the server-side
//! `QUEUED` / `INITIATED` states, and the states a device reports, read back over REST.

use std::time::Duration;

use rumqttc::QoS;
use rumqttc::mqttbytes::v4 as m4;
use serde_json::{Value, json};

use crate::clients::{V3, v3, v3_connack, wait_for};
use crate::common::{TestApp, eventually};
use crate::support::{Api, attr_map, series};
use crate::{create_package, default_profile, image, upload};

const SHARED: &str = "values/attributes/SHARED_SCOPE";

/// A package of `kind` on `profile` with a file of `len` bytes; returns its info.
async fn uploaded(api: &Api, profile: &str, kind: &str, title: &str, len: usize) -> Value {
    let pkg = create_package(api, profile, kind, title, "1.0").await;
    let id = pkg["id"]["id"].as_str().expect("id").to_owned();
    upload(api, &id, "?checksumAlgorithm=SHA256", &[], &image(len))
        .await
        .ok()
}

/// Saves the profile with `changes` applied.
async fn save_profile(api: &Api, profile: &str, changes: Value) -> Value {
    let mut body = api.get(&format!("/api/deviceProfile/{profile}")).await.ok();
    for (k, v) in changes.as_object().expect("object") {
        body[k] = v.clone();
    }
    api.post("/api/deviceProfile", body).await.ok()
}

/// Saves the device with `changes` applied.
async fn save_device(api: &Api, device: &str, changes: Value) -> Value {
    let mut body = api.get(&format!("/api/device/{device}")).await.ok();
    for (k, v) in changes.as_object().expect("object") {
        body[k] = v.clone();
    }
    api.post("/api/device", body).await.ok()
}

/// A connected device subscribed to its attribute updates.
async fn subscribed(app: &TestApp, token: &str) -> V3 {
    let mut c = v3(app, Some(token), 30);
    v3_connack(&mut c).await.expect("connected");
    c.client
        .subscribe("v1/devices/me/attributes", QoS::AtLeastOnce)
        .await
        .expect("queued");
    wait_for(&mut c.events, "SUBACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::SubAck(_))) => Some(()),
        _ => None,
    })
    .await;
    c
}

/// The next attribute update pushed to the device.
async fn pushed(c: &mut V3) -> Value {
    let payload = wait_for(&mut c.events, "attribute update", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::Publish(p)))
            if p.topic == "v1/devices/me/attributes" =>
        {
            Some(p.payload.to_vec())
        }
        _ => None,
    })
    .await;
    serde_json::from_slice(&payload).expect("JSON update")
}

/// The whole assigned firmware over MQTT (a fresh request id each time).
async fn firmware_over_mqtt(c: &mut V3, request: u32) -> (String, Vec<u8>) {
    c.client
        .publish(
            format!("v2/fw/request/{request}/chunk/0"),
            QoS::AtLeastOnce,
            false,
            Vec::new(),
        )
        .await
        .expect("queued");
    wait_for(&mut c.events, "firmware answer", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::Publish(p))) if p.topic.starts_with("v2/fw/") => {
            Some((p.topic.clone(), p.payload.to_vec()))
        }
        _ => None,
    })
    .await
}

fn shared_path(device: &str) -> String {
    format!("/api/plugins/telemetry/DEVICE/{device}/{SHARED}")
}

async fn shared(api: &Api, device: &str) -> serde_json::Map<String, Value> {
    attr_map(&api.get(&shared_path(device)).await.ok())
}

/// Waits until the device's SHARED attributes satisfy `check`.
async fn shared_until(
    api: &Api,
    device: &str,
    what: &str,
    check: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> serde_json::Map<String, Value> {
    eventually(what, Duration::from_secs(10), || async {
        let attrs = shared(api, device).await;
        check(&attrs).then_some(attrs)
    })
    .await
}

async fn profile_assignment(app: &TestApp) {
    let api = Api::tenant(app).await;
    let profile = default_profile(&api).await;
    let other = api
        .post("/api/deviceProfile", json!({"name": "other"}))
        .await
        .ok();
    let other = other["id"]["id"].as_str().expect("id").to_owned();
    let fw = uploaded(&api, &profile, "FIRMWARE", "fw-profile", 3000).await;
    let own = uploaded(&api, &profile, "FIRMWARE", "fw-own", 1200).await;
    let foreign = uploaded(&api, &other, "FIRMWARE", "fw-other", 100).await;
    let empty = create_package(&api, &profile, "SOFTWARE", "sw-empty", "1.0").await;

    // Checked as ThingsBoard checks a device's assignment.
    let mut body = api.get(&format!("/api/deviceProfile/{profile}")).await.ok();
    for (field, package, message) in [
        (
            "firmwareId",
            &foreign,
            "Can't assign firmware with different deviceProfile!",
        ),
        (
            "firmwareId",
            &empty,
            "Can't assign firmware with type: SOFTWARE",
        ),
        (
            "softwareId",
            &empty,
            "Can't assign software with empty data!",
        ),
        (
            "firmwareId",
            &json!({"id": {"entityType": "OTA_PACKAGE", "id": "6f1c2a4e-0000-4000-8000-000000000009"}}),
            "Can't assign non-existent firmware!",
        ),
    ] {
        let mut bad = body.clone();
        bad[field] = package["id"].clone();
        let resp = api.post("/api/deviceProfile", bad).await;
        assert_eq!(resp.error(400, 31), message, "{field}");
    }
    body["firmwareId"] = fw["id"].clone();
    let saved = api.post("/api/deviceProfile", body).await.ok();
    assert_eq!(saved["firmwareId"], fw["id"]);
    let read = api.get(&format!("/api/deviceProfile/{profile}")).await.ok();
    assert_eq!(read["firmwareId"], fw["id"]);
    assert!(read["softwareId"].is_null());

    // A device without a package of its own gets the profile's; one with its own keeps it.
    let (_, _) = api
        .create_device_with_token(json!({"name": "follows"}), "ota-follows")
        .await;
    let (_, _) = api
        .create_device_with_token(
            json!({"name": "keeps", "firmwareId": own["id"]}),
            "ota-keeps",
        )
        .await;
    let mut c = v3(app, Some("ota-follows"), 30);
    v3_connack(&mut c).await.expect("connected");
    let (topic, bytes) = firmware_over_mqtt(&mut c, 1).await;
    assert_eq!(topic, "v2/fw/response/1/chunk/0");
    assert_eq!(bytes, image(3000));
    c.client.disconnect().await.ok();
    let mut c = v3(app, Some("ota-keeps"), 30);
    v3_connack(&mut c).await.expect("connected");
    let (_, bytes) = firmware_over_mqtt(&mut c, 1).await;
    assert_eq!(bytes, image(1200));
    c.client.disconnect().await.ok();
    let http = reqwest::get(format!(
        "{}/api/v1/ota-follows/firmware?title=fw-profile&version=1.0",
        api.base
    ))
    .await
    .expect("GET");
    assert_eq!(http.status().as_u16(), 200);
    assert_eq!(http.bytes().await.expect("body").to_vec(), image(3000));

    // Assigned to the profile, the package cannot be deleted; unassigned, it can.
    let fw_id = fw["id"]["id"].as_str().expect("id");
    let refused = api.delete(&format!("/api/otaPackage/{fw_id}")).await;
    assert_eq!(
        refused.error(400, 31),
        "The otaPackage referenced by the device profile cannot be deleted!"
    );
    let saved = save_profile(&api, &profile, json!({"firmwareId": null})).await;
    assert!(saved["firmwareId"].is_null());
    api.delete(&format!("/api/otaPackage/{fw_id}")).await.ok();
}

async fn attributes_follow_assignment(app: &TestApp) {
    let api = Api::tenant(app).await;
    let profile = default_profile(&api).await;
    let first = uploaded(&api, &profile, "FIRMWARE", "fw-a", 2048).await;
    let second = uploaded(&api, &profile, "FIRMWARE", "fw-b", 512).await;
    let (device, _) = api
        .create_device_with_token(json!({"name": "attrs"}), "ota-attrs")
        .await;
    let (follower, _) = api
        .create_device_with_token(json!({"name": "follower"}), "ota-follower")
        .await;
    let mut c = subscribed(app, "ota-attrs").await;
    let mut f = subscribed(app, "ota-follower").await;

    // The device's own package: the attributes are stored and pushed.
    let before = crate::support::now_ms();
    save_device(&api, &device, json!({"firmwareId": first["id"]})).await;
    let update = pushed(&mut c).await;
    assert_eq!(
        update,
        json!({"fw_title": "fw-a", "fw_version": "1.0", "fw_tag": "fw-a 1.0", "fw_size": 2048,
               "fw_checksum_algorithm": "SHA256", "fw_checksum": first["checksum"]})
    );
    let attrs = shared(&api, &device).await;
    assert_eq!(attrs["fw_title"], "fw-a");
    assert_eq!(attrs["fw_size"], 2048);
    assert_eq!(attrs["fw_checksum"], first["checksum"]);
    // QUEUED, then INITIATED, with the target.
    let base = format!("/api/plugins/telemetry/DEVICE/{device}/values/timeseries");
    let now = crate::support::now_ms() + 1000;
    let history = api
        .get(&format!(
            "{base}?keys=fw_state,target_fw_title,target_fw_version,target_fw_tag,target_fw_ts&startTs=0&endTs={now}&limit=10"
        ))
        .await
        .ok();
    let states: Vec<Value> = series(&history, "fw_state")
        .into_iter()
        .rev()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(states, [json!("QUEUED"), json!("INITIATED")]);
    assert_eq!(series(&history, "target_fw_title")[0].1, "fw-a");
    assert_eq!(series(&history, "target_fw_version")[0].1, "1.0");
    assert_eq!(series(&history, "target_fw_tag")[0].1, "fw-a 1.0");
    let target_ts = series(&history, "target_fw_ts")[0].1.clone();
    let target_ts: i64 = target_ts.as_str().expect("text").parse().expect("ms");
    assert!(target_ts >= before, "target_fw_ts is the assignment time");

    // The profile's package goes to the device without its own, not to the other.
    save_profile(&api, &profile, json!({"firmwareId": second["id"]})).await;
    let update = pushed(&mut f).await;
    assert_eq!(update["fw_title"], "fw-b");
    assert_eq!(update["fw_size"], 512);
    assert_eq!(shared(&api, &device).await["fw_title"], "fw-a");

    // Its own package removed, the device falls back to the profile's.
    save_device(&api, &device, json!({"firmwareId": null})).await;
    let update = pushed(&mut c).await;
    assert_eq!(update["fw_title"], "fw-b");

    // Nothing assigned any more: the attributes are deleted and the deletion pushed.
    save_profile(&api, &profile, json!({"firmwareId": null})).await;
    for client in [&mut c, &mut f] {
        let update = pushed(client).await;
        let mut deleted: Vec<String> = update["deleted"]
            .as_array()
            .expect("deleted keys")
            .iter()
            .map(|k| k.as_str().expect("key").to_owned())
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            [
                "fw_checksum",
                "fw_checksum_algorithm",
                "fw_size",
                "fw_tag",
                "fw_title",
                "fw_version"
            ]
        );
    }
    for d in [&device, &follower] {
        shared_until(&api, d, "fw_* attributes deleted", |a| {
            !a.keys().any(|k| k.starts_with("fw_"))
        })
        .await;
    }

    // A URL package: its URL, and none of the file's details.
    let url = api
        .post(
            "/api/otaPackage",
            json!({"title": "sw-url", "version": "2.0", "type": "SOFTWARE", "usesUrl": true,
                   "url": "https://example.com/sw.bin", "tag": "",
                   "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile}}),
        )
        .await
        .ok();
    save_device(&api, &device, json!({"softwareId": url["id"]})).await;
    let update = pushed(&mut c).await;
    assert_eq!(
        update,
        json!({"sw_title": "sw-url", "sw_version": "2.0", "sw_tag": "sw-url 2.0",
               "sw_url": "https://example.com/sw.bin"})
    );
    c.client.disconnect().await.ok();
    f.client.disconnect().await.ok();

    // Moved to another profile with a package: the device gets that profile's package.
    let other = api
        .post("/api/deviceProfile", json!({"name": "moved"}))
        .await
        .ok();
    let other_id = other["id"]["id"].as_str().expect("id").to_owned();
    let third = uploaded(&api, &other_id, "FIRMWARE", "fw-c", 64).await;
    save_profile(&api, &other_id, json!({"firmwareId": third["id"]})).await;
    save_device(
        &api,
        &follower,
        json!({"deviceProfileId": other["id"], "type": "moved"}),
    )
    .await;
    let attrs = shared_until(&api, &follower, "the new profile's package", |a| {
        a.get("fw_title") == Some(&json!("fw-c"))
    })
    .await;
    assert_eq!(attrs["fw_size"], 64);
}

/// A profile's package reaches every device of the profile, past one page of devices.
async fn profile_rollout_pages(app: &TestApp) {
    let api = Api::tenant(app).await;
    let profile = default_profile(&api).await;
    let mut devices = Vec::new();
    for i in 0..130 {
        let (id, _) = api.create_device(json!({"name": format!("r{i}")})).await;
        devices.push(id);
    }
    let fw = uploaded(&api, &profile, "FIRMWARE", "fw-rollout", 10).await;
    save_profile(&api, &profile, json!({"firmwareId": fw["id"]})).await;
    for d in &devices {
        shared_until(&api, d, "the profile's package on every device", |a| {
            a.get("fw_title") == Some(&json!("fw-rollout"))
        })
        .await;
    }
}

/// What a device reports about its update is ordinary telemetry, stored through the rule chain.
async fn device_reported_states(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (device, _) = api
        .create_device_with_token(json!({"name": "reporter"}), "ota-reporter")
        .await;
    let mut c = v3(app, Some("ota-reporter"), 30);
    v3_connack(&mut c).await.expect("connected");
    let reports = [
        json!({"ts": 1000, "values": {"current_fw_title": "Initial", "current_fw_version": "v0", "fw_state": "DOWNLOADING"}}),
        json!({"ts": 2000, "values": {"fw_state": "DOWNLOADED"}}),
        json!({"ts": 3000, "values": {"fw_state": "FAILED", "fw_error": "Checksum verification failed!"}}),
        json!({"ts": 4000, "values": {"fw_state": "VERIFIED", "fw_error": ""}}),
        json!({"ts": 5000, "values": {"fw_state": "UPDATED", "current_fw_title": "fw", "current_fw_version": "1.0"}}),
    ];
    for r in &reports {
        c.client
            .publish(
                "v1/devices/me/telemetry",
                QoS::AtLeastOnce,
                false,
                r.to_string().into_bytes(),
            )
            .await
            .expect("queued");
    }
    let base = format!("/api/plugins/telemetry/DEVICE/{device}/values/timeseries");
    let history = eventually("the reported states", Duration::from_secs(10), || async {
        let h = api
            .get(&format!(
                "{base}?keys=fw_state,fw_error,current_fw_title,current_fw_version&startTs=0&endTs=10000&limit=20"
            ))
            .await
            .ok();
        (h["fw_state"].as_array().map(Vec::len) == Some(5)).then_some(h)
    })
    .await;
    let states: Vec<(i64, Value)> = series(&history, "fw_state").into_iter().rev().collect();
    assert_eq!(
        states,
        [
            (1000, json!("DOWNLOADING")),
            (2000, json!("DOWNLOADED")),
            (3000, json!("FAILED")),
            (4000, json!("VERIFIED")),
            (5000, json!("UPDATED")),
        ]
    );
    assert_eq!(
        series(&history, "fw_error"),
        [
            (4000, json!("")),
            (3000, json!("Checksum verification failed!"))
        ]
    );
    assert_eq!(
        series(&history, "current_fw_version"),
        [(5000, json!("1.0")), (1000, json!("v0"))]
    );
    let latest = api
        .get(&format!("{base}?keys=fw_state,current_fw_title"))
        .await
        .ok();
    assert_eq!(series(&latest, "fw_state")[0].1, "UPDATED");
    assert_eq!(series(&latest, "current_fw_title")[0].1, "fw");
    c.client.disconnect().await.ok();
}

crate::both_backends!(
    profile_assignment,
    attributes_follow_assignment,
    profile_rollout_pages,
    device_reported_states
);
