//! TestFailover and the switch-over through ModifyReplicationGroup(PrimaryClusterId).

use aws_sdk_elasticache::types::{AutomaticFailoverStatus, SourceType};
use e2e::{TestServer, api_error, expect_code};

use crate::support::*;

#[tokio::test]
async fn test_failover_promotes_a_replica_and_records_events() {
    // Creates answer at once, so a group can be caught while it is still `creating`.
    let server = TestServer::start_with(|c| c.settle_timeout = std::time::Duration::ZERO).await;
    let client = server.client();
    create(&client, "drill", 3, true, true).await;
    // Not yet available: a failover test must wait.
    expect_code(
        client.test_failover().replication_group_id("drill").node_group_id("0001").send().await,
        "InvalidReplicationGroupState",
    );
    let g = wait_group_available(&client, "drill").await;
    let old = primary_id(&g);
    let wport = primary_port(&g);
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    w.set("k", "v").await.unwrap();
    assert_eq!(w.wait(2, 1000).await.unwrap(), 2);

    let out = client.test_failover().replication_group_id("drill").node_group_id("0001").send().await.unwrap();
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));

    let g = wait_new_primary(&client, "drill", &old).await;
    let new = primary_id(&g);
    assert_eq!(member(&g, &old).current_role(), Some("replica"));
    assert_eq!(primary_port(&g), wport);
    wait_write(wport, "after-drill", "1").await;
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.server_port().await.unwrap(), member_port(member(&g, &new)));
    assert_eq!(w.get("k").await.unwrap().as_deref(), Some("v"));
    wait_role(member_port(member(&g, &old)), "slave").await;

    let events = wait_event(&client, SourceType::ReplicationGroup, "drill", &failover_event(&old, &new)).await;
    let called = events.iter().position(|e| e == "Test Failover API called for node group 0001");
    let done = events.iter().position(|e| *e == failover_event(&old, &new));
    assert!(called.is_some() && called < done, "API call event before the failover event: {events:?}");
    wait_event(&client, SourceType::CacheCluster, &new, &failover_event(&old, &new)).await;

    // Error paths.
    expect_code(
        client.test_failover().replication_group_id("drill").node_group_id("0002").send().await,
        "NodeGroupNotFoundFault",
    );
    let e = expect_code(
        client.test_failover().replication_group_id("nope").node_group_id("0001").send().await,
        "ReplicationGroupNotFoundFault",
    );
    assert_eq!(e.status, 404);

    create(&client, "manual", 2, false, false).await;
    wait_group_available(&client, "manual").await;
    expect_code(
        client.test_failover().replication_group_id("manual").node_group_id("0001").send().await,
        "TestFailoverNotAvailableFault",
    );
    create(&client, "single", 1, false, false).await;
    wait_group_available(&client, "single").await;
    expect_code(
        client.test_failover().replication_group_id("single").node_group_id("0001").send().await,
        "TestFailoverNotAvailableFault",
    );
    let g = describe_group(&client, "manual").await;
    assert_eq!(primary_id(&g), "manual-001", "a refused test failover changes nothing");
}

#[tokio::test]
async fn test_failover_is_limited_to_15_a_day() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "busy", 2, true, false).await;
    let mut g = wait_group_available(&client, "busy").await;
    for i in 0..15 {
        let old = primary_id(&g);
        client
            .test_failover()
            .replication_group_id("busy")
            .node_group_id("0001")
            .send()
            .await
            .unwrap_or_else(|e| panic!("TestFailover #{}: {e:?}", i + 1));
        g = wait_new_primary(&client, "busy", &old).await;
    }
    expect_code(
        client.test_failover().replication_group_id("busy").node_group_id("0001").send().await,
        "APICallRateForCustomerExceeded",
    );
    let called = events_of(&client, SourceType::ReplicationGroup, "busy").await;
    assert_eq!(called.iter().filter(|e| *e == "Test Failover API called for node group 0001").count(), 15);
}

#[tokio::test]
async fn modify_switches_over_to_a_chosen_member_and_toggles_failover() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "switch", 3, true, false).await;
    let g = wait_group_available(&client, "switch").await;
    assert_eq!(primary_id(&g), "switch-001");
    let wport = primary_port(&g);

    let out = client
        .modify_replication_group()
        .replication_group_id("switch")
        .primary_cluster_id("switch-003")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_ne!(out.replication_group().and_then(|g| g.status()), Some("available"), "{out:?}");
    let g = wait_new_primary(&client, "switch", "switch-001").await;
    assert_eq!(primary_id(&g), "switch-003", "the chosen member is promoted");
    wait_write(wport, "k", "v").await;
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.server_port().await.unwrap(), member_port(member(&g, "switch-003")));
    wait_role(member_port(member(&g, "switch-001")), "slave").await;
    wait_read(member_port(member(&g, "switch-002")), "k", "v").await;

    // Unknown member.
    let e = api_error(
        client.modify_replication_group().replication_group_id("switch").primary_cluster_id("other-001").send().await,
    );
    assert!((400..500).contains(&e.status), "{e:?}");

    // Failover off, then MultiAZ without it is refused; nothing to change is refused.
    let out = client
        .modify_replication_group()
        .replication_group_id("switch")
        .automatic_failover_enabled(false)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_eq!(out.replication_group().and_then(|g| g.automatic_failover()), Some(&AutomaticFailoverStatus::Disabled));
    let g = wait_group_available(&client, "switch").await;
    assert_eq!(g.automatic_failover(), Some(&AutomaticFailoverStatus::Disabled));
    expect_code(
        client.modify_replication_group().replication_group_id("switch").multi_az_enabled(true).send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        client.modify_replication_group().replication_group_id("switch").send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        client.test_failover().replication_group_id("switch").node_group_id("0001").send().await,
        "TestFailoverNotAvailableFault",
    );
    client
        .modify_replication_group()
        .replication_group_id("switch")
        .replication_group_description("renamed")
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "switch").await;
    assert_eq!(g.description(), Some("renamed"));
    expect_code(
        client
            .modify_replication_group()
            .replication_group_id("missing")
            .replication_group_description("x")
            .send()
            .await,
        "ReplicationGroupNotFoundFault",
    );
}

#[tokio::test]
async fn a_test_failover_cut_short_by_a_restart_finishes_after_it() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "halted", 2, true, false).await;
    let g = wait_group_available(&client, "halted").await;
    let old = primary_id(&g);
    let mut w = RedisClient::connect("127.0.0.1", primary_port(&g)).await.unwrap();
    w.set("k", "v").await.unwrap();
    assert_eq!(w.wait(1, 1000).await.unwrap(), 1);
    drop(w);
    let state_dir = server.stop().await;
    // The request the emulator was acting on when it stopped, still pending in its store.
    {
        let (store, scope) = e2e::store_in(state_dir.path()).await;
        store
            .update_replication_group(&scope, "halted", |group, _| {
                group.status = "modifying".into();
                group.failover_to = Some(store::FailoverRequest::BestReplica);
                Ok::<_, ()>(Vec::new())
            })
            .await
            .unwrap();
    }

    let server = TestServer::start_in(state_dir).await;
    let client = server.client();
    let g = wait_new_primary(&client, "halted", &old).await;
    let new = primary_id(&g);
    wait_event(&client, SourceType::ReplicationGroup, "halted", &failover_event(&old, &new)).await;
    wait_role(member_port(member(&g, &old)), "slave").await;
    wait_read(primary_port(&g), "k", "v").await;
    wait_write(primary_port(&g), "after", "1").await;
}
