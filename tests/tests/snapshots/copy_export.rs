//! CopySnapshot: a new snapshot holding the same data (it outlives its source), or, with a
//! TargetBucket, an export of the RDB file to `<state dir>/exports/<bucket>/`.

use aws_sdk_elasticache::types::SourceType;
use e2e::{TestServer, expect_code};

use crate::*;

#[tokio::test]
async fn a_copy_restores_like_its_source_and_outlives_it() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "src", "cp").await;
    snapshot_of_cluster(&client, "orig", "src").await;
    wait_snapshot(&client, "orig").await;

    let copy = client
        .copy_snapshot()
        .source_snapshot_name("orig")
        .target_snapshot_name("the-copy")
        .send()
        .await
        .expect("CopySnapshot")
        .snapshot
        .expect("CopySnapshot returned no Snapshot");
    assert_eq!(copy.snapshot_name(), Some("the-copy"));
    assert_eq!(copy.snapshot_source(), Some("manual"));
    let copy = wait_snapshot(&client, "the-copy").await;
    let orig = describe_snapshot(&client, "orig").await;
    assert_eq!(orig.snapshot_status(), Some("available"));
    assert_eq!(copy.cache_cluster_id(), Some("src"));
    assert_eq!(copy.engine(), orig.engine());
    assert_eq!(copy.engine_version(), orig.engine_version());
    assert_eq!(copy.cache_node_type(), orig.cache_node_type());
    assert_eq!(copy.arn(), Some(snapshot_arn("the-copy").as_str()));
    assert_eq!(copy.node_snapshots().len(), 1, "{copy:?}");
    assert_eq!(
        std::fs::read(snapshot_file(&server, "the-copy")).expect("copy's RDB"),
        assert_rdb(&snapshot_file(&server, "orig")),
        "the copy holds the same RDB"
    );
    assert_eq!(snapshot_names(&client).await, ["orig", "the-copy"]);

    // Delete the source snapshot and the source cluster: the copy alone restores the data.
    client.delete_snapshot().snapshot_name("orig").send().await.expect("DeleteSnapshot orig");
    wait_snapshot_gone(&client, "orig").await;
    client.delete_cache_cluster().cache_cluster_id("src").send().await.expect("DeleteCacheCluster");
    wait_cluster_gone(&client, "src").await;

    create_redis(&client, "from-copy", Some("the-copy")).await;
    let c = wait_cluster_available(&client, "from-copy").await;
    wait_keys(node_port(&c), "cp").await;
    create_group(&client, "from-copy-g", 2, Some("the-copy")).await;
    let g = wait_group_available(&client, "from-copy-g").await;
    for (_, _, port) in group_members(&g) {
        wait_keys(port, "cp").await;
    }
}

#[tokio::test]
async fn export_writes_a_valid_rdb_into_the_bucket() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "src", "ex").await;
    snapshot_of_cluster(&client, "to-export", "src").await;
    let before = wait_snapshot(&client, "to-export").await;

    let out = client
        .copy_snapshot()
        .source_snapshot_name("to-export")
        .target_snapshot_name("exported")
        .target_bucket("my-bucket.example")
        .send()
        .await
        .expect("CopySnapshot with TargetBucket")
        .snapshot
        .expect("CopySnapshot returned no Snapshot");
    assert_eq!(out.snapshot_name(), Some("exported"), "{out:?}");
    // While the file is written the source is `exporting`. The event is written with the
    // return to `available`, so a status read before an event list lacking the event must
    // show `exporting`.
    let status = describe_snapshot(&client, "to-export").await.snapshot_status().map(str::to_string);
    let events = events_of(&client, SourceType::CacheCluster, "src").await;
    if !events.iter().any(|e| e.starts_with("Snapshot to-export exported")) {
        assert_eq!(status.as_deref(), Some("exporting"), "source status during an export");
    } else {
        assert!(matches!(status.as_deref(), Some("exporting" | "available")), "{status:?}");
    }
    let file = server.state_path().join("exports").join("my-bucket.example").join("exported-0001.rdb");
    let message = format!("Snapshot to-export exported to bucket my-bucket.example as {}", file.display());
    wait_event(&client, SourceType::CacheCluster, "src", &message).await;
    let after = wait_snapshot(&client, "to-export").await;
    assert_eq!(after.snapshot_status(), Some("available"));
    assert_eq!(after.node_snapshots(), before.node_snapshots(), "an export does not change the snapshot");
    let exported = assert_rdb(&file);
    assert_eq!(
        exported,
        std::fs::read(snapshot_file(&server, "to-export")).unwrap(),
        "the export is the snapshot's RDB"
    );
    assert_eq!(snapshot_names(&client).await, ["to-export"], "an export creates no snapshot");
    let e = expect_code(client.describe_snapshots().snapshot_name("exported").send().await, "SnapshotNotFoundFault");
    assert_eq!(e.status, 404);

    // The exported RDB is real data: seeded into a fresh cluster through a copy-and-restore
    // of the source, the keys match (the file bytes are identical, checked above).
    create_redis(&client, "check", Some("to-export")).await;
    let c = wait_cluster_available(&client, "check").await;
    wait_keys(node_port(&c), "ex").await;
}

