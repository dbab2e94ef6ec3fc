//! Server-side RPC answers by device and request id: from a second connection of the device (the
//! real `mosquitto_sub` receives, `mosquitto_pub` answers), from a session opened after the one
//! that received the request, never from another tenant's device; duplicate `requestUUID`s get
//! ThingsBoard's error JSON, and a caller that goes away leaves no waiter behind.

use rumqttc::v5::mqttbytes::{QoS, v5 as m5};
use serde_json::{Value, json};

use crate::clients::{Raw5, WAIT, create_device, state};
use crate::common::{TestApp, eventually};
use crate::real_clients::{mosquitto, mosquitto_pub};
use crate::support::{Api, Resp, now_ms};
use ferroboard::domain::{DeviceId, TenantId};

const REQUESTS: &str = "v1/devices/me/rpc/request/+";

/// Runs a REST call in the background.
pub(crate) fn post_later(api: &Api, path: String, body: Value) -> tokio::task::JoinHandle<Resp> {
    let api = Api {
        http: api.http.clone(),
        base: api.base.clone(),
        token: api.token.clone(),
    };
    tokio::spawn(async move { api.post(&path, body).await })
}

/// The next RPC request the raw client receives: (request id, payload).
async fn next_request(client: &mut Raw5) -> (String, Value) {
    loop {
        match client.recv().await {
            Some(m5::Packet::Publish(p)) => {
                let topic = String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic");
                if p.qos == QoS::AtLeastOnce {
                    let ack = m5::PubAck::new(p.pkid, None);
                    client.send(m5::Packet::PubAck(ack)).await;
                }
                let id = topic
                    .strip_prefix("v1/devices/me/rpc/request/")
                    .unwrap_or_else(|| panic!("not an RPC request: {topic}"))
                    .to_owned();
                let payload = serde_json::from_slice(&p.payload).expect("JSON request");
                return (id, payload);
            }
            Some(_) => {}
            None => panic!("connection closed before the RPC request"),
        }
    }
}

/// The issue's scenario: `mosquitto_sub` receives the request and exits, `mosquitto_pub` (a new
/// connection of the same device) answers it; the REST caller gets the answer.
pub(crate) async fn rpc_answered_by_mosquitto_pub_from_a_second_connection(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = create_device(app).await;
    let call = post_later(
        &api,
        format!("/api/plugins/rpc/twoway/{id}"),
        json!({"method": "getTemp", "params": {"unit": "C"}, "timeout": 30000}),
    );
    let port = app.mqtt_port.to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-u",
        &token,
        "-q",
        "1",
        "-C",
        "1",
        "-v",
        "-W",
        "20",
        "-t",
        REQUESTS,
    ];
    let out = mosquitto(
        "mosquitto_sub",
        args.iter().map(|a| (*a).to_owned()).collect(),
    )
    .await;
    let line = String::from_utf8(out.stdout).expect("UTF-8 output");
    let (topic, payload) = line.trim().split_once(' ').expect("topic and payload");
    let request_id = topic
        .strip_prefix("v1/devices/me/rpc/request/")
        .unwrap_or_else(|| panic!("not an RPC request: {topic}"));
    let payload: Value = serde_json::from_str(payload).expect("JSON request");
    assert_eq!(
        payload,
        json!({"method": "getTemp", "params": {"unit": "C"}})
    );
    mosquitto_pub(
        app,
        &token,
        &format!("v1/devices/me/rpc/response/{request_id}"),
        r#"{"temp":21.5}"#,
    )
    .await;
    let resp = call.await.expect("REST call");
    assert_eq!(resp.ok(), json!({"temp": 21.5}));
    assert!(
        state(app).services.rpc.sent.is_empty(),
        "answered: forgotten"
    );
}

/// The device receives the request, its connection drops, and it answers from its next session.
pub(crate) async fn a_device_that_reconnects_can_still_answer(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = create_device(app).await;
    let mut first = Raw5::connect(app, &token).await;
    first.suback(REQUESTS).await;
    let call = post_later(
        &api,
        format!("/api/rpc/twoway/{id}"),
        json!({"method": "reboot", "params": {}, "timeout": 30000}),
    );
    let (request_id, payload) = next_request(&mut first).await;
    assert_eq!(payload["method"], "reboot");
    drop(first);
    eventually("first session gone", WAIT, || async {
        (!state(app).sessions.is_connected(id)).then_some(())
    })
    .await;
    let mut second = Raw5::connect(app, &token).await;
    let topic = format!("v1/devices/me/rpc/response/{request_id}");
    second
        .publish(&topic, QoS::AtLeastOnce, r#"{"rebooted":true}"#)
        .await;
    assert_eq!(second.puback().await, m5::PubAckReason::Success);
    let resp = call.await.expect("REST call");
    assert_eq!(resp.ok(), json!({"rebooted": true}));
}

/// A second call with a `requestUUID` in progress, or a persistent one already stored, is a 400
/// with ThingsBoard's error JSON; a caller that goes away takes its waiter with it.
pub(crate) async fn duplicate_request_uuid_is_refused(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, _) = create_device(app).await;
    let waiters = &state(app).services.rpc.waiters;
    let rpc = uuid::Uuid::new_v4();
    let body = json!({"method": "m", "params": {}, "requestUUID": rpc, "timeout": 60000});
    let path = format!("/api/plugins/rpc/twoway/{id}");
    let first = post_later(&api, path.clone(), body.clone());
    eventually("first call waits", WAIT, || async {
        (waiters.len() == 1).then_some(())
    })
    .await;
    let message = api.post(&path, body).await.error(400, 31);
    assert!(message.contains(&rpc.to_string()), "{message}");
    assert_eq!(waiters.len(), 1, "the first call is untouched");
    // The caller goes away: its connection closes and the server drops its waiter.
    first.abort();
    eventually(
        "waiter of a caller that went away removed",
        WAIT,
        || async { waiters.is_empty().then_some(()) },
    )
    .await;

    let persistent = uuid::Uuid::new_v4();
    let body = json!({"method": "m", "params": {}, "requestUUID": persistent, "persistent": true});
    let path = format!("/api/rpc/twoway/{id}");
    assert_eq!(
        api.post(&path, body.clone()).await.ok()["rpcId"],
        persistent.to_string()
    );
    api.post(&path, body).await.error(400, 31);
}

