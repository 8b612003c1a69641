//! Online migration into a replication group with cluster mode enabled, from a customer's
//! Redis Cluster (three redis-server primaries the test starts on loopback) into a group of
//! two shards: every key and every write made during the migration arrives, the group is
//! read-only while it migrates (and cannot be resharded), CompleteMigration makes it
//! writable; the migration goes on after an emulator restart; and the refusals: a source in
//! the other cluster mode (both ways), a source asking for a password, a group not under
//! migration, a source shard gone (not in sync).

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{CustomerNodeEndpoint, ReplicationGroup, SourceType};
use e2e::cluster::{cluster_connection, key, missing_keys, value};
use e2e::source::{SourceCluster, SourceRedis};
use e2e::{RedisClient, SETTLE, TestServer, events_of, expect_code, poll_until, wait_event, wait_group_available};
use redis::AsyncCommands;

const KEYS: usize = 30_000;

fn endpoint(port: u16) -> CustomerNodeEndpoint {
    CustomerNodeEndpoint::builder().address("127.0.0.1").port(i32::from(port)).build()
}

/// A Multi-AZ group (AWS's requirement for a migration target): cluster mode enabled with
/// `shards` shards of one replica each, or disabled with a primary and a replica.
async fn create(client: &Client, id: &str, shards: Option<i32>) -> ReplicationGroup {
    let request = client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("migration target")
        .cache_node_type("cache.t3.micro")
        .engine("redis")
        .automatic_failover_enabled(true)
        .multi_az_enabled(true);
    let request = match shards {
        Some(shards) => request.num_node_groups(shards).replicas_per_node_group(1),
        None => request.num_cache_clusters(2),
    };
    request.send().await.expect("CreateReplicationGroup");
    wait_group_available(client, id).await
}

fn config_port(g: &ReplicationGroup) -> u16 {
    g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16
}

/// The keys the group's shard primaries hold together.
async fn keys_in(server: &TestServer, group: &str) -> Result<usize, String> {
    let mut total = 0;
    for node in e2e::admin_nodes(server).await {
        if node["replication_group_id"] != group || node["role"] != "primary" {
            continue;
        }
        let port = node["port"].as_u64().unwrap_or(0) as u16;
        let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        total += r.dbsize().await.map_err(|e| e.to_string())?;
    }
    Ok(total)
}

/// Polls until an event of `group` starts with `prefix`; the events.
async fn wait_events_matching(client: &Client, group: &str, prefix: &str) -> Vec<String> {
    poll_until(&format!("an event of {group} starting {prefix:?}"), SETTLE, || async {
        let events = events_of(client, SourceType::ReplicationGroup, group).await;
        if events.iter().any(|e| e.starts_with(prefix)) { Ok(events) } else { Err(format!("{events:?}")) }
    })
    .await
}

