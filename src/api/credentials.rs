//! Device credentials (rest-api.md §4): read a device's credentials and change its access token.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::TenantAdmin;
use super::devices::{id_field, load_device, validate_token};
use super::error::{ApiError, JsonBody};
use crate::storage::DeviceCredentials;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/device/{deviceId}/credentials", get(get_credentials))
        .route("/api/device/credentials", post(save_credentials))
}

/// ThingsBoard's DeviceCredentials JSON; its `id` carries no `entityType`.
pub fn credentials_json(c: &DeviceCredentials) -> Value {
    json!({
        "id": {"id": c.id.to_string()},
        "createdTime": c.created_time,
        "deviceId": c.device_id.to_json(),
        "credentialsType": c.credentials_type,
        "credentialsId": c.credentials_id,
        "credentialsValue": c.credentials_value,
        "version": c.version,
    })
}

async fn get_credentials(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let device = load_device(&state, caller.tenant, &id).await?;
    let credentials = state
        .services
        .store
        .get_credentials(device.id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Device credentials for device [{}] are not found",
                device.id
            ))
        })?;
    Ok(Json(credentials_json(&credentials)))
}

/// Replaces the device's credentials. Only ACCESS_TOKEN is handled so far.
async fn save_credentials(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
    let device_id = id_field(obj, "deviceId")?
        .ok_or_else(|| ApiError::bad_request("Device credentials should be assigned to device!"))?;
    let device = load_device(&state, caller.tenant, &device_id.to_string()).await?;
    let existing = state
        .services
        .store
        .get_credentials(device.id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Device credentials for device [{}] are not found",
                device.id
            ))
        })?;
    let credentials_type = obj
        .get("credentialsType")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("Device credentials type should be specified!"))?;
    match credentials_type {
        "ACCESS_TOKEN" => {}
        "MQTT_BASIC" | "X509_CERTIFICATE" | "LWM2M_CREDENTIALS" => {
            return Err(ApiError::BadRequest(format!(
                "Credentials type {credentials_type} is not supported yet"
            )));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "Invalid credentials type: {other}"
            )));
        }
    }
    let token = obj
        .get("credentialsId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("Device credentials id should be specified!"))?;
    validate_token(token)?;
    if let Some(version) = obj.get("version").and_then(Value::as_i64)
        && version != existing.version
    {
        return Err(ApiError::VersionConflict(format!(
            "Device credentials with id [{}] were already changed by someone else",
            existing.id
        )));
    }
    let updated = DeviceCredentials {
        credentials_type: credentials_type.to_owned(),
        credentials_id: token.to_owned(),
        credentials_value: None,
        ..existing
    };
    // Seam: sessions authenticated with the old token should be closed once the transport exposes it.
    let saved = state.services.store.update_credentials(&updated).await?;
    Ok(Json(credentials_json(&saved)))
}
