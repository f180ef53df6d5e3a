//! The controller's HTTP side: `/metrics` in Prometheus text format (live run figures and fleet
//! state), `/healthz`, and the API and dashboard (`crate::api`), all on one router built from
//! shared state.

mod prometheus;
pub mod state;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use prometheus::render_prometheus;
pub use state::HttpState;

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::api::routes(state.clone()))
        .with_state(state)
}

/// Serves `router` on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render_prometheus(&state),
    )
}
