//! BatchApplyUpdateAction on a 3-node replication group, on real redis nodes: the replicas
//! restart one at a time, then the primary hands over and restarts; a reader through the
//! reader endpoint and a writer through the primary endpoint keep going all along.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aws_sdk_elasticache::types::UpdateActionStatus;
use e2e::TestServer;

use crate::support::*;

const UPDATE: &str = "elasticache-20231114-001";

/// One GET on a fresh connection through the reader endpoint. A replica leaving it for its
/// restart is drained first, so no read is cut off: none is retried.
async fn read_once(port: u16) -> Result<(), String> {
    let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
    match r.get("seed").await.map_err(|e| e.to_string())? {
        Some(v) if v == "1" => Ok(()),
        other => Err(format!("seed read {other:?}")),
    }
}

/// The update action of group `roll`, with its node-level status.
async fn roll_action(client: &aws_sdk_elasticache::Client) -> Result<aws_sdk_elasticache::types::UpdateAction, String> {
    let out = client
        .describe_update_actions()
        .replication_group_ids("roll")
        .service_update_name(UPDATE)
        .show_node_level_update_status(true)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    out.update_actions().first().cloned().ok_or_else(|| "no update action".to_string())
}

#[tokio::test]
async fn an_update_rolls_through_a_group_without_losing_reads_or_writes() {
    let server = TestServer::start().await;
    let client = server.client();
    create(&client, "roll", 3, true, false).await;
    let g = wait_group_available(&client, "roll").await;
    let (wport, rport) = (primary_port(&g), reader_port(&g));
    let primary_before = primary_id(&g);
    wait_write(wport, "seed", "1").await;
    for m in ["roll-002", "roll-003"] {
        wait_read(member_port(member(&g, m)), "seed", "1").await;
    }
    let pids_before: Vec<u64> = admin_nodes(&server).await.iter().map(pid_of).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let failed_reads = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn({
        let (stop, failed, reads) = (stop.clone(), failed_reads.clone(), reads.clone());
        async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = read_once(rport).await {
                    failed.fetch_add(1, Ordering::SeqCst);
                    errors.push(e);
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
            errors
        }
    });
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut acknowledged = Vec::new();
            let mut i = 0;
            let mut conn: Option<RedisClient> = None;
            while !stop.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = RedisClient::connect("127.0.0.1", wport).await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    let key = format!("w{i}");
                    match c.set(&key, "v").await {
                        Ok(()) => acknowledged.push(key),
                        Err(_) => conn = None,
                    }
                }
                i += 1;
            }
            acknowledged
        }
    });

    let out = client
        .batch_apply_update_action()
        .service_update_name(UPDATE)
        .replication_group_ids("roll")
        .send()
        .await
        .unwrap();
    assert_eq!(out.processed_update_actions()[0].update_action_status(), Some(&UpdateActionStatus::WaitingToStart));
    poll_until("the update complete on roll", SETTLE, || async {
        let a = roll_action(&client).await?;
        match a.update_action_status() {
            Some(UpdateActionStatus::Complete) => Ok(()),
            other => Err(format!("{other:?} {:?}", a.nodes_updated())),
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let errors = reader.await.unwrap();
    let acknowledged = writer.await.unwrap();
    assert!(reads.load(Ordering::SeqCst) > 0 && !acknowledged.is_empty());
    assert_eq!(failed_reads.load(Ordering::SeqCst), 0, "failed reads: {errors:?}");

    let a = roll_action(&client).await.unwrap();
    assert_eq!(a.nodes_updated(), Some("3/3"));
    let members = a.node_group_update_status()[0].node_group_member_update_status();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m.node_update_status().map(|s| s.as_str()) == Some("complete")));
    assert!(members.iter().all(|m| m.node_update_start_date().is_some() && m.node_update_end_date().is_some()));

    let g = wait_group_available(&client, "roll").await;
    assert_ne!(primary_id(&g), primary_before, "the primary handed over before its restart");
    let pids_after: Vec<u64> = admin_nodes(&server).await.iter().map(pid_of).collect();
    assert!(pids_before.iter().all(|pid| !pids_after.contains(pid)), "every node restarted");
    let mut w = RedisClient::connect("127.0.0.1", primary_port(&g)).await.unwrap();
    for key in &acknowledged {
        assert_eq!(w.get(key).await.unwrap().as_deref(), Some("v"), "{key} acknowledged, then lost");
    }
    let events = events_of(&client, aws_sdk_elasticache::types::SourceType::ReplicationGroup, "roll").await;
    assert!(events.iter().any(|e| e.starts_with("Failover from primary node")), "{events:?}");

    // Stop: nothing to stop once complete; a group not applied yet goes stopping -> stopped.
    let stop = client.batch_stop_update_action().service_update_name(UPDATE).replication_group_ids("roll").send().await;
    assert_eq!(stop.unwrap().unprocessed_update_actions().len(), 1);
}
