//! Cache-cluster figures: create → available and connectable against the floor of starting
//! the same engine binaries by hand, node kill → answering again, and DescribeCacheClusters
//! over 100 clusters.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;

use crate::{free_port, median, ms};

const RUNS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
pub enum Engine {
    Redis,
    Memcached,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Redis => "redis",
            Engine::Memcached => "memcached",
        }
    }
}

/// One request/response on the engine's own protocol: true when it answered as expected.
pub async fn answers(engine: Engine, address: SocketAddr) -> bool {
    let host = address.ip().to_string();
    match engine {
        Engine::Redis => match e2e::RedisClient::connect(&host, address.port()).await {
            Ok(mut redis) => redis.ping().await.is_ok(),
            Err(_) => false,
        },
        Engine::Memcached => match e2e::MemcachedClient::connect(&host, address.port()).await {
            Ok(mut memcached) => memcached.version().await.is_ok(),
            Err(_) => false,
        },
    }
}

async fn wait_answering(engine: Engine, address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    while !answers(engine, address).await {
        if Instant::now() > deadline {
            bail!("{address} did not answer");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// The floor: `count` engine processes started by hand, in parallel, to their first answer.
async fn by_hand(engine: Engine, count: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let mut children: Vec<(Child, SocketAddr)> = Vec::new();
    for _ in 0..count {
        let address = free_port()?;
        let port = address.port().to_string();
        let mut command = match engine {
            Engine::Redis => {
                let mut c = crate::child_command("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
                c
            }
            Engine::Memcached => {
                let mut c = crate::child_command("memcached");
                c.args(["-p", &port, "-l", "127.0.0.1", "-U", "0", "-m", "512", "-u", "root"]);
                c
            }
        };
        let child = command.current_dir(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        children.push((child, address));
    }
    let waits = children.iter().map(|(_, address)| wait_answering(engine, *address));
    for result in futures::future::join_all(waits).await {
        result?;
    }
    let elapsed = started.elapsed();
    for (mut child, _) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(elapsed)
}

fn node_type() -> &'static str {
    "cache.t3.micro"
}

/// CreateCacheCluster → every node answering on its endpoint; then the cluster is deleted.
async fn create_to_connectable(client: &Client, id: &str, engine: Engine, nodes: i32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine(engine.name())
        .cache_node_type(node_type())
        .num_cache_nodes(nodes)
        .send()
        .await
        .context("create")?;
    let deadline = Instant::now() + DEADLINE;
    let endpoints = loop {
        let described = client.describe_cache_clusters().cache_cluster_id(id).show_cache_node_info(true).send().await?;
        let cluster = described.cache_clusters().first().context("described")?;
        if cluster.cache_cluster_status() == Some("available") {
            break cluster
                .cache_nodes()
                .iter()
                .filter_map(|n| n.endpoint())
                .filter_map(|e| format!("{}:{}", e.address()?, e.port()?).parse::<SocketAddr>().ok())
                .collect::<Vec<_>>();
        }
        if Instant::now() > deadline {
            bail!("{id} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    for result in futures::future::join_all(endpoints.iter().map(|a| wait_answering(engine, *a))).await {
        result?;
    }
    let elapsed = started.elapsed();
    delete_and_wait(client, id).await?;
    Ok(elapsed)
}

async fn delete_and_wait(client: &Client, id: &str) -> anyhow::Result<()> {
    client.delete_cache_cluster().cache_cluster_id(id).send().await.context("delete")?;
    let deadline = Instant::now() + DEADLINE;
    while client.describe_cache_clusters().cache_cluster_id(id).send().await.is_ok() {
        if Instant::now() > deadline {
            bail!("{id} not deleted in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn compare(client: &Client, name: &str, engine: Engine, nodes: i32) -> anyhow::Result<()> {
    let mut emulator = Vec::new();
    let mut floor = Vec::new();
    for run in 0..RUNS {
        emulator.push(
            create_to_connectable(client, &format!("bench-{}-{nodes}-{run}", engine.name()), engine, nodes).await?,
        );
        floor.push(by_hand(engine, nodes as usize).await?);
    }
    let (e, f) = (median(&mut emulator), median(&mut floor));
    println!(
        "CreateCacheCluster -> available and connectable, {name}: median {:.1} ms; by hand {:.1} ms; ratio {:.2}x ({RUNS} runs)",
        ms(e),
        ms(f),
        e.as_secs_f64() / f.as_secs_f64()
    );
    Ok(())
}

async fn kill_to_answering(client: &Client, admin: SocketAddr) -> anyhow::Result<()> {
    let id = "bench-heal";
    client.create_cache_cluster().cache_cluster_id(id).engine("redis").cache_node_type(node_type()).send().await?;
    let deadline = Instant::now() + DEADLINE;
    let address = loop {
        let described = client.describe_cache_clusters().cache_cluster_id(id).show_cache_node_info(true).send().await?;
        let cluster = described.cache_clusters().first().context("described")?;
        if cluster.cache_cluster_status() == Some("available")
            && let Some(e) = cluster.cache_nodes().first().and_then(|n| n.endpoint())
        {
            break format!("{}:{}", e.address().unwrap_or_default(), e.port().unwrap_or_default())
                .parse::<SocketAddr>()?;
        }
        if Instant::now() > deadline {
            bail!("{id} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        admin_post(admin, &format!("/_emulator/nodes/{id}/0001/kill")).await?;
        // The process is gone the moment kill answers; wait for its replacement.
        wait_answering(Engine::Redis, address).await?;
        times.push(started.elapsed());
        // Let the reconciler record the recovery before the next kill.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!(
        "node kill -> answering again on the same endpoint: median {:.1} ms ({RUNS} runs)",
        ms(median(&mut times))
    );
    delete_and_wait(client, id).await
}

/// POST to the admin API; fails unless it answers 200.
pub async fn admin_post(admin: SocketAddr, path: &str) -> anyhow::Result<()> {
    let (status, body) = e2e::raw_post(admin, path).await?;
    if status != 200 {
        bail!("POST {path}: {status} {body}");
    }
    Ok(())
}

async fn describe_load(client: &Client) -> anyhow::Result<()> {
    const CLUSTERS: usize = 100;
    let creates = (0..CLUSTERS).map(|i| {
        client
            .create_cache_cluster()
            .cache_cluster_id(format!("load-{i:03}"))
            .engine("memcached")
            .cache_node_type(node_type())
            .num_cache_nodes(1)
            .send()
    });
    for result in futures::future::join_all(creates).await {
        result.context("create for the describe load")?;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut available = 0;
        let mut marker = None;
        loop {
            let page = client.describe_cache_clusters().set_marker(marker).send().await?;
            available += page.cache_clusters().iter().filter(|c| c.cache_cluster_status() == Some("available")).count();
            marker = page.marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        if available == CLUSTERS {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {available} of {CLUSTERS} clusters available");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load = crate::load(client.clone(), |c: Client| async move {
        c.describe_cache_clusters()
            .show_cache_node_info(true)
            .send()
            .await
            .is_ok_and(|r| r.cache_clusters().len() == 100)
    })
    .await;
    crate::report("DescribeCacheClusters(100 clusters, ShowCacheNodeInfo=true)", &load);
    Ok(())
}

pub async fn run(client: &Client, admin: SocketAddr) -> anyhow::Result<()> {
    compare(client, "1 Redis node", Engine::Redis, 1).await?;
    compare(client, "1 Memcached node", Engine::Memcached, 1).await?;
    compare(client, "20-node Memcached cluster", Engine::Memcached, 20).await?;
    kill_to_answering(client, admin).await?;
    describe_load(client).await
}
