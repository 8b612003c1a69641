//! Replication-group figures: create (1 primary + 2 replicas) → available, failover time
//! (kill -9 of the primary → first successful write through the primary endpoint), and
//! acknowledged writes lost across a failover under a steady write load, with and without
//! `WAIT 1`; and a one-node group → connectable for Redis 7.0 and for Valkey 8.0, each on the
//! binary `/_emulator/health` names.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use e2e::{RedisClient, Resp};

use crate::clusters::admin_post;
use crate::{median, ms};

const RUNS: usize = 10;
const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) async fn connect(address: SocketAddr) -> anyhow::Result<RedisClient> {
    RedisClient::connect(&address.ip().to_string(), address.port()).await
}

async fn describe_endpoints(client: &Client, id: &str) -> anyhow::Result<Option<(SocketAddr, String)>> {
    let described = client.describe_replication_groups().replication_group_id(id).send().await?;
    let group = described.replication_groups().first().context("described")?;
    if group.status() != Some("available") {
        return Ok(None);
    }
    let node_group = group.node_groups().first().context("node group")?;
    let endpoint = node_group.primary_endpoint().context("primary endpoint")?;
    let address =
        format!("{}:{}", endpoint.address().unwrap_or_default(), endpoint.port().unwrap_or_default()).parse()?;
    let primary = node_group
        .node_group_members()
        .iter()
        .find(|m| m.current_role() == Some("primary"))
        .and_then(|m| m.cache_cluster_id())
        .context("primary member")?;
    Ok(Some((address, primary.to_string())))
}

