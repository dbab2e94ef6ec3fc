//! Debug capture per rule node: switched on for a bounded time (or for failures only), each
//! message entering a node (IN) and leaving it (OUT, with its relation) kept in a bounded ring
//! per node, read over REST like ThingsBoard's `DEBUG_RULE_NODE` events.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use uuid::Uuid;

use crate::domain::{Msg, now_ms};

/// One captured event (ThingsBoard's `RuleNodeDebugEvent` body).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DebugEvent {
    pub id: Uuid,
    pub created_time: i64,
    /// `IN` or `OUT`.
    pub event_type: &'static str,
    pub entity_id: Uuid,
    pub entity_type: &'static str,
    pub msg_id: Uuid,
    pub msg_type: String,
    pub data_type: &'static str,
    pub relation_type: Option<String>,
    pub data: String,
    pub metadata: String,
    pub error: Option<String>,
}

impl DebugEvent {
    fn of(event_type: &'static str, msg: &Msg, relation: Option<String>) -> Self {
        Self {
            id: Uuid::new_v4(),
            created_time: now_ms(),
            event_type,
            entity_id: msg.originator.uuid(),
            entity_type: msg.originator.entity_type(),
            msg_id: msg.id,
            msg_type: msg.msg_type.as_str().to_owned(),
            data_type: "JSON",
            relation_type: relation,
            data: msg.data().to_string(),
            metadata: serde_json::to_string(&msg.metadata).unwrap_or_default(),
            error: msg.metadata.get("error").cloned(),
        }
    }
}

/// The debug state and events of one node; survives reloads (keyed by the node's stable id).
pub struct DebugSlot {
    /// Every message is captured until this epoch ms (0: off).
    all_until: AtomicI64,
    /// Failures are captured, without a time limit.
    failures: AtomicBool,
    events: Mutex<VecDeque<DebugEvent>>,
    capacity: usize,
}

impl DebugSlot {
    fn new(capacity: usize) -> Self {
        Self {
            all_until: AtomicI64::new(0),
            failures: AtomicBool::new(false),
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether every message is being captured now.
    pub fn all(&self) -> bool {
        let until = self.all_until.load(Ordering::Relaxed);
        until != 0 && until > now_ms()
    }

    pub fn failures(&self) -> bool {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether anything may be captured (one or two atomic loads on the hot path).
    pub fn active(&self) -> bool {
        self.failures() || self.all()
    }

    pub fn settings(&self) -> (bool, i64) {
        (self.failures(), self.all_until.load(Ordering::Relaxed))
    }

    pub fn record(&self, event_type: &'static str, msg: &Msg, relation: Option<String>) {
        let event = DebugEvent::of(event_type, msg, relation);
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// Newest first.
    pub fn events(&self) -> Vec<DebugEvent> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.iter().rev().cloned().collect()
    }
}

/// Every node's debug slot, by node id; bounded by the number of nodes ever loaded.
pub struct DebugRegistry {
    slots: Mutex<HashMap<Uuid, Arc<DebugSlot>>>,
    capacity: usize,
    /// Longest capture of every message, in ms (`engine.debug_max_minutes`).
    max_ms: i64,
}

impl DebugRegistry {
    pub fn new(capacity: usize, max_minutes: u64) -> Self {
        Self {
            slots: Mutex::default(),
            capacity,
            max_ms: i64::try_from(max_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX),
        }
    }

    pub fn slot(&self, node: Uuid) -> Arc<DebugSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .entry(node)
            .or_insert_with(|| Arc::new(DebugSlot::new(self.capacity)))
            .clone()
    }

    pub fn get(&self, node: Uuid) -> Option<Arc<DebugSlot>> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.get(&node).cloned()
    }

    /// Sets a node's capture: failures only, and/or everything until `all_until` (capped to now +
    /// `engine.debug_max_minutes`, as ThingsBoard caps it). Returns the `all_until` applied.
    pub fn configure(&self, node: Uuid, failures: bool, all_until: i64) -> i64 {
        let slot = self.slot(node);
        let cap = now_ms().saturating_add(self.max_ms);
        let until = if all_until > 0 { all_until.min(cap) } else { 0 };
        slot.failures.store(failures, Ordering::Relaxed);
        slot.all_until.store(until, Ordering::Relaxed);
        until
    }

    pub fn max_ms(&self) -> i64 {
        self.max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, EntityId, MsgType, TenantId};

    #[test]
    fn capture_is_capped_in_time_and_size() {
        let reg = DebugRegistry::new(2, 15);
        let node = Uuid::new_v4();
        let until = reg.configure(node, false, i64::MAX);
        assert!(until <= now_ms() + 15 * 60_000);
        let slot = reg.slot(node);
        assert!(slot.all());
        let msg = Msg::new(
            MsgType::PostTelemetryRequest,
            TenantId(Uuid::nil()),
            EntityId::Device(DeviceId(Uuid::nil())),
            serde_json::json!({"t": 1}),
        );
        for _ in 0..3 {
            slot.record("IN", &msg, None);
        }
        assert_eq!(slot.events().len(), 2);
        reg.configure(node, false, 0);
        assert!(!slot.active());
    }
}
