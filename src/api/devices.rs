//! Devices: create/update, get, info, delete, and the tenant's device lists.
//! Every query is scoped to the caller's tenant; another tenant's device is simply "not found".

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::error::{ApiError, ITEM_NOT_FOUND_MSG, JsonBody, Params, parse_uuid};
use super::paging::{page_json, page_query};
use crate::domain::ids::NULL_UUID;
use crate::domain::{CustomerId, DeviceId, DeviceProfileId, OtaPackageId, TenantId, now_ms};
use crate::domain::{Device, DeviceCredentials, DeviceProfile};
use crate::services::accounts::random_alphanumeric;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/device", post(save_device))
        .route(
            "/api/device/{deviceId}",
            get(get_device).delete(delete_device),
        )
        .route("/api/device/info/{deviceId}", get(get_device_info))
        .route("/api/devices", get(devices_by_ids))
        .route("/api/tenant/devices", get(tenant_devices))
        .route("/api/tenant/device", get(tenant_device_by_name))
        .route("/api/tenant/deviceInfos", get(tenant_device_infos))
}

/// ThingsBoard's Device JSON.
pub fn device_json(d: &Device) -> Value {
    json!({
        "id": d.id.to_json(),
        "createdTime": d.created_time,
        "tenantId": d.tenant_id.to_json(),
        "customerId": d.customer_id.unwrap_or(CustomerId(NULL_UUID)).to_json(),
        "name": d.name,
        "type": d.profile_name,
        "label": d.label,
        "deviceProfileId": d.profile_id.to_json(),
        "firmwareId": d.firmware_id.map(OtaPackageId::to_json),
        "softwareId": d.software_id.map(OtaPackageId::to_json),
        "deviceData": {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"}},
        "additionalInfo": d.additional_info,
        "externalId": null,
        "version": d.version,
    })
}

/// DeviceInfo: the Device plus customer and profile details and whether it is active.
pub fn device_info_json(d: &Device, customer_title: Option<&str>, active: bool) -> Value {
    let mut v = device_json(d);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("customerTitle".to_owned(), customer_title.into());
        obj.insert("customerIsPublic".to_owned(), Value::Bool(false));
        obj.insert(
            "deviceProfileName".to_owned(),
            Value::String(d.profile_name.clone()),
        );
        obj.insert("active".to_owned(), Value::Bool(active));
    }
    v
}

fn device_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("Device with id [{id}] is not found"))
}

/// The caller's device by path id: 400 for a malformed id, 404 when absent, 403 when another
/// tenant's or, for a customer user (`customer` Some), not its customer's (ThingsBoard's
/// `checkDeviceId`).
pub async fn device_for(
    state: &AppStateRef,
    tenant: TenantId,
    customer: Option<CustomerId>,
    id: &str,
) -> Result<Device, ApiError> {
    let id = parse_uuid(id)?;
    let device = state
        .services
        .store
        .find_device(DeviceId(id))
        .await?
        .ok_or_else(|| device_not_found(id))?;
    if device.tenant_id != tenant || customer.is_some_and(|c| device.customer_id != Some(c)) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(device)
}

/// A tenant administrator's device by path id (see `device_for`).
pub async fn load_device(
    state: &AppStateRef,
    tenant: TenantId,
    id: &str,
) -> Result<Device, ApiError> {
    device_for(state, tenant, None, id).await
}

async fn get_device(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(device_json(
        &device_for(&state, caller.tenant, caller.customer, &id).await?,
    )))
}

async fn get_device_info(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let device = device_for(&state, caller.tenant, caller.customer, &id).await?;
    let active = state.services.device_state.is_active(device.id).await;
    let title = customer_title(&state, device.customer_id).await?;
    Ok(Json(device_info_json(&device, title.as_deref(), active)))
}

async fn delete_device(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device = load_device(&state, caller.tenant, &id).await?;
    if !state
        .services
        .store
        .delete_device(caller.tenant, device.id)
        .await?
    {
        return Err(device_not_found(device.id.0));
    }
    super::credentials::close_sessions(&state, device.id).await;
    tell_gateway(&state, &device, None).await;
    Ok(StatusCode::OK)
}

