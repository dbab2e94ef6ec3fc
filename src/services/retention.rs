//! Telemetry retention: the background task that deletes expired time-series points in bounded
//! batches (`retention.cleanup_interval_ms`, `retention.cleanup_batch_size`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::now_ms;
use crate::storage::DynStore;

/// Counter of the points the cleanup deleted.
pub const EXPIRED_METRIC: &str = "ferroboard_telemetry_rows_expired_total";

/// Batches one pass deletes at most, so a large backlog is worked off over several intervals and
/// never holds the (SQLite: single) writer connection for long at a stretch.
const MAX_BATCHES_PER_PASS: u32 = 100;

#[derive(Clone, Copy, Debug)]
pub struct Cleanup {
    pub interval: Duration,
    pub batch_size: u32,
}

impl Cleanup {
    pub fn from_config(config: &crate::config::RetentionConfig) -> Self {
        Self {
            interval: Duration::from_millis(config.cleanup_interval_ms),
            batch_size: config.cleanup_batch_size.max(1),
        }
    }
}

/// Deletes the points expired at `now`, batch by batch, until a batch comes back short or the
/// pass has deleted `MAX_BATCHES_PER_PASS` batches; returns how many points it deleted.
pub async fn run_pass(
    store: &DynStore,
    cleanup: Cleanup,
    now: i64,
) -> Result<u64, crate::storage::StorageError> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES_PER_PASS {
        let deleted = store.delete_expired(now, cleanup.batch_size).await?;
        total += deleted;
        metrics::counter!(EXPIRED_METRIC).increment(deleted);
        if deleted < u64::from(cleanup.batch_size) {
            break;
        }
        // Let the group commit have the writer between two batches.
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// Runs a pass every `cleanup.interval` until `stop`; a pass that deleted something logs one
/// line, a failed one logs the error and the next interval tries again.
pub fn spawn(
    store: DynStore,
    cleanup: Cleanup,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cleanup.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let started = std::time::Instant::now();
            let pass = tokio::select! {
                () = stop.cancelled() => return,
                pass = run_pass(&store, cleanup, now_ms()) => pass,
            };
            match pass {
                Ok(0) => {}
                Ok(rows) => tracing::info!(
                    rows,
                    took_ms = started.elapsed().as_millis() as u64,
                    "retention: expired telemetry points deleted"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention: deleting expired telemetry failed; retried next interval")
                }
            }
        }
    })
}
