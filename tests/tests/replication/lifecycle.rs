//! Replica scaling and deletion, with and without keeping the primary.

use std::collections::BTreeSet;

use aws_sdk_elasticache::types::ConfigureShard;
use e2e::{TestServer, expect_code};

use crate::support::*;

#[tokio::test]
async fn replicas_are_added_and_removed() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "scale", 2, true, false).await;
    let g = wait_group_available(&client, "scale").await;
    let wport = primary_port(&g);
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    w.set("seed", "1").await.unwrap();

    let out = client
        .increase_replica_count()
        .replication_group_id("scale")
        .new_replica_count(3)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));
    let g = wait_group_available(&client, "scale").await;
    assert_eq!(g.member_clusters(), ["scale-001", "scale-002", "scale-003", "scale-004"]);
    assert_eq!(members(&g).len(), 4);
    assert_eq!(primary_id(&g), "scale-001");
    for id in ["scale-003", "scale-004"] {
        let m = member(&g, id);
        assert_eq!(m.current_role(), Some("replica"), "{m:?}");
        let port = member_port(m);
        wait_link_up(port).await;
        wait_read(port, "seed", "1").await;
        let cluster = client.describe_cache_clusters().cache_cluster_id(id).send().await.unwrap();
        assert_eq!(cluster.cache_clusters()[0].replication_group_id(), Some("scale"));
    }
    let zones: BTreeSet<_> = members(&g).iter().filter_map(|m| m.preferred_availability_zone()).collect();
    assert_eq!(zones.len(), 3, "four members still use every zone: {g:?}");
    assert_eq!(w.wait(3, 2000).await.unwrap(), 3, "three replicas acknowledge");

    // Through ReplicaConfiguration (Terraform's path for node group 0001).
    client
        .increase_replica_count()
        .replication_group_id("scale")
        .replica_configuration(ConfigureShard::builder().node_group_id("0001").new_replica_count(4).build())
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "scale").await;
    assert_eq!(members(&g).len(), 5);
    expect_code(
        client
            .increase_replica_count()
            .replication_group_id("scale")
            .new_replica_count(6)
            .apply_immediately(true)
            .send()
            .await,
        "InvalidParameterValue",
    );

    // Decrease to one replica; the removed members' nodes go away.
    let before: Vec<(String, u16)> =
        members(&g).iter().map(|m| (m.cache_cluster_id().unwrap().to_string(), member_port(m))).collect();
    let out = client
        .decrease_replica_count()
        .replication_group_id("scale")
        .new_replica_count(1)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("modifying"));
    let g = wait_group_available(&client, "scale").await;
    assert_eq!(g.member_clusters().len(), 2, "{g:?}");
    assert_eq!(members(&g).len(), 2);
    assert_eq!(primary_id(&g), "scale-001", "the primary is never removed");
    let kept: BTreeSet<&str> = g.member_clusters().iter().map(String::as_str).collect();
    for (id, port) in &before {
        if !kept.contains(id.as_str()) {
            wait_cluster_gone(&client, id).await;
            wait_refuses(*port).await;
        }
    }
    wait_write(wport, "after-scale", "1").await;

    // Named removal, and the errors around it.
    create(&client, "named", 3, false, false).await;
    wait_group_available(&client, "named").await;
    client
        .decrease_replica_count()
        .replication_group_id("named")
        .replicas_to_remove("named-002")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "named").await;
    assert_eq!(g.member_clusters(), ["named-001", "named-003"]);
    wait_cluster_gone(&client, "named-002").await;
    expect_code(
        client
            .decrease_replica_count()
            .replication_group_id("scale")
            .new_replica_count(-1)
            .apply_immediately(true)
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(
        client
            .increase_replica_count()
            .replication_group_id("gone")
            .new_replica_count(2)
            .apply_immediately(true)
            .send()
            .await,
        "ReplicationGroupNotFoundFault",
    );
}

