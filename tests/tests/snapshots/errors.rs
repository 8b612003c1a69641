//! Every CreateSnapshot / DescribeSnapshots / DeleteSnapshot / CopySnapshot / restore error,
//! with its code, and no side effect: no snapshot, no file, the source unchanged.

use e2e::{TestServer, api_error, expect_code};

use crate::*;

/// Nothing was recorded or written for a rejected snapshot.
async fn assert_no_snapshots(server: &TestServer, client: &aws_sdk_elasticache::Client) {
    assert_eq!(snapshot_names(client).await, Vec::<String>::new());
    assert_eq!(files_under(&server.state_path().join("snapshots")), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn create_snapshot_errors() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "r", "e").await;
    create_group(&client, "g", 2, None).await;
    wait_group_available(&client, "g").await;
    create_memcached(&client, "mc").await;
    wait_cluster_available(&client, "mc").await;

    // Neither or both sources.
    let e = expect_code(client.create_snapshot().snapshot_name("s").send().await, "InvalidParameterCombination");
    assert_eq!(e.status, 400);
    expect_code(
        client.create_snapshot().snapshot_name("s").cache_cluster_id("r").replication_group_id("g").send().await,
        "InvalidParameterCombination",
    );
    // Unknown sources.
    let e = expect_code(
        client.create_snapshot().snapshot_name("s").cache_cluster_id("nope").send().await,
        "CacheClusterNotFound",
    );
    assert_eq!(e.status, 404);
    let e = expect_code(
        client.create_snapshot().snapshot_name("s").replication_group_id("nope").send().await,
        "ReplicationGroupNotFoundFault",
    );
    assert_eq!(e.status, 404);
    // Memcached has no snapshots.
    let e = expect_code(
        client.create_snapshot().snapshot_name("s").cache_cluster_id("mc").send().await,
        "SnapshotFeatureNotSupportedFault",
    );
    assert_eq!(e.status, 400);
    assert_eq!(describe_cluster(&client, "mc").await.cache_cluster_status(), Some("available"));
    // A KmsKeyId must look like a KMS key (id, ARN or alias).
    let e = api_error(client.create_snapshot().snapshot_name("s").cache_cluster_id("r").kms_key_id("k").send().await);
    assert_eq!((e.code.as_str(), e.status), ("InvalidKMSKeyFault", 400), "{e:?}");
    // Invalid names.
    for name in ["1starts-with-digit", "double--dash", "ends-dash-", "has_underscore"] {
        let e = api_error(client.create_snapshot().snapshot_name(name).cache_cluster_id("r").send().await);
        assert_eq!(e.code, "InvalidParameterValue", "{name}: {e:?}");
    }
    assert_eq!(describe_cluster(&client, "r").await.cache_cluster_status(), Some("available"));
    assert_eq!(describe_group(&client, "g").await.status(), Some("available"));
    assert_no_snapshots(&server, &client).await;

    // A member cluster of a group can be snapshotted on its own? AWS answers for the group;
    // here the rule that matters: a duplicate name is refused whatever the source.
    snapshot_of_cluster(&client, "dup", "r").await;
    wait_snapshot(&client, "dup").await;
    wait_cluster_available(&client, "r").await;
    let e = expect_code(
        client.create_snapshot().snapshot_name("dup").cache_cluster_id("r").send().await,
        "SnapshotAlreadyExistsFault",
    );
    assert_eq!(e.status, 400);
    expect_code(
        client.create_snapshot().snapshot_name("dup").replication_group_id("g").send().await,
        "SnapshotAlreadyExistsFault",
    );
    let s = describe_snapshot(&client, "dup").await;
    assert_eq!(s.cache_cluster_id(), Some("r"), "the first snapshot is untouched: {s:?}");
    assert_eq!(describe_group(&client, "g").await.status(), Some("available"), "group not marked snapshotting");
    assert_eq!(snapshot_names(&client).await, ["dup"]);
}

