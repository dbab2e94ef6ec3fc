//! Device credentials: read a device's credentials and replace them with an access
//! token or MQTT basic credentials, closing the device's live session.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::devices::{device_for, id_field, load_device, validate_token};
use super::error::{ApiError, JsonBody};
use crate::bus::Event;
use crate::domain::DeviceCredentials;
use crate::domain::credentials::{BasicError, MqttBasic};
use crate::domain::x509::DeviceCertificate;
use crate::domain::{DeviceId, DeviceProfileId};

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
    caller: TenantUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let device = device_for(&state, caller.tenant, caller.customer, &id).await?;
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

/// Replaces the device's credentials (ACCESS_TOKEN or MQTT_BASIC); the device's live session, on
/// whatever node, is closed afterwards.
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
    let (credentials_id, credentials_value) = match credentials_type {
        "ACCESS_TOKEN" => {
            let token = obj
                .get("credentialsId")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::bad_request("Device credentials id should be specified!")
                })?;
            validate_token(token)?;
            (token.to_owned(), None)
        }
        "MQTT_BASIC" => {
            // The value is JSON text inside a JSON string; the client's credentialsId is ignored.
            let basic = obj
                .get("credentialsValue")
                .and_then(Value::as_str)
                .ok_or(BasicError::InvalidBody)
                .and_then(MqttBasic::parse)
                .map_err(|e| ApiError::bad_request(e.message()))?;
            (basic.credentials_id(), Some(basic.to_json()))
        }
        "X509_CERTIFICATE" => {
            // The PEM (or its base64 body) is stored normalised; the id is its SHA3-256.
            let text = obj
                .get("credentialsValue")
                .and_then(Value::as_str)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request("Device certificate should be specified!"))?;
            let cert = DeviceCertificate::from_text(text)
                .map_err(|e| ApiError::BadRequest(format!("Invalid X509 certificate: {e}")))?;
            (cert.credentials_id(), Some(cert.body))
        }
        "LWM2M_CREDENTIALS" => {
            return Err(ApiError::BadRequest(format!(
                "Credentials type {credentials_type} is not supported yet"
            )));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "Invalid credentials type: {other}"
            )));
        }
    };
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
        credentials_id,
        credentials_value,
        ..existing
    };
    let saved = state.services.store.update_credentials(&updated).await?;
    state.services.auth_cache.invalidate();
    close_sessions(&state, device.id).await;
    Ok(Json(credentials_json(&saved)))
}

/// Closes the device's live session on every node (v5 DISCONNECT 0x98). The local node is served
/// first, so a failed publish only means other nodes may keep an old session; the caller's change
/// stands either way.
pub(super) async fn close_sessions(state: &AppStateRef, device: DeviceId) {
    let event = Event::CloseSessions { device: device.0 };
    if let Err(e) = state.services.bus.publish(event).await {
        tracing::warn!(device = %device, error = %e, "sessions of the device not closed on other nodes");
    }
}

/// Closes the live sessions of the profile's devices on every node (v5 DISCONNECT 0x98): they
/// reconnect under the profile's new settings.
pub(super) async fn close_profile_sessions(state: &AppStateRef, profile: DeviceProfileId) {
    let event = Event::CloseProfileSessions { profile: profile.0 };
    if let Err(e) = state.services.bus.publish(event).await {
        tracing::warn!(profile = %profile.0, error = %e, "sessions of the profile's devices not closed on other nodes");
    }
}
