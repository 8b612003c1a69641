//! Online migration: 100,000 keys from a plain redis-server (the customer's, started here on
//! loopback) into a 2-node replication group while a client keeps writing to the source;
//! the time from StartMigration to every seeded key on the group, and after the cut-over,
//! the keys lost (seeded and written during the migration).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::CustomerNodeEndpoint;
use e2e::RedisClient;
use e2e::source::SourceRedis;

use crate::ms;
use crate::replication::{create, wait_available};

const KEYS: usize = 100_000;
const DEADLINE: Duration = Duration::from_secs(120);

async fn dbsize(address: std::net::SocketAddr) -> anyhow::Result<usize> {
    RedisClient::connect(&address.ip().to_string(), address.port()).await?.dbsize().await
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
    create(client, "bench-migration", 2).await?;
    let (primary, _) = wait_available(client, "bench-migration").await?;

    let writer = source.writer().await;
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
    let live = writer.stop().await.context("the writer on the source")?;
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
