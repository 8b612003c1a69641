//! End-to-end test harness: a real `elasticache-local` server, in process, on a free port.
//!
//! Each test starts its own [`TestServer`] (own port, own temporary state directory), so tests
//! run in parallel without seeing each other's resources. The server stops when the handle is
//! dropped.
//!
//! What the test binaries share besides the server lives in modules, re-exported here:
//! [`redis`] and [`memcached`] (tiny wire clients), [`cluster`] (a cluster-aware client), [`admin`] (raw HTTP and the admin API),
//! [`tls`] (TLS and AUTH connections through the `redis` crate), [`wait`] (polling and node-process probes) and [`resources`] (describe / wait / events over
//! the SDK); [`browser`] drives a headless Chromium for the dashboard's tests.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

pub mod admin;
pub mod browser;
pub mod cluster;
pub mod half_open;
pub mod memcached;
pub mod redis;
pub mod resources;
pub mod source;
pub mod tls;
pub mod wait;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::config::retry::RetryConfig;
use aws_sdk_elasticache::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::{
    admin, admin_node, admin_nodes, admin_post, admin_post_json, raw_get, raw_post, raw_request, warm_pids,
};
pub use memcached::MemcachedClient;
pub use redis::{RedisClient, Resp};
pub use resources::{
    describe_cluster, describe_group, events_of, wait_cluster_available, wait_cluster_gone, wait_event, wait_events,
    wait_group_available, wait_group_gone, wait_not_found,
};
pub use wait::{SETTLE, kill_9, poll_until, port_refuses, process_alive, wait_redis, wait_refuses};

pub const REGION: &str = "us-east-1";
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
pub const ACCOUNT: &str = "000000000000";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds one connect or one command of the wire clients ([`RedisClient`], [`MemcachedClient`]).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The store in a state directory no server runs on, and the scope of [`REGION`] and
/// [`ACCOUNT`]: for a test to put there what a server will find when it starts.
pub async fn store_in(state_dir: &std::path::Path) -> (store::Store, store::Scope) {
    let store = store::Store::open(&state_dir.join(server::DATABASE_FILE)).await.expect("opening the store");
    (store, store::Scope { region: REGION.into(), account: ACCOUNT.into() })
}

