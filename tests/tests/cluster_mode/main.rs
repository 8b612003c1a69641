//! Cluster mode enabled on real Redis Cluster nodes: shards created as asked, a
//! cluster-aware client bootstrapping from the configuration endpoint, online resharding
//! with every key checked, per-shard failover (crash and TestFailover), per-shard replica
//! counts, online migration from a Redis Cluster and AWS's rules for bad input. Each test
//! starts its own server.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod migration;
mod serverless;
mod serverless_memcached;
mod serverless_migration;
mod warm;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{
    ClusterMode, ConfigureShard, NodeGroup, NodeGroupConfiguration, ReplicationGroup, SourceType,
};
use e2e::cluster::{cluster_connection, missing_keys, write_keys};
use e2e::{
    RedisClient, SETTLE, TestServer, admin_post, describe_group, expect_code, poll_until, wait_cluster_gone,
    wait_event, wait_group_available,
};

const KEYS: usize = 1000;

fn logs() {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
}

async fn create(client: &Client, id: &str, shards: i32, replicas: i32) -> ReplicationGroup {
    let out = client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("cluster mode")
        .cache_node_type("cache.t3.micro")
        .engine("redis")
        .num_node_groups(shards)
        .replicas_per_node_group(replicas)
        .send()
        .await
        .expect("CreateReplicationGroup");
    let g = out.replication_group().expect("group").clone();
    assert_eq!(g.status(), Some("creating"));
    assert_eq!(g.cluster_enabled(), Some(true));
    wait_group_available(client, id).await
}

fn config_port(g: &ReplicationGroup) -> u16 {
    let endpoint = g.configuration_endpoint().expect("configuration endpoint");
    assert_eq!(endpoint.address(), Some("127.0.0.1"));
    endpoint.port().expect("port") as u16
}

fn shard<'a>(g: &'a ReplicationGroup, id: &str) -> &'a NodeGroup {
    g.node_groups().iter().find(|n| n.node_group_id() == Some(id)).unwrap_or_else(|| panic!("shard {id} in {g:?}"))
}

fn shard_primary(g: &ReplicationGroup, id: &str) -> String {
    let members = shard(g, id).node_group_members();
    let primaries: Vec<&str> =
        members.iter().filter(|m| m.current_role() == Some("primary")).filter_map(|m| m.cache_cluster_id()).collect();
    assert_eq!(primaries.len(), 1, "one primary in shard {id}: {members:?}");
    primaries[0].to_string()
}

fn slots(g: &ReplicationGroup) -> Vec<(String, String)> {
    g.node_groups()
        .iter()
        .map(|n| (n.node_group_id().unwrap_or_default().to_string(), n.slots().unwrap_or_default().to_string()))
        .collect()
}

/// `CLUSTER SHARDS` through the configuration endpoint: how many shards own slots.
async fn shards_with_slots(port: u16) -> usize {
    let mut r = RedisClient::connect("127.0.0.1", port).await.expect("connect");
    let info = r.command(&["CLUSTER", "INFO"]).await.expect("CLUSTER INFO").text().unwrap_or_default();
    assert!(info.contains("cluster_state:ok"), "{info}");
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_size:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("cluster_size")
}

async fn reshard(client: &Client, id: &str, count: i32, remove: &[&str]) -> ReplicationGroup {
    let mut request =
        client.modify_replication_group_shard_configuration().replication_group_id(id).node_group_count(count);
    for shard in remove {
        request = request.node_groups_to_remove(*shard);
    }
    let out = request.apply_immediately(true).send().await.expect("ModifyReplicationGroupShardConfiguration");
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));
    // A hang guard, not a figure: moving thousands of slots one by one takes a debug build
    // under the parallel suite past SETTLE (the bench measures resharding).
    poll_until(&format!("replication group {id} resharded"), RESHARD_BOUND, || async {
        let g = describe_group(client, id).await;
        if g.status() == Some("available") { Ok(g) } else { Err(format!("{:?}", g.status())) }
    })
    .await
}

