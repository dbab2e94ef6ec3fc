//! Where the running chains came from: when they were activated, by what (start, a reload of the
//! rules directory, a save over REST), and the last reload that failed since (its chains not run).

use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::domain::now_ms;

/// Reported by `GET /api/ruleChains/status`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// Successful reloads and saves since the start.
    pub generation: u64,
    /// Epoch ms the running chains were swapped in.
    pub activated_at: i64,
    /// "loaded", "reloaded" or "saved over REST".
    pub activated_by: String,
    /// The running chains' summary (counts of chains and nodes).
    pub summary: String,
    /// Epoch ms of the last save over REST (the watcher's reload of the saved files follows it).
    pub last_saved_at: Option<i64>,
    /// The last reload that failed after the running chains were activated, if any.
    pub last_error: Option<ReloadError>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadError {
    pub at: i64,
    pub errors: Vec<String>,
}

/// The status, updated by the engine.
pub struct Status(Mutex<ReloadStatus>);

impl Status {
    pub fn new(summary: String) -> Self {
        Self(Mutex::new(ReloadStatus {
            generation: 0,
            activated_at: now_ms(),
            activated_by: "loaded".to_owned(),
            summary,
            last_saved_at: None,
            last_error: None,
        }))
    }

    pub fn get(&self) -> ReloadStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// New chains run; `saved` when they come from a save over REST.
    pub fn activated(&self, by: &str, summary: String, saved: bool) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.generation += 1;
        s.activated_at = now_ms();
        if saved {
            s.last_saved_at = Some(s.activated_at);
        }
        by.clone_into(&mut s.activated_by);
        s.summary = summary;
        s.last_error = None;
    }

    /// A reload found the rules directory invalid; the running chains stay.
    pub fn failed(&self, errors: &[String]) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.last_error = Some(ReloadError {
            at: now_ms(),
            errors: errors.to_vec(),
        });
    }
}
