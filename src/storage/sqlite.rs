//! SQLite implementation of the storage traits (WAL, one writer connection, runtime queries).

use super::Result;

pub struct SqliteStore {}

impl SqliteStore {
    pub async fn connect(_url: &str, _options: &crate::config::StorageConfig) -> Result<Self> {
        Err(super::StorageError::Database("sqlite backend not built yet".into()))
    }
}
