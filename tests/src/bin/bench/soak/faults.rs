//! The faults the soak injects, drawn from the seeded RNG, and how each one is done: through
//! the admin API (node kill / freeze, zone outage), the AWS API (TestFailover, resharding,
//! replica counts, snapshot + restore, parameter changes) or the process itself (`kill -9`
//! of the emulator, then a restart on the same state dir).

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_elasticache::error::ProvideErrorMetadata;
use serde_json::Value;

use super::emulator::engine_processes;
use super::{CM, MC, PARAMS, RG, Soak, load, pnv};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    NodeKill,
    NodeFreeze,
    ZoneOutage,
    TestFailover,
    Reshard,
    ReplicaCount,
    SnapshotRestore,
    ParameterChange,
    EmulatorKill9,
}

/// How often each is drawn, relatively.
const WEIGHTS: &[(Fault, usize)] = &[
    (Fault::NodeKill, 4),
    (Fault::NodeFreeze, 3),
    (Fault::ZoneOutage, 2),
    (Fault::TestFailover, 3),
    (Fault::Reshard, 1),
    (Fault::ReplicaCount, 2),
    (Fault::SnapshotRestore, 1),
    (Fault::ParameterChange, 2),
    (Fault::EmulatorKill9, 2),
];

/// The maxmemory-policy values a parameter change goes through (none evicts a key without a TTL).
const POLICIES: &[&str] = &["volatile-lru", "volatile-ttl", "noeviction", "volatile-lfu"];
/// How long the engine processes of a `kill -9`ed emulator may take to die with it.
const DIE_BOUND: Duration = Duration::from_secs(10);

impl Fault {
    pub fn draw(rng: &mut super::Rng) -> Fault {
        let total: usize = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut at = rng.below(total);
        for &(fault, weight) in WEIGHTS {
            if at < weight {
                return fault;
            }
            at -= weight;
        }
        Fault::NodeKill
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::NodeKill => "node-kill",
            Fault::NodeFreeze => "node-freeze",
            Fault::ZoneOutage => "zone-outage",
            Fault::TestFailover => "test-failover",
            Fault::Reshard => "reshard",
            Fault::ReplicaCount => "replica-count",
            Fault::SnapshotRestore => "snapshot-restore",
            Fault::ParameterChange => "parameter-change",
            Fault::EmulatorKill9 => "emulator-kill-9",
        }
    }
}

/// One admin API call → (status, JSON body).
pub async fn admin(soak: &Soak, method: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let (status, body) = e2e::raw_request(soak.emulator.address, method, path, Duration::from_secs(30)).await?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::String(body))))
}

/// `GET /_emulator/nodes`.
pub async fn admin_nodes(soak: &Soak) -> anyhow::Result<Vec<Value>> {
    match admin(soak, "GET", "/_emulator/nodes").await? {
        (200, Value::Array(nodes)) => Ok(nodes),
        (status, body) => anyhow::bail!("GET /_emulator/nodes answered {status}: {body}"),
    }
}

fn ours(node: &Value) -> bool {
    let id = node["cache_cluster_id"].as_str().unwrap_or_default();
    [RG, CM, MC].iter().any(|prefix| id.starts_with(prefix))
}

