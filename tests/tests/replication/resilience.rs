//! Failures that are not the primary's alone: replicas dying or freezing, repeated failovers,
//! node-type changes that restart nodes, and an outage taking a primary and a replica at once.

use std::collections::BTreeSet;

use aws_sdk_elasticache::types::SourceType;
use e2e::TestServer;

use crate::support::*;

/// The ports reader-endpoint connections land on, over `n` fresh connections.
async fn reader_targets(rport: u16, n: usize) -> Result<BTreeSet<u16>, String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let mut r = RedisClient::connect("127.0.0.1", rport).await.map_err(|e| e.to_string())?;
        seen.insert(r.server_port().await.map_err(|e| e.to_string())?);
    }
    Ok(seen)
}

#[tokio::test]
async fn a_crashed_replica_is_restarted_without_a_failover() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "repl", 3, true, false).await;
    let g = wait_group_available(&client, "repl").await;
    let primary = primary_id(&g);
    let victim = "repl-002";
    let victim_port = member_port(member(&g, victim));
    let pid = pid_of(&wait_admin(&server, victim, "replica").await);
    let mut w = RedisClient::connect("127.0.0.1", primary_port(&g)).await.unwrap();

    kill_9(pid);
    wait_event(&client, SourceType::CacheCluster, victim, "Recovering cache nodes 0001").await;
    w.set("while-down", "1").await.unwrap();
    let entry = wait_admin(&server, victim, "replica").await;
    assert_ne!(pid_of(&entry), pid);
    wait_event(&client, SourceType::CacheCluster, victim, "Finished recovery for cache nodes 0001").await;
    wait_link_up(victim_port).await;
    wait_read(victim_port, "while-down", "1").await;
    let g = wait_group_available(&client, "repl").await;
    assert_eq!(primary_id(&g), primary, "a replica crash is no failover");
    let events = events_of(&client, SourceType::ReplicationGroup, "repl").await;
    assert!(!events.iter().any(|e| e.starts_with("Failover")), "{events:?}");
}

#[tokio::test]
async fn a_frozen_replica_leaves_the_reader_endpoint_and_is_not_promoted() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "cold", 3, true, false).await;
    let g = wait_group_available(&client, "cold").await;
    assert_eq!(primary_id(&g), "cold-001");
    let rport = reader_port(&g);
    let (p2, p3) = (member_port(member(&g, "cold-002")), member_port(member(&g, "cold-003")));
    assert_eq!(reader_targets(rport, 6).await.unwrap(), BTreeSet::from([p2, p3]));

    admin_action(&server, "cold-002", "stop").await;
    poll_until("reader endpoint avoiding the frozen replica", SETTLE, || async {
        let seen = reader_targets(rport, 6).await?;
        if seen == BTreeSet::from([p3]) { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;

    // A failover while cold-002 is frozen must pick cold-003.
    client.test_failover().replication_group_id("cold").node_group_id("0001").send().await.unwrap();
    let g = poll_until("cold failed over to cold-003", SETTLE, || async {
        let g = describe_group(&client, "cold").await;
        let first = members(&g)[0].cache_cluster_id().unwrap_or_default().to_string();
        if first != "cold-001" { Ok(g) } else { Err(format!("{:?}", g.status())) }
    })
    .await;
    assert_eq!(primary_id(&g), "cold-003", "the frozen replica must not be promoted");
    wait_write(primary_port(&g), "k", "v").await;

    admin_action(&server, "cold-002", "resume").await;
    wait_admin(&server, "cold-002", "replica").await;
    wait_link_up(p2).await;
    wait_read(p2, "k", "v").await;
    poll_until("cold-002 repointed to the new primary", SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", p2).await.map_err(|e| e.to_string())?;
        let info = r.info("replication").await.map_err(|e| e.to_string())?;
        if info.get("master_port") == Some(&p3.to_string()) { Ok(()) } else { Err(format!("{info:?}")) }
    })
    .await;
    wait_group_available(&client, "cold").await;
    let p1 = member_port(member(&g, "cold-001"));
    poll_until("reader endpoint over both replicas again", SETTLE, || async {
        let seen = reader_targets(rport, 6).await?;
        if seen == BTreeSet::from([p1, p2]) { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
}

#[tokio::test]
async fn two_crashes_in_a_row_fail_over_twice_without_losing_data() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "twice", 3, true, true).await;
    let mut g = wait_group_available(&client, "twice").await;
    let wport = primary_port(&g);
    let mut primaries = vec![primary_id(&g)];
    for round in 0..2 {
        let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
        w.set(&format!("round-{round}"), "x").await.unwrap();
        assert_eq!(w.wait(2, 2000).await.unwrap(), 2, "round {round}: both replicas acknowledge");
        let old = primaries.last().unwrap().clone();
        kill_9(pid_of(&wait_admin(&server, &old, "primary").await));
        wait_write(wport, &format!("after-{round}"), "y").await;
        g = wait_new_primary(&client, "twice", &old).await;
        primaries.push(primary_id(&g));
        // The killed node must be back (and caught up) before the next round.
        wait_admin(&server, &old, "replica").await;
        wait_link_up(member_port(member(&g, &old))).await;
        wait_group_available(&client, "twice").await;
    }
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    for key in ["round-0", "round-1", "after-0", "after-1"] {
        assert!(w.get(key).await.unwrap().is_some(), "{key} lost after two failovers ({primaries:?})");
    }
    let events = events_of(&client, SourceType::ReplicationGroup, "twice").await;
    assert_eq!(events.iter().filter(|e| e.starts_with("Failover from")).count(), 2, "{events:?}");
}

#[tokio::test]
async fn an_outage_of_a_zone_holding_the_primary_and_a_replica_promotes_elsewhere() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_replication_group()
        .replication_group_id("crowd")
        .replication_group_description("two in one zone")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(3)
        .automatic_failover_enabled(true)
        .preferred_cache_cluster_azs("us-east-1a")
        .preferred_cache_cluster_azs("us-east-1a")
        .preferred_cache_cluster_azs("us-east-1b")
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "crowd").await;
    assert_eq!(primary_id(&g), "crowd-001");
    assert_eq!(member(&g, "crowd-002").preferred_availability_zone(), Some("us-east-1a"));
    let wport = primary_port(&g);

    outage(&server, "us-east-1a", true).await;
    let g = wait_new_primary(&client, "crowd", "crowd-001").await;
    assert_eq!(primary_id(&g), "crowd-003", "only crowd-003 is outside us-east-1a");
    wait_write(wport, "k", "v").await;
    outage(&server, "us-east-1a", false).await;
    for id in ["crowd-001", "crowd-002"] {
        wait_admin(&server, id, "replica").await;
        let port = member_port(member(&g, id));
        wait_link_up(port).await;
        wait_read(port, "k", "v").await;
    }
    wait_group_available(&client, "crowd").await;
}

