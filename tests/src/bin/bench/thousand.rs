//! A thousand nodes on one machine: 300 replication groups of 3 nodes (automatic failover,
//! redis and valkey) and 100 single-node clusters (redis and memcached), spread over four
//! regions (AWS's quotas are per region: 300 nodes, 300 clusters). `bench thousand N` makes
//! N nodes in the same proportions instead. Prints the nodes' and the emulator's memory,
//! the emulator's and the nodes' CPU while idle, the create time of the 1st and the 1,000th
//! node, Describe p50/p99 for one id and for a 100-record page, the create time of one more
//! node at rest beside 1 node and beside 1,000, the failover of a primary killed, frozen or
//! hung, and, after a kill -9 of the emulator, the time until every resource is available
//! again, how long a 100-record page takes meanwhile, and whether every node was adopted or
//! restarted exactly once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use serde_json::Value;

use crate::proc_stats::{cpu_shares, rss_kib};
use crate::{Server, answered, client_in, free_port, median, ms, percentile};

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"];

/// What is made in each region: three-node groups hold 90% of the nodes, single-node
/// clusters the rest.
#[derive(Clone, Copy)]
struct Size {
    groups_per_region: usize,
    clusters_per_region: usize,
}

impl Size {
    fn of(nodes: usize) -> Self {
        let per_region = nodes / REGIONS.len();
        let groups_per_region = per_region * 3 / 10;
        Self { groups_per_region, clusters_per_region: per_region - 3 * groups_per_region }
    }

    fn nodes(self) -> usize {
        REGIONS.len() * (self.groups_per_region * 3 + self.clusters_per_region)
    }
}
/// Creates in flight at once (the emulator answers each once it is available).
const CONCURRENCY: usize = 8;
/// Longer than the reconciler's drift period at a thousand nodes (about 46 s), so the
/// figure holds its periodic pass rather than depending on whether one fell in the window.
const IDLE: Duration = Duration::from_secs(60);
const DESCRIBES: usize = 200;
const DEADLINE: Duration = Duration::from_secs(600);

pub async fn run(binary: &PathBuf, nodes_asked: usize) -> anyhow::Result<()> {
    let size = Size::of(nodes_asked);
    let state = tempfile::tempdir()?;
    let address = free_port()?;
    let server = start(binary, address, state.path()).await?;
    let clients: HashMap<&str, Client> =
        futures::future::join_all(REGIONS.iter().map(|r| async move { (*r, client_in(address, r).await) }))
            .await
            .into_iter()
            .collect();
    let first_region = &clients[REGIONS[0]];

    // The 1st node alone, then everything else but the last, then the 1,000th alone. The
    // 1st once the warm pools are full: at rest, as the measures below.
    crate::waiters::warm_pool_ready(address).await?;
    let first = timed(create_cluster(first_region, "single-000", "redis")).await?;
    let empty = at_rest_create(first_region, address).await?;
    let mut creates = Vec::new();
    for region in REGIONS {
        let client = clients[region].clone();
        for i in 0..size.groups_per_region {
            let engine = if i % 2 == 0 { "redis" } else { "valkey" };
            creates.push(Create::Group(client.clone(), format!("group-{i:03}"), engine));
        }
        // single-000 of the first region is made first, alone, below.
        let skip = usize::from(region == REGIONS[0]);
        for i in skip..size.clusters_per_region {
            let engine = if i % 2 == 0 { "redis" } else { "memcached" };
            creates.push(Create::Cluster(client.clone(), format!("single-{i:03}"), engine));
        }
    }
    let last = creates.pop().context("a last create")?;
    let started = Instant::now();
    let mut pending = creates.into_iter();
    loop {
        let batch: Vec<Create> = pending.by_ref().take(CONCURRENCY).collect();
        if batch.is_empty() {
            break;
        }
        for result in futures::future::join_all(batch.into_iter().map(Create::run)).await {
            result?;
        }
    }
    let bulk = started.elapsed();
    let thousandth = timed(last.run()).await?;
    let nodes = nodes(address).await?;
    println!(
        "thousand: {} nodes ({} asked) in {} regions; create of the 1st node {:.1} ms, of the {}th {:.1} ms; all in {:.1} s",
        nodes.len(),
        size.nodes(),
        REGIONS.len(),
        ms(first),
        nodes.len(),
        ms(thousandth),
        bulk.as_secs_f64()
    );

    let pids: Vec<u32> = nodes.iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32).collect();
    let node_rss: u64 = pids.iter().filter_map(|pid| rss_kib(*pid)).sum();
    let own = server.child.id();
    println!(
        "thousand: RSS of the nodes {:.0} MiB in total ({:.1} MiB each), of the emulator {:.0} MiB",
        node_rss as f64 / 1024.0,
        node_rss as f64 / 1024.0 / pids.len().max(1) as f64,
        rss_kib(own).unwrap_or(0) as f64 / 1024.0
    );
    // The nodes' share says what the machine has left for the emulator's own work (each
    // redis runs its timers 10 times a second, as AWS's nodes do).
    let shares = cpu_shares(&[&[own], &pids], IDLE).await?;
    println!(
        "thousand: CPU while idle over {} s: the emulator {:.1}% of one core, the nodes {:.1}% together",
        IDLE.as_secs(),
        shares[0] * 100.0,
        shares[1] * 100.0
    );

    describe_figures(first_region, size).await?;
    // The 1,000th create above follows the bulk at once and may wait out the tail of its
    // work; these show the cost of a create with every node running and the emulator at
    // rest, beside the same measure with one node.
    let beside = at_rest_create(first_region, address).await?;
    println!(
        "thousand: create of one more node at rest (median of {AT_REST_CREATES}): beside 1 node {:.1} ms, beside {} nodes {:.1} ms",
        ms(empty),
        nodes.len(),
        ms(beside)
    );
    failover_figures(first_region, address).await?;

    // kill -9 of the emulator (its nodes die with it), then a restart on the same state.
    drop(server);
    let restarted = Instant::now();
    let server = start(binary, address, state.path()).await?;
    let answering = restarted.elapsed();
    let mut pages = wait_all_available(&clients, size.nodes()).await?;
    let available = restarted.elapsed();
    wait_all_running(address, nodes.len()).await?;
    println!(
        "thousand: kill -9 of the emulator with {} nodes -> API answering after {:.1} ms, every resource available after {:.1} s, every node running again after {:.1} s",
        nodes.len(),
        ms(answering),
        available.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    );
    pages.sort();
    println!(
        "thousand: a 100-record page while the 1000 nodes start again p50 {:.2} ms p99 {:.2} ms max {:.2} ms ({} pages)",
        ms(percentile(&pages, 0.5)),
        ms(percentile(&pages, 0.99)),
        ms(pages.last().copied().unwrap_or_default()),
        pages.len()
    );
    once_each(address, state.path()).await?;
    drop(server);
    Ok(())
}

