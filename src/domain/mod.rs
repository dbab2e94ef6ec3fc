//! Pure domain types: ids, typed key/values, attribute scopes, rule-engine messages, MQTT basic
//! credentials. No I/O.

pub mod credentials;
pub mod ids;
pub mod kv;
pub mod msg;
pub mod payload;

pub use ids::{CustomerId, DeviceId, DeviceProfileId, EntityId, TenantId, UserId};
pub use kv::{AttributeScope, Kv, KvValue, TsKv};
pub use msg::{Msg, MsgType};

/// Milliseconds since the Unix epoch, the time unit of every timestamp in the platform.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
