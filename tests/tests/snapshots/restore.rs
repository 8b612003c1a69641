//! CreateSnapshot of a cluster and of a replication group, and restore of either into a new
//! cluster and a new replication group: every key comes back.

use aws_sdk_elasticache::types::SourceType;
use e2e::{TestServer, expect_code};

use crate::*;

#[tokio::test]
async fn cluster_snapshot_restores_into_a_cluster_and_a_group() {
    let server = TestServer::start().await;
    let client = server.client();
    let port = redis_with_keys(&client, "src", "c1").await;

    let created = snapshot_of_cluster(&client, "snap-c", "src").await;
    assert_eq!(created.snapshot_name(), Some("snap-c"));
    assert_eq!(created.snapshot_status(), Some("creating"), "{created:?}");
    assert_eq!(created.snapshot_source(), Some("manual"));
    assert_eq!(created.cache_cluster_id(), Some("src"));
    assert_eq!(created.replication_group_id(), None);
    // The source is `snapshotting` while the snapshot is `creating`: whenever the snapshot is
    // still creating after the cluster was looked at, the cluster must have been snapshotting.
    let seen = describe_cluster(&client, "src").await.cache_cluster_status().map(str::to_string);
    let still_creating = describe_snapshot(&client, "snap-c").await.snapshot_status() == Some("creating");
    if still_creating {
        assert_eq!(seen.as_deref(), Some("snapshotting"), "cluster status while its snapshot is being taken");
    }

    let s = wait_snapshot(&client, "snap-c").await;
    assert_eq!(wait_cluster_available(&client, "src").await.cache_cluster_status(), Some("available"));
    assert_eq!(s.engine(), Some("redis"));
    assert!(s.engine_version().is_some_and(|v| v.starts_with("7.")), "{s:?}");
    assert_eq!(s.cache_node_type(), Some("cache.t3.micro"));
    assert_eq!(s.num_cache_nodes(), Some(1));
    assert_eq!(s.arn(), Some(snapshot_arn("snap-c").as_str()));
    assert!(s.cache_cluster_create_time().is_some(), "{s:?}");
    assert_eq!(s.node_snapshots().len(), 1, "{s:?}");
    let node = &s.node_snapshots()[0];
    assert_eq!(node.cache_cluster_id(), Some("src"));
    assert_eq!(node.cache_node_id(), Some("0001"));
    assert!(node.cache_size().is_some_and(|size| size.ends_with(" MB")), "CacheSize: {node:?}");
    assert!(node.snapshot_create_time().is_some(), "SnapshotCreateTime: {node:?}");
    assert!(node.cache_node_create_time().is_some(), "{node:?}");

    let file = snapshot_file(&server, "snap-c");
    let rdb = assert_rdb(&file);
    assert!(rdb.len() > KEYS * 10, "an RDB of {KEYS} keys is {} bytes", rdb.len());
    wait_event(&client, SourceType::CacheCluster, "src", &snapshot_event("snap-c", "cache cluster", "src")).await;

    // Later writes to the source do not leak into the snapshot.
    let mut redis = wait_redis(port).await;
    write_keys(&mut redis, "later").await;

    create_redis(&client, "restored", Some("snap-c")).await;
    let restored = wait_cluster_available(&client, "restored").await;
    assert_ne!(node_port(&restored), port);
    wait_keys(node_port(&restored), "c1").await;

    let g = create_group(&client, "restored-g", 2, Some("snap-c")).await;
    assert_eq!(g.status(), Some("creating"));
    let g = wait_group_available(&client, "restored-g").await;
    for (id, _, port) in group_members(&g) {
        wait_keys(port, "c1").await;
        assert!(id.starts_with("restored-g-"), "{id}");
    }
    wait_keys(primary_endpoint_port(&g), "c1").await;
    // The restored group replicates new writes as usual.
    let mut primary = wait_redis(primary_endpoint_port(&g)).await;
    primary.set("after-restore", "1").await.unwrap();
    for (_, role, port) in group_members(&g) {
        if role == "replica" {
            poll_until("replica receiving writes after restore", SETTLE, || async {
                let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
                match r.get("after-restore").await.map_err(|e| e.to_string())? {
                    Some(v) if v == "1" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
    }
    // The source still serves its own (later) data.
    wait_keys(port, "later").await;
}

#[tokio::test]
async fn group_snapshot_is_taken_from_a_replica_and_restores() {
    let server = TestServer::start().await;
    let client = server.client();
    let g = group_with_keys(&client, "grp", 3, "g1").await;
    let (primary, _) = primary_of(&g);

    let saves_before = rdb_saves_of(&g).await;
    let created = snapshot_of_group(&client, "snap-g", "grp").await;
    assert_eq!(created.snapshot_status(), Some("creating"));
    assert_eq!(created.replication_group_id(), Some("grp"));
    assert_eq!(created.cache_cluster_id(), None, "a group snapshot names no cluster: {created:?}");
    let seen = describe_group(&client, "grp").await.status().map(str::to_string);
    if describe_snapshot(&client, "snap-g").await.snapshot_status() == Some("creating") {
        assert_eq!(seen.as_deref(), Some("snapshotting"), "group status while its snapshot is being taken");
    }

    let s = wait_snapshot(&client, "snap-g").await;
    assert_eq!(wait_group_available(&client, "grp").await.status(), Some("available"));
    assert_eq!(s.replication_group_id(), Some("grp"));
    assert_eq!(s.replication_group_description(), Some("group grp"));
    assert_eq!(s.num_node_groups(), Some(1));
    assert_eq!(s.node_snapshots().len(), 1, "{s:?}");
    let node = &s.node_snapshots()[0];
    let taken_from = node.cache_cluster_id().unwrap_or_default();
    assert!(taken_from.starts_with("grp-"), "{node:?}");
    assert_ne!(taken_from, primary, "a group snapshot is taken from a replica, not the primary");
    assert_eq!(node.node_group_id(), Some("0001"));
    assert!(node.cache_size().is_some() && node.snapshot_create_time().is_some(), "{node:?}");
    assert_rdb(&snapshot_file(&server, "snap-g"));
    wait_event(&client, SourceType::ReplicationGroup, "grp", &snapshot_event("snap-g", "replication group", "grp"))
        .await;
    // Only the replica the snapshot names ran a BGSAVE for it.
    let saves_after = rdb_saves_of(&g).await;
    for (id, after) in &saves_after {
        let before = saves_before[id];
        if id == taken_from {
            assert!(*after > before, "{id} (the snapshot's node) saved: {before} -> {after}");
        } else {
            assert_eq!(*after, before, "{id} ran no save for the snapshot");
        }
    }

    create_redis(&client, "from-group", Some("snap-g")).await;
    let c = wait_cluster_available(&client, "from-group").await;
    wait_keys(node_port(&c), "g1").await;

    create_group(&client, "grp2", 2, Some("snap-g")).await;
    let g2 = wait_group_available(&client, "grp2").await;
    for (_, _, port) in group_members(&g2) {
        wait_keys(port, "g1").await;
    }
}

#[tokio::test]
async fn restoring_an_unknown_snapshot_creates_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let e = expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("nope")
            .engine("redis")
            .cache_node_type("cache.t3.micro")
            .num_cache_nodes(1)
            .snapshot_name("missing")
            .send()
            .await,
        "SnapshotNotFoundFault",
    );
    assert_eq!(e.status, 404, "{e:?}");
    let e = expect_code(
        client
            .create_replication_group()
            .replication_group_id("nope-g")
            .replication_group_description("d")
            .engine("redis")
            .cache_node_type("cache.t3.micro")
            .num_cache_clusters(2)
            .snapshot_name("missing")
            .send()
            .await,
        "SnapshotNotFoundFault",
    );
    assert_eq!(e.status, 404, "{e:?}");
    let clusters = client.describe_cache_clusters().send().await.unwrap();
    assert!(clusters.cache_clusters().is_empty(), "{clusters:?}");
    let groups = client.describe_replication_groups().send().await.unwrap();
    assert!(groups.replication_groups().is_empty(), "{groups:?}");
    assert!(admin_nodes(&server).await.is_empty(), "no node started");
}

/// `rdb_saves` (INFO persistence) of every member of a group, by cache cluster id.
async fn rdb_saves_of(g: &aws_sdk_elasticache::types::ReplicationGroup) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for (id, _, port) in group_members(g) {
        let mut redis = wait_redis(port).await;
        let info = match redis.command(&["INFO", "persistence"]).await.expect("INFO") {
            Resp::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("INFO answered {other:?}"),
        };
        let saves = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("rdb_saves:"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no rdb_saves in {info}"));
        out.insert(id, saves);
    }
    out
}
