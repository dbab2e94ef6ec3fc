//! Accounts: tenants, users and their authorities.

use super::{CustomerId, TenantId, UserId};

#[derive(Clone, Debug, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub title: String,
    pub created_time: i64,
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
}
