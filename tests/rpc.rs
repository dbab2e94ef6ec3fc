//! Server-side RPC over REST and persistent RPC against the real server: an MQTT 3.1.1 device answers
//! two-way calls, one-way calls are delivered, offline devices time out (v1 409 / v2 504), calls are
//! held until the device subscribes, persistent RPCs are stored, sent, delivered, answered, listed,
//! deleted, survive a restart, and time out and fail without PUBACKs (a disconnect alone spends no
//! retry and does not re-send a delivered request); a request offered again reaches the device
//! once; client-side getCurrentTime is answered by the default rules.

mod common;
#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{Backend, TestApp, eventually, spawn_app, spawn_app_with};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, mqttbytes::v4 as m4};
use serde_json::{Value, json};
use support::Api;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const REQUEST_FILTER: &str = "v1/devices/me/rpc/request/+";

/// A connected MQTT 3.1.1 device; publishes it receives arrive on `inbox`.
struct Device {
    client: AsyncClient,
    inbox: mpsc::UnboundedReceiver<Publish>,
    acks: mpsc::UnboundedReceiver<Packet>,
}

impl Device {
    async fn connect(app: &TestApp, token: &str) -> Self {
        let mut opts = MqttOptions::new(
            format!("c-{}", uuid::Uuid::new_v4().simple()),
            "127.0.0.1",
            app.mqtt_port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_credentials(token, "");
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (acks_tx, acks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                let sent = match event {
                    Event::Incoming(Packet::Publish(p)) => inbox_tx.send(p).is_ok(),
                    Event::Incoming(p) => acks_tx.send(p).is_ok(),
                    Event::Outgoing(_) => true,
                };
                if !sent {
                    break;
                }
            }
        });
        let mut device = Self {
            client,
            inbox,
            acks,
        };
        device
            .expect_ack("CONNACK", |p| matches!(p, Packet::ConnAck(_)))
            .await;
        device
    }

    async fn expect_ack(&mut self, what: &str, want: impl Fn(&Packet) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(p)) if want(&p) => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("connection closed while waiting for {what}"),
                Err(_) => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        self.expect_ack("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await;
    }

    async fn publish(&self, topic: &str, payload: Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .expect("publish");
    }

    async fn next_publish(&mut self) -> Publish {
        tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .expect("a publish in time")
            .expect("connection open")
    }
}

/// A raw MQTT 3.1.1 connection on rumqttc's codec: it acknowledges nothing by itself, so a test
/// decides whether (and when) the server gets a PUBACK.
struct Raw3 {
    sock: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    next_id: u16,
}

