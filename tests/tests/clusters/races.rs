//! Checks and writes that race: 16 concurrent requests each, and exactly AWS's outcome.
//! Every API call that changes state is one store transaction, so what a request checks
//! cannot change before it writes.
//!
//! Tests whose clusters need no running node use an emulator without engines: their nodes
//! fail to start (`create-failed`), but the records, quotas and checks are all there.

use std::time::Duration;

use aws_sdk_elasticache::Client;
use e2e::{TestServer, api_error, describe_cluster, wait_cluster_available};
use futures::future::join_all;

const CONCURRENT: usize = 16;

fn memcached(
    client: &Client,
    id: &str,
    nodes: i32,
) -> aws_sdk_elasticache::operation::create_cache_cluster::builders::CreateCacheClusterFluentBuilder {
    client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine("memcached")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(nodes)
}

/// The error codes of the calls that failed, and how many succeeded.
fn outcomes<T: std::fmt::Debug, E>(
    results: Vec<Result<T, aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>>>,
) -> (usize, Vec<String>)
where
    E: aws_sdk_elasticache::error::ProvideErrorMetadata + std::fmt::Debug,
{
    let mut succeeded = 0;
    let mut codes = Vec::new();
    for result in results {
        match result {
            Ok(_) => succeeded += 1,
            Err(_) => codes.push(api_error(result).code),
        }
    }
    (succeeded, codes)
}

#[tokio::test]
async fn concurrent_creates_never_overshoot_the_node_quota() {
    let server = TestServer::without_engines().await;
    let client = server.client();
    // 16 × 20 nodes against AWS's 300 per region: exactly 15 fit.
    let calls = (0..CONCURRENT).map(|i| memcached(&client, &format!("quota-{i}"), 20).send());
    let (succeeded, codes) = outcomes(join_all(calls).await);
    assert_eq!(succeeded, 15, "refusals: {codes:?}");
    assert_eq!(codes, ["NodeQuotaForCustomerExceeded"]);
}

