//! `POST /api/device/{deviceId}/trace?minutes=N` (tenant administrator; beyond ThingsBoard): for N
//! minutes every message of the device is traced on every node, whatever the sampler; `minutes=0`
//! ends the window early. Answers `{"deviceId", "tracedUntil"}` (epoch ms).

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::TenantAdmin;
use super::error::{ApiError, Params};
use crate::domain::now_ms;

/// The longest window one call may open (a day).
pub const MAX_MINUTES: i64 = 24 * 60;

pub fn routes() -> Router<AppStateRef> {
    Router::new().route("/api/device/{deviceId}/trace", post(trace_device))
}

async fn trace_device(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let minutes = match params.get("minutes") {
        None => 10,
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|m| (0..=MAX_MINUTES).contains(m))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "minutes must be an integer from 0 to {MAX_MINUTES}"
                ))
            })?,
    };
    let device = super::devices::load_device(&state, caller.tenant, &id).await?;
    let until_ms = if minutes == 0 {
        0
    } else {
        now_ms() + minutes * 60_000
    };
    let event = crate::bus::Event::TraceDevice {
        device: device.id.0,
        until_ms,
    };
    if let Err(e) = state.services.bus.publish(event).await {
        tracing::warn!(device = %device.id, error = %e, "device trace switch not sent to other nodes");
    }
    if !crate::observability::trace::enabled() {
        tracing::info!(device = %device.id, "device trace switch set, but no span is exported: OTEL_EXPORTER_OTLP_ENDPOINT is unset");
    }
    Ok(Json(json!({
        "deviceId": device.id.to_json(),
        "tracedUntil": until_ms,
        "exporting": crate::observability::trace::enabled(),
    })))
}
