//! Tenants (ThingsBoard's `TenantController`), managed by the system administrator: create and
//! rename, read, list, and delete with everything the tenant owns. A new tenant gets its default
//! device profile, as in ThingsBoard.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{AuthUser, SysAdmin};
use super::devices::{id_field, string_field};
use super::error::{ApiError, JsonBody, Params, parse_uuid};
use super::paging::{page_json, page_query};
use crate::domain::{Authority, Tenant, TenantId, now_ms};
use crate::services::accounts::default_profile;

/// The one tenant profile this server knows; tenants refer to it as ThingsBoard's do to theirs.
const DEFAULT_TENANT_PROFILE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5a1e_0000_0000_4000_8000_0000_0000_0001);

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/tenant", post(save_tenant))
        .route(
            "/api/tenant/{tenantId}",
            get(get_tenant).delete(delete_tenant),
        )
        .route("/api/tenant/info/{tenantId}", get(get_tenant_info))
        .route("/api/tenants", get(tenants))
        .route("/api/tenantInfos", get(tenant_infos))
}

/// ThingsBoard's Tenant JSON (`name` repeats the title).
pub fn tenant_json(t: &Tenant) -> Value {
    json!({
        "id": t.id.to_json(),
        "createdTime": t.created_time,
        "title": t.title,
        "name": t.title,
        "region": "Global",
        "tenantProfileId": {"entityType": "TENANT_PROFILE", "id": DEFAULT_TENANT_PROFILE.to_string()},
        "country": null, "state": null, "city": null, "address": null, "address2": null,
        "zip": null, "phone": null, "email": null,
        "additionalInfo": null,
        "version": 1,
    })
}

fn tenant_info_json(t: &Tenant) -> Value {
    let mut v = tenant_json(t);
    v["tenantProfileName"] = Value::String("Default".to_owned());
    v
}

fn tenant_not_found(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("Tenant with id [{id}] is not found"))
}

/// The tenant by path id: the system administrator reads any, a tenant administrator only its
/// own (403 otherwise); customer users none.
async fn readable_tenant(
    state: &AppStateRef,
    caller: &AuthUser,
    id: &str,
) -> Result<Tenant, ApiError> {
    let id = TenantId(parse_uuid(id)?);
    if caller.authority == Authority::CustomerUser {
        return Err(ApiError::PermissionDenied);
    }
    let tenant = state
        .services
        .store
        .get_tenant(id)
        .await?
        .ok_or_else(|| tenant_not_found(id.0))?;
    if caller.authority == Authority::TenantAdmin && caller.tenant_id != Some(id) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(tenant)
}

async fn get_tenant(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(tenant_json(
        &readable_tenant(&state, &caller, &id).await?,
    )))
}

async fn get_tenant_info(
    State(state): State<AppStateRef>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(tenant_info_json(
        &readable_tenant(&state, &caller, &id).await?,
    )))
}

async fn tenants(
    State(state): State<AppStateRef>,
    _caller: SysAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(&params)?;
    let page = state.services.store.page_tenants(&query).await?;
    Ok(Json(page_json(&page, &query, tenant_json)))
}

async fn tenant_infos(
    State(state): State<AppStateRef>,
    _caller: SysAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(&params)?;
    let page = state.services.store.page_tenants(&query).await?;
    Ok(Json(page_json(&page, &query, tenant_info_json)))
}

/// `POST /api/tenant`: create without `id` (with the default device profile), rename with it.
async fn save_tenant(
    State(state): State<AppStateRef>,
    caller: SysAdmin,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
    let title = string_field(obj, "title")?
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("Tenant title should be specified!"))?;
    super::limits::check_length("title", &title)?;
    let store = &state.services.store;
    let tenant = match id_field(obj, "id")? {
        Some(id) => {
            let mut tenant = store
                .get_tenant(TenantId(id))
                .await?
                .ok_or_else(|| tenant_not_found(id))?;
            tenant.title = title;
            if !store.update_tenant(&tenant).await? {
                return Err(tenant_not_found(id));
            }
            tenant
        }
        None => {
            let now = now_ms();
            let tenant = Tenant {
                id: TenantId::new(),
                title,
                created_time: now,
            };
            store.create_tenant(&tenant).await?;
            store
                .create_profile(&default_profile(tenant.id, now))
                .await?;
            tracing::info!(tenant = %tenant.id, title = ?tenant.title, by = ?caller.user.email, "tenant created");
            tenant
        }
    };
    Ok(Json(tenant_json(&tenant)))
}

/// Deletes the tenant with its customers, users, profiles and devices; the devices' live
/// sessions are closed on every node.
async fn delete_tenant(
    State(state): State<AppStateRef>,
    caller: SysAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = TenantId(parse_uuid(&id)?);
    let devices = state
        .services
        .store
        .delete_tenant(id)
        .await?
        .ok_or_else(|| tenant_not_found(id.0))?;
    state.services.auth_cache.invalidate();
    for device in &devices {
        super::credentials::close_sessions(&state, *device).await;
    }
    tracing::info!(tenant = %id, devices = devices.len(), by = ?caller.user.email, "tenant deleted");
    Ok(StatusCode::OK)
}
