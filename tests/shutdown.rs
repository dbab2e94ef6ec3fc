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
            if state(&app).services.writer.queued() >= 1 {
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
