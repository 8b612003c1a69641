//! Ready on the first poll: every SDK waiter of the model succeeds on the poll it sends at
//! once (no 15 s sleep), because mutations answer once their change has settled; with
//! `settle_timeout` zero they answer at once, as before. A node the engine refuses to start
//! ends the wait with `create-failed`.
//!
//! Polls are counted, not timed: `/metrics` counts every Describe the server answered.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::client::Waiters;
use aws_sdk_elasticache::types::SourceType;
use e2e::{TestServer, describe_cluster, describe_group, events_of, expect_code, raw_get, wait_cluster_available};
use nodes::{Binary, EngineKind, Engines};

/// Bounds a waiter; it succeeds on its first poll, so this only bounds a broken run.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Describe calls of `action` the server has answered so far, whatever their outcome.
async fn answered(server: &TestServer, action: &str) -> u64 {
    let (status, metrics) = raw_get(server.addr(), "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200);
    let prefix = format!("elasticache_local_api_requests_total{{action=\"{action}\",");
    metrics
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit_once(' ').and_then(|(_, n)| n.parse::<u64>().ok()))
        .sum()
}

/// Runs `wait` (one SDK waiter) and asserts it sent exactly one `action` call.
async fn first_poll_succeeds<F: std::future::Future<Output = ()>>(server: &TestServer, action: &str, wait: F) {
    let before = answered(server, action).await;
    wait.await;
    assert_eq!(answered(server, action).await - before, 1, "the waiter polled once ({action})");
}

async fn cluster_available(server: &TestServer, client: &Client, id: &str) {
    first_poll_succeeds(server, "DescribeCacheClusters", async {
        client.wait_until_cache_cluster_available().cache_cluster_id(id).wait(MAX_WAIT).await.expect("available");
    })
    .await;
}

async fn cluster_deleted(server: &TestServer, client: &Client, id: &str) {
    client.delete_cache_cluster().cache_cluster_id(id).send().await.expect("DeleteCacheCluster");
    first_poll_succeeds(server, "DescribeCacheClusters", async {
        client.wait_until_cache_cluster_deleted().cache_cluster_id(id).wait(MAX_WAIT).await.expect("deleted");
    })
    .await;
}

async fn group_available(server: &TestServer, client: &Client, id: &str) {
    first_poll_succeeds(server, "DescribeReplicationGroups", async {
        client
            .wait_until_replication_group_available()
            .replication_group_id(id)
            .wait(MAX_WAIT)
            .await
            .expect("available");
    })
    .await;
}

async fn group_deleted(server: &TestServer, client: &Client, id: &str) {
    client.delete_replication_group().replication_group_id(id).send().await.expect("DeleteReplicationGroup");
    first_poll_succeeds(server, "DescribeReplicationGroups", async {
        client.wait_until_replication_group_deleted().replication_group_id(id).wait(MAX_WAIT).await.expect("deleted");
    })
    .await;
}

fn create_redis(
    client: &Client,
    id: &str,
) -> aws_sdk_elasticache::operation::create_cache_cluster::builders::CreateCacheClusterFluentBuilder {
    client.create_cache_cluster().cache_cluster_id(id).engine("redis").cache_node_type("cache.t3.micro")
}

#[tokio::test]
async fn cache_cluster_waiters_succeed_on_their_first_poll() {
    let server = TestServer::start().await;
    let client = server.client();
    let out = create_redis(&client, "w-redis").send().await.expect("CreateCacheCluster");
    // The answer is still what AWS answers at the call.
    assert_eq!(out.cache_cluster().and_then(|c| c.cache_cluster_status()), Some("creating"));
    cluster_available(&server, &client, "w-redis").await;
    cluster_deleted(&server, &client, "w-redis").await;

    client
        .create_cache_cluster()
        .cache_cluster_id("w-mc")
        .engine("memcached")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(3)
        .send()
        .await
        .expect("CreateCacheCluster memcached");
    cluster_available(&server, &client, "w-mc").await;
    // A scale-out and a reboot settle too.
    client
        .modify_cache_cluster()
        .cache_cluster_id("w-mc")
        .num_cache_nodes(4)
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyCacheCluster");
    cluster_available(&server, &client, "w-mc").await;
    assert_eq!(describe_cluster(&client, "w-mc").await.cache_nodes().len(), 4);
    client
        .reboot_cache_cluster()
        .cache_cluster_id("w-mc")
        .cache_node_ids_to_reboot("0001")
        .send()
        .await
        .expect("RebootCacheCluster");
    cluster_available(&server, &client, "w-mc").await;
    cluster_deleted(&server, &client, "w-mc").await;
}

