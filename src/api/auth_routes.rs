//! Login, token refresh, the current user, logout and the password change.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{self, AuthUser, JwtPair};
use super::error::{ApiError, RawBody};
use crate::domain::User;
use crate::domain::ids::NULL_UUID;
use crate::domain::{CustomerId, TenantId};
use crate::services::logins::AuthError;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/token", post(refresh))
        .route("/api/auth/user", get(current_user))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/changePassword", post(change_password))
}

/// ThingsBoard's answers to a refused login, refresh or password change. A refresh token whose
/// session has ended is "Authentication failed" (an access token's is "Token has expired", see
/// the extractor).
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let auth = |text: &str| Self::Authentication(text.to_owned());
        match e {
            AuthError::BadCredentials => auth("Invalid username or password"),
            AuthError::Locked => auth("User account is locked due to security policy"),
            AuthError::Disabled => auth("User account is not active"),
            AuthError::Throttled { retry_after_secs } => Self::TooManyRequests(
                "Too many failed logins from this address! Try again later.".to_owned(),
                retry_after_secs,
            ),
            AuthError::SessionEnded => Self::auth_failed(),
            AuthError::Invalid(text) => Self::BadRequest(text),
            AuthError::Storage(e) => e.into(),
        }
    }
}

/// A non-blank string field of a JSON object body.
fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

async fn login(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawBody(bytes): RawBody,
) -> Result<Json<JwtPair>, ApiError> {
    // Any malformed request is "Authentication failed"; the reason is only logged (as TB does).
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::auth_failed())?;
    let (Some(username), Some(password)) = (field(&body, "username"), field(&body, "password"))
    else {
        tracing::debug!("login without username or password");
        return Err(ApiError::auth_failed());
    };
    let grant = state
        .services
        .logins
        .login(username.trim(), password, peer.ip())
        .await?;
    Ok(Json(auth::issue_pair(&grant, &state.jwt_secret)?))
}

async fn refresh(
    State(state): State<AppStateRef>,
    RawBody(bytes): RawBody,
) -> Result<Json<JwtPair>, ApiError> {
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::auth_failed())?;
    let token = field(&body, "refreshToken").ok_or_else(ApiError::auth_failed)?;
    let claims = auth::decode_refresh(token, &state.jwt_secret)?;
    let grant = state
        .services
        .logins
        .refresh(claims.session, claims.user, claims.refresh_id)
        .await?;
    Ok(Json(auth::issue_pair(&grant, &state.jwt_secret)?))
}

async fn current_user(
    State(state): State<AppStateRef>,
    caller: AuthUser,
) -> Result<Json<Value>, ApiError> {
    let user = state
        .services
        .store
        .get_user(caller.user_id)
        .await?
        .ok_or_else(ApiError::auth_failed)?;
    Ok(Json(user_json(&user)))
}

/// Ends the caller's session: its access and refresh tokens are refused from now on.
async fn logout(
    State(state): State<AppStateRef>,
    caller: AuthUser,
) -> Result<StatusCode, ApiError> {
    state.services.logins.logout(caller.session_id).await?;
    Ok(StatusCode::OK)
}

/// `{"currentPassword","newPassword"}` → a new token pair; every other session of the user ends
/// (ThingsBoard's token outdating).
async fn change_password(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    RawBody(bytes): RawBody,
) -> Result<Json<JwtPair>, ApiError> {
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("Invalid request body"))?;
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    };
    let (current, new) = (text("currentPassword")?, text("newPassword")?);
    let grant = state
        .services
        .logins
        .change_password(caller.user_id, current, new)
        .await?;
    Ok(Json(auth::issue_pair(&grant, &state.jwt_secret)?))
}

/// ThingsBoard's `User` JSON; "no tenant" and "no customer" are NULL_UUID ids.
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id.to_json(),
        "createdTime": user.created_time,
        "tenantId": user.tenant_id.unwrap_or(TenantId(NULL_UUID)).to_json(),
        "customerId": user.customer_id.unwrap_or(CustomerId(NULL_UUID)).to_json(),
        "email": user.email,
        "authority": user.authority.as_str(),
        "firstName": user.first_name,
        "lastName": user.last_name,
        "phone": null,
        "name": user.email,
        "additionalInfo": {},
        "version": 1,
    })
}
