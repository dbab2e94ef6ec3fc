//! Attributes over REST: the three save routes, values, keys and delete.
//! Bad payloads answer bare text bodies; bad ids and scope names answer error JSON.

use std::str::FromStr as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{Scope, TenantUser};
use super::error::{ApiError, Params, RawBody};
use super::telemetry::{PREFIX, parse_body, requested_keys, resolve_entity};
use crate::domain::{AttributeKv, Device};
use crate::domain::{AttributeScope, DeviceId, now_ms, payload};

pub fn routes() -> Router<AppStateRef> {
    let p = |suffix: &str| format!("{PREFIX}/{suffix}");
    Router::new()
        .route(&p("{p1}/{p2}"), post(save_legacy).delete(delete_legacy))
        .route(&p("{p1}/{p2}/{p3}"), post(save_v1).delete(delete_v1))
        .route(&p("{p1}/{p2}/attributes/{p4}"), post(save_v1))
        .route(&p("{p1}/{p2}/values/attributes"), get(values_all_scopes))
        .route(&p("{p1}/{p2}/values/attributes/{p4}"), get(values_of_scope))
        .route(&p("{p1}/{p2}/keys/attributes"), get(keys_all_scopes))
        .route(&p("{p1}/{p2}/keys/attributes/{p4}"), get(keys_of_scope))
}

/// A scope path segment; an unknown name is 400/31 error JSON (it fails before the handler body).
fn parse_scope(text: &str) -> Result<AttributeScope, ApiError> {
    AttributeScope::from_str(text).map_err(ApiError::BadRequest)
}

/// AttributeData rows `{"lastUpdateTs","key","value"}` with real JSON types.
fn rows_json(rows: &[AttributeKv]) -> Value {
    Value::Array(
        rows.iter()
            .map(|a| json!({"lastUpdateTs": a.last_update_ts, "key": a.key, "value": a.value.to_json()}))
            .collect(),
    )
}

async fn save_legacy(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((device_id, scope)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    save(
        &state,
        caller.scope(),
        DeviceId::ENTITY_TYPE,
        &device_id,
        &scope,
        &body,
    )
    .await
}

async fn save_v1(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id, scope)): Path<(String, String, String)>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    save(
        &state,
        caller.scope(),
        &entity_type,
        &entity_id,
        &scope,
        &body,
    )
    .await
}

async fn save(
    state: &AppStateRef,
    reach: Scope,
    entity_type: &str,
    entity_id: &str,
    scope: &str,
    body: &[u8],
) -> Result<StatusCode, ApiError> {
    let scope = parse_scope(scope)?;
    let device = resolve_owned(state, reach, entity_type, entity_id).await?;
    if scope == AttributeScope::Client {
        return Err(ApiError::text_bad_request(format!(
            "Invalid scope: {}",
            scope.as_str()
        )));
    }
    let value = parse_body(body, "Invalid JSON")?;
    if !value.is_object() {
        return Err(ApiError::text_bad_request("Request is not a JSON object"));
    }
    let kvs = payload::attributes(&value, state.services.typing).map_err(|e| {
        if e.is_limit() {
            crate::observability::log_gate::refused_input("rest", &device, &e);
        }
        ApiError::text_bad_request(e.to_string())
    })?;
    if kvs.is_empty() {
        return Err(ApiError::text_bad_request(
            "No attributes data found in request body!",
        ));
    }
    if kvs.iter().any(|kv| kv.key.trim().is_empty()) {
        return Err(ApiError::text_bad_request("Key cannot be empty!"));
    }
    // The push gets the keys and values by value: the save consumes its own copy.
    let push = (scope == AttributeScope::Shared).then(|| kvs.clone());
    state
        .services
        .save_attributes(device.0, scope, kvs, now_ms())
        .await?;
    // SHARED_SCOPE changes go to the device's session, through the bus, wherever it lives.
    if let Some(kvs) = push {
        state.services.push_shared_attributes(device, &kvs).await;
    }
    Ok(StatusCode::OK)
}

