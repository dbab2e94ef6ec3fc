//! The device API's requests that wait: the long polls for a shared-attribute update
//! (`GET attributes/updates`) and for a server-side RPC (`GET rpc`), and the client-side RPC
//! (`POST rpc`), which waits for the rules' answer. Each ends with the first thing it gets, or
//! with 408 at its timeout.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::device::HttpDevice;
use super::poll::{Next, Poll, requested_timeout};
use crate::api::error::{ApiError, Params, RawBody};
use crate::bus::{Downlink, Event, PollKind, RpcRequest, SessionCmd};
use crate::domain::now_ms;
use crate::state::AppState;
use crate::transport::uplink::{ClientRpc, rpc_request_json};

type AppStateRef = Arc<AppState>;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/v1/{token}/attributes/updates", get(attribute_updates))
        .route("/api/v1/{token}/rpc", get(rpc_requests).post(client_rpc))
}

/// The next shared-attribute update of the device: `{"key": value}` or `{"deleted": [...]}`.
async fn attribute_updates(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let timeout = requested_timeout(&state.config.http_device, &params)?;
    let device = HttpDevice::authenticate(&state, &token).await?;
    device.admit_message()?;
    let mut poll = Poll::open(device, PollKind::Attributes, timeout)?;
    loop {
        match poll.next().await {
            Next::Cmd(SessionCmd::Deliver(downlink)) => {
                if let Downlink::Attributes { payload } = *downlink {
                    return Ok(json_response(payload));
                }
            }
            Next::Cmd(SessionCmd::PendingRpc) => {}
            ended => return Ok(poll.ended(&ended)),
        }
    }
}

/// The next server-side RPC for the device: `{"id": n, "method": ..., "params": ...}`; the id is
/// the device's request id (answered with `POST rpc/{id}`). It counts as DELIVERED once answered
/// here. The poll first asks for what already waits: the RPCs callers on any node wait on (they
/// are offered again through the bus) and the oldest persistent RPC stored for the device.
async fn rpc_requests(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let timeout = requested_timeout(&state.config.http_device, &params)?;
    let device = HttpDevice::authenticate(&state, &token).await?;
    device.admit_message()?;
    let mut poll = Poll::open(device, PollKind::Rpc, timeout)?;
    let device_id = poll.device.device.id;
    if let Err(e) = state
        .services
        .bus
        .publish(Event::RpcPolled {
            device: device_id.0,
        })
        .await
    {
        tracing::warn!(device = %device_id, error = %e, "RPC long poll not announced to other nodes");
    }
    if let Some(body) = persistent(&poll).await {
        return Ok(body);
    }
    loop {
        match poll.next().await {
            Next::Cmd(SessionCmd::Deliver(downlink)) => {
                if let Downlink::Rpc(req) = *downlink
                    && let Some(body) = deliver(&poll, req)
                {
                    return Ok(body);
                }
            }
            Next::Cmd(SessionCmd::PendingRpc) => {
                if let Some(body) = persistent(&poll).await {
                    return Ok(body);
                }
            }
            ended => return Ok(poll.ended(&ended)),
        }
    }
}

/// The oldest persistent RPC stored for the device that is not sent already, delivered.
async fn persistent(poll: &Poll) -> Option<Response> {
    let services = &poll.device.state.services;
    let requests = services.rpc.queued_for(poll.device.device.id).await;
    requests.into_iter().find_map(|req| deliver(poll, req))
}

/// Answers the poll with the RPC under the device's next request id, unless it expired or is a
/// copy of one sent to the device already. The outcome is recorded in the background, in order:
/// a two-way request's id announced to every node (the answer may come from any session of the
/// device), then DELIVERED.
fn deliver(poll: &Poll, mut req: RpcRequest) -> Option<Response> {
    let state = &poll.device.state;
    let (tenant, device) = (poll.device.device.tenant_id, poll.device.device.id);
    let services = state.services.clone();
    if req.expiration_time <= now_ms() {
        state
            .rt
            .spawn(async move { services.rpc.expired(&req).await });
        return None;
    }
    if services.rpc.sent.holds(device, req.rpc) {
        tracing::debug!(device = %device, rpc = %req.rpc, "RPC offered again while sent; copy ignored");
        return None;
    }
    let id = services.rpc.sent.allocate(tenant, device, &req);
    req.request_id = id;
    let body = rpc_request_json(&req, Some(id)).to_string();
    state.rt.spawn(async move {
        if !req.oneway {
            services
                .rpc
                .announce_sent(tenant, device, id, req.clone())
                .await;
        }
        services.rpc.delivered(tenant, device, &req).await;
    });
    Some(json_response(body))
}

/// The device's own RPC `{"method", "params"}`: answered with the rules' reply (their "rpc call
/// reply" node), or 408 when none came within `http_device.poll_timeout_ms`.
async fn client_rpc(
    State(state): State<AppStateRef>,
    Path(token): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let device = HttpDevice::authenticate(&state, &token).await?;
    device.admit_message()?;
    let call = match ClientRpc::parse(&body) {
        Ok(call) => call,
        Err(outcome) => return device.answer(outcome).map(|()| ().into_response()),
    };
    let permit = state
        .admit()
        .await
        .map_err(|e| ApiError::General(e.to_string()))?;
    let timeout = std::time::Duration::from_millis(state.config.http_device.poll_timeout_ms);
    // Registered before the request enters the rules: their answer may come at once.
    let mut poll = Poll::open(device, PollKind::ClientRpcReply, timeout)?;
    let msg = poll.device.link().client_rpc_msg(call, "0", poll.session);
    let outcome = poll.device.link().ingest(permit, vec![msg]).await;
    poll.device.answer(outcome)?;
    loop {
        match poll.next().await {
            Next::Cmd(SessionCmd::Deliver(downlink)) => {
                if let Downlink::ClientRpcReply { session, body, .. } = *downlink
                    && session == poll.session
                {
                    return Ok(json_response(body));
                }
            }
            Next::Cmd(SessionCmd::PendingRpc) => {}
            ended => return Ok(poll.ended(&ended)),
        }
    }
}

/// 200 with a JSON text body.
fn json_response(body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
