//! Snapshots on real redis-server nodes: CreateSnapshot from clusters and replication groups
//! (RDB files under the state directory), restore into new clusters and groups, copy, export
//! to a local "bucket", delete, final snapshots, automated snapshots with retention,
//! durability of keys across a clean emulator restart, and at-rest encryption of the files.
//! Each test starts its own server and drives it through `aws-sdk-elasticache`, RESP over TCP
//! and the admin API.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod at_rest;
mod automated;
mod cluster_mode;
mod copy_export;
mod delete;
mod describe;
mod durability;
mod errors;
mod failures;
mod restore;

use std::path::{Path, PathBuf};

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{CacheCluster, ReplicationGroup, Snapshot};
use e2e::{ACCOUNT, REGION, RedisClient, Resp, TestServer, wait_not_found};
pub use e2e::{
    SETTLE, admin_nodes, admin_post, describe_cluster, describe_group, events_of, poll_until, wait_cluster_available,
    wait_cluster_gone, wait_event, wait_group_available, wait_group_gone, wait_redis,
};

/// How many keys the data-carrying tests write.
pub const KEYS: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Data

pub fn key(i: usize) -> String {
    format!("key:{i:04}")
}

/// A value that differs per key and per data set, long enough that the RDB is not trivial.
pub fn value(tag: &str, i: usize) -> String {
    format!("{tag}-value-{i}-{}", "x".repeat(i % 37))
}

/// Writes [`KEYS`] keys tagged `tag` with one MSET.
pub async fn write_keys(redis: &mut RedisClient, tag: &str) {
    let pairs: Vec<(String, String)> = (0..KEYS).map(|i| (key(i), value(tag, i))).collect();
    let mut args: Vec<&str> = vec!["MSET"];
    for (k, v) in &pairs {
        args.push(k);
        args.push(v);
    }
    match redis.command(&args).await.expect("MSET") {
        Resp::Simple(s) if s == "OK" => {}
        other => panic!("MSET answered {other:?}"),
    }
}

/// `None` when the node holds exactly the [`KEYS`] keys tagged `tag`, else what differs.
pub async fn check_keys(redis: &mut RedisClient, tag: &str) -> Result<(), String> {
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let mut args: Vec<&str> = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    let reply = redis.command(&args).await.map_err(|e| e.to_string())?;
    let Resp::Array(Some(items)) = reply else { return Err(format!("MGET answered {reply:?}")) };
    if items.len() != KEYS {
        return Err(format!("MGET answered {} items", items.len()));
    }
    let wrong: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(i, item)| **item != Resp::Bulk(Some(value(tag, *i).into_bytes())))
        .map(|(i, _)| i)
        .collect();
    if !wrong.is_empty() {
        return Err(format!(
            "{} of {KEYS} keys wrong or missing, first {:?}: {:?}",
            wrong.len(),
            key(wrong[0]),
            items[wrong[0]]
        ));
    }
    match redis.command(&["DBSIZE"]).await.map_err(|e| e.to_string())? {
        Resp::Integer(n) if n as usize == KEYS => Ok(()),
        other => Err(format!("DBSIZE answered {other:?}, expected {KEYS}")),
    }
}

/// Polls until the node on `port` holds exactly the keys tagged `tag` (a replica may still be
/// syncing, a restored node still loading).
pub async fn wait_keys(port: u16, tag: &str) {
    poll_until(&format!("{KEYS} keys tagged {tag:?} on port {port}"), SETTLE, || async {
        let mut client = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        check_keys(&mut client, tag).await
    })
    .await
}