impl Raw3 {
    async fn connect(app: &TestApp, token: &str) -> Self {
        let sock = tokio::net::TcpStream::connect(("127.0.0.1", app.mqtt_port))
            .await
            .expect("tcp");
        let mut raw = Self {
            sock,
            buf: bytes::BytesMut::new(),
            next_id: 0,
        };
        let mut connect = m4::Connect::new(format!("raw-{}", uuid::Uuid::new_v4().simple()));
        connect.keep_alive = 30;
        connect.set_login(token, "");
        raw.send(|out| connect.write(out)).await;
        match raw.recv().await {
            m4::Packet::ConnAck(ack) => assert_eq!(ack.code, m4::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    async fn send(
        &mut self,
        encode: impl FnOnce(&mut bytes::BytesMut) -> Result<usize, rumqttc::mqttbytes::Error>,
    ) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        encode(&mut out).expect("encode");
        self.sock.write_all(&out).await.expect("write");
    }

    /// The next packet; panics on a closed connection or after `WAIT`.
    async fn recv(&mut self) -> m4::Packet {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match m4::read(&mut self.buf, 1 << 20) {
                Ok(p) => return p,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("undecodable packet from the server: {e:?}"),
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.sock.read(&mut chunk))
                .await
                .expect("server answered in time")
                .expect("read");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.next_id += 1;
        let mut sub = m4::Subscribe::new(filter, qos);
        sub.pkid = self.next_id;
        self.send(|out| sub.write(out)).await;
        match self.recv().await {
            m4::Packet::SubAck(ack) => assert_eq!(ack.pkid, sub.pkid),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn unsubscribe(&mut self, filter: &str) {
        self.next_id += 1;
        let mut unsub = m4::Unsubscribe::new(filter);
        unsub.pkid = self.next_id;
        self.send(|out| unsub.write(out)).await;
        match self.recv().await {
            m4::Packet::UnsubAck(ack) => assert_eq!(ack.pkid, unsub.pkid),
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH from the server, left unacknowledged.
    async fn next_publish(&mut self) -> Publish {
        match self.recv().await {
            m4::Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    async fn puback(&mut self, publish: &Publish) {
        let ack = m4::PubAck::new(publish.pkid);
        self.send(|out| ack.write(out)).await;
    }

    /// Publishes at QoS 0 (nothing to wait for).
    async fn publish(&mut self, topic: &str, payload: Value) {
        let p = m4::Publish::new(topic, QoS::AtMostOnce, payload.to_string());
        self.send(|out| p.write(out)).await;
    }
}

fn json_of(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).expect("JSON payload")
}

/// A new device over REST; returns (id, token).
async fn new_device(api: &Api) -> (String, String) {
    let name = format!("rpc-{}", uuid::Uuid::new_v4().simple());
    let (id, _) = api.create_device(json!({"name": name})).await;
    let token = api.token_of(&id).await;
    (id, token)
}

/// Runs a REST call in the background.
fn post_later(api: &Api, path: String, body: Value) -> tokio::task::JoinHandle<support::Resp> {
    let api = Api {
        http: api.http.clone(),
        base: api.base.clone(),
        token: api.token.clone(),
    };
    tokio::spawn(async move { api.post(&path, body).await })
}

/// Generates `sqlite::<name>` and `postgres::<name>` from `async fn <name>(Backend)`.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

backends!(
    twoway_rpc_is_answered_by_mqtt311_device,
    oneway_rpc_is_delivered,
    offline_device_times_out,
    rpc_waits_for_the_rpc_subscription,
    bad_requests_are_rejected,
    persistent_rpc_lifecycle,
    persistent_rpc_times_out_and_fails_without_puback,
    delivered_twoway_rpc_is_not_resent_after_disconnect,
    queued_rpc_waits_for_the_next_session_without_a_retry,
    persistent_oneway_rpc_at_qos0_is_delivered_when_written,
    persistent_rpc_survives_restart,
    persistent_rpc_expires,
    get_current_time_is_answered_by_default_rules,
    repeated_offers_reach_the_device_once,
);

async fn twoway_rpc_is_answered_by_mqtt311_device(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let mut device = Device::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER).await;

    let body = json!({"method": "getTemperature", "params": {"unit": "C"}, "timeout": 5000});
    let call = post_later(&api, format!("/api/plugins/rpc/twoway/{id}"), body);
    let request = device.next_publish().await;
    assert_eq!(
        request.topic, "v1/devices/me/rpc/request/0",
        "first id is 0"
    );
    assert_eq!(request.qos, QoS::AtLeastOnce);
    assert_eq!(
        json_of(&request),
        json!({"method": "getTemperature", "params": {"unit": "C"}})
    );
    device
        .publish("v1/devices/me/rpc/response/0", json!({"temperature": 21.5}))
        .await;
    let resp = call.await.expect("call task");
    assert_eq!(resp.ok(), json!({"temperature": 21.5}));

    // The second request gets the next id; a non-JSON reply is 406.
    let call = post_later(
        &api,
        format!("/api/rpc/twoway/{id}"),
        json!({"method": "m", "params": 1}),
    );
    let request = device.next_publish().await;
    assert_eq!(request.topic, "v1/devices/me/rpc/request/1");
    device
        .client
        .publish(
            "v1/devices/me/rpc/response/1",
            QoS::AtLeastOnce,
            false,
            "ok",
        )
        .await
        .expect("publish");
    assert_eq!(call.await.expect("call task").status, 406);
    app.shutdown().await;
}

async fn oneway_rpc_is_delivered(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let mut device = Device::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER).await;

    let resp = api
        .post(
            &format!("/api/rpc/oneway/{id}"),
            json!({"method": "setLed", "params": {"on": true}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(resp.text.is_empty(), "{}", resp.text);
    let request = device.next_publish().await;
    assert_eq!(
        json_of(&request),
        json!({"method": "setLed", "params": {"on": true}})
    );
    app.shutdown().await;
}

async fn offline_device_times_out(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.rpc.min_timeout_ms = 100).await;
    let api = Api::tenant(&app).await;
    let (id, _) = new_device(&api).await;
    for (path, status) in [("/api/plugins/rpc/twoway/", 409), ("/api/rpc/twoway/", 504)] {
        let started = Instant::now();
        let resp = api
            .post(
                &format!("{path}{id}"),
                json!({"method": "ping", "params": {}, "timeout": 300}),
            )
            .await;
        let elapsed = started.elapsed();
        resp.error(status, 2);
        assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
    app.shutdown().await;
}

async fn rpc_waits_for_the_rpc_subscription(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let mut device = Device::connect(&app, &token).await;
    let call = post_later(
        &api,
        format!("/api/plugins/rpc/twoway/{id}"),
        json!({"method": "held", "params": {}, "timeout": 8000}),
    );
    device.subscribe(REQUEST_FILTER).await;
    let request = device.next_publish().await;
    assert_eq!(json_of(&request)["method"], "held");
    let reply_topic = request.topic.replace("request", "response");
    device.publish(&reply_topic, json!("done")).await;
    assert_eq!(call.await.expect("call task").ok(), json!("done"));
    app.shutdown().await;
}

async fn bad_requests_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, _) = new_device(&api).await;
    let missing = uuid::Uuid::new_v4();
    let body = json!({"method": "m", "params": {}});
    api.post(&format!("/api/rpc/twoway/{missing}"), body.clone())
        .await
        .error(404, 32);
    api.post("/api/rpc/twoway/not-a-uuid", body.clone())
        .await
        .error(400, 31);
    api.post(&format!("/api/rpc/twoway/{id}"), json!({"params": {}}))
        .await
        .error(400, 31);
    let raw = api
        .raw(
            reqwest::Method::POST,
            &format!("/api/rpc/oneway/{id}"),
            "text/plain",
            b"{not json".to_vec(),
        )
        .await;
    raw.error(400, 31);
    api.get(&format!("/api/rpc/persistent/{missing}"))
        .await
        .error(404, 32);
    api.get(&format!(
        "/api/rpc/persistent/device/{id}?pageSize=10&page=0&rpcStatus=DELETED"
    ))
    .await
    .error(400, 31);
    app.shutdown().await;
}

/// Polls the stored RPC until its status is `status`; returns its JSON.
async fn rpc_with_status(api: &Api, rpc: &str, status: &str) -> Value {
    eventually(&format!("RPC {rpc} is {status}"), WAIT, || async {
        let body = api.get(&format!("/api/rpc/persistent/{rpc}")).await.ok();
        (body["status"] == status).then_some(body)
    })
    .await
}

async fn create_persistent(api: &Api, device: &str) -> String {
    let body = json!({
        "method": "setGpio", "params": {"pin": 7}, "persistent": true,
        "timeout": 60000, "additionalInfo": {"source": "test"}
    });
    let resp = api
        .post(&format!("/api/rpc/twoway/{device}"), body)
        .await
        .ok();
    resp["rpcId"].as_str().expect("rpcId").to_owned()
}

/// Connects, subscribes, answers the one persistent request; returns the request seen.
async fn answer_persistent(app: &TestApp, token: &str) -> Value {
    let mut device = Device::connect(app, token).await;
    device.subscribe(REQUEST_FILTER).await;
    let request = device.next_publish().await;
    let reply_topic = request.topic.replace("request", "response");
    device.publish(&reply_topic, json!({"ok": true})).await;
    json_of(&request)
}

async fn persistent_rpc_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let rpc = create_persistent(&api, &id).await;
    let queued = rpc_with_status(&api, &rpc, "QUEUED").await;
    assert_eq!(queued["id"], json!({"entityType": "RPC", "id": rpc}));
    assert_eq!(queued["deviceId"]["id"], id.as_str());
    assert_eq!(queued["request"]["body"]["params"], "{\"pin\":7}");
    assert_eq!(queued["additionalInfo"], json!({"source": "test"}));

    // Published at QoS 1: SENT until the device's PUBACK, then DELIVERED until its reply.
    let mut device = Raw3::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER, QoS::AtLeastOnce).await;
    let request = device.next_publish().await;
    assert_eq!(request.qos, QoS::AtLeastOnce);
    assert_eq!(
        json_of(&request),
        json!({"method": "setGpio", "params": {"pin": 7}})
    );
    rpc_with_status(&api, &rpc, "SENT").await;
    device.puback(&request).await;
    rpc_with_status(&api, &rpc, "DELIVERED").await;
    let reply_topic = request.topic.replace("request", "response");
    device.publish(&reply_topic, json!({"ok": true})).await;
    let done = rpc_with_status(&api, &rpc, "SUCCESSFUL").await;
    assert_eq!(done["response"], json!({"ok": true}));
    assert_eq!(stored_rpc(&app, &rpc).await.retries, 0);

    let list = api
        .get(&format!(
            "/api/rpc/persistent/device/{id}?pageSize=10&page=0&rpcStatus=SUCCESSFUL&sortProperty=expirationTime&sortOrder=DESC"
        ))
        .await
        .ok();
    assert_eq!(list["totalElements"], 1);
    assert_eq!(list["data"][0]["id"]["id"], rpc.as_str());
    let none = api
        .get(&format!(
            "/api/rpc/persistent/device/{id}?pageSize=10&page=0&rpcStatus=QUEUED"
        ))
        .await
        .ok();
    assert_eq!(none["totalElements"], 0);

    api.delete(&format!("/api/rpc/persistent/{rpc}")).await.ok();
    api.get(&format!("/api/rpc/persistent/{rpc}"))
        .await
        .error(404, 32);
    api.delete(&format!("/api/rpc/persistent/{rpc}"))
        .await
        .error(404, 32);
    app.shutdown().await;
}

/// The stored RPC, read from the running app's store (the REST JSON has no attempt counter).
async fn stored_rpc(app: &TestApp, rpc: &str) -> ferroboard::storage::Rpc {
    let state = &app.app.as_ref().expect("running").state;
    let id = uuid::Uuid::parse_str(rpc).expect("RPC id");
    state
        .services
        .store
        .get_rpc(None, id)
        .await
        .expect("store")
        .expect("stored RPC")
}

/// A device that never PUBACKs: SENT, then TIMEOUT with one retry counted after the ack timeout;
/// the re-send is not acknowledged either, and with `"retries": 1` used up the RPC is FAILED.
async fn persistent_rpc_times_out_and_fails_without_puback(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.mqtt.ack_timeout_ms = 1500).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let mut device = Raw3::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER, QoS::AtLeastOnce).await;
    let body = json!({
        "method": "reboot", "params": {"delay": 1}, "persistent": true,
        "timeout": 60000, "retries": 1
    });
    let resp = api.post(&format!("/api/rpc/twoway/{id}"), body).await.ok();
    let rpc = resp["rpcId"].as_str().expect("rpcId").to_owned();

    let first = device.next_publish().await;
    assert_eq!(first.topic, "v1/devices/me/rpc/request/0");
    assert_eq!(first.qos, QoS::AtLeastOnce);
    // Without an RPC subscription the timed-out RPC waits (a live subscription gets it at once).
    device.unsubscribe(REQUEST_FILTER).await;
    rpc_with_status(&api, &rpc, "SENT").await;
    assert_eq!(stored_rpc(&app, &rpc).await.retries, 0);
    rpc_with_status(&api, &rpc, "TIMEOUT").await;
    assert_eq!(stored_rpc(&app, &rpc).await.retries, 1);

    device.subscribe(REQUEST_FILTER, QoS::AtLeastOnce).await;
    let second = device.next_publish().await;
    assert_eq!(second.topic, "v1/devices/me/rpc/request/1", "sent anew");
    assert_eq!(
        json_of(&second),
        json!({"method": "reboot", "params": {"delay": 1}})
    );
    rpc_with_status(&api, &rpc, "SENT").await;
    let failed = rpc_with_status(&api, &rpc, "FAILED").await;
    assert_eq!(failed["response"], Value::Null);
    assert_eq!(stored_rpc(&app, &rpc).await.retries, 1);
    app.shutdown().await;
}

/// Waits until the device is `active` (or not) as its device info tells. A session's end records
/// the disconnect after it has settled its RPCs, so inactive means that work is done.
async fn until_active(api: &Api, device: &str, active: bool) {
    eventually(&format!("device active = {active}"), WAIT, || async {
        let info = api.get(&format!("/api/device/info/{device}")).await.ok();
        (info["active"] == active).then_some(())
    })
    .await;
}

async fn create_with_retries(api: &Api, device: &str, method: &str, retries: i64) -> String {
    let body = json!({
        "method": method, "params": {}, "persistent": true, "timeout": 60000, "retries": retries
    });
    let resp = api
        .post(&format!("/api/rpc/twoway/{device}"), body)
        .await
        .ok();
    resp["rpcId"].as_str().expect("rpcId").to_owned()
}

/// A two-way RPC the device acknowledged stays DELIVERED when the device goes away without
/// answering (no retry spent, even with none allowed), and the device is not asked again: after
/// it reconnects, the first request it gets is one created while it was away.
async fn delivered_twoway_rpc_is_not_resent_after_disconnect(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let mut device = Raw3::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER, QoS::AtLeastOnce).await;
    until_active(&api, &id, true).await;
    let rpc = create_with_retries(&api, &id, "openValve", 0).await;
    let request = device.next_publish().await;
    assert_eq!(json_of(&request)["method"], "openValve");
    device.puback(&request).await;
    rpc_with_status(&api, &rpc, "DELIVERED").await;

    drop(device);
    until_active(&api, &id, false).await;
    let stored = stored_rpc(&app, &rpc).await;
    assert_eq!(stored.status.as_str(), "DELIVERED", "{stored:?}");
    assert_eq!(stored.retries, 0);

    let marker = create_with_retries(&api, &id, "marker", 0).await;
    rpc_with_status(&api, &marker, "QUEUED").await;
    let mut device = Raw3::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER, QoS::AtLeastOnce).await;
    let next = device.next_publish().await;
    assert_eq!(
        json_of(&next)["method"],
        "marker",
        "delivered RPC sent again"
    );
    // Request ids belong to the device: the delivered request still holds 0 for its answer.
    assert_eq!(next.topic, "v1/devices/me/rpc/request/1");
    device.puback(&next).await;
    rpc_with_status(&api, &marker, "DELIVERED").await;
    let stored = stored_rpc(&app, &rpc).await;
    assert_eq!(stored.status.as_str(), "DELIVERED", "{stored:?}");
    app.shutdown().await;
}

