//! Serverless figures:
//! - create → first command answered through the endpoint (TLS handshake verifying the
//!   emulator's CA, then PING), against the same for a 2-node replication group with TLS
//!   (mode `required`), medians of RUNS, alternating, each from a ready warm pool;
//! - per-command round trip (GET) through the serverless endpoint (TLS, routed) against a
//!   plaintext connection straight to the node that owns the key, p50/p99 of COMMANDS;
//! - scale-out behind the endpoint with SCALE_KEYS keys while a client writes (its own
//!   server, whose shards hold SCALE_SHARD_BYTES): duration, writer errors, keys lost.

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
        // As a test suite's first cache would find it (see the waiters figures).
        crate::waiters::warm_pool_ready(admin).await?;
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
        "serverless cache, create -> first command through the TLS endpoint: median {:.1} ms; 2-node TLS replication group, create -> first command: median {:.1} ms; ratio {:.2} ({RUNS} runs each, each from a ready warm pool)",
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

/// Keys in the cache before it scales out, and the size of each value.
const SCALE_KEYS: usize = 100_000;
const VALUE_BYTES: usize = 100;
/// What one shard holds for the scale-out figure: more than SCALE_KEYS keys take (about
/// 12 MB of data on valkey 8), less than twice that, so the writes that follow them
/// add exactly one shard.
pub const SCALE_SHARD_BYTES: &str = "13107200";

fn value(i: usize) -> String {
    format!("{i:0width$}", width = VALUE_BYTES)
}

/// The primaries of `cache`, as /_emulator/nodes has them: (node group, port).
async fn primaries(admin: SocketAddr, cache: &str) -> anyhow::Result<Vec<(String, u16)>> {
    let (status, body) = e2e::raw_get(admin, "/_emulator/nodes").await?;
    anyhow::ensure!(status == 200, "GET /_emulator/nodes answered {status}");
    let nodes: Vec<serde_json::Value> = serde_json::from_str(&body)?;
    Ok(nodes
        .iter()
        .filter(|n| n["serverless_cache"] == cache && n["role"] == "primary")
        .filter_map(|n| Some((n["node_group_id"].as_str()?.to_string(), u16::try_from(n["port"].as_u64()?).ok()?)))
        .collect())
}

/// Whether the primary of node group 0002 owns half of the slots.
async fn second_shard_settled(admin: SocketAddr, cache: &str) -> anyhow::Result<bool> {
    let Some((_, port)) = primaries(admin, cache).await?.into_iter().find(|(group, _)| group == "0002") else {
        return Ok(false);
    };
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    // A node just placed may not listen yet.
    let Ok(mut node) = client.get_multiplexed_async_connection().await else { return Ok(false) };
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut node).await?;
    Ok(e2e::cluster::owned_slots(&nodes) == 8192)
}

/// Scale-out behind the endpoint: SCALE_KEYS keys written, then a client writes on until
/// the cache has a second shard and that shard owns its half of the slots. The duration
/// runs from the second shard appearing to the slots settled; the writer's errors are
/// counted, and every key is read back through the endpoint afterwards.
pub async fn scale_out(client: &Client, admin: SocketAddr) -> anyhow::Result<()> {
    let name = "bench-scale";
    client.create_serverless_cache().serverless_cache_name(name).engine("valkey").send().await?;
    let endpoint = endpoint(client, name).await?;
    let (_, ca) = e2e::raw_get(admin, "/_emulator/ca.pem").await?;
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::TcpTls {
            host: "127.0.0.1".to_string(),
            port: endpoint.port(),
            insecure: false,
            tls_params: None,
        },
        redis: redis::RedisConnectionInfo::default(),
    };
    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(ca.into_bytes()) };
    let mut connection = redis::Client::build_with_tls(info, certificates)?.get_multiplexed_async_connection().await?;
    for start in (0..SCALE_KEYS).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in start..start + 1_000 {
            pipe.set(format!("key:{i}"), value(i)).ignore();
        }
        let () = pipe.query_async(&mut connection).await?;
    }
    anyhow::ensure!(primaries(admin, name).await?.len() == 1, "{SCALE_KEYS} keys already scaled the cache out");

    // The writer goes on, one command at a time, until the new shard has settled.
    let (mut written, mut errors) = (SCALE_KEYS, 0usize);
    let deadline = Instant::now() + DEADLINE;
    let mut scaling_started = None;
    loop {
        let set: redis::RedisResult<()> =
            redis::cmd("SET").arg(format!("key:{written}")).arg(value(written)).query_async(&mut connection).await;
        match set {
            Ok(()) => written += 1,
            Err(_) => errors += 1,
        }
        if written % 100 == 0 {
            if scaling_started.is_none() && primaries(admin, name).await?.len() > 1 {
                scaling_started = Some(Instant::now());
            }
            if scaling_started.is_some() && second_shard_settled(admin, name).await? {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no settled second shard after {written} keys");
    }
    let took = scaling_started.map(|s| s.elapsed()).unwrap_or_default();
    let mut lost = 0;
    for start in (0..written).step_by(1_000) {
        let end = (start + 1_000).min(written);
        let mut pipe = redis::pipe();
        for i in start..end {
            pipe.get(format!("key:{i}"));
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut connection).await?;
        lost += values.iter().zip(start..end).filter(|(v, i)| v.as_deref() != Some(value(*i).as_str())).count();
    }
    println!(
        "serverless scale-out 1 -> 2 shards behind the endpoint holding {SCALE_KEYS} keys, a client writing throughout: {:.1} ms from the second shard appearing to its slots settled; writer errors {errors}; keys lost {lost} of {written}",
        ms(took)
    );
    client.delete_serverless_cache().serverless_cache_name(name).send().await?;
    Ok(())
}
