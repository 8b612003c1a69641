//! Warm nodes: a new cluster-mode group's primaries are nodes the emulator started ahead of
//! need; they serve the group's keys, the pool fills up again, and they come back from
//! their own directories after an emulator restart.

use std::collections::BTreeSet;

use e2e::cluster::{cluster_connection, missing_keys, write_keys};
use e2e::{SETTLE, TestServer, admin, admin_nodes, poll_until, wait_group_available, warm_pids};

use crate::create;

#[tokio::test]
async fn new_primaries_come_from_the_warm_pool_and_keep_their_data_across_a_restart() {
    let server = TestServer::start().await;
    let client = server.client();
    let warm = warm_pids(&server, "redis", true, server::DEFAULT_WARM_NODES).await;

    let g = create(&client, "warm", 3, 1).await;
    let nodes = admin_nodes(&server).await;
    let primaries: BTreeSet<u64> =
        nodes.iter().filter(|n| n["role"] == "primary").filter_map(|n| n["pid"].as_u64()).collect();
    assert_eq!(primaries, warm, "each shard's primary is a warm node: {nodes:?}");
    let port = g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16;
    let mut con = cluster_connection(port).await.expect("cluster client");
    write_keys(&mut con, 0..300).await.expect("writes");
    assert_eq!(missing_keys(&mut con, 0..300).await, Vec::<String>::new());

    // Used nodes are replaced.
    let refilled = warm_pids(&server, "redis", true, server::DEFAULT_WARM_NODES).await;
    assert!(refilled.is_disjoint(&warm), "the pool holds new nodes");

    // The handed-over nodes live in their own directories: a restart brings them back there.
    let state = server.stop().await;
    let server = TestServer::start_in(state).await;
    let client = server.client();
    let g = wait_group_available(&client, "warm").await;
    let port = g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16;
    // The store says `available` from the start; the nodes take a moment to come back.
    poll_until("every key back after the restart", SETTLE, || async {
        let mut con = cluster_connection(port).await.map_err(|e| e.to_string())?;
        let missing = missing_keys(&mut con, 0..300).await;
        if missing.is_empty() { Ok(()) } else { Err(format!("{} keys missing", missing.len())) }
    })
    .await;
}

#[tokio::test]
async fn a_serverless_cache_starts_its_primary_on_the_warm_valkey_node() {
    let server = TestServer::start().await;
    let client = server.client();
    let warm = warm_pids(&server, "valkey", true, 1).await;
    client.create_serverless_cache().serverless_cache_name("quick").engine("valkey").send().await.expect("Create");
    poll_until("quick available", SETTLE, || async {
        let out = client.describe_serverless_caches().serverless_cache_name("quick").send().await;
        let status =
            out.map_err(|e| format!("{e:?}"))?.serverless_caches().first().and_then(|c| c.status().map(str::to_string));
        if status.as_deref() == Some("available") { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;
    let nodes = admin_nodes(&server).await;
    let primary = nodes.iter().find(|n| n["serverless_cache"] == "quick" && n["role"] == "primary").expect("primary");
    assert!(primary["pid"].as_u64().is_some_and(|pid| warm.contains(&pid)), "{primary} not one of {warm:?}");
}

#[tokio::test]
async fn no_warm_nodes_when_turned_off() {
    let server = TestServer::start_with(|c| c.warm_nodes = 0).await;
    let (_, health) = admin(&server, "GET", "/_emulator/health").await;
    assert_eq!(health["warm_nodes"], serde_json::json!([]));
    assert_eq!(health["warm_nodes_wanted"], 0);
    // Groups are still created, on nodes started for them.
    let client = server.client();
    create(&client, "cold", 2, 0).await;
    assert_eq!(admin_nodes(&server).await.len(), 2);
}
