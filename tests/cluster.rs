//! Two real `ferroboard serve` processes sharing one PostgreSQL database and one Redis (started by
//! the test): server→device traffic crosses nodes, the newest session wins across nodes, a credentials
//! change closes the device's session on the other node, each node keeps serving its own devices
//! while Redis is down, cross-node delivery resumes after, and an RPC requested during the outage
//! reaches the device on the other node once Redis is back; an RPC received on one node is answered
//! from the device's next session on the other; a device behind a gateway on one node gets shared
//! attributes and RPC from the other; a firmware assignment made through one node reaches the device
//! on the other as fw_* attributes.

mod common;
#[path = "cluster/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{Cluster, Device, Node, Rest, WAIT, metric, wait_health};
use rumqttc::QoS;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_delivery_takeover_and_redis_outage() {
    let mut cluster = Cluster::start().await;
    let rest_a = Rest::login(cluster.a()).await;
    let rest_b = Rest::login(cluster.b()).await;
    let (id, token) = rest_a.device().await;

    // a. A shared attribute saved through A reaches the device connected to B.
    let mut dev = Device::connect(cluster.b(), &token).await;
    dev.subscribe("v1/devices/me/attributes").await;
    let attrs = json!({"target": 21, "mode": "eco"});
    rest_a.save_shared(&id, attrs.clone()).await;
    let (_, pushed) = dev
        .publish_on("v1/devices/me/attributes", WAIT)
        .await
        .expect("shared attributes pushed across nodes");
    assert_eq!(pushed, attrs, "exactly the saved keys");

    // b. An attribute request on B sees the SHARED attribute saved through A.
    dev.subscribe("v1/devices/me/attributes/response/+").await;
    dev.publish(
        "v1/devices/me/attributes/request/1",
        QoS::AtLeastOnce,
        json!({"sharedKeys": "target,mode"}),
    )
    .await;
    let (topic, response) = dev
        .publish_on("v1/devices/me/attributes/response/", WAIT)
        .await
        .expect("attribute response");
    assert_eq!(topic, "v1/devices/me/attributes/response/1");
    assert_eq!(response, json!({"shared": attrs}));

    // d. The same device on A, then on B: the session on A is closed.
    let (_, token2) = rest_a.device().await;
    let mut on_a = Device::connect(cluster.a(), &token2).await;
    let mut on_b = Device::connect(cluster.b(), &token2).await;
    let why = on_a.closed().await;
    eprintln!("session on A closed after the take-over on B: {why}");
    on_b.telemetry(json!({"after_takeover": 1})).await;

    // d2. Credentials changed through A close the device's session on B; the new token connects.
    let (id4, token4) = rest_a.device().await;
    let mut on_b4 = Device::connect(cluster.b(), &token4).await;
    on_b4.telemetry(json!({"before_change": 1})).await;
    let new_token = format!("changed-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = rest_a
        .post(
            "/api/device/credentials",
            json!({
                "deviceId": {"entityType": "DEVICE", "id": id4},
                "credentialsType": "ACCESS_TOKEN",
                "credentialsId": new_token,
            }),
        )
        .await;
    assert_eq!(status, 200, "credentials change: {body}");
    let why = on_b4.closed().await;
    eprintln!("session on B closed after the credentials change on A: {why}");
    let mut renewed = Device::connect(cluster.b(), &new_token).await;
    renewed.telemetry(json!({"after_change": 1})).await;

    // e. Redis down: each node serves its own devices and reports DEGRADED.
    let (id3, token3) = rest_a.device().await;
    let mut dev_a = Device::connect(cluster.a(), &token3).await;
    dev_a.subscribe("v1/devices/me/attributes").await;
    cluster.stop_redis();
    wait_health(&cluster, "DOWN", "DEGRADED").await;
    dev.telemetry(json!({"during_outage": 1})).await;
    dev_a.telemetry(json!({"during_outage": 2})).await;
    rest_b.save_shared(&id, json!({"local_b": 1})).await;
    let (_, pushed) = dev
        .publish_on("v1/devices/me/attributes", WAIT)
        .await
        .expect("node B pushes to its own device without Redis");
    assert_eq!(pushed, json!({"local_b": 1}));
    rest_a.save_shared(&id3, json!({"local_a": 1})).await;
    let (_, pushed) = dev_a
        .publish_on("v1/devices/me/attributes", WAIT)
        .await
        .expect("node A pushes to its own device without Redis");
    assert_eq!(pushed, json!({"local_a": 1}));

    // f. Redis back on the same port: cross-node delivery resumes within 10 s.
    cluster.start_redis().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut round = 0;
    loop {
        round += 1;
        let attrs = json!({ "round": round });
        rest_a.save_shared(&id, attrs.clone()).await;
        if let Some((_, pushed)) = dev
            .publish_on("v1/devices/me/attributes", Duration::from_millis(300))
            .await
        {
            assert_eq!(pushed, attrs);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not resume within 10 s of Redis coming back"
        );
    }
    eprintln!("cross-node delivery resumed after {round} attempt(s)");
    wait_health(&cluster, "UP", "UP").await;
}

/// One two-way RPC from REST on A to the device on B; returns the REST answer.
async fn rpc_round_trip(rest_a: &Rest, dev: &mut Device, id: &str, n: u64) -> (u16, Value) {
    let path = format!("/api/plugins/rpc/twoway/{id}");
    let body = json!({"method": "m", "params": {"n": n}, "timeout": 5000});
    let call = rest_a.post(&path, body);
    let device_side = async {
        let (topic, request) = dev
            .publish_on("v1/devices/me/rpc/request/", WAIT)
            .await
            .expect("RPC request reaches the device on B");
        assert_eq!(request["method"], "m", "{request}");
        assert_eq!(request["params"]["n"], n, "{request}");
        let request_id = topic.rsplit('/').next().expect("request id").to_owned();
        dev.publish(
            &format!("v1/devices/me/rpc/response/{request_id}"),
            QoS::AtLeastOnce,
            json!({"ok": true, "n": n}),
        )
        .await;
    };
    let (answer, ()) = tokio::join!(call, device_side);
    answer
}

/// REST on A, the device on `device_node`, subscribed to RPC requests at `qos`.
async fn rpc_setup(cluster: &Cluster, device_node: &Node, qos: QoS) -> (Rest, Device, String) {
    let rest_a = Rest::login(cluster.a()).await;
    let (id, token) = rest_a.device().await;
    let mut dev = Device::connect(device_node, &token).await;
    dev.subscribe_qos("v1/devices/me/rpc/request/+", qos).await;
    (rest_a, dev, id)
}

// c. Two-way RPC through REST on A, answered by the device on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_rpc_across_nodes() {
    let cluster = Cluster::start().await;
    let (rest_a, mut dev, id) = rpc_setup(&cluster, cluster.b(), QoS::AtLeastOnce).await;
    let (status, body) = rpc_round_trip(&rest_a, &mut dev, &id, 1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ok": true, "n": 1}));
}

// g. A two-way RPC requested through A while Redis is down (its publish fails, so the device on B
// misses it) is re-offered when the bus recovers: the device answers and the caller gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_requested_during_redis_outage_is_delivered_after_recovery() {
    let mut cluster = Cluster::start().await;
    let (rest_a, mut dev, id) = rpc_setup(&cluster, cluster.b(), QoS::AtLeastOnce).await;
    cluster.stop_redis();
    wait_health(&cluster, "DOWN", "DEGRADED").await;
    const FAILURES: &str = "ferroboard_bus_publish_failures_total";
    let failures_before = metric(cluster.a(), FAILURES).await;

    let path = format!("/api/plugins/rpc/twoway/{id}");
    let body = json!({"method": "outage", "params": {"n": 7}, "timeout": 20000});
    let call = rest_a.post(&path, body);
    let recovery = async {
        // The request was dispatched on A and its publish to Redis failed.
        common::eventually("the RPC's publish failed on A", WAIT, || async {
            (metric(cluster.a(), FAILURES).await > failures_before).then_some(())
        })
        .await;
        assert!(
            dev.publish_on("v1/devices/me/rpc/request/", Duration::ZERO)
                .await
                .is_none(),
            "the device on B got the request without Redis"
        );
        cluster.start_redis().await;
        let (topic, request) = dev
            .publish_on("v1/devices/me/rpc/request/", Duration::from_secs(15))
            .await
            .expect("the request reaches the device on B after Redis is back");
        assert_eq!(request, json!({"method": "outage", "params": {"n": 7}}));
        let request_id = topic.rsplit('/').next().expect("request id").to_owned();
        dev.publish(
            &format!("v1/devices/me/rpc/response/{request_id}"),
            QoS::AtLeastOnce,
            json!({"answered": 7}),
        )
        .await;
    };
    let ((status, answer), ()) = tokio::join!(call, recovery);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"answered": 7}));
    // The next request the device sees is a new one, not a copy of the first.
    let (status, body) = rpc_round_trip(&rest_a, &mut dev, &id, 8).await;
    assert_eq!(status, 200, "{body}");
}

