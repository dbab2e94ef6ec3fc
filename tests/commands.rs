//! The operator commands of the binary: `healthcheck`, `migrate --dry-run` and `backup`, run as
//! processes against real databases and a real server.

mod common;

use std::process::{Command, Output};

use common::Backend;
use ferroboard::domain::KvValue;
use ferroboard::storage::WriteOp;

/// `ferroboard ARGS` with only the given `FERROBOARD_*` variables (none of the caller's).
fn ferroboard(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferroboard"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FERROBOARD_") {
            command.env_remove(name);
        }
    }
    command.args(args).envs(vars.iter().copied());
    command.output().expect("run ferroboard")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_by_the_health_status() {
    let app = common::spawn_app(Backend::Sqlite).await;
    let addr = app.http.trim_start_matches("http://").to_owned();
    let up = ferroboard(&["healthcheck"], &[("FERROBOARD_HTTP_ADDR", &addr)]);
    assert!(up.status.success(), "{}{}", stdout(&up), stderr(&up));
    assert!(stdout(&up).contains(r#""status":"UP""#), "{}", stdout(&up));
    // A wildcard listen address is asked on loopback.
    let port = addr.rsplit_once(':').expect("port").1;
    let wildcard = ferroboard(
        &["healthcheck"],
        &[("FERROBOARD_HTTP_ADDR", &format!("0.0.0.0:{port}"))],
    );
    assert!(wildcard.status.success(), "{}", stderr(&wildcard));
    app.shutdown().await;
    // Nothing listens any more: non-zero, naming the address.
    let down = ferroboard(
        &["healthcheck", "--timeout-ms", "2000"],
        &[("FERROBOARD_HTTP_ADDR", &addr)],
    );
    assert!(!down.status.success());
    assert!(stderr(&down).contains(&addr), "{}", stderr(&down));
}

async fn dry_run_lists_without_applying(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = common::fresh_database(backend, dir.path()).await;
    let vars = [("FERROBOARD_DATABASE_URL", database.url.as_str())];
    for _ in 0..2 {
        let listed = ferroboard(&["migrate", "--dry-run"], &vars);
        assert!(listed.status.success(), "{}", stderr(&listed));
        let text = stdout(&listed);
        assert!(text.contains("pending: 0001 init"), "{text}");
        assert!(text.contains("pending: 0013 retention"), "{text}");
    }
    let applied = ferroboard(&["migrate"], &vars);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let none = ferroboard(&["migrate", "--dry-run"], &vars);
    assert!(none.status.success(), "{}", stderr(&none));
    assert_eq!(stdout(&none).trim(), "no pending migrations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_dry_run_lists_without_applying_sqlite() {
    dry_run_lists_without_applying(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_dry_run_lists_without_applying_postgres() {
    dry_run_lists_without_applying(Backend::Postgres).await;
}

/// A backup taken while the server runs is a complete database a server starts from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_running_sqlite_server_restores() {
    let app = common::spawn_app(Backend::Sqlite).await;
    let device = uuid::Uuid::new_v4();
    let state = &app.app.as_ref().expect("running").state;
    state
        .services
        .writer
        .write(vec![WriteOp::Timeseries {
            entity: device,
            points: vec![ferroboard::domain::TsKv {
                ts: 1,
                key: "t".into(),
                value: KvValue::Long(7),
            }],
            ttl_ms: None,
        }])
        .await
        .expect("write");
    // Outside the server's folder, which goes with the server.
    let keep = tempfile::tempdir().expect("tempdir");
    let file = keep.path().join("backup.db");
    let file_text = file.to_str().expect("utf-8 path");
    let vars = [("FERROBOARD_DATABASE_URL", app.database.url.as_str())];
    let done = ferroboard(&["backup", file_text], &vars);
    assert!(done.status.success(), "{}", stderr(&done));
    let again = ferroboard(&["backup", file_text], &vars);
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );
    app.shutdown().await;
    // The restore of docs/operations.md: the backup file is the database of a new start.
    let restored = common::spawn_app_with(Backend::Sqlite, |c| {
        c.database_url = format!("sqlite://{file_text}");
    })
    .await;
    let store = &restored.app.as_ref().expect("running").state.services.store;
    assert_eq!(
        store.latest(device, None).await.expect("latest"),
        vec![ferroboard::domain::TsKv {
            ts: 1,
            key: "t".into(),
            value: KvValue::Long(7),
        }]
    );
    restored.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_postgres_points_at_pg_dump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = common::fresh_database(Backend::Postgres, dir.path()).await;
    let file = dir.path().join("backup.db");
    let refused = ferroboard(
        &["backup", file.to_str().expect("utf-8 path")],
        &[("FERROBOARD_DATABASE_URL", &database.url)],
    );
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("pg_dump"), "{}", stderr(&refused));
    assert!(!file.exists());
}
