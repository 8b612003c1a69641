//! DeleteSnapshot, and final snapshots taken by DeleteCacheCluster / DeleteReplicationGroup.

use aws_sdk_elasticache::types::SourceType;
use e2e::{TestServer, expect_code, port_refuses};

use crate::*;

#[tokio::test]
async fn delete_removes_the_snapshot_and_its_files() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "src", "d").await;
    snapshot_of_cluster(&client, "doomed", "src").await;
    wait_snapshot(&client, "doomed").await;
    wait_cluster_available(&client, "src").await;
    snapshot_of_cluster(&client, "kept", "src").await;
    wait_snapshot(&client, "kept").await;
    assert!(snapshot_file(&server, "doomed").is_file());

    let out = client.delete_snapshot().snapshot_name("doomed").send().await.expect("DeleteSnapshot");
    let shown = out.snapshot.expect("DeleteSnapshot returned no Snapshot");
    assert_eq!(shown.snapshot_name(), Some("doomed"));
    assert_eq!(shown.snapshot_status(), Some("deleting"), "{shown:?}");
    wait_snapshot_gone(&client, "doomed").await;
    poll_until("snapshot directory removed", SETTLE, || async {
        let dir = snapshot_dir(&server, "doomed");
        if dir.exists() { Err(format!("{:?}", files_under(&dir))) } else { Ok(()) }
    })
    .await;
    assert_eq!(snapshot_names(&client).await, ["kept"]);
    assert_rdb(&snapshot_file(&server, "kept"));
    // Its tags went with it.
    let e = api_error(client.list_tags_for_resource().resource_name(snapshot_arn("doomed")).send().await);
    assert_eq!(e.code, "SnapshotNotFoundFault", "{e:?}");

    // Deleting again, or something that never existed.
    for name in ["doomed", "never"] {
        let e = expect_code(client.delete_snapshot().snapshot_name(name).send().await, "SnapshotNotFoundFault");
        assert_eq!(e.status, 404, "{e:?}");
    }
    // The name is free again.
    snapshot_of_cluster(&client, "doomed", "src").await;
    wait_snapshot(&client, "doomed").await;
    assert_rdb(&snapshot_file(&server, "doomed"));
}

#[tokio::test]
async fn final_snapshot_of_a_cluster_is_taken_before_it_goes() {
    let server = TestServer::start().await;
    let client = server.client();
    let port = redis_with_keys(&client, "leaving", "fin").await;

    let out = client
        .delete_cache_cluster()
        .cache_cluster_id("leaving")
        .final_snapshot_identifier("leaving-final")
        .send()
        .await
        .expect("DeleteCacheCluster with FinalSnapshotIdentifier");
    assert_eq!(out.cache_cluster().and_then(|c| c.cache_cluster_status()), Some("deleting"));
    wait_cluster_gone(&client, "leaving").await;
    poll_until("node port closed", SETTLE, || async {
        if port_refuses(port).await { Ok(()) } else { Err("open".to_string()) }
    })
    .await;

    let s = wait_snapshot(&client, "leaving-final").await;
    assert_eq!(s.cache_cluster_id(), Some("leaving"));
    assert_eq!(s.snapshot_source(), Some("manual"));
    assert_eq!(s.node_snapshots().len(), 1);
    assert!(s.node_snapshots()[0].cache_size().is_some(), "{s:?}");
    assert_rdb(&snapshot_file(&server, "leaving-final"));
    wait_event(
        &client,
        SourceType::CacheCluster,
        "leaving",
        &snapshot_event("leaving-final", "cache cluster", "leaving"),
    )
    .await;

    create_redis(&client, "back", Some("leaving-final")).await;
    let c = wait_cluster_available(&client, "back").await;
    wait_keys(node_port(&c), "fin").await;
}

#[tokio::test]
async fn final_snapshot_of_a_group_is_taken_before_it_goes() {
    let server = TestServer::start().await;
    let client = server.client();
    let g = group_with_keys(&client, "leaving-g", 2, "gfin").await;
    let ports: Vec<u16> = group_members(&g).iter().map(|m| m.2).collect();

    let out = client
        .delete_replication_group()
        .replication_group_id("leaving-g")
        .final_snapshot_identifier("g-final")
        .send()
        .await
        .expect("DeleteReplicationGroup with FinalSnapshotIdentifier");
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("deleting"));
    wait_group_gone(&client, "leaving-g").await;
    for port in ports {
        poll_until("member port closed", SETTLE, || async {
            if port_refuses(port).await { Ok(()) } else { Err("open".to_string()) }
        })
        .await;
    }

    let s = wait_snapshot(&client, "g-final").await;
    assert_eq!(s.replication_group_id(), Some("leaving-g"));
    assert_rdb(&snapshot_file(&server, "g-final"));
    wait_event(
        &client,
        SourceType::ReplicationGroup,
        "leaving-g",
        &snapshot_event("g-final", "replication group", "leaving-g"),
    )
    .await;

    create_group(&client, "back-g", 2, Some("g-final")).await;
    let g = wait_group_available(&client, "back-g").await;
    for (_, _, port) in group_members(&g) {
        wait_keys(port, "gfin").await;
    }
}

#[tokio::test]
async fn final_snapshot_errors_keep_the_source() {
    let server = TestServer::start().await;
    let client = server.client();
    create_memcached(&client, "mc").await;
    wait_cluster_available(&client, "mc").await;
    let e = expect_code(
        client.delete_cache_cluster().cache_cluster_id("mc").final_snapshot_identifier("mc-final").send().await,
        "InvalidParameterCombination",
    );
    assert!(!e.message.is_empty());
    assert_eq!(describe_cluster(&client, "mc").await.cache_cluster_status(), Some("available"));

    // A final snapshot name that is taken: nothing is deleted.
    redis_with_keys(&client, "r", "fe").await;
    snapshot_of_cluster(&client, "taken", "r").await;
    wait_snapshot(&client, "taken").await;
    wait_cluster_available(&client, "r").await;
    expect_code(
        client.delete_cache_cluster().cache_cluster_id("r").final_snapshot_identifier("taken").send().await,
        "SnapshotAlreadyExistsFault",
    );
    assert_eq!(describe_cluster(&client, "r").await.cache_cluster_status(), Some("available"));
    group_with_keys(&client, "g", 2, "fe").await;
    expect_code(
        client.delete_replication_group().replication_group_id("g").final_snapshot_identifier("taken").send().await,
        "SnapshotAlreadyExistsFault",
    );
    assert_eq!(describe_group(&client, "g").await.status(), Some("available"));
    assert_eq!(snapshot_names(&client).await, ["taken"]);
    let s = describe_snapshot(&client, "taken").await;
    assert_eq!(s.cache_cluster_id(), Some("r"), "the existing snapshot is untouched");
    assert!(server.state_path().join("snapshots").exists());
}

use e2e::api_error;