#[tokio::test]
async fn delete_removes_every_member_and_endpoint() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "doomed", 3, true, true).await;
    let g = wait_group_available(&client, "doomed").await;
    let ports: Vec<u16> = members(&g).iter().map(member_port).collect();
    let pids: Vec<u64> = admin_nodes(&server).await.iter().map(pid_of).collect();
    assert_eq!(pids.len(), 3);
    let (wport, rport) = (primary_port(&g), reader_port(&g));

    let out = client.delete_replication_group().replication_group_id("doomed").send().await.unwrap();
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("deleting"));
    // The delete answered once it had settled: the group and its members are gone already.
    expect_code(
        client.delete_replication_group().replication_group_id("doomed").send().await,
        "ReplicationGroupNotFoundFault",
    );
    for id in ["doomed-001", "doomed-002", "doomed-003"] {
        expect_code(client.describe_cache_clusters().cache_cluster_id(id).send().await, "CacheClusterNotFound");
    }
    for port in ports {
        wait_refuses(port).await;
    }
    poll_until("member processes gone", SETTLE, || async {
        let alive: Vec<_> = pids.iter().filter(|p| process_alive(**p)).collect();
        if alive.is_empty() { Ok(()) } else { Err(format!("{alive:?}")) }
    })
    .await;
    wait_refuses(wport).await;
    wait_refuses(rport).await;
    assert!(admin_nodes(&server).await.is_empty());
    expect_code(
        client.delete_replication_group().replication_group_id("doomed").send().await,
        "ReplicationGroupNotFoundFault",
    );
    // The id is free again.
    create(&client, "doomed", 2, false, false).await;
    wait_group_available(&client, "doomed").await;
}

#[tokio::test]
async fn delete_retaining_the_primary_leaves_a_standalone_cluster() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "keep", 3, true, false).await;
    let g = wait_group_available(&client, "keep").await;
    let primary = primary_id(&g);
    let primary_node_port = member_port(member(&g, &primary));
    let others: Vec<(String, u16)> = members(&g)
        .iter()
        .filter(|m| m.current_role() == Some("replica"))
        .map(|m| (m.cache_cluster_id().unwrap().to_string(), member_port(m)))
        .collect();
    let mut w = RedisClient::connect("127.0.0.1", primary_port(&g)).await.unwrap();
    w.set("kept", "yes").await.unwrap();

    client.delete_replication_group().replication_group_id("keep").retain_primary_cluster(true).send().await.unwrap();
    wait_group_gone(&client, "keep").await;
    for (id, port) in &others {
        wait_cluster_gone(&client, id).await;
        wait_refuses(*port).await;
    }
    let out =
        client.describe_cache_clusters().cache_cluster_id(&primary).show_cache_node_info(true).send().await.unwrap();
    let c = &out.cache_clusters()[0];
    assert_eq!(c.replication_group_id(), None, "standalone now: {c:?}");
    assert_eq!(c.cache_cluster_status(), Some("available"), "{c:?}");
    assert_eq!(c.cache_nodes()[0].endpoint().and_then(|e| e.port()), Some(i32::from(primary_node_port)));
    let mut r = RedisClient::connect("127.0.0.1", primary_node_port).await.unwrap();
    r.ping().await.unwrap();
    assert_eq!(r.role().await.unwrap(), "master");
    assert_eq!(r.get("kept").await.unwrap().as_deref(), Some("yes"), "data kept");
    r.set("still-writable", "1").await.unwrap();
    let info = r.info("replication").await.unwrap();
    assert_eq!(info.get("connected_slaves").map(String::as_str), Some("0"), "{info:?}");
    let entry = admin_node(&server, &primary, "0001").await;
    assert!(entry["replication_group_id"].is_null(), "{entry}");
    assert_eq!(admin_nodes(&server).await.len(), 1);

    // The standalone cluster can be deleted like any other.
    client.delete_cache_cluster().cache_cluster_id(&primary).send().await.unwrap();
    wait_cluster_gone(&client, &primary).await;
    wait_refuses(primary_node_port).await;
}

