//! Business operations shared by the transport, the rule engine and the REST API.

pub mod accounts;

use uuid::Uuid;

use crate::domain::kv::Typing;
use crate::domain::{AttributeScope, Kv, TsKv};
use crate::storage::{DynStore, StorageError, WriteOp, Writer};

/// The parts every caller needs: the store for reads, the group-commit writer for writes.
pub struct Services {
    pub store: DynStore,
    pub writer: Writer,
    pub typing: Typing,
}

impl Services {
    /// Saves time-series points; returns once they are committed.
    pub async fn save_timeseries(&self, entity: Uuid, points: Vec<TsKv>) -> Result<(), StorageError> {
        if points.is_empty() {
            return Ok(());
        }
        self.writer.write(vec![WriteOp::Timeseries { entity, points }]).await
    }

    /// Saves attributes of one scope stamped `ts`; returns once they are committed.
    pub async fn save_attributes(
        &self,
        entity: Uuid,
        scope: AttributeScope,
        kvs: Vec<Kv>,
        ts: i64,
    ) -> Result<(), StorageError> {
        if kvs.is_empty() {
            return Ok(());
        }
        self.writer
            .write(vec![WriteOp::Attributes { entity, scope, kvs, ts }])
            .await
    }
}
