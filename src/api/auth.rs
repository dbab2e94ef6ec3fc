//! JWT access and refresh tokens (HS512, ThingsBoard's claims) and the extractors
//! that authenticate a request from `X-Authorization: Bearer …` (or `Authorization`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::Authority;
use crate::domain::ids::NULL_UUID;
use crate::domain::{CustomerId, TenantId, UserId};
use crate::services::logins::{Grant, SESSION_TTL_SECS};
use crate::state::AppState;

pub const ISSUER: &str = "thingsboard.io";
pub const ACCESS_TTL_SECS: i64 = 9000;
pub const REFRESH_TTL_SECS: i64 = SESSION_TTL_SECS;
const REFRESH_SCOPE: &str = "REFRESH_TOKEN";

/// The claims of both token kinds; the refresh token leaves the profile fields out. Both carry
/// the login session's id (`sessionId`), which must still exist for the token to be honoured.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub sub: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub is_public: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jti: Option<String>,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

/// `{"token","refreshToken"}` as login and refresh answer it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtPair {
    pub token: String,
    pub refresh_token: String,
}

fn sign(claims: &Claims, secret: &str) -> Result<String, ApiError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| ApiError::General(format!("cannot sign token: {e}")))
}

/// The access token and the refresh token of a granted session.
pub fn issue_pair(grant: &Grant, secret: &str) -> Result<JwtPair, ApiError> {
    let (user, iat) = (&grant.user, grant.issued_at);
    let tenant = user.tenant_id.map_or(NULL_UUID, |t| t.0);
    let customer = user.customer_id.map_or(NULL_UUID, |c| c.0);
    let session = Some(grant.session.id.to_string());
    let access = Claims {
        sub: user.email.clone(),
        user_id: user.id.0.to_string(),
        scopes: vec![user.authority.as_str().to_owned()],
        session_id: session.clone(),
        first_name: Some(user.first_name.clone().unwrap_or_default()),
        last_name: Some(user.last_name.clone().unwrap_or_default()),
        enabled: Some(user.enabled),
        is_public: false,
        tenant_id: Some(tenant.to_string()),
        customer_id: Some(customer.to_string()),
        jti: None,
        iss: ISSUER.to_owned(),
        iat,
        exp: iat + ACCESS_TTL_SECS,
    };
    let refresh = Claims {
        sub: user.email.clone(),
        user_id: user.id.0.to_string(),
        scopes: vec![REFRESH_SCOPE.to_owned()],
        session_id: session,
        first_name: None,
        last_name: None,
        enabled: None,
        is_public: false,
        tenant_id: None,
        customer_id: None,
        jti: Some(grant.session.refresh_id.to_string()),
        iss: ISSUER.to_owned(),
        iat,
        exp: iat + REFRESH_TTL_SECS,
    };
    Ok(JwtPair {
        token: sign(&access, secret)?,
        refresh_token: sign(&refresh, secret)?,
    })
}

/// Verifies signature (HS512 only: `none` and every other algorithm are refused), issuer and
/// expiry; expired is 401/11, anything else 401/10.
pub fn decode(token: &str, secret: &str) -> Result<Claims, ApiError> {
    let mut validation = Validation::new(Algorithm::HS512);
    validation.leeway = 0;
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => ApiError::TokenExpired,
        _ => ApiError::auth_failed(),
    })
}

/// A uuid claim; absent or malformed is 401/10.
fn uuid_claim(value: Option<&str>) -> Result<Uuid, ApiError> {
    value
        .and_then(|v| Uuid::parse_str(v).ok())
        .ok_or_else(ApiError::auth_failed)
}

/// What a refresh token names: its user, its session and itself (`jti`).
#[derive(Debug, PartialEq)]
pub struct RefreshClaims {
    pub user: UserId,
    pub session: Uuid,
    pub refresh_id: Uuid,
}

/// A refresh token's claims; an access token here is refused.
pub fn decode_refresh(token: &str, secret: &str) -> Result<RefreshClaims, ApiError> {
    let claims = decode(token, secret)?;
    if claims.scopes != [REFRESH_SCOPE] {
        return Err(ApiError::auth_failed());
    }
    Ok(RefreshClaims {
        user: UserId(uuid_claim(Some(&claims.user_id))?),
        session: uuid_claim(claims.session_id.as_deref())?,
        refresh_id: uuid_claim(claims.jti.as_deref())?,
    })
}

/// The authenticated caller, as the access token describes it.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user_id: UserId,
    /// The login session the token belongs to.
    pub session_id: Uuid,
    pub email: String,
    pub authority: Authority,
    pub tenant_id: Option<TenantId>,
    pub customer_id: Option<CustomerId>,
    /// When the token expires (its `exp`, seconds since the epoch).
    pub expires_at: i64,
}

/// An id claim; NULL_UUID and absence both mean "none".
fn id_claim(value: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => {
            let id = Uuid::parse_str(text).map_err(|_| ApiError::auth_failed())?;
            Ok((id != NULL_UUID).then_some(id))
        }
    }
}

impl AuthUser {
    fn from_claims(claims: Claims) -> Result<Self, ApiError> {
        // A refresh token carries only REFRESH_TOKEN and must never open the API.
        let [scope] = claims.scopes.as_slice() else {
            return Err(ApiError::auth_failed());
        };
        let authority = Authority::parse(scope).ok_or_else(ApiError::auth_failed)?;
        Ok(Self {
            user_id: UserId(uuid_claim(Some(&claims.user_id))?),
            session_id: uuid_claim(claims.session_id.as_deref())?,
            email: claims.sub,
            authority,
            tenant_id: id_claim(claims.tenant_id.as_deref())?.map(TenantId),
            customer_id: id_claim(claims.customer_id.as_deref())?.map(CustomerId),
            expires_at: claims.exp,
        })
    }
}

