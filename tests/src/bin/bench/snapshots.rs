//! Snapshot and durability figures: snapshot and restore of a node holding 1,000,000 keys
//! against the floor of `redis-cli --rdb` plus a plain `redis-server` start on the same file,
//! and an emulator restart with 50 clusters → every cluster available again, after a clean
//! stop (SIGTERM) and after a kill -9 of the emulator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use e2e::{RedisClient, Resp};

use crate::{Server, answered, client, free_port, ms};

const KEYS: usize = 1_000_000;
const BATCH: usize = 1_000;
const CLUSTERS: usize = 50;
const DEADLINE: Duration = Duration::from_secs(300);

async fn wait_cluster(client: &Client, id: &str) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let described = client.describe_cache_clusters().cache_cluster_id(id).show_cache_node_info(true).send().await?;
        let cluster = described.cache_clusters().first().context("described")?;
        if cluster.cache_cluster_status() == Some("available")
            && let Some(e) = cluster.cache_nodes().first().and_then(|n| n.endpoint())
        {
            return Ok(format!("{}:{}", e.address().unwrap_or_default(), e.port().unwrap_or_default()).parse()?);
        }
        if Instant::now() > deadline {
            bail!("{id} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn dbsize(address: SocketAddr) -> anyhow::Result<i64> {
    let mut redis = RedisClient::connect(&address.ip().to_string(), address.port()).await?;
    match redis.command(&["DBSIZE"]).await? {
        Resp::Integer(n) => Ok(n),
        other => bail!("DBSIZE answered {other:?}"),
    }
}

async fn fill(address: SocketAddr) -> anyhow::Result<()> {
    let mut redis = RedisClient::connect(&address.ip().to_string(), address.port()).await?;
    for batch in 0..KEYS / BATCH {
        let pairs: Vec<String> =
            (0..BATCH).flat_map(|i| [format!("key:{}", batch * BATCH + i), format!("value-{i}")]).collect();
        let mut args = vec!["MSET"];
        args.extend(pairs.iter().map(String::as_str));
        redis.command(&args).await?;
    }
    Ok(())
}

async fn wait_snapshot(client: &Client, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let described = client.describe_snapshots().snapshot_name(name).send().await?;
        if described.snapshots().first().and_then(|s| s.snapshot_status()) == Some("available") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("snapshot {name} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The floor: `redis-cli --rdb` from the node, then a plain redis-server loading that file
/// until it answers with every key.
async fn floor(source: SocketAddr, dir: &Path) -> anyhow::Result<(Duration, Duration)> {
    let file = dir.join("dump.rdb");
    let started = Instant::now();
    let status = Command::new("redis-cli")
        .args(["-p", &source.port().to_string(), "--rdb"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("redis-cli --rdb failed");
    }
    let dump = started.elapsed();
    let address = free_port()?;
    let started = Instant::now();
    let mut server = crate::child_command("redis-server")
        .args(["--port", &address.port().to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while dbsize(address).await.ok() != Some(KEYS as i64) {
        if started.elapsed() > DEADLINE {
            bail!("plain redis-server did not load the file");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let load = started.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    Ok((dump, load))
}

async fn snapshot_and_restore(client: &Client) -> anyhow::Result<()> {
    client
        .create_cache_cluster()
        .cache_cluster_id("big")
        .engine("redis")
        .cache_node_type("cache.r6g.large")
        .send()
        .await?;
    let source = wait_cluster(client, "big").await?;
    fill(source).await?;

    let started = Instant::now();
    client.create_snapshot().cache_cluster_id("big").snapshot_name("big-snap").send().await?;
    wait_snapshot(client, "big-snap").await?;
    let snapshot = started.elapsed();
    // The source is `snapshotting` until the reconciler sees the file written.
    wait_cluster(client, "big").await?;

    let started = Instant::now();
    client
        .create_cache_cluster()
        .cache_cluster_id("big-restored")
        .engine("redis")
        .cache_node_type("cache.r6g.large")
        .snapshot_name("big-snap")
        .send()
        .await?;
    let restored = wait_cluster(client, "big-restored").await?;
    while dbsize(restored).await? != KEYS as i64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let restore = started.elapsed();

    let dir = tempfile::tempdir()?;
    let (dump, load) = floor(source, dir.path()).await?;
    println!(
        "snapshot of a node with {KEYS} keys: {:.0} ms (redis-cli --rdb: {:.0} ms, ratio {:.2}x)",
        ms(snapshot),
        ms(dump),
        snapshot.as_secs_f64() / dump.as_secs_f64()
    );
    println!(
        "restore into a new cluster until every key answers: {:.0} ms (plain redis-server on the file: {:.0} ms, ratio {:.2}x)",
        ms(restore),
        ms(load),
        restore.as_secs_f64() / load.as_secs_f64()
    );
    Ok(())
}

/// How the emulator goes down before the restart.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Clean,
    Kill9,
}

async fn restart_with_clusters(binary: &PathBuf, stop: Stop) -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let address = free_port()?;
    let server = Server::spawn_on(binary, address, Some(state.path()))?;
    while !answered(address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let client = client(address).await;
    for i in 0..CLUSTERS {
        let engine = if i % 2 == 0 { "redis" } else { "memcached" };
        client
            .create_cache_cluster()
            .cache_cluster_id(format!("r{i:02}"))
            .engine(engine)
            .cache_node_type("cache.t3.micro")
            .send()
            .await?;
    }
    for i in 0..CLUSTERS {
        wait_cluster(&client, &format!("r{i:02}")).await?;
    }
    match stop {
        Stop::Clean => server.terminate()?,
        // Dropping the handle SIGKILLs the process.
        Stop::Kill9 => drop(server),
    }

    let started = Instant::now();
    let _server = Server::spawn_on(binary, address, Some(state.path()))?;
    while !answered(address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let client = crate::client(address).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut answering = 0;
        let mut marker = None;
        loop {
            let page = client.describe_cache_clusters().show_cache_node_info(true).set_marker(marker).send().await?;
            for cluster in page.cache_clusters() {
                let endpoint = cluster.cache_nodes().first().and_then(|n| n.endpoint());
                if cluster.cache_cluster_status() == Some("available")
                    && let Some(e) = endpoint
                {
                    let address: SocketAddr =
                        format!("{}:{}", e.address().unwrap_or_default(), e.port().unwrap_or_default()).parse()?;
                    let engine = if cluster.engine() == Some("memcached") {
                        crate::clusters::Engine::Memcached
                    } else {
                        crate::clusters::Engine::Redis
                    };
                    if crate::clusters::answers(engine, address).await {
                        answering += 1;
                    }
                }
            }
            marker = page.marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        if answering == CLUSTERS {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {answering} of {CLUSTERS} clusters back");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "emulator restart ({stop:?} stop) with {CLUSTERS} clusters (25 Redis, 25 Memcached) -> every cluster available and answering: {:.0} ms",
        ms(started.elapsed())
    );
    Ok(())
}

pub async fn run(binary: &PathBuf) -> anyhow::Result<()> {
    let server = Server::spawn(binary)?;
    while !answered(server.address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    snapshot_and_restore(&client(server.address).await).await?;
    drop(server);
    restart_with_clusters(binary, Stop::Clean).await?;
    restart_with_clusters(binary, Stop::Kill9).await
}