#[tokio::test]
async fn a_sharded_group_takes_every_key_of_a_live_source_cluster_and_is_writable_after_cutover() {
    let server = TestServer::start().await;
    let client = server.client();
    let source = SourceCluster::start(3).await;
    let mut seed = source.connection().await;
    e2e::cluster::write_keys(&mut seed, 0..KEYS).await.expect("seed the source");
    let g = create(&client, "target", Some(2)).await;
    let port = config_port(&g);

    client
        .test_migration()
        .replication_group_id("target")
        .customer_node_endpoint_list(endpoint(source.port()))
        .send()
        .await
        .expect("TestMigration");
    wait_event(&client, SourceType::ReplicationGroup, "target", "Test Migration successful for target").await;

    // A writer on the source, over every shard, for the whole migration.
    let writer = source.writer().await;
    let out = client
        .start_migration()
        .replication_group_id("target")
        .customer_node_endpoint_list(endpoint(source.port()))
        .send()
        .await
        .expect("StartMigration");
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("migrating"));
    poll_until("every seeded key in the group", SETTLE, || async {
        let size = keys_in(&server, "target").await?;
        if size >= KEYS { Ok(()) } else { Err(format!("{size} keys")) }
    })
    .await;

    // Read-only while it migrates; its shards stay as they are.
    let mut target = cluster_connection(port).await.expect("cluster client of the group");
    let got: Option<String> = target.get(key(7)).await.expect("a read while migrating");
    assert_eq!(got, Some(value(7)));
    poll_until("writes refused while migrating", SETTLE, || async {
        match target.clone().set::<_, _, ()>("mine", "x").await {
            Err(e) if e.to_string().contains("NOPERM") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    expect_code(
        client
            .modify_replication_group_shard_configuration()
            .replication_group_id("target")
            .node_group_count(3)
            .apply_immediately(true)
            .send()
            .await,
        "InvalidReplicationGroupState",
    );
    expect_code(
        client
            .start_migration()
            .replication_group_id("target")
            .customer_node_endpoint_list(endpoint(source.port()))
            .send()
            .await,
        "ReplicationGroupAlreadyUnderMigrationFault",
    );

    let last = writer.stop().await.expect("every write to the source acknowledged");
    assert!(last > 0, "the writer wrote during the migration");
    client.complete_migration().replication_group_id("target").send().await.expect("CompleteMigration");
    wait_event(&client, SourceType::ReplicationGroup, "target", "Complete Migration successful for target").await;
    let g = wait_group_available(&client, "target").await;
    assert_eq!(g.node_groups().len(), 2, "the group keeps its shards");

    // Every key arrived, and every write the source acknowledged; writes go in again.
    assert_eq!(keys_in(&server, "target").await.expect("DBSIZE"), KEYS + last, "no key lost, none made up");
    assert_eq!(missing_keys(&mut target, 0..KEYS).await, Vec::<String>::new());
    for n in 0..last {
        let got: Option<String> = target.get(format!("live:{n}")).await.expect("GET");
        assert_eq!(got, Some(n.to_string()), "live:{n}");
    }
    poll_until("a write after CompleteMigration", SETTLE, || async {
        target.clone().set::<_, _, ()>("mine", "x").await.map_err(|e| e.to_string())
    })
    .await;
    // The source's later writes stay there: the group follows it no more.
    let () = source.connection().await.set("after", "x").await.expect("a write to the source");
    let got: Option<String> = target.get("after").await.expect("GET");
    assert_eq!(got, None);
}

#[tokio::test]
async fn cluster_mode_migration_refusals_answer_as_aws_does() {
    let server = TestServer::start().await;
    let client = server.client();
    let plain = SourceRedis::start(&[]).await;
    let cluster = SourceCluster::start(2).await;
    let locked = SourceRedis::start(&["--requirepass", "secret-secret-secret"]).await;
    create(&client, "sharded", Some(2)).await;
    create(&client, "single", None).await;
    let test = |id: &str, port: u16| {
        client.test_migration().replication_group_id(id).customer_node_endpoint_list(endpoint(port)).send()
    };
    expect_code(
        client.complete_migration().replication_group_id("sharded").send().await,
        "ReplicationGroupNotUnderMigrationFault",
    );
    let two = vec![endpoint(cluster.port()), endpoint(cluster.port())];
    expect_code(
        client
            .start_migration()
            .replication_group_id("sharded")
            .set_customer_node_endpoint_list(Some(two))
            .send()
            .await,
        "InvalidParameterValue",
    );

    // The source and the target have the same cluster mode, or the migration fails.
    test("sharded", plain.port).await.expect("TestMigration");
    let events = wait_events_matching(&client, "sharded", "Test Migration failed for sharded").await;
    assert!(events.iter().any(|e| e.contains("does not run in cluster mode")), "{events:?}");
    test("single", cluster.port()).await.expect("TestMigration");
    let events = wait_events_matching(&client, "single", "Test Migration failed for single").await;
    assert!(events.iter().any(|e| e.contains("runs in cluster mode")), "{events:?}");
    client
        .start_migration()
        .replication_group_id("sharded")
        .customer_node_endpoint_list(endpoint(plain.port))
        .send()
        .await
        .expect("StartMigration");
    let events = wait_events_matching(&client, "sharded", "Migration failed for sharded").await;
    assert!(events.iter().any(|e| e.contains("does not run in cluster mode")), "{events:?}");
    let g = wait_group_available(&client, "sharded").await;
    // Writable again: the failed migration left no read-only user behind.
    let con = cluster_connection(config_port(&g)).await.expect("cluster client");
    poll_until("a write after the failed migration", SETTLE, || async {
        con.clone().set::<_, _, ()>("k", "v").await.map_err(|e| e.to_string())
    })
    .await;

    // A source asking for a password.
    test("sharded", locked.port).await.expect("TestMigration");
    poll_until("the AUTH source refused", SETTLE, || async {
        let events = events_of(&client, SourceType::ReplicationGroup, "sharded").await;
        let refused =
            events.iter().any(|e| e.starts_with("Test Migration failed") && e.contains("requires authentication"));
        if refused { Ok(()) } else { Err(format!("{events:?}")) }
    })
    .await;

    // A source shard gone: not in sync, the group keeps migrating; Force completes at once.
    let mut cluster = cluster;
    let mut seed = cluster.connection().await;
    e2e::cluster::write_keys(&mut seed, 0..100).await.expect("seed the source");
    client
        .start_migration()
        .replication_group_id("sharded")
        .customer_node_endpoint_list(endpoint(cluster.port()))
        .send()
        .await
        .expect("StartMigration");
    // The full sync replaces what the source's slots held (the group's own `k` goes).
    poll_until("the source's keys in the group", SETTLE, || async {
        let size = keys_in(&server, "sharded").await?;
        if size >= 100 { Ok(()) } else { Err(format!("{size} keys")) }
    })
    .await;
    drop(cluster.nodes.pop());
    client.complete_migration().replication_group_id("sharded").send().await.expect("CompleteMigration");
    wait_event(
        &client,
        SourceType::ReplicationGroup,
        "sharded",
        "Complete Migration failed for sharded: data is not in sync",
    )
    .await;
    assert_eq!(e2e::describe_group(&client, "sharded").await.status(), Some("migrating"));
    client.complete_migration().replication_group_id("sharded").force(true).send().await.expect("CompleteMigration");
    wait_event(&client, SourceType::ReplicationGroup, "sharded", "Complete Migration successful for sharded").await;
    wait_group_available(&client, "sharded").await;
}

#[tokio::test]
async fn a_cluster_mode_migration_goes_on_after_the_emulator_restarts() {
    let server = TestServer::start().await;
    let client = server.client();
    let source = SourceCluster::start(2).await;
    let mut seed = source.connection().await;
    e2e::cluster::write_keys(&mut seed, 0..1_000).await.expect("seed the source");
    let port = config_port(&create(&client, "again", Some(2)).await);
    client
        .start_migration()
        .replication_group_id("again")
        .customer_node_endpoint_list(endpoint(source.port()))
        .send()
        .await
        .expect("StartMigration");
    poll_until("the source's keys in the group", SETTLE, || async {
        let size = keys_in(&server, "again").await?;
        if size >= 1_000 { Ok(()) } else { Err(format!("{size} keys")) }
    })
    .await;

    let server = TestServer::start_in(server.stop().await).await;
    let client = server.client();
    assert_eq!(e2e::describe_group(&client, "again").await.status(), Some("migrating"));
    // The source's writes made after the restart arrive; the group is still read-only.
    e2e::cluster::write_keys(&mut seed, 1_000..1_200).await.expect("writes to the source");
    poll_until("the later writes in the group", SETTLE, || async {
        let size = keys_in(&server, "again").await?;
        if size >= 1_200 { Ok(()) } else { Err(format!("{size} keys")) }
    })
    .await;
    let target = poll_until("the group's cluster back", SETTLE, || async {
        cluster_connection(port).await.map_err(|e| e.to_string())
    })
    .await;
    poll_until("writes refused after the restart", SETTLE, || async {
        match target.clone().set::<_, _, ()>("mine", "x").await {
            Err(e) if e.to_string().contains("NOPERM") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    client.complete_migration().replication_group_id("again").send().await.expect("CompleteMigration");
    wait_event(&client, SourceType::ReplicationGroup, "again", "Complete Migration successful for again").await;
    wait_group_available(&client, "again").await;
    let mut target = cluster_connection(port).await.expect("cluster client");
    assert_eq!(missing_keys(&mut target, 0..1_200).await, Vec::<String>::new());
    poll_until("a write after CompleteMigration", SETTLE, || async {
        target.clone().set::<_, _, ()>("mine", "x").await.map_err(|e| e.to_string())
    })
    .await;
}
