//! The emulator-only admin API under `/_emulator/` (JSON).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/_emulator/health", get(health)).route("/_emulator/reset", post(reset))
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "region": state.config.region,
        "zones": state.config.zones,
        "engines": state.engines.to_json(),
    }))
}

/// Deletes every resource of every region; returns when done.
async fn reset(State(state): State<AppState>) -> Response {
    match state.operations.reset().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reset failed");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"status": "error", "message": e.to_string()})))
                .into_response()
        }
    }
}
