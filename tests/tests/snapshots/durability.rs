//! Keys survive a clean emulator restart (stop, then start on the same state directory):
//! every node of a cluster and of a replication group comes back on its port with its data.

use std::time::Duration;

use e2e::{TestServer, port_refuses};

use crate::*;

#[tokio::test]
async fn keys_survive_a_clean_restart() {
    let server = TestServer::start().await;
    let client = server.client();
    let cluster_port = redis_with_keys(&client, "dur-c", "dc").await;
    let g = group_with_keys(&client, "dur-g", 2, "dg").await;
    let members = group_members(&g);
    let primary_port = primary_endpoint_port(&g);
    // And a snapshot taken before the restart stays usable after it.
    snapshot_of_cluster(&client, "before-restart", "dur-c").await;
    wait_snapshot(&client, "before-restart").await;
    wait_cluster_available(&client, "dur-c").await;
    let pids: Vec<(String, u64)> = admin_nodes(&server)
        .await
        .iter()
        .map(|n| (n["cache_cluster_id"].as_str().unwrap_or_default().to_string(), n["pid"].as_u64().unwrap_or(0)))
        .collect();
    drop(client);

    let state_dir = server.stop().await;
    let mut ports: Vec<u16> = members.iter().map(|m| m.2).collect();
    ports.push(cluster_port);
    for port in &ports {
        if !port_refuses(*port).await {
            // Diagnose before failing: who listens, and how long until the port closes (a
            // node started by a reconcile still in flight at shutdown dies ~20 ms later).
            let ss = std::process::Command::new("ss")
                .args(["-ltnp", &format!("sport = :{port}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            let started = std::time::Instant::now();
            while !port_refuses(*port).await && started.elapsed() < SETTLE {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "port {port} still open after the server stopped (members {members:?}, cluster {cluster_port}, pids before the stop {pids:?}); {ss:?}; closed after {:?}",
                started.elapsed()
            );
        }
    }

    let server = TestServer::start_in(state_dir).await;
    let client = server.client();
    let c = wait_cluster_available(&client, "dur-c").await;
    assert_eq!(node_port(&c), cluster_port, "same port after the restart");
    wait_keys(cluster_port, "dc").await;

    let g = wait_group_available(&client, "dur-g").await;
    let mut after = group_members(&g);
    let mut before = members.clone();
    after.sort();
    before.sort();
    assert_eq!(
        after.iter().map(|m| (&m.0, m.2)).collect::<Vec<_>>(),
        before.iter().map(|m| (&m.0, m.2)).collect::<Vec<_>>(),
        "same members on the same ports"
    );
    for (id, _, port) in &after {
        wait_keys(*port, "dg").await;
        assert!(id.starts_with("dur-g-"));
    }
    assert_eq!(primary_endpoint_port(&g), primary_port);
    wait_keys(primary_port, "dg").await;
    // Writes through the primary still reach the replica.
    let mut primary = wait_redis(primary_port).await;
    primary.set("after", "restart").await.unwrap();
    for (_, _, port) in &after {
        poll_until("write after restart replicated", SETTLE, || async {
            let mut r = RedisClient::connect("127.0.0.1", *port).await.map_err(|e| e.to_string())?;
            match r.get("after").await.map_err(|e| e.to_string())? {
                Some(v) if v == "restart" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    let s = wait_snapshot(&client, "before-restart").await;
    assert_eq!(s.cache_cluster_id(), Some("dur-c"));
    create_redis(&client, "from-old", Some("before-restart")).await;
    let c = wait_cluster_available(&client, "from-old").await;
    wait_keys(node_port(&c), "dc").await;
}