// h. The request id belongs to the device, on every node: a request received by the device's
// session on one node is answered from its next session on the other node, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_answered_from_a_session_on_the_other_node() {
    let cluster = Cluster::start().await;
    let rest_a = Rest::login(cluster.a()).await;
    let (id, token) = rest_a.device().await;
    let path = format!("/api/plugins/rpc/twoway/{id}");
    for (n, (receiving, answering)) in [(cluster.b(), cluster.a()), (cluster.a(), cluster.b())]
        .into_iter()
        .enumerate()
    {
        let mut receiver = Device::connect(receiving, &token).await;
        receiver
            .subscribe_qos("v1/devices/me/rpc/request/+", QoS::AtLeastOnce)
            .await;
        let body = json!({"method": "hop", "params": {"n": n}, "timeout": 20000});
        let call = rest_a.post(&path, body);
        let device_side = async {
            let (topic, request) = receiver
                .publish_on("v1/devices/me/rpc/request/", WAIT)
                .await
                .expect("RPC request reaches the device");
            assert_eq!(request["params"]["n"], n, "{request}");
            let request_id = topic.rsplit('/').next().expect("request id").to_owned();
            // A new session of the device, on the other node, answers.
            let answerer = Device::connect(answering, &token).await;
            answerer
                .publish(
                    &format!("v1/devices/me/rpc/response/{request_id}"),
                    QoS::AtLeastOnce,
                    json!({"answered_on": answering.name, "n": n}),
                )
                .await;
            answerer
        };
        let ((status, answer), _answerer) = tokio::join!(call, device_side);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, json!({"answered_on": answering.name, "n": n}));
    }
}

