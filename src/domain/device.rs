//! Devices, their profiles and their credentials.

use serde_json::Value;

use super::{CustomerId, DeviceId, DeviceProfileId, OtaPackageId, TenantId};

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProfile {
    pub id: DeviceProfileId,
    pub tenant_id: TenantId,
    pub created_time: i64,
    pub name: String,
    pub description: Option<String>,
    pub is_default: bool,
    /// ThingsBoard's `profileData` as saved (normalised by `profile::normalise`): device
    /// configuration, transport configuration, provisioning configuration, alarms.
    pub profile_data: Value,
    /// `provisionDeviceKey`: unique across all tenants when set.
    pub provision_device_key: Option<String>,
    /// The packages of the profile's devices that have none of their own.
    pub firmware_id: Option<OtaPackageId>,
    pub software_id: Option<OtaPackageId>,
}

impl DeviceProfile {
    /// A profile with DEFAULT transport and provisioning disabled.
    pub fn new(tenant_id: TenantId, name: &str, is_default: bool, created_time: i64) -> Self {
        Self {
            id: DeviceProfileId::new(),
            tenant_id,
            created_time,
            name: name.to_owned(),
            description: None,
            is_default,
            profile_data: super::profile::default_profile_data(),
            provision_device_key: None,
            firmware_id: None,
            software_id: None,
        }
    }

    /// `profileData.transportConfiguration.type` (`DEFAULT`, `MQTT`, ...).
    pub fn transport_type(&self) -> &str {
        self.profile_data
            .pointer("/transportConfiguration/type")
            .and_then(Value::as_str)
            .unwrap_or("DEFAULT")
    }

    /// `profileData.provisionConfiguration.type` (`DISABLED`, `ALLOW_CREATE_NEW_DEVICES`, ...).
    pub fn provision_type(&self) -> &str {
        self.profile_data
            .pointer("/provisionConfiguration/type")
            .and_then(Value::as_str)
            .unwrap_or("DISABLED")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub customer_id: Option<CustomerId>,
    pub created_time: i64,
    pub name: String,
    pub label: Option<String>,
    pub profile_id: DeviceProfileId,
    /// The profile's name (ThingsBoard's device `type`); filled by every read.
    pub profile_name: String,
    pub additional_info: Value,
    /// The firmware and software packages assigned to the device itself (the profile's apply
    /// otherwise).
    pub firmware_id: Option<OtaPackageId>,
    pub software_id: Option<OtaPackageId>,
    pub version: i64,
}

impl Device {
    /// A new device of `profile` (version 1, created at `created_time`), with no label, customer
    /// or packages of its own.
    pub fn new_of_profile(
        profile: &DeviceProfile,
        name: String,
        additional_info: Value,
        created_time: i64,
    ) -> Self {
        Self {
            id: DeviceId::new(),
            tenant_id: profile.tenant_id,
            customer_id: None,
            created_time,
            name,
            label: None,
            profile_id: profile.id,
            profile_name: profile.name.clone(),
            additional_info,
            firmware_id: None,
            software_id: None,
            version: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceCredentials {
    pub id: uuid::Uuid,
    pub device_id: DeviceId,
    pub created_time: i64,
    /// `ACCESS_TOKEN`, `MQTT_BASIC` or `X509_CERTIFICATE`.
    pub credentials_type: String,
    /// The unique lookup key (the token for ACCESS_TOKEN).
    pub credentials_id: String,
    pub credentials_value: Option<String>,
    pub version: i64,
}

impl DeviceCredentials {
    /// New credentials (version 1) of `device`, created with it.
    pub fn new_of(device: &Device, kind: &str, id: String, value: Option<String>) -> Self {
        Self {
            id: uuid::Uuid::new_v4(),
            device_id: device.id,
            created_time: device.created_time,
            credentials_type: kind.to_owned(),
            credentials_id: id,
            credentials_value: value,
            version: 1,
        }
    }

    /// New ACCESS_TOKEN credentials of `device`.
    pub fn access_token(device: &Device, token: String) -> Self {
        Self::new_of(device, "ACCESS_TOKEN", token, None)
    }
}
