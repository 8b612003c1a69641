//! Nodes at rest run their timers once a second (`hz 1`): idle, the timer is all a node
//! costs. What forks on them (a replica's full sync, a failover) still completes, and the
//! group comes back to rest quiet.

use e2e::TestServer;

use crate::support::*;

/// Polls until `INFO server` on `port` says the node's configured `hz` is `hz`.
async fn wait_hz(port: u16, hz: &str) {
    poll_until(&format!("configured_hz:{hz} on port {port}"), SETTLE, || async {
        let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let info = r.info("server").await.map_err(|e| e.to_string())?;
        match info.get("configured_hz") {
            Some(seen) if seen == hz => Ok(()),
            other => Err(format!("configured_hz {other:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn a_group_at_rest_runs_quietly_and_still_syncs_and_fails_over() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "pace", 2, true, false).await;
    let g = wait_group_available(&client, "pace").await;
    for m in members(&g) {
        wait_hz(member_port(m), "1").await;
    }
    let mut w = RedisClient::connect("127.0.0.1", primary_port(&g)).await.unwrap();
    w.set("seed", "1").await.unwrap();

    // A new replica's full sync forks on the quiet primary.
    client
        .increase_replica_count()
        .replication_group_id("pace")
        .new_replica_count(2)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "pace").await;
    let added = member(&g, "pace-003");
    wait_link_up(member_port(added)).await;
    wait_read(member_port(added), "seed", "1").await;
    for m in members(&g) {
        wait_hz(member_port(m), "1").await;
    }

    // A failover moves the primary; the group comes back to rest.
    let old = primary_id(&g);
    client.test_failover().replication_group_id("pace").node_group_id("0001").send().await.unwrap();
    wait_new_primary(&client, "pace", &old).await;
    let g = wait_group_available(&client, "pace").await;
    wait_write(primary_port(&g), "after", "1").await;
    for m in members(&g) {
        wait_hz(member_port(m), "1").await;
    }
}
