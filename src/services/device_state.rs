//! Device connectivity: CONNECT/DISCONNECT/ACTIVITY/INACTIVITY events into the rule engine and the
//! device's `active` state and last connect/disconnect/activity times (SERVER_SCOPE attributes).
//! Uses domain, storage (reads) and `Services` (writes through the group-commit writer).
//!
//! State is in memory for devices that connected or sent something, dropped once the device is
//! disconnected, inactive and persisted. Activity is written at most every `FLUSH_EVERY`; state
//! changes are written right away by the same flush task, in batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Services;
use crate::domain::{AttributeScope, DeviceId, EntityId, Kv, KvValue, Msg, MsgType, now_ms};
use crate::storage::{Device, DynStore, WriteOp};

/// How often inactivity is checked (only devices whose timeout may have passed are visited).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often coalesced `lastActivityTime` values are written.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Attribute writes per commit request of one flush.
const MAX_OPS_PER_WRITE: usize = 256;
/// Connectivity events waiting for the rule engine; beyond this they are dropped and counted.
pub const EVENT_QUEUE: usize = 1024;

/// Which persisted attributes of an entry changed since the last flush.
const ACTIVE: u8 = 1;
const CONNECT: u8 = 2;
const DISCONNECT: u8 = 4;
const ACTIVITY: u8 = 8;
const ALARM: u8 = 16;

const STORED_KEYS: [&str; 6] = [
    "active",
    "lastConnectTime",
    "lastDisconnectTime",
    "lastActivityTime",
    "inactivityAlarmTime",
    "inactivityTimeout",
];

struct Entry {
    /// Shared with the device's session (no copy per connected device).
    device: Arc<Device>,
    /// Open sessions minus closed ones; may dip below zero when a close is seen before its open.
    sessions: i32,
    active: bool,
    /// Whether the stored times were merged in (the first connect after the entry was created).
    loaded: bool,
    timeout_ms: i64,
    last_connect: i64,
    last_disconnect: i64,
    last_activity: i64,
    last_alarm: i64,
    dirty: u8,
}

impl Entry {
    fn new(device: Arc<Device>, timeout_ms: i64) -> Self {
        Self {
            device,
            sessions: 0,
            active: false,
            loaded: false,
            timeout_ms,
            last_connect: 0,
            last_disconnect: 0,
            last_activity: 0,
            last_alarm: 0,
            dirty: 0,
        }
    }

    /// Records activity; true when the device became active by it.
    fn touch(&mut self, now: i64) -> bool {
        self.last_activity = self.last_activity.max(now);
        self.dirty |= ACTIVITY;
        if self.active {
            return false;
        }
        self.active = true;
        self.dirty |= ACTIVE;
        true
    }

    /// Merges stored values; times already recorded in memory are newer and win.
    fn merge(&mut self, stored: &[(String, KvValue)]) {
        for (key, value) in stored {
            let Some(n) = as_long(value) else {
                continue;
            };
            match key.as_str() {
                "lastConnectTime" => self.last_connect = self.last_connect.max(n),
                "lastDisconnectTime" => self.last_disconnect = self.last_disconnect.max(n),
                "lastActivityTime" => self.last_activity = self.last_activity.max(n),
                "inactivityAlarmTime" => self.last_alarm = self.last_alarm.max(n),
                "inactivityTimeout" if n > 0 => self.timeout_ms = n,
                _ => {}
            }
        }
        self.loaded = true;
    }

    /// ThingsBoard's DeviceState object, the data of every connectivity event.
    fn state_json(&self, with_active: bool) -> Value {
        let mut data = Map::new();
        if with_active {
            data.insert("active".into(), Value::Bool(self.active));
        }
        for (key, n) in [
            ("lastConnectTime", self.last_connect),
            ("lastActivityTime", self.last_activity),
            ("lastDisconnectTime", self.last_disconnect),
            ("lastInactivityAlarmTime", self.last_alarm),
            ("inactivityTimeout", self.timeout_ms),
        ] {
            data.insert(key.into(), Value::from(n));
        }
        Value::Object(data)
    }

