//! Cache clusters on real nodes: each test starts its own server (own state directory), drives
//! it through `aws-sdk-elasticache`, and talks to the redis-server / memcached processes it
//! starts over plain TCP. One test binary keeps linking cheap.

mod errors;
mod events;
mod lifecycle;
mod node_types;
mod parameters;
mod pending;
mod restart;
mod self_healing;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{AzMode, CacheCluster, SourceType};
use e2e::{MemcachedClient, RedisClient, TestServer, poll_until};
use serde_json::Value;

/// How long a cluster may take to settle; node starts take milliseconds, so this only bounds
/// a broken run.
pub const SETTLE: Duration = Duration::from_secs(30);

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

/// DescribeCacheClusters(id, ShowCacheNodeInfo) → the one cluster.
pub async fn describe(client: &Client, id: &str) -> CacheCluster {
    let out = client
        .describe_cache_clusters()
        .cache_cluster_id(id)
        .show_cache_node_info(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeCacheClusters {id}: {e:?}"));
    assert_eq!(out.cache_clusters().len(), 1, "one cluster for {id}: {out:?}");
    out.cache_clusters()[0].clone()
}

/// Polls until the cluster is `available` (and every node too).
pub async fn wait_available(client: &Client, id: &str) -> CacheCluster {
    poll_until(&format!("{id} available"), SETTLE, || async {
        let c = describe(client, id).await;
        let nodes_ok = !c.cache_nodes().is_empty()
            && c.cache_nodes().iter().all(|n| n.cache_node_status() == Some("available") && n.endpoint().is_some());
        if c.cache_cluster_status() == Some("available") && nodes_ok {
            Ok(c)
        } else {
            Err(format!("{:?} nodes {:?}", c.cache_cluster_status(), c.cache_nodes()))
        }
    })
    .await
}

/// Polls until DescribeCacheClusters(id) answers CacheClusterNotFound.
pub async fn wait_gone(client: &Client, id: &str) {
    poll_until(&format!("{id} deleted"), SETTLE, || async {
        match client.describe_cache_clusters().cache_cluster_id(id).send().await {
            Ok(out) => Err(format!("{:?}", out.cache_clusters().first().and_then(|c| c.cache_cluster_status()))),
            Err(e) => {
                let error = e_code(e);
                if error.0 == "CacheClusterNotFound" && error.1 == 404 {
                    Ok(())
                } else {
                    panic!("describing a deleted cluster: {error:?}")
                }
            }
        }
    })
    .await
}

fn e_code<E: aws_sdk_elasticache::error::ProvideErrorMetadata>(
    e: aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>,
) -> (String, u16) {
    use aws_sdk_elasticache::error::ProvideErrorMetadata;
    (e.code().unwrap_or_default().to_string(), e.raw_response().map_or(0, |r| r.status().as_u16()))
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
    wait_gone(client, id).await;
}

/// Every cache-cluster event of `id` in the last hour (all pages), oldest first.
pub async fn events_of(client: &Client, id: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_events()
            .source_type(SourceType::CacheCluster)
            .source_identifier(id)
            .duration(60)
            .set_marker(marker)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeEvents {id}: {e:?}"));
        all.extend(out.events().iter().cloned());
        marker = out.marker;
        if marker.is_none() {
            break;
        }
    }
    all.sort_by_key(|e| e.date().map(|d| (d.secs(), d.subsec_nanos())));
    all.into_iter().map(|e| e.message().unwrap_or_default().to_string()).collect()
}

/// Polls until the events of `id` include every message of `expected` (at least as often).
pub async fn wait_events(client: &Client, id: &str, expected: &[&str]) -> Vec<String> {
    poll_until(&format!("events {expected:?} of {id}"), SETTLE, || async {
        let events = events_of(client, id).await;
        let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
        for e in expected {
            *wanted.entry(e).or_default() += 1;
        }
        let missing = wanted.iter().any(|(m, n)| events.iter().filter(|e| e == m).count() < *n);
        if missing { Err(format!("{events:?}")) } else { Ok(events) }
    })
    .await
}

/// `GET /_emulator/nodes`.
pub async fn admin_nodes(server: &TestServer) -> Vec<Value> {
    let (status, body) = e2e::raw_get(server.addr(), "/_emulator/nodes").await.expect("GET /_emulator/nodes");
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("JSON ({e}): {body}"));
    value.as_array().unwrap_or_else(|| panic!("array expected: {body}")).clone()
}

/// The admin view of one node.
pub async fn admin_node(server: &TestServer, cluster: &str, node: &str) -> Value {
    admin_nodes(server)
        .await
        .into_iter()
        .find(|n| n["cache_cluster_id"] == cluster && n["cache_node_id"] == node)
        .unwrap_or_else(|| panic!("no admin entry for {cluster}/{node}"))
}

pub async fn admin_post(server: &TestServer, path: &str) -> (u16, Value) {
    let (status, body) = e2e::raw_post(server.addr(), path).await.unwrap_or_else(|e| panic!("POST {path}: {e:?}"));
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

/// Polls until a redis node on `port` answers PING.
pub async fn wait_redis(port: u16) -> RedisClient {
    poll_until(&format!("redis on port {port} answering PING"), SETTLE, || async {
        let mut client = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        client.ping().await.map_err(|e| e.to_string())?;
        Ok(client)
    })
    .await
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

/// The pid of a process, if it is alive (not a zombie).
pub fn process_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
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
