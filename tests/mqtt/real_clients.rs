//! What was read is processed: back-to-back QoS 0 runs of the real `mosquitto_pub` (PUBLISH and
//! DISCONNECT in one write) are all stored, the ThingsBoard docs' attribute example is stored, and
//! publishes read before a shutdown are stored. Also the mosquitto helpers other modules use.

use std::process::{Command, Output, Stdio};

use crate::clients::{WAIT, create_device, state};
use crate::common::{TestApp, eventually};
use ferroboard::domain::{AttributeScope, KvValue};

/// Runs a mosquitto client to its end (bounded by `WAIT`); panics when it is missing or fails.
pub(crate) async fn mosquitto(program: &'static str, args: Vec<String>) -> Output {
    let run = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program} is required for this test: {e}"))
    });
    let output = tokio::time::timeout(WAIT * 2, run)
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish"))
        .expect("client thread");
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `mosquitto_pub` at its defaults (QoS 0, clean session) against the test server.
pub(crate) async fn mosquitto_pub(app: &TestApp, token: &str, topic: &str, message: &str) {
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &app.mqtt_port.to_string(),
        "-u",
        token,
        "-t",
        topic,
        "-m",
        message,
    ];
    mosquitto(
        "mosquitto_pub",
        args.iter().map(|a| (*a).to_owned()).collect(),
    )
    .await;
}

/// Five runs of `mosquitto_pub` in a row, each a QoS 0 PUBLISH followed at once by DISCONNECT:
/// every value is stored.
pub(crate) async fn back_to_back_qos0_runs_are_all_stored(app: &TestApp) {
    const RUNS: usize = 5;
    let (id, token) = create_device(app).await;
    for i in 0..RUNS {
        let message = format!(r#"{{"run{i}":{i}}}"#);
        mosquitto_pub(app, &token, "v1/devices/me/telemetry", &message).await;
    }
    let store = &state(app).services.store;
    let stored = eventually("every QoS 0 run stored", WAIT, || async {
        let latest = store.latest(id.0, None).await.expect("latest");
        (latest.len() == RUNS).then_some(latest)
    })
    .await;
    for i in 0..RUNS {
        let key = format!("run{i}");
        let point = stored.iter().find(|p| p.key == key);
        assert_eq!(
            point.map(|p| &p.value),
            Some(&KvValue::Long(i as i64)),
            "{key}"
        );
    }
}

/// `mosquitto_pub -t v1/devices/me/attributes -u TOKEN -m '{...}'` (the docs' example, QoS 0).
pub(crate) async fn attribute_example_is_stored(app: &TestApp) {
    let (id, token) = create_device(app).await;
    mosquitto_pub(
        app,
        &token,
        "v1/devices/me/attributes",
        r#"{"attribute1":"value1","attribute2":true,"attribute3":42}"#,
    )
    .await;
    let store = &state(app).services.store;
    let mut got = eventually("attributes stored", WAIT, || async {
        let rows = store
            .find_attributes(id.0, AttributeScope::Client, None)
            .await
            .expect("attributes");
        (rows.len() == 3).then_some(rows)
    })
    .await;
    got.sort_by(|a, b| a.key.cmp(&b.key));
    let got: Vec<_> = got.into_iter().map(|a| (a.key, a.value)).collect();
    assert_eq!(
        got,
        vec![
            ("attribute1".to_owned(), KvValue::Str("value1".into())),
            ("attribute2".to_owned(), KvValue::Bool(true)),
            ("attribute3".to_owned(), KvValue::Long(42)),
        ]
    );
}

/// QoS 0 publishes and a QoS 1 publish written at once, the server shut down as soon as the QoS 1
/// is acknowledged (so all were read): every one of them is in the database afterwards.
pub(crate) async fn shutdown_processes_what_was_read(backend: crate::common::Backend) {
    use rumqttc::v5::mqttbytes::{QoS, v5 as m5};
    const QOS0: usize = 30;
    let mut app = crate::common::spawn_app(backend).await;
    let (id, token) = create_device(&app).await;
    let mut client = crate::clients::Raw5::connect(&app, &token).await;
    let mut burst = bytes::BytesMut::new();
    for i in 0..=QOS0 {
        let qos = if i == QOS0 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let payload = format!(r#"{{"s{i}":{i}}}"#).into_bytes();
        let mut publish = m5::Publish::new("v1/devices/me/telemetry", qos, payload, None);
        publish.pkid = if i == QOS0 { 1 } else { 0 };
        m5::Packet::Publish(publish)
            .write(&mut burst)
            .expect("encode");
    }
    client.write_raw(&burst).await;
    assert_eq!(client.puback().await, m5::PubAckReason::Success);
    let running = app.app.take().expect("running");
    running.shutdown().await.expect("clean shutdown");
    let store = ferroboard::storage::open(&app.database.url, &Default::default())
        .await
        .expect("database reopens");
    let stored = store.latest(id.0, None).await.expect("latest").len();
    store.close().await;
    assert_eq!(
        stored,
        QOS0 + 1,
        "every publish read before shutdown is stored"
    );
}

/// QoS 1 and QoS 0 publishes followed at once by DISCONNECT, and the same followed by the socket
/// closing without one: all four are stored, though no PUBACK could be read.
pub(crate) async fn publishes_before_disconnect_or_close_are_stored(app: &TestApp) {
    use rumqttc::v5::mqttbytes::{QoS, v5 as m5};
    let (id, token) = create_device(app).await;
    for (round, disconnect) in [(0, true), (1, false)] {
        let mut client = crate::clients::Raw5::connect(app, &token).await;
        let mut burst = bytes::BytesMut::new();
        for (i, qos) in [QoS::AtLeastOnce, QoS::AtMostOnce].into_iter().enumerate() {
            let payload = format!(r#"{{"r{round}q{i}":{i}}}"#).into_bytes();
            let mut publish = m5::Publish::new("v1/devices/me/telemetry", qos, payload, None);
            publish.pkid = if qos == QoS::AtLeastOnce { 1 } else { 0 };
            m5::Packet::Publish(publish)
                .write(&mut burst)
                .expect("encode");
        }
        if disconnect {
            m5::Packet::Disconnect(m5::Disconnect::new(
                m5::DisconnectReasonCode::NormalDisconnection,
            ))
            .write(&mut burst)
            .expect("encode");
        }
        client.write_raw(&burst).await;
        drop(client);
    }
    let store = &state(app).services.store;
    eventually(
        "publishes before DISCONNECT or close stored",
        WAIT,
        || async {
            let latest = store.latest(id.0, None).await.expect("latest");
            (latest.len() == 4).then_some(())
        },
    )
    .await;
}
