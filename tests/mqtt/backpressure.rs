//! Backpressure instead of growth: a QoS 0 flood (MQTT 5 and 3.1.1) never has more publishes of the
//! session in processing than its in-flight bound, rate limits belong to the device (a reconnect does not
//! refill them), and a payload of many `ts` groups takes one slot of the engine's bound.

use rumqttc::v5::mqttbytes::{QoS, v5 as m5};

use crate::clients::{Raw5, WAIT, create_device, state};
use crate::common::{Backend, eventually, spawn_app_with};
use ferroboard::domain::{Aggregation, HistoryQuery, SortOrder};

/// Generates `sqlite::<name>` and `postgres::<name>` from `async fn <name>(Backend)`.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        pub mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        pub mod postgres {
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
    qos0_flood_on_v5_stays_within_the_inflight_bound,
    qos0_flood_on_v3_stays_within_the_inflight_bound,
    reconnect_does_not_refill_rate_limits,
    many_ts_groups_take_one_engine_slot,
);

/// 400 QoS 0 publishes written at once on MQTT 5 with an in-flight bound of 4: the session never
/// has more than 4 in processing (it stops reading), and every one of them is stored.
async fn qos0_flood_on_v5_stays_within_the_inflight_bound(backend: Backend) {
    const BOUND: u16 = 4;
    const FLOOD: usize = 400;
    let app = spawn_app_with(backend, |c| c.mqtt.max_inflight = BOUND).await;
    let (id, token) = create_device(&app).await;
    let mut client = Raw5::connect(&app, &token).await;
    let mut burst = bytes::BytesMut::new();
    for i in 0..FLOOD {
        let payload = format!(r#"{{"f{i}":{i}}}"#).into_bytes();
        let publish = m5::Publish::new("v1/devices/me/telemetry", QoS::AtMostOnce, payload, None);
        m5::Packet::Publish(publish)
            .write(&mut burst)
            .expect("encode");
    }
    client.write_raw(&burst).await;
    let stats = &state(&app).mqtt.inflight;
    let store = &state(&app).services.store;
    eventually("the whole flood stored", WAIT * 3, || async {
        let stored = store.latest(id.0, None).await.expect("latest").len();
        (stored == FLOOD).then_some(())
    })
    .await;
    assert!(
        stats.peak_per_session() <= usize::from(BOUND),
        "a session had {} publishes in processing; the bound is {BOUND}",
        stats.peak_per_session()
    );
    assert!(stats.peak_per_session() >= 1, "the flood was counted");
    eventually("nothing left in processing", WAIT, || async {
        (stats.current() == 0).then_some(())
    })
    .await;
    app.shutdown().await;
}

/// The same flood from an MQTT 3.1.1 client.
async fn qos0_flood_on_v3_stays_within_the_inflight_bound(backend: Backend) {
    use rumqttc::mqttbytes::{QoS as Q3, v4 as m4};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BOUND: u16 = 4;
    const FLOOD: usize = 400;
    let app = spawn_app_with(backend, |c| c.mqtt.max_inflight = BOUND).await;
    let (id, token) = create_device(&app).await;
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", app.mqtt_port))
        .await
        .expect("connect");
    let mut out = bytes::BytesMut::new();
    let mut connect = m4::Connect::new("flood-v3");
    connect.keep_alive = 30;
    connect.set_login(token.clone(), "");
    connect.write(&mut out).expect("encode");
    sock.write_all(&out).await.expect("write");
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, sock.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("read");
    assert_eq!(connack, [0x20, 2, 0, 0], "accepted");
    let mut burst = bytes::BytesMut::new();
    for i in 0..FLOOD {
        let payload = format!(r#"{{"f{i}":{i}}}"#).into_bytes();
        m4::Publish::new("v1/devices/me/telemetry", Q3::AtMostOnce, payload)
            .write(&mut burst)
            .expect("encode");
    }
    sock.write_all(&burst).await.expect("write");
    let stats = &state(&app).mqtt.inflight;
    let store = &state(&app).services.store;
    eventually("the whole flood stored", WAIT * 3, || async {
        let stored = store.latest(id.0, None).await.expect("latest").len();
        (stored == FLOOD).then_some(())
    })
    .await;
    assert!(
        (1..=usize::from(BOUND)).contains(&stats.peak_per_session()),
        "a session had {} publishes in processing; the bound is {BOUND}",
        stats.peak_per_session()
    );
    app.shutdown().await;
}

/// `telemetryMessages` 3 per hour: three messages, a reconnect, and the fourth is refused.
async fn reconnect_does_not_refill_rate_limits(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.limits.telemetry_messages = Some("3:3600".into());
    })
    .await;
    let (_, token) = create_device(&app).await;
    let mut first = Raw5::connect(&app, &token).await;
    for i in 0..3 {
        first
            .publish(
                "v1/devices/me/telemetry",
                QoS::AtLeastOnce,
                &format!(r#"{{"n":{i}}}"#),
            )
            .await;
        assert_eq!(first.puback().await, m5::PubAckReason::Success);
    }
    drop(first);
    let mut second = Raw5::connect(&app, &token).await;
    second
        .publish("v1/devices/me/telemetry", QoS::AtLeastOnce, r#"{"n":3}"#)
        .await;
    assert_eq!(
        second.disconnect_reason().await,
        m5::DisconnectReasonCode::MessageRateTooHigh,
        "the new session has the device's spent buckets"
    );
    // Another device has its own buckets.
    let (_, other) = create_device(&app).await;
    let mut third = Raw5::connect(&app, &other).await;
    third
        .publish("v1/devices/me/telemetry", QoS::AtLeastOnce, r#"{"n":0}"#)
        .await;
    assert_eq!(third.puback().await, m5::PubAckReason::Success);
    app.shutdown().await;
}

/// 50 `ts` groups in one PUBLISH with an engine bound of 2: it completes (one slot per PUBLISH,
/// not per group) and all 50 points are stored.
async fn many_ts_groups_take_one_engine_slot(backend: Backend) {
    const GROUPS: i64 = 50;
    let app = spawn_app_with(backend, |c| c.engine.max_in_flight = 2).await;
    let (id, token) = create_device(&app).await;
    let groups: Vec<_> = (0..GROUPS)
        .map(|i| serde_json::json!({"ts": 1_700_000_000_000 + i, "values": {"g": i}}))
        .collect();
    let mut client = Raw5::connect(&app, &token).await;
    client
        .publish(
            "v1/devices/me/telemetry",
            QoS::AtLeastOnce,
            &serde_json::Value::Array(groups).to_string(),
        )
        .await;
    assert_eq!(client.puback().await, m5::PubAckReason::Success);
    let query = HistoryQuery {
        key: "g".to_owned(),
        start_ts: 1_700_000_000_000,
        end_ts: 1_700_000_000_000 + GROUPS,
        interval: 0,
        agg: Aggregation::None,
        limit: 1000,
        order: SortOrder::Asc,
    };
    let points = state(&app)
        .services
        .store
        .history(id.0, &query)
        .await
        .expect("history");
    assert_eq!(points.len(), GROUPS as usize, "committed before the PUBACK");
    eventually("the engine's slots are back", WAIT, || async {
        (state(&app).inflight.available_permits() == 2).then_some(())
    })
    .await;
    app.shutdown().await;
}