/// The caller's devices among the ids; others (another tenant's or customer's) are left out.
async fn devices_by_ids(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let ids: Vec<&str> = params
        .required("deviceIds")?
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .collect();
    if ids.len() > super::limits::MAX_DEVICE_IDS {
        return Err(ApiError::bad_request(format!(
            "Too many deviceIds: at most {} per request",
            super::limits::MAX_DEVICE_IDS
        )));
    }
    let mut out = Vec::new();
    for id in ids {
        let id = DeviceId(parse_uuid(id)?);
        if let Some(d) = state.services.store.get_device(caller.tenant, id).await?
            && caller.customer.is_none_or(|c| d.customer_id == Some(c))
        {
            out.push(device_json(&d));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// Both forms of `/api/tenant/devices`: `?deviceName=` answers one Device, otherwise a page.
async fn tenant_devices(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    if let Some(name) = params.get("deviceName") {
        return Ok(Json(device_json(
            &device_by_name(&state, caller.tenant, name).await?,
        )));
    }
    device_page(&state, caller.tenant, &params, device_json).await
}

async fn tenant_device_infos(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(&params)?;
    let profile = params.get("type").filter(|t| !t.is_empty());
    let page = state
        .services
        .store
        .page_devices(caller.tenant, profile, &query)
        .await?;
    info_page(&state, &page, &query).await
}

/// The title of a device's customer (None when unassigned).
async fn customer_title(
    state: &AppStateRef,
    customer: Option<CustomerId>,
) -> Result<Option<String>, ApiError> {
    let Some(id) = customer else {
        return Ok(None);
    };
    Ok(state
        .services
        .store
        .get_customer(id)
        .await?
        .map(|c| c.title))
}

/// A page of DeviceInfo: each device with its customer's title and whether it is active.
pub async fn info_page(
    state: &AppStateRef,
    page: &crate::domain::Page<Device>,
    query: &crate::domain::PageQuery,
) -> Result<Json<Value>, ApiError> {
    let mut active = std::collections::HashSet::new();
    let mut titles = std::collections::HashMap::new();
    for d in &page.data {
        if state.services.device_state.is_active(d.id).await {
            active.insert(d.id);
        }
        if let Some(c) = d.customer_id
            && !titles.contains_key(&c)
        {
            titles.insert(c, customer_title(state, Some(c)).await?);
        }
    }
    Ok(Json(page_json(page, query, |d| {
        let title = d
            .customer_id
            .and_then(|c| titles.get(&c).cloned().flatten());
        device_info_json(d, title.as_deref(), active.contains(&d.id))
    })))
}

async fn device_page(
    state: &AppStateRef,
    tenant: TenantId,
    params: &Params,
    render: fn(&Device) -> Value,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(params)?;
    let profile = params.get("type").filter(|t| !t.is_empty());
    let page = state
        .services
        .store
        .page_devices(tenant, profile, &query)
        .await?;
    Ok(Json(page_json(&page, &query, render)))
}

async fn tenant_device_by_name(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let name = params.required("deviceName")?;
    Ok(Json(device_json(
        &device_by_name(&state, caller.tenant, name).await?,
    )))
}

async fn device_by_name(
    state: &AppStateRef,
    tenant: TenantId,
    name: &str,
) -> Result<Device, ApiError> {
    state
        .services
        .store
        .find_device_by_name(tenant, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(ITEM_NOT_FOUND_MSG.to_owned()))
}

/// The fields of a Device body this server honours.
struct DeviceInput {
    id: Option<Uuid>,
    name: String,
    label: Option<String>,
    type_name: Option<String>,
    profile_id: Option<Uuid>,
    additional_info: Option<Value>,
    firmware_id: Option<Uuid>,
    software_id: Option<Uuid>,
    version: Option<i64>,
}

impl DeviceInput {
    /// The `firmwareId` and `softwareId` given.
    fn packages(&self) -> (Option<Uuid>, Option<Uuid>) {
        (self.firmware_id, self.software_id)
    }
}

/// An id given as `{"id": "<uuid>", ...}` (or a bare string); null or absent is None.
pub fn id_field(obj: &Map<String, Value>, name: &str) -> Result<Option<Uuid>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_uuid(s).map(Some),
        Some(Value::Object(o)) => match o.get("id") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_uuid(s).map(Some),
            Some(_) => Err(ApiError::BadRequest(format!("Invalid {name}"))),
        },
        Some(_) => Err(ApiError::BadRequest(format!("Invalid {name}"))),
    }
}

pub fn string_field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::BadRequest(format!("Invalid value of '{name}'"))),
    }
}

fn parse_device_input(body: &Value) -> Result<DeviceInput, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
    let name = string_field(obj, "name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("Device name should be specified!"))?;
    let version = match obj.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| ApiError::bad_request("Invalid value of 'version'"))?,
        ),
    };
    Ok(DeviceInput {
        id: id_field(obj, "id")?,
        name,
        label: string_field(obj, "label")?,
        type_name: string_field(obj, "type")?.filter(|t| !t.trim().is_empty()),
        profile_id: id_field(obj, "deviceProfileId")?,
        additional_info: obj.get("additionalInfo").cloned(),
        firmware_id: id_field(obj, "firmwareId")?,
        software_id: id_field(obj, "softwareId")?,
        version,
    })
}

/// Access tokens must be non-blank and free of control characters.
pub fn validate_token(token: &str) -> Result<(), ApiError> {
    if token.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Device credentials id should be specified!",
        ));
    }
    if token.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "Device credentials id should not contain control characters!",
        ));
    }
    Ok(())
}

/// `POST /api/device`: create without `id`, update with it. A customer user may update its
/// customer's devices but create none (ThingsBoard's customer permissions).
async fn save_device(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let input = parse_device_input(&body)?;
    let device = match (input.id, caller.customer) {
        (Some(id), customer) => update_device(&state, caller.tenant, customer, id, input).await?,
        (None, None) => {
            create_device(&state, caller.tenant, params.get("accessToken"), input).await?
        }
        (None, Some(_)) => return Err(ApiError::PermissionDenied),
    };
    Ok(Json(device_json(&device)))
}

