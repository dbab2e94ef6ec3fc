//! The ThingsBoard-compatible REST API (axum): one router per resource, ThingsBoard error JSON, JWT auth.

use std::sync::Arc;

use crate::app::AppState;

pub fn router(_state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
}
