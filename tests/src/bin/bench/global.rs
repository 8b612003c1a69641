//! Global datastore figures: a primary group in us-east-1 and a secondary in us-west-2 (two
//! nodes each, cluster mode disabled): the replication lag between regions under a steady
//! write load (a write on the primary region's primary endpoint → readable through the
//! secondary's reader endpoint, p50/p99), and FailoverGlobalReplicationGroup under a writer:
//! the time until the new primary region takes a write, and acknowledged writes lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use e2e::RedisClient;
use tokio::sync::watch;

use crate::replication::{reader_endpoint, wait_available};
use crate::{ms, percentile};

const SAMPLES: usize = 1_000;
/// Writes acknowledged by the old primary region before the failover is asked for.
const WRITES_BEFORE_FAILOVER: usize = 2_000;
const DEADLINE: Duration = Duration::from_secs(60);
const GLOBAL: &str = "ldgnf-bench";

async fn connect(address: SocketAddr) -> anyhow::Result<RedisClient> {
    RedisClient::connect(&address.ip().to_string(), address.port()).await
}

/// Polls DescribeGlobalReplicationGroups until the datastore is `available` with its primary
/// in `region`.
async fn wait_global(client: &Client, region: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let out = client
            .describe_global_replication_groups()
            .global_replication_group_id(GLOBAL)
            .show_member_info(true)
            .send()
            .await?;
        let g = out.global_replication_groups().first().context("the datastore")?;
        let primary =
            g.members().iter().find(|m| m.role() == Some("PRIMARY")).and_then(|m| m.replication_group_region());
        if g.status() == Some("available") && primary == Some(region) {
            return Ok(());
        }
        if started.elapsed() > DEADLINE {
            bail!("{GLOBAL} not available with its primary in {region}: {g:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn create_datastore(east: &Client, west: &Client) -> anyhow::Result<()> {
    east.create_replication_group()
        .replication_group_id("bench-primary")
        .replication_group_description("bench")
        .engine("redis")
        .cache_node_type("cache.m5.large")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .send()
        .await
        .context("CreateReplicationGroup (primary)")?;
    wait_available(east, "bench-primary").await?;
    east.create_global_replication_group()
        .global_replication_group_id_suffix("bench")
        .primary_replication_group_id("bench-primary")
        .send()
        .await
        .context("CreateGlobalReplicationGroup")?;
    west.create_replication_group()
        .replication_group_id("bench-secondary")
        .replication_group_description("bench")
        .global_replication_group_id(GLOBAL)
        .num_cache_clusters(2)
        .send()
        .await
        .context("CreateReplicationGroup (secondary)")?;
    wait_global(east, "us-east-1").await
}

/// Writes `<prefix>:0`, `<prefix>:1`, … through `endpoint` until told to stop or refused,
/// counting the acknowledged ones in `acknowledged`.
async fn writer(endpoint: SocketAddr, prefix: &str, stop: watch::Receiver<bool>, acknowledged: Arc<AtomicUsize>) {
    let Ok(mut r) = connect(endpoint).await else { return };
    let mut i = 0;
    while !*stop.borrow() && r.set(&format!("{prefix}:{i}"), &i.to_string()).await.is_ok() {
        i += 1;
        acknowledged.store(i, Ordering::SeqCst);
    }
}

/// A write on `primary` until it reads back through `reader`, SAMPLES times.
async fn lag(primary: SocketAddr, reader: SocketAddr) -> anyhow::Result<Vec<Duration>> {
    let (mut writes, mut reads) = (connect(primary).await?, connect(reader).await?);
    let mut lags = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let (key, value) = (format!("lag:{i}"), i.to_string());
        let started = Instant::now();
        writes.set(&key, &value).await?;
        while reads.get(&key).await?.as_deref() != Some(value.as_str()) {
            if started.elapsed() > DEADLINE {
                bail!("{key} never reached the secondary region");
            }
        }
        lags.push(started.elapsed());
    }
    lags.sort();
    Ok(lags)
}

pub async fn run(east: &Client, west: &Client) -> anyhow::Result<()> {
    create_datastore(east, west).await?;
    let (east_primary, _) = wait_available(east, "bench-primary").await?;
    let (west_primary, _) = wait_available(west, "bench-secondary").await?;
    let west_reader = reader_endpoint(west, "bench-secondary").await?;

    let (stop, stopped) = watch::channel(false);
    let steady_writes = Arc::new(AtomicUsize::new(0));
    let steady = tokio::spawn(writer(east_primary, "steady", stopped, steady_writes.clone()));
    let lags = lag(east_primary, west_reader).await?;
    stop.send(true)?;
    steady.await?;
    let steady_writes = steady_writes.load(Ordering::SeqCst);
    println!(
        "cross-region replication lag (us-east-1 primary endpoint -> us-west-2 reader endpoint, a steady writer alongside, {steady_writes} writes): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({SAMPLES} writes)",
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or_default()),
    );

    // Failover under a writer that writes until the old primary region refuses.
    let (_keep_writing, never) = watch::channel(false);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let failing_over = tokio::spawn(writer(east_primary, "failover", never, acknowledged.clone()));
    while acknowledged.load(Ordering::SeqCst) < WRITES_BEFORE_FAILOVER {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    west.failover_global_replication_group()
        .global_replication_group_id(GLOBAL)
        .primary_region("us-west-2")
        .primary_replication_group_id("bench-secondary")
        .send()
        .await
        .context("FailoverGlobalReplicationGroup")?;
    let mut probe = connect(west_primary).await?;
    while probe.set("failover:probe", "1").await.is_err() {
        if started.elapsed() > DEADLINE {
            bail!("the new primary region never took a write");
        }
    }
    let writable = started.elapsed();
    wait_global(east, "us-west-2").await?;
    let settled = started.elapsed();
    failing_over.await?;
    let acknowledged = acknowledged.load(Ordering::SeqCst);
    let mut lost = 0;
    for i in 0..acknowledged {
        if probe.get(&format!("failover:{i}")).await?.as_deref() != Some(i.to_string().as_str()) {
            lost += 1;
        }
    }
    println!(
        "FailoverGlobalReplicationGroup (a writer on the old primary region): new primary region writable after {:.1} ms, datastore available after {:.1} ms; acknowledged writes lost: {lost} of {acknowledged}",
        ms(writable),
        ms(settled),
    );
    Ok(())
}
