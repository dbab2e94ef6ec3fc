//! Test harness: the real server started on port 0 by `app::start`, a fresh database per test.
#![allow(dead_code)]

pub mod raw_mqtt;

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

/// The PostgreSQL server the tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("FERROBOARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// One test's database: a SQLite file in the test's directory, or a new PostgreSQL database that
/// is dropped again when this value is dropped (also when the test failed).
pub struct Database {
    pub url: String,
    pg_name: Option<String>,
}

/// A fresh database for one test; PostgreSQL gets a new database on the local server.
/// A missing PostgreSQL fails the test loudly: it never passes silently.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> Database {
    match backend {
        Backend::Sqlite => Database {
            url: format!("sqlite://{}", dir.join("ferroboard.db").display()),
            pg_name: None,
        },
        Backend::Postgres => {
            use sqlx::Connection as _;
            let admin = pg_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL is required for this test ({admin}): {e}"));
            let name = format!("fb_test_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("CREATE DATABASE");
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            Database {
                url: format!("{base}/{name}"),
                pg_name: Some(name),
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself: a thread of its own
        // with a small runtime drops the database (FORCE ends connections a failed test left).
        let admin = pg_admin_url();
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection as _;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map_err(|e| format!("DROP DATABASE {name}: {e}"))
                .map(drop)
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("test database left behind: {e}");
        }
    }
}

/// A copy of the project's rules directory inside `dir`: test servers never watch or change the
/// checkout's own `rules/`.
pub fn rules_copy(dir: &std::path::Path) -> std::path::PathBuf {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).expect("create rules copy");
        for entry in std::fs::read_dir(from).expect("read rules dir") {
            let entry = entry.expect("rules dir entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy rules file");
            }
        }
    }
    let target = dir.join("rules");
    copy(&rules_dir(), &target);
    target
}

pub struct TestApp {
    pub app: Option<RunningApp>,
    pub http: String,
    pub mqtt_port: u16,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    /// Dropped after the server (fields drop in order).
    pub database: Database,
}

/// The project's default rules directory (read it; servers get a `rules_copy`).
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
        database_url: String::new(),
        rules_dir: rules_copy(dir.path()),
        sysadmin_password: Some(SYSADMIN_PASSWORD.into()),
        admin_password: Some(TENANT_PASSWORD.into()),
        ..Config::default()
    };
    let database = fresh_database(backend, dir.path()).await;
    config.database_url = database.url.clone();
    config.mqtt.workers = 1;
    config.storage.pool_size = 4;
    // Tests stop their servers at once; the drain window has tests of its own (tests/shutdown.rs).
    config.shutdown.drain_ms = 0;
    tweak(&mut config);
    let app = ferroboard::app::start(config).await.expect("server starts");
    TestApp {
        http: format!("http://{}", app.http_addr),
        mqtt_port: app.mqtt_addr.port(),
        app: Some(app),
        backend,
        dir,
        database,
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

/// A string value the database of a test can be told to refuse (`refuse_marker`).
pub const REFUSED: &str = "refused-by-the-database";

/// Makes the database refuse `REFUSED` as a time-series string value at commit (a trigger on
/// SQLite, a CHECK constraint on PostgreSQL): data that passes every check before the batch and
/// still fails the commit.
pub async fn refuse_marker(backend: Backend, url: &str) {
    use sqlx::Connection as _;
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TRIGGER refuse_marker BEFORE INSERT ON ts_kv WHEN NEW.str_v = '{REFUSED}' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )))
            .execute(&mut conn)
            .await
            .expect("create trigger");
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE ts_kv ADD CONSTRAINT refuse_marker CHECK (str_v IS DISTINCT FROM '{REFUSED}')"
            )))
            .execute(&mut conn)
            .await
            .expect("add constraint");
        }
    }
}
