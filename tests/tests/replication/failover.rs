//! Automatic failover when the primary dies (real SIGKILL), freezes (admin `stop`) or its zone
//! goes down; and in-place recovery when the group has no automatic failover.

use aws_sdk_elasticache::types::SourceType;
use e2e::TestServer;

use crate::support::*;

#[tokio::test]
async fn sigkilled_primary_fails_over_behind_the_same_endpoint_without_losing_acknowledged_writes() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "crash", 3, true, true).await;
    let g = wait_group_available(&client, "crash").await;
    let old = primary_id(&g);
    let old_port = member_port(member(&g, &old));
    let old_zone = member(&g, &old).preferred_availability_zone().unwrap().to_string();
    let (wport, rport) = (primary_port(&g), reader_port(&g));

    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    for i in 0..50 {
        w.set(&format!("before-{i}"), &i.to_string()).await.unwrap();
    }
    assert_eq!(w.wait(2, 1000).await.unwrap(), 2, "both replicas acknowledged the writes");

    let entry = wait_admin(&server, &old, "primary").await;
    let pid = pid_of(&entry);
    kill_9(pid);

    // Writes through the same endpoint work again, on a promoted replica.
    wait_write(wport, "after", "1").await;
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.role().await.unwrap(), "master");
    for i in 0..50 {
        assert_eq!(w.get(&format!("before-{i}")).await.unwrap(), Some(i.to_string()), "acknowledged write lost");
    }

    let g = wait_new_primary(&client, "crash", &old).await;
    let new = primary_id(&g);
    assert_ne!(new, old);
    assert_eq!(member(&g, &old).current_role(), Some("replica"), "{g:?}");
    assert_ne!(member(&g, &new).preferred_availability_zone(), Some(old_zone.as_str()), "promoted in another zone");
    assert_eq!((primary_port(&g), reader_port(&g)), (wport, rport), "endpoints keep their ports");
    assert_eq!(w.server_port().await.unwrap(), member_port(member(&g, &new)), "primary endpoint reaches {new}");
    let mut listed = g.member_clusters().to_vec();
    listed.sort();
    assert_eq!(listed, ["crash-001", "crash-002", "crash-003"], "membership unchanged");

    let message = failover_event(&old, &new);
    wait_event(&client, SourceType::ReplicationGroup, "crash", &message).await;
    wait_event(&client, SourceType::CacheCluster, &new, &message).await;

    // The old primary is restarted in place, as a replica of the new one.
    let entry = wait_admin(&server, &old, "replica").await;
    assert_ne!(pid_of(&entry), pid, "restarted with a new process");
    assert!(!process_alive(pid));
    assert_eq!(entry["port"].as_u64(), Some(u64::from(old_port)), "same port: {entry}");
    wait_role(old_port, "slave").await;
    wait_link_up(old_port).await;
    wait_read(old_port, "after", "1").await;
    let mut r = RedisClient::connect("127.0.0.1", old_port).await.unwrap();
    assert_eq!(r.get("before-49").await.unwrap().as_deref(), Some("49"));
    let info = r.info("replication").await.unwrap();
    assert_eq!(info.get("master_port").map(String::as_str), Some(member_port(member(&g, &new)).to_string().as_str()));
    let g = wait_group_available(&client, "crash").await;
    assert_eq!(primary_id(&g), new, "no second failover");
}

#[tokio::test]
async fn frozen_primary_is_failed_over_and_demoted_once_resumed() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "frozen", 3, true, true).await;
    let g = wait_group_available(&client, "frozen").await;
    let old = primary_id(&g);
    let old_port = member_port(member(&g, &old));
    let wport = primary_port(&g);
    let mut stale = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    stale.set("k", "v").await.unwrap();
    assert_eq!(stale.wait(2, 1000).await.unwrap(), 2);

    admin_action(&server, &old, "stop").await;
    let g = wait_new_primary(&client, "frozen", &old).await;
    let new = primary_id(&g);
    assert_eq!(member(&g, &old).current_role(), Some("replica"), "{g:?}");
    wait_write(wport, "during", "x").await;
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.server_port().await.unwrap(), member_port(member(&g, &new)));
    assert_eq!(w.get("k").await.unwrap().as_deref(), Some("v"));
    let entry = admin_node(&server, &old, "0001").await;
    assert_ne!(entry["health"], "healthy", "a frozen node is not healthy: {entry}");
    wait_event(&client, SourceType::ReplicationGroup, "frozen", &failover_event(&old, &new)).await;

    admin_action(&server, &old, "resume").await;
    wait_role(old_port, "slave").await;
    wait_admin(&server, &old, "replica").await;
    wait_link_up(old_port).await;
    wait_read(old_port, "during", "x").await;

    // A connection opened to the old primary before the failover must not write to it.
    match stale.command(&["SET", "stale", "1"]).await {
        Ok(Resp::Simple(ok)) if ok == "OK" => {
            panic!("a write through a pre-failover connection reached the old primary ({old}) after it was replaced")
        }
        _ => {}
    }
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.get("stale").await.unwrap(), None, "split brain: stale write visible on the new primary");
    let g = wait_group_available(&client, "frozen").await;
    assert_eq!(primary_id(&g), new);
}