#[tokio::test]
async fn an_existing_cluster_is_adopted_as_primary() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("solo")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap();
    let port = poll_until("solo available", SETTLE, || async {
        let out = client.describe_cache_clusters().cache_cluster_id("solo").show_cache_node_info(true).send().await;
        let out = out.map_err(|e| format!("{e:?}"))?;
        let c = &out.cache_clusters()[0];
        match (c.cache_cluster_status(), c.cache_nodes().first().and_then(|n| n.endpoint()).and_then(|e| e.port())) {
            (Some("available"), Some(port)) => Ok(u16::try_from(port).unwrap()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut r = RedisClient::connect("127.0.0.1", port).await.unwrap();
    r.set("existing", "data").await.unwrap();

    client
        .create_replication_group()
        .replication_group_id("adopt")
        .replication_group_description("adopts solo")
        .primary_cluster_id("solo")
        .num_cache_clusters(3)
        .automatic_failover_enabled(true)
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "adopt").await;
    assert_eq!(primary_id(&g), "solo");
    assert_eq!(member_port(member(&g, "solo")), port, "the adopted node keeps its port");
    assert_eq!(g.member_clusters().len(), 3, "{g:?}");
    assert!(g.member_clusters().iter().any(|m| m == "solo"));
    for m in members(&g).iter().filter(|m| m.cache_cluster_id() != Some("solo")) {
        assert_eq!(m.current_role(), Some("replica"));
        wait_read(member_port(m), "existing", "data").await;
    }
    let out = client.describe_cache_clusters().cache_cluster_id("solo").send().await.unwrap();
    assert_eq!(out.cache_clusters()[0].replication_group_id(), Some("adopt"));
    wait_read(primary_port(&g), "existing", "data").await;

    // Already a member: cannot be adopted twice.
    let e = e2e::api_error(
        client
            .create_replication_group()
            .replication_group_id("adopt2")
            .replication_group_description("again")
            .primary_cluster_id("solo")
            .num_cache_clusters(2)
            .send()
            .await,
    );
    assert!((400..500).contains(&e.status), "{e:?}");
    expect_code(
        client
            .create_replication_group()
            .replication_group_id("adopt3")
            .replication_group_description("missing primary")
            .primary_cluster_id("nobody")
            .num_cache_clusters(2)
            .send()
            .await,
        "CacheClusterNotFound",
    );
}

#[tokio::test]
async fn replica_changes_that_would_break_the_group_are_refused() {
    // Mutations answer at once, so a group can be caught while it is still `modifying`.
    let server = TestServer::start_with(|c| c.settle_timeout = std::time::Duration::ZERO).await;
    let client = server.client();
    client
        .create_replication_group()
        .replication_group_id("guard")
        .replication_group_description("guarded")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .tags(aws_sdk_elasticache::types::Tag::builder().key("team").value("cache").build())
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "guard").await;
    let arn = g.arn().expect("ARN").to_string();
    let tags = client.list_tags_for_resource().resource_name(&arn).send().await.unwrap();
    let tags: Vec<_> =
        tags.tag_list().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())).collect();
    assert_eq!(tags, [("team", "cache")]);

    expect_code(
        client
            .decrease_replica_count()
            .replication_group_id("guard")
            .new_replica_count(0)
            .apply_immediately(true)
            .send()
            .await,
        "InvalidParameterCombination",
    );
    let e = e2e::api_error(
        client
            .decrease_replica_count()
            .replication_group_id("guard")
            .new_replica_count(0)
            .replicas_to_remove("guard-001")
            .apply_immediately(true)
            .send()
            .await,
    );
    assert!((400..500).contains(&e.status), "removing the primary: {e:?}");
    expect_code(
        client
            .increase_replica_count()
            .replication_group_id("guard")
            .new_replica_count(1)
            .apply_immediately(true)
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(
        client
            .increase_replica_count()
            .replication_group_id("guard")
            .replica_configuration(ConfigureShard::builder().node_group_id("0002").new_replica_count(3).build())
            .apply_immediately(true)
            .send()
            .await,
        "NodeGroupNotFoundFault",
    );
    let g = describe_group(&client, "guard").await;
    assert_eq!(g.member_clusters(), ["guard-001", "guard-002"], "refusals change nothing");
    assert_eq!(g.status(), Some("available"));

    // While modifying, the group refuses further changes and deletion.
    client
        .increase_replica_count()
        .replication_group_id("guard")
        .new_replica_count(2)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    expect_code(
        client.delete_replication_group().replication_group_id("guard").send().await,
        "InvalidReplicationGroupState",
    );
    expect_code(
        client
            .increase_replica_count()
            .replication_group_id("guard")
            .new_replica_count(3)
            .apply_immediately(true)
            .send()
            .await,
        "InvalidReplicationGroupState",
    );
    let g = wait_group_available(&client, "guard").await;
    assert_eq!(members(&g).len(), 3);

    // Without replicas, failover cannot be turned on.
    create(&client, "lonely", 1, false, false).await;
    wait_group_available(&client, "lonely").await;
    expect_code(
        client.modify_replication_group().replication_group_id("lonely").automatic_failover_enabled(true).send().await,
        "InvalidParameterValue",
    );
}

