//! Requests that wait: long polls for attribute updates and server-side RPCs, and client-side
//! RPCs — answered, timed out, beside an MQTT session, and cleaned up when the client goes away.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::common::{TestApp, eventually};
use crate::support::{Api, TELEMETRY};
use crate::{Http, WAIT, clients, polls_open};

pub async fn an_attribute_update_ends_the_long_poll(app: &TestApp) {
    let (id, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    let api = Api::tenant(app).await;
    let poll = dev.get("attributes/updates?timeout=20000");
    let update = async {
        polls_open(app, 1).await;
        api.post(
            &format!("{TELEMETRY}/{id}/SHARED_SCOPE"),
            json!({"target": 22}),
        )
        .await
        .ok();
    };
    let (answer, ()) = tokio::join!(poll, update);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json(), json!({"target": 22}));
    polls_open(app, 0).await;

    // A deletion is an update too.
    let poll = dev.get("attributes/updates");
    let delete = async {
        polls_open(app, 1).await;
        api.delete(&format!("{TELEMETRY}/{id}/SHARED_SCOPE?keys=target"))
            .await
            .ok();
    };
    let (answer, ()) = tokio::join!(poll, delete);
    assert_eq!(answer.json(), json!({"deleted": ["target"]}));
}

/// A two-way RPC from REST; returns its answer (status, body).
async fn call(api: &Api, device: &str, method: &str, timeout_ms: u64) -> (u16, serde_json::Value) {
    let resp = api
        .post(
            &format!("/api/plugins/rpc/twoway/{device}"),
            json!({"method": method, "params": {"n": 1}, "timeout": timeout_ms}),
        )
        .await;
    let body = if resp.text.is_empty() {
        serde_json::Value::Null
    } else {
        resp.json()
    };
    (resp.status, body)
}

pub async fn a_server_side_rpc_is_delivered_and_answered(app: &TestApp) {
    let (id, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    let api = Api::tenant(app).await;
    for round in 0..2 {
        let caller = async {
            polls_open(app, 1).await;
            call(&api, &id.to_string(), "setMode", 10_000).await
        };
        let device_side = async {
            let request = dev.get("rpc?timeout=20000").await;
            assert_eq!(request.status, 200, "{}", request.text);
            let request = request.json();
            assert_eq!(
                request["id"],
                json!(round),
                "request ids count per device: {request}"
            );
            assert_eq!(request["method"], "setMode");
            assert_eq!(request["params"], json!({"n": 1}));
            let reply = dev
                .post(&format!("rpc/{}", request["id"]), r#"{"done": true}"#)
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        };
        let ((status, body), ()) = tokio::join!(caller, device_side);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"done": true}));
    }
    // An answer to an id nobody waits for is accepted and dropped.
    assert_eq!(dev.post("rpc/999", "{}").await.status, 200);
}

pub async fn an_rpc_requested_before_the_poll_is_delivered_to_it(app: &TestApp) {
    let (id, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    let api = Api::tenant(app).await;
    let device_id = id.to_string();
    let caller = call(&api, &device_id, "early", 15_000);
    let device_side = async {
        // The caller waits (nothing to deliver to yet) when the device polls.
        eventually("the RPC waits for the device", WAIT, || async {
            let waiting = !clients::state(app).services.rpc.waiters.is_empty();
            waiting.then_some(())
        })
        .await;
        let request = dev.get("rpc?timeout=10000").await;
        assert_eq!(request.status, 200, "{}", request.text);
        let request = request.json();
        assert_eq!(request["method"], "early", "{request}");
        dev.post(
            &format!("rpc/{}", request["id"]),
            r#"{"late": "but there"}"#,
        )
        .await;
    };
    let ((status, body), ()) = tokio::join!(caller, device_side);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"late": "but there"}));
}

pub async fn long_polls_time_out_with_408(app: &TestApp) {
    let (_, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    for path in ["rpc?timeout=300", "attributes/updates?timeout=300"] {
        let started = Instant::now();
        let answer = dev.get(path).await;
        let took = started.elapsed();
        assert_eq!(answer.status, 408, "{path}: {}", answer.text);
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{path} answered after {took:?}"
        );
    }
    polls_open(app, 0).await;
}

