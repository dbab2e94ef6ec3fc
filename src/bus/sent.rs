//! Two-way server-side RPCs sent to devices and not answered yet, by device and request id, on
//! every node: as in ThingsBoard the request id belongs to the device (a counter from 0), so the
//! answer may come from any session of the device, a later one or one on another node (sending
//! nodes announce each request on the bus). Entries end with the answer or their expiration; the
//! table is bounded (a device's counter is kept while the table is not full).

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::RpcRequest;
use crate::domain::{DeviceId, TenantId, now_ms};

/// Most unanswered requests remembered per device and on the whole node; devices whose counter
/// is kept without any unanswered request (beyond that they start at 0 again).
const MAX_PER_DEVICE: usize = 1024;
const MAX_TOTAL: usize = 100_000;
const MAX_IDLE_DEVICES: usize = 100_000;

#[derive(Default)]
pub struct SentRpcs {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<DeviceId, DeviceSent>,
    total: usize,
}

struct DeviceSent {
    tenant: TenantId,
    next_id: i32,
    by_id: HashMap<i32, Sent>,
}

struct Sent {
    request: RpcRequest,
    /// Published (or being published) and not failed: a copy offered again is not re-sent.
    held: bool,
}

impl SentRpcs {
    /// Allocates the device's next request id for a request about to be published. A two-way
    /// request is remembered under it until answered or expired.
    pub fn allocate(&self, tenant: TenantId, device: DeviceId, request: &RpcRequest) -> i32 {
        let mut inner = self.lock();
        inner.prune(device, now_ms());
        let entry = inner.entry(tenant, device);
        let mut id = entry.next_id;
        while entry.by_id.contains_key(&id) {
            id = next(id);
        }
        entry.next_id = next(id);
        if !request.oneway {
            inner.insert(tenant, device, id, request.clone());
        }
        id
    }

    /// Another node sent `request` to the device under `id`.
    pub fn record(&self, tenant: TenantId, device: DeviceId, id: i32, request: RpcRequest) {
        let mut inner = self.lock();
        inner.prune(device, now_ms());
        let entry = inner.entry(tenant, device);
        if id >= entry.next_id {
            entry.next_id = next(id);
        }
        if !request.oneway {
            inner.insert(tenant, device, id, request);
        }
    }

    /// The device answered `id`: the request, once (None when unknown, expired or another
    /// tenant's).
    pub fn take(&self, tenant: TenantId, device: DeviceId, id: i32) -> Option<RpcRequest> {
        let mut inner = self.lock();
        inner.prune(device, now_ms());
        let entry = inner.devices.get_mut(&device)?;
        if entry.tenant != tenant {
            return None;
        }
        let sent = entry.by_id.remove(&id)?;
        inner.total = inner.total.saturating_sub(1);
        Some(sent.request)
    }

    /// The RPC was answered (anywhere): every id it was sent under is forgotten.
    pub fn answered(&self, device: DeviceId, rpc: Uuid) {
        let mut inner = self.lock();
        let Some(entry) = inner.devices.get_mut(&device) else {
            return;
        };
        let before = entry.by_id.len();
        entry.by_id.retain(|_, s| s.request.rpc != rpc);
        let removed = before - entry.by_id.len();
        inner.total = inner.total.saturating_sub(removed);
    }

    /// The publish under `id` failed: still answerable (the device may have it), but a copy
    /// offered again is sent anew.
    pub fn failed(&self, device: DeviceId, id: i32) {
        if let Some(sent) = self
            .lock()
            .devices
            .get_mut(&device)
            .and_then(|e| e.by_id.get_mut(&id))
        {
            sent.held = false;
        }
    }

    /// Whether the RPC was sent to the device and waits for its answer.
    pub fn holds(&self, device: DeviceId, rpc: Uuid) -> bool {
        self.lock()
            .devices
            .get(&device)
            .is_some_and(|e| e.by_id.values().any(|s| s.held && s.request.rpc == rpc))
    }

