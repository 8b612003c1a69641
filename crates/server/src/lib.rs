//! The `elasticache-local` server: wires the store and the operations into an HTTP app.
//!
//! # Layout
//! - [`Config`] and [`run`]: what `serve` needs, and the entry point tests call on port 0.
//! - [`app`]: the router, testable without a socket.
//! - `query_api`: the AWS Query endpoint (`POST /`, `GET /?Action=…`, any path).
//! - `admin`: the emulator-only JSON API under `/_emulator/`.
//! - `engines`: which engine binaries this machine has.

mod admin;
mod engines;
mod query_api;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, Request};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use engines::Engines;

/// Everything `serve` is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite store (and, later, node directories) live.
    pub state_dir: PathBuf,
    /// Region for requests that do not name one in their signature.
    pub region: String,
    pub account: String,
    pub zones: Vec<String>,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub operations: Arc<operations::Operations>,
    pub engines: Arc<Engines>,
    pub config: Arc<Config>,
}

/// AWS bodies are small; a large one is a mistake or an attack.
const BODY_LIMIT_BYTES: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-amzn-requestid");

#[derive(Clone, Copy)]
struct UuidRequestId;

impl MakeRequestId for UuidRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::new_v4().to_string().parse().ok().map(RequestId::new)
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(admin::routes())
        .merge(query_api::routes())
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, UuidRequestId))
}

/// Opens the store in `config.state_dir` and serves the API on `listener` until `shutdown`
/// completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state dir {}", config.state_dir.display()))?;
    let store =
        store::Store::open(&config.state_dir.join("elasticache-local.sqlite")).await.context("opening the store")?;
    let operations = operations::Operations::new(
        store,
        operations::Settings { account: config.account.clone(), zones: config.zones.clone() },
    );
    let state =
        AppState { operations: Arc::new(operations), engines: Arc::new(Engines::detect()), config: Arc::new(config) };
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