enum Create {
    Group(Client, String, &'static str),
    Cluster(Client, String, &'static str),
}

impl Create {
    async fn run(self) -> anyhow::Result<()> {
        match self {
            Create::Group(client, id, engine) => create_group(&client, &id, engine).await,
            Create::Cluster(client, id, engine) => create_cluster(&client, &id, engine).await,
        }
    }
}

/// Creates measured at rest, each deleted before the next.
const AT_REST_CREATES: usize = 15;

/// The median time of [`AT_REST_CREATES`] creates of a one-node redis cluster at rest:
/// each once the warm pools are full.
async fn at_rest_create(client: &Client, address: SocketAddr) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for i in 0..AT_REST_CREATES {
        crate::waiters::warm_pool_ready(address).await?;
        let id = format!("at-rest-{i}");
        times.push(timed(create_cluster(client, &id, "redis")).await?);
        delete_cluster(client, &id).await?;
    }
    Ok(median(&mut times))
}

async fn timed(create: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    create.await?;
    Ok(started.elapsed())
}

async fn start(binary: &PathBuf, address: SocketAddr, state: &Path) -> anyhow::Result<Server> {
    let server = Server::spawn_on(binary, address, Some(state))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answered(address).await {
        if Instant::now() > deadline {
            bail!("the server did not answer");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(server)
}

/// Returns once the cluster is available (the emulator's answer usually says so already:
/// it waits for the change to settle; a loaded machine may take longer).
async fn create_cluster(client: &Client, id: &str, engine: &str) -> anyhow::Result<()> {
    let out = client
        .create_cache_cluster()
        .cache_cluster_id(id)
        .engine(engine)
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .with_context(|| format!("CreateCacheCluster {id}"))?;
    if out.cache_cluster().and_then(|c| c.cache_cluster_status()) == Some("available") {
        return Ok(());
    }
    until_available(id, || async {
        let out = client.describe_cache_clusters().cache_cluster_id(id).send().await?;
        Ok(out.cache_clusters().first().and_then(|c| c.cache_cluster_status()).map(str::to_string))
    })
    .await
}

/// Deletes the cluster `id` and waits until it is gone.
async fn delete_cluster(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .delete_cache_cluster()
        .cache_cluster_id(id)
        .send()
        .await
        .with_context(|| format!("DeleteCacheCluster {id}"))?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        match client.describe_cache_clusters().cache_cluster_id(id).send().await {
            Err(e) if e.as_service_error().is_some_and(|e| e.is_cache_cluster_not_found_fault()) => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) if Instant::now() > deadline => bail!("{id} not gone in time"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A three-node group with automatic failover and Multi-AZ, once it is available (also the
/// dashboard bench's group).
pub(crate) async fn create_group(client: &Client, id: &str, engine: &str) -> anyhow::Result<()> {
    let out = client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("scale")
        .engine(engine)
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(3)
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .with_context(|| format!("CreateReplicationGroup {id}"))?;
    if out.replication_group().and_then(|g| g.status()) == Some("available") {
        return Ok(());
    }
    until_available(id, || async {
        let out = client.describe_replication_groups().replication_group_id(id).send().await?;
        Ok(out.replication_groups().first().and_then(|g| g.status()).map(str::to_string))
    })
    .await
}

async fn until_available<F, Fut>(id: &str, status: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<String>>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match status().await?.as_deref() {
            Some("available") => return Ok(()),
            Some(failed) if failed.contains("fail") => bail!("{id} is {failed}"),
            _ if Instant::now() > deadline => bail!("{id} not available in time"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The JSON an admin endpoint answers with 200.
async fn admin_json(address: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let (status, body) = e2e::raw_get(address, path).await?;
    if status != 200 {
        bail!("{path} answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

async fn nodes(address: SocketAddr) -> anyhow::Result<Vec<Value>> {
    Ok(admin_json(address, "/_emulator/nodes").await?.as_array().cloned().unwrap_or_default())
}

async fn describe_figures(client: &Client, size: Size) -> anyhow::Result<()> {
    let mut one = Vec::new();
    let mut page = Vec::new();
    for i in 0..DESCRIBES {
        let id = format!("single-{:03}", i % size.clusters_per_region);
        let started = Instant::now();
        client.describe_cache_clusters().cache_cluster_id(&id).show_cache_node_info(true).send().await?;
        one.push(started.elapsed());
        let started = Instant::now();
        let out = client.describe_cache_clusters().max_records(100).show_cache_node_info(true).send().await?;
        page.push(started.elapsed());
        if out.cache_clusters().len() != 100 {
            bail!("a page of {} records, not 100", out.cache_clusters().len());
        }
    }
    one.sort();
    page.sort();
    println!(
        "thousand: DescribeCacheClusters of one id p50 {:.2} ms p99 {:.2} ms; a 100-record page p50 {:.2} ms p99 {:.2} ms ({DESCRIBES} each)",
        ms(percentile(&one, 0.5)),
        ms(percentile(&one, 0.99)),
        ms(percentile(&page, 0.5)),
        ms(percentile(&page, 0.99)),
    );
    Ok(())
}

/// How a primary fails in [`failover_figures`].
#[derive(Clone, Copy)]
enum Failure {
    /// kill -9 through the admin API.
    Killed,
    /// SIGSTOP through the admin API (`stop`), resumed once another primary serves.
    Frozen,
    /// Runs but answers nothing: every client paused (`CLIENT PAUSE`), found by probes.
    Hung,
}

/// A primary of three groups with automatic failover fails, each its own way, beside a
/// thousand nodes: the time until Describe names another primary and a write through the
/// group's primary endpoint succeeds.
async fn failover_figures(client: &Client, address: SocketAddr) -> anyhow::Result<()> {
    let mut line = String::from("thousand: failover (fault -> another primary named and written to):");
    for (id, failure, label) in [
        ("group-000", Failure::Killed, "kill -9"),
        ("group-001", Failure::Frozen, "freeze"),
        ("group-002", Failure::Hung, "hang"),
    ] {
        let took = fail_over(client, address, id, failure).await?;
        line.push_str(&format!(" {label} {:.0} ms;", ms(took)));
    }
    println!("{}", line.trim_end_matches(';'));
    Ok(())
}

async fn fail_over(client: &Client, address: SocketAddr, id: &str, failure: Failure) -> anyhow::Result<Duration> {
    let (endpoint, primary) = crate::replication::wait_available(client, id).await?;
    let node = |action: &str| format!("/_emulator/nodes/{primary}/0001/{action}");
    let started = Instant::now();
    match failure {
        Failure::Killed => crate::clusters::admin_post(address, &node("kill")).await?,
        Failure::Frozen => crate::clusters::admin_post(address, &node("stop")).await?,
        Failure::Hung => {
            let (_, port) = described_primary(client, id).await?;
            let mut redis = e2e::RedisClient::connect("127.0.0.1", port).await?;
            redis.command(&["CLIENT", "PAUSE", "5000", "ALL"]).await?;
        }
    }
    // A write to the hung primary would wait out its pause: written to only once another
    // primary is named (the endpoint follows it).
    let took = loop {
        if described_primary(client, id).await?.0 != primary
            && let Ok(mut redis) = crate::replication::connect(endpoint).await
            && redis.set("failover-probe", "1").await.is_ok()
        {
            break started.elapsed();
        }
        if started.elapsed() > DEADLINE {
            bail!("{id}: no other primary written to after the failure");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    if let Failure::Frozen = failure {
        crate::clusters::admin_post(address, &node("resume")).await?;
    }
    // Settled again (the old primary back as a replica) before the next figure.
    until_available(id, || async {
        let out = client.describe_replication_groups().replication_group_id(id).send().await?;
        let group = out.replication_groups().first();
        let members = group.map(|g| g.member_clusters().len()).unwrap_or(0);
        let all_up = group.and_then(|g| g.node_groups().first()).is_some_and(|ng| {
            ng.node_group_members().len() == members
                && ng.node_group_members().iter().all(|m| m.current_role().is_some())
        });
        Ok(group.and_then(|g| g.status()).filter(|_| all_up).map(str::to_string))
    })
    .await?;
    Ok(took)
}

/// The member Describe names primary of group `id`, and its node's port.
async fn described_primary(client: &Client, id: &str) -> anyhow::Result<(String, u16)> {
    let out = client.describe_replication_groups().replication_group_id(id).send().await?;
    let member = out
        .replication_groups()
        .first()
        .and_then(|g| g.node_groups().first())
        .and_then(|ng| ng.node_group_members().iter().find(|m| m.current_role() == Some("primary")))
        .context("a primary member")?;
    let port = member.read_endpoint().and_then(|e| e.port()).context("the primary's endpoint")?;
    Ok((member.cache_cluster_id().unwrap_or_default().to_string(), u16::try_from(port)?))
}

/// Polls every region until the clusters (members included) holding `expected` nodes are
/// all available.
/// Polls DescribeCacheClusters (pages of 100) until `expected` nodes are available; answers
/// how long each page took.
async fn wait_all_available(clients: &HashMap<&str, Client>, expected: usize) -> anyhow::Result<Vec<Duration>> {
    let started = Instant::now();
    let mut pages = Vec::new();
    loop {
        let mut available = 0;
        for client in clients.values() {
            let mut marker = None;
            loop {
                let asked = Instant::now();
                let out = client
                    .describe_cache_clusters()
                    .max_records(100)
                    .set_marker(marker.clone())
                    .show_cache_node_info(true)
                    .send()
                    .await?;
                pages.push(asked.elapsed());
                available += out
                    .cache_clusters()
                    .iter()
                    .filter(|c| c.cache_cluster_status() == Some("available"))
                    .map(|c| c.cache_nodes().len())
                    .sum::<usize>();
                marker = out.marker().map(str::to_string);
                if marker.is_none() {
                    break;
                }
            }
        }
        if available >= expected {
            return Ok(pages);
        }
        if started.elapsed() > DEADLINE {
            bail!("{available} of {expected} nodes available after {} s", DEADLINE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/_emulator/nodes` until `expected` nodes run, each with a pid (after a restart,
/// Describe shows the resources as the store keeps them before their nodes are back).
async fn wait_all_running(address: SocketAddr, expected: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let running = nodes(address).await?.iter().filter(|n| n["pid"].as_u64().is_some()).count();
        if running >= expected {
            return Ok(());
        }
        if started.elapsed() > DEADLINE {
            bail!("{running} of {expected} nodes running after {} s", DEADLINE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every node runs as exactly one process: one pid per node, no two nodes on one pid, no
/// engine process of this state dir the emulator neither lists nor keeps warm, and the
/// pids do not change over a few seconds (nothing is restarted a second time).
async fn once_each(address: SocketAddr, state: &Path) -> anyhow::Result<()> {
    let listed = |nodes: &[Value]| -> HashSet<u32> {
        nodes.iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32).collect()
    };
    let before = nodes(address).await?;
    let pids = listed(&before);
    if pids.len() != before.len() {
        bail!("{} nodes but {} distinct pids", before.len(), pids.len());
    }
    let engines = engine_processes_under(state);
    let warm = warm_pids(address).await?;
    let strays: Vec<&u32> = engines.iter().filter(|pid| !pids.contains(pid) && !warm.contains(pid)).collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = listed(&nodes(address).await?);
    let restarted = pids.difference(&after).count();
    println!(
        "thousand: after the restart {} nodes on {} pids, {} engine processes of the state dir neither listed nor warm, {} restarted again within 5 s",
        before.len(),
        pids.len(),
        strays.len(),
        restarted
    );
    Ok(())
}

/// Pids of the idle warm nodes (`/_emulator/health`): theirs, though no resource's yet.
async fn warm_pids(address: SocketAddr) -> anyhow::Result<HashSet<u32>> {
    let health = admin_json(address, "/_emulator/health").await?;
    let warm = health["warm_nodes"].as_array().cloned().unwrap_or_default();
    Ok(warm.iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32).collect())
}

/// Pids of processes whose working directory lies under `state` (every node runs in its
/// own directory there).
fn engine_processes_under(state: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(state)))
        .collect()
}
