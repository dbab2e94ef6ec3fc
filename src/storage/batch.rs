//! The group-commit writer: writes from many messages and sessions share one transaction.
//!
//! Callers hand a message's writes over a bounded queue and await the commit of the batch that
//! took them; a batch closes when it holds `max_points` values or `window` has passed since its
//! first request. A full queue makes callers wait, which is how storage back-pressure reaches
//! sessions.
//!
//! One message's data never fails another's: writes are checked before they join a batch, and a
//! batch whose commit fails while the database answers is committed again in halves, down to
//! single messages, so only the message whose own data the database refuses gets an error
//! (`Invalid`, never worth re-sending).

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
    /// The traced message's span the commit is shown under (None when not traced).
    span: Option<tracing::Span>,
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

    /// Queues the writes and waits until they are committed. Data that no database can hold is
    /// refused with `Invalid` before it is queued.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        super::checks::check_ops(&ops)?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request {
                ops,
                done,
                span: crate::observability::trace::current_traced(),
            })
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
        // The requests' ops one after the other; request i owns ops[bounds[i]..bounds[i + 1]].
        let mut bounds = Vec::with_capacity(batch.len() + 1);
        let mut ops: Vec<WriteOp> = Vec::new();
        for r in &mut batch {
            bounds.push(ops.len());
            ops.append(&mut r.ops);
        }
        bounds.push(ops.len());
        let started = Instant::now();
        // One span per traced message in the batch, open for the commit (none allocated otherwise).
        let spans: Vec<tracing::Span> = batch
            .iter()
            .filter_map(|r| r.span.as_ref())
            .map(|parent| {
                tracing::info_span!(
                    target: crate::observability::trace::TARGET,
                    parent: parent,
                    "storage.commit",
                    batch.requests = batch.len(),
                    batch.points = size,
                )
            })
            .collect();
        let results = commit_isolating(&store, &ops, &bounds).await;
        drop(spans);
        metrics::histogram!("ferroboard_storage_batch_points").record(size as f64);
        metrics::histogram!("ferroboard_storage_batch_requests").record(batch.len() as f64);
        metrics::histogram!("ferroboard_storage_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        for (req, result) in batch.into_iter().zip(results) {
            let _ = req.done.send(result);
        }
    }
}

/// Commits the requests of a batch (request i owns `ops[bounds[i]..bounds[i + 1]]`) and returns
/// each one's result. All together first; when that fails and the database still answers a
/// ping, each half apart, down to single requests: a single request that fails then is refused
/// as `Invalid`. At most 2n - 1 commits and as many pings for n requests; when the database does
/// not answer, every request of the failed part gets the commit's error.
async fn commit_isolating(store: &DynStore, ops: &[WriteOp], bounds: &[usize]) -> Vec<Result<()>> {
    let n = bounds.len() - 1;
    let mut results: Vec<Result<()>> = vec![Ok(()); n];
    let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
    pending.push(0..n);
    while let Some(part) = pending.pop() {
        let Err(e) = store
            .commit(&ops[bounds[part.start]..bounds[part.end]])
            .await
        else {
            continue;
        };
        metrics::counter!("ferroboard_storage_commit_failures_total").increment(1);
        let answers = store.ping().await.is_ok();
        if !answers {
            tracing::error!(error = %e, requests = part.len(), "storage commit failed; nothing of these requests is acknowledged");
            for r in &mut results[part] {
                *r = Err(e.clone());
            }
        } else if part.len() > 1 {
            let mid = part.start + part.len() / 2;
            pending.push(mid..part.end);
            pending.push(part.start..mid);
        } else {
            metrics::counter!("ferroboard_storage_refused_writes_total").increment(1);
            let entity = match ops.get(bounds[part.start]) {
                Some(WriteOp::Timeseries { entity, .. } | WriteOp::Attributes { entity, .. }) => {
                    *entity
                }
                None => uuid::Uuid::nil(),
            };
            crate::observability::log_gate::refused_input(
                "storage",
                &entity,
                &format_args!("the database refused the data of one message of a batch: {e}"),
            );
            results[part.start] = Err(match e {
                StorageError::Invalid(_) => e,
                other => StorageError::Invalid(format!("the database refused this data: {other}")),
            });
        }
    }
    results
}
