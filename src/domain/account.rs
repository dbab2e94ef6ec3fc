//! Accounts: tenants, customers, users and their authorities, and the login sessions of users.

use super::{CustomerId, TenantId, UserId};

#[derive(Clone, Debug, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub title: String,
    pub created_time: i64,
}

/// A customer of a tenant: it owns the devices assigned to it and its users see only those.
#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    pub id: CustomerId,
    pub tenant_id: TenantId,
    /// Unique within the tenant.
    pub title: String,
    pub created_time: i64,
}

/// A pending activation: the token of the link that lets a new user set its first password.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    pub user_id: UserId,
    pub token: String,
    /// ms since the epoch.
    pub expires_at: i64,
}

/// A device's open claim window (ThingsBoard's claim data): a customer user who knows the
/// secret may take the device until `expiration_time`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimData {
    pub secret_key: String,
    /// ms since the epoch.
    pub expiration_time: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority {
    SysAdmin,
    TenantAdmin,
    CustomerUser,
}

impl Authority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SysAdmin => "SYS_ADMIN",
            Self::TenantAdmin => "TENANT_ADMIN",
            Self::CustomerUser => "CUSTOMER_USER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SYS_ADMIN" => Some(Self::SysAdmin),
            "TENANT_ADMIN" => Some(Self::TenantAdmin),
            "CUSTOMER_USER" => Some(Self::CustomerUser),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub created_time: i64,
    /// None for the system administrator.
    pub tenant_id: Option<TenantId>,
    pub customer_id: Option<CustomerId>,
    pub email: String,
    pub authority: Authority,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// argon2 PHC string.
    pub password_hash: String,
    /// A disabled user cannot log in, and its tokens are refused.
    pub enabled: bool,
    /// Consecutive failed logins since the last success or lock.
    pub failed_logins: i32,
    /// Logins are refused until this time (ms since the epoch); 0 when never locked.
    pub locked_until: i64,
}

/// One login: the access and refresh tokens it issued carry its id as `sessionId`, and are
/// honoured only while the session exists (logout, a password change, disabling or deleting the
/// user remove it).
#[derive(Clone, Debug, PartialEq)]
pub struct AuthSession {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    /// The `jti` of the one refresh token of the session that may still be used.
    pub refresh_id: uuid::Uuid,
    pub created_time: i64,
    /// When its current refresh token expires (ms since the epoch).
    pub expires_at: i64,
}
