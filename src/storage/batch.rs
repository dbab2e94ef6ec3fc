//! The group-commit writer: writes from many messages and sessions share one transaction.
//!
//! Callers hand a message's writes over a bounded queue and await the commit of the batch that
//! took them. The next batch is collected while the current one commits; a batch closes when it
//! holds `max_points` values, or when nothing is committing and the queue is empty (see `run`).
//! A full queue makes callers wait, which is how storage back-pressure reaches sessions.
//!
//! One message's data never fails another's: writes are checked before they join a batch, and a
//! batch whose commit fails while the database answers is committed again in halves, down to
//! single messages, so only the message whose own data the database refuses gets an error
//! (`Invalid`, never worth re-sending).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{DynStore, Result, StorageError, WriteOp};

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Values (points or attributes) per transaction, at most.
    pub max_points: usize,
    /// How long a batch keeps taking requests that keep arriving while nothing is committing
    /// (it never waits on an empty queue).
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
    commits: Arc<AtomicU64>,
    /// Requests taken from the queue into the batch being collected, not yet handed to a commit.
    collected: Arc<AtomicUsize>,
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
        let commits = Arc::new(AtomicU64::new(0));
        let collected = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(
            store,
            config,
            rx,
            stop,
            commits.clone(),
            collected.clone(),
        ));
        (
            Self {
                tx,
                commits,
                collected,
            },
            task,
        )
    }

    /// Batches handed to a commit so far.
    pub fn batches(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Write requests waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Write requests whose commit has not started: those queued and those collected into the
    /// next batch while the current one commits.
    pub fn waiting(&self) -> usize {
        self.queued() + self.collected.load(Ordering::Relaxed)
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

/// The requests of one batch and how many values they carry.
struct Batch {
    requests: Vec<Request>,
    size: usize,
}

impl Batch {
    fn push(&mut self, req: Request) {
        self.size += points(&req.ops);
        self.requests.push(req);
    }

    /// Takes what is queued now, up to `max_points`; returns how many requests it took.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Request>, max_points: usize) -> usize {
        let mut taken = 0;
        while self.size < max_points {
            let Ok(req) = rx.try_recv() else { break };
            self.push(req);
            taken += 1;
        }
        taken
    }
}

/// Collects batches and hands each to a commit task of its own, one commit at a time: batch N+1
/// is collected while batch N commits, and is handed over as soon as N is done. A batch closes
/// when it is full, or when nothing is committing and the queue is empty (a request that finds
/// the writer idle is committed at once; `window` only bounds how long a batch keeps taking
/// requests that keep arriving). One commit at a time keeps the order of writes to one key: a
/// later batch never commits before an earlier one, retries of a failed batch included.
async fn run(
    store: DynStore,
    config: BatchConfig,
    mut rx: mpsc::Receiver<Request>,
    stop: tokio_util::sync::CancellationToken,
    commits: Arc<AtomicU64>,
    collected: Arc<AtomicUsize>,
) {
    let mut committing: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let first = tokio::select! {
            req = rx.recv() => req,
            () = stop.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        let deadline = Instant::now() + config.window;
        let mut batch = Batch {
            requests: Vec::new(),
            size: 0,
        };
        batch.push(first);
        collected.fetch_add(1, Ordering::Relaxed);
        loop {
            let taken = batch.drain(&mut rx, config.max_points);
            collected.fetch_add(taken, Ordering::Relaxed);
            if batch.size >= config.max_points {
                break;
            }
            match committing.as_mut() {
                Some(task) if !task.is_finished() => {
                    // The previous batch still commits: this one cannot go sooner, so it takes
                    // what arrives meanwhile.
                    tokio::select! {
                        biased;
                        _ = task => committing = None,
                        req = rx.recv() => match req {
                            Some(req) => {
                                batch.push(req);
                                collected.fetch_add(1, Ordering::Relaxed);
                            }
                            None => break,
                        },
                    }
                }
                _ => {
                    committing = None;
                    if taken == 0 || Instant::now() >= deadline {
                        break;
                    }
                    // Requests are still arriving: let the tasks sending them run once.
                    tokio::task::yield_now().await;
                }
            }
        }
        if let Some(task) = committing.take() {
            let _ = task.await;
        }
        commits.fetch_add(1, Ordering::Relaxed);
        collected.fetch_sub(batch.requests.len(), Ordering::Relaxed);
        let store = store.clone();
        committing = Some(tokio::spawn(
            async move { commit_batch(&store, batch).await },
        ));
    }
    if let Some(task) = committing {
        let _ = task.await;
    }
}

/// Commits one batch and answers each of its requests.
async fn commit_batch(store: &DynStore, batch: Batch) {
    let Batch { mut requests, size } = batch;
    // The requests' ops one after the other; request i owns ops[bounds[i]..bounds[i + 1]].
    let mut bounds = Vec::with_capacity(requests.len() + 1);
    let mut ops: Vec<WriteOp> = Vec::with_capacity(requests.len());
    for r in &mut requests {
        bounds.push(ops.len());
        ops.append(&mut r.ops);
    }
    bounds.push(ops.len());
    let started = std::time::Instant::now();
    // One span per traced message in the batch, open for the commit (none allocated otherwise).
    let spans: Vec<tracing::Span> = requests
        .iter()
        .filter_map(|r| r.span.as_ref())
        .map(|parent| {
            tracing::info_span!(
                target: crate::observability::trace::TARGET,
                parent: parent,
                "storage.commit",
                batch.requests = requests.len(),
                batch.points = size,
            )
        })
        .collect();
    let results = commit_isolating(store, &ops, &bounds).await;
    drop(spans);
    metrics::histogram!("ferroboard_storage_batch_points").record(size as f64);
    metrics::histogram!("ferroboard_storage_batch_requests").record(requests.len() as f64);
    metrics::histogram!("ferroboard_storage_commit_seconds")
        .record(started.elapsed().as_secs_f64());
    for (req, result) in requests.into_iter().zip(results) {
        let _ = req.done.send(result);
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
