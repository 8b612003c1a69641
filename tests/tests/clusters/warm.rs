//! Warm standalone nodes: a new cluster, or a new group's primary, with the default
//! parameter group runs on a node the emulator started ahead of need (no start on the
//! create's path), sized for its node type, kept in its own directory across a restart.

use std::collections::BTreeSet;

use e2e::{TestServer, admin, wait_group_available, warm_pids};

use crate::parameters::create_lfu_group;
use crate::*;

/// The pid and port the admin API gives the node of `cluster`.
async fn process_of(server: &TestServer, cluster: &str) -> (u64, u16) {
    let node = admin_node(server, cluster, "0001").await;
    let port = node["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    node["pid"].as_u64().zip(port).unwrap_or_else(|| panic!("pid and port in {node}"))
}

#[tokio::test]
async fn a_new_cluster_starts_on_the_warm_standalone_node_and_keeps_its_data_across_a_restart() {
    let server = TestServer::start().await;
    let client = server.client();
    let warm = warm_pids(&server, "redis", false, 2).await;
    let (_, health) = admin(&server, "GET", "/_emulator/health").await;
    // Cluster-enabled: the default three redis, one valkey; standalone: two of each.
    assert_eq!(health["warm_nodes_wanted"], server::DEFAULT_WARM_NODES + 1 + 2 * 2, "{health}");

    create_redis(&client, "quick", "cache.t3.micro", None).await;
    let node = nodes(&wait_cluster_available(&client, "quick").await).remove(0);
    // A second create right after the first still finds a warm node.
    create_redis(&client, "next", "cache.t3.micro", None).await;
    wait_cluster_available(&client, "next").await;
    let served: BTreeSet<u64> = [process_of(&server, "quick").await.0, process_of(&server, "next").await.0].into();
    assert_eq!(served, warm, "the warm nodes serve both clusters");
    let mut redis = wait_redis(node.port).await;
    assert_eq!(redis.config_get("maxmemory").await.unwrap().as_deref(), Some("536870912"), "cache.t3.micro's");
    redis.set("kept", "yes").await.unwrap();
    let refilled = warm_pids(&server, "redis", false, 2).await;
    assert!(refilled.is_disjoint(&warm), "the pool holds new nodes");

    // A cluster of another parameter group starts a node of its own, on its parameters.
    create_lfu_group(&client).await;
    create_redis(&client, "own", "cache.t3.micro", Some("lfu")).await;
    wait_cluster_available(&client, "own").await;
    assert!(!refilled.contains(&process_of(&server, "own").await.0), "a node of its own");
    assert_eq!(warm_pids(&server, "redis", false, 2).await, refilled, "the warm nodes stay idle");

    let state = server.stop().await;
    let server = TestServer::start_in(state).await;
    let client = server.client();
    let after = nodes(&wait_cluster_available(&client, "quick").await).remove(0);
    assert_eq!(after.port, node.port, "same endpoint");
    // Answering PING, the node has loaded its data.
    let mut redis = wait_redis(after.port).await;
    assert_eq!(redis.get("kept").await.unwrap().as_deref(), Some("yes"), "the key back after the restart");
}

#[tokio::test]
async fn a_new_group_starts_its_primary_on_the_warm_standalone_node_and_its_replica_cold() {
    let server = TestServer::start().await;
    let client = server.client();
    let warm = warm_pids(&server, "valkey", false, 2).await;
    client
        .create_replication_group()
        .replication_group_id("pair")
        .replication_group_description("pair")
        .engine("valkey")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .send()
        .await
        .unwrap();
    wait_group_available(&client, "pair").await;
    assert!(warm.contains(&process_of(&server, "pair-001").await.0), "the warm node {warm:?} is the primary");
    assert!(!warm.contains(&process_of(&server, "pair-002").await.0), "the replica starts as a replica");
    // The pool still held a node, so it refills once the create is done.
    let refilled = warm_pids(&server, "valkey", false, 2).await;
    assert_eq!(refilled.intersection(&warm).count(), 1, "one kept, one new: {warm:?} then {refilled:?}");
    // The replica follows the handed-over primary.
    wait_redis(process_of(&server, "pair-001").await.1).await.set("followed", "yes").await.unwrap();
    let replica = process_of(&server, "pair-002").await.1;
    poll_until("the write on the replica", SETTLE, || async {
        let mut redis = e2e::RedisClient::connect("127.0.0.1", replica).await.map_err(|e| e.to_string())?;
        let value = redis.get("followed").await.map_err(|e| e.to_string())?;
        if value.as_deref() == Some("yes") { Ok(()) } else { Err(format!("{value:?}")) }
    })
    .await;
}