const RESHARD_BOUND: std::time::Duration = std::time::Duration::from_secs(120);

#[tokio::test]
async fn three_shards_scale_out_and_back_in_without_losing_a_key() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    let g = create(&client, "shop", 3, 1).await;

    assert_eq!(g.cluster_mode(), Some(&ClusterMode::Enabled));
    assert_eq!(
        slots(&g),
        vec![
            ("0001".to_string(), "0-5461".to_string()),
            ("0002".to_string(), "5462-10922".to_string()),
            ("0003".to_string(), "10923-16383".to_string()),
        ]
    );
    assert_eq!(
        g.member_clusters(),
        ["shop-0001-001", "shop-0001-002", "shop-0002-001", "shop-0002-002", "shop-0003-001", "shop-0003-002"]
    );
    for id in ["0001", "0002", "0003"] {
        assert_eq!(shard_primary(&g, id), format!("shop-{id}-001"));
        assert_eq!(shard(&g, id).node_group_members().len(), 2);
        assert!(shard(&g, id).primary_endpoint().is_none(), "cluster mode has no per-shard primary endpoint");
    }
    // The members are cache clusters of their own, as AWS names them.
    let c = client.describe_cache_clusters().cache_cluster_id("shop-0002-002").send().await.unwrap();
    assert_eq!(c.cache_clusters()[0].replication_group_id(), Some("shop"));

    let port = config_port(&g);
    assert_eq!(shards_with_slots(port).await, 3);
    let mut con = cluster_connection(port).await.expect("cluster client");
    write_keys(&mut con, 0..KEYS).await.expect("writes");
    assert_eq!(missing_keys(&mut con, 0..KEYS).await, Vec::<String>::new());

    // Readers keep reading every key while slots move.
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (done, failures, reads) = (done.clone(), failures.clone(), reads.clone());
        let mut con = cluster_connection(port).await.expect("reader");
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                failures.fetch_add(missing_keys(&mut con, 0..KEYS).await.len(), Ordering::SeqCst);
                reads.fetch_add(KEYS, Ordering::SeqCst);
            }
        })
    };

    let g = reshard(&client, "shop", 4, &[]).await;
    assert_eq!(g.node_groups().len(), 4);
    assert_eq!(shard(&g, "0004").node_group_members().len(), 2, "a new shard has the same replica count");
    assert_eq!(shard(&g, "0001").slots(), Some("0-4095"), "existing shards keep their lowest slots");
    assert_eq!(shards_with_slots(port).await, 4);
    assert_eq!(missing_keys(&mut con, 0..KEYS).await, Vec::<String>::new());

    let g = reshard(&client, "shop", 2, &["0001", "0003"]).await;
    let remaining: Vec<&str> = g.node_groups().iter().filter_map(|n| n.node_group_id()).collect();
    assert_eq!(remaining, ["0002", "0004"]);
    assert!(g.pending_modified_values().and_then(|p| p.resharding()).is_none());
    assert_eq!(shards_with_slots(port).await, 2);
    assert_eq!(missing_keys(&mut con, 0..KEYS).await, Vec::<String>::new());
    for gone in ["shop-0001-001", "shop-0001-002", "shop-0003-001", "shop-0003-002"] {
        wait_cluster_gone(&client, gone).await;
    }

    done.store(true, Ordering::SeqCst);
    reader.await.expect("reader");
    assert!(reads.load(Ordering::SeqCst) >= KEYS, "the reader ran during the resharding");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "every key stayed readable during the resharding");
    // New writes land everywhere.
    write_keys(&mut con, KEYS..KEYS + 200).await.expect("writes after resharding");
}

