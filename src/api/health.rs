//! The probes of docs/configuration.md (no authentication): `GET /api/health` for load
//! balancers, `/api/health/live` and `/api/health/ready` for orchestrators.

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
    Router::new()
        .route("/api/health", get(health))
        .route("/api/health/live", get(live))
        // Readiness is `/api/health`'s verdict: 200 when UP or DEGRADED, 503 while starting,
        // draining for a shutdown or without a database.
        .route("/api/health/ready", get(health))
}

/// What `/api/health` reports: its status and its body.
struct Health {
    status: &'static str,
    body: serde_json::Value,
}

impl Health {
    async fn of(state: &AppStateRef) -> Self {
        let database_up = matches!(
            tokio::time::timeout(PING_TIMEOUT, state.services.store.ping()).await,
            Ok(Ok(()))
        );
        let mqtt_up = state.mqtt_accepting.load(Ordering::SeqCst);
        // A node in its shutdown drain window still serves, but is not accepting new clients.
        let draining = state.draining.load(Ordering::SeqCst);
        // Redis down is not fatal: the node still serves its own devices (DEGRADED, HTTP 200).
        let bus = match state.services.bus.status() {
            BusStatus::Local => "LOCAL",
            BusStatus::Up => "UP",
            BusStatus::Down => "DOWN",
        };
        let status = if !database_up || !mqtt_up || draining {
            "DOWN"
        } else if bus == "DOWN" {
            "DEGRADED"
        } else {
            "UP"
        };
        let up_down = |up: bool| if up { "UP" } else { "DOWN" };
        let body = json!({
            "status": status,
            "components": {"database": up_down(database_up), "bus": bus, "mqtt": up_down(mqtt_up)},
        });
        Self { status, body }
    }

    fn code(&self) -> StatusCode {
        if self.status == "DOWN" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }
}

async fn health(State(state): State<AppStateRef>) -> Response {
    let health = Health::of(&state).await;
    (health.code(), Json(health.body)).into_response()
}

/// Liveness: the process answers HTTP at all. A database outage or a shutdown in progress does
/// not make it fail (restarting the node would not help).
async fn live() -> Response {
    Json(json!({"status": "UP"})).into_response()
}
