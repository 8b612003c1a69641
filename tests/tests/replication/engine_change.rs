//! Redis OSS → Valkey through ModifyReplicationGroup: every node restarts in place on the
//! Valkey binary, keeping its data, the replicas first and the primary after handing over
//! to one of them; nothing else changes engine.

use e2e::{TestServer, expect_code};

use crate::support::*;

#[tokio::test]
async fn a_redis_group_moves_to_valkey_keeping_its_data() {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "move", 2, true, false).await;
    let g = wait_group_available(&client, "move").await;
    let port = primary_port(&g);
    let mut w = RedisClient::connect("127.0.0.1", port).await.unwrap();
    w.set("kept", "across the move").await.unwrap();
    let pids_before: Vec<u64> = admin_nodes(&server).await.iter().map(pid_of).collect();
    let primary_before = primary_id(&g);

    let modify = || client.modify_replication_group().replication_group_id("move").apply_immediately(true);
    expect_code(modify().engine("memcached").engine_version("1.6.22").send().await, "InvalidParameterCombination");
    expect_code(modify().engine("valkey").send().await, "InvalidParameterCombination");
    expect_code(
        modify().engine("valkey").engine_version("8.0").send().await,
        "InvalidParameterCombination", // default.redis7 is not of family valkey8
    );
    let out = modify()
        .engine("valkey")
        .engine_version("8.0")
        .cache_parameter_group_name("default.valkey8")
        .send()
        .await
        .unwrap();
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));
    let g = wait_group_available(&client, "move").await;
    assert_eq!(g.engine(), Some("valkey"));
    for member in g.member_clusters() {
        let out = client.describe_cache_clusters().cache_cluster_id(member).send().await.unwrap();
        let c = &out.cache_clusters()[0];
        assert_eq!((c.engine(), c.engine_version()), (Some("valkey"), Some("8.0.1")), "{member}");
        let group = c.cache_parameter_group().and_then(|p| p.cache_parameter_group_name());
        assert_eq!(group, Some("default.valkey8"));
    }
    let nodes = admin_nodes(&server).await;
    let pids_after: Vec<u64> = nodes.iter().map(pid_of).collect();
    assert!(pids_before.iter().all(|pid| !pids_after.contains(pid)), "every node restarted");
    let health = admin(&server, "GET", "/_emulator/health").await.1;
    for node in &nodes {
        assert_eq!(node["engine"], "valkey");
        assert_eq!(node["binary"]["path"], health["engines"]["valkey"]["binary"], "{node}");
        let why = node["binary"]["why"].as_str().unwrap_or_default();
        assert!(why.contains("8.0"), "the node says why its binary serves valkey 8.0: {node}");
    }
    assert_ne!(primary_id(&g), primary_before, "the primary handed over to a replica already on Valkey");
    wait_read(primary_port(&g), "kept", "across the move").await;
    expect_code(modify().engine("redis").engine_version("7.1").send().await, "InvalidParameterCombination");
}