/// The device a save names, checked as `resolve_entity` does. A tenant administrator's call
/// needs only the device's tenant, which never changes: it is remembered (`bus::owners`) and
/// forgotten on every node when the device is deleted or its credentials change. A customer
/// user's call reads the device (its customer may have changed).
async fn resolve_owned(
    state: &AppStateRef,
    reach: Scope,
    entity_type: &str,
    entity_id: &str,
) -> Result<DeviceId, ApiError> {
    if reach.customer.is_none()
        && entity_type == DeviceId::ENTITY_TYPE
        && let Ok(id) = super::error::parse_uuid(entity_id)
        && let Some(tenant) = state.sessions.owners.tenant_of(DeviceId(id))
    {
        if tenant != reach.tenant {
            return Err(ApiError::Text(
                StatusCode::FORBIDDEN,
                "Device doesn't belong to the current Tenant!".to_owned(),
            ));
        }
        return Ok(DeviceId(id));
    }
    let device = resolve_entity(state, reach, entity_type, entity_id).await?;
    state.sessions.owners.remember(device.id, device.tenant_id);
    Ok(device.id)
}

/// What follows a committed attribute deletion: `{"deleted":[keys]}` to the device for SHARED_SCOPE.
async fn after_attributes_deleted(
    state: &AppStateRef,
    device: &Device,
    scope: AttributeScope,
    keys: &[String],
) {
    let what = crate::bus::live::ChangeKind::of_scope(scope);
    state.services.live_deleted(device.id.0, what, keys);
    if scope == AttributeScope::Shared {
        state.services.push_shared_deleted(device.id, keys).await;
    }
}

async fn values_all_scopes(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    let keys = requested_keys(&params)?;
    let keys = (!keys.is_empty()).then_some(keys.as_slice());
    let mut rows = Vec::new();
    for scope in AttributeScope::ALL {
        rows.extend(
            state
                .services
                .store
                .find_attributes(device.id.0, scope, keys)
                .await?,
        );
    }
    Ok(Json(rows_json(&rows)))
}

async fn values_of_scope(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id, scope)): Path<(String, String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let scope = parse_scope(&scope)?;
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    let keys = requested_keys(&params)?;
    let keys = (!keys.is_empty()).then_some(keys.as_slice());
    let rows = state
        .services
        .store
        .find_attributes(device.id.0, scope, keys)
        .await?;
    Ok(Json(rows_json(&rows)))
}

async fn keys_all_scopes(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id)): Path<(String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    Ok(Json(
        state
            .services
            .store
            .attribute_keys(device.id.0, None)
            .await?,
    ))
}

async fn keys_of_scope(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id, scope)): Path<(String, String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    let scope = parse_scope(&scope)?;
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    Ok(Json(
        state
            .services
            .store
            .attribute_keys(device.id.0, Some(scope))
            .await?,
    ))
}

async fn delete_legacy(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((device_id, scope)): Path<(String, String)>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    remove(
        &state,
        caller.scope(),
        DeviceId::ENTITY_TYPE,
        &device_id,
        &scope,
        &params,
    )
    .await
}

async fn delete_v1(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id, scope)): Path<(String, String, String)>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    remove(
        &state,
        caller.scope(),
        &entity_type,
        &entity_id,
        &scope,
        &params,
    )
    .await
}

async fn remove(
    state: &AppStateRef,
    reach: Scope,
    entity_type: &str,
    entity_id: &str,
    scope: &str,
    params: &Params,
) -> Result<StatusCode, ApiError> {
    let scope = parse_scope(scope)?;
    let raw_keys = params.required("keys")?;
    let device = resolve_entity(state, reach, entity_type, entity_id).await?;
    let keys = requested_keys(params)?;
    if keys.is_empty() {
        return Err(ApiError::text_bad_request(format!(
            "Empty keys: [{raw_keys}]"
        )));
    }
    let deleted = state
        .services
        .store
        .delete_attributes(device.id.0, scope, &keys)
        .await?;
    after_attributes_deleted(state, &device, scope, &deleted).await;
    Ok(StatusCode::OK)
}