#[tokio::test]
async fn copy_and_export_errors_change_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "src", "ce").await;
    snapshot_of_cluster(&client, "base", "src").await;
    wait_snapshot(&client, "base").await;

    let e = expect_code(
        client.copy_snapshot().source_snapshot_name("missing").target_snapshot_name("x").send().await,
        "SnapshotNotFoundFault",
    );
    assert_eq!(e.status, 404, "{e:?}");

    for bucket in ["UPPER", "ab", "-dash", "under_score", "a..b", &"b".repeat(64), "has space", ".dot"] {
        let e = expect_code(
            client
                .copy_snapshot()
                .source_snapshot_name("base")
                .target_snapshot_name("exp")
                .target_bucket(bucket)
                .send()
                .await,
            "InvalidParameterValue",
        );
        assert!(e.message.contains(bucket) || !e.message.is_empty(), "{e:?}");
        assert_eq!(
            describe_snapshot(&client, "base").await.snapshot_status(),
            Some("available"),
            "after bucket {bucket:?}"
        );
    }
    assert!(
        !server.state_path().join("exports").exists() || files_under(&server.state_path().join("exports")).is_empty()
    );

    // A copy onto an existing name.
    let names_before = snapshot_names(&client).await;
    let e = expect_code(
        client.copy_snapshot().source_snapshot_name("base").target_snapshot_name("base").send().await,
        "SnapshotAlreadyExistsFault",
    );
    assert_eq!(e.status, 400, "{e:?}");
    let e = api_error(
        client.copy_snapshot().source_snapshot_name("base").target_snapshot_name("k").kms_key_id("key").send().await,
    );
    assert_eq!((e.code.as_str(), e.status), ("InvalidKMSKeyFault", 400), "{e:?}");
    assert_eq!(snapshot_names(&client).await, names_before);
    assert!(!snapshot_dir(&server, "k").exists());
}

/// S3 names that are invalid only by their last character or their shape.
#[tokio::test]
async fn export_bucket_names_follow_s3_rules() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "src", "bn").await;
    snapshot_of_cluster(&client, "base", "src").await;
    wait_snapshot(&client, "base").await;
    for bucket in ["ends-with-dash-", "ends-with-dot.", "192.168.1.1"] {
        let result = client
            .copy_snapshot()
            .source_snapshot_name("base")
            .target_snapshot_name("e")
            .target_bucket(bucket)
            .send()
            .await;
        let e = expect_code(result, "InvalidParameterValue");
        assert!(!e.message.is_empty(), "{bucket}: {e:?}");
        assert_eq!(describe_snapshot(&client, "base").await.snapshot_status(), Some("available"), "after {bucket:?}");
    }
}

use e2e::api_error;

/// The export's TargetSnapshotName names an object in the bucket: it may be refused, but it
/// must never place a file outside `<state dir>/exports/<bucket>/` (no `..`, no absolute path).
#[tokio::test]
async fn export_target_names_stay_inside_the_bucket() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "src", "tn").await;
    snapshot_of_cluster(&client, "base", "src").await;
    wait_snapshot(&client, "base").await;
    let bucket_dir = server.state_path().join("exports").join("bucket");
    let absolute = server.state_path().join("absolute").display().to_string();
    for target in ["../../escaped", "../sibling", absolute.as_str()] {
        let result = client
            .copy_snapshot()
            .source_snapshot_name("base")
            .target_snapshot_name(target)
            .target_bucket("bucket")
            .send()
            .await;
        match result {
            Err(e) => {
                let e = api_error::<(), _>(Err(e));
                assert_eq!(e.code, "InvalidParameterValue", "{target}: {e:?}");
            }
            Ok(_) => {
                wait_snapshot(&client, "base").await;
            }
        }
        let outside: Vec<_> = files_under(server.state_path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
            .filter(|p| !p.starts_with(&bucket_dir) && !p.starts_with(server.state_path().join("snapshots")))
            .filter(|p| {
                !p.starts_with(server.state_path().join("nodes")) && p.file_name().is_some_and(|n| n != "dump.rdb")
            })
            .collect();
        assert!(outside.is_empty(), "export {target:?} wrote outside the bucket: {outside:?}");
    }
}
