//! A node that dies is restarted in place (same port), with AWS's recovery events, whether it
//! was killed through the admin API or by a real SIGKILL from outside.

use std::time::Duration;

use e2e::{MemcachedClient, TestServer, poll_until};

use crate::*;

/// Polls until the admin API shows `node` with a live pid other than `old`, and returns it.
async fn wait_new_pid(server: &TestServer, cluster: &str, node: &str, old: u64) -> u64 {
    poll_until(&format!("{cluster}/{node} restarted (pid != {old})"), SETTLE, || async {
        let entry = admin_node(server, cluster, node).await;
        match entry["pid"].as_u64() {
            Some(pid) if pid != old && process_alive(pid) => Ok(pid),
            _ => Err(entry.to_string()),
        }
    })
    .await
}

/// A node just started, or started again after a crash, is probed at the monitor's next
/// tick, not at the pace of healthy nodes (an hour here): it shows healthy once it answers.
#[tokio::test]
async fn new_and_restarted_nodes_are_probed_without_waiting_for_the_relaxed_pace() {
    let server = TestServer::start_with(|c| c.health.relaxed_interval = Duration::from_secs(3600)).await;
    let client = server.client();
    create_redis(&client, "fresh", "cache.t3.micro", None).await;
    wait_cluster_available(&client, "fresh").await;
    let started = wait_healthy_pid(&server, "fresh", "0001", None).await;
    kill_9(started);
    wait_healthy_pid(&server, "fresh", "0001", Some(started)).await;
    server.stop().await;
}

/// Polls until the admin API shows `node` healthy with a pid other than `old`, and returns it.
async fn wait_healthy_pid(server: &TestServer, cluster: &str, node: &str, old: Option<u64>) -> u64 {
    poll_until(&format!("{cluster}/{node} healthy (pid != {old:?})"), SETTLE, || async {
        let entry = admin_node(server, cluster, node).await;
        match entry["pid"].as_u64() {
            Some(pid) if Some(pid) != old && entry["health"] == "healthy" => Ok(pid),
            _ => Err(entry.to_string()),
        }
    })
    .await
}

#[tokio::test]
async fn killed_redis_node_recovers_on_the_same_port() {
    let server = TestServer::start().await;
    let client = server.client();
    create_redis(&client, "heal", "cache.t3.micro", None).await;
    let c = wait_cluster_available(&client, "heal").await;
    let node = nodes(&c).remove(0);
    wait_redis(node.port).await;

    let entry = admin_node(&server, "heal", "0001").await;
    assert_eq!(entry["port"].as_u64(), Some(u64::from(node.port)), "{entry}");
    assert_eq!(entry["address"], "127.0.0.1", "{entry}");
    assert_eq!(entry["availability_zone"], node.zone.as_str(), "{entry}");
    assert_eq!(entry["role"], "primary", "{entry}");
    assert!(entry["replication_group_id"].is_null(), "{entry}");
    let pid1 = entry["pid"].as_u64().unwrap_or_else(|| panic!("pid in {entry}"));
    assert!(process_alive(pid1));

    // Through the admin API.
    let (status, body) = admin_post(&server, "/_emulator/nodes/heal/0001/kill").await;
    assert_eq!(status, 200, "{body}");
    let pid2 = wait_new_pid(&server, "heal", "0001", pid1).await;
    assert!(!process_alive(pid1), "killed process {pid1} still alive");
    let mut redis = wait_redis(node.port).await;
    redis.set("after-kill", "ok").await.unwrap();
    wait_events(
        &client,
        SourceType::CacheCluster,
        "heal",
        &["Recovering cache nodes 0001", "Finished recovery for cache nodes 0001"],
    )
    .await;
    let c = wait_cluster_available(&client, "heal").await;
    assert_eq!(nodes(&c)[0].port, node.port, "Describe shows the same port");
    // A second crash right after the recovery (before anything else looked at the node)
    // must be recovered just the same.

    // A real SIGKILL from outside.
    kill_9(pid2);
    let pid3 = wait_new_pid(&server, "heal", "0001", pid2).await;
    assert_ne!(pid3, pid1);
    let mut redis = wait_redis(node.port).await;
    redis.set("after-sigkill", "ok").await.unwrap();
    let events = wait_events(
        &client,
        SourceType::CacheCluster,
        "heal",
        &[
            "Recovering cache nodes 0001",
            "Recovering cache nodes 0001",
            "Finished recovery for cache nodes 0001",
            "Finished recovery for cache nodes 0001",
        ],
    )
    .await;
    let first_recovering = events.iter().position(|e| e == "Recovering cache nodes 0001").unwrap();
    let first_finished = events.iter().position(|e| e == "Finished recovery for cache nodes 0001").unwrap();
    assert!(first_recovering < first_finished, "recovery starts before it finishes: {events:?}");
    assert_eq!(events.iter().filter(|e| e.starts_with("Added cache node")).count(), 1, "no new node: {events:?}");
    let c = wait_cluster_available(&client, "heal").await;
    assert_eq!(nodes(&c)[0].port, node.port);
    // The health monitor watches the new process, not the dead one.
    assert_eq!(wait_healthy_pid(&server, "heal", "0001", Some(pid2)).await, pid3);

    // Unknown nodes and actions are client errors.
    let (status, _) = admin_post(&server, "/_emulator/nodes/heal/0009/kill").await;
    assert_eq!(status, 404);
    let (status, _) = admin_post(&server, "/_emulator/nodes/heal/0001/explode").await;
    assert_eq!(status, 400);

    delete(&client, "heal").await;
    assert!(!process_alive(pid3), "node process {pid3} outlived its cluster");
    server.stop().await;
}

#[tokio::test]
async fn killed_memcached_node_keeps_its_place_in_discovery() {
    let server = TestServer::start().await;
    let client = server.client();
    create_memcached(&client, "heal-mc", 2, false).await;
    let c = wait_cluster_available(&client, "heal-mc").await;
    let view = nodes(&c);
    let cfg_port = u16::try_from(c.configuration_endpoint().and_then(|e| e.port()).unwrap()).unwrap();
    let version = wait_config(cfg_port, &view).await;

    let pid = admin_node(&server, "heal-mc", "0002").await["pid"].as_u64().expect("pid");
    kill_9(pid);
    wait_new_pid(&server, "heal-mc", "0002", pid).await;
    let mut mc: MemcachedClient = wait_memcached(view[1].port).await;
    mc.set("k", "v").await.unwrap();
    wait_events(
        &client,
        SourceType::CacheCluster,
        "heal-mc",
        &["Recovering cache nodes 0002", "Finished recovery for cache nodes 0002"],
    )
    .await;
    let c = wait_cluster_available(&client, "heal-mc").await;
    assert_eq!(nodes(&c), view, "same nodes, same ports");
    let after = wait_config(cfg_port, &view).await;
    assert_eq!(after, version, "a node restarted on its port is no membership change");

    delete(&client, "heal-mc").await;
    server.stop().await;
}
