//! `POST /api/v1/provision` (no authentication): device provisioning over HTTP, answered with the
//! same JSON as MQTT's `/provision/response` (`services::provisioning`).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use super::State as AppStateRef;
use super::error::{ApiError, JsonBody};
use crate::services::provisioning::ProvisionError;

pub fn routes() -> Router<AppStateRef> {
    Router::new().route("/api/v1/provision", post(provision))
}

/// 200 with `SUCCESS`, `NOT_FOUND` or `FAILURE`; 400 for a request that is not one.
async fn provision(
    State(state): State<AppStateRef>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    match state.services.provision(&body).await {
        Ok(answer) => Ok(Json(answer)),
        Err(ProvisionError::Malformed(e)) => Err(ApiError::BadRequest(format!(
            "Invalid provision request: {e}"
        ))),
        Err(ProvisionError::Storage(e)) => Err(e.into()),
    }
}
