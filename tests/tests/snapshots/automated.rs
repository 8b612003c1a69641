//! Automated snapshots through `POST /_emulator/snapshots/automated`: each call is one "day"
//! of a sped-up clock: one automated snapshot of every available cluster and group whose
//! SnapshotRetentionLimit is above zero, and the oldest beyond the limit pruned.

use e2e::TestServer;

use crate::*;

const PATH: &str = "/_emulator/snapshots/automated";

/// The automated snapshots of a source (cluster or group), oldest first, by creation time.
async fn automated_of(
    client: &aws_sdk_elasticache::Client,
    cluster: Option<&str>,
    group: Option<&str>,
) -> Vec<Snapshot> {
    let out = client
        .describe_snapshots()
        .snapshot_source("automated")
        .set_cache_cluster_id(cluster.map(str::to_string))
        .set_replication_group_id(group.map(str::to_string))
        .max_records(100)
        .send()
        .await
        .expect("DescribeSnapshots automated");
    let mut all = out.snapshots().to_vec();
    all.sort_by_key(|s| {
        s.node_snapshots().first().and_then(|n| n.snapshot_create_time()).map(|t| (t.secs(), t.subsec_nanos()))
    });
    all
}

fn names(snapshots: &[Snapshot]) -> Vec<String> {
    snapshots.iter().map(|s| s.snapshot_name().unwrap_or_default().to_string()).collect()
}

/// One "day": POST, then wait until every expected automated snapshot is available and the
/// sources are available again (a snapshotting source would be skipped by the next day).
async fn one_day(
    server: &TestServer,
    client: &aws_sdk_elasticache::Client,
    expect_cluster: usize,
    expect_group: usize,
) -> (Vec<String>, Vec<String>) {
    let (status, body) = admin_post(server, PATH).await;
    assert_eq!(status, 200, "POST {PATH}: {body}");
    poll_until("automated snapshots available and pruned", SETTLE, || async {
        let c = automated_of(client, Some("auto-c"), None).await;
        let g = automated_of(client, None, Some("auto-g")).await;
        let all_available = c.iter().chain(&g).all(|s| s.snapshot_status() == Some("available"));
        let sources_available = describe_cluster(client, "auto-c").await.cache_cluster_status() == Some("available")
            && describe_group(client, "auto-g").await.status() == Some("available");
        if c.len() == expect_cluster && g.len() == expect_group && all_available && sources_available {
            Ok((names(&c), names(&g)))
        } else {
            Err(format!(
                "cluster {:?} group {:?}",
                c.iter().map(|s| (s.snapshot_name(), s.snapshot_status())).collect::<Vec<_>>(),
                g.iter().map(|s| (s.snapshot_name(), s.snapshot_status())).collect::<Vec<_>>()
            ))
        }
    })
    .await
}