/// A persistent RPC that only waited in the session's queue (the device never subscribed to RPC)
/// goes back to QUEUED when the device disconnects, with no retry spent even with none allowed,
/// and reaches the device once it reconnects and subscribes.
async fn queued_rpc_waits_for_the_next_session_without_a_retry(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let device_id = uuid::Uuid::parse_str(&id).expect("device id");
    let mut device = Raw3::connect(&app, &token).await;
    device
        .subscribe("v1/devices/me/attributes", QoS::AtMostOnce)
        .await;
    until_active(&api, &id, true).await;
    let rpc = create_with_retries(&api, &id, "calibrate", 0).await;
    rpc_with_status(&api, &rpc, "QUEUED").await;
    // Offered straight through the bus (the rules' copy is ignored while held), then an attribute
    // push on the same ordered command channel: once the device has the push, the RPC waits in
    // the session's queue.
    let request = ferroboard::services::rpc::request_of(&stored_rpc(&app, &rpc).await);
    offer(&app, device_id, &request).await;
    let state = app.app.as_ref().expect("running").state.clone();
    let push = ferroboard::bus::Event::ToDevice {
        device: device_id,
        downlink: ferroboard::bus::Downlink::Attributes {
            payload: json!({"sync": 1}).to_string(),
        },
    };
    state.services.bus.publish(push).await.expect("local bus");
    let pushed = device.next_publish().await;
    assert_eq!(pushed.topic, "v1/devices/me/attributes");

    drop(device);
    until_active(&api, &id, false).await;
    let stored = stored_rpc(&app, &rpc).await;
    assert_eq!(stored.status.as_str(), "QUEUED", "{stored:?}");
    assert_eq!(stored.retries, 0);

    let mut device = Raw3::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER, QoS::AtLeastOnce).await;
    let request = device.next_publish().await;
    assert_eq!(json_of(&request)["method"], "calibrate");
    device.puback(&request).await;
    rpc_with_status(&api, &rpc, "DELIVERED").await;
    assert_eq!(stored_rpc(&app, &rpc).await.retries, 0);
    app.shutdown().await;
}

