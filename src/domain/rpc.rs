//! Persistent RPCs: their lifecycle and the stored request.

use serde_json::Value;

use super::{DeviceId, TenantId};

/// Lifecycle of a persistent RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RpcStatus {
    Queued,
    Sent,
    Delivered,
    Successful,
    Timeout,
    Expired,
    Failed,
    Deleted,
}

impl RpcStatus {
    pub const ALL: [RpcStatus; 8] = [
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Successful,
        Self::Timeout,
        Self::Expired,
        Self::Failed,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sent => "SENT",
            Self::Delivered => "DELIVERED",
            Self::Successful => "SUCCESSFUL",
            Self::Timeout => "TIMEOUT",
            Self::Expired => "EXPIRED",
            Self::Failed => "FAILED",
            Self::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A stored persistent RPC. `request` is `{"method","params"(JSON text),"oneway","retries"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rpc {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub created_time: i64,
    pub expiration_time: i64,
    pub request: Value,
    pub response: Option<Value>,
    pub status: RpcStatus,
    /// Delivery attempts that failed so far.
    pub retries: i32,
    pub additional_info: Option<Value>,
}
