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