#[tokio::test]
async fn replication_group_waiters_succeed_on_their_first_poll() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_replication_group()
        .replication_group_id("w-cmd")
        .replication_group_description("cluster mode disabled")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(3)
        .automatic_failover_enabled(true)
        .send()
        .await
        .expect("CreateReplicationGroup");
    group_available(&server, &client, "w-cmd").await;
    // Terraform's member waiter: DescribeCacheClusters of each member.
    cluster_available(&server, &client, "w-cmd-003").await;
    client.test_failover().replication_group_id("w-cmd").node_group_id("0001").send().await.expect("TestFailover");
    group_available(&server, &client, "w-cmd").await;
    let group = describe_group(&client, "w-cmd").await;
    let primary = group.node_groups()[0]
        .node_group_members()
        .iter()
        .find(|m| m.current_role() == Some("primary"))
        .and_then(|m| m.cache_cluster_id());
    assert_ne!(primary, Some("w-cmd-001"), "the failover had happened when TestFailover answered");
    client
        .decrease_replica_count()
        .replication_group_id("w-cmd")
        .new_replica_count(1)
        .apply_immediately(true)
        .send()
        .await
        .expect("DecreaseReplicaCount");
    group_available(&server, &client, "w-cmd").await;
    group_deleted(&server, &client, "w-cmd").await;

    client
        .create_replication_group()
        .replication_group_id("w-cme")
        .replication_group_description("cluster mode enabled")
        .cache_node_type("cache.t3.micro")
        .num_node_groups(2)
        .replicas_per_node_group(1)
        .automatic_failover_enabled(true)
        .cache_parameter_group_name("default.redis7.cluster.on")
        .send()
        .await
        .expect("CreateReplicationGroup cluster mode");
    group_available(&server, &client, "w-cme").await;
    // (A reshard settles too, but it moves slots one by one and may take longer than the
    // settle bound in a debug build: the cluster_mode tests wait for it.)
    group_deleted(&server, &client, "w-cme").await;
}

#[tokio::test]
async fn snapshots_are_available_when_create_snapshot_answers() {
    let server = TestServer::start().await;
    let client = server.client();
    create_redis(&client, "w-snap").send().await.expect("CreateCacheCluster");
    let out =
        client.create_snapshot().cache_cluster_id("w-snap").snapshot_name("w-1").send().await.expect("CreateSnapshot");
    assert_eq!(out.snapshot().and_then(|s| s.snapshot_status()), Some("creating"));
    let snapshots = client.describe_snapshots().snapshot_name("w-1").send().await.expect("DescribeSnapshots");
    assert_eq!(snapshots.snapshots()[0].snapshot_status(), Some("available"));
    assert_eq!(describe_cluster(&client, "w-snap").await.cache_cluster_status(), Some("available"));
    client.delete_snapshot().snapshot_name("w-1").send().await.expect("DeleteSnapshot");
    expect_code(client.describe_snapshots().snapshot_name("w-1").send().await, "SnapshotNotFoundFault");
}

/// An engine binary that waits, before it becomes the real `redis-server`, for the test to
/// open its gate (a FIFO): a node start that takes as long as the test wants.
struct Gate {
    _dir: tempfile::TempDir,
    fifo: PathBuf,
    engines: Engines,
}

impl Gate {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("gate");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(status.success());
        let real = Engines::detect().binary(EngineKind::Redis).cloned().expect("redis-server on PATH");
        // The runtime's own throwaway instance (`--port 0`, asking which settings the binary
        // knows) passes; nodes, started on a config file, wait.
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = --port ] || read _ < '{}'\nexec '{}' \"$@\"\n",
            fifo.display(),
            real.path.display()
        );
        let engines = redis_engines(script_binary(dir.path(), "gated-redis-server", &script, &real.version));
        Self { _dir: dir, fifo, engines }
    }

    /// Lets one waiting node start (blocks until one is waiting).
    async fn open(&self) {
        let fifo = self.fifo.clone();
        let write = tokio::task::spawn_blocking(move || std::fs::write(fifo, "go\n"));
        tokio::time::timeout(Duration::from_secs(30), write).await.expect("a node waits at the gate").unwrap().unwrap();
    }
}

fn script_binary(dir: &Path, name: &str, text: &str, version: &str) -> Binary {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Binary { path, version: version.to_string() }
}

