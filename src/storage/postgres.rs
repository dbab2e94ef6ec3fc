//! PostgreSQL implementation of the storage traits (native UUID/JSONB, multi-row UNNEST writes).

use super::Result;

pub struct PgStore {}

impl PgStore {
    pub async fn connect(_url: &str, _options: &crate::config::StorageConfig) -> Result<Self> {
        Err(super::StorageError::Database("postgres backend not built yet".into()))
    }
}