/// QoS 0 has no PUBACK: written means DELIVERED, with no SENT step; DELIVERED ends a one-way RPC.
async fn persistent_oneway_rpc_at_qos0_is_delivered_when_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let mut device = Raw3::connect(&app, &token).await;
    device.subscribe(REQUEST_FILTER, QoS::AtMostOnce).await;
    let body = json!({"method": "blink", "params": {}, "persistent": true, "timeout": 60000});
    let resp = api.post(&format!("/api/rpc/oneway/{id}"), body).await.ok();
    let rpc = resp["rpcId"].as_str().expect("rpcId").to_owned();
    let request = device.next_publish().await;
    assert_eq!(request.qos, QoS::AtMostOnce);
    assert_eq!(json_of(&request)["method"], "blink");
    rpc_with_status(&api, &rpc, "DELIVERED").await;
    app.shutdown().await;
}

async fn persistent_rpc_survives_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let rpc = create_persistent(&api, &id).await;
    rpc_with_status(&api, &rpc, "QUEUED").await;

    let running = app.app.take().expect("running");
    let config = running.state.config.clone();
    running.shutdown().await.expect("clean shutdown");
    let restarted = ferroboard::app::start(config).await.expect("restarts");
    app.http = format!("http://{}", restarted.http_addr);
    app.mqtt_port = restarted.mqtt_addr.port();
    app.app = Some(restarted);

    let api = Api::tenant(&app).await;
    rpc_with_status(&api, &rpc, "QUEUED").await;
    answer_persistent(&app, &token).await;
    rpc_with_status(&api, &rpc, "SUCCESSFUL").await;
    app.shutdown().await;
}

