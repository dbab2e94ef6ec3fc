//! How a user created without a password gets one (ThingsBoard's activation flow): the
//! activation link an administrator hands out, the no-auth routes that follow it, and an
//! administrator taking a user's tokens (`GET /api/user/{id}/token`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{self, AuthUser, JwtPair};
use super::error::{ApiError, Params, RawBody};
use super::users::user_for;
use crate::domain::{Activation, Authority, User, UserId, now_ms};
use crate::services::accounts::random_alphanumeric;

/// A link read with less than this left gets a new token (ThingsBoard: 15 minutes).
const RENEW_BEFORE_MS: i64 = 15 * 60 * 1000;
/// Characters of an activation token.
const TOKEN_CHARS: usize = 30;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/user/{userId}/activationLink", get(activation_link))
        .route(
            "/api/user/{userId}/activationLinkInfo",
            get(activation_link_info),
        )
        .route(
            "/api/noauth/activate",
            get(check_activate_token).post(activate),
        )
        .route("/api/user/{userId}/token", get(user_token))
}

/// A fresh activation of `user`, valid for `auth.activation_ttl_secs` from `now`.
pub fn new_activation(state: &AppStateRef, user: UserId, now: i64) -> Activation {
    let ttl_ms = i64::try_from(state.config.auth.activation_ttl_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX);
    Activation {
        user_id: user,
        token: random_alphanumeric(TOKEN_CHARS),
        expires_at: now.saturating_add(ttl_ms),
    }
}

/// `<scheme>://<host>` of the request (the `Host` header; `X-Forwarded-Proto` names the scheme
/// behind a proxy).
fn base_url(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.chars().any(|c| c.is_whitespace() || c == '/'))
        .ok_or_else(|| ApiError::bad_request("The request has no valid Host header"))?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{host}"))
}

/// The user's activation, renewed when it has expired or expires within 15 minutes; 400 when
/// the user is already active. Only administrators who may change the user may read it.
async fn current_activation(
    state: &AppStateRef,
    caller: &AuthUser,
    id: &str,
) -> Result<Activation, ApiError> {
    if caller.authority == Authority::CustomerUser {
        return Err(ApiError::PermissionDenied);
    }
    let user = user_for(state, caller, id, true).await?;
    let store = &state.services.store;
    let Some(activation) = store.get_activation(user.id).await? else {
        return Err(ApiError::bad_request("User is already activated!"));
    };
    let now = now_ms();
    if activation.expires_at - now >= RENEW_BEFORE_MS {
        return Ok(activation);
    }
    let renewed = new_activation(state, user.id, now);
    store.put_activation(&renewed).await?;
    Ok(renewed)
}

fn link(base: &str, activation: &Activation) -> String {
    format!(
        "{base}/api/noauth/activate?activateToken={}",
        activation.token
    )
}

/// The link as `text/plain`.
async fn activation_link(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let activation = current_activation(&state, &caller, &id).await?;
    let body = link(&base_url(&headers)?, &activation);
    Ok(([(header::CONTENT_TYPE, "text/plain;charset=UTF-8")], body).into_response())
}

/// `{"value": <link>, "ttlMs": <ms left>}`.
async fn activation_link_info(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let activation = current_activation(&state, &caller, &id).await?;
    Ok(Json(json!({
        "value": link(&base_url(&headers)?, &activation),
        "ttlMs": (activation.expires_at - now_ms()).max(0),
    })))
}

/// A browser following the link: 303 to the page that sets the password when the token is
/// valid, 409 otherwise (as ThingsBoard).
async fn check_activate_token(
    State(state): State<AppStateRef>,
    params: Params,
) -> Result<Response, ApiError> {
    let token = params.required("activateToken")?;
    let valid = state
        .services
        .store
        .find_activation(token)
        .await?
        .is_some_and(|a| a.expires_at > now_ms());
    if !valid {
        return Ok(StatusCode::CONFLICT.into_response());
    }
    let location = format!(
        "/login/createPassword?activateToken={}",
        urlencoding_token(token)
    );
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}

/// Tokens are alphanumeric; anything else a caller sent is dropped from the redirect.
fn urlencoding_token(token: &str) -> String {
    token.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// `{"activateToken","password"}` → the token pair of the now enabled user.
async fn activate(
    State(state): State<AppStateRef>,
    RawBody(bytes): RawBody,
) -> Result<Json<JwtPair>, ApiError> {
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("Invalid request body"))?;
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    };
    let (token, password) = (text("activateToken")?, text("password")?);
    let grant = state.services.logins.activate(token, password).await?;
    Ok(Json(auth::issue_pair(&grant, &state.jwt_secret)?))
}

/// Whether `caller` may take the tokens of `user`: the system administrator those of tenant
/// administrators, a tenant administrator those of its tenant's customer users.
fn may_take_tokens(caller: &AuthUser, user: &User) -> bool {
    match caller.authority {
        Authority::SysAdmin => user.authority == Authority::TenantAdmin,
        Authority::TenantAdmin => {
            user.authority == Authority::CustomerUser
                && caller.tenant_id.is_some()
                && user.tenant_id == caller.tenant_id
        }
        Authority::CustomerUser => false,
    }
}

async fn user_token(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<JwtPair>, ApiError> {
    if !state.config.auth.user_token_access || caller.authority == Authority::CustomerUser {
        return Err(ApiError::PermissionDenied);
    }
    let user = user_for(&state, &caller, &id, false).await?;
    if !may_take_tokens(&caller, &user) {
        return Err(ApiError::PermissionDenied);
    }
    let email = user.email.clone();
    let grant = state.services.logins.open_for(user).await?;
    tracing::info!(user = ?email, by = ?caller.email, "user token issued to an administrator");
    Ok(Json(auth::issue_pair(&grant, &state.jwt_secret)?))
}