/// A node of the soak's own resources, drawn at random (in a stable order, for replays).
async fn pick_node(soak: &mut Soak) -> anyhow::Result<Option<(String, String)>> {
    let mut nodes: Vec<(String, String)> = admin_nodes(soak)
        .await?
        .iter()
        .filter(|n| ours(n))
        .map(|n| {
            (
                n["cache_cluster_id"].as_str().unwrap_or_default().to_string(),
                n["cache_node_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    nodes.sort();
    Ok(soak.rng.pick(&nodes).cloned())
}

fn refused<E: ProvideErrorMetadata>(soak: &mut Soak, what: &str, e: &E) {
    let line = format!("{}: {what}: {} {}", soak.current, e.code().unwrap_or("?"), e.message().unwrap_or_default());
    soak.log(format!("  refused: {line}"));
    soak.refused.push(line);
}

/// Sends an API request and lists a refusal; or, `background`, leaves it under way (the
/// emulator is about to be killed: its answer, if any, does not matter).
async fn send<T, E>(
    soak: &mut Soak,
    what: &str,
    background: bool,
    request: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
) where
    T: Send + 'static,
    E: ProvideErrorMetadata + Send + 'static,
{
    if background {
        tokio::spawn(async move {
            let _ = request.await;
        });
    } else if let Err(e) = request.await {
        refused(soak, what, &e);
    }
}

async fn node_action(soak: &mut Soak, cluster: &str, node: &str, action: &str) -> anyhow::Result<()> {
    let path = format!("/_emulator/nodes/{cluster}/{node}/{action}");
    let (status, body) = admin(soak, "POST", &path).await?;
    if status != 200 {
        let line = format!("{}: POST {path} answered {status}: {body}", soak.current);
        soak.log(format!("  refused: {line}"));
        soak.refused.push(line);
    }
    Ok(())
}

/// Injects `fault` (the `n`th); returns once it is done (not settled). Fails only when the
/// soak cannot go on (the emulator does not come back).
pub async fn inject(soak: &mut Soak, fault: Fault, n: usize) -> anyhow::Result<()> {
    soak.current = format!("fault #{n} {}", fault.name());
    match fault {
        Fault::NodeKill => {
            if let Some((cluster, node)) = pick_node(soak).await? {
                soak.current = format!("fault #{n} node-kill {cluster}/{node}");
                soak.log(&soak.current);
                node_action(soak, &cluster, &node, "kill").await?;
            }
        }
        Fault::NodeFreeze => {
            if let Some((cluster, node)) = pick_node(soak).await? {
                let hold = soak.rng.millis(500, 4000);
                soak.current = format!("fault #{n} node-freeze {cluster}/{node} for {} ms", hold.as_millis());
                soak.log(&soak.current);
                node_action(soak, &cluster, &node, "stop").await?;
                tokio::time::sleep(hold).await;
                node_action(soak, &cluster, &node, "resume").await?;
            }
        }
        Fault::ZoneOutage => {
            let zone = soak.rng.pick(&e2e::ZONES).copied().unwrap_or(e2e::ZONES[0]);
            let hold = soak.rng.millis(1000, 4000);
            soak.current = format!("fault #{n} zone-outage {zone} for {} ms", hold.as_millis());
            soak.log(&soak.current);
            let (status, body) = admin(soak, "POST", &format!("/_emulator/zones/{zone}/outage")).await?;
            if status != 200 {
                soak.violation(format!("POST outage of {zone} answered {status}: {body}"));
            }
            tokio::time::sleep(hold).await;
            let (status, body) = admin(soak, "DELETE", &format!("/_emulator/zones/{zone}/outage")).await?;
            if status != 200 {
                soak.violation(format!("DELETE outage of {zone} answered {status}: {body}"));
            }
        }
        Fault::TestFailover => test_failover(soak, n, false).await?,
        Fault::Reshard => reshard(soak, n, false).await?,
        Fault::ReplicaCount => replica_count(soak, n, false).await?,
        Fault::SnapshotRestore => snapshot_restore(soak, n).await?,
        Fault::ParameterChange => {
            let choices: Vec<&str> = POLICIES.iter().copied().filter(|p| *p != soak.policy).collect();
            let policy = soak.rng.pick(&choices).copied().unwrap_or(POLICIES[0]);
            soak.current = format!("fault #{n} parameter-change maxmemory-policy={policy} in {PARAMS}");
            soak.log(&soak.current);
            let out = soak
                .client
                .modify_cache_parameter_group()
                .cache_parameter_group_name(PARAMS)
                .parameter_name_values(pnv("maxmemory-policy", policy))
                .send()
                .await;
            match out {
                Ok(_) => soak.policy = policy.to_string(),
                Err(e) => refused(soak, "ModifyCacheParameterGroup", &e),
            }
        }
        Fault::EmulatorKill9 => emulator_kill9(soak, n).await?,
    }
    Ok(())
}

async fn test_failover(soak: &mut Soak, n: usize, background: bool) -> anyhow::Result<()> {
    let group = *soak.rng.pick(&[RG, CM]).unwrap_or(&RG);
    let shards = shard_ids(soak, group).await?;
    let Some(shard) = soak.rng.pick(&shards).cloned() else { return Ok(()) };
    soak.current = format!("fault #{n} test-failover {group} shard {shard}");
    soak.log(&soak.current);
    let request = soak.client.test_failover().replication_group_id(group).node_group_id(&shard).send();
    send(soak, "TestFailover", background, request).await;
    Ok(())
}

/// The node group ids of `group`, sorted.
async fn shard_ids(soak: &Soak, group: &str) -> anyhow::Result<Vec<String>> {
    let out = soak.client.describe_replication_groups().replication_group_id(group).send().await?;
    let mut ids: Vec<String> = out
        .replication_groups()
        .first()
        .map(|g| g.node_groups().iter().filter_map(|ng| ng.node_group_id().map(str::to_string)).collect())
        .unwrap_or_default();
    ids.sort();
    Ok(ids)
}

async fn reshard(soak: &mut Soak, n: usize, background: bool) -> anyhow::Result<()> {
    let shards = shard_ids(soak, CM).await?;
    let request = soak.client.modify_replication_group_shard_configuration().replication_group_id(CM);
    let request = if shards.len() <= 2 {
        soak.current = format!("fault #{n} reshard {CM} {} -> {} shards", shards.len(), shards.len() + 1);
        request.node_group_count(shards.len() as i32 + 1)
    } else {
        let last = shards.last().cloned().unwrap_or_default();
        soak.current =
            format!("fault #{n} reshard {CM} {} -> {} shards (removing {last})", shards.len(), shards.len() - 1);
        request.node_group_count(shards.len() as i32 - 1).node_groups_to_remove(last)
    };
    soak.log(&soak.current);
    let request = request.apply_immediately(true).send();
    send(soak, "ModifyReplicationGroupShardConfiguration", background, request).await;
    Ok(())
}

async fn replica_count(soak: &mut Soak, n: usize, background: bool) -> anyhow::Result<()> {
    let group = *soak.rng.pick(&[RG, CM]).unwrap_or(&RG);
    let out = soak.client.describe_replication_groups().replication_group_id(group).send().await?;
    let members = out
        .replication_groups()
        .first()
        .and_then(|g| g.node_groups().first())
        .map_or(0, |ng| ng.node_group_members().len());
    let replicas = members.saturating_sub(1);
    if replicas <= 1 {
        soak.current = format!("fault #{n} replica-count {group} {replicas} -> 2");
        soak.log(&soak.current);
        let request = soak.client.increase_replica_count().replication_group_id(group);
        let request = request.new_replica_count(2).apply_immediately(true).send();
        send(soak, "IncreaseReplicaCount", background, request).await;
    } else {
        soak.current = format!("fault #{n} replica-count {group} {replicas} -> 1");
        soak.log(&soak.current);
        let request = soak.client.decrease_replica_count().replication_group_id(group);
        let request = request.new_replica_count(1).apply_immediately(true).send();
        send(soak, "DecreaseReplicaCount", background, request).await;
    }
    Ok(())
}

/// Polls `describe` (true once done) every 100 ms; false after the settle bound.
async fn until<F, Fut>(soak: &Soak, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + soak.settle_bound;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A snapshot of soak-rg, a new group restored from it (checked to hold every key
/// acknowledged well before the snapshot was asked for), then both deleted.
async fn snapshot_restore(soak: &mut Soak, n: usize) -> anyhow::Result<()> {
    soak.next_id += 1;
    let (snapshot, restored) = (format!("soak-snap-{}", soak.next_id), format!("soak-restore-{}", soak.next_id));
    soak.current = format!("fault #{n} snapshot-restore {RG} -> {snapshot} -> {restored}");
    soak.log(&soak.current);
    let keys = soak.load.as_ref().map(|l| l.rg_keys()).unwrap_or_default();
    // Keys acknowledged this long before the snapshot is asked for are on every replica.
    tokio::time::sleep(soak.rng.millis(200, 1000)).await;
    let client = soak.client.clone();
    if let Err(e) = client.create_snapshot().replication_group_id(RG).snapshot_name(&snapshot).send().await {
        refused(soak, "CreateSnapshot", &e);
        return Ok(());
    }
    let available = until(soak, || async {
        let out = client.describe_snapshots().snapshot_name(&snapshot).send().await;
        out.ok().and_then(|o| o.snapshots().first().and_then(|s| s.snapshot_status().map(str::to_string)))
            == Some("available".to_string())
    })
    .await;
    if !available {
        soak.violation(format!("snapshot {snapshot} not available within {:?}", soak.settle_bound));
        return Ok(());
    }
    let created = client
        .create_replication_group()
        .replication_group_id(&restored)
        .replication_group_description("soak: restored")
        .snapshot_name(&snapshot)
        .num_cache_clusters(1)
        .cache_node_type("cache.t3.micro")
        .send()
        .await;
    if let Err(e) = created {
        refused(soak, "CreateReplicationGroup from a snapshot", &e);
    } else {
        let deadline = Instant::now() + soak.settle_bound;
        let endpoint = loop {
            let out = client.describe_replication_groups().replication_group_id(&restored).send().await;
            let group = out.ok().and_then(|o| o.replication_groups().first().cloned());
            let group = group.filter(|g| g.status() == Some("available"));
            let primary = group.as_ref().and_then(|g| g.node_groups().first()).and_then(|ng| ng.primary_endpoint());
            let endpoint = primary.and_then(|e| Some((e.address()?.to_string(), e.port()? as u16)));
            if endpoint.is_some() || Instant::now() > deadline {
                break endpoint;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match endpoint {
            Some(endpoint) => match load::read_back_plain(&endpoint, RG, &keys).await {
                Ok(missing) if missing.is_empty() => {
                    soak.log(format!("  {restored} holds all {} keys acknowledged before the snapshot", keys.len()));
                }
                Ok(missing) => soak.violation(format!(
                    "{restored} (from {snapshot}) lacks {} of {} keys acknowledged before the snapshot, e.g. {:?}",
                    missing.len(),
                    keys.len(),
                    missing.iter().take(5).map(|&k| load::key(RG, k)).collect::<Vec<_>>()
                )),
                Err(e) => soak.violation(format!("reading {restored} back: {e:#}")),
            },
            _ => soak.violation(format!("{restored} not available within {:?}", soak.settle_bound)),
        }
        if let Err(e) = client.delete_replication_group().replication_group_id(&restored).send().await {
            refused(soak, "DeleteReplicationGroup", &e);
        }
    }
    if let Err(e) = client.delete_snapshot().snapshot_name(&snapshot).send().await {
        refused(soak, "DeleteSnapshot", &e);
    }
    Ok(())
}

/// `kill -9` of the emulator — half the time while a failover, a node restart, a replica
/// change or a reshard is under way (the request sent, its answer not awaited) — then a check that every engine process under its state dir died
/// with it, and a restart on the same state dir.
async fn emulator_kill9(soak: &mut Soak, n: usize) -> anyhow::Result<()> {
    let during = match soak.rng.below(8) {
        0 => Some(Fault::NodeKill),
        1 => Some(Fault::TestFailover),
        2 => Some(Fault::ReplicaCount),
        3 => Some(Fault::Reshard),
        _ => None,
    };
    let delay = soak.rng.millis(0, 500);
    let pid = soak.emulator.pid().unwrap_or(0);
    soak.current = format!("fault #{n} emulator-kill-9 of pid {pid}");
    if let Some(first) = during {
        soak.current = format!("{} {} ms into a {}", soak.current, delay.as_millis(), first.name());
        soak.log(&soak.current);
        let current = soak.current.clone();
        match first {
            Fault::NodeKill => {
                if let Some((cluster, node)) = pick_node(soak).await? {
                    soak.log(format!("  first node-kill {cluster}/{node}"));
                    node_action(soak, &cluster, &node, "kill").await?;
                }
            }
            Fault::TestFailover => test_failover(soak, n, true).await?,
            Fault::Reshard => reshard(soak, n, true).await?,
            _ => replica_count(soak, n, true).await?,
        }
        soak.current = format!("{current} ({})", soak.current);
        tokio::time::sleep(delay).await;
    } else {
        soak.log(&soak.current);
    }
    let before = engine_processes(&soak.emulator.state_dir);
    soak.emulator.kill9()?;
    let deadline = Instant::now() + DIE_BOUND;
    loop {
        let left: Vec<_> = before.iter().filter(|p| e2e::process_alive(p.pid)).collect();
        let strays = engine_processes(&soak.emulator.state_dir);
        if left.is_empty() && strays.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            soak.violation(format!(
                "engine processes still running {DIE_BOUND:?} after the emulator's kill -9 (orphans): {:?}",
                left.iter()
                    .map(|p| (p.pid, &p.name, &p.cwd))
                    .chain(strays.iter().map(|p| (p.pid, &p.name, &p.cwd)))
                    .collect::<Vec<_>>()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    soak.log(format!("  {} engine processes died with the emulator; restarting it", before.len()));
    soak.emulator.restart().await.context("restarting the emulator after kill -9")?;
    soak.log(format!("  emulator back as pid {}", soak.emulator.pid().unwrap_or(0)));
    Ok(())
}