pub(crate) async fn wait_available(client: &Client, id: &str) -> anyhow::Result<(SocketAddr, String)> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = describe_endpoints(client, id).await? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("{id} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The reader endpoint of group `id`.
pub(crate) async fn reader_endpoint(client: &Client, id: &str) -> anyhow::Result<SocketAddr> {
    let out = client.describe_replication_groups().replication_group_id(id).send().await?;
    let endpoint = out
        .replication_groups()
        .first()
        .and_then(|g| g.node_groups().first())
        .and_then(|n| n.reader_endpoint())
        .context("reader endpoint")?;
    Ok(format!("{}:{}", endpoint.address().context("address")?, endpoint.port().context("port")?).parse()?)
}

/// A group of `clusters` nodes with automatic failover and Multi-AZ.
pub(crate) async fn create(client: &Client, id: &str, clusters: i32) -> anyhow::Result<()> {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("bench")
        .num_cache_clusters(clusters)
        .cache_node_type("cache.t3.micro")
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .context("create replication group")?;
    Ok(())
}

pub(crate) async fn delete(client: &Client, id: &str) -> anyhow::Result<()> {
    client.delete_replication_group().replication_group_id(id).send().await?;
    let deadline = Instant::now() + DEADLINE;
    while client.describe_replication_groups().replication_group_id(id).send().await.is_ok() {
        if Instant::now() > deadline {
            bail!("{id} not deleted in time");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Kills the primary and returns the time to the first successful write through `endpoint`.
async fn fail_over(admin: SocketAddr, endpoint: SocketAddr, primary: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    admin_post(admin, &format!("/_emulator/nodes/{primary}/0001/kill")).await?;
    loop {
        if let Ok(mut redis) = connect(endpoint).await
            && redis.set("failover-probe", "1").await.is_ok()
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > DEADLINE {
            bail!("no write succeeded after the failover");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Writes keys through `endpoint` until `stop`, reconnecting on errors; returns the keys
/// whose write was acknowledged (by a replica too, with `wait`).
async fn write_load(endpoint: SocketAddr, wait: bool, stop: tokio::sync::watch::Receiver<bool>) -> Vec<u64> {
    let mut acknowledged = Vec::new();
    let mut connection: Option<RedisClient> = None;
    let mut i = 0u64;
    while !*stop.borrow() {
        if connection.is_none() {
            connection = connect(endpoint).await.ok();
            if connection.is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        let Some(redis) = connection.as_mut() else { continue };
        i += 1;
        let key = format!("load:{i}");
        let ok = match redis.set(&key, "x").await {
            Ok(()) => !wait || matches!(redis.command(&["WAIT", "1", "100"]).await, Ok(Resp::Integer(n)) if n >= 1),
            Err(_) => {
                connection = None;
                false
            }
        };
        if ok {
            acknowledged.push(i);
        }
    }
    acknowledged
}

async fn lost_writes(client: &Client, admin: SocketAddr, id: &str, wait: bool) -> anyhow::Result<(usize, usize)> {
    create(client, id, 3).await?;
    let (endpoint, primary) = wait_available(client, id).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_load(endpoint, wait, stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;
    fail_over(admin, endpoint, &primary).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(true);
    let acknowledged = writer.await?;
    let mut redis = connect(endpoint).await?;
    let mut lost = 0;
    for i in &acknowledged {
        if redis.get(&format!("load:{i}")).await?.as_deref() != Some("x") {
            lost += 1;
        }
    }
    delete(client, id).await?;
    Ok((lost, acknowledged.len()))
}

/// CreateReplicationGroup of one node at `engine` `version` → `PING` answered through the
/// primary endpoint.
async fn create_to_connectable(client: &Client, engine: &str, version: &str) -> anyhow::Result<Duration> {
    let id = format!("bench-{engine}");
    let started = Instant::now();
    client
        .create_replication_group()
        .replication_group_id(&id)
        .replication_group_description("bench")
        .engine(engine)
        .engine_version(version)
        .num_cache_clusters(1)
        .cache_node_type("cache.t3.micro")
        .send()
        .await
        .context("create replication group")?;
    let (endpoint, _) = wait_available(client, &id).await?;
    connect(endpoint).await?.ping().await?;
    let elapsed = started.elapsed();
    delete(client, &id).await?;
    Ok(elapsed)
}

async fn engines_compared(client: &Client, admin: SocketAddr) -> anyhow::Result<()> {
    let (_, health) = e2e::raw_get(admin, "/_emulator/health").await?;
    let health: serde_json::Value = serde_json::from_str(&health)?;
    for (engine, version) in [("redis", "7.0"), ("valkey", "8.0")] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            times.push(create_to_connectable(client, engine, version).await?);
        }
        let binary = &health["engines"][engine];
        println!(
            "CreateReplicationGroup ({engine} {version}, 1 node) -> connectable: median {:.1} ms ({RUNS} runs; {} {})",
            ms(median(&mut times)),
            binary["binary"].as_str().unwrap_or("?"),
            binary["version"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

pub async fn run(client: &Client, admin: SocketAddr) -> anyhow::Result<()> {
    engines_compared(client, admin).await?;
    let mut creates = Vec::new();
    let mut failovers = Vec::new();
    for run in 0..RUNS {
        let id = format!("bench-rg-{run}");
        let started = Instant::now();
        create(client, &id, 3).await?;
        let (endpoint, primary) = wait_available(client, &id).await?;
        creates.push(started.elapsed());
        failovers.push(fail_over(admin, endpoint, &primary).await?);
        delete(client, &id).await?;
    }
    println!(
        "CreateReplicationGroup (1 primary + 2 replicas) -> available: median {:.1} ms ({RUNS} runs)",
        ms(median(&mut creates))
    );
    let max = failovers.iter().max().copied().unwrap_or_default();
    println!(
        "failover (kill -9 of the primary -> first successful write through the primary endpoint): median {:.1} ms, max {:.1} ms ({RUNS} runs)",
        ms(median(&mut failovers)),
        ms(max)
    );
    for wait in [false, true] {
        let (lost, acknowledged) =
            lost_writes(client, admin, if wait { "bench-lost-wait" } else { "bench-lost" }, wait).await?;
        println!(
            "acknowledged writes lost across a failover under steady load{}: {lost} of {acknowledged}",
            if wait { " (each write followed by WAIT 1)" } else { "" }
        );
    }
    Ok(())
}