    /// Unanswered requests remembered, all devices.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each change keeps `total` in step before it returns: a panic cannot split them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn entry(&mut self, tenant: TenantId, device: DeviceId) -> &mut DeviceSent {
        if !self.devices.contains_key(&device) && self.devices.len() >= MAX_IDLE_DEVICES + MAX_TOTAL
        {
            // Counters of devices with nothing unanswered go; those devices count from 0 again.
            self.prune_all(now_ms());
            self.devices.retain(|_, e| !e.by_id.is_empty());
        }
        let entry = self.devices.entry(device).or_insert_with(|| DeviceSent {
            tenant,
            next_id: 0,
            by_id: HashMap::new(),
        });
        // A device id belongs to one tenant; a stale entry of another is not kept.
        if entry.tenant != tenant {
            self.total = self.total.saturating_sub(entry.by_id.len());
            entry.by_id.clear();
            entry.tenant = tenant;
            entry.next_id = 0;
        }
        entry
    }

    fn insert(&mut self, tenant: TenantId, device: DeviceId, id: i32, request: RpcRequest) {
        if self.total >= MAX_TOTAL {
            self.prune_all(now_ms());
        }
        if self.total >= MAX_TOTAL {
            tracing::warn!(
                limit = MAX_TOTAL,
                "too many unanswered RPC requests on this node; forgetting the one expiring first"
            );
            self.evict_first_expiring(None);
        }
        let entry = self.entry(tenant, device);
        if entry.by_id.len() >= MAX_PER_DEVICE {
            tracing::warn!(
                device = %device,
                limit = MAX_PER_DEVICE,
                "too many unanswered RPC requests for the device; forgetting the one expiring first"
            );
            self.evict_first_expiring(Some(device));
        }
        let entry = self.entry(tenant, device);
        let old = entry.by_id.insert(
            id,
            Sent {
                request,
                held: true,
            },
        );
        if old.is_none() {
            self.total += 1;
        }
    }

    /// Forgets the device's expired requests.
    fn prune(&mut self, device: DeviceId, now: i64) {
        let Some(entry) = self.devices.get_mut(&device) else {
            return;
        };
        let before = entry.by_id.len();
        entry.by_id.retain(|_, s| s.request.expiration_time > now);
        self.total = self.total.saturating_sub(before - entry.by_id.len());
    }

    fn prune_all(&mut self, now: i64) {
        let devices: Vec<DeviceId> = self.devices.keys().copied().collect();
        for device in devices {
            self.prune(device, now);
        }
    }

    fn evict_first_expiring(&mut self, only: Option<DeviceId>) {
        let victim = self
            .devices
            .iter()
            .filter(|(d, _)| only.is_none_or(|o| o == **d))
            .flat_map(|(d, e)| e.by_id.iter().map(move |(id, s)| (*d, *id, s)))
            .min_by_key(|(_, _, s)| s.request.expiration_time)
            .map(|(d, id, _)| (d, id));
        if let Some((device, id)) = victim
            && let Some(entry) = self.devices.get_mut(&device)
            && entry.by_id.remove(&id).is_some()
        {
            self.total = self.total.saturating_sub(1);
        }
    }
}

/// The id after `id`: 0 after `i32::MAX` (device ids are never negative).
fn next(id: i32) -> i32 {
    id.checked_add(1).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(oneway: bool, expiration_time: i64) -> RpcRequest {
        RpcRequest {
            rpc: Uuid::new_v4(),
            request_id: 0,
            method: "m".to_owned(),
            params: "{}".to_owned(),
            oneway,
            persistent: false,
            expiration_time,
            traceparent: None,
        }
    }

    #[test]
    fn ids_belong_to_the_device_and_answers_match_once() {
        let sent = SentRpcs::default();
        let (tenant, device, other) = (TenantId::new(), DeviceId::new(), DeviceId::new());
        let (a, b) = (request(false, i64::MAX), request(true, i64::MAX));
        assert_eq!(sent.allocate(tenant, device, &a), 0);
        assert_eq!(
            sent.allocate(tenant, device, &b),
            1,
            "one-way uses an id too"
        );
        assert_eq!(sent.allocate(tenant, other, &a), 0, "per device");
        assert_eq!(sent.len(), 2, "one-way requests are not remembered");
        assert!(sent.holds(device, a.rpc));
        assert_eq!(sent.take(TenantId::new(), device, 0), None, "other tenant");
        assert_eq!(sent.take(tenant, device, 0), Some(a.clone()));
        assert_eq!(sent.take(tenant, device, 0), None, "answered once");
        assert!(!sent.holds(device, a.rpc));
        sent.answered(other, a.rpc);
        assert!(sent.is_empty());
        assert_eq!(sent.allocate(tenant, device, &a), 2, "the counter goes on");
    }

    #[test]
    fn ids_learned_from_other_nodes_are_not_reused() {
        let sent = SentRpcs::default();
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let remote = request(false, i64::MAX);
        sent.record(tenant, device, 7, remote.clone());
        assert_eq!(sent.allocate(tenant, device, &request(false, i64::MAX)), 8);
        assert_eq!(sent.take(tenant, device, 7), Some(remote));
    }

    #[test]
    fn expired_and_failed_requests() {
        let sent = SentRpcs::default();
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let expired = request(false, 1);
        let id = sent.allocate(tenant, device, &expired);
        assert_eq!(sent.take(tenant, device, id), None, "expired");
        assert!(sent.is_empty());
        let live = request(false, i64::MAX);
        let id = sent.allocate(tenant, device, &live);
        sent.failed(device, id);
        assert!(!sent.holds(device, live.rpc), "a re-offer is sent anew");
        assert_eq!(
            sent.take(tenant, device, id),
            Some(live),
            "still answerable"
        );
    }

    #[test]
    fn a_device_keeps_at_most_its_bound() {
        let sent = SentRpcs::default();
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        for i in 0..=MAX_PER_DEVICE {
            let r = request(false, 1_000_000_000_000_000 + i as i64);
            sent.allocate(tenant, device, &r);
        }
        assert_eq!(sent.len(), MAX_PER_DEVICE);
        assert_eq!(
            sent.take(tenant, device, 0),
            None,
            "the first expiring went"
        );
        assert!(sent.take(tenant, device, 1).is_some());
    }
}
