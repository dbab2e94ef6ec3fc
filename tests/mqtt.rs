//! MQTT device API against the real server: CONNECT codes, telemetry and attributes committed before
//! PUBACK, invalid input, subscriptions, limits, take-over and shutdown — MQTT 3.1.1 and 5, on SQLite
//! and PostgreSQL.

mod common;

use std::time::Duration;

use common::{TestApp, eventually};
use ferroboard::domain::{AttributeScope, DeviceId, KvValue};
use ferroboard::storage::{Device, DeviceCredentials};
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{mqttbytes::v4 as m4, v5};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// Creates a device with an access token directly in the store of the running app.
async fn create_device(app: &TestApp) -> (DeviceId, String) {
    let state = &app.app.as_ref().expect("running").state;
    let store = &state.services.store;
    let admin = store
        .find_user_by_email(common::TENANT_EMAIL)
        .await
        .expect("lookup")
        .expect("tenant admin exists");
    let tenant = admin.tenant_id.expect("tenant admin has a tenant");
    let profile = store
        .default_profile(tenant)
        .await
        .expect("lookup")
        .expect("default profile");
    let id = DeviceId::new();
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let device = Device {
        id,
        tenant_id: tenant,
        customer_id: None,
        created_time: ferroboard::domain::now_ms(),
        name: format!("dev-{id}"),
        label: None,
        profile_id: profile.id,
        profile_name: profile.name.clone(),
        additional_info: serde_json::json!({}),
        version: 1,
    };
    let creds = DeviceCredentials {
        id: uuid::Uuid::new_v4(),
        device_id: id,
        created_time: device.created_time,
        credentials_type: "ACCESS_TOKEN".into(),
        credentials_id: token.clone(),
        credentials_value: None,
        version: 1,
    };
    store
        .create_device(&device, &creds)
        .await
        .expect("create device");
    (id, token)
}

/// An MQTT 3.1.1 client whose event loop runs in a task; events arrive on `events`.
struct V3 {
    client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
}

fn v3(app: &TestApp, username: Option<&str>, keep_alive: u64) -> V3 {
    let mut opts = rumqttc::MqttOptions::new(
        format!("c-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        app.mqtt_port,
    );
    opts.set_keep_alive(Duration::from_secs(keep_alive));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(u) = username {
        opts.set_credentials(u, "");
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(ev) => {
                    if tx.send(Ok(ev)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:?}")));
                    break;
                }
            }
        }
    });
    V3 { client, events }
}

struct V5 {
    client: v5::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<v5::Event, String>>,
}

fn v5(app: &TestApp, username: Option<&str>) -> V5 {
    let mut opts = v5::MqttOptions::new(
        format!("c-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        app.mqtt_port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(u) = username {
        opts.set_credentials(u, "");
    }
    let (client, mut eventloop) = v5::AsyncClient::new(opts, 64);
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(ev) => {
                    if tx.send(Ok(ev)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:?}")));
                    break;
                }
            }
        }
    });
    V5 { client, events }
}

/// A raw MQTT 5 connection on rumqttc's codec, for cases where a client library would give up
/// (error PUBACKs, refused SUBACKs, QoS 2, server DISCONNECTs).
struct Raw5 {
    sock: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    next_id: u16,
}

