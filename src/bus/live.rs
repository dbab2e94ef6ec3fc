//! Live updates for WebSocket subscribers: which entities are watched on this node and on the
//! others, the compact "entity changed" events the save path publishes (only for watched
//! entities), and their delivery to the local connections' bounded queues.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Bus, Event};
use crate::domain::{AttributeScope, Kv, TsKv};
use crate::storage::WriteOp;

/// How often a node repeats the full list of entities it watches.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
/// A remote node's interest in an entity lapses when not repeated within this time.
pub const WATCH_TTL: Duration = Duration::from_secs(30);
/// Events waiting to be published to the other nodes, at most; beyond it updates are dropped
/// (counted in `ferroboard_ws_updates_dropped_total`).
const PUBLISH_QUEUE: usize = 4096;

/// One value of a change, as the WebSocket sends it: the value rendered as a string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveValue {
    pub key: String,
    pub ts: i64,
    pub value: String,
}

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Timeseries,
    Client,
    Server,
    Shared,
}

impl ChangeKind {
    pub fn of_scope(scope: AttributeScope) -> Self {
        match scope {
            AttributeScope::Client => Self::Client,
            AttributeScope::Server => Self::Server,
            AttributeScope::Shared => Self::Shared,
        }
    }

    /// The attribute scope, or None for time series.
    pub fn scope(self) -> Option<AttributeScope> {
        match self {
            Self::Timeseries => None,
            Self::Client => Some(AttributeScope::Client),
            Self::Server => Some(AttributeScope::Server),
            Self::Shared => Some(AttributeScope::Shared),
        }
    }
}

/// Values of one entity were committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    pub entity: Uuid,
    pub what: ChangeKind,
    pub values: Vec<LiveValue>,
}

impl Changed {
    pub fn timeseries(entity: Uuid, points: &[TsKv]) -> Self {
        let values = points
            .iter()
            .map(|p| LiveValue {
                key: p.key.clone(),
                ts: p.ts,
                value: p.value.to_java_string(),
            })
            .collect();
        Self {
            entity,
            what: ChangeKind::Timeseries,
            values,
        }
    }

    pub fn attributes(entity: Uuid, scope: AttributeScope, kvs: &[Kv], ts: i64) -> Self {
        let values = kvs
            .iter()
            .map(|kv| LiveValue {
                key: kv.key.clone(),
                ts,
                value: kv.value.to_java_string(),
            })
            .collect();
        Self {
            entity,
            what: ChangeKind::of_scope(scope),
            values,
        }
    }

    fn of_op(op: &WriteOp) -> Self {
        match op {
            WriteOp::Timeseries { entity, points, .. } => Self::timeseries(*entity, points),
            WriteOp::Attributes {
                entity,
                scope,
                kvs,
                ts,
            } => Self::attributes(*entity, *scope, kvs, *ts),
        }
    }
}

/// A connection's side of the hub: its queue, and the signal that the queue overflowed.
#[derive(Clone)]
pub struct Subscriber {
    pub conn: u64,
    pub tx: mpsc::Sender<Arc<Changed>>,
    pub overflow: Arc<Notify>,
}

#[derive(Default)]
struct Interest {
    /// Entity -> the local connections watching it.
    local: HashMap<Uuid, Vec<Subscriber>>,
    /// Entity -> node -> when that node last said it watches it.
    remote: HashMap<Uuid, HashMap<String, Instant>>,
}

/// The node's live-update hub; one per process, shared by the services, the bus dispatcher and
/// the WebSocket connections.
pub struct LiveHub {
    node: String,
    interest: RwLock<Interest>,
    /// False while nobody anywhere watches anything: the save path then costs one atomic load.
    any: AtomicBool,
    out: mpsc::Sender<Event>,
    out_rx: Mutex<Option<mpsc::Receiver<Event>>>,
    next_conn: AtomicU64,
    /// Subscriptions per user on this node (bounded by `ws.max_subscriptions_per_user`).
    per_user: Mutex<HashMap<Uuid, usize>>,
}

