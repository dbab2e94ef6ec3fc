//! The group-commit writer: writes from many messages and sessions share one transaction.
//!
//! Callers hand a message's writes over a bounded queue and await the commit of the batch that
//! took them; a batch closes when it holds `max_points` values or `window` has passed since its
//! first request. A full queue makes callers wait, which is how storage back-pressure reaches
//! sessions.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{DynStore, Result, StorageError, WriteOp};

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Values (points or attributes) per transaction, at most.
    pub max_points: usize,
    /// How long a batch waits for company after its first request.
    pub window: Duration,
    /// Requests waiting for a batch, at most.
    pub queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_points: 20_000,
            window: Duration::from_millis(3),
            queue: 8192,
        }
    }
}

struct Request {
    ops: Vec<WriteOp>,
    done: oneshot::Sender<Result<()>>,
}

/// Handle to the writer task; cheap to clone. The task ends when every handle is dropped,
/// after committing what it was given.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer task. After `stop` is cancelled it commits what is queued, refuses
    /// new writes with `Closed`, and ends.
    pub fn spawn(
        store: DynStore,
        config: BatchConfig,
        stop: tokio_util::sync::CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let task = tokio::spawn(run(store, config, rx, stop));
        (Self { tx }, task)
    }

    /// Write requests waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues the writes and waits until they are committed.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request { ops, done })
            .await
            .map_err(|_| StorageError::Closed)?;
        wait.await.map_err(|_| StorageError::Closed)?
    }
}

fn points(ops: &[WriteOp]) -> usize {
    ops.iter()
        .map(|op| match op {
            WriteOp::Timeseries { points, .. } => points.len(),
            WriteOp::Attributes { kvs, .. } => kvs.len(),
        })
        .sum()
}

async fn run(
    store: DynStore,
    config: BatchConfig,
    mut rx: mpsc::Receiver<Request>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let first = tokio::select! {
            req = rx.recv() => req,
            () = stop.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        let deadline = tokio::time::Instant::now() + config.window;
        let mut size = points(&first.ops);
        let mut batch = vec![first];
        while size < config.max_points {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(req)) => {
                    size += points(&req.ops);
                    batch.push(req);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let ops: Vec<WriteOp> = batch
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.ops))
            .collect();
        let started = Instant::now();
        let result = store.commit(&ops).await;
        metrics::histogram!("ferroboard_storage_batch_points").record(size as f64);
        metrics::histogram!("ferroboard_storage_batch_requests").record(batch.len() as f64);
        metrics::histogram!("ferroboard_storage_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!("ferroboard_storage_commit_failures_total").increment(1);
            tracing::error!(error = %e, requests = batch.len(), points = size, "storage commit failed; nothing of this batch is acknowledged");
        }
        for req in batch {
            let _ = req.done.send(result.clone());
        }
    }
}
