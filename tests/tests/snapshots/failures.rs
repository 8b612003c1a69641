//! Work that can never succeed ends in AWS's terminal statuses, with an event saying why:
//! a restore from an unreadable RDB file is `restore-failed`, a snapshot whose node stays
//! unreachable is `failed` (and its source available again). Both can then be deleted.

use super::*;

#[tokio::test]
async fn a_cluster_restored_from_an_unreadable_rdb_file_is_restore_failed() {
    let server = TestServer::start().await;
    let client = server.client();
    let bucket = server.state_path().join("exports").join("broken-bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    std::fs::write(bucket.join("garbage.rdb"), b"this is not an RDB file").unwrap();
    client
        .create_cache_cluster()
        .cache_cluster_id("from-garbage")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .snapshot_arns("arn:aws:s3:::broken-bucket/garbage.rdb")
        .send()
        .await
        .unwrap();
    poll_until("the restore fails", SETTLE, || async {
        let status = describe_cluster(&client, "from-garbage").await.cache_cluster_status().map(str::to_string);
        if status.as_deref() == Some("restore-failed") { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;
    let events = events_of(&client, aws_sdk_elasticache::types::SourceType::CacheCluster, "from-garbage").await;
    assert!(events.iter().any(|e| e.starts_with("Failed to restore cache cluster from-garbage")), "{events:?}");
    client.delete_cache_cluster().cache_cluster_id("from-garbage").send().await.unwrap();
    wait_cluster_gone(&client, "from-garbage").await;
}

#[tokio::test]
async fn a_snapshot_whose_node_stays_unreachable_fails_and_frees_its_source() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("cut-off")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .preferred_availability_zone("us-east-1a")
        .send()
        .await
        .unwrap();
    wait_cluster_available(&client, "cut-off").await;
    let (status, _) = admin_post(&server, "/_emulator/zones/us-east-1a/outage").await;
    assert_eq!(status, 200);
    client.create_snapshot().cache_cluster_id("cut-off").snapshot_name("unreachable").send().await.unwrap();
    poll_until("the snapshot fails", SETTLE, || async {
        let out = client.describe_snapshots().snapshot_name("unreachable").send().await.unwrap();
        let status = out.snapshots()[0].snapshot_status().map(str::to_string);
        if status.as_deref() == Some("failed") { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;
    let events = events_of(&client, aws_sdk_elasticache::types::SourceType::CacheCluster, "cut-off").await;
    assert!(events.iter().any(|e| e.starts_with("Snapshot failed for snapshot with ID 'unreachable'")), "{events:?}");
    assert_eq!(describe_cluster(&client, "cut-off").await.cache_cluster_status(), Some("available"));
    client.delete_snapshot().snapshot_name("unreachable").send().await.unwrap();
    let (status, _) = e2e::admin(&server, "DELETE", "/_emulator/zones/us-east-1a/outage").await;
    assert_eq!(status, 200);
}
