//! Ready on the first poll: a create or delete followed by the waiter a client runs
//! (the Rust SDK's, and boto3's through python), against the emulator's own create →
//! connectable time for the same resource (settle off, Describe polled every 2 ms, then
//! every endpoint answering). Also the idle cost of the warm pool, and a 3 × 2 cluster-mode
//! group → `available` with and without it.
//!
//! Cluster-mode creates start once every warm node is past redis's two-second delay (as a
//! test suite's first group would find them), so each run measures a warm pool.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::client::Waiters;

use crate::clusters::{Engine, answers};
use crate::{Server, answered, client, median, ms};

const RUNS: usize = 3;
const MAX_WAIT: Duration = Duration::from_secs(120);
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Resource {
    Redis,
    Memcached,
    /// A replication group of 3 nodes, cluster mode disabled.
    Group,
    /// 3 shards × 2 replicas, cluster mode enabled.
    Sharded,
}

const RESOURCES: [Resource; 4] = [Resource::Redis, Resource::Memcached, Resource::Group, Resource::Sharded];

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Redis => "1 redis node",
            Resource::Memcached => "1 memcached node",
            Resource::Group => "replication group, 3 nodes",
            Resource::Sharded => "cluster mode, 3 shards x 2 replicas",
        }
    }

    /// The key boto3's script takes.
    fn key(self) -> &'static str {
        match self {
            Resource::Redis => "redis",
            Resource::Memcached => "memcached",
            Resource::Group => "group",
            Resource::Sharded => "sharded",
        }
    }

    fn is_group(self) -> bool {
        matches!(self, Resource::Group | Resource::Sharded)
    }

    async fn create(self, client: &Client, id: &str) -> anyhow::Result<()> {
        let node_type = "cache.t3.micro";
        match self {
            Resource::Redis | Resource::Memcached => {
                let engine = if matches!(self, Resource::Redis) { "redis" } else { "memcached" };
                let create = client.create_cache_cluster().cache_cluster_id(id).engine(engine);
                create.cache_node_type(node_type).send().await.map(|_| ()).context("create cluster")
            }
            Resource::Group => client
                .create_replication_group()
                .replication_group_id(id)
                .replication_group_description("bench")
                .cache_node_type(node_type)
                .num_cache_clusters(3)
                .automatic_failover_enabled(true)
                .send()
                .await
                .map(|_| ())
                .context("create group"),
            Resource::Sharded => client
                .create_replication_group()
                .replication_group_id(id)
                .replication_group_description("bench")
                .cache_node_type(node_type)
                .num_node_groups(3)
                .replicas_per_node_group(2)
                .automatic_failover_enabled(true)
                .cache_parameter_group_name("default.redis7.cluster.on")
                .send()
                .await
                .map(|_| ())
                .context("create sharded group"),
        }
    }

    async fn wait_available(self, client: &Client, id: &str) -> anyhow::Result<()> {
        if self.is_group() {
            client.wait_until_replication_group_available().replication_group_id(id).wait(MAX_WAIT).await?;
        } else {
            client.wait_until_cache_cluster_available().cache_cluster_id(id).wait(MAX_WAIT).await?;
        }
        Ok(())
    }

    async fn delete_and_wait(self, client: &Client, id: &str) -> anyhow::Result<()> {
        if self.is_group() {
            client.delete_replication_group().replication_group_id(id).send().await.context("delete group")?;
            client.wait_until_replication_group_deleted().replication_group_id(id).wait(MAX_WAIT).await?;
        } else {
            client.delete_cache_cluster().cache_cluster_id(id).send().await.context("delete cluster")?;
            client.wait_until_cache_cluster_deleted().cache_cluster_id(id).wait(MAX_WAIT).await?;
        }
        Ok(())
    }

    /// The endpoints a client connects to once Describe says `available` (None before).
    async fn endpoints(self, client: &Client, id: &str) -> anyhow::Result<Option<Vec<SocketAddr>>> {
        let parse = |address: Option<&str>, port: Option<i32>| -> Option<SocketAddr> {
            format!("{}:{}", address?, port?).parse().ok()
        };
        if self.is_group() {
            let out = client.describe_replication_groups().replication_group_id(id).send().await?;
            let group = out.replication_groups().first().context("described")?;
            if group.status() != Some("available") {
                return Ok(None);
            }
            let endpoint = match group.configuration_endpoint() {
                Some(e) => parse(e.address(), e.port()),
                None => group
                    .node_groups()
                    .first()
                    .and_then(|g| g.primary_endpoint())
                    .and_then(|e| parse(e.address(), e.port())),
            };
            return Ok(Some(endpoint.into_iter().collect()));
        }
        let out = client.describe_cache_clusters().cache_cluster_id(id).show_cache_node_info(true).send().await?;
        let cluster = out.cache_clusters().first().context("described")?;
        if cluster.cache_cluster_status() != Some("available") {
            return Ok(None);
        }
        Ok(Some(
            cluster
                .cache_nodes()
                .iter()
                .filter_map(|n| n.endpoint())
                .filter_map(|e| parse(e.address(), e.port()))
                .collect(),
        ))
    }

    fn engine(self) -> Engine {
        if matches!(self, Resource::Memcached) { Engine::Memcached } else { Engine::Redis }
    }
}