#[tokio::test]
async fn a_dead_shard_primary_fails_over_that_shard_only() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    let g = create(&client, "orders", 3, 1).await;
    let port = config_port(&g);
    let mut con = cluster_connection(port).await.expect("cluster client");
    write_keys(&mut con, 0..KEYS).await.expect("writes");
    // Every write reached the replicas before the crash.
    for shard_id in ["0001", "0002", "0003"] {
        let primary = shard_primary(&g, shard_id);
        let node = e2e::admin_node(&server, &primary, "0001").await;
        let mut r = RedisClient::connect("127.0.0.1", node["port"].as_u64().unwrap() as u16).await.unwrap();
        assert_eq!(r.wait(1, 2000).await.unwrap(), 1);
    }

    let (status, _) = admin_post(&server, "/_emulator/nodes/orders-0002-001/0001/kill").await;
    assert_eq!(status, 200);
    let g = poll_until("shard 0002 failed over", SETTLE, || async {
        let g = describe_group(&client, "orders").await;
        if shard_primary(&g, "0002") == "orders-0002-002" { Ok(g) } else { Err(format!("{:?}", g.node_groups())) }
    })
    .await;
    assert_eq!(shard_primary(&g, "0001"), "orders-0001-001", "other shards keep their primary");
    assert_eq!(shard_primary(&g, "0003"), "orders-0003-001");
    wait_event(
        &client,
        SourceType::ReplicationGroup,
        "orders",
        "Failover from primary node orders-0002-001 to replica node orders-0002-002 completed",
    )
    .await;

    // Writes to every slot (the failed shard's included) work again, and nothing was lost.
    poll_until("writes through the cluster client", SETTLE, || async {
        let mut con = cluster_connection(port).await.map_err(|e| e.to_string())?;
        write_keys(&mut con, KEYS..KEYS + 300).await.map_err(|e| e.to_string())
    })
    .await;
    let mut con = cluster_connection(port).await.expect("cluster client");
    assert_eq!(missing_keys(&mut con, 0..KEYS + 300).await, Vec::<String>::new());
    // The old primary comes back as a replica of its shard.
    let g = wait_group_available(&client, "orders").await;
    let old = shard(&g, "0002").node_group_members().iter().find(|m| m.cache_cluster_id() == Some("orders-0002-001"));
    assert_eq!(old.and_then(|m| m.current_role()), Some("replica"));
    poll_until("the old primary replicates again", SETTLE, || async {
        let node = e2e::admin_node(&server, "orders-0002-001", "0001").await;
        let port = node["port"].as_u64().unwrap_or(0) as u16;
        let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let info = r.info("replication").await.map_err(|e| e.to_string())?;
        if info.get("master_link_status").map(String::as_str) == Some("up") { Ok(()) } else { Err(format!("{info:?}")) }
    })
    .await;
}

#[tokio::test]
async fn a_rebooted_shard_primary_is_available_once_it_serves_again() {
    let server = TestServer::start().await;
    let client = server.client();
    let g = create(&client, "rebooted", 2, 1).await;
    let primary = shard_primary(&g, "0001");
    client
        .reboot_cache_cluster()
        .cache_cluster_id(&primary)
        .cache_node_ids_to_reboot("0001")
        .send()
        .await
        .expect("RebootCacheCluster");
    // The answer waits for the reboot to settle, and a rebooted primary answers CLUSTERDOWN
    // for its first 2 s (redis's writable delay): `available` must mean it serves again.
    assert_eq!(e2e::describe_cluster(&client, &primary).await.cache_cluster_status(), Some("available"));
    let node = e2e::admin_node(&server, &primary, "0001").await;
    let mut r = RedisClient::connect("127.0.0.1", node["port"].as_u64().unwrap() as u16).await.unwrap();
    let info = r.command(&["CLUSTER", "INFO"]).await.expect("CLUSTER INFO").text().unwrap_or_default();
    assert!(info.contains("cluster_state:ok"), "{info}");
}

