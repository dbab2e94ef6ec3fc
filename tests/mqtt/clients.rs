//! MQTT test clients: rumqttc 3.1.1/5 event loops in tasks, a raw MQTT 5 codec client, device creation.
#![allow(dead_code)]

use std::time::Duration;

use crate::common::TestApp;
use ferroboard::domain::DeviceId;
use ferroboard::storage::{Device, DeviceCredentials};
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{mqttbytes::v4 as m4, v5};
use tokio::sync::mpsc;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Creates a device with an access token directly in the store of the running app.
pub(crate) async fn create_device(app: &TestApp) -> (DeviceId, String) {
    let state = &app.app.as_ref().expect("running").state;
    let store = &state.services.store;
    let admin = store
        .find_user_by_email(crate::common::TENANT_EMAIL)
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
        firmware_id: None,
        software_id: None,
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
pub(crate) struct V3 {
    pub(crate) client: rumqttc::AsyncClient,
    pub(crate) events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
}

pub(crate) fn v3(app: &TestApp, username: Option<&str>, keep_alive: u64) -> V3 {
    v3_login(app, username, "", keep_alive)
}

/// An MQTT 3.1.1 client logging in with a user name and password (MQTT_BASIC credentials).
pub(crate) fn v3_login(
    app: &TestApp,
    username: Option<&str>,
    password: &str,
    keep_alive: u64,
) -> V3 {
    let mut opts = rumqttc::MqttOptions::new(
        format!("c-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        app.mqtt_port,
    );
    opts.set_keep_alive(Duration::from_secs(keep_alive));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(u) = username {
        opts.set_credentials(u, password);
    }
    v3_with(opts)
}

/// An MQTT 3.1.1 client with these options, its event loop in a task.
pub(crate) fn v3_with(opts: rumqttc::MqttOptions) -> V3 {
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

pub(crate) struct V5 {
    pub(crate) client: v5::AsyncClient,
    pub(crate) events: mpsc::UnboundedReceiver<Result<v5::Event, String>>,
}

pub(crate) fn v5(app: &TestApp, username: Option<&str>) -> V5 {
    v5_login(app, username, "")
}

/// An MQTT 5 client logging in with a user name and password (MQTT_BASIC credentials).
pub(crate) fn v5_login(app: &TestApp, username: Option<&str>, password: &str) -> V5 {
    let mut opts = v5::MqttOptions::new(
        format!("c-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        app.mqtt_port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(u) = username {
        opts.set_credentials(u, password);
    }
    v5_with(opts)
}

/// An MQTT 5 client with these options, its event loop in a task.
pub(crate) fn v5_with(opts: v5::MqttOptions) -> V5 {
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
pub(crate) struct Raw5 {
    sock: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    next_id: u16,
}

impl Raw5 {
    pub(crate) async fn connect(app: &TestApp, token: &str) -> Self {
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

    /// Writes encoded packets as they are (e.g. many in one write).
    pub(crate) async fn write_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.sock.write_all(bytes).await.expect("write");
    }

    pub(crate) async fn send(&mut self, packet: m5::Packet) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        packet.write(&mut out).expect("encode");
        self.sock.write_all(&out).await.expect("write");
    }

    pub(crate) async fn publish(
        &mut self,
        topic: &str,
        qos: v5::mqttbytes::QoS,
        payload: impl AsRef<[u8]>,
    ) -> u16 {
        self.next_id += 1;
        let mut p = m5::Publish::new(topic, qos, payload.as_ref().to_vec(), None);
        p.pkid = self.next_id;
        self.send(m5::Packet::Publish(p)).await;
        self.next_id
    }

    /// The next packet, or None when the server closed the connection; panics after the deadline.
    pub(crate) async fn recv(&mut self) -> Option<m5::Packet> {
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

    pub(crate) async fn puback(&mut self) -> m5::PubAckReason {
        match self.recv().await {
            Some(m5::Packet::PubAck(ack)) => ack.reason,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    pub(crate) async fn disconnect_reason(&mut self) -> m5::DisconnectReasonCode {
        match self.recv().await {
            Some(m5::Packet::Disconnect(d)) => d.reason_code,
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }

    pub(crate) async fn suback(&mut self, filter: &str) -> Vec<m5::SubscribeReasonCode> {
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
pub(crate) async fn wait_for<E: std::fmt::Debug, T>(
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

pub(crate) async fn v3_connack(c: &mut V3) -> Result<(), String> {
    wait_for(&mut c.events, "CONNACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::ConnAck(_))) => Some(Ok(())),
        Err(e) => Some(Err(e.clone())),
        _ => None,
    })
    .await
}

pub(crate) async fn v5_connack(c: &mut V5) -> Result<m5::ConnAck, String> {
    wait_for(&mut c.events, "CONNACK", |ev| match ev {
        Ok(v5::Event::Incoming(m5::Packet::ConnAck(ack))) => Some(Ok(ack.clone())),
        Err(e) => Some(Err(e.clone())),
        _ => None,
    })
    .await
}

pub(crate) async fn v5_puback(c: &mut V5) -> m5::PubAckReason {
    wait_for(&mut c.events, "PUBACK", |ev| match ev {
        Ok(v5::Event::Incoming(m5::Packet::PubAck(ack))) => Some(ack.reason),
        _ => None,
    })
    .await
}

pub(crate) async fn v3_puback(c: &mut V3) {
    wait_for(&mut c.events, "PUBACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::PubAck(_))) => Some(()),
        _ => None,
    })
    .await
}

pub(crate) async fn v3_closed(c: &mut V3) -> String {
    wait_for(&mut c.events, "connection close", |ev| {
        ev.as_ref().err().cloned()
    })
    .await
}

pub(crate) fn state(app: &TestApp) -> &ferroboard::state::AppState {
    &app.app.as_ref().expect("running").state
}
