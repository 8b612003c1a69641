//! Global datastores across regions on real nodes: a secondary region's group replicates
//! from the primary region's, is read-only to clients, takes over on
//! FailoverGlobalReplicationGroup with no acknowledged write lost (also while the primary
//! region is down), leaves with DisassociateGlobalReplicationGroup as a standalone group; and
//! AWS's answers to what a datastore refuses.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::GlobalReplicationGroup;
use e2e::expect_code;

use crate::support::*;

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
/// us-east-1's prefix in AWS's table, with the suffix the tests give.
const GLOBAL: &str = "ldgnf-shop";

async fn create_primary(client: &Client, id: &str) {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("primary region")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.m5.large")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id}: {e:?}"));
    wait_group_available(client, id).await;
}

async fn create_secondary(client: &Client, id: &str) -> aws_sdk_elasticache::types::ReplicationGroup {
    let out = client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("secondary region")
        .global_replication_group_id(GLOBAL)
        .num_cache_clusters(2)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id} as a secondary: {e:?}"));
    out.replication_group.expect("a group")
}

async fn describe_global(client: &Client) -> GlobalReplicationGroup {
    let out = client
        .describe_global_replication_groups()
        .global_replication_group_id(GLOBAL)
        .show_member_info(true)
        .send()
        .await
        .expect("DescribeGlobalReplicationGroups");
    out.global_replication_groups().first().cloned().expect("the datastore")
}

/// Polls until the datastore shows `status` with a member of `region` as its primary.
async fn wait_global(client: &Client, status: &str, primary_region: &str) -> GlobalReplicationGroup {
    poll_until(&format!("{GLOBAL} {status}, primary in {primary_region}"), SETTLE, || async {
        let g = describe_global(client).await;
        let primary =
            g.members().iter().find(|m| m.role() == Some("PRIMARY")).and_then(|m| m.replication_group_region());
        if g.status() == Some(status) && primary == Some(primary_region) { Ok(g) } else { Err(format!("{g:?}")) }
    })
    .await
}

