//! Gateway devices: the devices behind a gateway, found or created by name in the gateway's
//! tenant (ThingsBoard's `findOrCreateDevice`), and the service RPCs a gateway is sent when one
//! of them is renamed or deleted.

use serde_json::{Value, json};

use super::Services;
use crate::domain::{Device, DeviceCredentials, DeviceId, DeviceProfile, StorageError, now_ms};

/// The device's `additionalInfo` key naming the gateway it last connected through.
pub const LAST_CONNECTED_GATEWAY: &str = "lastConnectedGateway";
/// The device's `additionalInfo` key naming the gateway that created it.
pub const CREATED_BY_GATEWAY: &str = "createdByGateway";
/// Sub-device names are at most this long (ThingsBoard's device name column).
pub const MAX_NAME: usize = 255;
/// How long a gateway's service RPC waits to be delivered (ThingsBoard: 24 h).
pub const SERVICE_RPC_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Delivery attempts of a service RPC (ThingsBoard: 3).
pub const SERVICE_RPC_RETRIES: u32 = 3;

/// Whether the device is a gateway (`additionalInfo.gateway == true`).
pub fn is_gateway(device: &Device) -> bool {
    device.additional_info.get("gateway") == Some(&Value::Bool(true))
}

/// Whether the gateway's PINGREQs keep its sub-devices active (`overwriteActivityTime`).
pub fn overwrites_activity_time(device: &Device) -> bool {
    device.additional_info.get("overwriteActivityTime") == Some(&Value::Bool(true))
}

/// The gateway a device last connected through, if any.
pub fn last_connected_gateway(device: &Device) -> Option<DeviceId> {
    device
        .additional_info
        .get(LAST_CONNECTED_GATEWAY)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .map(DeviceId)
}

/// A sub-device, and whether this lookup created it.
#[derive(Debug)]
pub struct SubDevice {
    pub device: Device,
    pub created: bool,
}

impl Services {
    /// The device named `name` in the gateway's tenant: an existing one (whatever its profile;
    /// `type` is then ignored) gets `lastConnectedGateway` set to the gateway; otherwise one is
    /// created with the profile named `type` (created when missing), the gateway's customer and
    /// an access token. Another tenant's device of that name is never looked at.
    pub async fn gateway_device(
        &self,
        gateway: &Device,
        name: &str,
        type_name: &str,
    ) -> Result<SubDevice, StorageError> {
        if let Some(found) = self
            .store
            .find_device_by_name(gateway.tenant_id, name)
            .await?
        {
            return Ok(SubDevice {
                device: self.mark_connected_through(found, gateway).await?,
                created: false,
            });
        }
        let profile = self.profile_named(gateway.tenant_id, type_name).await?;
        let mut device = Device::new_of_profile(
            &profile,
            name.to_owned(),
            json!({
                LAST_CONNECTED_GATEWAY: gateway.id.0.to_string(),
                CREATED_BY_GATEWAY: gateway.id.0.to_string(),
            }),
            now_ms(),
        );
        device.customer_id = gateway.customer_id;
        let credentials =
            DeviceCredentials::access_token(&device, super::accounts::random_alphanumeric(20));
        match self.store.create_device(&device, &credentials).await {
            Ok(()) => {
                self.auth_cache.invalidate();
                tracing::info!(gateway = %gateway.id, device = %device.id, name, "device created by its gateway");
                Ok(SubDevice {
                    device,
                    created: true,
                })
            }
            // Another gateway (or a REST call) created it meanwhile.
            Err(StorageError::Conflict(_)) => {
                let found = self
                    .store
                    .find_device_by_name(gateway.tenant_id, name)
                    .await?
                    .ok_or(StorageError::NotFound)?;
                Ok(SubDevice {
                    device: self.mark_connected_through(found, gateway).await?,
                    created: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Sets the device's `lastConnectedGateway` (written only when it changes).
    async fn mark_connected_through(
        &self,
        mut device: Device,
        gateway: &Device,
    ) -> Result<Device, StorageError> {
        if last_connected_gateway(&device) == Some(gateway.id) {
            return Ok(device);
        }
        let id = Value::String(gateway.id.0.to_string());
        match &mut device.additional_info {
            Value::Object(info) => {
                info.insert(LAST_CONNECTED_GATEWAY.to_owned(), id);
            }
            other => *other = json!({ LAST_CONNECTED_GATEWAY: id }),
        }
        self.store.update_device(&device).await
    }

    /// The tenant's profile named `name`, created (not default) when missing.
    pub async fn profile_named(
        &self,
        tenant: crate::domain::TenantId,
        name: &str,
    ) -> Result<DeviceProfile, StorageError> {
        if let Some(p) = self.store.find_profile_by_name(tenant, name).await? {
            return Ok(p);
        }
        let profile = DeviceProfile::new(tenant, name, false, now_ms());
        match self.store.create_profile(&profile).await {
            Ok(()) => Ok(profile),
            // A concurrent request created it first.
            Err(StorageError::Conflict(_)) => self
                .store
                .find_profile_by_name(tenant, name)
                .await?
                .ok_or(StorageError::NotFound),
            Err(e) => Err(e),
        }
    }
}

/// The service RPC a gateway gets when its device `before` became `after` (None: deleted), or
/// None when nothing the gateway knows changed: `(gateway, method, params)`.
pub fn service_rpc(
    before: &Device,
    after: Option<&Device>,
) -> Option<(DeviceId, &'static str, Value)> {
    let gateway = last_connected_gateway(before)?;
    match after {
        None => Some((
            gateway,
            "gateway_device_deleted",
            Value::String(before.name.clone()),
        )),
        Some(after) if after.name != before.name => {
            let mut params = serde_json::Map::new();
            params.insert(before.name.clone(), Value::String(after.name.clone()));
            Some((gateway, "gateway_device_renamed", Value::Object(params)))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, info: Value) -> Device {
        Device {
            id: DeviceId::new(),
            tenant_id: crate::domain::TenantId(uuid::Uuid::new_v4()),
            customer_id: None,
            created_time: 0,
            name: name.to_owned(),
            label: None,
            profile_id: crate::domain::DeviceProfileId(uuid::Uuid::new_v4()),
            profile_name: "default".to_owned(),
            additional_info: info,
            firmware_id: None,
            software_id: None,
            version: 1,
        }
    }

    #[test]
    fn gateway_flags_are_booleans_in_additional_info() {
        assert!(is_gateway(&device("g", json!({"gateway": true}))));
        assert!(!is_gateway(&device("g", json!({"gateway": "true"}))));
        assert!(!is_gateway(&device("g", Value::Null)));
        assert!(overwrites_activity_time(&device(
            "g",
            json!({"gateway": true, "overwriteActivityTime": true})
        )));
    }

    #[test]
    fn renames_and_deletions_of_a_gateways_device_are_told_to_it() {
        let gw = DeviceId::new();
        let before = device("A", json!({ LAST_CONNECTED_GATEWAY: gw.0.to_string() }));
        let renamed = Device {
            name: "B".to_owned(),
            ..before.clone()
        };
        assert_eq!(
            service_rpc(&before, Some(&renamed)),
            Some((gw, "gateway_device_renamed", json!({"A": "B"})))
        );
        assert_eq!(
            service_rpc(&before, None),
            Some((gw, "gateway_device_deleted", json!("A")))
        );
        assert_eq!(service_rpc(&before, Some(&before)), None, "no rename");
        assert_eq!(
            service_rpc(&device("A", json!({})), None),
            None,
            "no gateway"
        );
    }
}
