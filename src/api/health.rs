//! `GET /api/health`: the load-balancer probe of docs/configuration.md (no authentication).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::State as AppStateRef;
use crate::bus::BusStatus;

/// A database that does not answer within this time counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppStateRef> {
    Router::new().route("/api/health", get(health))
}

async fn health(State(state): State<AppStateRef>) -> Response {
    let database_up = matches!(
        tokio::time::timeout(PING_TIMEOUT, state.services.store.ping()).await,
        Ok(Ok(()))
    );
    let mqtt_up = state.mqtt_accepting.load(Ordering::SeqCst);
    // Redis down is not fatal: the node still serves its own devices (DEGRADED, HTTP 200).
    let bus = match state.services.bus.status() {
        BusStatus::Local => "LOCAL",
        BusStatus::Up => "UP",
        BusStatus::Down => "DOWN",
    };
    let status = if !database_up || !mqtt_up {
        "DOWN"
    } else if bus == "DOWN" {
        "DEGRADED"
    } else {
        "UP"
    };
    let code = if status == "DOWN" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let up_down = |up: bool| if up { "UP" } else { "DOWN" };
    let body = json!({
        "status": status,
        "components": {"database": up_down(database_up), "bus": bus, "mqtt": up_down(mqtt_up)},
    });
    (code, Json(body)).into_response()
}
