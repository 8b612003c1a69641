//! Cluster mode: a snapshot holds one RDB file per shard (with the shard's slots), and a
//! restore spreads every key to the shard that owns its slot, whatever the number of shards
//! before and after; a standalone snapshot seeds a sharded group too.

use aws_sdk_elasticache::types::ReplicationGroup;
use e2e::cluster::{cluster_connection, missing_keys, write_keys};
use e2e::{TestServer, expect_code};

use crate::*;

async fn sharded(client: &Client, id: &str, shards: i32, snapshot: Option<&str>) -> ReplicationGroup {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("sharded")
        .cache_node_type("cache.t3.micro")
        .num_node_groups(shards)
        .replicas_per_node_group(1)
        .set_snapshot_name(snapshot.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id}: {e:?}"));
    wait_group_available(client, id).await
}

fn config_port(g: &ReplicationGroup) -> u16 {
    g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16
}

#[tokio::test]
async fn a_sharded_snapshot_restores_into_any_number_of_shards() {
    let server = TestServer::start().await;
    let client = server.client();
    let g = sharded(&client, "src", 3, None).await;
    let mut con = cluster_connection(config_port(&g)).await.expect("cluster client");
    write_keys(&mut con, 0..KEYS).await.expect("writes");

    snapshot_of_group(&client, "snap-3", "src").await;
    let s = wait_snapshot(&client, "snap-3").await;
    assert_eq!(s.num_node_groups(), Some(3));
    let shards: Vec<(Option<&str>, Option<&str>)> =
        s.node_snapshots().iter().map(|n| (n.node_group_id(), n.cache_cluster_id())).collect();
    assert_eq!(
        shards,
        [
            (Some("0001"), Some("src-0001-002")),
            (Some("0002"), Some("src-0002-002")),
            (Some("0003"), Some("src-0003-002"))
        ],
        "one file per shard, taken from its replica"
    );
    assert!(s.node_snapshots().iter().all(|n| n.cache_size().is_some()), "{s:?}");
    let described = client.describe_snapshots().snapshot_name("snap-3").show_node_group_config(true).send().await;
    let slots: Vec<Option<String>> = described.unwrap().snapshots()[0]
        .node_snapshots()
        .iter()
        .map(|n| n.node_group_configuration().and_then(|c| c.slots()).map(str::to_string))
        .collect();
    assert_eq!(slots, [Some("0-5461".into()), Some("5462-10922".into()), Some("10923-16383".into())]);
    for shard in ["0001", "0002", "0003"] {
        let file = server.state_path().join(format!("snapshots/{REGION}/{ACCOUNT}/snap-3/{shard}.rdb"));
        assert!(file.is_file(), "{} missing", file.display());
    }

    // Fewer shards than the source: every key lands on the shard owning its slot.
    let two = sharded(&client, "two", 2, Some("snap-3")).await;
    let mut con = cluster_connection(config_port(&two)).await.expect("cluster client");
    assert_eq!(missing_keys(&mut con, 0..KEYS).await, Vec::<String>::new());

    // Its exported files, named in SnapshotArns, seed a sharded group too.
    client
        .copy_snapshot()
        .source_snapshot_name("snap-3")
        .target_snapshot_name("nightly")
        .target_bucket("backups")
        .send()
        .await
        .expect("export");
    let exported: Vec<String> = ["0001", "0002", "0003"].iter().map(|s| format!("nightly-{s}.rdb")).collect();
    poll_until("the exported files", SETTLE, || async {
        let dir = server.state_path().join("exports/backups");
        let missing: Vec<&String> = exported.iter().filter(|f| !dir.join(f).is_file()).collect();
        if missing.is_empty() && wait_snapshot(&client, "snap-3").await.snapshot_status() == Some("available") {
            Ok(())
        } else {
            Err(format!("{missing:?}"))
        }
    })
    .await;
    let arns: Vec<String> = exported.iter().map(|f| format!("arn:aws:s3:::backups/{f}")).collect();
    client
        .create_replication_group()
        .replication_group_id("from-files")
        .replication_group_description("sharded")
        .cache_node_type("cache.t3.micro")
        .num_node_groups(2)
        .set_snapshot_arns(Some(arns.clone()))
        .send()
        .await
        .expect("CreateReplicationGroup with SnapshotArns");
    let from_files = wait_group_available(&client, "from-files").await;
    let mut con = cluster_connection(config_port(&from_files)).await.expect("cluster client");
    assert_eq!(missing_keys(&mut con, 0..KEYS).await, Vec::<String>::new());
    expect_code(
        client
            .create_replication_group()
            .replication_group_id("flat-files")
            .replication_group_description("d")
            .cache_node_type("cache.t3.micro")
            .set_snapshot_arns(Some(arns))
            .send()
            .await,
        "InvalidParameterCombination",
    );

    // A sharded snapshot needs cluster mode.
    expect_code(
        client
            .create_replication_group()
            .replication_group_id("flat")
            .replication_group_description("d")
            .cache_node_type("cache.t3.micro")
            .snapshot_name("snap-3")
            .send()
            .await,
        "InvalidParameterCombination",
    );
    expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("single")
            .engine("redis")
            .cache_node_type("cache.t3.micro")
            .snapshot_name("snap-3")
            .send()
            .await,
        "InvalidParameterCombination",
    );
}

#[tokio::test]
async fn a_standalone_snapshot_seeds_a_sharded_group() {
    let server = TestServer::start().await;
    let client = server.client();
    redis_with_keys(&client, "plain", "p1").await;
    snapshot_of_cluster(&client, "snap-1", "plain").await;
    wait_snapshot(&client, "snap-1").await;

    let g = sharded(&client, "spread", 3, Some("snap-1")).await;
    let port_of_config = config_port(&g);
    let mut con = cluster_connection(port_of_config).await.expect("cluster client");
    for i in 0..KEYS {
        let got: Option<String> = redis::AsyncCommands::get(&mut con, key(i)).await.expect("GET");
        assert_eq!(got.as_deref(), Some(value("p1", i).as_str()), "{}", key(i));
    }
    // Every shard got its share, and nothing else.
    let mut r = e2e::RedisClient::connect("127.0.0.1", port_of_config).await.unwrap();
    let nodes = r.command(&["CLUSTER", "NODES"]).await.unwrap().text().unwrap_or_default();
    let primaries: Vec<u16> = nodes
        .lines()
        .filter(|l| l.contains("master"))
        .filter_map(|l| l.split_whitespace().nth(1)?.split(['@', ':']).nth(1)?.parse().ok())
        .collect();
    assert_eq!(primaries.len(), 3, "{nodes}");
    let mut total = 0;
    for primary in primaries {
        let keys = dbsize(primary).await;
        assert!(keys > 0, "primary on {primary} got no keys");
        total += keys;
    }
    assert_eq!(total, KEYS as i64);
}
