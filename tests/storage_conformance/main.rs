//! Storage conformance: one suite of cases, run against SQLite (`sqlite::*`) and PostgreSQL
//! (`postgres::*`), each on a fresh database. Cases live in `accounts`, `sessions`, `devices`,
//! `profiles`, `attributes`, `telemetry`, `retention`, `rpc`, `tenancy`, `ota`, `isolation` (the group-commit writer's
//! one-message-never-fails-another) and `writer` (its order and pipeline).

mod accounts;
mod attributes;
#[path = "../common/mod.rs"]
mod common;
mod devices;
mod fixtures;
mod isolation;
mod ota;
mod profiles;
mod retention;
mod rpc;
mod sessions;
mod telemetry;
mod tenancy;
mod writer;

use ferroboard::config::StorageConfig;
use ferroboard::domain::KvValue;
use ferroboard::storage::{DynStore, WriteOp};
use uuid::Uuid;

use common::Backend;
use fixtures::{pt, ts_op};

struct Db {
    store: DynStore,
    /// Dropped after the store (fields drop in order).
    _database: common::Database,
    _dir: tempfile::TempDir,
}

async fn open(backend: Backend) -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = common::fresh_database(backend, dir.path()).await;
    let options = StorageConfig {
        pool_size: 4,
        ..StorageConfig::default()
    };
    let store = ferroboard::storage::open(&database.url, &options)
        .await
        .expect("open store");
    store.migrate().await.expect("migrate");
    Db {
        store,
        _database: database,
        _dir: dir,
    }
}

/// Generates `sqlite::<case>` and `postgres::<case>` from `async fn <case>(&dyn Store)`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::open(super::Backend::Sqlite).await;
                    super::$case(db.store.as_ref()).await;
                    db.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::open(super::Backend::Postgres).await;
                    super::$case(db.store.as_ref()).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

conformance!(
    migrate_twice_is_idempotent,
    tenants_and_users,
    device_profiles,
    profile_update_delete_and_default,
    devices_crud_and_conflicts,
    credentials_lookup_and_update,
    delete_device_removes_its_data,
    device_paging_sorting_and_search,
    attributes_save_find_keys_delete,
    timeseries_duplicates_and_latest_order,
    history_range_limit_and_order,
    aggregations,
    delete_timeseries_ranges_and_latest,
    typed_values_round_trip,
    large_batches_and_many_keys,
    settings_first_writer_wins,
    rpc_create_get_and_transitions,
    rpc_paging_pending_and_expiry,
    rpc_sent_and_timeout_are_open,
    login_failures_lock_and_clear,
    users_are_disabled_and_deleted,
    tenant_admins_are_counted,
    sessions_rotate_and_end,
    sessions_are_bounded_per_user_and_expire,
    password_change_replaces_every_session,
    tenants_page_update_and_delete_everything,
    customers_titles_users_and_devices,
    activations_are_used_once,
    claims_assign_once,
    ota_packages_crud_paging_and_conflicts,
    ota_files_are_read_by_range,
    expired_points_are_deleted_in_bounded_batches,
    deleted_latest_is_rewritten_when_asked,
    no_migration_is_pending_after_migrate,
    backup_copies_sqlite_and_names_pg_dump_for_postgres,
);

// ---------------------------------------------------------------- fixtures

use accounts::*;
use attributes::*;
use devices::*;
use ota::*;
use profiles::*;
use retention::*;
use rpc::*;
use sessions::*;
use telemetry::*;
use tenancy::*;

/// Rough write throughput: `cargo test --release --test storage_conformance -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_commit_throughput() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = open(backend).await;
        let devices: Vec<Uuid> = (0..500).map(|_| Uuid::new_v4()).collect();
        let batches = 50;
        let started = std::time::Instant::now();
        for b in 0..batches {
            let ops: Vec<WriteOp> = (0..1000)
                .map(|i| {
                    let ts = 1_700_000_000_000 + b * 1000 + i;
                    ts_op(
                        devices[i as usize % devices.len()],
                        vec![
                            pt(ts, "temperature", KvValue::Double(20.5)),
                            pt(ts, "humidity", KvValue::Long(40)),
                            pt(ts, "status", KvValue::Str("ok".into())),
                        ],
                    )
                })
                .collect();
            db.store.commit(&ops).await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}: {batches} commits of 1000 ops x 3 points in {secs:.2}s = {:.0} msgs/s, {:.0} points/s",
            db.store.backend(),
            (batches * 1000) as f64 / secs,
            (batches * 3000) as f64 / secs
        );
        db.store.close().await;
    }
}

/// Expiry throughput (100000 points): `cargo test --test storage_conformance -- --ignored --nocapture bench_expiry`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_expiry() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = open(backend).await;
        let devices: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        for b in 0..100i64 {
            let ops: Vec<WriteOp> = devices
                .iter()
                .map(|d| {
                    let points = (0..10)
                        .map(|i| pt(b * 10 + i, "t", KvValue::Long(b)))
                        .collect();
                    fixtures::ts_op_ttl(*d, points, 1000)
                })
                .collect();
            db.store.commit(&ops).await.unwrap();
        }
        let started = std::time::Instant::now();
        let mut total = 0;
        loop {
            let n = db.store.delete_expired(i64::MAX, 10_000).await.unwrap();
            total += n;
            if n < 10_000 {
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}: {total} expired points deleted in batches of 10000 in {secs:.2}s = {:.0} points/s",
            db.store.backend(),
            total as f64 / secs
        );
        db.store.close().await;
    }
}
