//! `GET /metrics`: the Prometheus text exposition of the process-wide registry (no authentication).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::State as AppStateRef;

pub fn routes() -> Router<AppStateRef> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppStateRef>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
