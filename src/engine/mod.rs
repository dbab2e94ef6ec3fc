//! The rule engine: chains loaded from the rules directory, nodes compiled once, messages routed by relation.

use std::path::Path;

use crate::domain::Msg;
use crate::services::Services;

/// Every problem found in a rules directory, reported at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct RulesErrors(pub Vec<String>);

/// Processing failed in a way the sender must learn about (no acknowledgement).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Script sandbox limits.
#[derive(Clone, Copy, Debug)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub timeout: std::time::Duration,
}

pub struct Engine {}

impl Engine {
    /// Loads and validates the whole directory.
    pub fn load(_dir: &Path, _limits: ScriptLimits) -> Result<Self, RulesErrors> {
        Ok(Self {})
    }

    /// Runs one message through the root chain; returns when every branch finished and its writes committed.
    pub async fn process(&self, _msg: Msg, _services: &Services) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Validates a rules directory offline; returns a one-line summary.
pub fn check_dir(dir: &Path) -> Result<String, RulesErrors> {
    let limits = ScriptLimits {
        max_operations: 200_000,
        timeout: std::time::Duration::from_millis(100),
    };
    Engine::load(dir, limits).map(|_| "ok".to_owned())
}
