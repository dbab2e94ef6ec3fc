//! Login, token refresh, the current user and logout.

use axum::extract::State;
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
use crate::services::accounts::verify_password;

const BAD_CREDENTIALS: &str = "Invalid username or password";

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/token", post(refresh))
        .route("/api/auth/user", get(current_user))
        .route("/api/auth/logout", post(logout))
}

/// A non-blank string field of a JSON object body.
fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

async fn login(
    State(state): State<AppStateRef>,
    RawBody(bytes): RawBody,
) -> Result<Json<JwtPair>, ApiError> {
    // Any malformed request is "Authentication failed"; the reason is only logged (as TB does).
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::auth_failed())?;
    let (Some(username), Some(password)) = (field(&body, "username"), field(&body, "password"))
    else {
        tracing::debug!("login without username or password");
        return Err(ApiError::auth_failed());
    };
    let user = state
        .services
        .store
        .find_user_by_email(username.trim())
        .await?
        .ok_or_else(|| ApiError::Authentication(BAD_CREDENTIALS.to_owned()))?;
    if !verify_password(user.password_hash.clone(), password.to_owned()).await {
        return Err(ApiError::Authentication(BAD_CREDENTIALS.to_owned()));
    }
    Ok(Json(auth::issue_pair(&user, &state.jwt_secret)?))
}

async fn refresh(
    State(state): State<AppStateRef>,
    RawBody(bytes): RawBody,
) -> Result<Json<JwtPair>, ApiError> {
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::auth_failed())?;
    let token = field(&body, "refreshToken").ok_or_else(ApiError::auth_failed)?;
    let user_id = auth::decode_refresh(token, &state.jwt_secret)?;
    let user = state
        .services
        .store
        .get_user(user_id)
        .await?
        .ok_or_else(ApiError::auth_failed)?;
    Ok(Json(auth::issue_pair(&user, &state.jwt_secret)?))
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

async fn logout(_caller: AuthUser) -> StatusCode {
    StatusCode::OK
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
