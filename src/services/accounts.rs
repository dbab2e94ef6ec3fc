//! Users and tenants: first-start bootstrap, password hashing, the JWT signing key.
//! Uses storage only; argon2 work runs on the password thread (`passwords`), never on the executor.

use base64::Engine as _;
use rand::RngCore;
use rand::distr::{Alphanumeric, SampleString};

use crate::config::Config;
use crate::domain::{TenantId, UserId, now_ms};
use crate::storage::{Authority, DeviceProfile, Result, StorageError, Store, Tenant, User};

/// The settings key of the generated JWT signing key.
const JWT_SECRET_SETTING: &str = "jwt_secret";

/// Creates the sysadmin, the default tenant with its default profile, and the tenant admin
/// when the database has no users.
pub async fn bootstrap(store: &dyn Store, config: &Config) -> Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let now = now_ms();
    let sysadmin = new_user(
        &config.sysadmin_email,
        config.sysadmin_password.as_deref(),
        Authority::SysAdmin,
        None,
        now,
    )
    .await?;
    match store.create_user(&sysadmin).await {
        Ok(()) => {}
        // Another node sharing the database bootstrapped first.
        Err(StorageError::Conflict(_)) => return Ok(()),
        Err(e) => return Err(e),
    }
    let tenant = Tenant {
        id: TenantId::new(),
        title: "Tenant".to_owned(),
        created_time: now,
    };
    store.create_tenant(&tenant).await?;
    store
        .create_profile(&default_profile(tenant.id, now))
        .await?;
    let admin = new_user(
        &config.admin_email,
        config.admin_password.as_deref(),
        Authority::TenantAdmin,
        Some(tenant.id),
        now,
    )
    .await?;
    store.create_user(&admin).await?;
    tracing::info!(sysadmin = %sysadmin.email, tenant_admin = %admin.email, "first start: accounts created");
    Ok(())
}

/// The default device profile ThingsBoard creates for every tenant.
pub fn default_profile(tenant: TenantId, now: i64) -> DeviceProfile {
    DeviceProfile {
        description: Some("Default device profile".to_owned()),
        ..DeviceProfile::new(tenant, "default", true, now)
    }
}

/// A user with the configured password, or a random one printed once in the log.
async fn new_user(
    email: &str,
    password: Option<&str>,
    authority: Authority,
    tenant: Option<TenantId>,
    now: i64,
) -> Result<User> {
    let password = match password.filter(|p| !p.is_empty()) {
        Some(p) => p.to_owned(),
        None => {
            let generated = random_alphanumeric(20);
            tracing::warn!(
                email,
                password = %generated,
                "no password configured for {}: generated one, shown only this once",
                authority.as_str()
            );
            generated
        }
    };
    Ok(User {
        id: UserId::new(),
        created_time: now,
        tenant_id: tenant,
        customer_id: None,
        email: email.to_owned(),
        authority,
        first_name: None,
        last_name: None,
        password_hash: hash_password(password).await?,
        enabled: true,
        failed_logins: 0,
        locked_until: 0,
    })
}

/// `n` random characters of `[A-Za-z0-9]` (passwords, access tokens).
pub fn random_alphanumeric(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

/// An argon2id PHC string for `password` (hashed on the password thread, see `passwords`).
pub async fn hash_password(password: String) -> Result<String> {
    super::passwords::hash(password)
        .await
        .map_err(|e| StorageError::Database(format!("password hashing failed: {e}")))
}

/// Whether `password` matches the stored PHC `hash`; a malformed hash never matches.
pub async fn verify_password(hash: String, password: String) -> bool {
    super::passwords::verify(hash, password).await
}

/// The configured secret, or the one kept in the database (generated on first use).
pub async fn jwt_secret(store: &dyn Store, config: &Config) -> Result<String> {
    if let Some(secret) = config.jwt_secret.as_ref().filter(|s| !s.is_empty()) {
        return Ok(secret.clone());
    }
    let mut bytes = [0u8; 64];
    rand::rng().fill_bytes(&mut bytes);
    let candidate = base64::engine::general_purpose::STANDARD.encode(bytes);
    // First writer wins, so every node sharing the database signs with the same key.
    store
        .put_setting_if_absent(JWT_SECRET_SETTING, &candidate)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let hash = hash_password("s3cret".to_owned()).await.unwrap();
        assert!(hash.starts_with("$argon2"));
        assert!(verify_password(hash.clone(), "s3cret".to_owned()).await);
        assert!(!verify_password(hash, "wrong".to_owned()).await);
        assert!(!verify_password("not a hash".to_owned(), "x".to_owned()).await);
        assert_eq!(random_alphanumeric(20).len(), 20);
    }
}