/// A device of another tenant answering the same request id completes nothing, and a waiter of
/// another tenant with the same RPC id neither replaces the call nor gets its answer.
pub(crate) async fn another_tenant_cannot_complete_or_overwrite_a_call(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = create_device(app).await;
    let (other_tenant, other_token) = foreign_device(app).await;
    let mut device = Raw5::connect(app, &token).await;
    device.suback(REQUESTS).await;
    let rpc = uuid::Uuid::new_v4();
    let call = post_later(
        &api,
        format!("/api/plugins/rpc/twoway/{id}"),
        json!({"method": "m", "params": {}, "requestUUID": rpc, "timeout": 30000}),
    );
    let (request_id, _) = next_request(&mut device).await;
    let sent = &state(app).services.rpc.sent;
    assert_eq!(sent.len(), 1);

    // The other tenant's device answers the same id: accepted, matched to nothing.
    let mut foreign = Raw5::connect(app, &other_token).await;
    let topic = format!("v1/devices/me/rpc/response/{request_id}");
    foreign
        .publish(&topic, QoS::AtLeastOnce, r#"{"forged":true}"#)
        .await;
    assert_eq!(foreign.puback().await, m5::PubAckReason::Success);
    assert_eq!(sent.len(), 1, "the call still waits for its own device");

    // The other tenant waits on the same RPC id and device: a separate waiter.
    let request = ferroboard::bus::RpcRequest {
        rpc,
        request_id: 0,
        method: "m".to_owned(),
        params: "{}".to_owned(),
        oneway: false,
        persistent: false,
        expiration_time: now_ms() + 30_000,
        traceparent: None,
    };
    let waiters = &state(app).services.rpc.waiters;
    let mut theirs = waiters
        .wait(other_tenant, id, request)
        .expect("another tenant's key");
    assert_eq!(waiters.len(), 2);

    device
        .publish(&topic, QoS::AtLeastOnce, r#"{"genuine":true}"#)
        .await;
    assert_eq!(device.puback().await, m5::PubAckReason::Success);
    let resp = call.await.expect("REST call");
    assert_eq!(resp.ok(), json!({"genuine": true}));
    assert!(
        theirs.reply.try_recv().is_err(),
        "the other tenant's waiter got nothing"
    );
    drop(theirs);
    assert!(waiters.is_empty());
}

/// A device of a new tenant, made in the store; returns (tenant, token).
pub(crate) async fn foreign_device(app: &TestApp) -> (TenantId, String) {
    let store = &state(app).services.store;
    let tenant = ferroboard::storage::Tenant {
        id: TenantId::new(),
        title: format!("other-{}", uuid::Uuid::new_v4().simple()),
        created_time: now_ms(),
    };
    store.create_tenant(&tenant).await.expect("tenant");
    let profile = ferroboard::services::accounts::default_profile(tenant.id, now_ms());
    store.create_profile(&profile).await.expect("profile");
    let device = ferroboard::storage::Device {
        id: DeviceId::new(),
        tenant_id: tenant.id,
        customer_id: None,
        created_time: now_ms(),
        name: "foreign".into(),
        label: None,
        profile_id: profile.id,
        profile_name: profile.name.clone(),
        additional_info: json!({}),
        firmware_id: None,
        software_id: None,
        version: 1,
    };
    let token = format!("foreign-{}", uuid::Uuid::new_v4().simple());
    let creds = ferroboard::storage::DeviceCredentials {
        id: uuid::Uuid::new_v4(),
        device_id: device.id,
        created_time: now_ms(),
        credentials_type: "ACCESS_TOKEN".into(),
        credentials_id: token.clone(),
        credentials_value: None,
        version: 1,
    };
    store.create_device(&device, &creds).await.expect("device");
    (tenant.id, token)
}
