//! The ThingsBoard-compatible REST API (axum): one router per resource, ThingsBoard error JSON, JWT auth.
//! Uses domain, services and storage reads; never speaks MQTT.

mod activation;
mod attributes;
pub mod auth;
mod auth_routes;
mod console;
mod credentials;
mod customer_devices;
mod customers;
mod device_claim;
mod device_trace;
mod devices;
pub mod error;
mod health;
mod limits;
mod metrics;
mod observe;
pub mod openapi;
mod ota;
mod paging;
mod profile_save;
mod profiles;
mod provision;
mod rpc;
mod rpc_persistent;
mod rule_chains;
pub mod serve;
mod telemetry;
mod tenants;
mod users;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;
use error::{ApiError, ITEM_NOT_FOUND_MSG};

type State = Arc<AppState>;

pub fn router(state: State) -> Router {
    let max_body = state.config.http.max_body_bytes;
    // With a separate metrics listener (`[metrics] addr`) the public port does not serve them.
    let metrics = if state.config.metrics.addr.is_none() {
        metrics::routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(console::routes())
        .merge(auth_routes::routes())
        .merge(users::routes())
        .merge(activation::routes())
        .merge(tenants::routes())
        .merge(customers::routes())
        .merge(customer_devices::routes())
        .merge(device_claim::routes())
        .merge(devices::routes())
        .merge(device_trace::routes())
        .merge(credentials::routes())
        .merge(profiles::routes())
        .merge(provision::routes())
        .merge(telemetry::routes())
        .merge(attributes::routes())
        .merge(rpc::routes())
        .merge(ota::routes())
        .merge(health::routes())
        .merge(openapi::routes())
        .merge(metrics)
        .merge(ws::routes())
        .merge(rule_chains::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        // The device API's long polls outlast the REST deadline: it bounds its requests itself.
        .merge(crate::transport::http::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(observe::observe))
        .with_state(state)
}

/// The router of the separate metrics listener (`[metrics] addr`): `GET /metrics` only.
pub fn metrics_router(state: State) -> Router {
    metrics::routes().fallback(not_found).with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound(ITEM_NOT_FOUND_MSG.to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Ends a request that takes longer than `http.request_timeout_ms` with ThingsBoard's error JSON
/// (408), whatever it was waiting for.
pub(crate) async fn request_timeout(
    axum::extract::State(state): axum::extract::State<State>,
    req: Request,
    next: Next,
) -> Response {
    let limit = std::time::Duration::from_millis(state.config.http.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let status = axum::http::StatusCode::REQUEST_TIMEOUT;
            let message = format!(
                "Request took longer than {} ms (http.request_timeout_ms)",
                limit.as_millis()
            );
            let body = error::error_json(status, &message, error::code::GENERAL);
            (status, axum::Json(body)).into_response()
        }
    }
}
