//! Online migration: 100,000 keys from a plain redis-server (the customer's, started here on
//! loopback) into a 2-node replication group while a client keeps writing to the source;
//! the time from StartMigration to every seeded key on the group, and after the cut-over,
//! the keys lost (seeded and written during the migration).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::CustomerNodeEndpoint;
use e2e::source::SourceRedis;
use e2e::{RedisClient, Resp};

use crate::ms;
use crate::replication::wait_available;

const KEYS: usize = 100_000;
const DEADLINE: Duration = Duration::from_secs(120);

async fn dbsize(address: std::net::SocketAddr) -> anyhow::Result<usize> {
    let mut r = RedisClient::connect(&address.ip().to_string(), address.port()).await?;
    match r.command(&["DBSIZE"]).await? {
        Resp::Integer(n) => Ok(usize::try_from(n)?),
        other => bail!("DBSIZE answered {other:?}"),
    }
}

/// Polls `address` until it holds `keys` keys or more; how long that took from `since`.
async fn until_size(address: std::net::SocketAddr, keys: usize, since: Instant) -> anyhow::Result<Duration> {
    while dbsize(address).await.unwrap_or(0) < keys {
        if since.elapsed() > DEADLINE {
            bail!("{keys} keys not on {address} in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(since.elapsed())
}

pub async fn run(client: &Client) -> anyhow::Result<()> {
    let source = SourceRedis::start(&[]).await;
    source.seed(KEYS).await.context("seeding the source")?;
    client
        .create_replication_group()
        .replication_group_id("bench-migration")
        .replication_group_description("bench")
        .num_cache_clusters(2)
        .cache_node_type("cache.t3.micro")
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .context("create replication group")?;
    let (primary, _) = wait_available(client, "bench-migration").await?;

    let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (stop, written, mut con) = (stop.clone(), written.clone(), source.connection().await);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n = written.load(Ordering::SeqCst);
                let set: redis::RedisResult<()> =
                    redis::cmd("SET").arg(format!("live:{n}")).arg(n).query_async(&mut con).await;
                if set.is_err() {
                    break;
                }
                written.store(n + 1, Ordering::SeqCst);
            }
        })
    };
    let endpoint = CustomerNodeEndpoint::builder().address("127.0.0.1").port(i32::from(source.port)).build();
    let started = Instant::now();
    client
        .start_migration()
        .replication_group_id("bench-migration")
        .customer_node_endpoint_list(endpoint)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("StartMigration: {e:?}"))?;
    let copied = until_size(primary, KEYS, started).await?;
    stop.store(true, Ordering::SeqCst);
    writer.await?;
    let live = written.load(Ordering::SeqCst);
    until_size(primary, KEYS + live, started).await?;
    client.complete_migration().replication_group_id("bench-migration").send().await.context("CompleteMigration")?;
    wait_available(client, "bench-migration").await?;
    let held = dbsize(primary).await?;
    println!(
        "online migration of {KEYS} keys (a writer on the source throughout): StartMigration -> every key on the group {:.1} ms; after CompleteMigration {held} of {} keys held, {} lost ({live} written during the migration)",
        ms(copied),
        KEYS + live,
        (KEYS + live).saturating_sub(held)
    );
    Ok(())
}
