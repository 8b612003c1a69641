//! Serverless figures:
//! - create → first command answered through the endpoint (TLS handshake verifying the
//!   emulator's CA, then PING), against the same for a 2-node replication group with TLS
//!   (mode `required`), medians of RUNS, alternating;
//! - per-command round trip (GET) through the serverless endpoint (TLS, routed) against a
//!   plaintext connection straight to the node that owns the key, p50/p99 of COMMANDS.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::{connector, create, primary_endpoint, tls};
use crate::{median, ms, percentile};

const RUNS: usize = 5;
const COMMANDS: usize = 5_000;
const DEADLINE: Duration = Duration::from_secs(60);

async fn endpoint(client: &Client, name: &str) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let described = client.describe_serverless_caches().serverless_cache_name(name).send().await?;
        let cache = described.serverless_caches().first().context("described")?;
        if cache.status() == Some("available")
            && let Some(port) = cache.endpoint().and_then(|e| e.port())
        {
            return Ok(format!("127.0.0.1:{port}").parse()?);
        }
        if Instant::now() > deadline {
            bail!("{name} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends GET k and reads the (nil) answer, COMMANDS times; the round trips, sorted.
async fn round_trips<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(COMMANDS);
    let mut reply = [0u8; 5];
    for _ in 0..COMMANDS {
        let started = Instant::now();
        stream.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").await?;
        stream.read_exact(&mut reply).await?;
        anyhow::ensure!(&reply == b"$-1\r\n", "unexpected reply {:?}", String::from_utf8_lossy(&reply));
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

pub async fn run(client: &Client, admin: SocketAddr) -> anyhow::Result<()> {
    let connector = connector(admin).await?;
    let (mut serverless, mut group) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let started = Instant::now();
        let name = format!("bench-serverless-{run}");
        client.create_serverless_cache().serverless_cache_name(&name).engine("valkey").send().await?;
        tls(endpoint(client, &name).await?, &connector).await?;
        serverless.push(started.elapsed());

        let started = Instant::now();
        let id = format!("bench-tls-group-{run}");
        create(client, &id, 2, true).await?;
        tls(primary_endpoint(client, &id).await?, &connector).await?;
        group.push(started.elapsed());
        client.delete_replication_group().replication_group_id(&id).send().await?;
    }
    let (serverless, group) = (median(&mut serverless), median(&mut group));
    println!(
        "serverless cache, create -> first command through the TLS endpoint: median {:.1} ms; 2-node TLS replication group, create -> first command: median {:.1} ms; ratio {:.2} ({RUNS} runs each)",
        ms(serverless),
        ms(group),
        serverless.as_secs_f64() / group.as_secs_f64()
    );

    // The key `k` lives on the one shard's primary.
    let through = endpoint(client, "bench-serverless-0").await?;
    let (status, body) = e2e::raw_get(admin, "/_emulator/nodes").await?;
    anyhow::ensure!(status == 200, "GET /_emulator/nodes answered {status}");
    let nodes: Vec<serde_json::Value> = serde_json::from_str(&body)?;
    let primary = nodes
        .iter()
        .find(|n| n["serverless_cache"] == "bench-serverless-0" && n["role"] == "primary")
        .context("the cache's primary")?;
    let direct: SocketAddr = format!("127.0.0.1:{}", primary["port"]).parse()?;
    let stream = TcpStream::connect(through).await?;
    stream.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let mut encrypted = connector.connect(name, stream).await?;
    let mut plain = TcpStream::connect(direct).await?;
    plain.set_nodelay(true)?;
    let via_endpoint = round_trips(&mut encrypted).await?;
    let to_node = round_trips(&mut plain).await?;
    println!(
        "GET round trip: through the serverless endpoint (TLS, routed) p50 {:.3} ms, p99 {:.3} ms; straight to the node (plaintext) p50 {:.3} ms, p99 {:.3} ms ({COMMANDS} each)",
        ms(percentile(&via_endpoint, 0.5)),
        ms(percentile(&via_endpoint, 0.99)),
        ms(percentile(&to_node, 0.5)),
        ms(percentile(&to_node, 0.99)),
    );
    for run in 0..RUNS {
        client.delete_serverless_cache().serverless_cache_name(format!("bench-serverless-{run}")).send().await?;
    }
    Ok(())
}
