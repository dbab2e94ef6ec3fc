//! The per-tenant quota of time-series keys (`limits.max_timeseries_keys_per_tenant`): every new
//! key a device sends grows the key dictionary for good, so a tenant may introduce only so many.
//! A tenant's keys are read once from storage (those with a latest value on its devices) and then
//! kept in memory, at most the quota per tenant.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::domain::{StorageError, TenantId};
use crate::storage::DynStore;

/// A message refused because it would take its tenant over the quota.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(
        "tenant time-series key quota reached ({max} keys, limits.max_timeseries_keys_per_tenant): new key {key:?} refused"
    )]
    Exceeded { max: usize, key: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A tenant's known keys; None until read from storage.
type Keys = Arc<RwLock<Option<HashSet<String>>>>;

pub struct KeyQuota {
    max: usize,
    tenants: Mutex<HashMap<TenantId, Keys>>,
}

impl KeyQuota {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Admits the keys of one message: known keys always, new ones while the tenant stays within
    /// the quota. A refused message adds none of its keys.
    pub async fn admit(
        &self,
        store: &DynStore,
        tenant: TenantId,
        keys: &[&str],
    ) -> Result<(), QuotaError> {
        let entry = self
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant)
            .or_default()
            .clone();
        let loaded = read(&entry).is_some();
        if !loaded {
            // Read without a lock held; two first messages may both read, which is harmless.
            let stored: HashSet<String> = store
                .tenant_timeseries_keys(tenant.0)
                .await?
                .into_iter()
                .collect();
            let mut known = entry.write().unwrap_or_else(|e| e.into_inner());
            if known.is_none() {
                *known = Some(stored);
            }
        }
        // The common case: every key is known already.
        if let Some(known) = read(&entry).as_ref()
            && keys.iter().all(|k| known.contains(*k))
        {
            return Ok(());
        }
        let mut guard = entry.write().unwrap_or_else(|e| e.into_inner());
        let known = guard.get_or_insert_with(HashSet::new);
        let mut new: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| !known.contains(*k))
            .collect();
        new.sort_unstable();
        new.dedup();
        if let Some(key) = new.get(self.max.saturating_sub(known.len())) {
            return Err(QuotaError::Exceeded {
                max: self.max,
                key: (*key).to_owned(),
            });
        }
        known.extend(new.into_iter().map(str::to_owned));
        Ok(())
    }
}

fn read(keys: &Keys) -> std::sync::RwLockReadGuard<'_, Option<HashSet<String>>> {
    keys.read().unwrap_or_else(|e| e.into_inner())
}
