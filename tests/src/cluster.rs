//! A cluster-aware Redis client (the `redis` crate's async cluster client, as applications
//! use it) bootstrapped from a replication group's configuration endpoint, and the helpers
//! the cluster-mode tests and benchmarks share: write and check many keys.

use std::time::Duration;

use anyhow::Context;
use redis::AsyncCommands;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// Connects through `127.0.0.1:port` (the configuration endpoint): the client asks it for
/// the slot map, then talks to every shard directly and follows MOVED / ASK.
pub async fn cluster_connection(port: u16) -> anyhow::Result<ClusterConnection> {
    let client = ClusterClient::builder(vec![format!("redis://127.0.0.1:{port}/")])
        .retries(20)
        .min_retry_wait(20)
        .max_retry_wait(500)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .build()
        .context("cluster client")?;
    client.get_async_connection().await.context("connecting to the configuration endpoint")
}

pub fn key(i: usize) -> String {
    format!("key:{i}")
}

pub fn value(i: usize) -> String {
    format!("value-{i}")
}

/// Writes `key(i) = value(i)` for every i in `range`.
pub async fn write_keys(con: &mut ClusterConnection, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    for i in range {
        let () = con.set(key(i), value(i)).await.with_context(|| format!("SET {}", key(i)))?;
    }
    Ok(())
}

/// The keys of `range` that do not read back as written.
pub async fn missing_keys(con: &mut ClusterConnection, range: std::ops::Range<usize>) -> Vec<String> {
    let mut missing = Vec::new();
    for i in range {
        let got: Result<Option<String>, _> = con.get(key(i)).await;
        if got.as_ref().ok().and_then(|v| v.as_deref()) != Some(value(i).as_str()) {
            missing.push(format!("{} = {got:?}", key(i)));
        }
    }
    missing
}

/// How many slots the node that answered `CLUSTER NODES` with `text` owns.
pub fn owned_slots(text: &str) -> usize {
    let nodes = nodes::cluster::parse_nodes(text);
    let myself = nodes.iter().find(|n| n.myself);
    myself.map_or(0, |n| n.slots.iter().map(|&(a, b)| usize::from(b - a) + 1).sum())
}