impl Raw5 {
    async fn connect(app: &TestApp, token: &str) -> Self {
        use tokio::io::AsyncWriteExt;
        let sock = tokio::net::TcpStream::connect(("127.0.0.1", app.mqtt_port))
            .await
            .expect("tcp");
        let mut raw = Self {
            sock,
            buf: bytes::BytesMut::new(),
            next_id: 0,
        };
        let mut out = bytes::BytesMut::new();
        let connect = m5::Connect {
            keep_alive: 30,
            client_id: format!("raw-{}", uuid::Uuid::new_v4().simple()),
            clean_start: true,
            properties: None,
        };
        m5::Packet::Connect(connect, None, Some(m5::Login::new(token, "")))
            .write(&mut out)
            .expect("encode");
        raw.sock.write_all(&out).await.expect("write");
        match raw.recv().await {
            Some(m5::Packet::ConnAck(ack)) => assert_eq!(ack.code, m5::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    async fn send(&mut self, packet: m5::Packet) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        packet.write(&mut out).expect("encode");
        self.sock.write_all(&out).await.expect("write");
    }

    async fn publish(&mut self, topic: &str, qos: v5::mqttbytes::QoS, payload: &str) -> u16 {
        self.next_id += 1;
        let mut p = m5::Publish::new(topic, qos, payload.as_bytes().to_vec(), None);
        p.pkid = self.next_id;
        self.send(m5::Packet::Publish(p)).await;
        self.next_id
    }

    /// The next packet, or None when the server closed the connection; panics after the deadline.
    async fn recv(&mut self) -> Option<m5::Packet> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match m5::Packet::read(&mut self.buf, None) {
                Ok(p) => return Some(p),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("undecodable packet from the server: {e:?}"),
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.sock.read(&mut chunk))
                .await
                .expect("server answered in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn puback(&mut self) -> m5::PubAckReason {
        match self.recv().await {
            Some(m5::Packet::PubAck(ack)) => ack.reason,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    async fn disconnect_reason(&mut self) -> m5::DisconnectReasonCode {
        match self.recv().await {
            Some(m5::Packet::Disconnect(d)) => d.reason_code,
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }

    async fn suback(&mut self, filter: &str) -> Vec<m5::SubscribeReasonCode> {
        self.next_id += 1;
        let mut sub = m5::Subscribe::new(
            m5::Filter::new(filter, v5::mqttbytes::QoS::AtLeastOnce),
            None,
        );
        sub.pkid = self.next_id;
        self.send(m5::Packet::Subscribe(sub)).await;
        match self.recv().await {
            Some(m5::Packet::SubAck(s)) => s.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

/// Waits for the first event `pick` maps to Some; panics on a deadline or a closed connection.
async fn wait_for<E: std::fmt::Debug, T>(
    events: &mut mpsc::UnboundedReceiver<Result<E, String>>,
    what: &str,
    mut pick: impl FnMut(&Result<E, String>) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
            .unwrap_or_else(|| panic!("event loop ended before {what}"));
        if let Some(v) = pick(&ev) {
            return v;
        }
        if let Err(e) = ev {
            panic!("connection ended before {what}: {e}");
        }
    }
}

async fn v3_connack(c: &mut V3) -> Result<(), String> {
    wait_for(&mut c.events, "CONNACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::ConnAck(_))) => Some(Ok(())),
        Err(e) => Some(Err(e.clone())),
        _ => None,
    })
    .await
}

async fn v5_connack(c: &mut V5) -> Result<m5::ConnAck, String> {
    wait_for(&mut c.events, "CONNACK", |ev| match ev {
        Ok(v5::Event::Incoming(m5::Packet::ConnAck(ack))) => Some(Ok(ack.clone())),
        Err(e) => Some(Err(e.clone())),
        _ => None,
    })
    .await
}

async fn v5_puback(c: &mut V5) -> m5::PubAckReason {
    wait_for(&mut c.events, "PUBACK", |ev| match ev {
        Ok(v5::Event::Incoming(m5::Packet::PubAck(ack))) => Some(ack.reason),
        _ => None,
    })
    .await
}

async fn v3_puback(c: &mut V3) {
    wait_for(&mut c.events, "PUBACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::PubAck(_))) => Some(()),
        _ => None,
    })
    .await
}

async fn v3_closed(c: &mut V3) -> String {
    wait_for(&mut c.events, "connection close", |ev| {
        ev.as_ref().err().cloned()
    })
    .await
}

fn state(app: &TestApp) -> &ferroboard::app::AppState {
    &app.app.as_ref().expect("running").state
}

async fn connack_codes(app: &TestApp) {
    let (_, token) = create_device(app).await;
    let mut ok3 = v3(app, Some(&token), 30);
    assert_eq!(v3_connack(&mut ok3).await, Ok(()));
    let mut ok5 = v5(app, Some(&token));
    let ack = v5_connack(&mut ok5).await.expect("v5 accepted");
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.max_qos, Some(1), "QoS 2 is not offered");
    assert_eq!(props.receive_max, Some(100));
    assert_eq!(props.max_packet_size, Some(65536));

    let mut wrong3 = v3(app, Some("no-such-token"), 30);
    let err = v3_connack(&mut wrong3)
        .await
        .expect_err("wrong token refused");
    assert!(err.contains("NotAuthorized"), "{err}");
    let mut wrong5 = v5(app, Some("no-such-token"));
    let err = v5_connack(&mut wrong5)
        .await
        .expect_err("wrong token refused");
    assert!(err.contains("NotAuthorized"), "{err}");

    let mut empty3 = v3(app, Some(""), 30);
    let err = v3_connack(&mut empty3)
        .await
        .expect_err("empty username refused");
    assert!(err.contains("BadUserNamePassword"), "{err}");
    let mut none5 = v5(app, None);
    let err = v5_connack(&mut none5)
        .await
        .expect_err("no username refused");
    assert!(err.contains("BadUserNamePassword"), "{err}");
}

async fn telemetry_is_committed_before_puback(app: &TestApp) {
    let (id, token) = create_device(app).await;
    let store = &state(app).services.store;
    let mut c3 = v3(app, Some(&token), 30);
    v3_connack(&mut c3).await.expect("connected");
    c3.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"ts":1700000000123,"values":{"t":21.5,"n":42,"on":true,"s":"x","j":{"a":[1,2]}}}"#,
        )
        .await
        .expect("queued");
    v3_puback(&mut c3).await;
    // Ack means committed: readable at once, no waiting.
    let latest = store.latest(id.0, None).await.expect("latest");
    let get = |k: &str| {
        latest
            .iter()
            .find(|p| p.key == k)
            .map(|p| (p.ts, p.value.clone()))
    };
    assert_eq!(get("t"), Some((1_700_000_000_123, KvValue::Double(21.5))));
    assert_eq!(get("n"), Some((1_700_000_000_123, KvValue::Long(42))));
    assert_eq!(get("on"), Some((1_700_000_000_123, KvValue::Bool(true))));
    assert_eq!(
        get("s"),
        Some((1_700_000_000_123, KvValue::Str("x".into())))
    );
    assert!(matches!(get("j"), Some((_, KvValue::Json(_)))));

    let mut c5 = v5(app, Some(&token));
    v5_connack(&mut c5).await.expect("connected");
    c5.client
        .publish(
            "v2/t",
            v5::mqttbytes::QoS::AtLeastOnce,
            false,
            r#"{temperature: 25.0}"#,
        )
        .await
        .expect("queued");
    assert_eq!(v5_puback(&mut c5).await, m5::PubAckReason::Success);
    let latest = store
        .latest(id.0, Some(&["temperature".to_owned()]))
        .await
        .expect("latest");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].value, KvValue::Double(25.0));
}

