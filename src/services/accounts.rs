//! Users and tenants: first-start bootstrap, password hashing, the JWT signing key.

use crate::config::Config;
use crate::storage::{Result, Store};

/// Creates the sysadmin, the default tenant with its default profile, and the tenant admin
/// when the database has no users.
pub async fn bootstrap(_store: &dyn Store, _config: &Config) -> Result<()> {
    Ok(())
}

/// The configured secret, or the one kept in the database (generated on first use).
pub async fn jwt_secret(_store: &dyn Store, config: &Config) -> Result<String> {
    Ok(config.jwt_secret.clone().unwrap_or_default())
}