/// The token of `X-Authorization`, else `Authorization`; only the `Bearer ` form is a JWT.
fn bearer(parts: &Parts) -> Option<&str> {
    let header = parts
        .headers
        .get("x-authorization")
        .or_else(|| parts.headers.get(axum::http::header::AUTHORIZATION))?;
    let value = header.to_str().ok()?;
    let prefix = value.get(..7)?;
    prefix
        .eq_ignore_ascii_case("bearer ")
        .then(|| value[7..].trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::auth_failed)?;
        Self::from_token(token, state).await
    }
}

impl AuthUser {
    /// The caller an access token names, if its login session is still alive (the WebSocket's
    /// tokens arrive in the URL or in its first message, not in a header).
    pub async fn from_token(token: &str, state: &AppState) -> Result<Self, ApiError> {
        let user = Self::from_claims(decode(token, &state.jwt_secret)?)?;
        // ThingsBoard answers a token outdated by a logout or a password change as expired.
        if !state
            .services
            .logins
            .session_alive(user.session_id, user.user_id)
            .await?
        {
            return Err(ApiError::TokenExpired);
        }
        Ok(user)
    }
}

/// A tenant administrator and the tenant every query of the request is scoped to.
#[derive(Clone, Debug)]
pub struct TenantAdmin {
    pub user: AuthUser,
    pub tenant: TenantId,
}

impl FromRequestParts<Arc<AppState>> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        match (user.authority, user.tenant_id) {
            (Authority::TenantAdmin, Some(tenant)) => Ok(Self { user, tenant }),
            _ => Err(ApiError::PermissionDenied),
        }
    }
}

/// The system administrator.
#[derive(Clone, Debug)]
pub struct SysAdmin {
    pub user: AuthUser,
}

impl FromRequestParts<Arc<AppState>> for SysAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        match user.authority {
            Authority::SysAdmin => Ok(Self { user }),
            _ => Err(ApiError::PermissionDenied),
        }
    }
}

/// A tenant administrator or a customer user: who may act on devices. `customer` is Some for a
/// customer user, who reaches only the devices of its customer.
#[derive(Clone, Debug)]
pub struct TenantUser {
    pub user: AuthUser,
    pub tenant: TenantId,
    pub customer: Option<CustomerId>,
}

/// Which devices a request reaches: those of `tenant`, and of `customer` when it is Some.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    pub tenant: TenantId,
    pub customer: Option<CustomerId>,
}

impl TenantUser {
    pub fn scope(&self) -> Scope {
        Scope {
            tenant: self.tenant,
            customer: self.customer,
        }
    }
}

impl FromRequestParts<Arc<AppState>> for TenantUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        TenantUser::of(AuthUser::from_request_parts(parts, state).await?)
    }
}

impl TenantUser {
    /// A tenant administrator or a customer user; anyone else is 403.
    pub fn of(user: AuthUser) -> Result<Self, ApiError> {
        match (user.authority, user.tenant_id, user.customer_id) {
            (Authority::TenantAdmin, Some(tenant), _) => Ok(Self {
                user,
                tenant,
                customer: None,
            }),
            (Authority::CustomerUser, Some(tenant), Some(customer)) => Ok(Self {
                user,
                tenant,
                customer: Some(customer),
            }),
            _ => Err(ApiError::PermissionDenied),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthSession, User};

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn grant(authority: Authority) -> Grant {
        let id = UserId::new();
        Grant {
            user: User {
                id,
                created_time: 0,
                tenant_id: Some(TenantId::new()),
                customer_id: None,
                email: "a@b.c".into(),
                authority,
                first_name: None,
                last_name: None,
                password_hash: String::new(),
                enabled: true,
                failed_logins: 0,
                locked_until: 0,
            },
            session: AuthSession {
                id: Uuid::new_v4(),
                user_id: id,
                refresh_id: Uuid::new_v4(),
                created_time: 0,
                expires_at: 0,
            },
            issued_at: crate::domain::now_ms() / 1000,
        }
    }

    #[test]
    fn access_token_round_trips_and_refresh_is_not_access() {
        let g = grant(Authority::TenantAdmin);
        let pair = issue_pair(&g, SECRET).unwrap();
        let claims = decode(&pair.token, SECRET).unwrap();
        assert_eq!(claims.exp - claims.iat, ACCESS_TTL_SECS);
        let auth = AuthUser::from_claims(claims).unwrap();
        assert_eq!(auth.tenant_id, g.user.tenant_id);
        assert_eq!(auth.customer_id, None);
        assert_eq!(auth.session_id, g.session.id);
        let refresh = decode(&pair.refresh_token, SECRET).unwrap();
        assert!(AuthUser::from_claims(refresh).is_err());
        assert_eq!(
            decode_refresh(&pair.refresh_token, SECRET).unwrap(),
            RefreshClaims {
                user: g.user.id,
                session: g.session.id,
                refresh_id: g.session.refresh_id,
            }
        );
        assert!(decode_refresh(&pair.token, SECRET).is_err());
        assert!(decode(&pair.token, "other").is_err());
    }
}