/// Two-way RPC round trip REST(A) → device(B) → REST(A), sequential; prints p50/p99.
/// `cargo test --release --test cluster -- --ignored --nocapture rpc_round_trip_latency`
/// (`RPC_ROUNDS` sets the count, 200 by default; `RPC_SAME_NODE=1` connects the device to A,
/// for the single-node baseline; `RPC_SUB_QOS=0` subscribes at QoS 0). At QoS 1 the device's
/// PUBACK is followed by its response, and rumqttc (no TCP_NODELAY) holds the response back by
/// Nagle until the server's delayed ACK (~40 ms): that is the client, not the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn rpc_round_trip_latency() {
    let rounds: u64 = std::env::var("RPC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let same_node = std::env::var("RPC_SAME_NODE").is_ok_and(|v| v == "1");
    let cluster = Cluster::start().await;
    let device_node = if same_node { cluster.a() } else { cluster.b() };
    let qos = match std::env::var("RPC_SUB_QOS").as_deref() {
        Ok("0") => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    };
    let (rest_a, mut dev, id) = rpc_setup(&cluster, device_node, qos).await;
    for n in 0..10 {
        let (status, body) = rpc_round_trip(&rest_a, &mut dev, &id, n).await;
        assert_eq!(status, 200, "warm-up: {body}");
    }
    let mut samples = Vec::new();
    for n in 0..rounds {
        let started = Instant::now();
        let (status, body) = rpc_round_trip(&rest_a, &mut dev, &id, n).await;
        samples.push(started.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    samples.sort();
    let pick = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    println!(
        "RPC round trip REST(a) -> device({}, {qos:?}) -> REST(a), n={rounds}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        device_node.name,
        pick(0.50),
        pick(0.90),
        pick(0.99),
        pick(1.0)
    );
}

// i. HTTP long polls on B are reached from A, and take nothing over: a shared attribute saved
// through A ends an attribute poll on B (and reaches the device's MQTT session on A); a two-way
// RPC called through A ends an RPC poll on B, and the device's HTTP answer on B completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_long_polls_across_nodes() {
    let cluster = Cluster::start().await;
    let rest_a = Rest::login(cluster.a()).await;
    let (id, token) = rest_a.device().await;
    let mut mqtt_a = Device::connect(cluster.a(), &token).await;
    mqtt_a.subscribe("v1/devices/me/attributes").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let on_b = format!("{}/api/v1/{token}", cluster.b().http);
    let poll_open_on_b = || async {
        common::eventually("a long poll open on B", WAIT, || async {
            (metric(cluster.b(), "ferroboard_http_polls").await == 1.0).then_some(())
        })
        .await;
    };

    let poll = http
        .get(format!("{on_b}/attributes/updates?timeout=20000"))
        .send();
    let save = async {
        poll_open_on_b().await;
        rest_a.save_shared(&id, json!({"mode": "away"})).await;
    };
    let (answer, ()) = tokio::join!(poll, save);
    let answer = answer.expect("attribute poll");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.expect("JSON"),
        json!({"mode": "away"})
    );
    let (_, pushed) = mqtt_a
        .publish_on("v1/devices/me/attributes", WAIT)
        .await
        .expect("the MQTT session on A got the update too");
    assert_eq!(pushed, json!({"mode": "away"}));

    let path = format!("/api/plugins/rpc/twoway/{id}");
    let call = async {
        poll_open_on_b().await;
        rest_a
            .post(
                &path,
                json!({"method": "ping", "params": {"n": 3}, "timeout": 10000}),
            )
            .await
    };
    let device_side = async {
        let request: Value = http
            .get(format!("{on_b}/rpc?timeout=20000"))
            .send()
            .await
            .expect("RPC poll")
            .json()
            .await
            .expect("RPC JSON");
        assert_eq!(request["method"], "ping", "{request}");
        assert_eq!(request["params"]["n"], 3, "{request}");
        let reply = http
            .post(format!("{on_b}/rpc/{}", request["id"]))
            .body(r#"{"pong": 3}"#)
            .send()
            .await
            .expect("RPC reply");
        assert_eq!(reply.status(), 200);
    };
    let ((status, body), ()) = tokio::join!(call, device_side);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"pong": 3}));
    // The device's MQTT session on A was not taken over by the polls on B.
    mqtt_a.telemetry(json!({"still_connected": 1})).await;
}