/// The emulator stopped in the middle of a failover: Redis Cluster had promoted the
/// replica, the record had not (the request still pending; a kill -9 in the soak left the
/// group `modifying` for good). After the restart the failover is found done and recorded:
/// Describe names the primary Redis Cluster has, and every key is kept.
#[tokio::test]
async fn a_failover_cut_short_by_a_restart_is_recorded_as_redis_cluster_finished_it() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    let g = create(&client, "halfway", 2, 1).await;
    let mut con = cluster_connection(config_port(&g)).await.expect("cluster client");
    write_keys(&mut con, 0..200).await.expect("writes");
    drop(con);
    let old = shard_primary(&g, "0001");
    let members = shard(&g, "0001").node_group_members();
    let replica = members.iter().filter_map(|m| m.cache_cluster_id()).find(|id| *id != old).unwrap().to_string();
    // What a failover does first: the replica takes over in Redis Cluster.
    let port = e2e::admin_node(&server, &replica, "0001").await["port"].as_u64().unwrap() as u16;
    let mut node = RedisClient::connect("127.0.0.1", port).await.unwrap();
    node.command(&["CLUSTER", "FAILOVER"]).await.expect("CLUSTER FAILOVER");
    poll_until("the replica promoted in Redis Cluster", SETTLE, || async move {
        let mut node = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let role = node.command(&["INFO", "replication"]).await.ok().and_then(|r| r.text()).unwrap_or_default();
        if role.contains("role:master") { Ok(()) } else { Err(role) }
    })
    .await;
    let state_dir = server.stop().await;
    // The request the emulator was acting on, still pending in its store.
    {
        let (store, scope) = e2e::store_in(state_dir.path()).await;
        store
            .update_replication_group(&scope, "halfway", |group, _| {
                group.status = "modifying".into();
                let shard = group.node_groups.iter_mut().find(|s| s.id == "0001").unwrap();
                shard.failover_to = Some(store::FailoverRequest::BestReplica);
                Ok::<_, ()>(Vec::new())
            })
            .await
            .unwrap();
    }

    let server = TestServer::start_in(state_dir).await;
    let client = server.client();
    let g = wait_group_available(&client, "halfway").await;
    assert_eq!(shard_primary(&g, "0001"), replica);
    let message = format!("Failover from primary node {old} to replica node {replica} completed");
    wait_event(&client, SourceType::ReplicationGroup, "halfway", &message).await;
    let mut con = cluster_connection(config_port(&g)).await.expect("cluster client");
    assert_eq!(missing_keys(&mut con, 0..200).await, Vec::<String>::new());
    write_keys(&mut con, 200..300).await.expect("writes after the restart");
}

#[tokio::test]
async fn test_failover_moves_one_node_group() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    let g = create(&client, "drill", 2, 2).await;
    let port = config_port(&g);
    let mut con = cluster_connection(port).await.expect("cluster client");
    write_keys(&mut con, 0..200).await.expect("writes");

    expect_code(
        client.test_failover().replication_group_id("drill").node_group_id("0009").send().await,
        "NodeGroupNotFoundFault",
    );
    let out = client.test_failover().replication_group_id("drill").node_group_id("0002").send().await.unwrap();
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));
    let g = wait_group_available(&client, "drill").await;
    assert_ne!(shard_primary(&g, "0002"), "drill-0002-001");
    assert_eq!(shard_primary(&g, "0001"), "drill-0001-001");
    wait_event(&client, SourceType::ReplicationGroup, "drill", "Test Failover API called for node group 0002").await;
    assert_eq!(missing_keys(&mut con, 0..200).await, Vec::<String>::new());
    write_keys(&mut con, 200..400).await.expect("writes after the failover");
}

