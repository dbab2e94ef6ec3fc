//! Users (ThingsBoard's `UserController`): creating and updating users with ThingsBoard's rules
//! on authorities and owners, reading and listing them, enabling or disabling a user's
//! credentials, and deleting a user. Disabling or deleting ends the user's sessions on every
//! node; enabling also lifts a lockout. Activation links and user tokens are in `activation`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Map, Value};

use super::State as AppStateRef;
use super::auth::{AuthUser, SysAdmin, TenantAdmin, TenantUser};
use super::auth_routes::user_json;
use super::customers::tenant_customer;
use super::devices::{id_field, string_field};
use super::error::{ApiError, ITEM_NOT_FOUND_MSG, JsonBody, Params, parse_uuid};
use super::paging::{page_json, page_query};
use crate::domain::{Authority, CustomerId, TenantId, User, UserId, now_ms};
use crate::storage::UserFilter;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/user", post(save_user))
        .route("/api/user/{userId}", get(get_user).delete(delete_user))
        .route(
            "/api/user/{userId}/userCredentialsEnabled",
            post(set_credentials_enabled),
        )
        .route("/api/users", get(users))
        .route("/api/tenant/{tenantId}/users", get(tenant_admins))
        .route("/api/customer/{customerId}/users", get(customer_users))
}

pub fn user_not_found(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("User with id [{id}] is not found"))
}

/// Whether `caller` may read `user` (ThingsBoard's user permissions): the system administrator
/// the system and tenant administrators, a tenant administrator the users of its tenant, a
/// customer user the users of its customer.
fn may_read(caller: &AuthUser, user: &User) -> bool {
    match caller.authority {
        Authority::SysAdmin => user.authority != Authority::CustomerUser,
        Authority::TenantAdmin => {
            caller.tenant_id.is_some()
                && user.tenant_id == caller.tenant_id
                && user.authority != Authority::SysAdmin
        }
        Authority::CustomerUser => {
            user.authority == Authority::CustomerUser
                && caller.customer_id.is_some()
                && user.customer_id == caller.customer_id
        }
    }
}

/// Whether `caller` may change `user`: as reading, except that a customer user changes only
/// itself.
fn may_write(caller: &AuthUser, user: &User) -> bool {
    may_read(caller, user)
        && (caller.authority != Authority::CustomerUser || caller.user_id == user.id)
}

/// The user `id` when `caller` may read it (`write`: change it): 404 for an unknown id, 403
/// otherwise.
pub async fn user_for(
    state: &AppStateRef,
    caller: &AuthUser,
    id: &str,
    write: bool,
) -> Result<User, ApiError> {
    let id = UserId(parse_uuid(id)?);
    let user = state
        .services
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| user_not_found(id.0))?;
    let allowed = if write {
        may_write(caller, &user)
    } else {
        may_read(caller, &user)
    };
    if allowed {
        Ok(user)
    } else {
        Err(ApiError::PermissionDenied)
    }
}

/// The user `id` when an administrator `caller` may change it (the existing routes that customer
/// users may not call at all).
async fn writable_user(state: &AppStateRef, caller: &AuthUser, id: &str) -> Result<User, ApiError> {
    if caller.authority == Authority::CustomerUser {
        return Err(ApiError::PermissionDenied);
    }
    user_for(state, caller, id, true).await
}

async fn get_user(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(user_json(
        &user_for(&state, &caller, &id, false).await?,
    )))
}

/// The fields of a User body this server honours.
struct UserInput {
    id: Option<uuid::Uuid>,
    email: String,
    authority: Authority,
    tenant: Option<TenantId>,
    customer: Option<CustomerId>,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// NULL_UUID, as ThingsBoard's clients send for "none", is None.
fn owner_id(obj: &Map<String, Value>, name: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    Ok(id_field(obj, name)?.filter(|id| *id != crate::domain::ids::NULL_UUID))
}

/// ThingsBoard's e-mail check: one `@` with text before it and a dotted domain after it, no
/// spaces.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn parse_user_input(body: &Value) -> Result<UserInput, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
    let email = string_field(obj, "email")?
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::bad_request("User email should be specified!"))?;
    super::limits::check_length("email", &email)?;
    if !valid_email(&email) {
        return Err(ApiError::BadRequest(format!(
            "Invalid email address format '{email}'!"
        )));
    }
    let authority = match string_field(obj, "authority")? {
        None => return Err(ApiError::bad_request("User authority isn't defined!")),
        Some(a) => Authority::parse(&a)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid authority: {a}")))?,
    };
    let name = |field: &str| -> Result<Option<String>, ApiError> {
        let value = string_field(obj, field)?;
        if let Some(v) = &value {
            super::limits::check_length(field, v)?;
        }
        Ok(value)
    };
    Ok(UserInput {
        id: id_field(obj, "id")?,
        email,
        authority,
        tenant: owner_id(obj, "tenantId")?.map(TenantId),
        customer: owner_id(obj, "customerId")?.map(CustomerId),
        first_name: name("firstName")?,
        last_name: name("lastName")?,
    })
}

