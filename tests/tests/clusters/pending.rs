//! ApplyImmediately=false: changes wait in PendingModifiedValues for the maintenance window
//! (`POST /_emulator/maintenance` here), as AWS documents for ModifyCacheCluster.

use std::time::{Duration, Instant};

use aws_sdk_elasticache::types::CacheCluster;
use e2e::{TestServer, port_refuses};

use crate::*;

fn pending_nodes(c: &CacheCluster) -> Option<i32> {
    c.pending_modified_values().and_then(|p| p.num_cache_nodes())
}

fn pending_removals(c: &CacheCluster) -> Vec<String> {
    c.pending_modified_values().map(|p| p.cache_node_ids_to_remove().to_vec()).unwrap_or_default()
}

/// For a second (several health and reconcile rounds), the cluster stays exactly as it is.
async fn assert_unchanged_for_a_while(server: &TestServer, id: &str, expected: &CacheCluster) {
    let client = server.client();
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let c = describe_cluster(&client, id).await;
        assert_eq!(c.cache_cluster_status(), Some("available"));
        assert_eq!(c.num_cache_nodes(), expected.num_cache_nodes());
        assert_eq!(nodes(&c), nodes(expected), "nodes changed before maintenance");
        assert_eq!(c.pending_modified_values(), expected.pending_modified_values());
        let running = admin_nodes(server).await.into_iter().filter(|n| n["cache_cluster_id"] == id).count();
        assert_eq!(running, nodes(expected).len(), "nodes started or stopped before maintenance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn changes_wait_for_the_maintenance_window() {
    let server = TestServer::start().await;
    let client = server.client();
    create_memcached(&client, "pend", 1, false).await;
    let before = wait_cluster_available(&client, "pend").await;
    assert_eq!(pending_nodes(&before), None);

    let out = client
        .modify_cache_cluster()
        .cache_cluster_id("pend")
        .num_cache_nodes(2)
        .apply_immediately(false)
        .send()
        .await
        .expect("ModifyCacheCluster ApplyImmediately=false")
        .cache_cluster
        .unwrap();
    assert_eq!(out.num_cache_nodes(), Some(1), "{out:?}");
    assert_eq!(pending_nodes(&out), Some(2), "{out:?}");
    assert_eq!(out.cache_cluster_status(), Some("available"));
    let described = describe_cluster(&client, "pend").await;
    assert_eq!(pending_nodes(&described), Some(2));
    assert_unchanged_for_a_while(&server, "pend", &described).await;

    let (status, body) = admin_post(&server, "/_emulator/maintenance").await;
    assert_eq!(status, 200, "{body}");
    let c = poll_grown(&client, "pend", 2).await;
    assert_eq!(ids(&c), ["0001", "0002"]);
    assert_eq!(pending_nodes(&c), None, "nothing pending after maintenance: {c:?}");
    wait_memcached(nodes(&c)[1].port).await;

    // Removal waits too.
    let out = client
        .modify_cache_cluster()
        .cache_cluster_id("pend")
        .num_cache_nodes(1)
        .cache_node_ids_to_remove("0002")
        .send()
        .await
        .expect("pending removal")
        .cache_cluster
        .unwrap();
    assert_eq!(pending_nodes(&out), Some(1));
    assert_eq!(pending_removals(&out), ["0002"]);
    let described = describe_cluster(&client, "pend").await;
    assert_eq!(ids(&described), ["0001", "0002"]);
    assert_eq!(pending_removals(&described), ["0002"]);
    assert_unchanged_for_a_while(&server, "pend", &described).await;
    let removed_port = nodes(&described)[1].port;

    let (status, body) = admin_post(&server, "/_emulator/maintenance").await;
    assert_eq!(status, 200, "{body}");
    let c = poll_grown(&client, "pend", 1).await;
    assert_eq!(ids(&c), ["0001"]);
    assert!(pending_removals(&c).is_empty() && pending_nodes(&c).is_none(), "{c:?}");
    assert!(port_refuses(removed_port).await);

    delete(&client, "pend").await;
    server.stop().await;
}

/// Polls until the cluster is available with `count` nodes.
async fn poll_grown(client: &aws_sdk_elasticache::Client, id: &str, count: usize) -> CacheCluster {
    e2e::poll_until(&format!("{id} available with {count} nodes"), SETTLE, || async {
        let c = describe_cluster(client, id).await;
        let ok = c.cache_cluster_status() == Some("available")
            && c.cache_nodes().len() == count
            && c.num_cache_nodes() == Some(count as i32)
            && c.cache_nodes().iter().all(|n| n.cache_node_status() == Some("available"));
        if ok { Ok(c) } else { Err(format!("{:?} {:?}", c.cache_cluster_status(), c.cache_nodes())) }
    })
    .await
}

/// AWS: "If true, this parameter causes the modifications in this request and any pending
/// modifications to be applied ... as soon as possible".
#[tokio::test]
async fn apply_immediately_also_applies_pending_changes() {
    let server = TestServer::start().await;
    let client = server.client();
    create_memcached(&client, "pend-now", 1, false).await;
    wait_cluster_available(&client, "pend-now").await;
    client.modify_cache_cluster().cache_cluster_id("pend-now").num_cache_nodes(2).send().await.unwrap();
    assert_eq!(pending_nodes(&describe_cluster(&client, "pend-now").await), Some(2));

    client
        .modify_cache_cluster()
        .cache_cluster_id("pend-now")
        .preferred_maintenance_window("mon:01:00-mon:02:00")
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyCacheCluster ApplyImmediately=true");
    let c = poll_grown(&client, "pend-now", 2).await;
    assert_eq!(pending_nodes(&c), None);
    assert_eq!(c.preferred_maintenance_window(), Some("mon:01:00-mon:02:00"));

    let _ = client.delete_cache_cluster().cache_cluster_id("pend-now").send().await;
    server.stop().await;
}

/// AWS: "If the value [NumCacheNodes] is equal to the number of current cache nodes, any
/// pending add or remove requests are canceled."
#[tokio::test]
async fn equal_num_cache_nodes_cancels_the_pending_change() {
    let server = TestServer::start().await;
    let client = server.client();
    create_memcached(&client, "pend-cancel", 1, false).await;
    wait_cluster_available(&client, "pend-cancel").await;
    client.modify_cache_cluster().cache_cluster_id("pend-cancel").num_cache_nodes(3).send().await.unwrap();
    assert_eq!(pending_nodes(&describe_cluster(&client, "pend-cancel").await), Some(3));

    let out = client
        .modify_cache_cluster()
        .cache_cluster_id("pend-cancel")
        .num_cache_nodes(1)
        .send()
        .await
        .expect("NumCacheNodes equal to the current count cancels the pending change");
    assert_eq!(out.cache_cluster().and_then(pending_nodes), None, "{out:?}");
    let (status, _) = admin_post(&server, "/_emulator/maintenance").await;
    assert_eq!(status, 200);
    let c = describe_cluster(&client, "pend-cancel").await;
    assert_eq!(pending_nodes(&c), None);
    assert_unchanged_for_a_while(&server, "pend-cancel", &c).await;
    assert_eq!(ids(&c), ["0001"]);

    let _ = client.delete_cache_cluster().cache_cluster_id("pend-cancel").send().await;
    server.stop().await;
}