/// Polls the admin API until every warm node (redis's and valkey's) is past the delay.
pub async fn warm_pool_ready(admin: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, body) = e2e::raw_get(admin, "/_emulator/health").await?;
        let health: serde_json::Value = serde_json::from_str(&body)?;
        let warm = health["warm_nodes"].as_array().cloned().unwrap_or_default();
        let wanted = health["warm_nodes_wanted"].as_u64().context("warm_nodes_wanted")?;
        if warm.len() as u64 == wanted && warm.iter().all(|n| n["ready"] == true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the warm pool did not fill: {warm:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Create → waiter and delete → waiter through the Rust SDK.
async fn rust_waiters(client: &Client, admin: SocketAddr, resource: Resource) -> anyhow::Result<(Duration, Duration)> {
    let (mut creates, mut deletes) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let id = format!("bench-w-{}-{run}", resource.key());
        warm_pool_ready(admin).await?;
        let started = Instant::now();
        resource.create(client, &id).await?;
        resource.wait_available(client, &id).await?;
        creates.push(started.elapsed());
        let started = Instant::now();
        resource.delete_and_wait(client, &id).await?;
        deletes.push(started.elapsed());
    }
    Ok((median(&mut creates), median(&mut deletes)))
}

/// The emulator's own create → connectable time: answers at once, Describe every 2 ms.
async fn own_time(client: &Client, admin: SocketAddr, resource: Resource) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for run in 0..RUNS {
        let id = format!("bench-own-{}-{run}", resource.key());
        warm_pool_ready(admin).await?;
        let started = Instant::now();
        resource.create(client, &id).await?;
        let deadline = Instant::now() + DEADLINE;
        let endpoints = loop {
            if let Some(endpoints) = resource.endpoints(client, &id).await? {
                break endpoints;
            }
            if Instant::now() > deadline {
                bail!("{id} not available in time");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        for endpoint in endpoints {
            while !answers(resource.engine(), endpoint).await {
                if Instant::now() > deadline {
                    bail!("{endpoint} did not answer");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        times.push(started.elapsed());
        resource.delete_and_wait(client, &id).await?;
    }
    Ok(median(&mut times))
}

/// boto3's waiters, timed by the python script below: `{resource: [create, delete]}` in ms.
fn boto3_waiters(endpoint: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let output = Command::new("python3")
        .args(["-c", BOTO3_SCRIPT, &format!("http://{endpoint}"), &RUNS.to_string()])
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .context("running python3 with boto3")?;
    if !output.status.success() {
        bail!("boto3 script failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

const BOTO3_SCRIPT: &str = r#"
import json, statistics, sys, time, urllib.request
import boto3
endpoint, runs = sys.argv[1], int(sys.argv[2])
ec = boto3.client("elasticache", endpoint_url=endpoint)
node = {"CacheNodeType": "cache.t3.micro"}
def warm():
    while True:
        nodes = json.load(urllib.request.urlopen(endpoint + "/_emulator/health"))["warm_nodes"]
        if len(nodes) >= 3 and all(n["ready"] for n in nodes):
            return
        time.sleep(0.05)
kinds = {
    "redis": (lambda i: ec.create_cache_cluster(CacheClusterId=i, Engine="redis", **node), "cache_cluster"),
    "memcached": (lambda i: ec.create_cache_cluster(CacheClusterId=i, Engine="memcached", **node), "cache_cluster"),
    "group": (lambda i: ec.create_replication_group(ReplicationGroupId=i, ReplicationGroupDescription="b",
              NumCacheClusters=3, AutomaticFailoverEnabled=True, **node), "replication_group"),
    "sharded": (lambda i: ec.create_replication_group(ReplicationGroupId=i, ReplicationGroupDescription="b",
                NumNodeGroups=3, ReplicasPerNodeGroup=2, AutomaticFailoverEnabled=True,
                CacheParameterGroupName="default.redis7.cluster.on", **node), "replication_group"),
}
out = {}
for kind, (create, waiter) in kinds.items():
    creates, deletes = [], []
    for run in range(runs):
        rid = f"bench-b3-{kind}-{run}"
        arg = {"CacheClusterId": rid} if waiter == "cache_cluster" else {"ReplicationGroupId": rid}
        warm()
        t = time.perf_counter()
        create(rid)
        ec.get_waiter(waiter + "_available").wait(**arg)
        creates.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        (ec.delete_cache_cluster if waiter == "cache_cluster" else ec.delete_replication_group)(**arg)
        ec.get_waiter(waiter + "_deleted").wait(**arg)
        deletes.append((time.perf_counter() - t) * 1000)
    out[kind] = [statistics.median(creates), statistics.median(deletes)]
print(json.dumps(out))
"#;

/// Processes and resident memory (kB) of the idle warm nodes.
async fn idle_cost(admin: SocketAddr) -> anyhow::Result<(usize, u64)> {
    warm_pool_ready(admin).await?;
    let (_, body) = e2e::raw_get(admin, "/_emulator/health").await?;
    let health: serde_json::Value = serde_json::from_str(&body)?;
    let pids: Vec<u64> =
        health["warm_nodes"].as_array().into_iter().flatten().filter_map(|n| n["pid"].as_u64()).collect();
    let rss_kib = pids.iter().filter_map(|pid| crate::proc_stats::rss_kib(*pid as u32)).sum();
    Ok((pids.len(), rss_kib))
}

async fn started(server: &Server) -> anyhow::Result<Client> {
    while !answered(server.address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(client(server.address).await)
}

pub async fn run(binary: &std::path::PathBuf) -> anyhow::Result<()> {
    let server = Server::spawn(binary)?;
    let waiting = started(&server).await?;
    let (count, rss) = idle_cost(server.address).await?;
    println!("warm pool idle cost: {count} processes (redis and valkey), {:.1} MiB RSS in all", rss as f64 / 1024.0);
    let immediate = Server::spawn_with(binary, &["--settle-timeout-ms", "0"])?;
    let polling = started(&immediate).await?;
    for resource in RESOURCES {
        let own = own_time(&polling, immediate.address, resource).await?;
        let (create, delete) = rust_waiters(&waiting, server.address, resource).await?;
        println!(
            "{}: create + Rust SDK waiter {:.1} ms, delete + waiter {:.1} ms; the emulator's own create -> connectable {:.1} ms; ratio {:.2}x ({RUNS} runs)",
            resource.name(),
            ms(create),
            ms(delete),
            ms(own),
            create.as_secs_f64() / own.as_secs_f64()
        );
    }
    match boto3_waiters(server.address) {
        Ok(times) => {
            for resource in RESOURCES {
                let pair = &times[resource.key()];
                println!(
                    "{}: create + boto3 waiter {:.1} ms, delete + waiter {:.1} ms ({RUNS} runs)",
                    resource.name(),
                    pair[0].as_f64().unwrap_or(f64::NAN),
                    pair[1].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
        Err(error) => println!("boto3 waiters: not measured ({error})"),
    }

    // Redis's two seconds, without the pool.
    let cold = Server::spawn_with(binary, &["--warm-nodes", "0"])?;
    let cold_client = started(&cold).await?;
    let mut times = Vec::new();
    for run in 0..RUNS {
        let id = format!("bench-cold-{run}");
        let started = Instant::now();
        Resource::Sharded.create(&cold_client, &id).await?;
        Resource::Sharded.wait_available(&cold_client, &id).await?;
        times.push(started.elapsed());
        Resource::Sharded.delete_and_wait(&cold_client, &id).await?;
    }
    println!(
        "cluster mode, 3 shards x 2 replicas -> available without warm nodes (--warm-nodes 0): median {:.1} ms ({RUNS} runs)",
        ms(median(&mut times))
    );
    Ok(())
}