async fn maxmemory(port: u16) -> String {
    let mut r = RedisClient::connect("127.0.0.1", port).await.unwrap();
    match r.command(&["CONFIG", "GET", "maxmemory"]).await.unwrap() {
        Resp::Array(Some(items)) if items.len() == 2 => items[1].text().unwrap_or_default(),
        other => panic!("CONFIG GET maxmemory answered {other:?}"),
    }
}

/// Changing the node type is an online operation on AWS: the data stays, with or without
/// automatic failover, and the nodes get the new type's memory.
async fn node_type_change_keeps_data(id: &str, failover: bool) {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, id, 2, failover, false).await;
    let g = wait_group_available(&client, id).await;
    let mut w = RedisClient::connect("127.0.0.1", primary_port(&g)).await.unwrap();
    w.set("precious", "1").await.unwrap();
    assert_eq!(w.wait(1, 1000).await.unwrap(), 1);
    let pids: Vec<u64> = admin_nodes(&server).await.iter().map(pid_of).collect();
    let replica_port = member_port(&members(&g)[1]);
    let before = maxmemory(replica_port).await;

    client
        .modify_replication_group()
        .replication_group_id(id)
        .cache_node_type("cache.m5.large")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    poll_until(&format!("{id} on cache.m5.large and available"), SETTLE, || async {
        let g = describe_group(&client, id).await;
        if g.status() == Some("available") && g.cache_node_type() == Some("cache.m5.large") {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", g.status(), g.cache_node_type()))
        }
    })
    .await;
    let out = client.describe_cache_clusters().show_cache_node_info(true).send().await.unwrap();
    for c in out.cache_clusters() {
        assert_eq!(c.cache_node_type(), Some("cache.m5.large"), "{c:?}");
    }
    poll_until("replica maxmemory following the new node type", SETTLE, || async {
        let now = maxmemory(replica_port).await;
        if now != before { Ok(()) } else { Err(format!("maxmemory still {now}")) }
    })
    .await;
    let restarted = admin_nodes(&server).await.iter().filter(|n| !pids.contains(&pid_of(n))).count();
    let g = describe_group(&client, id).await;
    let mut w = RedisClient::connect("127.0.0.1", primary_port(&g)).await.unwrap();
    let value = w.get("precious").await.unwrap();
    if value.as_deref() != Some("1") {
        let mut events = events_of(&client, SourceType::ReplicationGroup, id).await;
        for m in g.member_clusters() {
            events
                .extend(events_of(&client, SourceType::CacheCluster, m).await.into_iter().map(|e| format!("{m}: {e}")));
        }
        panic!(
            "data lost by a node type change (failover {failover}, {restarted} of 2 nodes restarted): GET precious = \
             {value:?}; events {events:?}"
        );
    }
}

#[tokio::test]
async fn node_type_change_keeps_data_with_failover() {
    node_type_change_keeps_data("scaleaf", true).await;
}

#[tokio::test]
async fn node_type_change_keeps_data_without_failover() {
    node_type_change_keeps_data("scalenoaf", false).await;
}
