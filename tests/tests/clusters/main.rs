//! Cache clusters on real nodes: each test starts its own server (own state directory), drives
//! it through `aws-sdk-elasticache`, and talks to the redis-server / memcached processes it
//! starts over plain TCP. One test binary keeps linking cheap.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod errors;
mod events;
mod incompatible;
mod lifecycle;
mod memcached_tls;
mod node_types;
mod parameters;
mod pending;
mod races;
mod restart;
mod self_healing;
mod warm;

use aws_sdk_elasticache::Client;
pub use aws_sdk_elasticache::types::SourceType;
use aws_sdk_elasticache::types::{AzMode, CacheCluster};
use e2e::MemcachedClient;
pub use e2e::{
    SETTLE, admin_node, admin_nodes, admin_post, describe_cluster, kill_9, poll_until, process_alive,
    wait_cluster_available, wait_cluster_gone, wait_events, wait_redis,
};

/// A node as Describe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    pub status: String,
    pub address: String,
    pub port: u16,
    pub zone: String,
}

/// The cache nodes of a cluster described with ShowCacheNodeInfo, by id.
pub fn nodes(c: &CacheCluster) -> Vec<NodeView> {
    let mut out: Vec<NodeView> = c
        .cache_nodes()
        .iter()
        .map(|n| {
            let endpoint = n.endpoint().unwrap_or_else(|| panic!("node without Endpoint: {n:?}"));
            NodeView {
                id: n.cache_node_id().unwrap_or_default().to_string(),
                status: n.cache_node_status().unwrap_or_default().to_string(),
                address: endpoint.address().unwrap_or_default().to_string(),
                port: u16::try_from(endpoint.port().unwrap_or_default()).expect("port in range"),
                zone: n.customer_availability_zone().unwrap_or_default().to_string(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

pub fn ids(c: &CacheCluster) -> Vec<String> {
    nodes(c).into_iter().map(|n| n.id).collect()
}

pub async fn create_memcached(client: &Client, id: &str, count: i32, cross_az: bool) -> CacheCluster {
    client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine("memcached")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(count)
        .set_az_mode(cross_az.then_some(AzMode::CrossAz))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating memcached cluster {id}: {e:?}"))
        .cache_cluster
        .expect("CreateCacheCluster returned no CacheCluster")
}

pub async fn create_redis(client: &Client, id: &str, node_type: &str, group: Option<&str>) -> CacheCluster {
    client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type(node_type)
        .num_cache_nodes(1)
        .set_cache_parameter_group_name(group.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating redis cluster {id}: {e:?}"))
        .cache_cluster
        .expect("CreateCacheCluster returned no CacheCluster")
}

/// Deletes an available cluster and waits until it is gone.
pub async fn delete(client: &Client, id: &str) {
    let out = client
        .delete_cache_cluster()
        .cache_cluster_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteCacheCluster {id}: {e:?}"));
    assert_eq!(out.cache_cluster().and_then(|c| c.cache_cluster_status()), Some("deleting"));
    wait_cluster_gone(client, id).await;
}

/// Polls until a memcached node on `port` answers `version`.
pub async fn wait_memcached(port: u16) -> MemcachedClient {
    poll_until(&format!("memcached on port {port} answering version"), SETTLE, || async {
        let mut client = MemcachedClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let version = client.version().await.map_err(|e| e.to_string())?;
        if version.starts_with("VERSION ") { Ok(client) } else { Err(version) }
    })
    .await
}

/// ElastiCache's `config get cluster` reply for `version` and `nodes` (host = the node's
/// endpoint address, as Describe shows it).
pub fn config_reply(version: u64, nodes: &[NodeView]) -> Vec<u8> {
    let list: Vec<String> = nodes.iter().map(|n| format!("{}|{}|{}", n.address, n.address, n.port)).collect();
    let body = format!("{version}\n{}\n", list.join(" "));
    format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len()).into_bytes()
}

/// The version in a `config get cluster` reply.
pub fn config_version(reply: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(reply);
    let second_line = text.split("\r\n").nth(1).unwrap_or_default();
    second_line
        .split('\n')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in config reply {text:?}"))
}

/// Polls the configuration endpoint until it lists exactly `nodes`; returns its version.
pub async fn wait_config(port: u16, nodes: &[NodeView]) -> u64 {
    poll_until(&format!("config endpoint {port} listing {nodes:?}"), SETTLE, || async {
        let mut client = MemcachedClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let reply = client.config_get_cluster().await.map_err(|e| e.to_string())?;
        let version = config_version(&reply);
        if reply == config_reply(version, nodes) {
            Ok(version)
        } else {
            Err(format!(
                "{:?} (expected {:?})",
                String::from_utf8_lossy(&reply),
                String::from_utf8_lossy(&config_reply(version, nodes))
            ))
        }
    })
    .await
}

/// Every path under `dir` (recursively) whose file name is `name`.
pub fn paths_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if path.is_dir() {
            found.extend(paths_named(&path, name));
        }
    }
    found
}

/// The installed redis-server behind a shell script in `dir` that first runs `before`
/// (which may exit to refuse the start, or wait).
pub fn redis_behind(dir: &std::path::Path, before: &str) -> nodes::Binary {
    use std::os::unix::fs::PermissionsExt as _;
    let redis = nodes::Engines::detect().binary(nodes::EngineKind::Redis).expect("redis-server installed").clone();
    let script = dir.join("redis-server");
    std::fs::write(&script, format!("#!/bin/sh\n{before}\nexec '{}' \"$@\"\n", redis.path.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    nodes::Binary { path: script, version: redis.version }
}
