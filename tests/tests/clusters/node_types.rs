//! ListAllowedNodeTypeModifications, and a node type change reaching the real node.

use std::collections::BTreeSet;

use e2e::{TestServer, expect_code, poll_until};

use crate::*;

#[tokio::test]
async fn allowed_node_type_modifications_and_scaling_up() {
    let server = TestServer::start().await;
    let client = server.client();
    create_redis(&client, "sized", "cache.t3.small", None).await;

    let out = client
        .list_allowed_node_type_modifications()
        .cache_cluster_id("sized")
        .send()
        .await
        .expect("ListAllowedNodeTypeModifications");
    let up: BTreeSet<&str> = out.scale_up_modifications().iter().map(String::as_str).collect();
    let down: BTreeSet<&str> = out.scale_down_modifications().iter().map(String::as_str).collect();
    for bigger in ["cache.t3.medium", "cache.m5.large", "cache.r6g.large"] {
        assert!(up.contains(bigger), "{bigger} in ScaleUp {up:?}");
        assert!(!down.contains(bigger), "{bigger} not in ScaleDown {down:?}");
    }
    assert!(down.contains("cache.t3.micro"), "cache.t3.micro in ScaleDown {down:?}");
    assert!(!up.contains("cache.t3.micro"), "cache.t3.micro not in ScaleUp {up:?}");
    assert!(!up.contains("cache.t3.small") && !down.contains("cache.t3.small"), "the current type is in neither list");
    assert!(up.is_disjoint(&down));
    assert!(up.iter().chain(&down).all(|t| t.starts_with("cache.")), "{up:?} {down:?}");

    expect_code(
        client.list_allowed_node_type_modifications().cache_cluster_id("no-such").send().await,
        "CacheClusterNotFound",
    );
    expect_code(
        client.list_allowed_node_type_modifications().replication_group_id("no-such").send().await,
        "ReplicationGroupNotFoundFault",
    );

    let c = wait_cluster_available(&client, "sized").await;
    let node = nodes(&c).remove(0);
    let mut redis = wait_redis(node.port).await;
    assert_eq!(
        redis.config_get("maxmemory").await.unwrap().as_deref(),
        Some("1471026299"),
        "AWS's value for cache.t3.small"
    );

    // Scale up, now: the node comes back with the bigger type's memory.
    let out = client
        .modify_cache_cluster()
        .cache_cluster_id("sized")
        .cache_node_type("cache.t3.medium")
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyCacheCluster CacheNodeType")
        .cache_cluster
        .unwrap();
    assert_eq!(out.cache_cluster_status(), Some("modifying"));
    let c = wait_cluster_available(&client, "sized").await;
    assert_eq!(c.cache_node_type(), Some("cache.t3.medium"));
    let after = nodes(&c).remove(0);
    assert_eq!(after.port, node.port, "the node keeps its endpoint");
    poll_until("maxmemory of cache.t3.medium", SETTLE, || async {
        let mut redis = e2e::RedisClient::connect("127.0.0.1", after.port).await.map_err(|e| e.to_string())?;
        let seen = redis.config_get("maxmemory").await.map_err(|e| e.to_string())?;
        if seen.as_deref() == Some("3317862236") { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
    let out = client.list_allowed_node_type_modifications().cache_cluster_id("sized").send().await.unwrap();
    assert!(out.scale_down_modifications().iter().any(|t| t == "cache.t3.small"), "{out:?}");

    delete(&client, "sized").await;
    server.stop().await;
}