/// Redis (and Valkey) on `binary`; Memcached as found.
fn redis_engines(binary: Binary) -> Engines {
    let found = Engines::detect();
    Engines::new(Some(binary.clone()), Some(binary), found.binary(EngineKind::Memcached).cloned())
}

#[tokio::test]
async fn with_a_zero_settle_timeout_a_create_answers_before_the_cluster_is_available() {
    let gate = Gate::new();
    let engines = gate.engines.clone();
    let server = TestServer::start_with(|c| {
        c.settle_timeout = Duration::ZERO;
        c.engines = Some(engines);
        // Warm nodes would wait at the gate too.
        c.warm_nodes = 0;
    })
    .await;
    let client = server.client();
    create_redis(&client, "now").send().await.expect("CreateCacheCluster");
    // The node cannot have started: it waits at the gate.
    assert_eq!(describe_cluster(&client, "now").await.cache_cluster_status(), Some("creating"));
    gate.open().await;
    wait_cluster_available(&client, "now").await;
}

#[tokio::test]
async fn describe_is_answered_while_a_create_waits_and_a_dropped_client_changes_nothing() {
    let gate = Gate::new();
    let engines = gate.engines.clone();
    let server = TestServer::start_with(|c| {
        c.engines = Some(engines);
        // Warm nodes would wait at the gate too.
        c.warm_nodes = 0;
    })
    .await;
    let client = server.client();
    let creating = tokio::spawn({
        let client = client.clone();
        async move { create_redis(&client, "slow").send().await }
    });
    // While the create waits for its node, Describe of that very cluster answers.
    let seen = e2e::poll_until("the cluster visible while its create waits", e2e::SETTLE, || async {
        match client.describe_cache_clusters().cache_cluster_id("slow").send().await {
            Ok(out) => Ok(out.cache_clusters()[0].cache_cluster_status().map(str::to_string)),
            Err(e) => Err(format!("{e:?}")),
        }
    })
    .await;
    assert_eq!(seen.as_deref(), Some("creating"));
    assert!(!creating.is_finished(), "the create still waits for its node");
    gate.open().await;
    let out = creating.await.unwrap().expect("CreateCacheCluster");
    assert_eq!(out.cache_cluster().and_then(|c| c.cache_cluster_status()), Some("creating"));
    assert_eq!(describe_cluster(&client, "slow").await.cache_cluster_status(), Some("available"));

    // A client that gives up while its create waits: the create goes on regardless.
    let impatient = aws_sdk_elasticache::Client::from_conf(
        e2e::sdk_config(&server.endpoint(), e2e::REGION)
            .timeout_config(
                aws_sdk_elasticache::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(200))
                    .build(),
            )
            .build(),
    );
    let gave_up = create_redis(&impatient, "dropped").send().await;
    assert!(gave_up.is_err(), "the create timed out on the client's side: {gave_up:?}");
    gate.open().await;
    wait_cluster_available(&client, "dropped").await;
}

#[tokio::test]
async fn a_node_the_engine_refuses_makes_the_create_fail_within_the_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let refusing = script_binary(
        dir.path(),
        "refusing-redis-server",
        "#!/bin/sh\necho '*** FATAL CONFIG FILE ERROR (injected by the test) ***' >&2\nexit 1\n",
        "7.0.15",
    );
    let server = TestServer::start_with(|c| {
        c.engines = Some(redis_engines(refusing));
        c.warm_nodes = 0;
    })
    .await;
    let client = server.client();
    let out = create_redis(&client, "doomed").send().await.expect("CreateCacheCluster");
    assert_eq!(out.cache_cluster().and_then(|c| c.cache_cluster_status()), Some("creating"));
    // The create answered once the failure was known: nothing is left to wait for.
    assert_eq!(describe_cluster(&client, "doomed").await.cache_cluster_status(), Some("create-failed"));
    let events = events_of(&client, SourceType::CacheCluster, "doomed").await;
    assert!(
        events.iter().any(|e| e.starts_with("Failed to create cache cluster doomed") && e.contains("injected")),
        "an event says why: {events:?}"
    );

    client
        .create_replication_group()
        .replication_group_id("doomed-group")
        .replication_group_description("cannot start")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .send()
        .await
        .expect("CreateReplicationGroup");
    assert_eq!(describe_group(&client, "doomed-group").await.status(), Some("create-failed"));

    // What failed can be deleted, and the delete settles too.
    cluster_deleted(&server, &client, "doomed").await;
    group_deleted(&server, &client, "doomed-group").await;
}
