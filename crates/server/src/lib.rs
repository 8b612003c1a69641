//! The `elasticache-local` server: wires the store and the operations into an HTTP app.
//!
//! # Layout
//! - [`Config`] and [`run`]: what `serve` needs, and the entry point tests call on port 0.
//! - [`app`]: the router, testable without a socket.
//! - `query_api`: the AWS Query endpoint (`POST /`, `GET /?Action=…`, any path).
//! - [`auth`]: permissive or strict (SigV4-checked) access to the Query API.
//! - `admin`: the emulator-only JSON API under `/_emulator/`; `topology`: its one-document
//!   view of every region, zone, node and resource; `event_stream`: its live feed of
//!   events and node changes; `ui`: the dashboard page drawn from both.
//! - [`connections`]: the accept loop, with timeouts and a bound on open connections.
//! - `init_scripts`: `serve --init-dir`, the user's scripts run once the API listens.
//!
//! The reconciler runs beside the HTTP server and stops every node when the server stops.

mod admin;
pub mod auth;
pub mod connections;
mod event_stream;
mod init_scripts;
mod metrics;
mod query_api;
mod topology;
mod ui;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, Request};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use nodes::{Engines, Runtime};
use reconciler::{HealthSettings, Reconciler};
use tokio::sync::{Notify, watch};

/// Everything `serve` is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite store (and, later, node directories) live.
    pub state_dir: PathBuf,
    /// Region for requests that do not name one in their signature.
    pub region: String,
    pub account: String,
    pub zones: Vec<String>,
    pub health: HealthSettings,
    /// Whether Query API requests must be signed, and by which keys.
    pub auth: auth::AuthSettings,
    /// Where snapshot exports go when not to `<state dir>/exports`.
    pub s3: Option<reconciler::S3Target>,
    /// How long a mutation waits for its change to settle before answering (zero: at once).
    pub settle_timeout: Duration,
    /// The engine binaries nodes run; None looks them up on `PATH`.
    pub engines: Option<Engines>,
    /// Cluster-enabled redis nodes kept started ahead of need, so that new cluster-mode
    /// groups skip redis's two-second start-up delay (with two standalone nodes per engine
    /// and a cluster-enabled valkey one, see `reconciler::warm`); 0 keeps none.
    pub warm_nodes: usize,
    /// Bounds on open connections and on slow clients.
    pub connections: connections::Limits,
    /// What one "GB" of a serverless cache's data storage limit is here (tests make it
    /// small, to reach a limit with little data).
    pub serverless_gb_bytes: u64,
    /// The data one shard behind a serverless endpoint holds before another is added.
    pub serverless_shard_bytes: u64,
    /// Where nodes and endpoints listen for clients, and the host API output names.
    pub exposure: nodes::exposure::Exposure,
    /// Executable files run one at a time, in name order, once the API listens; None
    /// runs none.
    pub init_dir: Option<PathBuf>,
    /// The cache nodes this machine can hold: creates past it are refused.
    pub node_capacity: nodes::capacity::Capacity,
}

/// One GiB of data per shard behind a serverless endpoint before it scales out.
pub const DEFAULT_SERVERLESS_SHARD_BYTES: u64 = 1 << 30;

/// One GiB: a serverless cache's data storage limit as on AWS.
pub const DEFAULT_SERVERLESS_GB_BYTES: u64 = 1 << 30;

/// The store's file in the state directory.
pub const DATABASE_FILE: &str = "elasticache-local.sqlite";

/// One warm node per shard of a three-shard group.
pub const DEFAULT_WARM_NODES: usize = 3;

/// Covers every change that takes a few seconds here (a reshard of 100,000 keys takes about
/// four) and stays well inside the clients' read timeouts (botocore's is 60 s).
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub operations: Arc<operations::Operations>,
    pub reconciler: Arc<Reconciler>,
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::ApiMetrics>,
    pub connections: Arc<connections::Connections>,
    /// Turns true when the server stops: endless responses (the event stream) end then.
    pub stopped: watch::Receiver<bool>,
    /// How far `--init-dir`'s scripts got (state `none` without one).
    pub init: Arc<init_scripts::InitScripts>,
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
        .route("/metrics", axum::routing::get(metrics::metrics))
        .merge(query_api::routes())
        .with_state(state)
        // The Query endpoint reads its body up to BODY_LIMIT_BYTES itself and answers a
        // larger one with an XML error; the admin API reads small JSON only.
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        // The path only: a GET-form request's query string may carry an AuthToken.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, UuidRequestId))
}

