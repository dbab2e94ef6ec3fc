//! The gateway API (`v1/gateway/*`) over a raw MQTT 5 connection: devices behind a gateway found
//! or created by name, their data, attribute requests, shared-attribute pushes and RPC through
//! the gateway, claims, service RPCs on rename and delete, take-over, rate limits and bad input.

use std::collections::VecDeque;

use rumqttc::v5::mqttbytes::{QoS, v5 as m5};
use serde_json::{Value, json};

use crate::clients::{Raw5, WAIT, create_device, state};
use crate::common::{self, TestApp, eventually};
use crate::rpc_answers::{foreign_device, post_later};
use crate::support::Api;
use ferroboard::domain::{AttributeScope, DeviceId, Kv, KvValue};

/// A gateway's raw MQTT 5 connection: PUBACKs and publishes from the server kept apart.
pub(crate) struct Gw {
    raw: Raw5,
    pubacks: VecDeque<(u16, m5::PubAckReason)>,
    publishes: VecDeque<(String, Value)>,
}

impl Gw {
    pub(crate) async fn connect(app: &TestApp, token: &str) -> Self {
        Self {
            raw: Raw5::connect(app, token).await,
            pubacks: VecDeque::new(),
            publishes: VecDeque::new(),
        }
    }

    /// Reads one packet: PUBACKs and publishes go to the queues (`Queued`); any other packet is
    /// returned; None when the connection closed.
    async fn pump(&mut self) -> Option<Pumped> {
        let packet = self.raw.recv().await?;
        match packet {
            m5::Packet::PubAck(ack) => self.pubacks.push_back((ack.pkid, ack.reason)),
            m5::Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    let ack = m5::PubAck::new(p.pkid, None);
                    self.raw.send(m5::Packet::PubAck(ack)).await;
                }
                let topic = String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic");
                let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                self.publishes.push_back((topic, body));
            }
            other => return Some(Pumped::Other(Box::new(other))),
        }
        Some(Pumped::Queued)
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason.
    pub(crate) async fn send(
        &mut self,
        topic: &str,
        payload: impl AsRef<[u8]>,
    ) -> m5::PubAckReason {
        let id = self.raw.publish(topic, QoS::AtLeastOnce, payload).await;
        loop {
            if let Some(at) = self.pubacks.iter().position(|(p, _)| *p == id) {
                return self.pubacks.remove(at).expect("present").1;
            }
            match self.pump().await {
                Some(Pumped::Queued) => {}
                other => panic!("expected the PUBACK of {topic}, got {other:?}"),
            }
        }
    }

    /// Publishes at QoS 1 and expects the server to close with DISCONNECT `reason`; what it
    /// published before stays queued.
    async fn send_closing(
        &mut self,
        topic: &str,
        payload: impl AsRef<[u8]>,
        reason: m5::DisconnectReasonCode,
    ) {
        self.raw.publish(topic, QoS::AtLeastOnce, payload).await;
        loop {
            match self.pump().await {
                Some(Pumped::Queued) => {}
                Some(Pumped::Other(p)) => match *p {
                    m5::Packet::Disconnect(d) => {
                        assert_eq!(d.reason_code, reason, "{topic}");
                        return;
                    }
                    other => panic!("expected DISCONNECT after {topic}, got {other:?}"),
                },
                None => panic!("connection closed without DISCONNECT after {topic}"),
            }
        }
    }

    /// The next message the server publishes on `topic`.
    pub(crate) async fn next(&mut self, topic: &str) -> Value {
        loop {
            if let Some(at) = self.publishes.iter().position(|(t, _)| t == topic) {
                return self.publishes.remove(at).expect("present").1;
            }
            match self.pump().await {
                Some(Pumped::Queued) => {}
                other => panic!("expected a publish on {topic}, got {other:?}"),
            }
        }
    }

    /// The next message the server publishes on a topic starting with `prefix`.
    async fn next_under(&mut self, prefix: &str) -> Value {
        loop {
            if let Some(at) = self
                .publishes
                .iter()
                .position(|(t, _)| t.starts_with(prefix))
            {
                return self.publishes.remove(at).expect("present").1;
            }
            match self.pump().await {
                Some(Pumped::Queued) => {}
                other => panic!("expected a publish under {prefix}, got {other:?}"),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        let codes = self.raw.suback(filter).await;
        assert_eq!(
            codes,
            vec![m5::SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "{filter}"
        );
    }
}

#[derive(Debug)]
enum Pumped {
    Queued,
    Other(Box<m5::Packet>),
}

/// Creates a gateway over REST (`additionalInfo.gateway`); returns (id, token).
pub(crate) async fn create_gateway(api: &Api, name: &str, info: Value) -> (DeviceId, String) {
    let (id, device) = api
        .create_device(json!({"name": name, "type": "default", "additionalInfo": info}))
        .await;
    assert_eq!(device["additionalInfo"]["gateway"], json!(true));
    let token = api.token_of(&id).await;
    (DeviceId(id.parse().expect("uuid")), token)
}

async fn device_named(app: &TestApp, gateway: DeviceId, name: &str) -> ferroboard::domain::Device {
    let store = &state(app).services.store;
    let gw = store
        .find_device(gateway)
        .await
        .expect("read")
        .expect("gateway");
    store
        .find_device_by_name(gw.tenant_id, name)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("device {name} exists"))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Every gateway → server topic, and server → gateway pushes and RPC, for devices behind it.
pub(crate) async fn gateway_serves_its_devices(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (gw_id, token) = create_gateway(&api, &unique("gw"), json!({"gateway": true})).await;
    let mut gw = Gw::connect(app, &token).await;
    for filter in [
        "v1/gateway/attributes",
        "v1/gateway/rpc",
        "v1/gateway/attributes/response",
    ] {
        gw.subscribe(filter).await;
    }
    let (s1, s2) = (unique("S1"), unique("S2"));
    let connect = json!({"device": s1, "type": "thermometer"}).to_string();
    assert_eq!(
        gw.send("v1/gateway/connect", connect).await,
        m5::PubAckReason::Success
    );
    let dev1 = device_named(app, gw_id, &s1).await;
    assert_eq!(dev1.profile_name, "thermometer", "profile by type, created");
    assert_eq!(
        dev1.additional_info["lastConnectedGateway"],
        json!(gw_id.0.to_string())
    );
    let sessions = &state(app).sessions;
    assert!(sessions.is_connected(dev1.id), "its session is registered");
    eventually("the device is active", WAIT, || async {
        state(app)
            .services
            .device_state
            .is_active(dev1.id)
            .await
            .then_some(())
    })
    .await;

    // Telemetry: a second device connects implicitly; a wrong entry is skipped; metadata stripped.
    let telemetry = json!({
        s1.clone(): [{"ts": 1_700_000_000_000_i64, "values": {"t": 1}}, {"ts": 1_700_000_000_001_i64, "values": {"t": 2}}],
        s2.clone(): [{"h": 7, "metadata": {"connector": "mb", "receivedTs": 1, "publishedTs": 2}}],
        "skipped": {"t": 3},
    });
    let ack = gw.send("v1/gateway/telemetry", telemetry.to_string()).await;
    assert_eq!(ack, m5::PubAckReason::Success);
    let store = &state(app).services.store;
    let latest = store.latest(dev1.id.0, None).await.expect("latest");
    assert_eq!(
        latest
            .iter()
            .map(|p| (p.ts, p.value.clone()))
            .collect::<Vec<_>>(),
        vec![(1_700_000_000_001, KvValue::Long(2))],
        "committed before the PUBACK"
    );
    let dev2 = device_named(app, gw_id, &s2).await;
    assert_eq!(dev2.profile_name, "default");
    let keys = store.timeseries_keys(dev2.id.0).await.expect("keys");
    assert_eq!(keys, vec!["h".to_owned()], "metadata is not telemetry");
    assert!(
        store
            .find_device_by_name(dev1.tenant_id, "skipped")
            .await
            .expect("read")
            .is_none()
    );

    // Client attributes, then a request for one key (`value`) and for several (`values`).
    let attrs = json!({ s1.clone(): {"a": 1, "b": "x"} }).to_string();
    assert_eq!(
        gw.send("v1/gateway/attributes", attrs).await,
        m5::PubAckReason::Success
    );
    let one = json!({"id": 1, "device": s1, "client": true, "keys": ["a"]}).to_string();
    assert_eq!(
        gw.send("v1/gateway/attributes/request", one).await,
        m5::PubAckReason::Success
    );
    let answer = gw.next("v1/gateway/attributes/response").await;
    assert_eq!(answer, json!({"id": 1, "device": s1, "value": 1}));
    let two = json!({"id": 2, "device": s1, "client": true, "keys": ["a", "b", "nope"]});
    gw.send("v1/gateway/attributes/request", two.to_string())
        .await;
    let answer = gw.next("v1/gateway/attributes/response").await;
    assert_eq!(
        answer,
        json!({"id": 2, "device": s1, "values": {"a": 1, "b": "x"}})
    );
    let shared = json!({"id": 3, "device": s1, "client": false, "key": "a"});
    gw.send("v1/gateway/attributes/request", shared.to_string())
        .await;
    let answer = gw.next("v1/gateway/attributes/response").await;
    assert_eq!(answer, json!({"id": 3, "device": s1}), "nothing found");

    // Shared-attribute pushes reach the gateway, wrapped with the device's name.
    let kvs = [Kv {
        key: "target".into(),
        value: KvValue::Long(21),
    }];
    state(app)
        .services
        .push_shared_attributes(dev1.id, &kvs)
        .await;
    let push = gw.next("v1/gateway/attributes").await;
    assert_eq!(push, json!({"device": s1, "data": {"target": 21}}));

    // Server-side RPC through the gateway; the answer is matched by (device, id).
    let call = post_later(
        &api,
        format!("/api/plugins/rpc/twoway/{}", dev1.id),
        json!({"method": "setT", "params": {"t": 5}}),
    );
    let request = gw.next("v1/gateway/rpc").await;
    assert_eq!(request["device"], json!(s1));
    assert_eq!(request["data"]["method"], json!("setT"));
    assert_eq!(request["data"]["params"], json!({"t": 5}));
    let id = request["data"]["id"].as_i64().expect("id");
    let reply = json!({"device": s1, "id": id, "data": {"ok": true}}).to_string();
    assert_eq!(
        gw.send("v1/gateway/rpc", reply).await,
        m5::PubAckReason::Success
    );
    let resp = call.await.expect("REST call");
    assert_eq!(resp.ok(), json!({"ok": true}));

    // Claim, unknown topic, disconnect.
    let claim = json!({ s1.clone(): {"secretKey": "k", "durationMs": 60000} }).to_string();
    assert_eq!(
        gw.send("v1/gateway/claim", claim).await,
        m5::PubAckReason::Success
    );
    assert!(
        store.get_claim(dev1.id).await.expect("read").is_some(),
        "claim window open"
    );
    assert_eq!(
        gw.send("v1/gateway/other", "{}").await,
        m5::PubAckReason::TopicNameInvalid
    );
    let bye = json!({"device": s1}).to_string();
    assert_eq!(
        gw.send("v1/gateway/disconnect", bye).await,
        m5::PubAckReason::Success
    );
    let unknown = json!({"device": "never-connected"}).to_string();
    assert_eq!(
        gw.send("v1/gateway/disconnect", unknown).await,
        m5::PubAckReason::Success
    );
    eventually("the device's session ended", WAIT, || async {
        (!sessions.is_connected(dev1.id)).then_some(())
    })
    .await;
    assert!(sessions.is_connected(dev2.id), "the other device stays");
    drop(gw);
    eventually(
        "the gateway's devices' sessions ended with it",
        WAIT,
        || async {
            (!sessions.is_connected(dev2.id) && !sessions.is_connected(gw_id)).then_some(())
        },
    )
    .await;
}

/// Renaming or deleting a device behind a gateway sends the gateway a persistent service RPC,
/// received later by a gateway offline at the time.
pub(crate) async fn renames_and_deletions_reach_the_gateway(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (gw_id, token) = create_gateway(&api, &unique("gw"), json!({"gateway": true})).await;
    let mut gw = Gw::connect(app, &token).await;
    gw.subscribe("v1/devices/me/rpc/request/+").await;
    let (a, b) = (unique("A"), unique("B"));
    for name in [&a, &b] {
        let connect = json!({"device": name}).to_string();
        assert_eq!(
            gw.send("v1/gateway/connect", connect).await,
            m5::PubAckReason::Success
        );
    }
    let dev_a = device_named(app, gw_id, &a).await;
    let renamed = format!("{a}-renamed");
    let mut body = api.get(&format!("/api/device/{}", dev_a.id)).await.ok();
    body["name"] = json!(renamed);
    api.post("/api/device", body).await.ok();
    let rpc = gw.next_under("v1/devices/me/rpc/request/").await;
    assert_eq!(
        rpc,
        json!({"method": "gateway_device_renamed", "params": {a.clone(): renamed}})
    );
    // Offline gateway: the deletion waits for it.
    drop(gw);
    let sessions = &state(app).sessions;
    eventually("gateway gone", WAIT, || async {
        (!sessions.is_connected(gw_id)).then_some(())
    })
    .await;
    let dev_b = device_named(app, gw_id, &b).await;
    api.delete(&format!("/api/device/{}", dev_b.id)).await.ok();
    let mut gw = Gw::connect(app, &token).await;
    gw.subscribe("v1/devices/me/rpc/request/+").await;
    let rpc = gw.next_under("v1/devices/me/rpc/request/").await;
    assert_eq!(
        rpc,
        json!({"method": "gateway_device_deleted", "params": b})
    );
}

/// One session per device: a direct connection takes a device over from its gateway (the
/// gateway stays), and the gateway's next message for it takes it back.
pub(crate) async fn a_device_has_one_session_across_gateway_and_direct(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (gw_id, token) = create_gateway(&api, &unique("gw"), json!({"gateway": true})).await;
    let mut gw = Gw::connect(app, &token).await;
    let name = unique("D");
    let connect = json!({"device": name}).to_string();
    assert_eq!(
        gw.send("v1/gateway/connect", connect).await,
        m5::PubAckReason::Success
    );
    let dev = device_named(app, gw_id, &name).await;
    let sessions = &state(app).sessions;
    let behind = sessions
        .session_of(dev.id)
        .expect("session behind the gateway");
    let dev_token = api.token_of(&dev.id.to_string()).await;
    let mut direct = Raw5::connect(app, &dev_token).await;
    eventually("taken over by the direct connection", WAIT, || async {
        (sessions.session_of(dev.id) != Some(behind)).then_some(())
    })
    .await;
    let telemetry = json!({ name.clone(): [{"t": 1}] }).to_string();
    assert_eq!(
        gw.send("v1/gateway/telemetry", telemetry).await,
        m5::PubAckReason::Success
    );
    assert_eq!(
        direct.disconnect_reason().await,
        m5::DisconnectReasonCode::SessionTakenOver
    );
    assert!(
        sessions.is_connected(gw_id),
        "the gateway kept its connection"
    );
}

/// Payloads §9.2 refuses: each closes the gateway's connection with DISCONNECT 0x83, except
/// invalid JSON (PUBACK 0x99) and a device's invalid `metadata` beside a valid device.
pub(crate) async fn bad_gateway_input(app: &TestApp) {
    use m5::DisconnectReasonCode::ImplementationSpecificError as Closed;
    let api = Api::tenant(app).await;
    let (gw_id, token) = create_gateway(&api, &unique("gw"), json!({"gateway": true})).await;
    let closing = [
        ("v1/gateway/telemetry", "[1]".to_owned()),
        ("v1/gateway/telemetry", r#"{"Dev":{"temp":1}}"#.to_owned()),
        (
            "v1/gateway/attributes",
            r#"{"Dev":[1],"Dev2":3}"#.to_owned(),
        ),
        ("v1/gateway/connect", r#"{"type":"x"}"#.to_owned()),
        ("v1/gateway/connect", r#""Dev""#.to_owned()),
        ("v1/gateway/disconnect", r#"{"name":"Dev"}"#.to_owned()),
        (
            "v1/gateway/attributes/request",
            r#"{"device":"Dev","client":true,"key":"a"}"#.to_owned(),
        ),
        (
            "v1/gateway/attributes/request",
            r#"{"id":1,"client":true,"key":"a"}"#.to_owned(),
        ),
        (
            "v1/gateway/attributes/request",
            r#"{"id":1,"device":"Dev","key":"a"}"#.to_owned(),
        ),
        ("v1/gateway/rpc", r#"{"device":"Dev","id":1}"#.to_owned()),
        ("v1/gateway/rpc", r#"{"device":"Dev","data":{}}"#.to_owned()),
        ("v1/gateway/rpc", r#"{"id":1,"data":{}}"#.to_owned()),
        ("v1/gateway/claim", r#"{"Dev":"k"}"#.to_owned()),
        (
            "v1/gateway/telemetry",
            r#"{"Dev":[{"t":1,"metadata":{"connector":"mb"}}]}"#.to_owned(),
        ),
        (
            "v1/gateway/telemetry",
            r#"{"Dev":[{"t":1,"metadata":"late"}]}"#.to_owned(),
        ),
    ];
    for (topic, payload) in closing {
        let mut gw = Gw::connect(app, &token).await;
        gw.send_closing(topic, &payload, Closed).await;
    }
    let store = &state(app).services.store;
    let tenant = store
        .find_device(gw_id)
        .await
        .expect("read")
        .expect("gw")
        .tenant_id;
    assert!(
        store
            .find_device_by_name(tenant, "Dev")
            .await
            .expect("read")
            .is_none(),
        "nothing was created by refused payloads"
    );

    let mut gw = Gw::connect(app, &token).await;
    assert_eq!(
        gw.send("v1/gateway/telemetry", "{not json").await,
        m5::PubAckReason::PayloadFormatInvalid
    );
    let (good, bad) = (unique("good"), unique("bad"));
    let mixed = json!({
        good.clone(): [{"t": 1}],
        bad.clone(): [{"t": 2, "metadata": {"connector": "mb", "receivedTs": "x", "publishedTs": 1}}],
    });
    assert_eq!(
        gw.send("v1/gateway/telemetry", mixed.to_string()).await,
        m5::PubAckReason::Success
    );
    let dev = device_named(app, gw_id, &good).await;
    assert_eq!(
        store.timeseries_keys(dev.id.0).await.expect("keys"),
        vec!["t".to_owned()]
    );
    assert!(
        store
            .find_device_by_name(tenant, &bad)
            .await
            .expect("read")
            .is_none()
    );
    // A device's values that do not convert: PUBACK 0x99 once, the connection stays.
    let unconvertible = json!({ good.clone(): [1] });
    assert_eq!(
        gw.send("v1/gateway/telemetry", unconvertible.to_string())
            .await,
        m5::PubAckReason::PayloadFormatInvalid
    );
    assert_eq!(
        gw.send("v1/gateway/telemetry", "{}").await,
        m5::PubAckReason::Success
    );

    // Another tenant's device of the same name is never reached: a new one is made here.
    let (foreign_tenant, _) = foreign_device(app).await;
    let connect = json!({"device": "foreign"}).to_string();
    assert_eq!(
        gw.send("v1/gateway/connect", connect).await,
        m5::PubAckReason::Success
    );
    let mine = device_named(app, gw_id, "foreign").await;
    let theirs = store
        .find_device_by_name(foreign_tenant, "foreign")
        .await
        .expect("read")
        .expect("their device");
    assert_ne!(mine.id, theirs.id);
    assert_eq!(mine.tenant_id, tenant);
    assert!(theirs.additional_info.get("lastConnectedGateway").is_none());
    let kv = |v| Kv {
        key: "k".into(),
        value: KvValue::Long(v),
    };
    let services = &state(app).services;
    services.push_shared_attributes(theirs.id, &[kv(1)]).await;
    services.push_shared_attributes(mine.id, &[kv(2)]).await;
    let push = gw.next("v1/gateway/attributes").await;
    assert_eq!(
        push,
        json!({"device": "foreign", "data": {"k": 2}}),
        "only ours"
    );
    let attrs = json!({"foreign": {"c": 1}}).to_string();
    assert_eq!(
        gw.send("v1/gateway/attributes", attrs).await,
        m5::PubAckReason::Success
    );
    let theirs_attrs = store
        .find_attributes(theirs.id.0, AttributeScope::Client, None)
        .await
        .expect("read");
    assert!(theirs_attrs.is_empty(), "their device is untouched");

    // A device that is not a gateway: refused with 0x87, its connection stays.
    let (_, plain) = create_device(app).await;
    let mut dev = Gw::connect(app, &plain).await;
    let telemetry = r#"{"X":[{"t":1}]}"#;
    assert_eq!(
        dev.send("v1/gateway/telemetry", telemetry).await,
        m5::PubAckReason::NotAuthorized
    );
    assert_eq!(
        dev.send("v1/devices/me/telemetry", r#"{"t":1}"#).await,
        m5::PubAckReason::Success
    );
}

/// The devices behind a gateway share one set of buckets (`limits.gateway_*`), reported by
/// `getSessionLimits` as `gatewayRateLimits`; a refusal tells an MQTT 5 gateway which device
/// (`v1/gateway/disconnect`, reason 150) and closes the connection.
pub(crate) async fn gateway_rate_limits(backend: common::Backend) {
    let app = common::spawn_app_with(backend, |c| {
        c.limits.gateway_telemetry_messages = Some("2:3600".into());
        c.limits.messages = Some("1000:1".into());
    })
    .await;
    let api = Api::tenant(&app).await;
    let (_, token) = create_gateway(&api, &unique("gw"), json!({"gateway": true})).await;
    let mut gw = Gw::connect(&app, &token).await;
    gw.subscribe("v1/devices/me/rpc/response/+").await;
    let ask = r#"{"method":"getSessionLimits","params":{}}"#;
    gw.send("v1/devices/me/rpc/request/1", ask).await;
    let limits = gw.next("v1/devices/me/rpc/response/1").await;
    assert_eq!(
        limits["rateLimits"],
        json!({"messages": "1000:1", "telemetryMessages": null, "telemetryDataPoints": null})
    );
    assert_eq!(
        limits["gatewayRateLimits"],
        json!({"messages": null, "telemetryMessages": "2:3600", "telemetryDataPoints": null})
    );
    let (a, b) = (unique("A"), unique("B"));
    // Two devices' telemetry take two messages from the one shared bucket.
    let both = json!({ a.clone(): [{"t": 1}], b.clone(): [{"t": 1}] }).to_string();
    assert_eq!(
        gw.send("v1/gateway/telemetry", both).await,
        m5::PubAckReason::Success
    );
    // The gateway's own telemetry uses its own buckets.
    assert_eq!(
        gw.send("v1/devices/me/telemetry", r#"{"t":1}"#).await,
        m5::PubAckReason::Success
    );
    let third = json!({ b.clone(): [{"t": 2}] }).to_string();
    gw.send_closing(
        "v1/gateway/telemetry",
        third,
        m5::DisconnectReasonCode::MessageRateTooHigh,
    )
    .await;
    let notice = gw.next("v1/gateway/disconnect").await;
    assert_eq!(notice, json!({"device": b, "reason": 150}));
    app.shutdown().await;
}