    fn event(&self, msg_type: MsgType) -> Msg {
        let with_active = msg_type != MsgType::ConnectEvent;
        let d = &self.device;
        let mut msg = Msg::new(
            msg_type,
            d.tenant_id,
            EntityId::Device(d.id),
            self.state_json(with_active),
        );
        msg.customer = d.customer_id;
        msg.metadata.insert("deviceName".into(), d.name.clone());
        if let Some(label) = &d.label {
            msg.metadata.insert("deviceLabel".into(), label.clone());
        }
        msg.metadata
            .insert("deviceType".into(), d.profile_name.clone());
        msg.metadata
            .insert("scope".into(), AttributeScope::Server.as_str().to_owned());
        msg
    }

    /// The changed attributes as one write, or None when nothing changed.
    fn write_op(&self, flags: u8, ts: i64) -> Option<WriteOp> {
        // `active` rides along with activity: it heals a value another node wrote at take-over.
        let flags = if self.active && flags & ACTIVITY != 0 {
            flags | ACTIVE
        } else {
            flags
        };
        let mut kvs = Vec::new();
        let mut put = |flag: u8, key: &str, value: KvValue| {
            if flags & flag != 0 {
                kvs.push(Kv {
                    key: key.to_owned(),
                    value,
                });
            }
        };
        put(ACTIVE, "active", KvValue::Bool(self.active));
        put(CONNECT, "lastConnectTime", KvValue::Long(self.last_connect));
        put(
            DISCONNECT,
            "lastDisconnectTime",
            KvValue::Long(self.last_disconnect),
        );
        put(
            ACTIVITY,
            "lastActivityTime",
            KvValue::Long(self.last_activity),
        );
        put(ALARM, "inactivityAlarmTime", KvValue::Long(self.last_alarm));
        (!kvs.is_empty()).then_some(WriteOp::Attributes {
            entity: self.device.id.0,
            scope: AttributeScope::Server,
            kvs,
            ts,
        })
    }

    /// Disconnected, inactive and persisted: nothing left to remember.
    fn removable(&self) -> bool {
        self.sessions == 0 && !self.active && self.dirty == 0
    }
}

struct Table {
    devices: HashMap<DeviceId, Entry>,
    /// Devices with unsaved changes, each once: the flush visits only these.
    pending: Vec<DeviceId>,
    /// The earliest time an active device may time out (i64::MAX: none is active).
    next_due: i64,
}

impl Table {
    /// Runs `f` on the device's entry (created when absent) and queues the entry for the next flush
    /// when `f` left it changed. `f` returns whether the device became active.
    fn update<R>(
        &mut self,
        device: &Device,
        shared: impl FnOnce() -> Arc<Device>,
        timeout_ms: i64,
        f: impl FnOnce(&mut Entry) -> (bool, R),
    ) -> R {
        let e = self
            .devices
            .entry(device.id)
            .or_insert_with(|| Entry::new(shared(), timeout_ms));
        let was_clean = e.dirty == 0;
        let (became_active, out) = f(e);
        if became_active {
            self.next_due = self.next_due.min(e.last_activity + e.timeout_ms);
        }
        if was_clean && e.dirty != 0 {
            self.pending.push(device.id);
        }
        out
    }
}

/// One commit request of a flush: the writes and which changes of which device they carry.
type Batch = (Vec<WriteOp>, Vec<(DeviceId, u8)>);

/// Tracks connectivity of the devices on this node; see the module comment.
pub struct DeviceStateService {
    table: Mutex<Table>,
    store: DynStore,
    default_timeout_ms: i64,
    events: mpsc::Sender<Msg>,
    /// Wakes the flush task when a state change should be written now.
    wake: Notify,
}

