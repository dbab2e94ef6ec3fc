//! Logins and sessions: the password check with ThingsBoard's account lockout and the per-address
//! throttle, the sessions whose tokens are honoured (login, refresh with rotation, logout, password
//! change), and the check every authenticated request makes. Sessions live in the database, so a
//! logout or password change on one node is seen by all.

use std::net::IpAddr;

use tokio::sync::OnceCell;
use uuid::Uuid;

use super::accounts::{hash_password, random_alphanumeric, verify_password};
use super::login_throttle::AddressThrottle;
use crate::config::AuthConfig;
use crate::domain::{AuthSession, User, UserId, now_ms};
use crate::storage::{DynStore, StorageError};

/// A session lives as long as its newest refresh token (ThingsBoard's refresh token lifetime).
pub const SESSION_TTL_SECS: i64 = 604_800;

/// Why a login, a refresh, a password change or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong e-mail or password")]
    BadCredentials,
    #[error("account locked after too many failed logins")]
    Locked,
    #[error("account disabled")]
    Disabled,
    #[error("too many failed logins from this address")]
    Throttled { retry_after_secs: u64 },
    /// The token's session has ended: logout, a password change, a used refresh token, or the
    /// user was disabled or deleted.
    #[error("session ended")]
    SessionEnded,
    /// A refused password change, with ThingsBoard's text.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl AuthError {
    /// The metric label of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadCredentials => "bad_credentials",
            Self::Locked => "locked",
            Self::Disabled => "disabled",
            Self::Throttled { .. } => "address_throttled",
            Self::SessionEnded => "session_ended",
            Self::Invalid(_) => "invalid",
            Self::Storage(_) => "storage",
        }
    }
}

/// A refused login, and whether a password check failed (what counts against the address).
struct Refusal {
    error: AuthError,
    failed_check: bool,
}

impl<E: Into<AuthError>> From<E> for Refusal {
    fn from(e: E) -> Self {
        Self {
            error: e.into(),
            failed_check: false,
        }
    }
}

/// A user and the session its new token pair belongs to, issued at `issued_at` (s).
#[derive(Clone, Debug)]
pub struct Grant {
    pub user: User,
    pub session: AuthSession,
    pub issued_at: i64,
}

pub struct Logins {
    store: DynStore,
    config: AuthConfig,
    throttle: AddressThrottle,
}

/// The hash an unknown e-mail's password is checked against, so that it costs what a known one
/// costs (made once, with the parameters of new hashes).
async fn dummy_hash() -> Result<&'static str, StorageError> {
    static DUMMY: OnceCell<String> = OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash_password(random_alphanumeric(24)))
        .await
        .map(String::as_str)
}

impl Logins {
    pub fn new(store: DynStore, config: AuthConfig) -> Self {
        let throttle = AddressThrottle::new(
            config.address_max_failures,
            config.address_window_secs,
            config.address_max_tracked,
        );
        Self {
            store,
            config,
            throttle,
        }
    }

    /// A new session of `user`, issued now.
    fn open(user: User) -> Grant {
        let issued_at = now_ms() / 1000;
        let session = AuthSession {
            id: Uuid::new_v4(),
            user_id: user.id,
            refresh_id: Uuid::new_v4(),
            created_time: now_ms(),
            expires_at: (issued_at + SESSION_TTL_SECS) * 1000,
        };
        Grant {
            user,
            session,
            issued_at,
        }
    }