#[tokio::test]
async fn a_group_survives_an_emulator_restart_with_its_primary_and_ports() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "durable", 3, true, true).await;
    let g = wait_group_available(&client, "durable").await;
    client.test_failover().replication_group_id("durable").node_group_id("0001").send().await.unwrap();
    let g = wait_new_primary(&client, "durable", &primary_id(&g)).await;
    let primary = primary_id(&g);
    let (wport, rport) = (primary_port(&g), reader_port(&g));
    let ports: Vec<(String, u16)> =
        members(&g).iter().map(|m| (m.cache_cluster_id().unwrap().to_string(), member_port(m))).collect();

    let dir = server.stop().await;
    for (_, port) in &ports {
        wait_refuses(*port).await;
    }
    wait_refuses(wport).await;

    let server = TestServer::start_in(dir).await;
    let client = server.client();
    let g = wait_group_available(&client, "durable").await;
    assert_eq!(primary_id(&g), primary, "the promoted primary stays primary across a restart");
    assert_eq!((primary_port(&g), reader_port(&g)), (wport, rport), "endpoints keep their ports");
    for (id, port) in &ports {
        assert_eq!(member_port(member(&g, id)), *port, "{id} keeps its port");
    }
    wait_write(wport, "k", "v").await;
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.server_port().await.unwrap(), member_port(member(&g, &primary)));
    for (id, port) in ports.iter().filter(|(id, _)| *id != primary) {
        wait_role(*port, "slave").await;
        wait_read(*port, "k", "v").await;
        assert_eq!(member(&g, id).current_role(), Some("replica"));
    }
    let (status, _) = admin(&server, "POST", "/_emulator/reset").await;
    assert_eq!(status, 200);
    wait_group_gone(&client, "durable").await;
    for (_, port) in &ports {
        wait_refuses(*port).await;
    }
    wait_refuses(wport).await;
    wait_refuses(rport).await;
}

#[tokio::test]
async fn create_cache_cluster_with_a_replication_group_adds_a_replica() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "grow", 2, true, false).await;
    let g = wait_group_available(&client, "grow").await;
    wait_write(primary_port(&g), "seed", "1").await;

    let out = client
        .create_cache_cluster()
        .cache_cluster_id("grow-reader")
        .replication_group_id("grow")
        .preferred_availability_zone("us-east-1c")
        .send()
        .await
        .expect("CreateCacheCluster with ReplicationGroupId");
    let cluster = out.cache_cluster().expect("cluster");
    assert_eq!(cluster.replication_group_id(), Some("grow"));
    assert_eq!(cluster.cache_cluster_status(), Some("creating"));
    let g = wait_group_available(&client, "grow").await;
    let m = member(&g, "grow-reader");
    assert_eq!(m.current_role(), Some("replica"), "{m:?}");
    assert_eq!(m.preferred_availability_zone(), Some("us-east-1c"));
    wait_read(member_port(m), "seed", "1").await;

    // What AWS refuses: a memcached engine, an id in use, an unknown group.
    let memcached = client
        .create_cache_cluster()
        .cache_cluster_id("grow-m")
        .replication_group_id("grow")
        .engine("memcached")
        .send()
        .await;
    expect_code(memcached, "InvalidParameterCombination");
    let taken = client.create_cache_cluster().cache_cluster_id("grow-reader").replication_group_id("grow").send().await;
    expect_code(taken, "CacheClusterAlreadyExists");
    let unknown = client.create_cache_cluster().cache_cluster_id("lost").replication_group_id("nothing").send().await;
    expect_code(unknown, "ReplicationGroupNotFoundFault");
    assert_eq!(members(&wait_group_available(&client, "grow").await).len(), 3, "refusals change nothing");
}