impl DeviceStateService {
    /// The service and the receiving end of its events, to be run through the rule engine.
    pub fn new(store: DynStore, default_timeout_ms: i64) -> (Self, mpsc::Receiver<Msg>) {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let service = Self {
            table: Mutex::new(Table {
                devices: HashMap::new(),
                pending: Vec::new(),
                next_due: i64::MAX,
            }),
            store,
            default_timeout_ms: default_timeout_ms.max(1),
            events,
            wake: Notify::new(),
        };
        (service, rx)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A transport session of the device opened: CONNECT_EVENT, and ACTIVITY_EVENT when it was inactive.
    pub async fn connected(&self, device: &Arc<Device>) {
        let known = self
            .lock()
            .devices
            .get(&device.id)
            .is_some_and(|e| e.loaded);
        let stored = if known {
            Vec::new()
        } else {
            self.load(device.id).await
        };
        let now = now_ms();
        let shared = || device.clone();
        let msgs = self
            .lock()
            .update(device, shared, self.default_timeout_ms, |e| {
                if !Arc::ptr_eq(&e.device, device) {
                    e.device = device.clone();
                }
                if !e.loaded {
                    e.merge(&stored);
                }
                e.sessions += 1;
                e.last_connect = now;
                e.dirty |= CONNECT;
                let mut msgs = vec![e.event(MsgType::ConnectEvent)];
                let became_active = e.sessions > 0 && e.touch(now);
                if became_active {
                    msgs.push(e.event(MsgType::ActivityEvent));
                }
                (became_active, msgs)
            });
        self.emit(msgs);
        self.wake.notify_one();
    }

    /// A transport session of the device closed: DISCONNECT_EVENT; with no session left the device
    /// is no longer active.
    pub async fn disconnected(&self, device: &Device) {
        let now = now_ms();
        let shared = || Arc::new(device.clone());
        let msg = self
            .lock()
            .update(device, shared, self.default_timeout_ms, |e| {
                e.sessions -= 1;
                e.last_disconnect = now;
                e.dirty |= DISCONNECT;
                if e.sessions <= 0 && e.active {
                    e.active = false;
                    e.dirty |= ACTIVE;
                }
                (false, e.event(MsgType::DisconnectEvent))
            });
        self.emit(vec![msg]);
        self.wake.notify_one();
    }

    /// A message arrived from the device. Cheap and non-blocking (a short lock, no allocation unless
    /// the device becomes active or is not yet tracked): called on the transport's hot path.
    pub fn activity(&self, device: &Device) {
        let now = now_ms();
        let shared = || Arc::new(device.clone());
        let msg = self
            .lock()
            .update(device, shared, self.default_timeout_ms, |e| {
                let became_active = e.touch(now);
                (
                    became_active,
                    became_active.then(|| e.event(MsgType::ActivityEvent)),
                )
            });
        let Some(msg) = msg else {
            return;
        };
        self.emit(vec![msg]);
        self.wake.notify_one();
    }

    /// Whether the device is active: from memory, else from its stored `active` attribute (and only
    /// while its stored last activity is within the timeout, in case the node stopped uncleanly).
    pub async fn is_active(&self, device: DeviceId) -> bool {
        let known = self.lock().devices.get(&device).map(|e| e.active);
        if let Some(active) = known {
            return active;
        }
        let stored = self.load(device).await;
        let get = |key: &str| stored.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let timeout = get("inactivityTimeout")
            .and_then(as_long)
            .filter(|t| *t > 0);
        let last_activity = get("lastActivityTime").and_then(as_long).unwrap_or(0);
        get("active") == Some(&KvValue::Bool(true))
            && last_activity.saturating_add(timeout.unwrap_or(self.default_timeout_ms)) > now_ms()
    }

    async fn load(&self, device: DeviceId) -> Vec<(String, KvValue)> {
        let keys: Vec<String> = STORED_KEYS.iter().map(|k| (*k).to_owned()).collect();
        match self
            .store
            .find_attributes(device.0, AttributeScope::Server, Some(&keys))
            .await
        {
            Ok(kvs) => kvs.into_iter().map(|a| (a.key, a.value)).collect(),
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "stored device state not readable; starting from empty");
                Vec::new()
            }
        }
    }

    fn emit(&self, msgs: Vec<Msg>) {
        for msg in msgs {
            match self.events.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    metrics::counter!("ferroboard_device_state_events_dropped_total").increment(1);
                    tracing::warn!(
                        device = %msg.originator.uuid(),
                        event = msg.msg_type.as_str(),
                        "device state event queue full ({EVENT_QUEUE}); event dropped"
                    );
                }
                // Shutting down: nobody runs events through the engine any more.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Marks devices inactive whose timeout passed: INACTIVITY_EVENT each. Visits the table only
    /// when some device may be due.
    fn check(&self, now: i64) {
        let mut msgs = Vec::new();
        {
            let mut guard = self.lock();
            let table = &mut *guard;
            if now < table.next_due {
                return;
            }
            let mut next = i64::MAX;
            for (id, e) in table.devices.iter_mut().filter(|(_, e)| e.active) {
                let due = e.last_activity.saturating_add(e.timeout_ms);
                if due > now {
                    next = next.min(due);
                    continue;
                }
                if e.dirty == 0 {
                    table.pending.push(*id);
                }
                e.active = false;
                e.last_alarm = now;
                e.dirty |= ACTIVE | ALARM;
                msgs.push(e.event(MsgType::InactivityEvent));
            }
            table.next_due = next;
        }
        if !msgs.is_empty() {
            self.emit(msgs);
            self.wake.notify_one();
        }
    }

    /// Writes every changed entry in batches through the group-commit writer; drops entries that
    /// have nothing left to track. A failed write keeps its changes for the next flush.
    async fn flush(&self, services: &Services) {
        let now = now_ms();
        let mut batches: Vec<Batch> = Vec::new();
        {
            let mut guard = self.lock();
            let table = &mut *guard;
            for id in std::mem::take(&mut table.pending) {
                let Some(e) = table.devices.get_mut(&id) else {
                    continue;
                };
                let flags = std::mem::take(&mut e.dirty);
                let Some(op) = e.write_op(flags, now) else {
                    continue;
                };
                match batches.last_mut() {
                    Some((ops, ids)) if ops.len() < MAX_OPS_PER_WRITE => {
                        ops.push(op);
                        ids.push((id, flags));
                    }
                    _ => batches.push((vec![op], vec![(id, flags)])),
                }
            }
        }
        for (ops, ids) in batches {
            let result = services.write(ops).await;
            let mut guard = self.lock();
            let table = &mut *guard;
            for (id, flags) in ids {
                let Some(e) = table.devices.get_mut(&id) else {
                    continue;
                };
                if result.is_err() {
                    if e.dirty == 0 {
                        table.pending.push(id);
                    }
                    e.dirty |= flags;
                } else if e.removable() {
                    table.devices.remove(&id);
                }
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "device state not saved; retrying at the next flush");
            }
        }
    }

    /// Runs the inactivity check and the flush until `shutdown`, then flushes once more.
    async fn run(&self, services: &Services, shutdown: CancellationToken) {
        let mut check = tokio::time::interval(CHECK_EVERY);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = check.tick() => self.check(now_ms()),
                _ = flush.tick() => self.flush(services).await,
                () = self.wake.notified() => self.flush(services).await,
            }
        }
        self.sessions_end(now_ms());
        self.flush(services).await;
    }

    /// The node is stopping and closes every session: record that now, while the writer still
    /// runs (the sessions' own close reports come after this task ended). No events: the rule
    /// engine is draining.
    fn sessions_end(&self, now: i64) {
        let mut guard = self.lock();
        let table = &mut *guard;
        for (id, e) in table.devices.iter_mut() {
            if e.sessions <= 0 && !e.active {
                continue;
            }
            if e.dirty == 0 {
                table.pending.push(*id);
            }
            if e.sessions > 0 {
                e.sessions = 0;
                e.last_disconnect = now;
                e.dirty |= DISCONNECT;
            }
            e.active = false;
            e.dirty |= ACTIVE;
        }
    }
}

/// Starts the service's inactivity check and flush task; it ends after `shutdown`.
pub fn spawn(services: Arc<Services>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { services.device_state.run(&services, shutdown).await })
}

/// A stored time or timeout as milliseconds.
fn as_long(value: &KvValue) -> Option<i64> {
    match value {
        KvValue::Long(n) => Some(*n),
        KvValue::Double(d) => Some(*d as i64),
        KvValue::Str(s) => s.parse().ok(),
        _ => None,
    }
}
