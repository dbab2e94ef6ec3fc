//! Test harness: the real server started on port 0 by `app::start`, a fresh database per test.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ferroboard::app::RunningApp;
use ferroboard::config::Config;

pub const SYSADMIN_EMAIL: &str = "sysadmin@thingsboard.org";
pub const TENANT_EMAIL: &str = "tenant@thingsboard.org";
pub const SYSADMIN_PASSWORD: &str = "test-Sysadmin-1";
pub const TENANT_PASSWORD: &str = "test-Tenant-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database URL for one test; PostgreSQL gets a new database on the local server.
/// A missing PostgreSQL fails the test loudly: it never passes silently.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("ferroboard.db").display()),
        Backend::Postgres => {
            use sqlx::Connection as _;
            let admin = std::env::var("FERROBOARD_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL is required for this test ({admin}): {e}"));
            let name = format!("fb_test_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("CREATE DATABASE");
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub app: Option<RunningApp>,
    pub http: String,
    pub mqtt_port: u16,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
}

/// The project's default rules directory.
pub fn rules_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        http_addr: "127.0.0.1:0".into(),
        mqtt_addr: "127.0.0.1:0".into(),
        database_url: fresh_database(backend, dir.path()).await,
        rules_dir: rules_dir(),
        sysadmin_password: Some(SYSADMIN_PASSWORD.into()),
        admin_password: Some(TENANT_PASSWORD.into()),
        ..Config::default()
    };
    config.mqtt.workers = 1;
    config.storage.pool_size = 4;
    tweak(&mut config);
    let app = ferroboard::app::start(config).await.expect("server starts");
    TestApp {
        http: format!("http://{}", app.http_addr),
        mqtt_port: app.mqtt_addr.port(),
        app: Some(app),
        backend,
        dir,
    }
}

impl TestApp {
    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Polls `check` until it returns Some, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not true after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Generates `<name>_sqlite` and `<name>_postgres` tests from `async fn <name>(app: &TestApp)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        pub mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::spawn_app($crate::common::Backend::Sqlite).await;
                    super::$name(&app).await;
                    app.shutdown().await;
                }
            )*
        }
        pub mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::spawn_app($crate::common::Backend::Postgres).await;
                    super::$name(&app).await;
                    app.shutdown().await;
                }
            )*
        }
    };
}