#[tokio::test]
async fn a_secondary_region_replicates_takes_over_and_leaves() {
    let server = e2e::TestServer::start().await;
    let (east, west) = (server.client_in(EAST), server.client_in(WEST));
    create_primary(&east, "orders").await;

    let out = east
        .create_global_replication_group()
        .global_replication_group_id_suffix("shop")
        .primary_replication_group_id("orders")
        .send()
        .await
        .expect("CreateGlobalReplicationGroup");
    let created = out.global_replication_group().expect("datastore");
    assert_eq!(created.global_replication_group_id(), Some(GLOBAL));
    assert_eq!(created.status(), Some("creating"));
    assert_eq!(created.global_replication_group_description(), Some(" "));
    assert_eq!(created.arn(), Some("arn:aws:elasticache::000000000000:globalreplicationgroup:ldgnf-shop"));
    // Seen from every region, `primary-only` while it has no secondary.
    let g = wait_global(&west, "primary-only", EAST).await;
    assert_eq!(g.engine(), Some("redis"));
    assert_eq!(g.cache_node_type(), Some("cache.m5.large"));
    assert_eq!(g.cluster_enabled(), Some(false));
    assert_eq!(g.members()[0].status(), Some("associated"));
    let brief = east.describe_global_replication_groups().send().await.expect("Describe without members");
    assert!(brief.global_replication_groups()[0].members().is_empty(), "Members only with ShowMemberInfo");

    // The secondary inherits what must match.
    let secondary = create_secondary(&west, "orders-west").await;
    assert_eq!(secondary.cache_node_type(), Some("cache.m5.large"));
    let info = secondary.global_replication_group_info().expect("GlobalReplicationGroupInfo");
    assert_eq!(info.global_replication_group_member_role(), Some("SECONDARY"));
    let g = wait_global(&east, "available", EAST).await;
    assert!(g.members().iter().all(|m| m.status() == Some("associated")), "{g:?}");

    // A write in the primary region is read in the secondary; the secondary takes no write.
    let (east_group, west_group) =
        (wait_group_available(&east, "orders").await, wait_group_available(&west, "orders-west").await);
    let (east_primary, west_primary, west_reader) =
        (primary_port(&east_group), primary_port(&west_group), reader_port(&west_group));
    wait_write(east_primary, "greeting", "hello").await;
    wait_read(west_reader, "greeting", "hello").await;
    wait_read(west_primary, "greeting", "hello").await;
    let mut west_client = RedisClient::connect("127.0.0.1", west_primary).await.expect("west primary endpoint");
    let refused = west_client.set("mine", "x").await.expect_err("a write to a secondary region");
    assert!(refused.to_string().contains("READONLY"), "{refused}");

    // Failover to the secondary region under a writer: no acknowledged write is lost.
    let writer = tokio::spawn(write_until_refused(east_primary));
    tokio::time::timeout(SETTLE, async {
        while !writer.is_finished() && acknowledged_so_far(east_primary).await < 200 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the writer writes");
    fail_over_to_west(&west, "orders-west").await;
    let g = wait_global(&east, "available", WEST).await;
    assert!(g.members().iter().all(|m| m.status() == Some("associated")), "{g:?}");
    let acknowledged = writer.await.expect("writer task");
    assert!(acknowledged > 0, "the writer wrote before the failover");
    let mut reader = RedisClient::connect("127.0.0.1", west_primary).await.expect("west primary");
    for i in 0..acknowledged {
        assert_eq!(
            reader.get(&format!("w:{i}")).await.expect("GET"),
            Some(i.to_string()),
            "acknowledged write w:{i} lost"
        );
    }
    wait_write(west_primary, "after", "failover").await;
    wait_read(east_primary, "after", "failover").await;
    let group = describe_group(&east, "orders").await;
    let role = group.global_replication_group_info().and_then(|i| i.global_replication_group_member_role());
    assert_eq!(role, Some("SECONDARY"));

    // What a datastore refuses.
    let again = west
        .create_replication_group()
        .replication_group_id("orders-west-2")
        .replication_group_description("a second member in one region")
        .global_replication_group_id(GLOBAL)
        .send()
        .await;
    expect_code(again, "InvalidParameterValue");
    let inherited = server
        .client_in("eu-west-1")
        .create_replication_group()
        .replication_group_id("orders-eu")
        .replication_group_description("gives what it inherits")
        .global_replication_group_id(GLOBAL)
        .engine("redis")
        .send()
        .await;
    let error = expect_code(inherited, "InvalidParameterCombination");
    assert!(error.message.contains("existing global replication group"), "{error:?}");
    let modify = east
        .modify_replication_group()
        .replication_group_id("orders")
        .cache_node_type("cache.m5.xlarge")
        .apply_immediately(true)
        .send()
        .await;
    let error = expect_code(modify, "InvalidParameterValue");
    assert_eq!(error.message, "Cluster [orders] is part of a global cluster [ldgnf-shop]. Request rejected.");
    let delete = east
        .delete_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .retain_primary_replication_group(true)
        .send()
        .await;
    expect_code(delete, "InvalidGlobalReplicationGroupState");
    let delete_member = east.delete_replication_group().replication_group_id("orders").send().await;
    expect_code(delete_member, "InvalidParameterValue");
    let failover_to_primary = east
        .failover_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .primary_region(WEST)
        .primary_replication_group_id("orders-west")
        .send()
        .await;
    expect_code(failover_to_primary, "InvalidParameterValue");
    let unknown = east.describe_global_replication_groups().global_replication_group_id("ldgnf-nothing").send().await;
    expect_code(unknown, "GlobalReplicationGroupNotFoundFault");

    // The old primary region leaves: a standalone group that takes writes again.
    west.disassociate_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .replication_group_id("orders")
        .replication_group_region(EAST)
        .send()
        .await
        .expect("DisassociateGlobalReplicationGroup");
    let g = wait_global(&west, "primary-only", WEST).await;
    assert_eq!(g.members().len(), 1, "{g:?}");
    assert!(describe_group(&east, "orders").await.global_replication_group_info().is_none());
    wait_write(east_primary, "standalone", "yes").await;
    assert_eq!(
        RedisClient::connect("127.0.0.1", west_primary).await.expect("west").get("standalone").await.expect("GET"),
        None
    );

    west.delete_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .retain_primary_replication_group(true)
        .send()
        .await
        .expect("DeleteGlobalReplicationGroup");
    let gone = west.describe_global_replication_groups().global_replication_group_id(GLOBAL).send().await;
    expect_code(gone, "GlobalReplicationGroupNotFoundFault");
    west.delete_replication_group()
        .replication_group_id("orders-west")
        .send()
        .await
        .expect("the primary is standalone again");
}

#[tokio::test]
async fn a_regional_outage_leaves_the_secondary_serving_and_a_failover_to_it_works() {
    let server = e2e::TestServer::start().await;
    let (east, west) = (server.client_in(EAST), server.client_in(WEST));
    create_primary(&east, "orders").await;
    east.create_global_replication_group()
        .global_replication_group_id_suffix("shop")
        .primary_replication_group_id("orders")
        .send()
        .await
        .expect("CreateGlobalReplicationGroup");
    create_secondary(&west, "orders-west").await;
    wait_global(&west, "available", EAST).await;
    let (east_group, west_group) = (describe_group(&east, "orders").await, describe_group(&west, "orders-west").await);
    let (east_primary, west_primary, west_reader) =
        (primary_port(&east_group), primary_port(&west_group), reader_port(&west_group));
    wait_write(east_primary, "before", "outage").await;
    // Replicated before the outage: WAIT cannot tell another region's replica from its own.
    wait_read(west_primary, "before", "outage").await;

    let (status, body) = admin(&server, "POST", &format!("/_emulator/regions/{EAST}/outage")).await;
    assert_eq!(status, 200, "{body}");
    wait_read(west_reader, "before", "outage").await;
    fail_over_to_west(&west, "orders-west").await;
    poll_until("the secondary region takes writes", SETTLE, || async {
        let g = describe_global(&west).await;
        let primary =
            g.members().iter().find(|m| m.role() == Some("PRIMARY")).and_then(|m| m.replication_group_region());
        if primary == Some(WEST) { Ok(()) } else { Err(format!("{g:?}")) }
    })
    .await;
    wait_write(west_primary, "during", "outage").await;

    // Back from the outage, the old primary region follows the new one.
    let (status, body) = admin(&server, "DELETE", &format!("/_emulator/regions/{EAST}/outage")).await;
    assert_eq!(status, 200, "{body}");
    wait_global(&west, "available", WEST).await;
    wait_read(east_primary, "during", "outage").await;
}

/// Writes `w:0`, `w:1`, … through `port` until a write is refused (the region stopped being
/// the primary); answers how many were acknowledged.
async fn write_until_refused(port: u16) -> usize {
    let Ok(mut r) = RedisClient::connect("127.0.0.1", port).await else { return 0 };
    let mut i = 0;
    while r.set(&format!("w:{i}"), &i.to_string()).await.is_ok() {
        i += 1;
    }
    i
}

/// How many `w:` writes the primary at `port` holds so far (its key count, less the rest).
async fn acknowledged_so_far(port: u16) -> usize {
    match RedisClient::connect("127.0.0.1", port).await {
        Ok(mut r) => r.dbsize().await.unwrap_or(0),
        Err(_) => 0,
    }
}

/// The configuration endpoint's port of a cluster-mode group, once it is available.
async fn configuration_port(client: &Client, id: &str) -> u16 {
    let g = wait_group_available(client, id).await;
    g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16
}

#[tokio::test]
async fn cluster_mode_shards_replicate_across_regions_through_failover_and_resharding() {
    use e2e::cluster::{cluster_connection, write_keys};
    use redis::AsyncCommands;

    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let server = e2e::TestServer::start().await;
    let (east, west) = (server.client_in(EAST), server.client_in(WEST));
    east.create_replication_group()
        .replication_group_id("carts")
        .replication_group_description("cluster mode, primary region")
        .engine("redis")
        .cache_node_type("cache.r5.large")
        .num_node_groups(2)
        .replicas_per_node_group(1)
        .send()
        .await
        .expect("CreateReplicationGroup (cluster mode)");
    let east_port = configuration_port(&east, "carts").await;
    let mut east_cluster = cluster_connection(east_port).await.expect("east cluster client");
    write_keys(&mut east_cluster, 0..200).await.expect("writes before the datastore");
    east.create_global_replication_group()
        .global_replication_group_id_suffix("shop")
        .primary_replication_group_id("carts")
        .send()
        .await
        .expect("CreateGlobalReplicationGroup");
    let secondary = west
        .create_replication_group()
        .replication_group_id("carts-west")
        .replication_group_description("cluster mode, secondary region")
        .global_replication_group_id(GLOBAL)
        .replicas_per_node_group(1)
        .send()
        .await
        .expect("CreateReplicationGroup as a cluster-mode secondary")
        .replication_group
        .expect("group");
    assert_eq!(secondary.cluster_enabled(), Some(true));
    let g = wait_global(&east, "available", EAST).await;
    let node_groups: Vec<&str> = g.global_node_groups().iter().filter_map(|n| n.global_node_group_id()).collect();
    assert_eq!(node_groups, ["ldgnf-shop-0001", "ldgnf-shop-0002"]);

    // What was there before and what is written after both reach the secondary region,
    // whose clients only read.
    write_keys(&mut east_cluster, 200..400).await.expect("writes after");
    let west_port = configuration_port(&west, "carts-west").await;
    wait_keys(west_port, 0..400).await;
    assert_write_refused(west_port, "the secondary region").await;

    // Failover: the secondary region takes writes, the old primary region reads them.
    fail_over_to_west(&west, "carts-west").await;
    wait_global(&west, "available", WEST).await;
    let mut west_cluster = cluster_connection(west_port).await.expect("west cluster client");
    write_keys(&mut west_cluster, 400..500).await.expect("writes in the new primary region");
    wait_keys(east_port, 0..500).await;
    assert_write_refused(east_port, "the old primary region").await;

    // A third shard in both regions; the data keeps flowing.
    west.increase_node_groups_in_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .node_group_count(3)
        .apply_immediately(true)
        .send()
        .await
        .expect("IncreaseNodeGroupsInGlobalReplicationGroup");
    let g = wait_global(&west, "available", WEST).await;
    assert_eq!(g.global_node_groups().len(), 3, "{g:?}");
    for (client, id) in [(&east, "carts"), (&west, "carts-west")] {
        assert_eq!(wait_group_available(client, id).await.node_groups().len(), 3, "{id}");
    }
    let mut west_cluster = cluster_connection(west_port).await.expect("west cluster client");
    write_keys(&mut west_cluster, 500..600).await.expect("writes after resharding");
    wait_keys(east_port, 0..600).await;

    // Left on its own, the old primary region takes writes again.
    west.disassociate_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .replication_group_id("carts")
        .replication_group_region(EAST)
        .send()
        .await
        .expect("DisassociateGlobalReplicationGroup");
    wait_global_status(&west, "primary-only").await;
    poll_until("the standalone group takes writes", SETTLE, || async {
        let mut con = cluster_connection(east_port).await.map_err(|e| e.to_string())?;
        con.set::<_, _, ()>("standalone", "yes").await.map_err(|e| e.to_string())
    })
    .await;
}

async fn wait_global_status(client: &Client, status: &str) {
    poll_until(&format!("{GLOBAL} {status}"), SETTLE, || async {
        let g = describe_global(client).await;
        if g.status() == Some(status) { Ok(()) } else { Err(format!("{g:?}")) }
    })
    .await;
}

/// Polls until every key of `range` reads back as written through the configuration
/// endpoint at `port` (a fresh cluster client each try).
async fn wait_keys(port: u16, range: std::ops::Range<usize>) {
    poll_until(&format!("keys {range:?} through port {port}"), SETTLE, || {
        let range = range.clone();
        async move {
            let mut con = e2e::cluster::cluster_connection(port).await.map_err(|e| e.to_string())?;
            let missing = e2e::cluster::missing_keys(&mut con, range).await;
            if missing.is_empty() { Ok(()) } else { Err(format!("{} missing, e.g. {}", missing.len(), missing[0])) }
        }
    })
    .await;
}

/// A write through the configuration endpoint at `port` is refused (the users there read).
async fn assert_write_refused(port: u16, region: &str) {
    use redis::AsyncCommands;
    let mut con = e2e::cluster::cluster_connection(port).await.expect("cluster client");
    let refused: redis::RedisResult<()> = con.set("mine", "x").await;
    let error = refused.expect_err(&format!("a write to {region} was taken"));
    assert!(error.to_string().contains("NOPERM"), "{region}: {error}");
}

/// FailoverGlobalReplicationGroup to `group` of us-west-2.
async fn fail_over_to_west(client: &Client, group: &str) {
    client
        .failover_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .primary_region(WEST)
        .primary_replication_group_id(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("FailoverGlobalReplicationGroup to {group}: {e:?}"));
}
