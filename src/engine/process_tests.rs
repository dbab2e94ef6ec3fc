//! The engine against a real SQLite store and group-commit writer: the default chain's writes are
//! committed when processing returns, and a storage failure comes out as `EngineError::Storage`.
//! (`Services` is still growing; `Committing` does what its two save methods do.)

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::StorageConfig;
use crate::domain::kv::Typing;
use crate::domain::{AttributeScope, Kv, KvValue, TsKv};
use crate::engine::testing::{limits, msg};
use crate::storage::{BatchConfig, StorageError, WriteOp, Writer};

struct Committing(Writer);

impl EngineServices for Committing {
    fn typing(&self) -> Typing {
        Typing::default()
    }

    async fn save_timeseries(
        &self,
        entity: uuid::Uuid,
        points: Vec<TsKv>,
    ) -> Result<(), StorageError> {
        self.0
            .write(vec![WriteOp::Timeseries {
                entity,
                points,
                ttl_ms: None,
            }])
            .await
    }

    async fn save_attributes(
        &self,
        entity: uuid::Uuid,
        scope: AttributeScope,
        kvs: Vec<Kv>,
        ts: i64,
    ) -> Result<(), StorageError> {
        self.0
            .write(vec![WriteOp::Attributes {
                entity,
                scope,
                kvs,
                ts,
            }])
            .await
    }
}

#[tokio::test]
async fn default_chain_commits_before_processing_returns() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rules.db").display());
    let store = crate::storage::open(&url, &StorageConfig::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let stop = CancellationToken::new();
    let (writer, writer_task) = Writer::spawn(store.clone(), BatchConfig::default(), stop.clone());
    let services = Committing(writer);
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let engine = Engine::load(&rules, limits()).unwrap_or_else(|e| panic!("{e}"));

    let mut telemetry = msg("POST_TELEMETRY_REQUEST", r#"{"temperature":25.0}"#);
    telemetry
        .metadata
        .insert("ts".into(), "1700000000000".into());
    let device = telemetry.originator.uuid();
    engine.run(telemetry, &services).await.unwrap();
    let latest = store.latest(device, None).await.unwrap();
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(
        (latest[0].ts, &latest[0].value),
        (1_700_000_000_000, &KvValue::Double(25.0))
    );

    let mut attrs = msg("POST_ATTRIBUTES_REQUEST", r#"{"fw":"v1"}"#);
    attrs.originator = crate::domain::EntityId::Device(crate::domain::DeviceId(device));
    engine.run(attrs, &services).await.unwrap();
    let client = store
        .find_attributes(device, AttributeScope::Client, None)
        .await
        .unwrap();
    assert_eq!(client.len(), 1);
    assert_eq!(client[0].value, KvValue::Str("v1".into()));

    stop.cancel();
    writer_task.await.unwrap();
    let refused = engine
        .run(msg("POST_TELEMETRY_REQUEST", r#"{"a":1}"#), &services)
        .await;
    assert!(
        matches!(refused, Err(EngineError::Storage(_))),
        "{refused:?}"
    );
}
