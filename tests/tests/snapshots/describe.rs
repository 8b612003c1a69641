//! DescribeSnapshots filters and pagination, ShowNodeGroupConfig, and snapshot tags.

use aws_sdk_elasticache::types::Tag;
use e2e::TestServer;

use crate::*;

#[tokio::test]
async fn filters_pages_and_node_group_config() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "c", "f").await;
    create_group(&client, "g", 2, None).await;
    wait_group_available(&client, "g").await;
    snapshot_of_cluster(&client, "of-cluster", "c").await;
    snapshot_of_group(&client, "of-group", "g").await;
    wait_snapshot(&client, "of-cluster").await;
    wait_snapshot(&client, "of-group").await;
    // 23 copies (cheap: no BGSAVE) so that 25 snapshots span two pages of 20.
    for i in 0..23 {
        client
            .copy_snapshot()
            .source_snapshot_name("of-cluster")
            .target_snapshot_name(format!("copy-{i:02}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CopySnapshot {i}: {e:?}"));
    }
    for i in 0..23 {
        wait_snapshot(&client, &format!("copy-{i:02}")).await;
    }

    let names = |out: &aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput| -> Vec<String> {
        out.snapshots().iter().map(|s| s.snapshot_name().unwrap_or_default().to_string()).collect()
    };
    let by_cluster = client.describe_snapshots().cache_cluster_id("c").max_records(100).send().await.unwrap();
    assert_eq!(names(&by_cluster).len(), 24, "the snapshot of c and its 23 copies: {:?}", names(&by_cluster));
    assert!(!names(&by_cluster).contains(&"of-group".to_string()));
    let by_group = client.describe_snapshots().replication_group_id("g").send().await.unwrap();
    assert_eq!(names(&by_group), ["of-group"]);
    let manual = client.describe_snapshots().snapshot_source("manual").max_records(100).send().await.unwrap();
    assert_eq!(names(&manual).len(), 25);
    let automated = client.describe_snapshots().snapshot_source("automated").send().await.unwrap();
    assert!(automated.snapshots().is_empty(), "{automated:?}");

    // Pages of 20: 20 then 5, no duplicates, nothing missing.
    let first = client.describe_snapshots().max_records(20).send().await.unwrap();
    assert_eq!(first.snapshots().len(), 20);
    let marker = first.marker().expect("a marker after a full page").to_string();
    let second = client.describe_snapshots().max_records(20).marker(marker).send().await.unwrap();
    assert_eq!(second.snapshots().len(), 5);
    assert!(second.marker().is_none(), "{:?}", second.marker());
    let mut seen = names(&first);
    seen.extend(names(&second));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25, "{seen:?}");
    // Filters and pages combine.
    let f1 = client.describe_snapshots().cache_cluster_id("c").max_records(20).send().await.unwrap();
    assert_eq!(f1.snapshots().len(), 20);
    let f2 =
        client.describe_snapshots().cache_cluster_id("c").max_records(20).set_marker(f1.marker).send().await.unwrap();
    assert_eq!(f2.snapshots().len(), 4);

    // Node group configuration only on request.
    let plain = describe_snapshot(&client, "of-group").await;
    assert!(plain.node_snapshots()[0].node_group_configuration().is_none(), "{plain:?}");
    let shown =
        client.describe_snapshots().snapshot_name("of-group").show_node_group_config(true).send().await.unwrap();
    let config = shown.snapshots()[0].node_snapshots()[0]
        .node_group_configuration()
        .unwrap_or_else(|| panic!("ShowNodeGroupConfig without NodeGroupConfiguration: {shown:?}"));
    assert_eq!(config.node_group_id(), Some("0001"));
    assert!(config.primary_availability_zone().is_some_and(|z| e2e::ZONES.contains(&z)), "{config:?}");
}

#[tokio::test]
async fn snapshot_tags() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "c", "t").await;
    client
        .create_snapshot()
        .snapshot_name("tagged")
        .cache_cluster_id("c")
        .tags(Tag::builder().key("team").value("cache").build())
        .send()
        .await
        .expect("CreateSnapshot with tags");
    wait_snapshot(&client, "tagged").await;
    let arn = snapshot_arn("tagged");
    client
        .add_tags_to_resource()
        .resource_name(&arn)
        .tags(Tag::builder().key("env").value("test").build())
        .send()
        .await
        .expect("AddTagsToResource on a snapshot");
    let listed = client.list_tags_for_resource().resource_name(&arn).send().await.expect("ListTagsForResource");
    let mut tags: Vec<(String, String)> = listed
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
        .collect();
    tags.sort();
    assert_eq!(tags, [("env".to_string(), "test".to_string()), ("team".to_string(), "cache".to_string())]);
    // A copy starts with its own tags, not the source's.
    client
        .copy_snapshot()
        .source_snapshot_name("tagged")
        .target_snapshot_name("copy")
        .tags(Tag::builder().key("copy").value("yes").build())
        .send()
        .await
        .expect("CopySnapshot with tags");
    let listed = client.list_tags_for_resource().resource_name(snapshot_arn("copy")).send().await.unwrap();
    let keys: Vec<&str> = listed.tag_list().iter().filter_map(|t| t.key()).collect();
    assert_eq!(keys, ["copy"]);
    let e = e2e::api_error(client.list_tags_for_resource().resource_name(snapshot_arn("missing")).send().await);
    assert_eq!(e.code, "SnapshotNotFoundFault", "{e:?}");
}