async fn create_device(
    state: &AppStateRef,
    tenant: TenantId,
    access_token: Option<&str>,
    input: DeviceInput,
) -> Result<Device, ApiError> {
    let token = match access_token {
        Some(t) => {
            validate_token(t)?;
            t.to_owned()
        }
        None => random_alphanumeric(20),
    };
    let profile =
        resolve_profile(state, tenant, input.profile_id, input.type_name.as_deref()).await?;
    let (firmware_id, software_id) =
        super::ota::check_assignments(state, tenant, input.packages(), profile.id).await?;
    let device = Device {
        label: input.label,
        firmware_id,
        software_id,
        ..Device::new_of_profile(
            &profile,
            input.name,
            input.additional_info.unwrap_or(Value::Null),
            now_ms(),
        )
    };
    let credentials = DeviceCredentials::access_token(&device, token);
    state
        .services
        .store
        .create_device(&device, &credentials)
        .await?;
    state.services.auth_cache.invalidate();
    crate::services::ota_state::device_saved(&state.services, None, &device).await;
    Ok(device)
}

async fn update_device(
    state: &AppStateRef,
    tenant: TenantId,
    customer: Option<CustomerId>,
    id: Uuid,
    input: DeviceInput,
) -> Result<Device, ApiError> {
    let mut device = device_for(state, tenant, customer, &id.to_string()).await?;
    let before = device.clone();
    if input.version.is_some_and(|v| v != device.version) {
        return Err(ApiError::VersionConflict(format!(
            "Device with id [{id}] was already changed by someone else"
        )));
    }
    let type_changed = input
        .type_name
        .as_deref()
        .is_some_and(|t| t != device.profile_name);
    let old_profile = device.profile_id;
    if input.profile_id.is_some_and(|p| p != device.profile_id.0)
        || (input.profile_id.is_none() && type_changed)
    {
        let profile =
            resolve_profile(state, tenant, input.profile_id, input.type_name.as_deref()).await?;
        device.profile_id = profile.id;
        device.profile_name = profile.name;
    }
    (device.firmware_id, device.software_id) =
        super::ota::check_assignments(state, tenant, input.packages(), device.profile_id).await?;
    device.name = input.name;
    device.label = input.label;
    if let Some(info) = input.additional_info {
        device.additional_info = info;
    }
    let saved = state.services.store.update_device(&device).await?;
    // HTTP requests of the device read it anew (its name, its packages).
    state.services.auth_cache.accepted.forget_device(saved.id);
    tell_gateway(state, &before, Some(&saved)).await;
    crate::services::ota_state::device_saved(&state.services, Some(&before), &saved).await;
    if saved.profile_id != old_profile {
        // Its session runs under the old profile's settings: the device reconnects.
        super::credentials::close_sessions(state, saved.id).await;
    }
    Ok(saved)
}

/// The profile by id; else by `type` name (created when missing); else the tenant default.
async fn resolve_profile(
    state: &AppStateRef,
    tenant: TenantId,
    profile_id: Option<Uuid>,
    type_name: Option<&str>,
) -> Result<DeviceProfile, ApiError> {
    let store = &state.services.store;
    if let Some(id) = profile_id {
        let id = DeviceProfileId(id);
        if let Some(profile) = store.get_profile(tenant, id).await? {
            return Ok(profile);
        }
        return Err(ApiError::bad_request(
            match store.profile_owner(id).await? {
                Some(_) => "Device can`t be referencing to device profile from different tenant!",
                None => "Device is referencing non existing device profile!",
            },
        ));
    }
    let Some(name) = type_name else {
        return store.default_profile(tenant).await?.ok_or_else(|| {
            ApiError::General("The tenant has no default device profile".to_owned())
        });
    };
    Ok(state.services.profile_named(tenant, name).await?)
}

/// A device behind a gateway was renamed or deleted: the gateway is told with a persistent
/// one-way service RPC (`gateway_device_renamed` / `gateway_device_deleted`). Failures are
/// logged; the REST change stands.
async fn tell_gateway(state: &AppStateRef, before: &Device, after: Option<&Device>) {
    use crate::services::gateway;
    let Some((gateway_id, method, params)) = gateway::service_rpc(before, after) else {
        return;
    };
    let found = state
        .services
        .store
        .get_device(before.tenant_id, gateway_id)
        .await;
    let Ok(Some(gw)) = found else {
        tracing::debug!(gateway = %gateway_id, device = %before.id, "the device's gateway is gone; no service RPC");
        return;
    };
    let sent = super::rpc::send_persistent_oneway(
        state,
        &gw,
        method,
        &params,
        gateway::SERVICE_RPC_TTL_MS,
        gateway::SERVICE_RPC_RETRIES,
    )
    .await;
    if let Err(e) = sent {
        tracing::warn!(gateway = %gw.id, device = %before.id, method, error = ?e, "service RPC to the gateway not stored");
    }
}