    /// Checks the password of `email`'s account and opens a session. Refusals are counted in
    /// `ferroboard_logins_refused_total{reason}`.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<Grant, AuthError> {
        let result = self.try_login(email, password, addr).await;
        if let Err(e) = &result {
            metrics::counter!("ferroboard_logins_refused_total", "reason" => e.reason())
                .increment(1);
        }
        result
    }

    async fn try_login(
        &self,
        email: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<Grant, AuthError> {
        let now = now_ms();
        match self.throttle.attempt(addr, now) {
            Err(retry_after_secs) => return Err(AuthError::Throttled { retry_after_secs }),
            Ok(true) => tracing::warn!(
                %addr,
                limit = self.config.address_max_failures,
                window_secs = self.config.address_window_secs,
                "auth.address_max_failures reached: logins from this address are refused until \
                 the window ends"
            ),
            Ok(false) => {}
        }
        match self.check_password(email, password, now).await {
            Ok(grant) => {
                self.throttle.forgive(addr, now);
                Ok(grant)
            }
            Err(Refusal {
                error,
                failed_check,
            }) => {
                // Only a failed password check counts against the address.
                if !failed_check {
                    self.throttle.forgive(addr, now);
                }
                Err(error)
            }
        }
    }

    /// The login itself, after the address was let through.
    async fn check_password(
        &self,
        email: &str,
        password: &str,
        now: i64,
    ) -> Result<Grant, Refusal> {
        let user = self.store.find_user_by_email(email).await?;
        // A locked account is refused before its password is checked: it costs nothing.
        if let Some(locked) = &user
            && locked.locked_until > now
        {
            return Err(AuthError::Locked.into());
        }
        // One password check whether the e-mail is known or not, so both cost the same.
        let hash = match &user {
            Some(known) => known.password_hash.clone(),
            None => dummy_hash().await?.to_owned(),
        };
        let matches = verify_password(hash, password.to_owned()).await;
        let user = match user {
            Some(user) if matches => user,
            Some(user) => {
                let error = self.count_failure(&user, now).await?;
                return Err(Refusal {
                    error,
                    failed_check: true,
                });
            }
            None => {
                return Err(Refusal {
                    error: AuthError::BadCredentials,
                    failed_check: true,
                });
            }
        };
        if !user.enabled {
            return Err(AuthError::Disabled.into());
        }
        if user.failed_logins > 0 {
            self.store.clear_login_failures(user.id).await?;
        }
        let grant = Self::open(user);
        self.store
            .create_session(&grant.session, self.config.max_sessions_per_user, now)
            .await?;
        Ok(grant)
    }

    /// Counts a wrong password of `user`: Locked when it is one too many, else BadCredentials.
    async fn count_failure(&self, user: &User, now: i64) -> Result<AuthError, StorageError> {
        let max = self.config.max_failed_logins;
        if max == 0 {
            return Ok(AuthError::BadCredentials);
        }
        let lockout_ms =
            i64::try_from(self.config.lockout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let until = now.saturating_add(lockout_ms);
        let locked = self
            .store
            .record_login_failure(user.id, i32::try_from(max).unwrap_or(i32::MAX), until)
            .await?;
        if locked.is_some_and(|t| t > now) {
            if locked == Some(until) {
                tracing::warn!(
                    user = ?user.email,
                    limit = max,
                    lockout_secs = self.config.lockout_secs,
                    "auth.max_failed_logins exceeded: account locked"
                );
            }
            return Ok(AuthError::Locked);
        }
        Ok(AuthError::BadCredentials)
    }

    /// A new token pair for the session of a refresh token; that refresh token is used up.
    pub async fn refresh(
        &self,
        session: Uuid,
        user: UserId,
        refresh_id: Uuid,
    ) -> Result<Grant, AuthError> {
        let issued_at = now_ms() / 1000;
        let next = Uuid::new_v4();
        let expires_at = (issued_at + SESSION_TTL_SECS) * 1000;
        if !self
            .store
            .rotate_session(session, refresh_id, next, expires_at)
            .await?
        {
            return Err(AuthError::SessionEnded);
        }
        let user = self
            .store
            .get_user(user)
            .await?
            .ok_or(AuthError::SessionEnded)?;
        if !user.enabled {
            return Err(AuthError::Disabled);
        }
        let session = AuthSession {
            id: session,
            user_id: user.id,
            refresh_id: next,
            created_time: now_ms(),
            expires_at,
        };
        Ok(Grant {
            user,
            session,
            issued_at,
        })
    }

    /// A new session of `user` without a password check: an administrator taking the user's
    /// tokens (`GET /api/user/{id}/token`).
    pub async fn open_for(&self, user: User) -> Result<Grant, AuthError> {
        if !user.enabled {
            return Err(AuthError::Disabled);
        }
        let grant = Self::open(user);
        self.store
            .create_session(&grant.session, self.config.max_sessions_per_user, now_ms())
            .await?;
        Ok(grant)
    }

    /// Uses an activation token: checks it and the password policy, sets the password, enables
    /// the user and opens its first session.
    pub async fn activate(&self, token: &str, password: &str) -> Result<Grant, AuthError> {
        let unknown = || {
            AuthError::Invalid(format!(
                "Unable to find user credentials by activateToken [{token}]"
            ))
        };
        let activation = self
            .store
            .find_activation(token)
            .await?
            .ok_or_else(unknown)?;
        if activation.expires_at <= now_ms() {
            return Err(AuthError::Invalid("Activation token expired".to_owned()));
        }
        self.check_policy(password)?;
        let user = self
            .store
            .get_user(activation.user_id)
            .await?
            .ok_or_else(unknown)?;
        let hash = hash_password(password.to_owned()).await?;
        let grant = Self::open(User {
            password_hash: hash.clone(),
            enabled: true,
            ..user
        });
        if !self
            .store
            .activate_user(grant.user.id, token, &hash, &grant.session)
            .await?
        {
            return Err(AuthError::Invalid(
                "User credentials already activated".to_owned(),
            ));
        }
        tracing::info!(user = ?grant.user.email, "user activated");
        Ok(grant)
    }

    /// ThingsBoard's default password policy: at least `auth.min_password_length` characters.
    fn check_policy(&self, password: &str) -> Result<(), AuthError> {
        let min = self.config.min_password_length;
        if password.chars().count() < min {
            return Err(AuthError::Invalid(format!(
                "Password must be {min} or more characters in length."
            )));
        }
        Ok(())
    }

    /// Ends a session: its access and refresh tokens are refused from now on.
    pub async fn logout(&self, session: Uuid) -> Result<(), StorageError> {
        self.store.delete_session(session).await.map(drop)
    }

    /// Whether a token of `session` issued to `user` is still honoured.
    pub async fn session_alive(&self, session: Uuid, user: UserId) -> Result<bool, StorageError> {
        Ok(self
            .store
            .get_session(session, now_ms())
            .await?
            .is_some_and(|s| s.user_id == user))
    }

    /// ThingsBoard's password change: checks the current password and the password policy, then
    /// ends every session of the user and opens a new one.
    pub async fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: &str,
    ) -> Result<Grant, AuthError> {
        let user = self
            .store
            .get_user(user)
            .await?
            .ok_or(AuthError::SessionEnded)?;
        if !verify_password(user.password_hash.clone(), current.to_owned()).await {
            return Err(AuthError::Invalid(
                "Current password doesn't match!".to_owned(),
            ));
        }
        self.check_policy(new)?;
        if verify_password(user.password_hash.clone(), new.to_owned()).await {
            return Err(AuthError::Invalid(
                "New password should be different from existing!".to_owned(),
            ));
        }
        let hash = hash_password(new.to_owned()).await?;
        let grant = Self::open(user);
        if !self
            .store
            .change_password(grant.user.id, &hash, &grant.session)
            .await?
        {
            return Err(AuthError::SessionEnded);
        }
        tracing::info!(user = ?grant.user.email, "password changed: the user's other sessions ended");
        Ok(Grant {
            user: User {
                password_hash: hash,
                ..grant.user
            },
            ..grant
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_dummy_hash_costs_what_a_new_password_hash_costs() {
        let dummy = dummy_hash().await.unwrap();
        let real = hash_password("x".to_owned()).await.unwrap();
        let params = |h: &str| h.rsplitn(3, '$').nth(2).map(str::to_owned);
        assert_eq!(params(dummy), params(&real), "{dummy} vs {real}");
        assert!(dummy.starts_with("$argon2id$"), "{dummy}");
    }
}