/// A SIGSTOP from outside the emulator: the emulator hears it as its children's parent
/// (SIGCHLD), so the node shows `paused` (a probe that timed out would say `unreachable`)
/// and fails over without waiting for probes; SIGCONT brings it back as a replica.
#[tokio::test]
async fn primary_stopped_from_outside_is_known_at_once_and_failed_over() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "sigstop", 2, true, false).await;
    let g = wait_group_available(&client, "sigstop").await;
    let old = primary_id(&g);
    let pid = i32::try_from(pid_of(&admin_node(&server, &old, "0001").await)).unwrap();

    // SAFETY: a plain kill(2) of the node's pid, which the admin API just gave.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    poll_until(&format!("{old} paused in /_emulator/nodes"), SETTLE, || async {
        let entry = admin_node(&server, &old, "0001").await;
        if entry["health"] == "paused" { Ok(()) } else { Err(entry.to_string()) }
    })
    .await;
    let g = wait_new_primary(&client, "sigstop", &old).await;
    wait_write(primary_port(&g), "after", "1").await;

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    wait_admin(&server, &old, "replica").await;
    wait_read(member_port(member(&g, &old)), "after", "1").await;
}

/// A primary that runs but answers nothing (every client paused): only probes tell, and
/// the failover must not wait on the hung node (a probe or a command to it would wait out
/// its timeout). It comes back as a replica once its pause ends.
#[tokio::test]
async fn a_hung_primary_is_failed_over_and_comes_back_as_a_replica() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "hung", 3, true, false).await;
    let g = wait_group_available(&client, "hung").await;
    let old = primary_id(&g);
    let old_port = member_port(member(&g, &old));
    let mut hung = RedisClient::connect("127.0.0.1", old_port).await.unwrap();
    assert_eq!(hung.command(&["CLIENT", "PAUSE", "3000", "ALL"]).await.unwrap(), Resp::Simple("OK".into()));

    let g = wait_new_primary(&client, "hung", &old).await;
    wait_write(primary_port(&g), "after", "1").await;
    wait_admin(&server, &old, "replica").await;
    wait_read(old_port, "after", "1").await;
}

#[tokio::test]
async fn zone_outage_moves_the_primary_to_another_zone_and_nodes_rejoin_after() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "zonal", 3, true, true).await;
    let g = wait_group_available(&client, "zonal").await;
    let old = primary_id(&g);
    let old_port = member_port(member(&g, &old));
    let zone = member(&g, &old).preferred_availability_zone().unwrap().to_string();
    let wport = primary_port(&g);
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    w.set("pre", "1").await.unwrap();
    assert_eq!(w.wait(2, 1000).await.unwrap(), 2);

    let (status, _) = admin(&server, "POST", "/_emulator/zones/mars-1a/outage").await;
    assert_eq!(status, 404, "unknown zone");

    outage(&server, &zone, true).await;
    let g = wait_new_primary(&client, "zonal", &old).await;
    let new = primary_id(&g);
    assert_ne!(member(&g, &new).preferred_availability_zone(), Some(zone.as_str()), "new primary outside {zone}");
    wait_write(wport, "during-outage", "2").await;
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.get("pre").await.unwrap().as_deref(), Some("1"));
    let down: Vec<_> =
        admin_nodes(&server).await.into_iter().filter(|n| n["availability_zone"] == zone.as_str()).collect();
    assert!(!down.is_empty() && down.iter().all(|n| n["health"] != "healthy"), "nodes in {zone} are down: {down:?}");

    outage(&server, &zone, false).await;
    poll_until("every node healthy after the outage", SETTLE, || async {
        let nodes = admin_nodes(&server).await;
        if nodes.len() == 3 && nodes.iter().all(|n| n["health"] == "healthy") {
            Ok(())
        } else {
            Err(format!("{nodes:?}"))
        }
    })
    .await;
    wait_role(old_port, "slave").await;
    wait_admin(&server, &old, "replica").await;
    wait_link_up(old_port).await;
    wait_read(old_port, "during-outage", "2").await;
    let g = wait_group_available(&client, "zonal").await;
    assert_eq!(primary_id(&g), new);
    assert_eq!(members(&g).iter().filter(|m| m.current_role() == Some("replica")).count(), 2, "{g:?}");
}

#[tokio::test]
async fn without_automatic_failover_a_dead_primary_restarts_in_place() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "noaf", 2, false, false).await;
    let g = wait_group_available(&client, "noaf").await;
    assert_eq!(primary_id(&g), "noaf-001");
    let port = member_port(member(&g, "noaf-001"));
    let replica_port = member_port(member(&g, "noaf-002"));
    let wport = primary_port(&g);
    let pid = pid_of(&wait_admin(&server, "noaf-001", "primary").await);

    kill_9(pid);
    let entry = poll_until("noaf-001 restarted with a new pid", SETTLE, || async {
        let entry = admin_node(&server, "noaf-001", "0001").await;
        match entry["pid"].as_u64() {
            Some(p) if p != pid && process_alive(p) => Ok(entry),
            _ => Err(entry.to_string()),
        }
    })
    .await;
    assert_eq!(entry["port"].as_u64(), Some(u64::from(port)), "same port: {entry}");
    assert_eq!(entry["role"], "primary", "{entry}");

    wait_write(wport, "after", "1").await;
    let mut w = RedisClient::connect("127.0.0.1", wport).await.unwrap();
    assert_eq!(w.server_port().await.unwrap(), port, "primary endpoint still reaches noaf-001");
    assert_eq!(w.role().await.unwrap(), "master");
    wait_event(&client, SourceType::CacheCluster, "noaf-001", "Recovering cache nodes 0001").await;
    wait_event(&client, SourceType::CacheCluster, "noaf-001", "Finished recovery for cache nodes 0001").await;
    wait_link_up(replica_port).await;
    wait_read(replica_port, "after", "1").await;

    let g = wait_group_available(&client, "noaf").await;
    assert_eq!(primary_id(&g), "noaf-001", "no failover without AutomaticFailoverEnabled");
    assert_eq!(member_port(member(&g, "noaf-001")), port);
    let events = events_of(&client, SourceType::ReplicationGroup, "noaf").await;
    assert!(!events.iter().any(|e| e.starts_with("Failover from")), "{events:?}");
}
