//! Which tenant owns a device, remembered for REST calls that only need to know that (a tenant
//! administrator saving attributes); forgotten on every node when the device is deleted or its
//! credentials change (the `CloseSessions` event), and after `OWNER_TTL` in any case.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{DeviceId, TenantId};

/// How long an owner is trusted without a database read (bounds staleness when a deletion event
/// from another node was lost, e.g. during a Redis outage).
pub const OWNER_TTL: Duration = Duration::from_secs(30);
/// Devices remembered at most; when full, expired entries go, then everything.
pub const MAX_OWNERS: usize = 100_000;

#[derive(Default)]
pub struct Owners {
    map: Mutex<HashMap<DeviceId, (TenantId, Instant)>>,
}

impl Owners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, (TenantId, Instant)>> {
        // Single inserts and removes: a panic elsewhere cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device's tenant, if remembered within `OWNER_TTL`.
    pub fn tenant_of(&self, device: DeviceId) -> Option<TenantId> {
        self.tenant_at(device, Instant::now())
    }

    fn tenant_at(&self, device: DeviceId, now: Instant) -> Option<TenantId> {
        self.lock()
            .get(&device)
            .filter(|(_, at)| now.duration_since(*at) < OWNER_TTL)
            .map(|(tenant, _)| *tenant)
    }

    /// Remembers the device's tenant, read from the database just now.
    pub fn remember(&self, device: DeviceId, tenant: TenantId) {
        self.remember_at(device, tenant, Instant::now());
    }

    fn remember_at(&self, device: DeviceId, tenant: TenantId, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_OWNERS && !map.contains_key(&device) {
            map.retain(|_, (_, at)| now.duration_since(*at) < OWNER_TTL);
            if map.len() >= MAX_OWNERS {
                map.clear();
            }
        }
        map.insert(device, (tenant, now));
    }

    /// The device was deleted or changed: the next call reads the database.
    pub fn forget(&self, device: DeviceId) {
        self.lock().remove(&device);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_trusted_until_forgotten_or_expired() {
        let owners = Owners::default();
        let (device, tenant) = (DeviceId::new(), TenantId::new());
        let t0 = Instant::now();
        assert_eq!(owners.tenant_at(device, t0), None);
        owners.remember_at(device, tenant, t0);
        assert_eq!(owners.tenant_at(device, t0), Some(tenant));
        assert_eq!(owners.tenant_at(device, t0 + OWNER_TTL), None, "expired");
        owners.forget(device);
        assert_eq!(owners.tenant_at(device, t0), None, "forgotten");
    }

    #[test]
    fn the_map_is_bounded() {
        let owners = Owners::default();
        let tenant = TenantId::new();
        let t0 = Instant::now();
        for _ in 0..MAX_OWNERS {
            owners.remember_at(DeviceId::new(), tenant, t0);
        }
        assert_eq!(owners.len(), MAX_OWNERS);
        let last = DeviceId::new();
        owners.remember_at(last, tenant, t0 + OWNER_TTL);
        assert_eq!(owners.len(), 1, "expired entries went");
        assert_eq!(owners.tenant_at(last, t0 + OWNER_TTL), Some(tenant));
    }
}