/// A gateway on B serves a device behind it: a shared attribute saved through A and a two-way RPC
/// called through A reach the gateway, wrapped with the device's name, and the gateway's answer
/// (matched by device and id) completes the call on A. Then the device connects directly to A:
/// its session behind the gateway on B ends, and RPC goes to A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_devices_across_nodes() {
    let cluster = Cluster::start().await;
    let rest_a = Rest::login(cluster.a()).await;
    let gw_name = format!("cluster-gw-{}", uuid::Uuid::new_v4().simple());
    let (status, gw) = rest_a
        .post(
            "/api/device",
            json!({"name": gw_name, "additionalInfo": {"gateway": true}}),
        )
        .await;
    assert_eq!(status, 200, "create gateway: {gw}");
    let gw_id = gw["id"]["id"].as_str().expect("id").to_owned();
    let (_, creds) = rest_a
        .get(&format!("/api/device/{gw_id}/credentials"))
        .await;
    let gw_token = creds["credentialsId"].as_str().expect("token").to_owned();
    let mut gw = Device::connect(cluster.b(), &gw_token).await;
    gw.subscribe("v1/gateway/attributes").await;
    gw.subscribe("v1/gateway/rpc").await;
    let name = format!("behind-{}", uuid::Uuid::new_v4().simple());
    gw.publish(
        "v1/gateway/connect",
        QoS::AtLeastOnce,
        json!({"device": name}),
    )
    .await;
    gw.expect("PUBACK of connect", |p| {
        matches!(p, rumqttc::Packet::PubAck(_)).then_some(())
    })
    .await;
    let (status, found) = rest_a
        .get(&format!("/api/tenant/devices?deviceName={name}"))
        .await;
    assert_eq!(status, 200, "created before the PUBACK: {found}");
    let id = found["id"]["id"].as_str().expect("id").to_owned();

    rest_a.save_shared(&id, json!({"target": 3})).await;
    let (_, pushed) = gw
        .publish_on("v1/gateway/attributes", WAIT)
        .await
        .expect("shared attribute reaches the gateway on B");
    assert_eq!(pushed, json!({"device": name, "data": {"target": 3}}));

    let path = format!("/api/plugins/rpc/twoway/{id}");
    let call = rest_a.post(&path, json!({"method": "hop", "params": {"n": 1}}));
    let gateway_side = async {
        let (_, request) = gw
            .publish_on("v1/gateway/rpc", WAIT)
            .await
            .expect("RPC reaches the gateway on B");
        assert_eq!(request["device"], json!(name), "{request}");
        assert_eq!(request["data"]["method"], "hop", "{request}");
        let reply = json!({"device": name, "id": request["data"]["id"], "data": {"hopped": true}});
        gw.publish("v1/gateway/rpc", QoS::AtLeastOnce, reply).await;
    };
    let ((status, answer), ()) = tokio::join!(call, gateway_side);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"hopped": true}));

    // One session per device across nodes: the direct connection on A takes the device over.
    let (_, creds) = rest_a.get(&format!("/api/device/{id}/credentials")).await;
    let token = creds["credentialsId"].as_str().expect("token").to_owned();
    let mut direct = Device::connect(cluster.a(), &token).await;
    direct.subscribe("v1/devices/me/rpc/request/+").await;
    let call = rest_a.post(
        &path,
        json!({"method": "direct", "params": {}, "timeout": 20000}),
    );
    let device_side = async {
        let (topic, request) = direct
            .publish_on("v1/devices/me/rpc/request/", WAIT)
            .await
            .expect("RPC reaches the direct session on A");
        assert_eq!(request["method"], "direct", "{request}");
        let request_id = topic.rsplit('/').next().expect("id").to_owned();
        direct
            .publish(
                &format!("v1/devices/me/rpc/response/{request_id}"),
                QoS::AtLeastOnce,
                json!({"direct": true}),
            )
            .await;
    };
    let ((status, answer), ()) = tokio::join!(call, device_side);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"direct": true}));
}

