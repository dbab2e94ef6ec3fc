//! The HTTP device API, ThingsBoard's `/api/v1/{token}/...`: telemetry and attribute posts,
//! attribute reads, long polls for shared-attribute updates and server-side RPCs, RPC replies and
//! client-side RPCs. Mounted on the REST listener. What the requests mean is `transport::uplink`,
//! shared with MQTT; a long poll is a session of the device in the registry for its duration.

mod device;
mod poll;
mod routes;
mod waiting;

use std::sync::Arc;

use axum::Router;

pub use device::HttpDevice;
pub use poll::Polls;

use crate::state::AppState;

/// The device API's routes. Requests that answer at once keep the REST request deadline
/// (`http.request_timeout_ms`); long polls and client-side RPCs wait up to their own timeout.
pub fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    routes::quick()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::api::request_timeout,
        ))
        .merge(waiting::routes())
}
