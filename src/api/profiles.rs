//! Device profiles: read one, list a page, and the DeviceProfileInfo views.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::error::{ApiError, Params, parse_uuid};
use super::paging::{page_json, page_query};
use crate::domain::DeviceProfile;
use crate::domain::{DeviceProfileId, TenantId};

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/deviceProfile/{profileId}", get(get_profile))
        .route("/api/deviceProfiles", get(page_profiles))
        .route("/api/deviceProfileInfos", get(page_profile_infos))
        .route("/api/deviceProfileInfo/default", get(default_profile_info))
        .route("/api/deviceProfileInfo/{profileId}", get(profile_info))
}

/// ThingsBoard's DeviceProfile JSON. Every profile here is DEFAULT transport without provisioning.
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
        "transportType": "DEFAULT",
        "provisionType": "DISABLED",
        "provisionDeviceKey": null,
        "defaultRuleChainId": null,
        "defaultDashboardId": null,
        "defaultQueueName": null,
        "defaultEdgeRuleChainId": null,
        "firmwareId": null,
        "softwareId": null,
        "profileData": {
            "configuration": {"type": "DEFAULT"},
            "transportConfiguration": {"type": "DEFAULT"},
            "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": null},
            "alarms": null,
        },
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
        "transportType": "DEFAULT",
    })
}

async fn load_profile(
    state: &AppStateRef,
    tenant: TenantId,
    id: &str,
) -> Result<DeviceProfile, ApiError> {
    let id = parse_uuid(id)?;
    let profile = state
        .services
        .store
        .find_profile(DeviceProfileId(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Device profile with id [{id}] is not found")))?;
    // Another tenant's profile exists, but not for this caller (ThingsBoard's access check).
    if profile.tenant_id != tenant {
        return Err(ApiError::PermissionDenied);
    }
    Ok(profile)
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