/// Opens the store in `config.state_dir`, brings back every node it records, and serves the
/// API on `listener` until `shutdown` completes; then stops every node.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.auth.validate()?;
    // Every file the emulator writes from now on (the store and its WAL, node configs and
    // data, keys, snapshots) may hold a secret: readable by this user only from its creation.
    // SAFETY: umask only replaces the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state dir {}", config.state_dir.display()))?;
    // The store holds AUTH tokens and the dir the CA key: for this user's eyes only.
    keep_private(&config.state_dir, 0o700)?;
    let database = config.state_dir.join(DATABASE_FILE);
    let store = Arc::new(store::Store::open(&database).await.context("opening the store")?);
    // Files an older release created before the umask below was set.
    for file in ["", "-wal", "-shm"].map(|suffix| format!("{}{suffix}", database.display())) {
        if std::path::Path::new(&file).exists() {
            keep_private(std::path::Path::new(&file), 0o600)?;
        }
    }
    let catalog = Arc::new(model::Catalog::load());
    let wake = Arc::new(Notify::new());
    // Clients' reads do not queue behind the reconciler's (see `Store::with_own_reads`).
    let api_store = Arc::new(store.with_own_reads().await.context("opening the API's store connections")?);
    let operations = Arc::new(operations::Operations::new(
        api_store,
        catalog.clone(),
        operations::Settings {
            account: config.account.clone(),
            zones: config.zones.clone(),
            reconcile: wake.clone(),
            exports_dir: config.state_dir.join("exports"),
            settle_timeout: config.settle_timeout,
            serverless_gb_bytes: config.serverless_gb_bytes,
            endpoint_host: config.exposure.host.clone(),
            node_capacity: operations::NodeCapacity {
                nodes: config.node_capacity.nodes,
                bound_by: config.node_capacity.bound_by.to_string(),
            },
        },
    ));
    let engines = config.engines.clone().unwrap_or_else(Engines::detect);
    let reconciler = Reconciler::new(
        store,
        catalog,
        Arc::new(Runtime::new(engines).with_exposure(config.exposure.clone())),
        wake,
        &config.state_dir,
        config.health,
        config.s3.clone(),
        config.warm_nodes,
    );

    // One shutdown signal, seen by both the HTTP server and the reconciler.
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    reconciler.mark_nodes_restarting().await.context("marking the nodes of the last run as restarting")?;
    let reconciling = AbortOnDrop(tokio::spawn(reconciler.clone().run(until_stopped(stopped.clone()))));
    let _backups = AbortOnDrop(tokio::spawn(automated_backups(operations.clone())));
    let scaling = serverless_scaling(operations.clone(), reconciler.clone(), config.serverless_shard_bytes);
    let _scaling = AbortOnDrop(tokio::spawn(scaling));

    // `running` from the first request on when there are scripts to run, so that a client
    // polling health never mistakes "not started yet" for "none".
    let init = Arc::new(init_scripts::InitScripts::new(config.init_dir.is_some()));
    let state = AppState {
        operations,
        reconciler,
        config: Arc::new(config),
        metrics: Arc::default(),
        connections: Arc::default(),
        stopped: stopped.clone(),
        init,
    };
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    state.config.auth.log_startup(address);
    log_exposure(&state.config.exposure);
    // The listener is bound, so the scripts' first requests wait in its backlog at worst.
    let _init = state.config.init_dir.clone().map(|dir| {
        let target = init_scripts::Target::new(address, &state.config.region, &state.config.auth);
        AbortOnDrop(tokio::spawn(init_scripts::run(dir, target, state.init.clone(), stopped.clone())))
    });
    let (limits, open) = (state.config.connections, state.connections.clone());
    connections::serve(listener, app(state), limits, open, stopped).await;
    // The reconciler stops every node before it returns.
    let mut reconciling = reconciling;
    let _ = (&mut reconciling.0).await;
    Ok(())
}

/// How often the daily automated backups are looked at.
const BACKUP_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts every automated backup that is due, once a minute, until aborted.
async fn automated_backups(operations: Arc<operations::Operations>) {
    let mut every = tokio::time::interval(BACKUP_CHECK);
    loop {
        every.tick().await;
        let schedule = operations::snapshots::Schedule::Daily { now_millis: store::now_millis() };
        if let Err(error) = operations::snapshots::run_automated(&operations, schedule).await {
            tracing::warn!(%error, "automated backups failed");
        }
    }
}

/// How often serverless caches' data is weighed for scaling.
const SCALING_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Scales each available serverless cache behind its endpoint when its data outgrows its
/// shards (or shrinks well below them), until aborted.
async fn serverless_scaling(operations: Arc<operations::Operations>, reconciler: Arc<Reconciler>, shard_bytes: u64) {
    let mut every = tokio::time::interval(SCALING_CHECK);
    loop {
        every.tick().await;
        let caches = match operations.store().all_serverless_caches().await {
            Ok(caches) => caches,
            Err(error) => {
                tracing::warn!(%error, "serverless scaling: reading the caches failed");
                continue;
            }
        };
        for (scope, cache) in caches.into_iter().filter(|(_, c)| c.status == model::status::cluster::AVAILABLE) {
            let Ok(Some((shards, bytes))) = reconciler.serverless_data_size(&scope, &cache.name).await else {
                continue;
            };
            let Some(target) = operations::serverless::scaling_target(shards, bytes, shard_bytes) else { continue };
            if let Err(error) = operations::serverless::scale(&operations, &scope, &cache.name, target).await {
                // A change that came first (a modify, a snapshot) wins; the next look decides again.
                tracing::debug!(serverless_cache = cache.name, %error, "serverless scaling deferred");
            }
        }
    }
}

/// Says where nodes can be reached from, warning when that is beyond this machine.
fn log_exposure(exposure: &nodes::exposure::Exposure) {
    let (listen, host) = (exposure.listen, &exposure.host);
    if listen.is_loopback() {
        tracing::info!(%listen, %host, "nodes and endpoints listen on loopback only");
    } else {
        // Nodes have no password unless a group asks for an AUTH token or RBAC.
        tracing::warn!(%listen, %host, "nodes and endpoints listen beyond loopback: reachable from other machines");
    }
}

fn keep_private(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("restricting {}", path.display()))
}

/// Aborts the task when dropped, so that a caller dropping `run` also stops reconciling.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