#[tokio::test]
async fn replica_counts_change_per_shard() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "tiers", 2, 1).await;
    client
        .increase_replica_count()
        .replication_group_id("tiers")
        .replica_configuration(ConfigureShard::builder().node_group_id("0001").new_replica_count(2).build())
        .apply_immediately(true)
        .send()
        .await
        .expect("IncreaseReplicaCount");
    let g = wait_group_available(&client, "tiers").await;
    assert_eq!(shard(&g, "0001").node_group_members().len(), 3);
    assert_eq!(shard(&g, "0002").node_group_members().len(), 2);
    let mut r = RedisClient::connect("127.0.0.1", config_port(&g)).await.unwrap();
    let nodes = r.command(&["CLUSTER", "NODES"]).await.unwrap().text().unwrap_or_default();
    assert_eq!(nodes.lines().filter(|l| l.contains("slave")).count(), 3, "{nodes}");

    client
        .decrease_replica_count()
        .replication_group_id("tiers")
        .new_replica_count(1)
        .apply_immediately(true)
        .send()
        .await
        .expect("DecreaseReplicaCount");
    let g = wait_group_available(&client, "tiers").await;
    assert_eq!(shard(&g, "0001").node_group_members().len(), 2);
    wait_cluster_gone(&client, "tiers-0001-003").await;
    poll_until("the removed replica forgotten", SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", config_port(&g)).await.map_err(|e| e.to_string())?;
        let nodes = r.command(&["CLUSTER", "NODES"]).await.map_err(|e| e.to_string())?.text().unwrap_or_default();
        if nodes.lines().count() == 4 { Ok(()) } else { Err(nodes) }
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_aws_errors_and_changes_nothing() {
    logs();
    // Creates answer at once, so a group can be caught while it is still `creating`.
    let server = TestServer::start_with(|c| c.settle_timeout = std::time::Duration::ZERO).await;
    let client = server.client();
    let base = || {
        client
            .create_replication_group()
            .replication_group_id("bad")
            .replication_group_description("d")
            .cache_node_type("cache.t3.micro")
    };
    let with_slots = |a: &str, b: &str| {
        base()
            .node_group_configuration(NodeGroupConfiguration::builder().slots(a).build())
            .node_group_configuration(NodeGroupConfiguration::builder().slots(b).build())
    };
    expect_code(with_slots("0-8191", "8191-16383").send().await, "InvalidParameterValue");
    expect_code(with_slots("0-8000", "8192-16383").send().await, "InvalidParameterValue");
    expect_code(with_slots("0-8191", "8192-16384").send().await, "InvalidParameterValue");
    expect_code(with_slots("8191-0", "8192-16383").send().await, "InvalidParameterValue");
    expect_code(
        base()
            .num_node_groups(3)
            .node_group_configuration(NodeGroupConfiguration::builder().replica_count(1).build())
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(base().num_node_groups(2).replicas_per_node_group(6).send().await, "InvalidParameterValue");
    expect_code(base().num_node_groups(91).send().await, "NodeGroupsPerReplicationGroupQuotaExceeded");
    expect_code(base().num_node_groups(30).replicas_per_node_group(5).send().await, "NodeQuotaForClusterExceeded");
    expect_code(
        base().num_node_groups(2).automatic_failover_enabled(false).send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        base().num_node_groups(2).cache_parameter_group_name("default.redis7").send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        base().cluster_mode(ClusterMode::Disabled).cache_parameter_group_name("default.redis7.cluster.on").send().await,
        "InvalidParameterCombination",
    );
    expect_code(base().num_node_groups(2).num_cache_clusters(2).send().await, "InvalidParameterCombination");
    let none = client.describe_replication_groups().send().await.unwrap();
    assert!(none.replication_groups().is_empty(), "refused creates left nothing: {none:?}");
    assert!(client.describe_cache_clusters().send().await.unwrap().cache_clusters().is_empty());

    // Explicit slot ranges are kept as given.
    let out = with_slots("0-99,8192-16383", "100-8191").replication_group_id("ranges").send().await.unwrap();
    let g = out.replication_group().unwrap();
    assert_eq!(
        slots(g),
        vec![("0001".to_string(), "0-99,8192-16383".to_string()), ("0002".to_string(), "100-8191".to_string())]
    );

    // Resharding: only when available, only immediately, only named shards.
    let shard_config = || client.modify_replication_group_shard_configuration().replication_group_id("ranges");
    expect_code(
        shard_config().node_group_count(3).apply_immediately(true).send().await,
        "InvalidReplicationGroupState",
    );
    wait_group_available(&client, "ranges").await;
    expect_code(shard_config().node_group_count(3).apply_immediately(false).send().await, "InvalidParameterValue");
    expect_code(shard_config().node_group_count(1).apply_immediately(true).send().await, "InvalidParameterValue");
    expect_code(
        shard_config().node_group_count(1).node_groups_to_remove("0007").apply_immediately(true).send().await,
        "NodeGroupNotFoundFault",
    );
    expect_code(
        client.test_failover().replication_group_id("ranges").node_group_id("0001").send().await,
        "TestFailoverNotAvailableFault",
    );
    let g = describe_group(&client, "ranges").await;
    assert_eq!(g.status(), Some("available"));
    assert_eq!(g.node_groups().len(), 2);

    // A group with cluster mode disabled has no shards to change.
    client
        .create_replication_group()
        .replication_group_id("plain")
        .replication_group_description("d")
        .cache_node_type("cache.t3.micro")
        .send()
        .await
        .unwrap();
    wait_group_available(&client, "plain").await;
    expect_code(
        client
            .modify_replication_group_shard_configuration()
            .replication_group_id("plain")
            .node_group_count(2)
            .apply_immediately(true)
            .send()
            .await,
        "InvalidParameterValue",
    );
}

#[tokio::test]
async fn cluster_mode_goes_from_disabled_to_compatible_to_enabled_keeping_the_data() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_replication_group()
        .replication_group_id("grow")
        .replication_group_description("d")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "grow").await;
    assert_eq!(g.cluster_mode(), Some(&ClusterMode::Disabled));
    let primary_port = g.node_groups()[0].primary_endpoint().and_then(|e| e.port()).unwrap() as u16;
    let mut plain = RedisClient::connect("127.0.0.1", primary_port).await.unwrap();
    for i in 0..200 {
        plain.set(&format!("old:{i}"), "v").await.unwrap();
    }
    let modify = |mode: ClusterMode| {
        client.modify_replication_group().replication_group_id("grow").cluster_mode(mode).apply_immediately(true)
    };
    expect_code(modify(ClusterMode::Enabled).send().await, "InvalidParameterCombination");

    let out = modify(ClusterMode::Compatible).send().await.expect("to compatible");
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));
    let g = wait_group_available(&client, "grow").await;
    assert_eq!(g.cluster_mode(), Some(&ClusterMode::Compatible));
    assert_eq!(shard(&g, "0001").slots(), Some("0-16383"));
    // Both kinds of client work: the old endpoint and the configuration endpoint.
    let port = config_port(&g);
    assert_eq!(shard(&g, "0001").primary_endpoint().and_then(|e| e.port()), Some(i32::from(primary_port)));
    let mut plain = RedisClient::connect("127.0.0.1", primary_port).await.unwrap();
    assert_eq!(plain.get("old:7").await.unwrap().as_deref(), Some("v"));
    let mut con = cluster_connection(port).await.expect("cluster client");
    write_keys(&mut con, 0..300).await.expect("cluster writes");
    expect_code(modify(ClusterMode::Disabled).send().await, "InvalidParameterCombination");

    modify(ClusterMode::Enabled).send().await.expect("to enabled");
    let g = wait_group_available(&client, "grow").await;
    assert_eq!(g.cluster_mode(), Some(&ClusterMode::Enabled));
    assert!(shard(&g, "0001").primary_endpoint().is_none());
    // Now it can be sharded like any cluster-mode group.
    let g = reshard(&client, "grow", 2, &[]).await;
    assert_eq!(g.node_groups().len(), 2);
    let mut con = cluster_connection(port).await.expect("cluster client");
    assert_eq!(missing_keys(&mut con, 0..300).await, Vec::<String>::new());
    let mut redis_con = con.clone();
    for i in 0..200 {
        let v: Option<String> = redis::AsyncCommands::get(&mut redis_con, format!("old:{i}")).await.unwrap();
        assert_eq!(v.as_deref(), Some("v"), "old:{i}");
    }
}