async fn attributes_are_committed_before_puback(app: &TestApp) {
    let (id, token) = create_device(app).await;
    let mut c5 = v5(app, Some(&token));
    v5_connack(&mut c5).await.expect("connected");
    c5.client
        .publish(
            "v1/devices/me/attributes",
            v5::mqttbytes::QoS::AtLeastOnce,
            false,
            r#"{"fw":"v1.0","build":7}"#,
        )
        .await
        .expect("queued");
    assert_eq!(v5_puback(&mut c5).await, m5::PubAckReason::Success);
    let attrs = state(app)
        .services
        .store
        .find_attributes(id.0, AttributeScope::Client, None)
        .await
        .expect("attributes");
    let mut got: Vec<_> = attrs
        .iter()
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("build".into(), KvValue::Long(7)),
            ("fw".into(), KvValue::Str("v1.0".into()))
        ]
    );
}

async fn invalid_input_gets_the_spec_answers(app: &TestApp) {
    let (_, token) = create_device(app).await;
    let mut c5 = Raw5::connect(app, &token).await;
    let qos1 = v5::mqttbytes::QoS::AtLeastOnce;
    c5.publish("v1/devices/me/telemetry", qos1, "{not json")
        .await;
    assert_eq!(c5.puback().await, m5::PubAckReason::PayloadFormatInvalid);
    c5.publish("v1/devices/me/telemetry", qos1, "[1,2]").await;
    assert_eq!(c5.puback().await, m5::PubAckReason::PayloadFormatInvalid);
    c5.publish("v1/devices/me/nothing", qos1, "{}").await;
    assert_eq!(c5.puback().await, m5::PubAckReason::TopicNameInvalid);
    // The session is still usable.
    c5.publish("v1/devices/me/telemetry", qos1, r#"{"a":1}"#)
        .await;
    assert_eq!(c5.puback().await, m5::PubAckReason::Success);

    // SUBSCRIBE: device filters granted QoS 1, others refused.
    assert_eq!(
        c5.suback("v1/devices/me/attributes").await,
        vec![m5::SubscribeReasonCode::Success(qos1)]
    );
    assert_eq!(
        c5.suback("#").await,
        vec![m5::SubscribeReasonCode::TopicFilterInvalid]
    );

    // QoS 2 is not offered: MQTT 5 DISCONNECT 0x9B.
    c5.publish(
        "v1/devices/me/telemetry",
        v5::mqttbytes::QoS::ExactlyOnce,
        r#"{"a":1}"#,
    )
    .await;
    assert_eq!(
        c5.disconnect_reason().await,
        m5::DisconnectReasonCode::QoSNotSupported
    );

    // A QoS 0 invalid payload closes an MQTT 5 session with DISCONNECT 0x99.
    let mut q0 = Raw5::connect(app, &token).await;
    q0.publish(
        "v1/devices/me/telemetry",
        v5::mqttbytes::QoS::AtMostOnce,
        "{oops",
    )
    .await;
    assert_eq!(
        q0.disconnect_reason().await,
        m5::DisconnectReasonCode::PayloadFormatInvalid
    );

    // MQTT 3.1.1 has no reason codes: an invalid payload closes the connection.
    let mut c3 = v3(app, Some(&token), 30);
    v3_connack(&mut c3).await.expect("connected");
    c3.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            "{broken",
        )
        .await
        .expect("queued");
    v3_closed(&mut c3).await;

    // A packet over the 64 KiB limit closes the connection.
    let mut big = v3(app, Some(&token), 30);
    v3_connack(&mut big).await.expect("connected");
    let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(70_000));
    big.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .expect("queued");
    v3_closed(&mut big).await;

    // The server keeps serving.
    let mut again = v5(app, Some(&token));
    v5_connack(&mut again).await.expect("still serving");
}

