//! Device connectivity state against the real server: `active` and the last connect / disconnect /
//! activity times as SERVER_SCOPE attributes, DeviceInfo `active`, and the CONNECT / DISCONNECT /
//! ACTIVITY / INACTIVITY events seen by a recording rule chain — on SQLite and PostgreSQL.

mod common;
#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestApp, eventually};
use ferroboard::domain::{AttributeScope, KvValue, now_ms};
use serde_json::{Value, json};
use support::Api;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
/// Long enough for the periodic activity flush (5 s) and a slow CI machine.
const FLUSH_WAIT: Duration = Duration::from_secs(20);

/// Telemetry is saved; every connectivity event is stored as a SHARED attribute named after its
/// type, holding `{"data": ..., "meta": ...}` (turned into an attributes message for the save node).
const CHAIN: &str = r#"
name = "Recording Root"
root = true
entry = "switch"

[[nodes]]
id = "switch"
type = "message_type_switch"

[[nodes]]
id = "save_timeseries"
type = "save_timeseries"

[[nodes]]
id = "record"
type = "script_transform"
script = "record.rhai"

[[nodes]]
id = "save_record"
type = "save_attributes"
scope = "SHARED_SCOPE"

[[relations]]
from = "switch"
type = "Post telemetry"
to = "save_timeseries"

[[relations]]
from = "switch"
type = "Connect Event"
to = "record"

[[relations]]
from = "switch"
type = "Disconnect Event"
to = "record"

[[relations]]
from = "switch"
type = "Activity Event"
to = "record"

[[relations]]
from = "switch"
type = "Inactivity Event"
to = "record"

[[relations]]
from = "record"
type = "Success"
to = "save_record"
"#;

const RECORD: &str = r#"
let out = #{};
out[msgType] = #{ data: msg, meta: metadata };
metadata.scope = "SHARED_SCOPE";
#{ msg: out, metadata: metadata, msgType: "POST_ATTRIBUTES_REQUEST" }
"#;

fn recording_rules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.chain.toml"), CHAIN).expect("write chain");
    std::fs::write(dir.path().join("record.rhai"), RECORD).expect("write script");
    dir
}

/// `<name>_sqlite` / `<name>_postgres` with the recording rules and an inactivity timeout (ms).
macro_rules! state_tests {
    ($($name:ident: $timeout:expr),* $(,)?) => {
        state_tests!(@backend sqlite, Sqlite, $($name: $timeout),*);
        state_tests!(@backend postgres, Postgres, $($name: $timeout),*);
    };
    (@backend $module:ident, $backend:ident, $($name:ident: $timeout:expr),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let rules = super::recording_rules();
                    let app = crate::common::spawn_app_with(
                        crate::common::Backend::$backend,
                        |c| {
                            c.rules_dir = rules.path().to_owned();
                            c.rpc.inactivity_timeout_ms = $timeout;
                        },
                    )
                    .await;
                    super::$name(&app).await;
                    app.shutdown().await;
                }
            )*
        }
    };
}

state_tests! {
    connect_and_disconnect: 600_000,
    inactivity_timeout: 1_500,
    telemetry_updates_last_activity: 600_000,
}

/// A device created through the REST API: (id, access token).
async fn device(api: &Api) -> (uuid::Uuid, String) {
    let name = format!("state-{}", uuid::Uuid::new_v4().simple());
    let (id, _) = api
        .create_device(json!({"name": name, "label": "Lab"}))
        .await;
    let token = api.token_of(&id).await;
    (id.parse().expect("uuid"), token)
}

/// An MQTT 3.1.1 session, connected (CONNACK seen).
struct Session {
    client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
}

async fn connect(app: &TestApp, token: &str) -> Session {
    let mut opts = rumqttc::MqttOptions::new(
        format!("c-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        app.mqtt_port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_credentials(token, "");
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
    let (tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let ev = eventloop.poll().await.map_err(|e| format!("{e:?}"));
            let end = ev.is_err();
            if tx.send(ev).is_err() || end {
                break;
            }
        }
    });
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))) => {
                    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("no CONNACK: {other:?}"),
            }
        }
    })
    .await
    .expect("CONNACK in time");
    Session { client, events }
}

/// The device's attributes of one scope as JSON values.
async fn attrs(app: &TestApp, id: uuid::Uuid, scope: AttributeScope) -> HashMap<String, Value> {
    let store = &app.app.as_ref().expect("running").state.services.store;
    store
        .find_attributes(id, scope, None)
        .await
        .expect("attributes")
        .into_iter()
        .map(|a| {
            let v = match a.value {
                KvValue::Bool(b) => Value::Bool(b),
                KvValue::Long(n) => Value::from(n),
                KvValue::Double(d) => Value::from(d),
                KvValue::Str(s) => Value::String(s),
                KvValue::Json(j) => serde_json::from_str(&j).expect("JSON attribute"),
            };
            (a.key, v)
        })
        .collect()
}

/// Waits until the SERVER_SCOPE state satisfies `check`; returns it.
async fn server_state(
    app: &TestApp,
    id: uuid::Uuid,
    what: &str,
    wait: Duration,
    check: impl Fn(&HashMap<String, Value>) -> bool,
) -> HashMap<String, Value> {
    eventually(what, wait, || async {
        let a = attrs(app, id, AttributeScope::Server).await;
        check(&a).then_some(a)
    })
    .await
}

