//! Every way CreateCacheCluster, ModifyCacheCluster, RebootCacheCluster and
//! DeleteCacheCluster refuse a request, with AWS's codes; a refused request changes nothing.

use std::collections::BTreeSet;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::create_cache_cluster::builders::CreateCacheClusterFluentBuilder;
use aws_sdk_elasticache::types::AzMode;
use e2e::{TestServer, api_error, expect_code};

use crate::*;

async fn cluster_ids(client: &Client) -> BTreeSet<String> {
    client
        .describe_cache_clusters()
        .send()
        .await
        .expect("DescribeCacheClusters")
        .cache_clusters()
        .iter()
        .filter_map(|c| c.cache_cluster_id().map(str::to_string))
        .collect()
}

fn memcached(client: &Client, id: &str) -> CreateCacheClusterFluentBuilder {
    client.create_cache_cluster().cache_cluster_id(id).engine("memcached").cache_node_type("cache.t3.micro")
}

fn redis(client: &Client, id: &str) -> CreateCacheClusterFluentBuilder {
    client.create_cache_cluster().cache_cluster_id(id).engine("redis").cache_node_type("cache.t3.micro")
}

#[tokio::test]
async fn create_refuses_invalid_requests() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("mc-params")
        .cache_parameter_group_family("memcached1.6")
        .description("memcached")
        .send()
        .await
        .unwrap();
    let subnets = client
        .create_cache_subnet_group()
        .cache_subnet_group_name("one-subnet")
        .cache_subnet_group_description("one zone")
        .subnet_ids("subnet-0a1b2c3d")
        .send()
        .await
        .unwrap()
        .cache_subnet_group
        .unwrap();
    let subnet_zone = subnets.subnets()[0].subnet_availability_zone().and_then(|z| z.name()).unwrap().to_string();
    let other_zone = e2e::ZONES.iter().find(|z| **z != subnet_zone).unwrap().to_string();

    let long = format!("a{}", "b".repeat(50));
    for bad in ["1abc", "abc-", "a--b", "ab_c", "ab.c", long.as_str(), "-abc"] {
        let e = expect_code(memcached(&client, bad).num_cache_nodes(1).send().await, "InvalidParameterValue");
        assert_eq!(e.status, 400, "{bad}: {e:?}");
    }
    // 50 characters is the limit, not over it.
    let fifty = format!("a{}", "b".repeat(49));

    expect_code(redis(&client, "r2").num_cache_nodes(2).send().await, "InvalidParameterValue");
    expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("v2")
            .engine("valkey")
            .cache_node_type("cache.t3.micro")
            .num_cache_nodes(2)
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(memcached(&client, "m0").num_cache_nodes(0).send().await, "InvalidParameterValue");
    expect_code(memcached(&client, "m41").num_cache_nodes(41).send().await, "NodeQuotaForClusterExceeded");
    let e = api_error(redis(&client, "raz").az_mode(AzMode::CrossAz).send().await);
    assert!(
        ["InvalidParameterValue", "InvalidParameterCombination"].contains(&e.code.as_str()) && e.status == 400,
        "AZMode on redis: {e:?}"
    );
    expect_code(
        memcached(&client, "mzone").num_cache_nodes(1).preferred_availability_zone("us-east-1z").send().await,
        "InvalidParameterValue",
    );
    expect_code(
        memcached(&client, "mzone2")
            .num_cache_nodes(1)
            .cache_subnet_group_name("one-subnet")
            .preferred_availability_zone(&other_zone)
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(
        memcached(&client, "mzones")
            .num_cache_nodes(2)
            .az_mode(AzMode::CrossAz)
            .preferred_availability_zones("us-east-1a")
            .preferred_availability_zones("us-west-2a")
            .send()
            .await,
        "InvalidParameterValue",
    );
    let e = expect_code(
        redis(&client, "rpg").cache_parameter_group_name("no-such-group").send().await,
        "CacheParameterGroupNotFound",
    );
    assert_eq!(e.status, 404);
    expect_code(
        redis(&client, "rfamily").cache_parameter_group_name("mc-params").send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        memcached(&client, "mfamily").num_cache_nodes(1).cache_parameter_group_name("default.redis7").send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        redis(&client, "rsubnet").cache_subnet_group_name("no-such-subnets").send().await,
        "CacheSubnetGroupNotFoundFault",
    );
    let e = expect_code(
        redis(&client, "rrg").replication_group_id("no-such-rg").send().await,
        "ReplicationGroupNotFoundFault",
    );
    assert_eq!(e.status, 404);
    let e =
        expect_code(redis(&client, "rsnap").snapshot_name("no-such-snapshot").send().await, "SnapshotNotFoundFault");
    assert_eq!(e.status, 404);
    expect_code(
        memcached(&client, "msnap").num_cache_nodes(1).snapshot_name("no-such-snapshot").send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        memcached(&client, "mretain").num_cache_nodes(1).snapshot_retention_limit(3).send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("rtype")
            .engine("redis")
            .cache_node_type("cache.x99.huge")
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("rengine")
            .engine("mongodb")
            .cache_node_type("cache.t3.micro")
            .send()
            .await,
        "InvalidParameterValue",
    );

    assert!(cluster_ids(&client).await.is_empty(), "a refused create left a cluster behind");
    assert!(admin_nodes(&server).await.is_empty(), "a refused create started nodes");

    // The edges that are allowed; then a duplicate id, in any case.
    memcached(&client, &fifty).num_cache_nodes(1).send().await.expect("50-character id");
    memcached(&client, "dup").num_cache_nodes(1).send().await.expect("create dup");
    let e = expect_code(memcached(&client, "dup").num_cache_nodes(1).send().await, "CacheClusterAlreadyExists");
    assert_eq!(e.status, 400);
    expect_code(redis(&client, "DUP").send().await, "CacheClusterAlreadyExists");
    assert_eq!(cluster_ids(&client).await, BTreeSet::from([fifty.clone(), "dup".to_string()]));
    let dup = wait_cluster_available(&client, "dup").await;
    assert_eq!(dup.engine(), Some("memcached"), "the duplicate did not replace the first");
    wait_cluster_available(&client, &fifty).await;

    for id in ["nope", "dup-x"] {
        let e = expect_code(client.describe_cache_clusters().cache_cluster_id(id).send().await, "CacheClusterNotFound");
        assert_eq!(e.status, 404);
        expect_code(
            client.modify_cache_cluster().cache_cluster_id(id).num_cache_nodes(2).apply_immediately(true).send().await,
            "CacheClusterNotFound",
        );
        expect_code(
            client.reboot_cache_cluster().cache_cluster_id(id).cache_node_ids_to_reboot("0001").send().await,
            "CacheClusterNotFound",
        );
        expect_code(client.delete_cache_cluster().cache_cluster_id(id).send().await, "CacheClusterNotFound");
    }
    let (status, body) = admin_post(&server, "/_emulator/reset").await;
    assert_eq!(status, 200, "{body}");
    assert!(admin_nodes(&server).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn modify_refuses_invalid_requests() {
    let server = TestServer::start().await;
    let client = server.client();
    create_memcached(&client, "mod-mc", 2, false).await;
    create_redis(&client, "mod-redis", "cache.t3.micro", None).await;
    let mc = wait_cluster_available(&client, "mod-mc").await;
    let rd = wait_cluster_available(&client, "mod-redis").await;

    let modify = |id: &str| client.modify_cache_cluster().cache_cluster_id(id).apply_immediately(true);
    expect_code(modify("mod-mc").send().await, "InvalidParameterCombination");
    expect_code(modify("mod-mc").num_cache_nodes(2).send().await, "InvalidParameterCombination");
    expect_code(modify("mod-mc").num_cache_nodes(1).send().await, "InvalidParameterValue");
    expect_code(
        modify("mod-mc")
            .num_cache_nodes(1)
            .cache_node_ids_to_remove("0001")
            .cache_node_ids_to_remove("0002")
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(
        modify("mod-mc").num_cache_nodes(1).cache_node_ids_to_remove("0007").send().await,
        "InvalidParameterValue",
    );
    expect_code(modify("mod-mc").num_cache_nodes(41).send().await, "NodeQuotaForClusterExceeded");
    expect_code(modify("mod-mc").cache_node_type("cache.t3.small").send().await, "InvalidParameterCombination");
    expect_code(
        modify("mod-mc").cache_parameter_group_name("default.redis7").send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        modify("mod-mc").cache_parameter_group_name("no-such-group").send().await,
        "CacheParameterGroupNotFound",
    );
    expect_code(modify("mod-redis").num_cache_nodes(2).send().await, "InvalidParameterValue");
    expect_code(modify("mod-redis").cache_node_type("cache.x99.huge").send().await, "InvalidParameterValue");
    expect_code(
        modify("mod-redis").cache_parameter_group_name("default.memcached1.6").send().await,
        "InvalidParameterCombination",
    );
    // AWS's code for an unknown version (see lookups.rs).
    expect_code(modify("mod-redis").engine_version("1.0").send().await, "InvalidParameterCombination");
    expect_code(
        client.list_allowed_node_type_modifications().cache_cluster_id("mod-mc").send().await,
        "InvalidParameterCombination",
    );

    let mc_after = describe_cluster(&client, "mod-mc").await;
    let rd_after = describe_cluster(&client, "mod-redis").await;
    for (before, after) in [(&mc, &mc_after), (&rd, &rd_after)] {
        assert_eq!(after.cache_cluster_status(), Some("available"));
        assert_eq!(nodes(after), nodes(before));
        assert_eq!(after.num_cache_nodes(), before.num_cache_nodes());
        assert_eq!(after.cache_node_type(), before.cache_node_type());
        assert_eq!(after.engine_version(), before.engine_version());
        assert_eq!(after.cache_parameter_group(), before.cache_parameter_group());
        assert_eq!(after.pending_modified_values(), before.pending_modified_values());
    }
    assert_eq!(admin_nodes(&server).await.len(), 3);

    delete(&client, "mod-mc").await;
    delete(&client, "mod-redis").await;
    server.stop().await;
}

/// A 20-node cluster is reliably still `creating` right after CreateCacheCluster returns.
#[tokio::test]
async fn a_cluster_that_is_not_available_refuses_changes() {
    // Creates answer at once, so a cluster can be caught while it is still `creating`.
    let server = TestServer::start_with(|c| c.settle_timeout = std::time::Duration::ZERO).await;
    let client = server.client();
    let created = create_memcached(&client, "busy", 20, true).await;
    assert_eq!(created.cache_cluster_status(), Some("creating"));
    let e = expect_code(
        client.modify_cache_cluster().cache_cluster_id("busy").num_cache_nodes(21).apply_immediately(true).send().await,
        "InvalidCacheClusterState",
    );
    assert_eq!(e.status, 400);
    expect_code(
        client.reboot_cache_cluster().cache_cluster_id("busy").cache_node_ids_to_reboot("0001").send().await,
        "InvalidCacheClusterState",
    );
    expect_code(client.delete_cache_cluster().cache_cluster_id("busy").send().await, "InvalidCacheClusterState");

    let c = wait_cluster_available(&client, "busy").await;
    assert_eq!(c.num_cache_nodes(), Some(20), "the refused modify changed nothing");
    assert_eq!(ids(&c), (1..=20).map(|i| format!("{i:04}")).collect::<Vec<_>>());
    assert!(c.pending_modified_values().and_then(|p| p.num_cache_nodes()).is_none());

    // While deleting, nothing else either.
    client.delete_cache_cluster().cache_cluster_id("busy").send().await.expect("delete");
    match client.modify_cache_cluster().cache_cluster_id("busy").num_cache_nodes(2).apply_immediately(true).send().await
    {
        Ok(out) => panic!("modify while deleting succeeded: {out:?}"),
        Err(e) => {
            let e = api_error::<(), _>(Err(e));
            // Gone already is fine too: the delete may have finished.
            assert!(
                ["InvalidCacheClusterState", "CacheClusterNotFound"].contains(&e.code.as_str()),
                "modify while deleting: {e:?}"
            );
        }
    }
    wait_cluster_gone(&client, "busy").await;
    assert!(admin_nodes(&server).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_id_make_one_cluster() {
    let server = TestServer::start().await;
    let client = server.client();
    let attempts = (0..16).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { memcached(&client, "race").num_cache_nodes(1).send().await })
    });
    let mut created = 0;
    let mut refused = 0;
    for attempt in futures_join(attempts).await {
        match attempt {
            Ok(_) => created += 1,
            Err(e) => {
                let e = api_error::<(), _>(Err(e));
                assert_eq!(e.code, "CacheClusterAlreadyExists", "{e:?}");
                assert_eq!(e.status, 400);
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (1, 15));
    let c = wait_cluster_available(&client, "race").await;
    assert_eq!(ids(&c), ["0001"]);
    let running = admin_nodes(&server).await;
    assert_eq!(running.len(), 1, "one node for one cluster: {running:?}");
    delete(&client, "race").await;
    server.stop().await;
}

async fn futures_join<T: Send + 'static>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}
