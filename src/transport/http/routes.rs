//! The device API's requests that answer at once: telemetry and attribute posts (answered after
//! the commit, as MQTT's QoS 1 PUBACK), attribute reads, and the device's answers to
//! server-side RPCs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::device::HttpDevice;
use crate::api::error::{ApiError, Params, RawBody};
use crate::state::AppState;
use crate::transport::uplink::{AttributeKeys, Values};

type AppStateRef = Arc<AppState>;

pub fn quick() -> Router<AppStateRef> {
    Router::new()
        .route("/api/v1/{token}/telemetry", post(post_telemetry))
        .route(
            "/api/v1/{token}/attributes",
            post(post_attributes).get(get_attributes),
        )
        .route("/api/v1/{token}/rpc/{request_id}", post(rpc_reply))
}

async fn post_telemetry(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    RawBody(body): RawBody,
) -> Result<(), ApiError> {
    post_values(&state, &token, Values::Telemetry, &body).await
}

async fn post_attributes(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    RawBody(body): RawBody,
) -> Result<(), ApiError> {
    post_values(&state, &token, Values::Attributes, &body).await
}

/// 200 once the values are processed and committed; an invalid payload is 400.
async fn post_values(
    state: &AppStateRef,
    token: &str,
    kind: Values,
    body: &[u8],
) -> Result<(), ApiError> {
    let device = HttpDevice::authenticate(state, token).await?;
    // The engine's bound first: nothing is built while it is exhausted.
    let permit = state
        .admit()
        .await
        .map_err(|e| ApiError::General(e.to_string()))?;
    let link = device.link();
    let outcome = match link.values(kind, crate::domain::payload::parse_lenient(body)) {
        Ok(msgs) => link.ingest(permit, msgs).await,
        Err(outcome) => outcome,
    };
    device.answer(outcome)
}

/// `?clientKeys=a,b&sharedKeys=c`: `{"client": {...}, "shared": {...}}`; neither = all of both.
/// A parameter given more than once counts as one list (as Spring joins them).
async fn get_attributes(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let device = HttpDevice::authenticate(&state, &token).await?;
    device.admit_message()?;
    let keys = |name: &str| {
        let list = params.all(name).join(",");
        (!list.is_empty()).then(|| AttributeKeys::split(&list))
    };
    let keys = AttributeKeys {
        client: keys("clientKeys"),
        shared: keys("sharedKeys"),
    };
    let body = device.link().attributes_of(keys).await?;
    Ok(axum::Json(body).into_response())
}

/// The device's answer to the server-side RPC it received under `request_id`; 200 also when the
/// id is unknown or expired (the answer is dropped), as in ThingsBoard.
async fn rpc_reply(
    State(state): State<AppStateRef>,
    Path((token, request_id)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<(), ApiError> {
    let device = HttpDevice::authenticate(&state, &token).await?;
    let Ok(id) = request_id.trim().parse::<i32>() else {
        return Err(ApiError::BadRequest(format!(
            "RPC request id '{request_id}' is not an integer"
        )));
    };
    device.admit_message()?;
    let body = String::from_utf8_lossy(&body).into_owned();
    device.link().answer_rpc(id, body);
    Ok(())
}
