//! The rule engine: chains loaded from the rules directory, nodes compiled once, messages routed by relation.
//! May use `domain` and `services` (writes go through `Services`; no SQL, no MQTT here).
//!
//! Layout: `loader` reads and validates a directory, `chain` holds the graph and routes messages,
//! `nodes/` has one file per node kind, `script` is the Rhai sandbox, `watch` the hot reload,
//! `fixtures` runs a directory's test cases offline (`ferroboard rules test`).

mod chain;
pub mod debug;
pub mod edit;
mod fixtures;
mod loader;
mod nodes;
#[cfg(test)]
mod process_tests;
pub mod recent;
mod script;
pub mod status;
pub mod tb_json;
#[cfg(test)]
mod testing;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::domain::Msg;
use crate::services::Services;

use chain::Chains;
use nodes::EngineServices;
use script::Sandbox;

pub use chain::Chain;
pub use chain::{MAX_HOPS, MAX_RUNS};
pub use fixtures::{CaseResult, FIXTURE_DIR, Mismatch, Report, run_fixtures};

/// Every problem found in a rules directory, reported at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct RulesErrors(pub Vec<String>);

/// Processing failed in a way the sender must learn about (no acknowledgement).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Storage(#[from] crate::domain::StorageError),
}

/// Script sandbox limits.
#[derive(Clone, Copy, Debug)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub timeout: std::time::Duration,
    /// Scripts running at once, at most; each runs on a blocking thread.
    pub workers: usize,
}

impl ScriptLimits {
    /// The budgets configured for the server (`[engine]` in the configuration).
    pub fn from_config(engine: &crate::config::EngineConfig) -> Self {
        Self {
            max_operations: engine.script_max_operations,
            timeout: std::time::Duration::from_millis(engine.script_timeout_ms),
            workers: engine.script_workers,
        }
    }
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_operations: 200_000,
            timeout: std::time::Duration::from_millis(100),
            workers: 4,
        }
    }
}

/// What the engine is built with besides the rules directory.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    pub limits: ScriptLimits,
    /// Last messages kept per device for dry runs (0: none).
    pub recorded_messages: usize,
    pub recorded_devices: usize,
    pub debug_max_minutes: u64,
    pub debug_max_events: usize,
}

impl EngineOptions {
    pub fn from_config(engine: &crate::config::EngineConfig) -> Self {
        Self {
            limits: ScriptLimits::from_config(engine),
            recorded_messages: engine.recorded_messages,
            recorded_devices: engine.recorded_devices,
            debug_max_minutes: engine.debug_max_minutes,
            debug_max_events: engine.debug_max_events,
        }
    }
}

impl From<ScriptLimits> for EngineOptions {
    /// The budgets given, nothing recorded, ThingsBoard's debug defaults.
    fn from(limits: ScriptLimits) -> Self {
        Self {
            limits,
            recorded_messages: 0,
            recorded_devices: 1,
            debug_max_minutes: 15,
            debug_max_events: 200,
        }
    }
}

/// How `activate` names a save over REST.
const SAVED_OVER_REST: &str = "saved over REST";

/// The running rule engine. The active chains are swapped whole on reload; a message keeps the
/// chains it started with.
pub struct Engine {
    active: RwLock<Arc<Chains>>,
    sandbox: Arc<Sandbox>,
    /// Bumped on every successful reload.
    generation: tokio::sync::watch::Sender<u64>,
    /// The rules directory the chains come from (saves write back into it).
    dir: PathBuf,
    pub debug: debug::DebugRegistry,
    pub recent: recent::RecentMessages,
    /// One save at a time.
    saving: std::sync::Mutex<()>,
    /// When and how the running chains were activated.
    pub status: status::Status,
}

impl Engine {
    /// Loads and validates the whole directory.
    pub fn load(dir: &Path, options: impl Into<EngineOptions>) -> Result<Self, RulesErrors> {
        let options = options.into();
        let sandbox = Arc::new(Sandbox::new(options.limits));
        let debug = debug::DebugRegistry::new(options.debug_max_events, options.debug_max_minutes);
        let overlay = BTreeMap::new();
        let chains = loader::load(&loader::Source::new(dir, &overlay), &sandbox, &debug)?;
        let status = status::Status::new(chains.summary());
        Ok(Self {
            active: RwLock::new(Arc::new(chains)),
            sandbox,
            generation: tokio::sync::watch::Sender::new(0),
            dir: dir.to_path_buf(),
            debug,
            recent: recent::RecentMessages::new(
                options.recorded_messages,
                options.recorded_devices,
            ),
            saving: std::sync::Mutex::new(()),
            status,
        })
    }

    /// Loads `dir` with some files replaced by `overlay` (nothing is written).
    fn load_candidate(&self, overlay: &BTreeMap<PathBuf, String>) -> Result<Chains, RulesErrors> {
        loader::load(
            &loader::Source::new(&self.dir, overlay),
            &self.sandbox,
            &self.debug,
        )
    }

    /// Swaps in chains loaded already.
    fn activate(&self, chains: Chains, what: &str) {
        let summary = chains.summary();
        self.status
            .activated(what, summary.clone(), what == SAVED_OVER_REST);
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(chains);
        self.generation.send_modify(|g| *g += 1);
        tracing::info!(dir = %self.dir.display(), "rules {what} ({summary})");
    }

    /// Runs one message through the root chain; returns when every branch finished and its writes committed.
    pub async fn process(&self, msg: Msg, services: &Services) -> Result<(), EngineError> {
        self.recent.record(&msg);
        self.run(msg, services).await
    }

    async fn run<S: EngineServices>(&self, msg: Msg, services: &S) -> Result<(), EngineError> {
        let chains = self.chains();
        chains
            .root()
            .run(msg, services, chains.dropped())
            .await
            .map(drop)
    }

    pub fn chains(&self) -> Arc<Chains> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads `dir` again and swaps it in; when it is invalid the running chains stay.
    pub fn reload(&self, dir: &Path) -> Result<(), RulesErrors> {
        let overlay = BTreeMap::new();
        let chains = loader::load(
            &loader::Source::new(dir, &overlay),
            &self.sandbox,
            &self.debug,
        )
        .inspect_err(|e| self.status.failed(&e.0))?;
        self.activate(chains, "reloaded");
        Ok(())
    }

    /// Successful reloads so far; `changed()` wakes on the next one.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// One line describing the active chains.
    pub fn summary(&self) -> String {
        self.chains().summary()
    }
}

/// Validates a rules directory offline; returns a one-line summary.
pub fn check_dir(dir: &Path) -> Result<String, RulesErrors> {
    let sandbox = Arc::new(Sandbox::new(ScriptLimits::default()));
    loader::load_dir(dir, &sandbox).map(|chains| chains.summary())
}
