//! Server→device traffic over MQTT 3.1.1: shared-attribute pushes, attribute requests, getSessionLimits,
//! and rate limits that close the session.

use crate::clients::*;
use crate::common::{self, TestApp};
use ferroboard::domain::{AttributeScope, KvValue};
use rumqttc::mqttbytes::v4 as m4;

pub(crate) async fn v3_message(c: &mut V3, topic_prefix: &str) -> (String, serde_json::Value) {
    let prefix = topic_prefix.to_owned();
    wait_for(&mut c.events, "PUBLISH from the server", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::Publish(p))) if p.topic.starts_with(&prefix) => {
            Some((
                p.topic.clone(),
                serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null),
            ))
        }
        _ => None,
    })
    .await
}

pub(crate) async fn v3_suback(c: &mut V3) -> Vec<m4::SubscribeReasonCode> {
    wait_for(&mut c.events, "SUBACK", |ev| match ev {
        Ok(rumqttc::Event::Incoming(m4::Packet::SubAck(s))) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await
}

pub(crate) async fn downlink_requests_and_pushes(app: &TestApp) {
    let (id, token) = create_device(app).await;
    let services = &state(app).services;
    let mut c3 = v3(app, Some(&token), 30);
    v3_connack(&mut c3).await.expect("connected");
    c3.client
        .subscribe("v1/devices/me/attributes", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("queued");
    assert_eq!(
        v3_suback(&mut c3).await,
        vec![m4::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)]
    );

    // Shared-attribute push: exactly the given keys, then the deleted form.
    let kvs = vec![
        ferroboard::domain::Kv {
            key: "target".into(),
            value: KvValue::Double(21.5),
        },
        ferroboard::domain::Kv {
            key: "mode".into(),
            value: KvValue::Str("eco".into()),
        },
    ];
    services.push_shared_attributes(id, &kvs).await;
    let (_, pushed) = v3_message(&mut c3, "v1/devices/me/attributes").await;
    assert_eq!(pushed, serde_json::json!({"target": 21.5, "mode": "eco"}));
    services.push_shared_deleted(id, &["mode".to_owned()]).await;
    let (_, deleted) = v3_message(&mut c3, "v1/devices/me/attributes").await;
    assert_eq!(deleted, serde_json::json!({"deleted": ["mode"]}));

    // Attribute request: client and shared sections, missing keys absent.
    services
        .save_attributes(
            id.0,
            AttributeScope::Client,
            vec![ferroboard::domain::Kv {
                key: "fw".into(),
                value: KvValue::Long(7),
            }],
            1,
        )
        .await
        .expect("saved");
    services
        .save_attributes(id.0, AttributeScope::Shared, kvs.clone(), 1)
        .await
        .expect("saved");
    c3.client
        .publish(
            "v1/devices/me/attributes/request/5",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"clientKeys":"fw,nope","sharedKeys":"target"}"#,
        )
        .await
        .expect("queued");
    let (topic, body) = v3_message(&mut c3, "v1/devices/me/attributes/response/").await;
    assert_eq!(topic, "v1/devices/me/attributes/response/5");
    assert_eq!(
        body,
        serde_json::json!({"client": {"fw": 7}, "shared": {"target": 21.5}})
    );

    // getSessionLimits is answered by the transport.
    c3.client
        .publish(
            "v1/devices/me/rpc/request/9",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"method":"getSessionLimits","params":{}}"#,
        )
        .await
        .expect("queued");
    let (topic, limits) = v3_message(&mut c3, "v1/devices/me/rpc/response/").await;
    assert_eq!(topic, "v1/devices/me/rpc/response/9");
    assert_eq!(limits["maxPayloadSize"], 65536);
    assert_eq!(limits["maxInflightMessages"], 100);
    assert_eq!(
        limits["rateLimits"],
        serde_json::json!({"messages": null, "telemetryMessages": null, "telemetryDataPoints": null})
    );
}

pub(crate) async fn rate_limit_closes_the_session(backend: common::Backend) {
    let app = common::spawn_app_with(backend, |c| {
        c.limits.telemetry_data_points = Some("4:3600".into());
    })
    .await;
    let (_, token) = create_device(&app).await;
    let mut c3 = v3(&app, Some(&token), 30);
    v3_connack(&mut c3).await.expect("connected");
    c3.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"a":1,"b":2,"c":3}"#,
        )
        .await
        .expect("queued");
    v3_puback(&mut c3).await;
    c3.client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"a":1,"b":2}"#,
        )
        .await
        .expect("queued");
    v3_closed(&mut c3).await;
    let metrics = state(&app).metrics.render();
    assert!(
        metrics.contains("ferroboard_rate_limited_total{limit=\"telemetryDataPoints\"}"),
        "the metric names the limit"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn rate_limit_closes_the_session_sqlite() {
    rate_limit_closes_the_session(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn rate_limit_closes_the_session_postgres() {
    rate_limit_closes_the_session(common::Backend::Postgres).await;
}
