//! Pure domain types: ids, entities (accounts, devices, RPCs), typed key/values, attribute scopes,
//! paging and history queries, rule-engine messages, MQTT basic and X.509 credentials, the storage
//! error.
//! No I/O.

pub mod account;
pub mod credentials;
pub mod device;
pub mod error;
pub mod ids;
pub mod kv;
pub mod msg;
pub mod ota;
pub mod page;
pub mod payload;
pub mod profile;
pub mod rpc;
pub mod telemetry;
pub mod x509;

pub use account::{Activation, AuthSession, Authority, ClaimData, Customer, Tenant, User};
pub use device::{Device, DeviceCredentials, DeviceProfile};
pub use error::StorageError;
pub use ids::{CustomerId, DeviceId, DeviceProfileId, EntityId, OtaPackageId, TenantId, UserId};
pub use kv::{AttributeScope, Kv, KvValue, TsKv};
pub use msg::{Msg, MsgType};
pub use ota::{ChecksumAlgorithm, OtaPackage, OtaPackageType};
pub use page::{Page, PageQuery, SortOrder};
pub use rpc::{Rpc, RpcStatus};
pub use telemetry::{Aggregation, AttributeKv, HistoryQuery};

/// Milliseconds since the Unix epoch, the time unit of every timestamp in the platform.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
