//! Hostile payloads from real clients: numbers with huge exponents, deep nesting, long keys, NUL
//! characters and oversized values are typed or refused as invalid without harming the server,
//! and one device's refused data never fails another device's concurrent messages.

use ferroboard::domain::KvValue;
use ferroboard::storage::SortOrder;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5 as m5;

use super::clients::*;
use super::common::{self, Backend, REFUSED, TestApp, refuse_marker};

/// `json.max_value_size` of these servers: small enough to exceed inside one MQTT packet.
const MAX_VALUE: usize = 1024;

async fn app(backend: Backend) -> TestApp {
    common::spawn_app_with(backend, |c| c.json.max_value_size = MAX_VALUE).await
}

/// Runs `mosquitto_pub` (MQTT 3.1.1, QoS 1) and returns whether it exited successfully; the
/// `timeout` wrapper bounds it even when the server never answers.
async fn mosquitto_pub_qos1(app: &TestApp, token: &str, payload: &str) -> bool {
    let port = app.mqtt_port.to_string();
    let (token, payload) = (token.to_owned(), payload.to_owned());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args([
                "20",
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "mqttv311",
            ])
            .args([
                "-u",
                &token,
                "-q",
                "1",
                "-t",
                "v1/devices/me/telemetry",
                "-m",
                &payload,
            ])
            .output()
            .expect("mosquitto_pub is installed (mosquitto-clients)")
            .status
            .success()
    })
    .await
    .expect("mosquitto_pub ran")
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Payloads that must be refused as invalid.
fn invalid_payloads() -> Vec<String> {
    vec![
        format!(r#"{{"deep":{}}}"#, nested(200)),
        format!("{{deep:{}}}", nested(200)),
        format!(r#"{{"{}":1}}"#, "k".repeat(256)),
        r#"{"s":"nul \u0000 inside"}"#.to_owned(),
        r#"{"j":{"a":["\u0000"]}}"#.to_owned(),
        format!(r#"{{"big":"{}"}}"#, "x".repeat(MAX_VALUE + 1)),
    ]
}

async fn latest(app: &TestApp, id: uuid::Uuid, key: &str) -> Option<KvValue> {
    let latest = state(app)
        .services
        .store
        .latest(id, Some(&[key.to_owned()]))
        .await
        .expect("latest");
    latest.into_iter().next().map(|p| p.value)
}

async fn hostile_payloads_are_typed_or_refused(backend: Backend) {
    let app = app(backend).await;
    let (id, token) = create_device(&app).await;

    // The 20-byte payload that once ended the process is a STRING of the number's text.
    assert!(mosquitto_pub_qos1(&app, &token, r#"{"t":1e999999999999}"#).await);
    assert_eq!(
        latest(&app, id.0, "t").await,
        Some(KvValue::Str("1e+999999999999".into()))
    );
    let huge_int = "9".repeat(MAX_VALUE);
    assert!(
        mosquitto_pub_qos1(
            &app,
            &token,
            &format!(r#"{{"i":{huge_int},"d":-1e-999999999}}"#)
        )
        .await
    );
    assert_eq!(latest(&app, id.0, "i").await, Some(KvValue::Str(huge_int)));
    assert_eq!(
        latest(&app, id.0, "d").await,
        Some(KvValue::Str("-1e-999999999".into()))
    );

    // MQTT 5, QoS 1: PUBACK 0x99 for each, and the session stays usable.
    let mut c5 = Raw5::connect(&app, &token).await;
    let qos1 = v5::mqttbytes::QoS::AtLeastOnce;
    for payload in invalid_payloads() {
        c5.publish("v1/devices/me/telemetry", qos1, &payload).await;
        assert_eq!(
            c5.puback().await,
            m5::PubAckReason::PayloadFormatInvalid,
            "{}",
            &payload[..payload.len().min(60)]
        );
        c5.publish("v1/devices/me/attributes", qos1, &payload).await;
        assert_eq!(c5.puback().await, m5::PubAckReason::PayloadFormatInvalid);
    }
    c5.publish("v1/devices/me/telemetry", qos1, r#"{"after":5}"#)
        .await;
    assert_eq!(c5.puback().await, m5::PubAckReason::Success);
    assert_eq!(latest(&app, id.0, "after").await, Some(KvValue::Long(5)));

    // MQTT 3.1.1: the connection is closed without a PUBACK, nothing is stored, and the server
    // keeps serving the next client.
    for payload in invalid_payloads() {
        let mut c3 = v3(&app, Some(&token), 30);
        v3_connack(&mut c3).await.expect("connected");
        c3.client
            .publish(
                "v1/devices/me/telemetry",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("queued");
        v3_closed(&mut c3).await;
    }
    assert!(mosquitto_pub_qos1(&app, &token, r#"{"after":6}"#).await);
    assert_eq!(latest(&app, id.0, "after").await, Some(KvValue::Long(6)));
    for key in ["deep", "s", "j", "big"] {
        assert_eq!(latest(&app, id.0, key).await, None, "{key}");
    }
    app.shutdown().await;
}

/// Device A's data, refused by the database at commit, fails only A's messages while device B
/// publishes at the same time: every one of B's messages is acknowledged and stored.
async fn one_devices_refused_data_does_not_fail_anothers(backend: Backend) {
    let app = app(backend).await;
    refuse_marker(backend, &app.database.url).await;
    let (_, token_a) = create_device(&app).await;
    let (id_b, token_b) = create_device(&app).await;
    let mut a = Raw5::connect(&app, &token_a).await;
    let mut b = v5(&app, Some(&token_b));
    v5_connack(&mut b).await.expect("B connected");
    const N: i64 = 40;
    let qos1 = v5::mqttbytes::QoS::AtLeastOnce;
    let publish_b = async {
        for i in 0..N {
            let payload = format!(r#"{{"ts":{},"values":{{"n":{i}}}}}"#, 1_700_000_000_000 + i);
            b.client
                .publish("v1/devices/me/telemetry", qos1, false, payload)
                .await
                .expect("queued");
        }
        let mut reasons = Vec::new();
        for _ in 0..N {
            reasons.push(v5_puback(&mut b).await);
        }
        reasons
    };
    let publish_a = async {
        let mut reasons = Vec::new();
        for round in 0..10 {
            let payload = if round % 2 == 0 {
                format!(r#"{{"s":"{REFUSED}"}}"#)
            } else {
                invalid_payloads().swap_remove(round % 6)
            };
            a.publish("v1/devices/me/telemetry", qos1, &payload).await;
            reasons.push(a.puback().await);
        }
        reasons
    };
    let (reasons_b, reasons_a) = tokio::join!(publish_b, publish_a);
    assert!(
        reasons_a
            .iter()
            .all(|r| *r == m5::PubAckReason::PayloadFormatInvalid),
        "A's messages are refused as invalid: {reasons_a:?}"
    );
    assert!(
        reasons_b.iter().all(|r| *r == m5::PubAckReason::Success),
        "B's messages all succeed: {reasons_b:?}"
    );
    let stored = state(&app)
        .services
        .store
        .history(
            id_b.0,
            &ferroboard::storage::HistoryQuery {
                key: "n".into(),
                start_ts: 1_700_000_000_000,
                end_ts: 1_700_000_000_000 + N,
                interval: 0,
                agg: ferroboard::storage::Aggregation::None,
                limit: 1000,
                order: SortOrder::Asc,
            },
        )
        .await
        .expect("history");
    assert_eq!(
        stored.len(),
        N as usize,
        "every acknowledged message of B is stored"
    );
    // A's session is still usable for good data.
    a.publish("v1/devices/me/telemetry", qos1, r#"{"ok":1}"#)
        .await;
    assert_eq!(a.puback().await, m5::PubAckReason::Success);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_are_typed_or_refused_sqlite() {
    hostile_payloads_are_typed_or_refused(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_are_typed_or_refused_postgres() {
    hostile_payloads_are_typed_or_refused(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_devices_refused_data_does_not_fail_anothers_sqlite() {
    one_devices_refused_data_does_not_fail_anothers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_devices_refused_data_does_not_fail_anothers_postgres() {
    one_devices_refused_data_does_not_fail_anothers(Backend::Postgres).await;
}
