//! The device API's requests that answer at once: telemetry and attribute posts (answered after
//! the commit, as MQTT's QoS 1 PUBACK), attribute reads, and the device's answers to
//! server-side RPCs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::device::HttpDevice;
use crate::api::error::{ApiError, Params, RawBody};
use crate::domain::ota::OtaPackageType;
use crate::state::AppState;
use crate::transport::ota::{ChunkError, ChunkRequest};
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
        .route("/api/v1/{token}/firmware", get(get_firmware))
        .route("/api/v1/{token}/software", get(get_software))
}

/// The largest chunk one HTTP request may ask for; the whole file (`size` 0) is streamed instead.
const MAX_HTTP_CHUNK: u64 = 4 * 1024 * 1024;

async fn get_firmware(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    package_download(&state, &token, OtaPackageType::Firmware, &params).await
}

async fn get_software(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    package_download(&state, &token, OtaPackageType::Software, &params).await
}

/// `?title=&version=[&size=&chunk=]`: a chunk of the assigned package, or with `size` 0 (the
/// default) the whole file, streamed. Another title or version is 400, nothing assigned 404.
async fn package_download(
    state: &AppStateRef,
    token: &str,
    kind: OtaPackageType,
    params: &Params,
) -> Result<Response, ApiError> {
    let device = HttpDevice::authenticate(state, token).await?;
    device.admit_message()?;
    let title = params.required("title")?.to_owned();
    let version = params.required("version")?.to_owned();
    let number = |name: &str| -> Result<u64, ApiError> {
        let n = params.int(name)?.unwrap_or(0);
        u64::try_from(n).map_err(|_| {
            ApiError::bad_request(format!("Parameter '{name}' must not be negative: {n}"))
        })
    };
    let (size, chunk) = (number("size")?, number("chunk")?);
    let link = device.link();
    let expect = Some((title, version));
    let refused = |e: ChunkError| match e {
        ChunkError::NotFound => ApiError::NotFound(e.to_string()),
        ChunkError::PayloadTooLarge => ApiError::PayloadTooLarge,
        ChunkError::Mismatch | ChunkError::Failure => ApiError::bad_request(e.to_string()),
        ChunkError::Unknown => ApiError::General(e.to_string()),
    };
    let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
    if size == 0 {
        let data = link.package_file(kind, expect).await.map_err(refused)?;
        let body = axum::body::Body::from_stream(crate::services::ota::stream_file(
            state.services.store.clone(),
            data,
        ));
        return Ok((octets, body).into_response());
    }
    let req = ChunkRequest {
        kind,
        size,
        chunk,
        max: MAX_HTTP_CHUNK,
        shrink: false,
    };
    let chunk = link.package_chunk(req, expect).await.map_err(refused)?;
    Ok((octets, chunk.bytes).into_response())
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
    let outcome = match link.json_values(kind, body) {
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