/// `DBSIZE` on the node at `port`.
pub async fn dbsize(port: u16) -> i64 {
    let mut redis = wait_redis(port).await;
    match redis.command(&["DBSIZE"]).await.expect("DBSIZE") {
        Resp::Integer(n) => n,
        other => panic!("DBSIZE answered {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Clusters

pub async fn create_redis(client: &Client, id: &str, snapshot: Option<&str>) -> CacheCluster {
    client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .set_snapshot_name(snapshot.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating redis cluster {id}: {e:?}"))
        .cache_cluster
        .expect("CreateCacheCluster returned no CacheCluster")
}

pub async fn create_memcached(client: &Client, id: &str) -> CacheCluster {
    client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine("memcached")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating memcached cluster {id}: {e:?}"))
        .cache_cluster
        .expect("CreateCacheCluster returned no CacheCluster")
}

/// The port of a single-node cluster's node.
pub fn node_port(c: &CacheCluster) -> u16 {
    let port = c.cache_nodes()[0].endpoint().and_then(|e| e.port()).unwrap_or_else(|| panic!("no node port: {c:?}"));
    u16::try_from(port).expect("port in range")
}

/// Creates a redis cluster, waits for it and writes [`KEYS`] keys tagged `tag`; returns the
/// node's port.
pub async fn redis_with_keys(client: &Client, id: &str, tag: &str) -> u16 {
    create_redis(client, id, None).await;
    let port = node_port(&wait_cluster_available(client, id).await);
    let mut redis = wait_redis(port).await;
    write_keys(&mut redis, tag).await;
    check_keys(&mut redis, tag).await.expect("keys just written");
    port
}

// ---------------------------------------------------------------------------------------------
// Replication groups

pub async fn create_group(client: &Client, id: &str, members: i32, snapshot: Option<&str>) -> ReplicationGroup {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description(format!("group {id}"))
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(members)
        .automatic_failover_enabled(members > 1)
        .set_snapshot_name(snapshot.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id}: {e:?}"))
        .replication_group
        .expect("CreateReplicationGroup returned no ReplicationGroup")
}

/// (cache cluster id, role, read-endpoint port) of every member.
pub fn group_members(g: &ReplicationGroup) -> Vec<(String, String, u16)> {
    assert_eq!(g.node_groups().len(), 1, "one node group: {g:?}");
    g.node_groups()[0]
        .node_group_members()
        .iter()
        .map(|m| {
            let port = m.read_endpoint().and_then(|e| e.port()).unwrap_or_else(|| panic!("no ReadEndpoint: {m:?}"));
            (
                m.cache_cluster_id().unwrap_or_default().to_string(),
                m.current_role().unwrap_or_default().to_string(),
                u16::try_from(port).expect("port in range"),
            )
        })
        .collect()
}

pub fn primary_of(g: &ReplicationGroup) -> (String, u16) {
    let primaries: Vec<_> = group_members(g).into_iter().filter(|m| m.1 == "primary").collect();
    assert_eq!(primaries.len(), 1, "exactly one primary: {g:?}");
    (primaries[0].0.clone(), primaries[0].2)
}

pub fn primary_endpoint_port(g: &ReplicationGroup) -> u16 {
    let e = g.node_groups()[0].primary_endpoint().unwrap_or_else(|| panic!("no PrimaryEndpoint: {g:?}"));
    u16::try_from(e.port().expect("PrimaryEndpoint port")).expect("port")
}

/// Creates a group of `members`, writes [`KEYS`] keys tagged `tag` through the primary and
/// waits until every replica holds them.
pub async fn group_with_keys(client: &Client, id: &str, members: i32, tag: &str) -> ReplicationGroup {
    create_group(client, id, members, None).await;
    let g = wait_group_available(client, id).await;
    let (_, port) = primary_of(&g);
    let mut redis = wait_redis(port).await;
    write_keys(&mut redis, tag).await;
    for (_, _, port) in group_members(&g) {
        wait_keys(port, tag).await;
    }
    g
}

// ---------------------------------------------------------------------------------------------
// Snapshots

pub async fn snapshot_of_cluster(client: &Client, name: &str, cluster: &str) -> Snapshot {
    client
        .create_snapshot()
        .snapshot_name(name)
        .cache_cluster_id(cluster)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSnapshot {name} of {cluster}: {e:?}"))
        .snapshot
        .expect("CreateSnapshot returned no Snapshot")
}

pub async fn snapshot_of_group(client: &Client, name: &str, group: &str) -> Snapshot {
    client
        .create_snapshot()
        .snapshot_name(name)
        .replication_group_id(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSnapshot {name} of {group}: {e:?}"))
        .snapshot
        .expect("CreateSnapshot returned no Snapshot")
}

pub async fn describe_snapshot(client: &Client, name: &str) -> Snapshot {
    let out = client
        .describe_snapshots()
        .snapshot_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeSnapshots {name}: {e:?}"));
    assert_eq!(out.snapshots().len(), 1, "one snapshot named {name}: {out:?}");
    out.snapshots()[0].clone()
}

/// Every snapshot of the region (all pages), by name.
pub async fn all_snapshots(client: &Client) -> Vec<Snapshot> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_snapshots()
            .set_marker(marker)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeSnapshots: {e:?}"));
        all.extend(out.snapshots().iter().cloned());
        marker = out.marker;
        if marker.is_none() {
            break;
        }
    }
    all.sort_by(|a, b| a.snapshot_name().cmp(&b.snapshot_name()));
    all
}

pub async fn snapshot_names(client: &Client) -> Vec<String> {
    all_snapshots(client).await.iter().map(|s| s.snapshot_name().unwrap_or_default().to_string()).collect()
}

/// Polls until the snapshot is `available`.
pub async fn wait_snapshot(client: &Client, name: &str) -> Snapshot {
    poll_until(&format!("snapshot {name} available"), SETTLE, || async {
        let s = describe_snapshot(client, name).await;
        if s.snapshot_status() == Some("available") { Ok(s) } else { Err(format!("{:?}", s.snapshot_status())) }
    })
    .await
}

/// Polls until DescribeSnapshots(name) answers SnapshotNotFoundFault (404).
pub async fn wait_snapshot_gone(client: &Client, name: &str) {
    wait_not_found(&format!("snapshot {name} gone"), "SnapshotNotFoundFault", || async {
        let out = client.describe_snapshots().snapshot_name(name).send().await?;
        Ok(format!("{:?}", out.snapshots().first().and_then(|s| s.snapshot_status())))
    })
    .await
}

pub fn snapshot_dir(server: &TestServer, name: &str) -> PathBuf {
    server.state_path().join("snapshots").join(REGION).join(ACCOUNT).join(name)
}

pub fn snapshot_file(server: &TestServer, name: &str) -> PathBuf {
    snapshot_dir(server, name).join("0001.rdb")
}

pub fn snapshot_arn(name: &str) -> String {
    format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:snapshot:{name}")
}

/// Asserts that `path` is a non-trivial RDB file (magic "REDIS" + version digits) and returns
/// its bytes.
#[track_caller]
pub fn assert_rdb(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        bytes.len() > 9 && bytes.starts_with(b"REDIS"),
        "{} is no RDB file: {:?}",
        path.display(),
        &bytes[..bytes.len().min(16)]
    );
    assert!(bytes[5..9].iter().all(u8::is_ascii_digit), "RDB version digits in {}: {:?}", path.display(), &bytes[..9]);
    bytes
}

// ---------------------------------------------------------------------------------------------
// Events and files

pub fn snapshot_event(name: &str, what: &str, id: &str) -> String {
    format!("Snapshot succeeded for snapshot with ID '{name}' of {what} with ID '{id}'")
}

/// Every file under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}