async fn newest_session_wins(app: &TestApp) {
    let (id, token) = create_device(app).await;
    let mut first = Raw5::connect(app, &token).await;
    let mut second = Raw5::connect(app, &token).await;
    assert_eq!(
        first.disconnect_reason().await,
        m5::DisconnectReasonCode::SessionTakenOver
    );
    assert!(state(app).sessions.is_connected(id));
    second
        .publish(
            "v1/devices/me/telemetry",
            v5::mqttbytes::QoS::AtLeastOnce,
            r#"{"x":1}"#,
        )
        .await;
    assert_eq!(second.puback().await, m5::PubAckReason::Success);
}

async fn keep_alive_is_enforced(app: &TestApp) {
    let (id, token) = create_device(app).await;
    // A raw client that never pings: keep-alive 1 s means closed after 1.5 s of silence.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", app.mqtt_port))
        .await
        .expect("connect");
    let mut connect = bytes::BytesMut::new();
    let mut pkt = m4::Connect::new("raw-client");
    pkt.keep_alive = 1;
    pkt.set_login(token.clone(), "");
    pkt.write(&mut connect).expect("encode");
    sock.write_all(&connect).await.expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
        .await
        .expect("CONNACK in time")
        .expect("read");
    assert!(
        n >= 4 && buf[0] == 0x20 && buf[3] == 0,
        "CONNACK accepted: {:?}",
        &buf[..n]
    );
    eventually("session registered", WAIT, || async {
        state(app).sessions.is_connected(id).then_some(())
    })
    .await;
    let closed = tokio::time::timeout(WAIT, sock.read(&mut buf))
        .await
        .expect("closed within the deadline");
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "connection closed for missing PINGREQ"
    );
}

both_backends!(
    connack_codes,
    telemetry_is_committed_before_puback,
    attributes_are_committed_before_puback,
    invalid_input_gets_the_spec_answers,
    newest_session_wins,
    keep_alive_is_enforced,
);

async fn shutdown_closes_sessions_with_0x8b(backend: common::Backend) {
    let app = common::spawn_app(backend).await;
    let (_, token) = create_device(&app).await;
    let mut c5 = Raw5::connect(&app, &token).await;
    c5.publish(
        "v1/devices/me/telemetry",
        v5::mqttbytes::QoS::AtLeastOnce,
        r#"{"x":1}"#,
    )
    .await;
    assert_eq!(c5.puback().await, m5::PubAckReason::Success);
    let started = std::time::Instant::now();
    let ((), reason) = tokio::join!(app.shutdown(), c5.disconnect_reason());
    assert_eq!(reason, m5::DisconnectReasonCode::ServerShuttingDown);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_with_0x8b_sqlite() {
    shutdown_closes_sessions_with_0x8b(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_with_0x8b_postgres() {
    shutdown_closes_sessions_with_0x8b(common::Backend::Postgres).await;
}