pub async fn a_long_poll_leaves_the_mqtt_session_alone(app: &TestApp) {
    let (id, token) = clients::create_device(app).await;
    let mut mqtt = clients::v3(app, Some(&token), 30);
    clients::v3_connack(&mut mqtt).await.expect("CONNACK");
    mqtt.client
        .subscribe("v1/devices/me/attributes", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    clients::wait_for(&mut mqtt.events, "SUBACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => Some(()),
        _ => None,
    })
    .await;
    let dev = Http::new(app, &token);
    let api = Api::tenant(app).await;
    let poll = dev.get("attributes/updates?timeout=20000");
    let update = async {
        polls_open(app, 1).await;
        api.post(
            &format!("{TELEMETRY}/{id}/SHARED_SCOPE"),
            json!({"both": 1}),
        )
        .await
        .ok();
    };
    let (answer, ()) = tokio::join!(poll, update);
    assert_eq!(answer.json(), json!({"both": 1}));
    // The MQTT session got the same update and is still open.
    let pushed = clients::wait_for(&mut mqtt.events, "attribute push", |ev| match ev {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
            Some(serde_json::from_slice::<serde_json::Value>(&p.payload).expect("JSON"))
        }
        _ => None,
    })
    .await;
    assert_eq!(pushed, json!({"both": 1}));
    assert!(clients::state(app).sessions.is_connected(id));
    // And it still delivers telemetry: the HTTP requests took nothing over.
    mqtt.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"x":1}"#,
        )
        .await
        .expect("publish");
    clients::v3_puback(&mut mqtt).await;
}

pub async fn a_client_that_goes_away_leaves_no_poll_behind(app: &TestApp) {
    let (_, token) = clients::create_device(app).await;
    let addr = app.http.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!("GET /api/v1/{token}/rpc?timeout=60000 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    sock.write_all(request.as_bytes()).await.expect("write");
    polls_open(app, 1).await;
    drop(sock);
    // The poll leaves the registry and frees its slot well before its 60 s.
    polls_open(app, 0).await;
    let devices = clients::state(app).sessions.devices();
    assert!(devices.is_empty(), "registry entries left: {devices:?}");
}

pub async fn client_side_rpc_is_answered_by_the_rules(app: &TestApp) {
    let (_, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    let before = ferroboard::domain::now_ms();
    let answer = dev
        .post("rpc", r#"{"method": "getCurrentTime", "params": {}}"#)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let time = answer.json()["time"].as_i64().expect("time in the reply");
    assert!(time >= before, "{time} < {before}");
    polls_open(app, 0).await;
}

pub async fn a_credentials_change_ends_the_long_poll(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, _) = api
        .create_device(json!({"name": format!("poll-{}", uuid::Uuid::new_v4().simple())}))
        .await;
    let token = api.token_of(&id).await;
    let dev = Http::new(app, &token);
    let poll = dev.get("rpc?timeout=20000");
    let change = async {
        polls_open(app, 1).await;
        api.post(
            "/api/device/credentials",
            json!({
                "deviceId": {"entityType": "DEVICE", "id": id},
                "credentialsType": "ACCESS_TOKEN",
                "credentialsId": format!("renewed-{}", uuid::Uuid::new_v4().simple()),
            }),
        )
        .await
        .ok();
    };
    let (answer, ()) = tokio::join!(poll, change);
    assert_eq!(answer.status, 403, "{}", answer.text);
    polls_open(app, 0).await;
    // The old token is refused from now on.
    dev.get("attributes").await.error(401, 10);
}

/// The status of a persistent RPC, once it is `status`.
async fn rpc_with_status(api: &Api, rpc: &str, status: &str) -> serde_json::Value {
    eventually(&format!("RPC {rpc} is {status}"), WAIT, || async {
        let body = api.get(&format!("/api/rpc/persistent/{rpc}")).await.ok();
        (body["status"] == status).then_some(body)
    })
    .await
}

pub async fn a_persistent_rpc_is_delivered_to_the_poll_and_answered(app: &TestApp) {
    let (id, token) = clients::create_device(app).await;
    let dev = Http::new(app, &token);
    let api = Api::tenant(app).await;
    let created = api
        .post(
            &format!("/api/rpc/twoway/{id}"),
            json!({"method": "setGpio", "params": {"pin": 7}, "persistent": true, "timeout": 60000}),
        )
        .await
        .ok();
    let rpc = created["rpcId"].as_str().expect("rpcId").to_owned();
    rpc_with_status(&api, &rpc, "QUEUED").await;
    // Stored before the device polled: the poll loads it.
    let request = dev.get("rpc?timeout=10000").await;
    assert_eq!(request.status, 200, "{}", request.text);
    let request = request.json();
    assert_eq!(request["method"], "setGpio", "{request}");
    assert_eq!(request["params"], json!({"pin": 7}));
    rpc_with_status(&api, &rpc, "DELIVERED").await;
    let reply = dev
        .post(&format!("rpc/{}", request["id"]), r#"{"ok": true}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let done = rpc_with_status(&api, &rpc, "SUCCESSFUL").await;
    assert_eq!(done["response"], json!({"ok": true}));
    // Delivered once: the next poll has nothing.
    assert_eq!(dev.get("rpc?timeout=300").await.status, 408);
}
