//! An emulator restart on the same state directory brings every cluster back as it was:
//! same description, nodes on the same ports; until a node runs again, Describe does not
//! call it available.

use std::path::Path;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::CacheCluster;
use e2e::{MemcachedClient, TestServer, port_refuses};
use nodes::{EngineKind, Engines};

use crate::*;

#[tokio::test]
async fn clusters_come_back_after_an_emulator_restart() {
    let server = TestServer::start().await;
    let client = server.client();
    create_redis(&client, "keep-redis", "cache.t3.micro", None).await;
    create_memcached(&client, "keep-mc", 2, true).await;
    let redis_before = wait_cluster_available(&client, "keep-redis").await;
    let mc_before = wait_cluster_available(&client, "keep-mc").await;
    let redis_node = nodes(&redis_before).remove(0);
    let mc_nodes = nodes(&mc_before);
    let cfg_port = u16::try_from(mc_before.configuration_endpoint().and_then(|e| e.port()).unwrap()).unwrap();
    wait_redis(redis_node.port).await.set("k", "v").await.unwrap();
    wait_config(cfg_port, &mc_nodes).await;
    let pids: Vec<u64> =
        admin_nodes(&server).await.iter().map(|n| n["pid"].as_u64().unwrap_or_else(|| panic!("pid in {n}"))).collect();
    assert_eq!(pids.len(), 3);
    drop(client);

    let state_dir = server.stop().await;
    let mut ports: Vec<u16> = mc_nodes.iter().map(|n| n.port).collect();
    ports.push(redis_node.port);
    ports.push(cfg_port);
    for port in &ports {
        assert!(port_refuses(*port).await, "port {port} still open after the server stopped");
    }
    for pid in &pids {
        assert!(!process_alive(*pid), "node process {pid} outlived the server");
    }

    let server = TestServer::start_in(state_dir).await;
    let client = server.client();
    let mut all: Vec<String> = client
        .describe_cache_clusters()
        .send()
        .await
        .unwrap()
        .cache_clusters()
        .iter()
        .filter_map(|c| c.cache_cluster_id().map(str::to_string))
        .collect();
    all.sort();
    assert_eq!(all, ["keep-mc", "keep-redis"]);

    let redis_after = wait_available_truthfully(&server, &client, "keep-redis").await;
    let mc_after = wait_available_truthfully(&server, &client, "keep-mc").await;
    for (before, after) in [(&redis_before, &redis_after), (&mc_before, &mc_after)] {
        assert_eq!(nodes(after), nodes(before), "same nodes on the same ports");
        assert_eq!(after.arn(), before.arn());
        assert_eq!(after.engine(), before.engine());
        assert_eq!(after.engine_version(), before.engine_version());
        assert_eq!(after.cache_node_type(), before.cache_node_type());
        assert_eq!(after.num_cache_nodes(), before.num_cache_nodes());
        assert_eq!(after.cache_cluster_create_time(), before.cache_cluster_create_time());
        assert_eq!(after.preferred_availability_zone(), before.preferred_availability_zone());
        assert_eq!(after.configuration_endpoint(), before.configuration_endpoint(), "same configuration endpoint");
    }
    wait_redis(redis_node.port).await;
    for n in &mc_nodes {
        let mut mc: MemcachedClient = wait_memcached(n.port).await;
        mc.set("after-restart", "1").await.unwrap();
    }
    wait_config(cfg_port, &mc_nodes).await;
    let new_pids: Vec<u64> = admin_nodes(&server).await.iter().filter_map(|n| n["pid"].as_u64()).collect();
    assert_eq!(new_pids.len(), 3, "every node runs again");
    assert!(new_pids.iter().all(|p| !pids.contains(p) && process_alive(*p)));

    delete(&client, "keep-redis").await;
    delete(&client, "keep-mc").await;
    drop(client);
    let state_dir = server.stop().await;
    for port in &ports {
        assert!(port_refuses(*port).await, "port {port} open after the clusters were deleted");
    }
    drop(state_dir);
}

/// redis-server behind a gate: while `gate` is a named pipe, a node's start waits until a
/// line is written into it.
fn gated_redis(dir: &Path, gate: &Path) -> Engines {
    let gated = redis_behind(dir, &format!("if [ -p '{0}' ]; then read _ < '{0}'; fi", gate.display()));
    Engines::new(Some(gated), Engines::detect().binary(EngineKind::Valkey).cloned(), None)
}

#[tokio::test]
async fn after_a_restart_a_node_is_rebooting_until_it_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let engines = gated_redis(dir.path(), &gate);
    let configure = |c: &mut server::Config| {
        c.engines = Some(engines.clone());
        c.warm_nodes = 0;
    };
    let server = TestServer::start_with(configure).await;
    let client = server.client();
    create_redis(&client, "gated", "cache.t3.micro", None).await;
    wait_cluster_available(&client, "gated").await;
    let state_dir = server.stop().await;

    let made = std::process::Command::new("mkfifo").arg(&gate).status().unwrap();
    assert!(made.success(), "mkfifo {}", gate.display());
    let server = TestServer::try_start_with(state_dir, configure).await.unwrap();
    let client = server.client();
    // The node's start waits at the gate.
    let c = describe_cluster(&client, "gated").await;
    assert_eq!(c.cache_cluster_status(), Some("rebooting cache cluster nodes"), "{c:?}");
    assert_eq!(nodes(&c)[0].status, "rebooting", "{c:?}");

    // Opening the FIFO for writing waits for the start to open it for reading.
    let opened = gate.clone();
    tokio::task::spawn_blocking(move || std::fs::write(opened, b"go\n")).await.unwrap().unwrap();
    wait_available_truthfully(&server, &client, "gated").await;
    let events = e2e::events_of(&client, SourceType::CacheCluster, "gated").await;
    assert!(events.iter().any(|e| e == "Cache node 0001 restarted"), "{events:?}");
}

/// Polls the cluster until it is available again after a restart, checking at every look
/// that each node Describe shows `available` runs (the emulator lists a node with its pid
/// once it answers; the list is read after the description, and a running node does not
/// stop by itself here).
async fn wait_available_truthfully(server: &TestServer, client: &Client, id: &str) -> CacheCluster {
    poll_until(&format!("cluster {id} available after the restart"), SETTLE, || async {
        let c = describe_cluster(client, id).await;
        let running = admin_nodes(server).await;
        for node in c.cache_nodes().iter().filter(|n| n.cache_node_status() == Some("available")) {
            let listed = running
                .iter()
                .find(|r| r["cache_cluster_id"] == id && r["cache_node_id"] == node.cache_node_id().unwrap());
            assert!(
                listed.is_some_and(|r| r["pid"].as_u64().is_some()),
                "{id} shows node {node:?} available before it runs: {running:?}"
            );
        }
        let all_available = c.cache_nodes().iter().all(|n| n.cache_node_status() == Some("available"));
        if c.cache_cluster_status() == Some("available") && all_available {
            Ok(c)
        } else {
            Err(format!("{:?} nodes {:?}", c.cache_cluster_status(), c.cache_nodes()))
        }
    })
    .await
}