impl LiveHub {
    pub fn new(node: String) -> Arc<Self> {
        let (out, rx) = mpsc::channel(PUBLISH_QUEUE);
        Arc::new(Self {
            node,
            interest: RwLock::default(),
            any: AtomicBool::new(false),
            out,
            out_rx: Mutex::new(Some(rx)),
            next_conn: AtomicU64::new(1),
            per_user: Mutex::default(),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Interest> {
        self.interest.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Interest> {
        self.interest
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn refresh_any(&self, interest: &Interest) {
        let any = !interest.local.is_empty() || !interest.remote.is_empty();
        self.any.store(any, Ordering::Release);
    }

    /// Whether a WebSocket on some node watches `entity`.
    pub fn is_watched(&self, entity: Uuid) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let interest = self.read();
        interest.local.contains_key(&entity)
            || interest
                .remote
                .get(&entity)
                .is_some_and(|nodes| nodes.values().any(|t| t.elapsed() < WATCH_TTL))
    }

    /// The changes a batch of writes makes to watched entities (copied before the write consumes them).
    pub fn changes_of(&self, ops: &[WriteOp]) -> Vec<Changed> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        ops.iter()
            .filter(|op| {
                let entity = match op {
                    WriteOp::Timeseries { entity, .. } | WriteOp::Attributes { entity, .. } => {
                        *entity
                    }
                };
                self.is_watched(entity)
            })
            .map(Changed::of_op)
            .collect()
    }

    /// Publishes committed changes to every node (queued; never waits on the bus).
    pub fn committed(&self, changes: Vec<Changed>) {
        for change in changes {
            self.enqueue(Event::EntityChanged(change));
        }
    }

    fn enqueue(&self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.out.try_send(event) {
            metrics::counter!("ferroboard_ws_updates_dropped_total", "reason" => "publish_queue")
                .increment(1);
            tracing::warn!(
                limit = PUBLISH_QUEUE,
                "live-update publish queue full; a WebSocket update was dropped"
            );
        }
    }

    /// Adds a local subscriber of `entity`; a newly watched entity is announced to the other nodes.
    pub fn watch(&self, entity: Uuid, sub: Subscriber) {
        let mut interest = self.write();
        let subs = interest.local.entry(entity).or_default();
        let new = subs.is_empty();
        if !subs.iter().any(|s| s.conn == sub.conn) {
            subs.push(sub);
        }
        self.refresh_any(&interest);
        drop(interest);
        if new {
            self.enqueue(Event::Watching {
                node: self.node.clone(),
                entities: vec![entity],
                full: false,
            });
        }
    }

    /// Removes a connection's subscription of `entity` (the other nodes learn at the next full list).
    pub fn unwatch(&self, entity: Uuid, conn: u64) {
        let mut interest = self.write();
        if let Some(subs) = interest.local.get_mut(&entity) {
            subs.retain(|s| s.conn != conn);
            if subs.is_empty() {
                interest.local.remove(&entity);
            }
        }
        self.refresh_any(&interest);
    }

    /// Takes `n` subscription slots of `user`; false when that would pass `limit`.
    pub fn reserve(&self, user: Uuid, n: usize, limit: usize) -> bool {
        let mut per_user = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_user.entry(user).or_default();
        if *count + n > limit {
            return false;
        }
        *count += n;
        true
    }

    pub fn release(&self, user: Uuid, n: usize) {
        let mut per_user = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_user.get_mut(&user) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                per_user.remove(&user);
            }
        }
    }

    /// Hands a change to the local connections watching its entity; a full queue closes that
    /// connection (its overflow signal), it never grows.
    pub fn deliver(&self, change: Changed) {
        let interest = self.read();
        let Some(subs) = interest.local.get(&change.entity) else {
            return;
        };
        let change = Arc::new(change);
        for sub in subs {
            if sub.tx.try_send(change.clone()).is_err() {
                sub.overflow.notify_one();
            }
        }
    }

    /// Another node's list of watched entities: all of them (`full`), or some it added.
    pub fn on_watching(&self, node: &str, entities: &[Uuid], full: bool) {
        if node == self.node {
            return;
        }
        let now = Instant::now();
        let mut interest = self.write();
        if full {
            let keep: HashSet<&Uuid> = entities.iter().collect();
            interest.remote.retain(|entity, nodes| {
                if !keep.contains(entity) {
                    nodes.remove(node);
                }
                !nodes.is_empty()
            });
        }
        for entity in entities {
            interest
                .remote
                .entry(*entity)
                .or_default()
                .insert(node.to_owned(), now);
        }
        self.refresh_any(&interest);
    }

    /// Drops remote interest not repeated within `WATCH_TTL` (a node that stopped).
    fn prune(&self) {
        let mut interest = self.write();
        interest.remote.retain(|_, nodes| {
            nodes.retain(|_, seen| seen.elapsed() < WATCH_TTL);
            !nodes.is_empty()
        });
        self.refresh_any(&interest);
    }

    /// Queues the full list of locally watched entities (also after a bus outage).
    pub fn announce(&self) {
        let entities: Vec<Uuid> = self.read().local.keys().copied().collect();
        self.enqueue(Event::Watching {
            node: self.node.clone(),
            entities,
            full: true,
        });
    }

    /// Publishes queued events and repeats the watched list every `ANNOUNCE_EVERY`, until `stop`.
    pub fn spawn(self: &Arc<Self>, bus: Arc<dyn Bus>, stop: CancellationToken) {
        let Some(mut rx) = self
            .out_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut announced_empty = true;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    event = rx.recv() => {
                        let Some(event) = event else { break };
                        if let Err(e) = bus.publish(event).await {
                            tracing::debug!(error = %e, "live update not passed to other nodes");
                        }
                    }
                    _ = tick.tick() => {
                        hub.prune();
                        let empty = hub.read().local.is_empty();
                        // An empty list is said once, so the others forget this node's interest.
                        if !(empty && announced_empty) {
                            hub.announce();
                        }
                        announced_empty = empty;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KvValue;

    fn sub(conn: u64, size: usize) -> (Subscriber, mpsc::Receiver<Arc<Changed>>) {
        let (tx, rx) = mpsc::channel(size);
        let sub = Subscriber {
            conn,
            tx,
            overflow: Arc::new(Notify::new()),
        };
        (sub, rx)
    }

    fn point(key: &str) -> Vec<TsKv> {
        vec![TsKv {
            ts: 5,
            key: key.into(),
            value: KvValue::Double(21.5),
        }]
    }

    #[tokio::test]
    async fn watched_only_while_someone_listens_here_or_elsewhere() {
        let hub = LiveHub::new("a".into());
        let entity = Uuid::new_v4();
        assert!(!hub.is_watched(entity));
        let (s, mut rx) = sub(1, 4);
        hub.watch(entity, s);
        assert!(hub.is_watched(entity));
        hub.deliver(Changed::timeseries(entity, &point("t")));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.values[0].value, "21.5");
        hub.unwatch(entity, 1);
        assert!(!hub.is_watched(entity));
        hub.on_watching("b", &[entity], false);
        assert!(hub.is_watched(entity));
        hub.on_watching("a", &[], true);
        assert!(hub.is_watched(entity), "its own list does not count");
        hub.on_watching("b", &[], true);
        assert!(!hub.is_watched(entity));
        assert!(hub.changes_of(&[]).is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_signals_overflow_instead_of_growing() {
        let hub = LiveHub::new("a".into());
        let entity = Uuid::new_v4();
        let (s, _rx) = sub(1, 1);
        let overflow = s.overflow.clone();
        hub.watch(entity, s);
        hub.deliver(Changed::timeseries(entity, &point("t")));
        hub.deliver(Changed::timeseries(entity, &point("t")));
        tokio::time::timeout(Duration::from_secs(5), overflow.notified())
            .await
            .expect("overflow signalled");
    }

    #[test]
    fn user_slots_are_bounded() {
        let hub = LiveHub::new("a".into());
        let user = Uuid::new_v4();
        assert!(hub.reserve(user, 2, 3));
        assert!(!hub.reserve(user, 2, 3));
        hub.release(user, 2);
        assert!(hub.reserve(user, 3, 3));
    }
}