#[tokio::test]
async fn retention_keeps_the_newest_automated_snapshots() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("auto-c")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .snapshot_retention_limit(2)
        .send()
        .await
        .expect("CreateCacheCluster with SnapshotRetentionLimit");
    client
        .create_replication_group()
        .replication_group_id("auto-g")
        .replication_group_description("automated")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .snapshot_retention_limit(2)
        .send()
        .await
        .expect("CreateReplicationGroup with SnapshotRetentionLimit");
    redis_with_keys(&client, "no-auto", "na").await;
    let port = node_port(&wait_cluster_available(&client, "auto-c").await);
    wait_group_available(&client, "auto-g").await;
    let mut redis = wait_redis(port).await;
    write_keys(&mut redis, "day").await;
    // A manual snapshot of the same cluster is never pruned.
    snapshot_of_cluster(&client, "manual-one", "auto-c").await;
    wait_snapshot(&client, "manual-one").await;
    wait_cluster_available(&client, "auto-c").await;

    let (c1, g1) = one_day(&server, &client, 1, 1).await;
    let (c2, g2) = one_day(&server, &client, 2, 2).await;
    let (c3, g3) = one_day(&server, &client, 2, 2).await;

    for (id, day1, day2, day3) in [("auto-c", &c1, &c2, &c3), ("auto-g", &g1, &g2, &g3)] {
        let prefix = format!("automatic.{id}-");
        for name in day1.iter().chain(day2).chain(day3) {
            assert!(name.starts_with(&prefix), "automated snapshot name {name:?}");
            let stamp = &name[prefix.len()..];
            let digits: Vec<&str> = stamp.split('-').collect();
            assert!(
                digits.len() >= 5 && digits.iter().all(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())),
                "YYYY-MM-DD-HH-MM[...] in {name:?}"
            );
            assert_eq!(digits[0].len(), 4, "{name}");
        }
        assert_eq!(day2[0], day1[0], "{id}: day 2 keeps day 1's snapshot");
        assert_ne!(day2[1], day1[0]);
        let oldest = &day1[0];
        assert!(!day3.contains(oldest), "{id}: the oldest automated snapshot {oldest} pruned on day 3: {day3:?}");
        assert_eq!(day3, &vec![day2[1].clone(), day3[1].clone()], "{id}: day 2's and day 3's snapshots remain");
        assert!(!day2.contains(&day3[1]), "{id}: day 3 added a new snapshot");
        assert!(!snapshot_dir(&server, oldest).exists(), "{id}: files of the pruned {oldest} removed");
        for name in day3 {
            let s = describe_snapshot(&client, name).await;
            assert_eq!(s.snapshot_source(), Some("automated"), "{s:?}");
            assert_eq!(s.snapshot_retention_limit(), Some(2), "{s:?}");
            assert_rdb(&snapshot_file(&server, name));
        }
    }
    let e = e2e::expect_code(client.describe_snapshots().snapshot_name(&c1[0]).send().await, "SnapshotNotFoundFault");
    assert_eq!(e.status, 404);

    // Nothing automated for a cluster without retention; the manual snapshot is untouched.
    let none = automated_of(&client, Some("no-auto"), None).await;
    assert!(none.is_empty(), "{:?}", names(&none));
    assert_eq!(describe_snapshot(&client, "manual-one").await.snapshot_source(), Some("manual"));
    let manual = client.describe_snapshots().snapshot_source("manual").send().await.unwrap();
    assert_eq!(names(manual.snapshots()), ["manual-one"]);

    // An automated snapshot restores like any other.
    create_redis(&client, "from-auto", Some(&c3[1])).await;
    let c = wait_cluster_available(&client, "from-auto").await;
    wait_keys(node_port(&c), "day").await;
}

/// AWS: "If you delete a cluster, all of its automatic backups are also deleted. If you delete
/// a replication group, all of the automatic backups from the clusters in that group are also
/// deleted." Manual and final snapshots stay.
#[tokio::test]
async fn automated_snapshots_go_with_their_source() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("auto-c")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .snapshot_retention_limit(3)
        .send()
        .await
        .expect("CreateCacheCluster");
    client
        .create_replication_group()
        .replication_group_id("auto-g")
        .replication_group_description("automated")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .snapshot_retention_limit(3)
        .send()
        .await
        .expect("CreateReplicationGroup");
    wait_cluster_available(&client, "auto-c").await;
    wait_group_available(&client, "auto-g").await;
    snapshot_of_cluster(&client, "manual-c", "auto-c").await;
    snapshot_of_group(&client, "manual-g", "auto-g").await;
    wait_snapshot(&client, "manual-c").await;
    wait_snapshot(&client, "manual-g").await;
    let (c, g) = one_day(&server, &client, 1, 1).await;

    client
        .delete_cache_cluster()
        .cache_cluster_id("auto-c")
        .final_snapshot_identifier("final-c")
        .send()
        .await
        .expect("DeleteCacheCluster");
    client.delete_replication_group().replication_group_id("auto-g").send().await.expect("DeleteReplicationGroup");
    wait_cluster_gone(&client, "auto-c").await;
    wait_group_gone(&client, "auto-g").await;
    wait_snapshot(&client, "final-c").await;
    poll_until("automated snapshots deleted with their source", SETTLE, || async {
        let names = snapshot_names(&client).await;
        if names == ["final-c", "manual-c", "manual-g"] { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
    for name in c.iter().chain(&g) {
        assert!(!snapshot_dir(&server, name).exists(), "files of {name} removed");
    }
}
