//! MQTT device API against the real server: CONNECT codes, telemetry and attributes committed before
//! PUBACK, invalid input, subscriptions, limits, take-over, credentials changed or device deleted over
//! REST, device-profile topics and protobuf, real mosquitto clients, RPC answers by device and request id, hostile payloads, and
//! shutdown — MQTT 3.1.1 and 5, on SQLite and PostgreSQL.

mod backpressure;
mod clients;
#[path = "../common/mod.rs"]
mod common;
mod credentials;
mod downlink;
mod gateway;
mod hostile;
mod profiles;
mod provision;
mod real_clients;
mod rpc_answers;
#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;
mod tls;

use std::time::Duration;

use clients::*;
use common::{TestApp, eventually};
use credentials::{deleting_the_device_closes_its_session, mqtt_basic_credentials_from_rest};
use downlink::downlink_requests_and_pushes;
use ferroboard::domain::{AttributeScope, KvValue};
use gateway::{
    a_device_has_one_session_across_gateway_and_direct, bad_gateway_input,
    gateway_serves_its_devices, persistent_rpc_waits_for_the_gateway,
    renames_and_deletions_reach_the_gateway,
};
use profiles::{
    profile_topics_and_protobuf, shared_attributes_on_subscribe_and_profile_changes,
    shared_attributes_on_subscribe_go_to_the_subscriber_only, validation_exception_ack,
};
use provision::provisioning_over_mqtt;
use real_clients::{
    attribute_example_is_stored, back_to_back_qos0_runs_are_all_stored,
    publishes_before_disconnect_or_close_are_stored,
};
use rpc_answers::{
    a_device_that_reconnects_can_still_answer, another_tenant_cannot_complete_or_overwrite_a_call,
    duplicate_request_uuid_is_refused, rpc_answered_by_mosquitto_pub_from_a_second_connection,
};
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{mqttbytes::v4 as m4, v5};

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
    profile_topics_and_protobuf,
    provisioning_over_mqtt,
    validation_exception_ack,
    shared_attributes_on_subscribe_and_profile_changes,
    shared_attributes_on_subscribe_go_to_the_subscriber_only,
    downlink_requests_and_pushes,
    telemetry_is_committed_before_puback,
    attributes_are_committed_before_puback,
    invalid_input_gets_the_spec_answers,
    newest_session_wins,
    keep_alive_is_enforced,
    mqtt_basic_credentials_from_rest,
    deleting_the_device_closes_its_session,
    back_to_back_qos0_runs_are_all_stored,
    attribute_example_is_stored,
    publishes_before_disconnect_or_close_are_stored,
    rpc_answered_by_mosquitto_pub_from_a_second_connection,
    a_device_that_reconnects_can_still_answer,
    duplicate_request_uuid_is_refused,
    another_tenant_cannot_complete_or_overwrite_a_call,
    gateway_serves_its_devices,
    renames_and_deletions_reach_the_gateway,
    persistent_rpc_waits_for_the_gateway,
    a_device_has_one_session_across_gateway_and_direct,
    bad_gateway_input,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_rate_limits_sqlite() {
    gateway::gateway_rate_limits(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_rate_limits_postgres() {
    gateway::gateway_rate_limits(common::Backend::Postgres).await;
}

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
async fn shutdown_processes_what_was_read_sqlite() {
    real_clients::shutdown_processes_what_was_read(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_processes_what_was_read_postgres() {
    real_clients::shutdown_processes_what_was_read(common::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_with_0x8b_sqlite() {
    shutdown_closes_sessions_with_0x8b(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_with_0x8b_postgres() {
    shutdown_closes_sessions_with_0x8b(common::Backend::Postgres).await;
}
