//! An emulator restart on the same state directory brings every cluster back as it was:
//! same description, nodes on the same ports.

use e2e::{MemcachedClient, TestServer, port_refuses};

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

    let redis_after = wait_cluster_available(&client, "keep-redis").await;
    let mc_after = wait_cluster_available(&client, "keep-mc").await;
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