async fn persistent_rpc_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, _) = new_device(&api).await;
    let body = json!({
        "method": "late", "params": {}, "persistent": true,
        "expirationTime": ferroboard::domain::now_ms() + 300
    });
    let resp = api.post(&format!("/api/rpc/oneway/{id}"), body).await.ok();
    let rpc = resp["rpcId"].as_str().expect("rpcId");
    rpc_with_status(&api, rpc, "EXPIRED").await;
    app.shutdown().await;
}

async fn get_current_time_is_answered_by_default_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (_, token) = new_device(&api).await;
    let mut device = Device::connect(&app, &token).await;
    device.subscribe("v1/devices/me/rpc/response/+").await;
    let before = ferroboard::domain::now_ms();
    device
        .publish(
            "v1/devices/me/rpc/request/5",
            json!({"method": "getCurrentTime", "params": {}}),
        )
        .await;
    let reply = device.next_publish().await;
    assert_eq!(reply.topic, "v1/devices/me/rpc/response/5");
    let time = json_of(&reply)["time"].as_i64().expect("time in ms");
    assert!(
        time >= before && time <= ferroboard::domain::now_ms(),
        "{time}"
    );
    app.shutdown().await;
}

/// A non-persistent request for `device` as the bus carries it.
fn bus_request(method: &str, oneway: bool) -> ferroboard::bus::RpcRequest {
    ferroboard::bus::RpcRequest {
        rpc: uuid::Uuid::new_v4(),
        request_id: 0,
        method: method.to_owned(),
        params: "{}".to_owned(),
        oneway,
        persistent: false,
        expiration_time: ferroboard::domain::now_ms() + 60_000,
        traceparent: None,
    }
}

