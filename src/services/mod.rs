//! Business operations shared by the transport, the rule engine and the REST API.

pub mod accounts;
pub mod auth_cache;
pub mod claiming;
pub mod device_auth;
pub mod device_state;
pub mod gateway;
pub mod key_quota;
pub mod login_throttle;
pub mod logins;
pub mod ota;
pub mod ota_state;
pub mod passwords;
pub mod profile_settings;
pub mod provisioning;
pub mod retention;
pub mod rpc;
pub mod x509_chain;

use uuid::Uuid;

use crate::domain::kv::Typing;
use crate::domain::{AttributeScope, Kv, TsKv};
use crate::storage::{DynStore, StorageError, WriteOp, Writer};

/// The parts every caller needs: the store for reads, the group-commit writer for writes.
pub struct Services {
    pub store: DynStore,
    pub writer: Writer,
    pub typing: Typing,
    pub bus: std::sync::Arc<dyn crate::bus::Bus>,
    pub rpc: rpc::RpcService,
    pub device_state: device_state::DeviceStateService,
    /// Recently refused CONNECT credentials (see `auth_cache`).
    pub auth_cache: auth_cache::AuthCache,
    /// Time-series keys per tenant, bounded (`limits.max_timeseries_keys_per_tenant`).
    pub key_quota: key_quota::KeyQuota,
    pub logins: logins::Logins,
    /// Compiled MQTT settings of device profiles.
    pub profile_settings: profile_settings::ProfileSettings,
    /// TTL of points saved without one (`retention.default_ttl_s`; 0 keeps them).
    pub default_ttl_s: u64,
    /// WebSocket subscribers anywhere: committed changes of watched entities are published.
    pub live: std::sync::Arc<crate::bus::live::LiveHub>,
}

impl Services {
    /// Saves time-series points with the default TTL; returns once they are committed.
    pub async fn save_timeseries(
        &self,
        entity: Uuid,
        points: Vec<TsKv>,
    ) -> Result<(), StorageError> {
        self.save_timeseries_ttl(entity, points, 0).await
    }

    /// Saves time-series points that expire `ttl_s` seconds after their timestamps (0: the
    /// default, `retention.default_ttl_s`, which 0 keeps); returns once they are committed.
    pub async fn save_timeseries_ttl(
        &self,
        entity: Uuid,
        points: Vec<TsKv>,
        ttl_s: u64,
    ) -> Result<(), StorageError> {
        if points.is_empty() {
            return Ok(());
        }
        let ttl_s = if ttl_s == 0 {
            self.default_ttl_s
        } else {
            ttl_s
        };
        let ttl_ms =
            (ttl_s > 0).then(|| i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX));
        self.write(vec![WriteOp::Timeseries {
            entity,
            points,
            ttl_ms,
        }])
        .await
    }

    /// Commits the writes, then tells WebSocket subscribers of the entities (when there are any).
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        let changes = self.live.changes_of(&ops);
        self.writer.write(ops).await?;
        self.live.committed(changes);
        Ok(())
    }

    /// Saves attributes of one scope stamped `ts`; returns once they are committed.
    pub async fn save_attributes(
        &self,
        entity: Uuid,
        scope: AttributeScope,
        kvs: Vec<Kv>,
        ts: i64,
    ) -> Result<(), StorageError> {
        if kvs.is_empty() {
            return Ok(());
        }
        self.write(vec![WriteOp::Attributes {
            entity,
            scope,
            kvs,
            ts,
        }])
        .await
    }
}

impl Services {
    /// Tells WebSocket subscribers of `entity`, when there are any, that `keys` were deleted:
    /// as ThingsBoard, an update of each key at ts 0 with an empty value.
    pub fn live_deleted(&self, entity: Uuid, what: crate::bus::live::ChangeKind, keys: &[String]) {
        use crate::bus::live::{Changed, LiveValue};
        if keys.is_empty() || !self.live.is_watched(entity) {
            return;
        }
        let values = keys
            .iter()
            .map(|key| LiveValue {
                key: key.clone(),
                ts: 0,
                value: String::new(),
            })
            .collect();
        self.live.committed(vec![Changed {
            entity,
            what,
            values,
        }]);
    }

    /// Pushes changed SHARED attributes to the device's session, wherever it is.
    pub async fn push_shared_attributes(&self, device: crate::domain::DeviceId, kvs: &[Kv]) {
        if kvs.is_empty() {
            return;
        }
        let payload = crate::domain::payload::kvs_to_object(kvs).to_string();
        self.push_attributes(device, payload).await;
    }

    /// Tells the device which SHARED attributes were deleted: `{"deleted": [...]}`.
    pub async fn push_shared_deleted(&self, device: crate::domain::DeviceId, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let payload = serde_json::json!({ "deleted": keys }).to_string();
        self.push_attributes(device, payload).await;
    }

    async fn push_attributes(&self, device: crate::domain::DeviceId, payload: String) {
        let event = crate::bus::Event::ToDevice {
            device: device.0,
            downlink: crate::bus::Downlink::Attributes { payload },
        };
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(device = %device, error = %e, "shared attribute update not passed to other nodes");
        }
    }
}
