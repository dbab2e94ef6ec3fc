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
use crate::domain::ids::NULL_UUID;
use crate::domain::{Authority, User};
use crate::domain::{CustomerId, TenantId, UserId};
use crate::state::AppState;

pub const ISSUER: &str = "thingsboard.io";
pub const ACCESS_TTL_SECS: i64 = 9000;
pub const REFRESH_TTL_SECS: i64 = 604_800;
const REFRESH_SCOPE: &str = "REFRESH_TOKEN";

/// The claims of both token kinds; the refresh token leaves the profile fields out.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub sub: String,
    pub user_id: String,
    pub scopes: Vec<String>,
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

fn now_secs() -> i64 {
    crate::domain::now_ms() / 1000
}

fn sign(claims: &Claims, secret: &str) -> Result<String, ApiError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| ApiError::General(format!("cannot sign token: {e}")))
}

/// Issues an access token and a refresh token for `user`.
pub fn issue_pair(user: &User, secret: &str) -> Result<JwtPair, ApiError> {
    let iat = now_secs();
    let tenant = user.tenant_id.map_or(NULL_UUID, |t| t.0);
    let customer = user.customer_id.map_or(NULL_UUID, |c| c.0);
    let access = Claims {
        sub: user.email.clone(),
        user_id: user.id.0.to_string(),
        scopes: vec![user.authority.as_str().to_owned()],
        first_name: Some(user.first_name.clone().unwrap_or_default()),
        last_name: Some(user.last_name.clone().unwrap_or_default()),
        enabled: Some(true),
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
        first_name: None,
        last_name: None,
        enabled: None,
        is_public: false,
        tenant_id: None,
        customer_id: None,
        jti: Some(Uuid::new_v4().to_string()),
        iss: ISSUER.to_owned(),
        iat,
        exp: iat + REFRESH_TTL_SECS,
    };
    Ok(JwtPair {
        token: sign(&access, secret)?,
        refresh_token: sign(&refresh, secret)?,
    })
}

/// Verifies signature, issuer and expiry; expired is 401/11, anything else 401/10.
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

/// A refresh token's user id; an access token here is refused.
pub fn decode_refresh(token: &str, secret: &str) -> Result<UserId, ApiError> {
    let claims = decode(token, secret)?;
    if claims.scopes != [REFRESH_SCOPE] {
        return Err(ApiError::auth_failed());
    }
    Uuid::parse_str(&claims.user_id)
        .map(UserId)
        .map_err(|_| ApiError::auth_failed())
}

/// The authenticated caller, as the access token describes it.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user_id: UserId,
    pub email: String,
    pub authority: Authority,
    pub tenant_id: Option<TenantId>,
    pub customer_id: Option<CustomerId>,
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
            user_id: UserId(Uuid::parse_str(&claims.user_id).map_err(|_| ApiError::auth_failed())?),
            email: claims.sub,
            authority,
            tenant_id: id_claim(claims.tenant_id.as_deref())?.map(TenantId),
            customer_id: id_claim(claims.customer_id.as_deref())?.map(CustomerId),
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
        Self::from_claims(decode(token, &state.jwt_secret)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(authority: Authority) -> User {
        User {
            id: UserId::new(),
            created_time: 0,
            tenant_id: Some(TenantId::new()),
            customer_id: None,
            email: "a@b.c".into(),
            authority,
            first_name: None,
            last_name: None,
            password_hash: String::new(),
        }
    }

    #[test]
    fn access_token_round_trips_and_refresh_is_not_access() {
        let u = user(Authority::TenantAdmin);
        let pair = issue_pair(&u, "secret").unwrap();
        let claims = decode(&pair.token, "secret").unwrap();
        assert_eq!(claims.exp - claims.iat, ACCESS_TTL_SECS);
        let auth = AuthUser::from_claims(claims).unwrap();
        assert_eq!(auth.tenant_id, u.tenant_id);
        assert_eq!(auth.customer_id, None);
        let refresh = decode(&pair.refresh_token, "secret").unwrap();
        assert!(AuthUser::from_claims(refresh).is_err());
        assert_eq!(decode_refresh(&pair.refresh_token, "secret").unwrap(), u.id);
        assert!(decode_refresh(&pair.token, "secret").is_err());
        assert!(decode(&pair.token, "other").is_err());
    }
}
