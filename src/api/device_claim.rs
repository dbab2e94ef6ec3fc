//! The device HTTP API's claim route, `POST /api/v1/{token}/claim`: the device named by its
//! access token opens its claim window (`services::claiming`), as over MQTT.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

use super::State as AppStateRef;
use super::error::{ApiError, RawBody};
use crate::services::claiming::{self, RegisterError};

pub fn routes() -> Router<AppStateRef> {
    Router::new().route("/api/v1/{token}/claim", post(claim))
}

/// 200 once the window is open, or when the device cannot be claimed (as ThingsBoard answers
/// the device; the refusal is logged); 401 for an unknown token, 400 for a malformed body.
async fn claim(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let request = claiming::parse_request(&body).map_err(ApiError::text_bad_request)?;
    let device = match state.services.store.find_by_credentials_id(&token).await? {
        Some((device, creds)) if creds.credentials_type == "ACCESS_TOKEN" => device,
        _ => return Err(ApiError::Text(StatusCode::UNAUTHORIZED, String::new())),
    };
    match claiming::register(&state.services, &state.config.auth, &device, &request).await {
        Ok(_) => Ok(StatusCode::OK),
        Err(RegisterError::Storage(e)) => Err(e.into()),
        Err(refused) => {
            tracing::info!(device = %device.id, reason = %refused, "claim message refused");
            Ok(StatusCode::OK)
        }
    }
}
