//! Persistent RPC management: read one, list a device's, delete; and the Rpc JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::devices::device_for;
use super::error::{ApiError, Params, parse_uuid};
use super::paging::{page_json, page_query};
use crate::domain::{DeviceId, TenantId};
use crate::domain::{Rpc, RpcStatus};

/// Sort properties of the RPC list (ThingsBoard's, plus `status`).
const SORT_PROPERTIES: [&str; 5] = [
    "createdTime",
    "expirationTime",
    "request",
    "response",
    "status",
];

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/rpc/persistent/{rpc}", get(get_rpc).delete(delete_rpc))
        .route("/api/rpc/persistent/device/{device}", get(device_rpcs))
}

fn rpc_not_found(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("Rpc with id [{id}] is not found"))
}

/// ThingsBoard's Rpc JSON; `request.body.params` stays JSON text.
pub fn rpc_json(rpc: &Rpc) -> Value {
    let id = json!({"entityType": "RPC", "id": rpc.id.to_string()});
    let (tenant, device) = (rpc.tenant_id.to_json(), rpc.device_id.to_json());
    json!({
        "id": id,
        "createdTime": rpc.created_time,
        "tenantId": tenant,
        "deviceId": device,
        "expirationTime": rpc.expiration_time,
        "request": {
            "id": rpc.id.to_string(),
            "tenantId": tenant,
            "deviceId": device,
            "oneway": rpc.request["oneway"].as_bool().unwrap_or(false),
            "expirationTime": rpc.expiration_time,
            "body": {"method": rpc.request["method"], "params": rpc.request["params"]},
            "persisted": true,
            "retries": rpc.request["retries"],
        },
        "response": rpc.response,
        "status": rpc.status.as_str(),
        "additionalInfo": rpc.additional_info,
    })
}

async fn load_rpc(state: &AppStateRef, tenant: TenantId, id: &str) -> Result<Rpc, ApiError> {
    let id = parse_uuid(id)?;
    let rpc = state
        .services
        .store
        .get_rpc(None, id)
        .await?
        .ok_or_else(|| rpc_not_found(id))?;
    // Another tenant's RPC exists, but not for this caller (ThingsBoard's `checkRpcId`).
    if rpc.tenant_id != tenant {
        return Err(ApiError::PermissionDenied);
    }
    Ok(rpc)
}

async fn get_rpc(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(rpc_json(&load_rpc(&state, caller.tenant, &id).await?)))
}

async fn delete_rpc(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = load_rpc(&state, caller.tenant, &id).await?.id;
    if !state.services.store.delete_rpc(caller.tenant, id).await? {
        return Err(rpc_not_found(id));
    }
    Ok(StatusCode::OK)
}

async fn device_rpcs(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(device): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let sort = match params.get("sortProperty").map(str::trim) {
        None | Some("") => None,
        Some(p) if SORT_PROPERTIES.contains(&p) => Some(p.to_owned()),
        Some(p) => return Err(ApiError::BadRequest(format!("Invalid sort property: {p}"))),
    };
    let status = match params.get("rpcStatus").map(str::trim) {
        None | Some("") => None,
        Some("DELETED") => {
            return Err(ApiError::bad_request(
                "RpcStatus: DELETED is not supported in this request",
            ));
        }
        Some(s) => Some(
            RpcStatus::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid rpcStatus: {s}")))?,
        ),
    };
    // The shared page parser knows the device sort properties only; RPC ones are checked above.
    let rest = Params(
        params
            .0
            .into_iter()
            .filter(|(k, _)| k != "sortProperty")
            .collect(),
    );
    let mut query = page_query(&rest)?;
    query.sort_property = sort;
    let device: DeviceId = device_for(&state, caller.tenant, caller.customer, &device)
        .await?
        .id;
    let page = state
        .services
        .store
        .page_rpcs(caller.tenant, device, status, &query)
        .await?;
    Ok(Json(page_json(&page, &query, rpc_json)))
}