/// Checks the authority against the owners (ThingsBoard's `UserDataValidator`); 400 on a broken
/// rule.
async fn check_owners(state: &AppStateRef, input: &UserInput) -> Result<(), ApiError> {
    match input.authority {
        Authority::SysAdmin if input.tenant.is_some() || input.customer.is_some() => {
            return Err(ApiError::bad_request(
                "System administrator can't be assigned neither to tenant nor to customer!",
            ));
        }
        Authority::TenantAdmin if input.tenant.is_none() => {
            return Err(ApiError::bad_request(
                "Tenant administrator should be assigned to tenant!",
            ));
        }
        Authority::TenantAdmin if input.customer.is_some() => {
            return Err(ApiError::bad_request(
                "Tenant administrator can't be assigned to customer!",
            ));
        }
        Authority::CustomerUser if input.tenant.is_none() || input.customer.is_none() => {
            return Err(ApiError::bad_request(
                "Customer user should be assigned to customer!",
            ));
        }
        _ => {}
    }
    let store = &state.services.store;
    if let Some(tenant) = input.tenant
        && store.get_tenant(tenant).await?.is_none()
    {
        return Err(ApiError::bad_request(
            "User is referencing to non-existent tenant!",
        ));
    }
    if let Some(customer) = input.customer {
        match store.get_customer(customer).await? {
            None => {
                return Err(ApiError::bad_request(
                    "User is referencing to non-existent customer!",
                ));
            }
            Some(c) if Some(c.tenant_id) != input.tenant => {
                return Err(ApiError::bad_request(
                    "User can't be assigned to customer from different tenant!",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `POST /api/user[?sendActivationMail=]`: create without `id` (disabled, without password,
/// with an activation link), update e-mail and names with it.
async fn save_user(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let mut input = parse_user_input(&body)?;
    // A tenant's users always belong to the caller's tenant.
    if caller.authority != Authority::SysAdmin {
        input.tenant = caller.tenant_id;
    }
    if caller.authority == Authority::TenantAdmin && input.authority == Authority::SysAdmin {
        return Err(ApiError::PermissionDenied);
    }
    if let Some(id) = input.id {
        let user = update_user(&state, &caller, id, input).await?;
        return Ok(Json(user_json(&user)));
    }
    // Who may create whom: the system administrator administrators, a tenant administrator the
    // users of its tenant; customer users nobody.
    let allowed = match caller.authority {
        Authority::SysAdmin => input.authority != Authority::CustomerUser,
        Authority::TenantAdmin => true,
        Authority::CustomerUser => false,
    };
    if !allowed {
        return Err(ApiError::PermissionDenied);
    }
    check_owners(&state, &input).await?;
    if params.bool("sendActivationMail")?.unwrap_or(true) {
        return Err(ApiError::bad_request(
            "Unable to send the activation mail: no mail server is configured. Create the user \
             with sendActivationMail=false and hand out its activation link \
             (GET /api/user/{userId}/activationLink)",
        ));
    }
    let now = now_ms();
    let user = User {
        id: UserId::new(),
        created_time: now,
        tenant_id: input.tenant,
        customer_id: input.customer,
        email: input.email,
        authority: input.authority,
        first_name: input.first_name,
        last_name: input.last_name,
        // No password until the user follows its activation link.
        password_hash: String::new(),
        enabled: false,
        failed_logins: 0,
        locked_until: 0,
    };
    let activation = super::activation::new_activation(&state, user.id, now);
    state
        .services
        .store
        .create_user_with_activation(&user, &activation)
        .await?;
    tracing::info!(user = ?user.email, authority = user.authority.as_str(), by = ?caller.email, "user created");
    Ok(Json(user_json(&user)))
}

async fn update_user(
    state: &AppStateRef,
    caller: &AuthUser,
    id: uuid::Uuid,
    input: UserInput,
) -> Result<User, ApiError> {
    let mut user = user_for(state, caller, &id.to_string(), true).await?;
    if input.authority != user.authority {
        return Err(ApiError::bad_request("Can't update user authority!"));
    }
    if caller.authority == Authority::SysAdmin && input.tenant != user.tenant_id {
        return Err(ApiError::bad_request("Can't update user tenant id!"));
    }
    if input.customer.is_some() && input.customer != user.customer_id {
        return Err(ApiError::bad_request("Can't update user customer id!"));
    }
    user.email = input.email;
    user.first_name = input.first_name;
    user.last_name = input.last_name;
    if !state.services.store.update_user_profile(&user).await? {
        return Err(user_not_found(id));
    }
    Ok(user)
}

async fn page_of(
    state: &AppStateRef,
    filter: UserFilter,
    params: &Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(params)?;
    let page = state.services.store.page_users(&filter, &query).await?;
    Ok(Json(page_json(&page, &query, user_json)))
}

/// A tenant administrator's list holds every user of its tenant, a customer user's the users of
/// its customer.
async fn users(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let filter = UserFilter {
        tenant: caller.tenant,
        customer: caller.customer,
        authority: caller.customer.map(|_| Authority::CustomerUser),
    };
    page_of(&state, filter, &params).await
}

async fn tenant_admins(
    State(state): State<AppStateRef>,
    _caller: SysAdmin,
    Path(tenant): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let tenant = TenantId(parse_uuid(&tenant)?);
    if state.services.store.get_tenant(tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Tenant with id [{tenant}] is not found"
        )));
    }
    let filter = UserFilter {
        tenant,
        customer: None,
        authority: Some(Authority::TenantAdmin),
    };
    page_of(&state, filter, &params).await
}

async fn customer_users(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(customer): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let customer = tenant_customer(&state, caller.tenant, &customer).await?;
    let filter = UserFilter {
        tenant: caller.tenant,
        customer: Some(customer.id),
        authority: Some(Authority::CustomerUser),
    };
    page_of(&state, filter, &params).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_as_thingsboard_does() {
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@b.co"));
        assert!(!valid_email("a b@c.de"));
        assert!(!valid_email("a@@c.de"));
    }
}
