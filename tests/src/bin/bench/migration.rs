//! Online migration: 100,000 keys from a plain redis-server (the customer's, started here on
//! loopback) into a 2-node replication group while a client keeps writing to the source;
//! the time from StartMigration to every seeded key on the group, and after the cut-over,
//! the keys lost (seeded and written during the migration). The same into a serverless
//! cache, the client writing through the cache's endpoint ([`serverless`]).

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

/// Polls the serverless cache `name` until its migration is at `stage` (None: over) and the
/// cache `available`.
async fn serverless_stage(client: &Client, name: &str, stage: Option<&str>) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = client.describe_serverless_caches().serverless_cache_name(name).send().await?;
        let cache = out.serverless_caches().first().context("described")?;
        let at = cache.migration().and_then(|m| m.status());
        if at == stage && cache.status() == Some("available") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("migration of {name} not at {stage:?} in time: {at:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Online migration into a serverless cache: 100,000 keys from a plain redis-server while a
/// client writes through the cache's endpoint the whole time (to the source, then to the
/// cache): StartMigration -> in sync, CompleteMigration -> served by the cache, the longest
/// a write waited (the cutover's pause), the writer's errors and the keys lost.
pub async fn serverless(client: &Client, admin: std::net::SocketAddr) -> anyhow::Result<()> {
    let name = "bench-serverless-migration";
    let source = SourceRedis::start(&[]).await;
    source.seed(KEYS).await.context("seeding the source")?;
    client.create_serverless_cache().serverless_cache_name(name).engine("valkey").send().await?;
    serverless_stage(client, name, None).await?;
    let described = client.describe_serverless_caches().serverless_cache_name(name).send().await?;
    let port = described.serverless_caches().first().and_then(|c| c.endpoint()).and_then(|e| e.port());
    let port = u16::try_from(port.context("an endpoint")?)?;
    let endpoint = CustomerNodeEndpoint::builder().address("127.0.0.1").port(i32::from(source.port)).build();
    client
        .prepare_migration()
        .serverless_cache_name(name)
        .customer_node_endpoint_list(endpoint)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("PrepareMigration: {e:?}"))?;
    serverless_stage(client, name, Some("prepared")).await?;

    let (_, ca) = e2e::raw_get(admin, "/_emulator/ca.pem").await?;
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::TcpTls { host: "127.0.0.1".to_string(), port, insecure: false, tls_params: None },
        redis: redis::RedisConnectionInfo::default(),
    };
    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(ca.into_bytes()) };
    let mut connection = redis::Client::build_with_tls(info, certificates)?.get_multiplexed_async_connection().await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (stop, mut connection) = (stop.clone(), connection.clone());
        async move {
            let (mut written, mut errors, mut slowest) = (0usize, 0usize, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let started = Instant::now();
                let set: redis::RedisResult<()> =
                    redis::cmd("SET").arg(format!("live:{written}")).arg(written).query_async(&mut connection).await;
                slowest = slowest.max(started.elapsed());
                match set {
                    Ok(()) => written += 1,
                    Err(_) => errors += 1,
                }
            }
            (written, errors, slowest)
        }
    });

    let started = Instant::now();
    client.start_migration().serverless_cache_name(name).send().await.context("StartMigration")?;
    serverless_stage(client, name, Some("in-sync")).await?;
    let synced = started.elapsed();
    let completing = Instant::now();
    client.complete_migration().serverless_cache_name(name).send().await.context("CompleteMigration")?;
    serverless_stage(client, name, None).await?;
    let cut_over = completing.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (written, errors, slowest) = writer.await?;

    let mut lost = 0;
    let names: Vec<(String, usize)> =
        (0..KEYS).map(|i| (format!("key:{i}"), i)).chain((0..written).map(|n| (format!("live:{n}"), n))).collect();
    for batch in names.chunks(1_000) {
        let mut pipe = redis::pipe();
        for (key, _) in batch {
            pipe.get(key);
        }
        let values: Vec<Option<usize>> = pipe.query_async(&mut connection).await?;
        lost += batch.iter().zip(values).filter(|((_, v), got)| *got != Some(*v)).count();
    }
    println!(
        "serverless migration of {KEYS} keys (a client writing through the cache's endpoint throughout): StartMigration -> in sync {:.1} ms; CompleteMigration -> served by the cache {:.1} ms; longest single write, the cutover's pause included {:.1} ms; writer errors {errors}; keys lost {lost} of {} ({written} written during the migration)",
        ms(synced),
        ms(cut_over),
        ms(slowest),
        KEYS + written
    );
    client.delete_serverless_cache().serverless_cache_name(name).send().await?;
    Ok(())
}