#[tokio::test]
async fn sources_that_are_not_available_are_refused() {
    // Creates answer at once, so a source can be caught while it is still `creating`.
    let server = TestServer::start_with(|c| c.settle_timeout = std::time::Duration::ZERO).await;
    let client = server.client();
    // Right after Create the source is `creating`.
    create_redis(&client, "young", None).await;
    let e = expect_code(
        client.create_snapshot().snapshot_name("s1").cache_cluster_id("young").send().await,
        "InvalidCacheClusterState",
    );
    assert_eq!(e.status, 400);
    create_group(&client, "young-g", 2, None).await;
    let e = expect_code(
        client.create_snapshot().snapshot_name("s2").replication_group_id("young-g").send().await,
        "InvalidReplicationGroupState",
    );
    assert_eq!(e.status, 400);
    assert_no_snapshots(&server, &client).await;

    // A deleting cluster.
    wait_cluster_available(&client, "young").await;
    client.delete_cache_cluster().cache_cluster_id("young").send().await.expect("DeleteCacheCluster");
    expect_code(
        client.create_snapshot().snapshot_name("s3").cache_cluster_id("young").send().await,
        "InvalidCacheClusterState",
    );
    assert_no_snapshots(&server, &client).await;
}

/// A snapshot whose node is frozen stays `creating` (for its first attempts, about 8 s; see
/// `failures` for what follows): it cannot be deleted, copied, exported or restored, and its
/// source stays `snapshotting` (no second snapshot, no modify). The create answers at once.
#[tokio::test]
async fn a_snapshot_that_is_not_available_is_refused() {
    let server = TestServer::start_with(|c| c.settle_timeout = std::time::Duration::ZERO).await;
    let client = server.client();
    redis_with_keys(&client, "r", "na").await;
    let (status, body) = admin_post(&server, "/_emulator/nodes/r/0001/stop").await;
    assert_eq!(status, 200, "{body}");
    snapshot_of_cluster(&client, "stuck", "r").await;

    let s = describe_snapshot(&client, "stuck").await;
    assert_eq!(s.snapshot_status(), Some("creating"), "a frozen node cannot have saved: {s:?}");
    assert_eq!(describe_cluster(&client, "r").await.cache_cluster_status(), Some("snapshotting"));

    let e = expect_code(client.delete_snapshot().snapshot_name("stuck").send().await, "InvalidSnapshotState");
    assert_eq!(e.status, 400);
    expect_code(
        client.copy_snapshot().source_snapshot_name("stuck").target_snapshot_name("c").send().await,
        "InvalidSnapshotState",
    );
    expect_code(
        client
            .copy_snapshot()
            .source_snapshot_name("stuck")
            .target_snapshot_name("c")
            .target_bucket("bucket")
            .send()
            .await,
        "InvalidSnapshotState",
    );
    expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("restore")
            .engine("redis")
            .cache_node_type("cache.t3.micro")
            .num_cache_nodes(1)
            .snapshot_name("stuck")
            .send()
            .await,
        "InvalidSnapshotState",
    );
    expect_code(
        client.create_snapshot().snapshot_name("second").cache_cluster_id("r").send().await,
        "InvalidCacheClusterState",
    );
    expect_code(client.delete_cache_cluster().cache_cluster_id("r").send().await, "InvalidCacheClusterState");
    assert_eq!(snapshot_names(&client).await, ["stuck"]);
    assert!(describe_cluster_list(&client).await == ["r"], "no restored cluster");
    assert!(!server.state_path().join("exports").exists());

    // Thawed, the snapshot completes with the data and everything works again.
    let (status, body) = admin_post(&server, "/_emulator/nodes/r/0001/resume").await;
    assert_eq!(status, 200, "{body}");
    wait_snapshot(&client, "stuck").await;
    wait_cluster_available(&client, "r").await;
    create_redis(&client, "restore", Some("stuck")).await;
    let c = wait_cluster_available(&client, "restore").await;
    wait_keys(node_port(&c), "na").await;
}

async fn describe_cluster_list(client: &aws_sdk_elasticache::Client) -> Vec<String> {
    let out = client.describe_cache_clusters().send().await.expect("DescribeCacheClusters");
    out.cache_clusters().iter().filter_map(|c| c.cache_cluster_id().map(str::to_string)).collect()
}

#[tokio::test]
async fn describe_errors() {
    let server = TestServer::start().await;
    let client = server.client();
    let e = expect_code(client.describe_snapshots().snapshot_name("missing").send().await, "SnapshotNotFoundFault");
    assert_eq!(e.status, 404);
    for records in [19, 101] {
        expect_code(client.describe_snapshots().max_records(records).send().await, "InvalidParameterValue");
    }
    expect_code(client.describe_snapshots().snapshot_source("weekly").send().await, "InvalidParameterValue");
    expect_code(client.describe_snapshots().cache_cluster_id("nope").send().await, "CacheClusterNotFound");
    let out = client.describe_snapshots().send().await.expect("DescribeSnapshots");
    assert!(out.snapshots().is_empty() && out.marker().is_none(), "{out:?}");
}
