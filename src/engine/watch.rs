//! Hot reload: poll the rules directory's file names, sizes and mtimes; reload when they change,
//! keeping the running chains when the new ones are invalid.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Engine;

/// How often `watch` looks at the directory.
pub const POLL_PERIOD: Duration = Duration::from_secs(2);

/// Subdirectories deeper than this are not watched (scripts may live in subfolders).
const MAX_DEPTH: usize = 4;

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl Engine {
    /// Reloads the rules whenever a file in `dir` changes (polled every 2 s) until `cancel`.
    pub fn watch(self: &Arc<Self>, dir: PathBuf, cancel: CancellationToken) -> JoinHandle<()> {
        self.watch_every(dir, POLL_PERIOD, cancel)
    }

    /// `watch` with a chosen polling period.
    pub fn watch_every(
        self: &Arc<Self>,
        dir: PathBuf,
        period: Duration,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut last = blocking(dir.clone(), |d| fingerprint(&d)).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let engine = engine.clone();
                let previous = last.take();
                last = blocking(dir.clone(), move |d| engine.reload_if_changed(&d, previous)).await;
            }
        })
    }

    /// Reloads when the fingerprint differs from `previous`; returns the new fingerprint.
    fn reload_if_changed(&self, dir: &Path, previous: Option<Fingerprint>) -> Option<Fingerprint> {
        let now = fingerprint(dir);
        if now.is_some()
            && now != previous
            && let Err(e) = self.reload(dir)
        {
            tracing::error!(
                dir = %dir.display(),
                "rules changed but are invalid; the running chains stay:\n{e}"
            );
        }
        // An unreadable directory keeps the old fingerprint so it reloads when it comes back changed.
        now.or(previous)
    }
}

async fn blocking<T: Send + 'static>(
    dir: PathBuf,
    f: impl FnOnce(PathBuf) -> Option<T> + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(move || f(dir))
        .await
        .ok()
        .flatten()
}

/// Names, sizes and modification times of every file under `dir`, sorted.
fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let mut out = Vec::new();
    collect(dir, 0, &mut out).ok()?;
    out.sort();
    Some(out)
}

fn collect(dir: &Path, depth: usize, out: &mut Fingerprint) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() && depth < MAX_DEPTH {
            collect(&entry.path(), depth + 1, out)?;
        } else if meta.is_file() {
            out.push((entry.path(), meta.len(), meta.modified().ok()));
        }
    }
    Ok(())
}