// j. A firmware assigned through A: its fw_* attributes reach the device connected to B, and
// unassigning it through A pushes their deletion there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_assignment_pushed_across_nodes() {
    let cluster = Cluster::start().await;
    let rest_a = Rest::login(cluster.a()).await;
    let (id, token) = rest_a.device().await;
    let mut dev = Device::connect(cluster.b(), &token).await;
    dev.subscribe("v1/devices/me/attributes").await;
    let (_, profile) = rest_a.get("/api/deviceProfileInfo/default").await;
    let (status, package) = rest_a
        .post(
            "/api/otaPackage",
            json!({"title": "cluster-fw", "version": "3.1", "type": "FIRMWARE", "usesUrl": true,
                   "url": "https://example.com/cluster-fw.bin", "deviceProfileId": profile["id"]}),
        )
        .await;
    assert_eq!(status, 200, "{package}");
    let (_, mut device) = rest_a.get(&format!("/api/device/{id}")).await;
    device["firmwareId"] = package["id"].clone();
    let (status, body) = rest_a.post("/api/device", device.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (_, pushed) = dev
        .publish_on("v1/devices/me/attributes", WAIT)
        .await
        .expect("fw_* attributes pushed across nodes");
    assert_eq!(
        pushed,
        json!({"fw_title": "cluster-fw", "fw_version": "3.1", "fw_tag": "cluster-fw 3.1",
               "fw_url": "https://example.com/cluster-fw.bin"})
    );
    device["firmwareId"] = Value::Null;
    device["version"] = body["version"].clone();
    let (status, body) = rest_a.post("/api/device", device).await;
    assert_eq!(status, 200, "{body}");
    let (_, pushed) = dev
        .publish_on("v1/devices/me/attributes", WAIT)
        .await
        .expect("the deletion pushed across nodes");
    let mut deleted: Vec<String> = serde_json::from_value(pushed["deleted"].clone()).expect("keys");
    deleted.sort();
    assert_eq!(deleted, ["fw_tag", "fw_title", "fw_url", "fw_version"]);
}
