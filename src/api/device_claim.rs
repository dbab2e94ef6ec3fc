//! The device HTTP API's claim route, `POST /api/v1/{token}/claim`: the device named by its
//! access token opens its claim window, exactly as with the MQTT topic `v1/devices/me/claim`
//! (`transport::uplink`, `services::claiming`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

use super::State as AppStateRef;
use super::error::{ApiError, RawBody};
use crate::transport::http::HttpDevice;

pub fn routes() -> Router<AppStateRef> {
    Router::new().route("/api/v1/{token}/claim", post(claim))
}

/// 200 once the window is stored, or when the device cannot be claimed (as ThingsBoard answers
/// the device; the refusal is logged); 401 for an unknown token, 400 for a malformed body, 429
/// past the device's message rate limit.
async fn claim(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let device = HttpDevice::authenticate(&state, &token).await?;
    device.admit_message()?;
    device.answer(device.link().claim(&body).await)?;
    Ok(StatusCode::OK)
}
