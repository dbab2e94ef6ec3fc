//! Typed entity ids and their ThingsBoard JSON form `{"entityType": "...", "id": "<uuid>"}`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id ThingsBoard uses for "no customer" (its NULL_UUID).
pub const NULL_UUID: Uuid = Uuid::from_u128(0x13814000_1dd2_11b2_8080_808080808080);

macro_rules! entity_id {
    ($name:ident, $ty:literal) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            pub const ENTITY_TYPE: &'static str = $ty;

            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// `{"entityType": ..., "id": ...}` as ThingsBoard serialises entity ids.
            pub fn to_json(self) -> serde_json::Value {
                serde_json::json!({"entityType": $ty, "id": self.0.to_string()})
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                EntityIdJson {
                    entity_type: Some($ty.to_owned()),
                    id: self.0,
                }
                .serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = EntityIdJson::deserialize(d)?;
                match raw.entity_type.as_deref() {
                    None | Some($ty) => Ok(Self(raw.id)),
                    Some(other) => Err(serde::de::Error::custom(format!(
                        "expected entityType {}, got {other}",
                        $ty
                    ))),
                }
            }
        }
    };
}

#[derive(Serialize, Deserialize)]
struct EntityIdJson {
    #[serde(
        rename = "entityType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    entity_type: Option<String>,
    id: Uuid,
}

entity_id!(TenantId, "TENANT");
entity_id!(CustomerId, "CUSTOMER");
entity_id!(UserId, "USER");
entity_id!(DeviceId, "DEVICE");
entity_id!(DeviceProfileId, "DEVICE_PROFILE");
entity_id!(OtaPackageId, "OTA_PACKAGE");

/// The originator of a rule-engine message or the owner of telemetry and attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntityId {
    Device(DeviceId),
    Tenant(TenantId),
}

impl EntityId {
    pub fn uuid(self) -> Uuid {
        match self {
            Self::Device(id) => id.0,
            Self::Tenant(id) => id.0,
        }
    }

    pub fn entity_type(self) -> &'static str {
        match self {
            Self::Device(_) => DeviceId::ENTITY_TYPE,
            Self::Tenant(_) => TenantId::ENTITY_TYPE,
        }
    }
}
