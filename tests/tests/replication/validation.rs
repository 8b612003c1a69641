//! CreateReplicationGroup validation: every refusal is a client error and creates nothing.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::create_replication_group::builders::CreateReplicationGroupFluentBuilder;
use e2e::{TestServer, api_error, expect_code};

use crate::support::*;

fn base(client: &Client, id: &str) -> CreateReplicationGroupFluentBuilder {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("validation")
        .cache_node_type("cache.t3.micro")
}

/// Nothing but `groups` / `clusters` exists, and no node runs beyond `nodes`.
async fn assert_only(server: &TestServer, client: &Client, groups: &[&str], clusters: &[&str], nodes: usize) {
    let (mut g, mut c) = everything(client).await;
    g.sort();
    c.sort();
    assert_eq!(g, groups, "replication groups");
    assert_eq!(c, clusters, "cache clusters");
    assert_eq!(admin_nodes(server).await.len(), nodes, "nodes");
}

#[tokio::test]
async fn invalid_creates_are_refused_and_create_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let cases: Vec<(&str, CreateReplicationGroupFluentBuilder, &str)> = vec![
        ("id too long", base(&client, &"a".repeat(41)).num_cache_clusters(2), "InvalidParameterValue"),
        ("id with underscore", base(&client, "bad_id").num_cache_clusters(2), "InvalidParameterValue"),
        ("id starting with a digit", base(&client, "1abc").num_cache_clusters(2), "InvalidParameterValue"),
        ("id ending with a hyphen", base(&client, "abc-").num_cache_clusters(2), "InvalidParameterValue"),
        ("id with two hyphens", base(&client, "a--b").num_cache_clusters(2), "InvalidParameterValue"),
        ("zero clusters", base(&client, "zero").num_cache_clusters(0), "InvalidParameterValue"),
        ("seven clusters", base(&client, "seven").num_cache_clusters(7), "InvalidParameterValue"),
        ("six replicas", base(&client, "six").replicas_per_node_group(6), "InvalidParameterValue"),
        ("negative replicas", base(&client, "neg").replicas_per_node_group(-1), "InvalidParameterValue"),
        (
            "zones count mismatch",
            base(&client, "azs")
                .num_cache_clusters(3)
                .preferred_cache_cluster_azs("us-east-1a")
                .preferred_cache_cluster_azs("us-east-1b"),
            "InvalidParameterValue",
        ),
        (
            "failover without replica",
            base(&client, "afone").num_cache_clusters(1).automatic_failover_enabled(true),
            "InvalidParameterValue",
        ),
        (
            "multi-az without failover",
            base(&client, "mazs").num_cache_clusters(2).multi_az_enabled(true),
            "InvalidParameterCombination",
        ),
        (
            "multi-az without replica",
            base(&client, "mazone").num_cache_clusters(1).automatic_failover_enabled(true).multi_az_enabled(true),
            "InvalidParameterValue",
        ),
        ("memcached", base(&client, "mc").engine("memcached").num_cache_clusters(2), "InvalidParameterValue"),
        (
            "blank description",
            base(&client, "blank").replication_group_description(" ").num_cache_clusters(2),
            "InvalidParameterValue",
        ),
        (
            "unknown node type",
            base(&client, "nt").cache_node_type("cache.x9.huge").num_cache_clusters(2),
            "InvalidParameterValue",
        ),
        (
            "KMS key without at-rest encryption",
            base(&client, "kms").num_cache_clusters(2).kms_key_id("alias/app"),
            "InvalidParameterCombination",
        ),
        (
            "malformed KMS key",
            base(&client, "kms2").num_cache_clusters(2).at_rest_encryption_enabled(true).kms_key_id("not a key"),
            "InvalidKMSKeyFault",
        ),
    ];
    for (what, request, code) in cases {
        let e = api_error(request.send().await);
        assert!(
            e.code == code || (what == "multi-az without replica" && e.code == "InvalidParameterCombination"),
            "{what}: expected {code}, got {e:?}"
        );
        assert!((400..500).contains(&e.status), "{what}: {e:?}");
        assert_only(&server, &client, &[], &[], 0).await;
    }
    // Both counts at once.
    let e = api_error(base(&client, "both").num_cache_clusters(2).replicas_per_node_group(1).send().await);
    assert!((400..500).contains(&e.status) && e.code.starts_with("InvalidParameter"), "{e:?}");

    // User groups need TLS, and must exist.
    let e = api_error(base(&client, "users").num_cache_clusters(2).user_group_ids("ug1").send().await);
    assert_eq!(e.code, "InvalidParameterCombination", "user groups without TLS: {e:?}");
    let e = api_error(
        base(&client, "users")
            .num_cache_clusters(2)
            .transit_encryption_enabled(true)
            .user_group_ids("ug1")
            .send()
            .await,
    );
    assert_eq!((e.code.as_str(), e.status), ("UserGroupNotFound", 404), "{e:?}");
    assert_only(&server, &client, &[], &[], 0).await;

    // Unknown groups.
    for e in [
        api_error(client.describe_replication_groups().replication_group_id("ghost").send().await),
        api_error(client.delete_replication_group().replication_group_id("ghost").send().await),
    ] {
        assert_eq!((e.code.as_str(), e.status), ("ReplicationGroupNotFoundFault", 404), "{e:?}");
    }
}

#[tokio::test]
async fn duplicate_groups_and_taken_member_ids_are_refused() {
    let server = TestServer::start().await;
    let client = server.client();
    base(&client, "dup").num_cache_clusters(2).send().await.unwrap();
    expect_code(base(&client, "dup").num_cache_clusters(2).send().await, "ReplicationGroupAlreadyExists");
    expect_code(base(&client, "DUP").num_cache_clusters(3).send().await, "ReplicationGroupAlreadyExists");
    wait_group_available(&client, "dup").await;
    assert_only(&server, &client, &["dup"], &["dup-001", "dup-002"], 2).await;

    client
        .create_cache_cluster()
        .cache_cluster_id("taken-002")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap();
    expect_code(base(&client, "taken").num_cache_clusters(3).send().await, "CacheClusterAlreadyExists");
    poll_until("taken-002 running", SETTLE, || async {
        let n = admin_nodes(&server).await.len();
        if n == 3 { Ok(()) } else { Err(format!("{n} nodes")) }
    })
    .await;
    assert_only(&server, &client, &["dup"], &["dup-001", "dup-002", "taken-002"], 3).await;
}
