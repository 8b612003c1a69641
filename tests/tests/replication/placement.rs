//! Members spread over zones; the primary endpoint writes, the reader endpoint reads from
//! replicas only.

use std::collections::BTreeSet;

use aws_sdk_elasticache::types::{AutomaticFailoverStatus, MultiAzStatus};
use e2e::TestServer;

use crate::support::*;

#[tokio::test]
async fn three_members_across_zones_with_primary_and_reader_endpoints() {
    let server = TestServer::start().await;
    let client = server.client();
    let created = create(&client, "Trio", 3, true, true).await;
    assert_eq!(created.replication_group_id(), Some("trio"), "id stored lowercase");
    assert_eq!(created.status(), Some("creating"));
    assert_eq!(created.member_clusters(), ["trio-001", "trio-002", "trio-003"]);

    let g = wait_group_available(&client, "trio").await;
    assert_eq!(g.member_clusters(), ["trio-001", "trio-002", "trio-003"]);
    assert_eq!(g.automatic_failover(), Some(&AutomaticFailoverStatus::Enabled));
    assert_eq!(g.multi_az(), Some(&MultiAzStatus::Enabled));
    assert_eq!(g.cluster_enabled(), Some(false));
    assert_eq!(g.cache_node_type(), Some("cache.t3.micro"));
    assert_eq!(g.arn(), Some("arn:aws:elasticache:us-east-1:000000000000:replicationgroup:trio"));
    assert_eq!(g.node_groups()[0].node_group_id(), Some("0001"));
    let primary = primary_id(&g);
    assert_eq!(primary, "trio-001");
    let zones: BTreeSet<_> = members(&g).iter().map(|m| m.preferred_availability_zone().unwrap_or_default()).collect();
    assert_eq!(zones.len(), 3, "three distinct zones: {g:?}");
    assert!(zones.iter().all(|z| e2e::ZONES.contains(z)), "{zones:?}");
    assert_eq!(members(&g).iter().filter(|m| m.current_role() == Some("replica")).count(), 2);
    for m in members(&g) {
        assert_eq!(m.cache_node_id(), Some("0001"), "{m:?}");
        assert_eq!(m.read_endpoint().and_then(|e| e.address()), Some("127.0.0.1"), "{m:?}");
    }

    // Describe and the admin API agree on ports, zones and roles.
    let admin = admin_nodes(&server).await;
    assert_eq!(admin.len(), 3, "{admin:?}");
    for m in members(&g) {
        let id = m.cache_cluster_id().unwrap();
        let entry = admin.iter().find(|n| n["cache_cluster_id"] == id).unwrap_or_else(|| panic!("{id} in {admin:?}"));
        assert_eq!(entry["port"].as_u64(), Some(u64::from(member_port(m))), "{entry}");
        assert_eq!(entry["availability_zone"].as_str(), m.preferred_availability_zone(), "{entry}");
        assert_eq!(entry["replication_group_id"], "trio", "{entry}");
        assert_eq!(entry["node_group_id"], "0001", "{entry}");
        assert_eq!(entry["role"].as_str(), m.current_role(), "{entry}");
    }

    // Members are visible as cache clusters of the group.
    let clusters = client.describe_cache_clusters().show_cache_node_info(true).send().await.unwrap();
    let mut listed: Vec<_> = clusters
        .cache_clusters()
        .iter()
        .map(|c| (c.cache_cluster_id().unwrap_or_default(), c.replication_group_id().unwrap_or_default()))
        .collect();
    listed.sort();
    assert_eq!(listed, [("trio-001", "trio"), ("trio-002", "trio"), ("trio-003", "trio")]);

    let (wport, rport) = (primary_port(&g), reader_port(&g));
    let node_ports: BTreeSet<u16> = members(&g).iter().map(member_port).collect();
    assert!(!node_ports.contains(&wport) && !node_ports.contains(&rport) && wport != rport, "endpoints are own ports");

    // Writes through the primary endpoint reach the primary.
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.role().await.unwrap(), "master");
    assert_eq!(w.server_port().await.unwrap(), member_port(member(&g, "trio-001")));
    w.set("greeting", "hello").await.unwrap();
    assert_eq!(w.wait(2, 5000).await.unwrap(), 2, "both replicas acknowledge");
    wait_read(rport, "greeting", "hello").await;

    // Reader connections land on replicas only, and on each of them.
    let replica_ports: BTreeSet<u16> =
        members(&g).iter().filter(|m| m.current_role() == Some("replica")).map(member_port).collect();
    let mut seen = BTreeSet::new();
    for _ in 0..8 {
        let mut r = RedisClient::connect("127.0.0.1", rport).await.unwrap();
        assert_eq!(r.role().await.unwrap(), "slave", "reader endpoint reaches a replica");
        seen.insert(r.server_port().await.unwrap());
        // A replica refuses writes.
        match r.command(&["SET", "x", "y"]).await.unwrap() {
            Resp::Error(e) => assert!(e.starts_with("READONLY"), "{e}"),
            other => panic!("write through the reader endpoint answered {other:?}"),
        }
    }
    assert_eq!(seen, replica_ports, "reader endpoint spreads over every replica");
}

#[tokio::test]
async fn preferred_zones_are_honoured_and_replicas_per_node_group_counts() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_replication_group()
        .replication_group_id("placed")
        .replication_group_description("placed")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .preferred_cache_cluster_azs("us-east-1c")
        .preferred_cache_cluster_azs("us-east-1a")
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "placed").await;
    assert_eq!(member(&g, "placed-001").preferred_availability_zone(), Some("us-east-1c"));
    assert_eq!(member(&g, "placed-002").preferred_availability_zone(), Some("us-east-1a"));
    assert_eq!(g.automatic_failover(), Some(&AutomaticFailoverStatus::Disabled));

    client
        .create_replication_group()
        .replication_group_id("rpng")
        .replication_group_description("replicas per node group")
        .cache_node_type("cache.t3.micro")
        .replicas_per_node_group(2)
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "rpng").await;
    assert_eq!(g.member_clusters(), ["rpng-001", "rpng-002", "rpng-003"]);
    assert_eq!(members(&g).len(), 3);
}

#[tokio::test]
async fn without_a_linked_replica_the_reader_endpoint_reaches_the_primary() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "alone", 1, false, false).await;
    let g = wait_group_available(&client, "alone").await;
    assert_eq!(members(&g).len(), 1);
    let mut r = RedisClient::connect("127.0.0.1", reader_port(&g)).await.unwrap();
    assert_eq!(r.role().await.unwrap(), "master");
    assert_eq!(r.server_port().await.unwrap(), member_port(member(&g, "alone-001")));

    // A pair whose only replica freezes: reads fall back to the primary.
    create(&client, "pair", 2, false, false).await;
    let g = wait_group_available(&client, "pair").await;
    let (rport, primary) = (reader_port(&g), member_port(member(&g, "pair-001")));
    admin_action(&server, "pair-002", "stop").await;
    poll_until("pair reader endpoint on the primary", SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", rport).await.map_err(|e| e.to_string())?;
        let port = r.server_port().await.map_err(|e| e.to_string())?;
        if port == primary { Ok(()) } else { Err(format!("reached {port}")) }
    })
    .await;
    admin_action(&server, "pair-002", "resume").await;
    let replica = member_port(member(&g, "pair-002"));
    poll_until("pair reader endpoint back on the replica", SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", rport).await.map_err(|e| e.to_string())?;
        let port = r.server_port().await.map_err(|e| e.to_string())?;
        if port == replica { Ok(()) } else { Err(format!("reached {port}")) }
    })
    .await;
}