/// Offers the request to the device's session through the bus, as a re-offer does.
async fn offer(app: &TestApp, device: uuid::Uuid, request: &ferroboard::bus::RpcRequest) {
    let state = &app.app.as_ref().expect("running").state;
    let event = ferroboard::bus::Event::ToDevice {
        device,
        downlink: ferroboard::bus::Downlink::Rpc(request.clone()),
    };
    state.services.bus.publish(event).await.expect("local bus");
}

/// The same request offered twice (queued before the RPC subscription, then pending a reply, and a
/// one-way request after its delivery) reaches the device once; a copy of a delivered one-way
/// request is reported delivered to a caller waiting on it. Session commands run in order, so the
/// next request the device sees after the copies is the marker, not a duplicate.
async fn repeated_offers_reach_the_device_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = Api::tenant(&app).await;
    let (id, token) = new_device(&api).await;
    let device_id = uuid::Uuid::parse_str(&id).expect("device id");
    // The session is registered before the CONNACK.
    let mut device = Device::connect(&app, &token).await;
    let twoway = bus_request("twoway", false);
    offer(&app, device_id, &twoway).await;
    offer(&app, device_id, &twoway).await;
    device.subscribe(REQUEST_FILTER).await;
    let first = device.next_publish().await;
    assert_eq!(json_of(&first)["method"], "twoway");
    offer(&app, device_id, &twoway).await;

    let oneway = bus_request("oneway", true);
    offer(&app, device_id, &oneway).await;
    let second = device.next_publish().await;
    assert_eq!(json_of(&second)["method"], "oneway", "{:?}", second.topic);
    let state = app.app.as_ref().expect("running").state.clone();
    let tenant = state
        .services
        .store
        .find_user_by_email(common::TENANT_EMAIL)
        .await
        .expect("lookup")
        .and_then(|u| u.tenant_id)
        .expect("tenant admin's tenant");
    let mut waiter = state
        .services
        .rpc
        .waiters
        .wait(
            tenant,
            ferroboard::domain::DeviceId(device_id),
            oneway.clone(),
        )
        .expect("not waiting yet");
    offer(&app, device_id, &oneway).await;
    let outcome = tokio::time::timeout(WAIT, &mut waiter.reply)
        .await
        .expect("delivery reported in time")
        .expect("waiter completed");
    assert_eq!(outcome, ferroboard::bus::RpcReply::Delivered);

    let marker = bus_request("marker", true);
    offer(&app, device_id, &marker).await;
    let third = device.next_publish().await;
    assert_eq!(
        json_of(&third)["method"],
        "marker",
        "a copy reached the device"
    );
    assert_eq!(third.topic, "v1/devices/me/rpc/request/2", "ids 0, 1, 2");
    app.shutdown().await;
}
