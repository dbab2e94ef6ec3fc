//! The `[auth]` section: login throttling, the account lockout and sessions; and the check of a
//! configured JWT signing key.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Shortest accepted `jwt_secret`: HS512 wants a key of at least its 512-bit output.
pub const MIN_JWT_SECRET_BYTES: usize = 64;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Consecutive failed logins an account may have; the next failure locks it (ThingsBoard's
    /// `maxFailedLoginAttempts`). 0 turns the lockout off.
    pub max_failed_logins: u32,
    /// How long a locked account refuses logins (s).
    pub lockout_secs: u64,
    /// Failed logins one client address may have within `address_window_secs`; beyond it the
    /// address is refused (429) until the window ends. 0 turns this off.
    pub address_max_failures: u32,
    pub address_window_secs: u64,
    /// Client addresses whose failures are remembered, at most (IPv6 by /64 network).
    pub address_max_tracked: usize,
    /// Login sessions one user may hold; a new login ends the oldest beyond it.
    pub max_sessions_per_user: u32,
    /// Shortest new password `POST /api/auth/changePassword` accepts (ThingsBoard's default
    /// password policy: 6).
    pub min_password_length: usize,
    /// How long an activation link of a new user stays valid (s); reading the link when less
    /// than 15 minutes are left issues a new one (ThingsBoard's `userActivationTokenTtl`).
    pub activation_ttl_secs: u64,
    /// Whether administrators may take a token pair of another user with
    /// `GET /api/user/{id}/token` (ThingsBoard's `security.user_token_access_enabled`).
    pub user_token_access: bool,
    /// The claim window a device opens when its claim message names no duration (ms;
    /// ThingsBoard's `security.claim.duration`).
    pub claim_duration_ms: u64,
    /// Whether any device without a customer may open a claim window; when false only devices
    /// with the server attribute `claimingAllowed = true` may (ThingsBoard's
    /// `security.claim.allowClaimingByDefault`).
    pub claim_allowed_by_default: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_failed_logins: 5,
            lockout_secs: 900,
            address_max_failures: 30,
            address_window_secs: 300,
            address_max_tracked: 10_000,
            max_sessions_per_user: 100,
            min_password_length: 6,
            activation_ttl_secs: 86_400,
            user_token_access: true,
            claim_duration_ms: 86_400_000,
            claim_allowed_by_default: true,
        }
    }
}

/// `key` must lie in `range`.
fn in_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "{key} = {value} is out of range: it must be between {} and {}",
        range.start(),
        range.end()
    )))
}

impl AuthConfig {
    /// Range checks of the section, and the length of a configured `jwt_secret`.
    pub fn validate(&self, jwt_secret: Option<&str>) -> Result<(), ConfigError> {
        if let Some(secret) = jwt_secret.filter(|s| !s.is_empty())
            && secret.len() < MIN_JWT_SECRET_BYTES
        {
            return Err(ConfigError::Invalid(format!(
                "jwt_secret (FERROBOARD_JWT_SECRET) is {} bytes long: HS512 needs at least \
                 {MIN_JWT_SECRET_BYTES}; set a longer random string, or unset it to use a \
                 generated key kept in the database",
                secret.len()
            )));
        }
        in_range("auth.max_failed_logins", self.max_failed_logins, 0..=1000)?;
        in_range("auth.lockout_secs", self.lockout_secs, 1..=30 * 86_400)?;
        in_range(
            "auth.address_max_failures",
            self.address_max_failures,
            0..=100_000,
        )?;
        in_range(
            "auth.address_window_secs",
            self.address_window_secs,
            1..=86_400,
        )?;
        in_range(
            "auth.address_max_tracked",
            self.address_max_tracked,
            1..=10_000_000,
        )?;
        in_range(
            "auth.max_sessions_per_user",
            self.max_sessions_per_user,
            1..=10_000,
        )?;
        in_range(
            "auth.min_password_length",
            self.min_password_length,
            1..=128,
        )?;
        in_range(
            "auth.activation_ttl_secs",
            self.activation_ttl_secs,
            60..=365 * 86_400,
        )?;
        in_range(
            "auth.claim_duration_ms",
            self.claim_duration_ms,
            1..=365 * 86_400_000,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_jwt_secrets_are_refused_naming_the_key() {
        let auth = AuthConfig::default();
        let e = auth.validate(Some("secret")).unwrap_err().to_string();
        assert!(e.contains("jwt_secret") && e.contains("64"), "{e}");
        let e = auth
            .validate(Some(&"x".repeat(63)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("63 bytes"), "{e}");
        auth.validate(Some(&"x".repeat(64))).unwrap();
        auth.validate(None).unwrap();
        auth.validate(Some("")).unwrap();
    }

    #[test]
    fn out_of_range_settings_name_their_key() {
        let bad = AuthConfig {
            lockout_secs: 0,
            ..AuthConfig::default()
        };
        let e = bad.validate(None).unwrap_err().to_string();
        assert!(e.contains("auth.lockout_secs"), "{e}");
        let bad = AuthConfig {
            max_sessions_per_user: 0,
            ..AuthConfig::default()
        };
        let e = bad.validate(None).unwrap_err().to_string();
        assert!(e.contains("auth.max_sessions_per_user"), "{e}");
    }
}
