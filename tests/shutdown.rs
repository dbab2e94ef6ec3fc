//! Shutdown against the real server: it writes the device states before the storage writer stops,
//! and it keeps its 10 s bound when the database stalls every write — on SQLite and PostgreSQL.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{Backend, TestApp, eventually};
use ferroboard::domain::{AttributeScope, KvValue};
use serde_json::json;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn state(app: &TestApp) -> &std::sync::Arc<ferroboard::state::AppState> {
    &app.app.as_ref().expect("running").state
}

async fn device(api: &support::Api) -> (uuid::Uuid, String) {
    let name = format!("stop-{}", uuid::Uuid::new_v4().simple());
    let (id, _) = api.create_device(json!({ "name": name })).await;
    let token = api.token_of(&id).await;
    (id.parse().expect("uuid"), token)
}

async fn publish_qos1(sock: &mut TcpStream, payload: &str) {
    common::raw_mqtt::publish_qos1(sock, "v1/devices/me/telemetry", 1, payload).await;
}

/// Stops the server but keeps its database for inspection.
async fn stop_keeping_the_database(app: &mut TestApp) -> Duration {
    let running = app.app.take().expect("running");
    let started = Instant::now();
    running.shutdown().await.expect("clean shutdown");
    started.elapsed()
}

async fn shutdown_writes_the_device_state(backend: Backend) {
    let mut app = common::spawn_app(backend).await;
    let api = support::Api::tenant(&app).await;
    let (id, token) = device(&api).await;
    let _sock = common::raw_mqtt::session(&app, &token).await;
    let device_id = ferroboard::domain::DeviceId(id);
    eventually("session registered", WAIT, || async {
        state(&app).sessions.is_connected(device_id).then_some(())
    })
    .await;
    eventually("connect recorded", WAIT, || async {
        let attrs = state(&app)
            .services
            .store
            .find_attributes(id, AttributeScope::Server, Some(&["active".to_owned()]))
            .await
            .ok()?;
        attrs
            .iter()
            .any(|a| a.value == KvValue::Bool(true))
            .then_some(())
    })
    .await;
    stop_keeping_the_database(&mut app).await;
    // The last flush ran before the writer stopped: the device is stored inactive, with the
    // disconnect time of the shutdown.
    let store = ferroboard::storage::open(&app.database.url, &Default::default())
        .await
        .expect("reopen");
    let attrs = store
        .find_attributes(id, AttributeScope::Server, None)
        .await
        .expect("attributes");
    let get = |k: &str| attrs.iter().find(|a| a.key == k).map(|a| a.value.clone());
    assert_eq!(get("active"), Some(KvValue::Bool(false)), "{attrs:?}");
    assert!(
        matches!(get("lastDisconnectTime"), Some(KvValue::Long(t)) if t > 0),
        "{attrs:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_device_state_sqlite() {
    shutdown_writes_the_device_state(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_device_state_postgres() {
    shutdown_writes_the_device_state(Backend::Postgres).await;
}

/// Holds the database's write lock (SQLite) or a lock on the time-series table (PostgreSQL) until
/// dropped, so every commit of the server's writer waits.
enum Stall {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Stall {
    async fn release(self) {
        match self {
            Stall::Sqlite(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
            Stall::Postgres(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
        }
    }
}

async fn stall_writes(app: &TestApp) -> Stall {
    use sqlx::Connection as _;
    match app.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database.url)
                .await
                .expect("second SQLite connection");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .expect("write lock");
            Stall::Sqlite(conn)
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database.url)
                .await
                .expect("second PostgreSQL connection");
            sqlx::query("BEGIN")
                .execute(&mut conn)
                .await
                .expect("BEGIN");
            sqlx::query("LOCK TABLE ts_kv IN ACCESS EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .expect("table lock");
            Stall::Postgres(conn)
        }
    }
}

async fn shutdown_keeps_its_bound_with_a_stalled_writer(backend: Backend) {
    let mut app = common::spawn_app_with(backend, |c| c.storage.batch_window_ms = 0).await;
    let api = support::Api::tenant(&app).await;
    let mut devices = Vec::new();
    for _ in 0..5 {
        devices.push(device(&api).await);
    }
    let stall = stall_writes(&app).await;
    // Publish from one device after the other until a write request waits behind the stalled
    // commit: then the writer is certainly stuck.
    let mut sockets = Vec::new();
    let mut stuck = false;
    for (i, (_, token)) in devices.iter().enumerate() {
        let mut sock = common::raw_mqtt::session(&app, token).await;
        publish_qos1(&mut sock, &format!(r#"{{"n":{i}}}"#)).await;
        sockets.push(sock);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if state(&app).services.writer.waiting() >= 1 {
                stuck = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if stuck {
            break;
        }
    }
    assert!(stuck, "a write request waits behind the stalled commit");
    let took = stop_keeping_the_database(&mut app).await;
    eprintln!("{backend:?}: shutdown with a stalled writer took {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?}, over the 10 s the operator contract promises"
    );
    stall.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_its_bound_with_a_stalled_writer_sqlite() {
    shutdown_keeps_its_bound_with_a_stalled_writer(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_its_bound_with_a_stalled_writer_postgres() {
    shutdown_keeps_its_bound_with_a_stalled_writer(Backend::Postgres).await;
}

// ---------------------------------------------------------------- probes for orchestrators

#[allow(dead_code)]
#[path = "cluster/private_pg.rs"]
mod private_pg;

/// Status code of GET `path`, or None when nothing answers.
async fn probe(base: &str, path: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let response = client.get(format!("{base}{path}")).send().await.ok()?;
    Some(response.status().as_u16())
}

/// A shutdown turns readiness off first and keeps serving through the drain window: the probes
/// still answer (ready 503, live 200), a new MQTT connection is still accepted; then the
/// listeners close.
async fn readiness_turns_off_first_then_the_drain_window(backend: Backend) {
    // The longest drain allowed, so the checks below run well inside it.
    let mut app = common::spawn_app_with(backend, |c| c.shutdown.drain_ms = 5000).await;
    assert_eq!(probe(&app.http, "/api/health/ready").await, Some(200));
    assert_eq!(probe(&app.http, "/api/health/live").await, Some(200));
    let running = app.app.take().expect("running");
    let stopping = tokio::spawn(running.shutdown());
    eventually("readiness off", WAIT, || async {
        (probe(&app.http, "/api/health/ready").await == Some(503)).then_some(())
    })
    .await;
    assert_eq!(probe(&app.http, "/api/health").await, Some(503));
    assert_eq!(probe(&app.http, "/api/health/live").await, Some(200));
    TcpStream::connect(("127.0.0.1", app.mqtt_port))
        .await
        .expect("MQTT still accepts during the drain window");
    stopping
        .await
        .expect("shutdown task")
        .expect("clean shutdown");
    assert_eq!(probe(&app.http, "/api/health/live").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_off_first_then_the_drain_window_sqlite() {
    readiness_turns_off_first_then_the_drain_window(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_off_first_then_the_drain_window_postgres() {
    readiness_turns_off_first_then_the_drain_window(Backend::Postgres).await;
}

/// A database outage makes the node unready (503) but not dead (live stays 200); it is ready
/// again once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_makes_the_node_unready_not_dead() {
    let pg = private_pg::PrivatePostgres::start().await;
    let url = pg.url();
    let app = common::spawn_app_with(Backend::Sqlite, |c| c.database_url = url).await;
    assert_eq!(probe(&app.http, "/api/health/ready").await, Some(200));
    pg.stop_server();
    eventually("unready without a database", WAIT, || async {
        (probe(&app.http, "/api/health/ready").await == Some(503)).then_some(())
    })
    .await;
    assert_eq!(probe(&app.http, "/api/health/live").await, Some(200));
    let client = reqwest::Client::new();
    let body: serde_json::Value = client
        .get(format!("{}/api/health/ready", app.http))
        .send()
        .await
        .expect("ready answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["status"], "DOWN", "{body}");
    assert_eq!(body["components"]["database"], "DOWN", "{body}");
    pg.start_server().await;
    eventually("ready again with the database back", WAIT, || async {
        (probe(&app.http, "/api/health/ready").await == Some(200)).then_some(())
    })
    .await;
    app.shutdown().await;
}

/// A node whose PostgreSQL is not up yet waits for it (storage.connect_wait_ms) instead of
/// exiting; with no wait it fails at once, naming the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_waits_for_the_database() {
    let pg = private_pg::PrivatePostgres::start().await;
    pg.stop_server();
    let url = pg.url();
    let refused = {
        let url = url.clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ferroboard::config::Config {
            http_addr: "127.0.0.1:0".into(),
            mqtt_addr: "127.0.0.1:0".into(),
            database_url: url,
            rules_dir: common::rules_copy(dir.path()),
            storage: ferroboard::config::StorageConfig {
                connect_wait_ms: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        ferroboard::app::start(config)
            .await
            .err()
            .expect("no database, no wait: refused")
    };
    assert!(
        refused.to_string().contains("cannot open database"),
        "{refused:#}"
    );
    let starting = tokio::spawn(async move {
        common::spawn_app_with(Backend::Sqlite, |c| {
            c.database_url = url;
            c.storage.connect_wait_ms = 60_000;
        })
        .await
    });
    pg.start_server().await;
    let app = tokio::time::timeout(Duration::from_secs(60), starting)
        .await
        .expect("the start finished once the database was up")
        .expect("start task");
    assert_eq!(probe(&app.http, "/api/health/ready").await, Some(200));
    app.shutdown().await;
}
