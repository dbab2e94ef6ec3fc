//! Device profiles: save (`profile_save`), read one, list a page, delete, make default, and the
//! DeviceProfileInfo views.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::error::{ApiError, JsonBody, Params, parse_uuid};
use super::paging::{page_json, page_query};
use crate::domain::DeviceProfile;
use crate::domain::{DeviceProfileId, OtaPackageId, TenantId};

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/deviceProfile", post(save_profile))
        .route(
            "/api/deviceProfile/{profileId}",
            get(get_profile).delete(delete_profile),
        )
        .route("/api/deviceProfile/{profileId}/default", post(make_default))
        .route("/api/deviceProfiles", get(page_profiles))
        .route("/api/deviceProfileInfos", get(page_profile_infos))
        .route("/api/deviceProfileInfo/default", get(default_profile_info))
        .route("/api/deviceProfileInfo/{profileId}", get(profile_info))
}

/// ThingsBoard's DeviceProfile JSON.
pub fn profile_json(p: &DeviceProfile) -> Value {
    json!({
        "id": p.id.to_json(),
        "createdTime": p.created_time,
        "tenantId": p.tenant_id.to_json(),
        "name": p.name,
        "description": p.description,
        "image": null,
        "default": p.is_default,
        "type": "DEFAULT",
        "transportType": p.transport_type(),
        "provisionType": p.provision_type(),
        "provisionDeviceKey": p.provision_device_key,
        "defaultRuleChainId": null,
        "defaultDashboardId": null,
        "defaultQueueName": null,
        "defaultEdgeRuleChainId": null,
        "firmwareId": p.firmware_id.map(OtaPackageId::to_json),
        "softwareId": p.software_id.map(OtaPackageId::to_json),
        "profileData": p.profile_data,
        "version": 1,
    })
}

/// DeviceProfileInfo: the short form clients use to find the default profile id.
pub fn profile_info_json(p: &DeviceProfile) -> Value {
    json!({
        "id": p.id.to_json(),
        "tenantId": p.tenant_id.to_json(),
        "name": p.name,
        "image": null,
        "defaultDashboardId": null,
        "type": "DEFAULT",
        "transportType": p.transport_type(),
    })
}

/// The caller's profile by path id: 400 for a malformed id, 403 for another tenant's, 404 when absent.
pub(super) async fn load_profile(
    state: &AppStateRef,
    tenant: TenantId,
    id: &str,
) -> Result<DeviceProfile, ApiError> {
    owned_profile(state, tenant, DeviceProfileId(parse_uuid(id)?)).await
}

/// The caller's profile: 403 when it is another tenant's, 404 when absent.
pub(super) async fn owned_profile(
    state: &AppStateRef,
    tenant: TenantId,
    id: DeviceProfileId,
) -> Result<DeviceProfile, ApiError> {
    let store = &state.services.store;
    if let Some(profile) = store.get_profile(tenant, id).await? {
        return Ok(profile);
    }
    match store.profile_owner(id).await? {
        Some(_) => Err(ApiError::PermissionDenied),
        None => Err(ApiError::NotFound(format!(
            "Device profile with id [{}] is not found",
            id.0
        ))),
    }
}

async fn save_profile(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let profile = super::profile_save::save(&state, caller.tenant, &body).await?;
    Ok(Json(profile_json(&profile)))
}

/// `DELETE /api/deviceProfile/{id}`: not the default profile, not while devices use it.
async fn delete_profile(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let profile = load_profile(&state, caller.tenant, &id).await?;
    if profile.is_default {
        return Err(ApiError::bad_request(
            "Deletion of Default Device Profile is prohibited!",
        ));
    }
    if !state
        .services
        .store
        .delete_profile(caller.tenant, profile.id)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "Device profile with id [{}] is not found",
            profile.id.0
        )));
    }
    Ok(StatusCode::OK)
}

/// `POST /api/deviceProfile/{id}/default`: the profile becomes the tenant's default.
async fn make_default(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let profile = load_profile(&state, caller.tenant, &id).await?;
    let store = &state.services.store;
    if !store.set_default_profile(caller.tenant, profile.id).await? {
        return Err(ApiError::NotFound(format!(
            "Device profile with id [{}] is not found",
            profile.id.0
        )));
    }
    let profile = owned_profile(&state, caller.tenant, profile.id).await?;
    Ok(Json(profile_json(&profile)))
}

async fn get_profile(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(profile_json(
        &load_profile(&state, caller.tenant, &id).await?,
    )))
}

async fn profile_info(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(profile_info_json(
        &load_profile(&state, caller.tenant, &id).await?,
    )))
}

async fn default_profile_info(
    State(state): State<AppStateRef>,
    caller: TenantUser,
) -> Result<Json<Value>, ApiError> {
    let profile = state
        .services
        .store
        .default_profile(caller.tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound("Default device profile is not found".to_owned()))?;
    Ok(Json(profile_info_json(&profile)))
}

async fn page_profiles(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(&params)?;
    let page = state
        .services
        .store
        .page_profiles(caller.tenant, &query)
        .await?;
    Ok(Json(page_json(&page, &query, profile_json)))
}

async fn page_profile_infos(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(&params)?;
    let page = state
        .services
        .store
        .page_profiles(caller.tenant, &query)
        .await?;
    Ok(Json(page_json(&page, &query, profile_info_json)))
}
