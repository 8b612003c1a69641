//! Cluster-mode figures: CreateReplicationGroup with 3 shards × 2 replicas (9 nodes) →
//! `available`, and resharding 3 → 4 shards holding 100,000 keys (time until `available`
//! again, and keys that do not read back afterwards), through the redis crate's cluster
//! client bootstrapped from the configuration endpoint.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::ReplicationGroup;
use e2e::cluster::{cluster_connection, missing_keys, write_keys};

use crate::replication::delete;
use crate::{median, ms};

const RUNS: usize = 5;
const KEYS: usize = 100_000;
/// Concurrent writers and readers over one multiplexed cluster connection.
const WORKERS: usize = 16;
const DEADLINE: Duration = Duration::from_secs(300);

async fn wait_available(client: &Client, id: &str) -> anyhow::Result<ReplicationGroup> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = client.describe_replication_groups().replication_group_id(id).send().await?;
        let group = out.replication_groups().first().context("described")?;
        if group.status() == Some("available") {
            return Ok(group.clone());
        }
        if Instant::now() > deadline {
            bail!("{id} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn create(client: &Client, id: &str, shards: i32, replicas: i32) -> anyhow::Result<()> {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("bench")
        .cache_node_type("cache.t3.micro")
        .num_node_groups(shards)
        .replicas_per_node_group(replicas)
        .send()
        .await
        .context("create replication group")?;
    Ok(())
}

/// Runs `job` over `0..KEYS` split among WORKERS tasks sharing one cluster connection.
async fn in_parallel<F, Fut, T>(port: u16, job: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(redis::cluster_async::ClusterConnection, std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let connection = cluster_connection(port).await?;
    let per = KEYS.div_ceil(WORKERS);
    let tasks: Vec<_> =
        (0..WORKERS).map(|w| tokio::spawn(job(connection.clone(), w * per..((w + 1) * per).min(KEYS)))).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await?);
    }
    Ok(out)
}

pub async fn run(client: &Client) -> anyhow::Result<()> {
    let mut creates = Vec::new();
    for run in 0..RUNS {
        let id = format!("bench-cm-{run}");
        let started = Instant::now();
        create(client, &id, 3, 2).await?;
        wait_available(client, &id).await?;
        creates.push(started.elapsed());
        delete(client, &id).await?;
    }
    println!(
        "CreateReplicationGroup cluster mode, 3 shards x 2 replicas (9 nodes) -> available: median {:.1} ms ({RUNS} runs)",
        ms(median(&mut creates))
    );

    create(client, "bench-reshard", 3, 1).await?;
    let group = wait_available(client, "bench-reshard").await?;
    let port = group.configuration_endpoint().and_then(|e| e.port()).context("configuration endpoint")? as u16;
    for result in in_parallel(port, |mut c, range| async move { write_keys(&mut c, range).await }).await? {
        result?;
    }
    let started = Instant::now();
    client
        .modify_replication_group_shard_configuration()
        .replication_group_id("bench-reshard")
        .node_group_count(4)
        .apply_immediately(true)
        .send()
        .await
        .context("reshard")?;
    wait_available(client, "bench-reshard").await?;
    let took = started.elapsed();
    let lost: usize = in_parallel(port, |mut c, range| async move { missing_keys(&mut c, range).await.len() })
        .await?
        .into_iter()
        .sum();
    println!(
        "resharding 3 -> 4 shards (1 replica each) holding {KEYS} keys: {:.0} ms until available; keys lost: {lost} of {KEYS}",
        ms(took)
    );
    delete(client, "bench-reshard").await
}