pub struct TestServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    // Dropped after the server is told to stop; taken by [`TestServer::stop`].
    state_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server and returns once `/_emulator/health` answers ok.
    pub async fn start() -> Self {
        Self::try_start().await.expect("test server failed to start")
    }

    pub async fn try_start() -> anyhow::Result<Self> {
        Self::try_start_in(tempfile::tempdir().context("creating a temporary state dir")?).await
    }

    /// Starts a server on an existing state directory (e.g. the one a stopped server left).
    pub async fn start_in(state_dir: tempfile::TempDir) -> Self {
        Self::try_start_in(state_dir).await.expect("test server failed to start")
    }

    pub async fn try_start_in(state_dir: tempfile::TempDir) -> anyhow::Result<Self> {
        Self::try_start_with(state_dir, |_| {}).await
    }

    /// A server with no engine binaries, no warm nodes and no settle wait: whatever a
    /// request creates never starts a process (for tests of the API alone).
    pub async fn without_engines() -> Self {
        Self::start_with(|c| {
            c.engines = Some(nodes::Engines::default());
            c.warm_nodes = 0;
            c.settle_timeout = Duration::ZERO;
        })
        .await
    }

    /// Starts a server whose configuration `configure` changes first (the in-process twin of
    /// extra `serve` flags, e.g. `--auth strict --access-key …`).
    pub async fn start_with(configure: impl FnOnce(&mut server::Config)) -> Self {
        let state_dir = tempfile::tempdir().expect("creating a temporary state dir");
        Self::try_start_with(state_dir, configure).await.expect("test server failed to start")
    }

    pub async fn try_start_with(
        state_dir: tempfile::TempDir,
        configure: impl FnOnce(&mut server::Config),
    ) -> anyhow::Result<Self> {
        let listener = server::connections::listen(([127, 0, 0, 1], 0).into())?;
        let addr = listener.local_addr()?;
        let mut config = server::Config {
            state_dir: state_dir.path().to_path_buf(),
            region: REGION.to_string(),
            account: ACCOUNT.to_string(),
            zones: ZONES.iter().map(|z| z.to_string()).collect(),
            health: Default::default(),
            auth: Default::default(),
            s3: None,
            settle_timeout: server::DEFAULT_SETTLE_TIMEOUT,
            engines: None,
            warm_nodes: server::DEFAULT_WARM_NODES,
            connections: Default::default(),
            serverless_gb_bytes: server::DEFAULT_SERVERLESS_GB_BYTES,
            serverless_shard_bytes: server::DEFAULT_SERVERLESS_SHARD_BYTES,
            exposure: Default::default(),
            init_dir: None,
            node_capacity: nodes::capacity::Capacity::measure(),
        };
        configure(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, config, async move {
            let _ = rx.await;
        }));
        let mut server = TestServer { addr, shutdown: Some(tx), task, state_dir: Some(state_dir) };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.task.is_finished() {
                let result = (&mut self.task).await;
                bail!("server exited before becoming ready: {result:?}");
            }
            if let Ok((200, body)) = raw_get(self.addr, "/_emulator/health").await
                && body.contains("\"ok\"")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("server not ready after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully (the way `serve` stops on a signal: every node is stopped
    /// before `run` returns) and hands back its state directory, so that a new server can
    /// start on it. Panics if `run` fails or does not return within [`STOP_TIMEOUT`].
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("server run() failed while stopping: {e:?}"),
            Ok(Err(e)) => panic!("server task failed while stopping: {e:?}"),
            Err(_) => panic!("server did not stop within {STOP_TIMEOUT:?}"),
        }
        self.state_dir.take().expect("state dir is only taken by stop")
    }

    pub fn state_path(&self) -> &std::path::Path {
        self.state_dir.as_ref().expect("state dir is only taken by stop").path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An SDK client for [`REGION`].
    pub fn client(&self) -> aws_sdk_elasticache::Client {
        self.client_in(REGION)
    }

    /// An SDK client signing for `region`; the server keeps resources per region.
    pub fn client_in(&self, region: &str) -> aws_sdk_elasticache::Client {
        aws_sdk_elasticache::Client::from_conf(sdk_config(&self.endpoint(), region).build())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Open connections (SDK keep-alive) would delay graceful shutdown; don't wait for it.
        self.task.abort();
        if std::env::var_os("E2E_KEEP_STATE").is_some()
            && let Some(dir) = self.state_dir.take()
        {
            eprintln!("state dir kept: {}", dir.keep().display());
        }
    }
}

/// Config built only from what is passed here, so nothing in the environment (profiles,
/// `AWS_ENDPOINT_URL`, `AWS_MAX_ATTEMPTS`) changes what the tests see.
pub fn sdk_config(endpoint: &str, region: &str) -> aws_sdk_elasticache::config::Builder {
    aws_sdk_elasticache::config::Builder::new()
        .http_client(http_client())
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDE2ETEST",
            "e2e-test-secret",
            None,
            None,
            "e2e",
        )))
        .endpoint_url(endpoint)
        // A client error must surface at once; a retried 5xx would hide a server bug.
        .retry_config(RetryConfig::disabled())
}

/// The SDK's HTTP client on rustls with ring (the SDK's default one would build aws-lc).
pub fn http_client() -> aws_sdk_elasticache::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// What a failed SDK call told the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub status: u16,
}

/// The error of a call that must fail; panics (showing the output) if it succeeded.
pub fn api_error<T, E>(
    result: Result<T, aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>>,
) -> ApiError
where
    T: std::fmt::Debug,
    E: aws_sdk_elasticache::error::ProvideErrorMetadata + std::fmt::Debug,
{
    use aws_sdk_elasticache::error::ProvideErrorMetadata;
    match result {
        Ok(output) => panic!("expected an error, got {output:?}"),
        Err(error) => ApiError {
            code: error.code().unwrap_or_default().to_string(),
            message: error.message().unwrap_or_default().to_string(),
            status: error.raw_response().map_or(0, |r| r.status().as_u16()),
        },
    }
}

/// Asserts that `result` failed with `code`, and returns the error.
#[track_caller]
pub fn expect_code<T, E>(
    result: Result<T, aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>>,
    code: &str,
) -> ApiError
where
    T: std::fmt::Debug,
    E: aws_sdk_elasticache::error::ProvideErrorMetadata + std::fmt::Debug,
{
    let error = api_error(result);
    assert_eq!(error.code, code, "unexpected error: {error:?}");
    assert!((400..500).contains(&error.status), "client error with status {}: {error:?}", error.status);
    error
}