#[tokio::test]
async fn a_zone_outage_fails_over_every_shard_with_its_primary_there() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    let g = create(&client, "zones", 3, 1).await;
    let zone_of = |g: &ReplicationGroup, member: &str| {
        g.node_groups()
            .iter()
            .flat_map(|n| n.node_group_members())
            .find(|m| m.cache_cluster_id() == Some(member))
            .and_then(|m| m.preferred_availability_zone())
            .unwrap()
            .to_string()
    };
    let zone = zone_of(&g, &shard_primary(&g, "0001"));
    let hit: Vec<String> = ["0001", "0002", "0003"]
        .into_iter()
        .filter(|s| zone_of(&g, &shard_primary(&g, s)) == zone)
        .map(String::from)
        .collect();
    let port = config_port(&g);
    let mut con = cluster_connection(port).await.expect("cluster client");
    write_keys(&mut con, 0..300).await.expect("writes");

    let (status, _) = admin_post(&server, &format!("/_emulator/zones/{zone}/outage")).await;
    assert_eq!(status, 200);
    let g = poll_until("every shard with its primary in the zone failed over", SETTLE, || async {
        let g = describe_group(&client, "zones").await;
        let moved = hit.iter().all(|s| zone_of(&g, &shard_primary(&g, s)) != zone);
        if moved { Ok(g) } else { Err(format!("{:?}", g.node_groups())) }
    })
    .await;
    for s in ["0001", "0002", "0003"].into_iter().filter(|s| !hit.contains(&s.to_string())) {
        assert_eq!(shard_primary(&g, s), format!("zones-{s}-001"), "shard {s} had no primary in {zone}");
    }
    poll_until("writes to every slot during the outage", SETTLE, || async {
        let mut con = cluster_connection(port).await.map_err(|e| e.to_string())?;
        write_keys(&mut con, 300..400).await.map_err(|e| e.to_string())
    })
    .await;
    let (status, _) = e2e::admin(&server, "DELETE", &format!("/_emulator/zones/{zone}/outage")).await;
    assert_eq!(status, 200);
    wait_group_available(&client, "zones").await;
    let mut con = cluster_connection(port).await.expect("cluster client");
    assert_eq!(missing_keys(&mut con, 0..400).await, Vec::<String>::new());
}