#[tokio::test]
async fn creates_past_what_the_machine_holds_are_refused_over_every_region() {
    let server = TestServer::start_with(|c| {
        c.engines = Some(nodes::Engines::default());
        c.warm_nodes = 0;
        c.settle_timeout = Duration::ZERO;
        c.node_capacity = nodes::capacity::Capacity::configured(10);
    })
    .await;
    let (east, west) = (server.client(), server.client_in("us-west-2"));
    memcached(&east, "east", 4).send().await.unwrap();

    // 16 one-node creates in another region race for the 6 nodes left.
    let calls = (0..CONCURRENT).map(|i| memcached(&west, &format!("west-{i}"), 1).send());
    let (succeeded, codes) = outcomes(join_all(calls).await);
    assert_eq!(succeeded, 6, "refusals: {codes:?}");
    assert_eq!(codes, vec!["NodeQuotaForCustomerExceeded"; CONCURRENT - 6]);

    // A replication group that would not fit is refused whole: nothing of it is written.
    let refused = east
        .create_replication_group()
        .replication_group_id("too-big")
        .replication_group_description("past the machine")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .send()
        .await;
    let error = api_error(refused);
    assert_eq!((error.code.as_str(), error.status), ("NodeQuotaForCustomerExceeded", 400));
    assert!(error.message.contains("the 10 cache nodes this machine can hold"), "{}", error.message);
    assert!(error.message.contains("--max-nodes"), "{}", error.message);
    assert!(east.describe_replication_groups().send().await.unwrap().replication_groups().is_empty());
    assert_eq!(east.describe_cache_clusters().send().await.unwrap().cache_clusters().len(), 1);

    // Deleting makes room again, once the creation has ended (here in create-failed: this
    // server has no engines): a cluster being created cannot be deleted, and this server
    // answers creates without waiting.
    e2e::poll_until("east's creation to end", e2e::SETTLE, || async {
        match e2e::describe_cluster(&east, "east").await.cache_cluster_status() {
            Some("creating") => Err("creating".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    east.delete_cache_cluster().cache_cluster_id("east").send().await.unwrap();
    e2e::wait_cluster_gone(&east, "east").await;
    memcached(&east, "east-again", 4).send().await.unwrap();
}

#[tokio::test]
async fn changes_that_add_nodes_past_what_the_machine_holds_are_refused() {
    let server = TestServer::start_with(|c| c.node_capacity = nodes::capacity::Capacity::configured(4)).await;
    let client = server.client();
    memcached(&client, "mc", 2).send().await.unwrap();
    client
        .create_replication_group()
        .replication_group_id("rg")
        .replication_group_description("two nodes")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .send()
        .await
        .unwrap();
    wait_cluster_available(&client, "mc").await;
    e2e::wait_group_available(&client, "rg").await;

    let more_nodes =
        client.modify_cache_cluster().cache_cluster_id("mc").num_cache_nodes(3).apply_immediately(true).send().await;
    assert_eq!(api_error(more_nodes).code, "NodeQuotaForCustomerExceeded");
    // Nodes left for the maintenance window count at once: the window would add them.
    let later =
        client.modify_cache_cluster().cache_cluster_id("mc").num_cache_nodes(3).apply_immediately(false).send().await;
    assert_eq!(api_error(later).code, "NodeQuotaForCustomerExceeded");
    assert_eq!(describe_cluster(&client, "mc").await.pending_modified_values().and_then(|p| p.num_cache_nodes()), None);
    let more_replicas =
        client.increase_replica_count().replication_group_id("rg").new_replica_count(2).apply_immediately(true);
    assert_eq!(api_error(more_replicas.clone().send().await).code, "NodeQuotaForCustomerExceeded");
    // Nothing of either was written.
    assert_eq!(describe_cluster(&client, "mc").await.num_cache_nodes(), Some(2));
    let group = e2e::wait_group_available(&client, "rg").await;
    assert_eq!(group.member_clusters().len(), 2);

    client.delete_cache_cluster().cache_cluster_id("mc").send().await.unwrap();
    e2e::wait_cluster_gone(&client, "mc").await;
    more_replicas.send().await.unwrap();
}

#[tokio::test]
async fn nodes_left_for_the_maintenance_window_count_against_what_the_machine_holds() {
    let server = TestServer::start_with(|c| c.node_capacity = nodes::capacity::Capacity::configured(4)).await;
    let client = server.client();
    for id in ["a", "b"] {
        memcached(&client, id, 1).send().await.unwrap();
        wait_cluster_available(&client, id).await;
    }
    let later = |id: &str, nodes: i32| {
        client.modify_cache_cluster().cache_cluster_id(id).num_cache_nodes(nodes).apply_immediately(false).send()
    };
    // a's two more nodes fill the machine once the window adds them…
    later("a", 3).await.unwrap();
    // …so b's one more is past it, though b alone would fit…
    assert_eq!(api_error(later("b", 2).await).code, "NodeQuotaForCustomerExceeded");
    assert_eq!(describe_cluster(&client, "b").await.pending_modified_values().and_then(|p| p.num_cache_nodes()), None);
    // …and so is a new cluster.
    assert_eq!(api_error(memcached(&client, "c", 1).send().await).code, "NodeQuotaForCustomerExceeded");

    // Taking a's pending change back frees the room it held.
    later("a", 1).await.unwrap();
    later("b", 2).await.unwrap();
}

#[tokio::test]
async fn a_parameter_group_deleted_while_clusters_are_created_with_it_is_never_left_in_use() {
    let server = TestServer::without_engines().await;
    let client = server.client();
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("contended")
        .cache_parameter_group_family("memcached1.6")
        .description("deleted while in use")
        .send()
        .await
        .unwrap();
    let creates = (0..CONCURRENT - 1).map(|i| {
        let create = memcached(&client, &format!("pg-{i}"), 1).cache_parameter_group_name("contended");
        async move { create.send().await.map(drop) }
    });
    let delete = async { client.delete_cache_parameter_group().cache_parameter_group_name("contended").send().await };
    let (created, deleted) = tokio::join!(join_all(creates), delete);
    let (clusters, codes) = outcomes(created);
    let users = client.describe_cache_clusters().send().await.unwrap().cache_clusters().len();
    assert_eq!(users, clusters);
    match deleted {
        // Deleted first: every later create finds the group gone.
        Ok(_) => {
            assert!(codes.iter().all(|c| c == "CacheParameterGroupNotFound"), "{codes:?}");
            assert_eq!(clusters + codes.len(), CONCURRENT - 1);
            // No cluster was created after the delete, so none uses a group that is gone.
            assert_eq!(clusters, 0, "a cluster uses a deleted parameter group");
        }
        // Refused: some cluster came first, and the group is still there.
        Err(_) => {
            assert_eq!(api_error(deleted).code, "InvalidCacheParameterGroupState");
            assert_eq!((clusters, codes.len()), (CONCURRENT - 1, 0));
        }
    }
}

#[tokio::test]
async fn a_subnet_group_deleted_while_clusters_are_created_in_it_is_never_left_in_use() {
    let server = TestServer::without_engines().await;
    let client = server.client();
    client
        .create_cache_subnet_group()
        .cache_subnet_group_name("contended")
        .cache_subnet_group_description("deleted while in use")
        .subnet_ids("subnet-00000001")
        .send()
        .await
        .unwrap();
    let creates = (0..CONCURRENT - 1).map(|i| {
        let create = memcached(&client, &format!("sg-{i}"), 1).cache_subnet_group_name("contended");
        async move { create.send().await.map(drop) }
    });
    let delete = async { client.delete_cache_subnet_group().cache_subnet_group_name("contended").send().await };
    let (created, deleted) = tokio::join!(join_all(creates), delete);
    let (clusters, codes) = outcomes(created);
    match deleted {
        Ok(_) => {
            assert!(codes.iter().all(|c| c == "CacheSubnetGroupNotFoundFault"), "{codes:?}");
            assert_eq!(clusters, 0, "a cluster lives in a deleted subnet group");
        }
        Err(_) => {
            assert_eq!(api_error(deleted).code, "CacheSubnetGroupInUse");
            assert_eq!((clusters, codes.len()), (CONCURRENT - 1, 0));
        }
    }
}

#[tokio::test]
async fn concurrent_subnet_group_modifies_never_undo_each_other() {
    let server = TestServer::without_engines().await;
    let client = server.client();
    client
        .create_cache_subnet_group()
        .cache_subnet_group_name("edited")
        .cache_subnet_group_description("original")
        .subnet_ids("subnet-000000ff")
        .send()
        .await
        .unwrap();
    // Half change only the description, half only the subnets: whatever the order, the
    // group ends with a new description and new subnets.
    let calls = (0..CONCURRENT).map(|i| {
        let modify = client.modify_cache_subnet_group().cache_subnet_group_name("edited");
        let modify = if i % 2 == 0 {
            modify.cache_subnet_group_description(format!("description {i}"))
        } else {
            modify.subnet_ids(format!("subnet-{i:08x}"))
        };
        modify.send()
    });
    let (succeeded, codes) = outcomes(join_all(calls).await);
    assert_eq!((succeeded, codes.len()), (CONCURRENT, 0), "{codes:?}");
    let out = client.describe_cache_subnet_groups().cache_subnet_group_name("edited").send().await.unwrap();
    let group = &out.cache_subnet_groups()[0];
    assert_ne!(group.cache_subnet_group_description(), Some("original"));
    let subnets: Vec<&str> = group.subnets().iter().filter_map(|s| s.subnet_identifier()).collect();
    assert_eq!(subnets.len(), 1);
    assert_ne!(subnets[0], "subnet-000000ff", "a description change wrote back the subnets it had read");
}

async fn available_redis(client: &Client, id: &str) {
    client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap();
    wait_cluster_available(client, id).await;
}

#[tokio::test]
async fn of_concurrent_snapshots_of_one_cluster_exactly_one_is_taken() {
    let server = TestServer::start().await;
    let client = server.client();
    available_redis(&client, "snapped").await;
    let calls = (0..CONCURRENT)
        .map(|i| client.create_snapshot().cache_cluster_id("snapped").snapshot_name(format!("snap-{i}")).send());
    let (succeeded, codes) = outcomes(join_all(calls).await);
    assert_eq!(succeeded, 1);
    assert_eq!(codes, vec!["InvalidCacheClusterState".to_string(); CONCURRENT - 1]);
    let snapshots = client.describe_snapshots().cache_cluster_id("snapped").send().await.unwrap();
    assert_eq!(snapshots.snapshots().len(), 1);
}

#[tokio::test]
async fn of_concurrent_deletes_with_final_snapshots_one_wins_and_leaves_one_snapshot() {
    let server = TestServer::start().await;
    let client = server.client();
    available_redis(&client, "doomed").await;
    let calls = (0..CONCURRENT).map(|i| {
        client.delete_cache_cluster().cache_cluster_id("doomed").final_snapshot_identifier(format!("final-{i}")).send()
    });
    let (succeeded, codes) = outcomes(join_all(calls).await);
    assert_eq!(succeeded, 1);
    assert_eq!(codes, vec!["InvalidCacheClusterState".to_string(); CONCURRENT - 1]);
    // The refused deletes left no snapshot behind.
    let snapshots = client.describe_snapshots().send().await.unwrap();
    assert_eq!(snapshots.snapshots().len(), 1, "{:?}", snapshots.snapshots());
}

#[tokio::test]
async fn of_concurrent_groups_adopting_one_cluster_exactly_one_gets_it() {
    let server = TestServer::start().await;
    let client = server.client();
    available_redis(&client, "adopted").await;
    let calls = (0..CONCURRENT).map(|i| {
        client
            .create_replication_group()
            .replication_group_id(format!("adopter-{i}"))
            .replication_group_description("adopts")
            .primary_cluster_id("adopted")
            .send()
    });
    let (succeeded, codes) = outcomes(join_all(calls).await);
    assert_eq!(succeeded, 1);
    assert_eq!(codes, vec!["InvalidParameterValue".to_string(); CONCURRENT - 1]);
    let cluster = describe_cluster(&client, "adopted").await;
    let owner = cluster.replication_group_id().expect("adopted by a group").to_string();
    let groups = client.describe_replication_groups().send().await.unwrap();
    let ids: Vec<&str> = groups.replication_groups().iter().filter_map(|g| g.replication_group_id()).collect();
    assert_eq!(ids, [owner.as_str()]);
}

#[tokio::test]
async fn a_parameter_group_deleted_while_a_cluster_moves_to_it_is_never_left_in_use() {
    let server = TestServer::start_with(|c| c.settle_timeout = Duration::ZERO).await;
    let client = server.client();
    memcached(&client, "mover", 1).send().await.unwrap();
    wait_cluster_available(&client, "mover").await;
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("target")
        .cache_parameter_group_family("memcached1.6")
        .description("deleted while a cluster moves to it")
        .send()
        .await
        .unwrap();
    let modifies = (0..CONCURRENT - 1).map(|_| {
        let modify = client
            .modify_cache_cluster()
            .cache_cluster_id("mover")
            .cache_parameter_group_name("target")
            .apply_immediately(true);
        async move { modify.send().await.map(drop) }
    });
    let delete = async { client.delete_cache_parameter_group().cache_parameter_group_name("target").send().await };
    let (_, deleted) = tokio::join!(join_all(modifies), delete);
    let group = describe_cluster(&client, "mover")
        .await
        .cache_parameter_group()
        .and_then(|g| g.cache_parameter_group_name().map(str::to_string));
    match deleted {
        Ok(_) => assert_ne!(group.as_deref(), Some("target"), "the cluster uses a deleted parameter group"),
        Err(_) => assert_eq!(group.as_deref(), Some("target")),
    }
}
