//! What the replication tests share beyond the harness (`e2e`, re-exported here): replication
//! probes over RESP (writes, reads, roles, replica links), admin API actions on a group's
//! nodes, and replication-group helpers over the SDK.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{NodeGroupMember, ReplicationGroup};
use e2e::TestServer;
pub use e2e::{
    RedisClient, Resp, SETTLE, admin, admin_node, admin_nodes, describe_group, events_of, kill_9, poll_until,
    process_alive, wait_cluster_gone, wait_event, wait_group_available, wait_group_gone, wait_refuses,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// RESP

/// Polls until `SET key value` through `port` (a fresh connection each try) succeeds.
pub async fn wait_write(port: u16, key: &str, value: &str) {
    poll_until(&format!("SET {key} through port {port}"), SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        r.set(key, value).await.map_err(|e| e.to_string())
    })
    .await
}

/// Polls until `GET key` through `port` answers `value`.
pub async fn wait_read(port: u16, key: &str, value: &str) {
    poll_until(&format!("GET {key} = {value:?} through port {port}"), SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        match r.get(key).await.map_err(|e| e.to_string())? {
            Some(v) if v == value => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Polls until `ROLE` on `port` answers `role` ("master" / "slave").
pub async fn wait_role(port: u16, role: &str) {
    poll_until(&format!("ROLE {role} on port {port}"), SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let seen = r.role().await.map_err(|e| e.to_string())?;
        if seen == role { Ok(()) } else { Err(seen) }
    })
    .await
}

/// Polls until a replica on `port` has its link to the primary up.
pub async fn wait_link_up(port: u16) {
    poll_until(&format!("replica on {port} with master_link_status:up"), SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let info = r.info("replication").await.map_err(|e| e.to_string())?;
        if info.get("role").map(String::as_str) == Some("slave")
            && info.get("master_link_status").map(String::as_str) == Some("up")
        {
            Ok(())
        } else {
            Err(format!("{info:?}"))
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Admin API

pub fn pid_of(entry: &Value) -> u64 {
    entry["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {entry}"))
}

pub async fn admin_action(server: &TestServer, cluster: &str, action: &str) {
    let path = format!("/_emulator/nodes/{cluster}/0001/{action}");
    let (status, body) = admin(server, "POST", &path).await;
    assert_eq!(status, 200, "POST {path}: {body}");
}

pub async fn outage(server: &TestServer, zone: &str, start: bool) {
    let method = if start { "POST" } else { "DELETE" };
    let path = format!("/_emulator/zones/{zone}/outage");
    let (status, body) = admin(server, method, &path).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
}

/// Polls until the admin API shows `cluster` healthy with role `role`.
pub async fn wait_admin(server: &TestServer, cluster: &str, role: &str) -> Value {
    poll_until(&format!("{cluster} healthy as {role} in /_emulator/nodes"), SETTLE, || async {
        let entry = admin_node(server, cluster, "0001").await;
        if entry["health"] == "healthy" && entry["role"] == role && entry["pid"].as_u64().is_some_and(process_alive) {
            Ok(entry)
        } else {
            Err(entry.to_string())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Replication groups

/// CreateReplicationGroup (redis 7.1, cache.t3.micro) with `members` clusters.
pub async fn create(client: &Client, id: &str, members: i32, failover: bool, multi_az: bool) -> ReplicationGroup {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description(format!("group {id}"))
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(members)
        .automatic_failover_enabled(failover)
        .multi_az_enabled(multi_az)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id}: {e:?}"))
        .replication_group
        .expect("CreateReplicationGroup returned no ReplicationGroup")
}

pub fn members(g: &ReplicationGroup) -> &[NodeGroupMember] {
    assert_eq!(g.node_groups().len(), 1, "one node group: {g:?}");
    g.node_groups()[0].node_group_members()
}

/// The primary's cache cluster id as Describe lists it (first member, role primary).
pub fn primary_id(g: &ReplicationGroup) -> String {
    let first = &members(g)[0];
    assert_eq!(first.current_role(), Some("primary"), "primary listed first: {g:?}");
    let primaries = members(g).iter().filter(|m| m.current_role() == Some("primary")).count();
    assert_eq!(primaries, 1, "exactly one primary: {g:?}");
    first.cache_cluster_id().unwrap_or_default().to_string()
}

pub fn member<'a>(g: &'a ReplicationGroup, cluster: &str) -> &'a NodeGroupMember {
    members(g)
        .iter()
        .find(|m| m.cache_cluster_id() == Some(cluster))
        .unwrap_or_else(|| panic!("no member {cluster} in {g:?}"))
}

pub fn member_port(m: &NodeGroupMember) -> u16 {
    let port = m.read_endpoint().and_then(|e| e.port()).unwrap_or_else(|| panic!("no ReadEndpoint port: {m:?}"));
    u16::try_from(port).expect("port in range")
}

pub fn primary_port(g: &ReplicationGroup) -> u16 {
    let e = g.node_groups()[0].primary_endpoint().unwrap_or_else(|| panic!("no PrimaryEndpoint: {g:?}"));
    assert_eq!(e.address(), Some("127.0.0.1"), "{g:?}");
    u16::try_from(e.port().expect("PrimaryEndpoint port")).expect("port")
}

pub fn reader_port(g: &ReplicationGroup) -> u16 {
    let e = g.node_groups()[0].reader_endpoint().unwrap_or_else(|| panic!("no ReaderEndpoint: {g:?}"));
    assert_eq!(e.address(), Some("127.0.0.1"), "{g:?}");
    u16::try_from(e.port().expect("ReaderEndpoint port")).expect("port")
}

/// Polls until Describe shows a primary other than `old` (and the group available again).
pub async fn wait_new_primary(client: &Client, id: &str, old: &str) -> ReplicationGroup {
    poll_until(&format!("{id} failed over away from {old}"), SETTLE, || async {
        let g = describe_group(client, id).await;
        let first = members(&g).first().and_then(|m| m.cache_cluster_id()).unwrap_or_default().to_string();
        let roles: Vec<_> = members(&g).iter().map(|m| (m.cache_cluster_id(), m.current_role())).collect();
        if first != old && g.status() == Some("available") {
            Ok(g)
        } else {
            Err(format!("status {:?} members {roles:?}", g.status()))
        }
    })
    .await
}

pub fn failover_event(old: &str, new: &str) -> String {
    format!("Failover from primary node {old} to replica node {new} completed")
}

/// Every replication group and cache cluster the server lists (ids).
pub async fn everything(client: &Client) -> (Vec<String>, Vec<String>) {
    let groups = client.describe_replication_groups().send().await.expect("DescribeReplicationGroups");
    let clusters = client.describe_cache_clusters().send().await.expect("DescribeCacheClusters");
    (
        groups.replication_groups().iter().filter_map(|g| g.replication_group_id().map(str::to_string)).collect(),
        clusters.cache_clusters().iter().filter_map(|c| c.cache_cluster_id().map(str::to_string)).collect(),
    )
}
