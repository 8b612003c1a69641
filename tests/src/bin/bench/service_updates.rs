//! A rolling service update of a 3-node replication group (BatchApplyUpdateAction): how long
//! it takes to complete, and what clients see meanwhile: reads through the reader endpoint
//! (a fresh connection each, as the e2e test reads) and writes through the primary endpoint
//! (one connection, reopened after an error), with their errors counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::UpdateActionStatus;
use e2e::RedisClient;

use crate::ms;
use crate::replication::{create, reader_endpoint, wait_available};

/// In the emulator's catalog of service updates from the start.
const UPDATE: &str = "elasticache-20231114-001";
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Counts {
    done: AtomicUsize,
    failed: AtomicUsize,
}

async fn status(client: &Client) -> anyhow::Result<Option<UpdateActionStatus>> {
    let out =
        client.describe_update_actions().replication_group_ids("bench-roll").service_update_name(UPDATE).send().await?;
    Ok(out.update_actions().first().and_then(|a| a.update_action_status().cloned()))
}

pub async fn run(client: &Client) -> anyhow::Result<()> {
    create(client, "bench-roll", 3).await?;
    let (primary, _) = wait_available(client, "bench-roll").await?;
    let reader = reader_endpoint(client, "bench-roll").await?;
    let (host, port) = (primary.ip().to_string(), primary.port());
    RedisClient::connect(&host, port).await?.set("seed", "1").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let (reads, writes) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
    let read_task = tokio::spawn({
        let (stop, reads) = (stop.clone(), reads.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let read = async {
                    let mut r = RedisClient::connect(&reader.ip().to_string(), reader.port()).await?;
                    r.get("seed").await
                };
                let counter = if read.await.is_ok() { &reads.done } else { &reads.failed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let write_task = tokio::spawn({
        let (stop, writes) = (stop.clone(), writes.clone());
        async move {
            let mut connection: Option<RedisClient> = None;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                if connection.is_none() {
                    connection = RedisClient::connect(&host, port).await.ok();
                }
                let Some(c) = connection.as_mut() else { continue };
                if c.set(&format!("roll:{i}"), "v").await.is_ok() {
                    writes.done.fetch_add(1, Ordering::SeqCst);
                } else {
                    writes.failed.fetch_add(1, Ordering::SeqCst);
                    connection = None;
                }
                i += 1;
            }
        }
    });

    let started = Instant::now();
    client
        .batch_apply_update_action()
        .service_update_name(UPDATE)
        .replication_group_ids("bench-roll")
        .send()
        .await
        .context("BatchApplyUpdateAction")?;
    while status(client).await? != Some(UpdateActionStatus::Complete) {
        if started.elapsed() > DEADLINE {
            bail!("the update did not complete in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    read_task.await?;
    write_task.await?;
    let count = |c: &Counts| (c.done.load(Ordering::SeqCst), c.failed.load(Ordering::SeqCst));
    let ((read_ok, read_failed), (write_ok, write_failed)) = (count(&reads), count(&writes));
    println!(
        "rolling service update of a 3-node group: complete in {:.1} ms; reads through the reader endpoint {read_ok} ok, {read_failed} failed; writes through the primary endpoint {write_ok} ok, {write_failed} failed (the primary's hand-over)",
        ms(elapsed),
    );
    Ok(())
}