/// Waits until the recording chain stored an event of `msg_type` satisfying `check`.
async fn recorded(
    app: &TestApp,
    id: uuid::Uuid,
    msg_type: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(msg_type, WAIT, || async {
        let a = attrs(app, id, AttributeScope::Shared).await;
        a.get(msg_type).filter(|v| check(v)).cloned()
    })
    .await
}

async fn info_active(api: &Api, id: uuid::Uuid) -> bool {
    let info = api.get(&format!("/api/device/info/{id}")).await.ok();
    info["active"].as_bool().expect("DeviceInfo.active")
}

fn long(state: &HashMap<String, Value>, key: &str) -> i64 {
    state.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn assert_metadata(event: &Value, id: uuid::Uuid) {
    let meta = &event["meta"];
    assert_eq!(meta["scope"], "SERVER_SCOPE", "{event}");
    assert_eq!(meta["deviceLabel"], "Lab", "{event}");
    assert_eq!(meta["deviceType"], "default", "{event}");
    assert!(
        meta["deviceName"]
            .as_str()
            .is_some_and(|n| n.starts_with("state-")),
        "{event} {id}"
    );
}

async fn connect_and_disconnect(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = device(&api).await;
    assert!(!info_active(&api, id).await, "never connected");
    let session = connect(app, &token).await;

    let state = server_state(app, id, "active after connect", WAIT, |a| {
        a.get("active") == Some(&Value::Bool(true)) && long(a, "lastConnectTime") > 0
    })
    .await;
    let connected_at = long(&state, "lastConnectTime");
    assert!(info_active(&api, id).await);
    let page = api
        .get("/api/tenant/deviceInfos?pageSize=100&page=0")
        .await
        .ok();
    let row = page["data"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"]["id"] == id.to_string()))
        .cloned()
        .expect("device in the page");
    assert_eq!(row["active"], true, "{row}");

    let connect = recorded(app, id, "CONNECT_EVENT", |_| true).await;
    assert_eq!(
        connect["data"]["lastConnectTime"], connected_at,
        "{connect}"
    );
    assert!(
        connect["data"].get("active").is_none(),
        "connect omits active: {connect}"
    );
    assert_eq!(connect["data"]["inactivityTimeout"], 600_000, "{connect}");
    assert_metadata(&connect, id);
    let activity = recorded(app, id, "ACTIVITY_EVENT", |_| true).await;
    assert_eq!(activity["data"]["active"], true, "{activity}");
    assert_metadata(&activity, id);

    session.client.disconnect().await.expect("DISCONNECT");
    drop(session.events);
    let state = server_state(app, id, "inactive after disconnect", WAIT, |a| {
        a.get("active") == Some(&Value::Bool(false)) && long(a, "lastDisconnectTime") > 0
    })
    .await;
    assert!(long(&state, "lastDisconnectTime") >= connected_at);
    assert!(!info_active(&api, id).await);
    let disconnect = recorded(app, id, "DISCONNECT_EVENT", |_| true).await;
    assert_eq!(disconnect["data"]["active"], false, "{disconnect}");
    assert_metadata(&disconnect, id);
}

async fn inactivity_timeout(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = device(&api).await;
    let session = connect(app, &token).await;
    server_state(app, id, "active after connect", WAIT, |a| {
        a.get("active") == Some(&Value::Bool(true))
    })
    .await;

    // Still connected, but silent for longer than the 1.5 s timeout.
    let state = server_state(app, id, "inactive after the timeout", WAIT, |a| {
        a.get("active") == Some(&Value::Bool(false)) && long(a, "inactivityAlarmTime") > 0
    })
    .await;
    assert!(long(&state, "inactivityAlarmTime") >= long(&state, "lastActivityTime") + 1_500);
    assert!(!info_active(&api, id).await);
    let inactivity = recorded(app, id, "INACTIVITY_EVENT", |_| true).await;
    assert_eq!(inactivity["data"]["active"], false, "{inactivity}");
    assert_eq!(
        inactivity["data"]["inactivityTimeout"], 1_500,
        "{inactivity}"
    );
    assert_metadata(&inactivity, id);

    // A message makes it active again: a second ACTIVITY_EVENT, after the inactivity alarm.
    session
        .client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"t":1}"#,
        )
        .await
        .expect("publish");
    let again = recorded(app, id, "ACTIVITY_EVENT", |e| {
        e["data"]["lastInactivityAlarmTime"].as_i64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(again["data"]["active"], true, "{again}");
}

async fn telemetry_updates_last_activity(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, token) = device(&api).await;
    let session = connect(app, &token).await;
    let state = server_state(app, id, "activity recorded at connect", WAIT, |a| {
        long(a, "lastActivityTime") > 0
    })
    .await;
    let first = long(&state, "lastActivityTime");
    eventually("the clock moves on", WAIT, || async {
        (now_ms() > first).then_some(())
    })
    .await;

    session
        .client
        .publish(
            "v1/devices/me/telemetry",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"t":1}"#,
        )
        .await
        .expect("publish");
    let state = server_state(app, id, "lastActivityTime advanced", FLUSH_WAIT, |a| {
        long(a, "lastActivityTime") > first
    })
    .await;
    assert_eq!(state.get("active"), Some(&Value::Bool(true)));
    assert!(long(&state, "lastActivityTime") <= now_ms());
}