/// Redis OSS → Valkey in cluster mode: per shard, the replica restarts on the Valkey binary
/// first, then the primary hands over to it and restarts as a replica; no key is lost.
#[tokio::test]
async fn a_sharded_group_moves_to_valkey_shard_by_shard_keeping_every_key() {
    logs();
    let server = TestServer::start().await;
    let client = server.client();
    let g = create(&client, "mover", 2, 1).await;
    let port = config_port(&g);
    let mut con = cluster_connection(port).await.expect("cluster client");
    write_keys(&mut con, 0..KEYS).await.expect("writes");

    let out = client
        .modify_replication_group()
        .replication_group_id("mover")
        .engine("valkey")
        .engine_version("8.0")
        .cache_parameter_group_name("default.valkey8.cluster.on")
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyReplicationGroup Engine=valkey");
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));
    let g = wait_group_available(&client, "mover").await;
    assert_eq!(g.engine(), Some("valkey"));
    for id in ["0001", "0002"] {
        assert_eq!(shard_primary(&g, id), format!("mover-{id}-002"), "shard {id} handed over to its replica");
    }
    let (_, health) = e2e::admin(&server, "GET", "/_emulator/health").await;
    for node in e2e::admin_nodes(&server).await {
        assert_eq!(node["binary"]["path"], health["engines"]["valkey"]["binary"], "{node}");
    }
    let mut con = cluster_connection(port).await.expect("cluster client after the move");
    assert_eq!(missing_keys(&mut con, 0..KEYS).await, Vec::<String>::new());
}
