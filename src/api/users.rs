//! Users (ThingsBoard's `UserController`): enabling or disabling a user's credentials, and
//! deleting a user. Disabling or deleting ends the user's sessions on every node; enabling also
//! lifts a lockout.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};

use super::State as AppStateRef;
use super::auth::AuthUser;
use super::error::{ApiError, ITEM_NOT_FOUND_MSG, Params, parse_uuid};
use crate::domain::{Authority, User, UserId};

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/user/{userId}", delete(delete_user))
        .route(
            "/api/user/{userId}/userCredentialsEnabled",
            post(set_credentials_enabled),
        )
}

/// The user `id` when `caller` may change it: a system administrator the system and tenant
/// administrators, a tenant administrator the users of its own tenant. Others get 403; an unknown
/// id 404.
async fn writable_user(state: &AppStateRef, caller: &AuthUser, id: &str) -> Result<User, ApiError> {
    if caller.authority == Authority::CustomerUser {
        return Err(ApiError::PermissionDenied);
    }
    let id = UserId(parse_uuid(id)?);
    let user = state
        .services
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(ITEM_NOT_FOUND_MSG.to_owned()))?;
    let allowed = match caller.authority {
        Authority::SysAdmin => user.authority != Authority::CustomerUser,
        Authority::TenantAdmin => caller.tenant_id.is_some() && user.tenant_id == caller.tenant_id,
        Authority::CustomerUser => false,
    };
    if allowed {
        Ok(user)
    } else {
        Err(ApiError::PermissionDenied)
    }
}

/// `?userCredentialsEnabled=true|false` (default true).
async fn set_credentials_enabled(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    Path(id): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let enabled = params.bool("userCredentialsEnabled")?.unwrap_or(true);
    let user = writable_user(&state, &caller, &id).await?;
    if !state
        .services
        .store
        .set_user_enabled(user.id, enabled)
        .await?
    {
        return Err(ApiError::NotFound(ITEM_NOT_FOUND_MSG.to_owned()));
    }
    tracing::info!(user = ?user.email, enabled, by = ?caller.email, "user credentials changed");
    Ok(StatusCode::OK)
}

async fn delete_user(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = writable_user(&state, &caller, &id).await?;
    let store = &state.services.store;
    if user.authority == Authority::SysAdmin && user.id == caller.user_id {
        return Err(ApiError::PermissionDenied);
    }
    if let (Authority::TenantAdmin, Some(tenant)) = (user.authority, user.tenant_id)
        && store.count_tenant_admins(tenant).await? <= 1
    {
        return Err(ApiError::bad_request(
            "At least one tenant administrator must remain!",
        ));
    }
    if !store.delete_user(user.id).await? {
        return Err(ApiError::NotFound(ITEM_NOT_FOUND_MSG.to_owned()));
    }
    tracing::info!(user = ?user.email, by = ?caller.email, "user deleted");
    Ok(StatusCode::OK)
}
