//! Devices and customers (ThingsBoard's `DeviceController`): assigning a device to a customer of
//! the tenant, unassigning it, the lists of a customer's devices, and claiming a device by name
//! (`services::claiming`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::customers::tenant_customer;
use super::devices::{device_json, info_page, load_device};
use super::error::{ApiError, Params, RawBody};
use super::paging::{page_json, page_query};
use crate::domain::{Customer, Device, Page, PageQuery};
use crate::services::claiming::{self, ClaimResult};

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route(
            "/api/customer/{customerId}/device/{deviceId}",
            post(assign_device),
        )
        .route("/api/customer/device/{deviceId}", delete(unassign_device))
        .route("/api/customer/{customerId}/devices", get(customer_devices))
        .route(
            "/api/customer/{customerId}/deviceInfos",
            get(customer_device_infos),
        )
        .route(
            "/api/customer/device/{deviceName}/claim",
            post(claim_device).delete(reclaim_device),
        )
}

/// The caller's tenant's device by name; 404 when there is none.
async fn device_by_name(
    state: &AppStateRef,
    caller: &TenantUser,
    name: &str,
) -> Result<Device, ApiError> {
    state
        .services
        .store
        .find_device_by_name(caller.tenant, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Device with name [{name}] is not found")))
}

/// A customer user claims a device of its tenant by name with `{"secretKey"}`: 200
/// `{"device","response":"SUCCESS"}`, or 400 with the bare JSON string `"FAILURE"` (no window,
/// ended, wrong key) or `"CLAIMED"` (it has a customer). Tenant administrators may not (403).
async fn claim_device(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(name): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Some(customer) = caller.customer else {
        return Err(ApiError::PermissionDenied);
    };
    let secret_key = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::bad_request("Invalid request body"))?;
        match value.get("secretKey") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    };
    let device = device_by_name(&state, &caller, &name).await?;
    let result = claiming::claim(&state.services, &device, customer, &secret_key).await?;
    Ok(match result {
        ClaimResult::Success(device) => Json(json!({
            "device": device_json(&device),
            "response": "SUCCESS",
        }))
        .into_response(),
        ClaimResult::Failure => (StatusCode::BAD_REQUEST, Json(json!("FAILURE"))).into_response(),
        ClaimResult::Claimed => (StatusCode::BAD_REQUEST, Json(json!("CLAIMED"))).into_response(),
    })
}

/// Gives a claimed device back (it loses its customer). A customer user may give back only its
/// customer's devices.
async fn reclaim_device(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device = device_by_name(&state, &caller, &name).await?;
    if caller
        .customer
        .is_some_and(|own| device.customer_id != Some(own))
    {
        return Err(ApiError::PermissionDenied);
    }
    claiming::reclaim(&state.services, &state.config.auth, &device).await?;
    Ok(StatusCode::OK)
}

async fn assign_device(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path((customer, device)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let customer = tenant_customer(&state, caller.tenant, &customer).await?;
    let mut device = load_device(&state, caller.tenant, &device).await?;
    device.customer_id = Some(customer.id);
    let device = state.services.store.update_device(&device).await?;
    state.services.auth_cache.accepted.forget_device(device.id);
    tracing::info!(device = %device.id, customer = %customer.id, "device assigned to customer");
    Ok(Json(device_json(&device)))
}

async fn unassign_device(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(device): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut device = load_device(&state, caller.tenant, &device).await?;
    if device.customer_id.is_none() {
        return Err(ApiError::bad_request(
            "Device isn't assigned to any customer!",
        ));
    }
    device.customer_id = None;
    let device = state.services.store.update_device(&device).await?;
    state.services.auth_cache.accepted.forget_device(device.id);
    Ok(Json(device_json(&device)))
}

/// The customer of the path when the caller may list its devices: a tenant administrator any
/// customer of its tenant, a customer user only its own.
async fn listed_customer(
    state: &AppStateRef,
    caller: &TenantUser,
    id: &str,
) -> Result<Customer, ApiError> {
    let customer = tenant_customer(state, caller.tenant, id).await?;
    if caller.customer.is_some_and(|own| own != customer.id) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(customer)
}

async fn device_page(
    state: &AppStateRef,
    caller: &TenantUser,
    customer: &str,
    params: &Params,
) -> Result<(Page<Device>, PageQuery), ApiError> {
    let customer = listed_customer(state, caller, customer).await?;
    let query = page_query(params)?;
    let profile = params.get("type").filter(|t| !t.is_empty());
    let page = state
        .services
        .store
        .page_customer_devices(caller.tenant, customer.id, profile, &query)
        .await?;
    Ok((page, query))
}

async fn customer_devices(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(customer): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let (page, query) = device_page(&state, &caller, &customer, &params).await?;
    Ok(Json(page_json(&page, &query, device_json)))
}

async fn customer_device_infos(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(customer): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let (page, query) = device_page(&state, &caller, &customer, &params).await?;
    info_page(&state, &page, &query).await
}
