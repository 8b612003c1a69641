//! Settling and the invariants checked after every fault:
//! - every resource settles (Describe shows it and each of its nodes `available`, and
//!   `/_emulator/nodes` shows each node running and healthy) within the settle bound;
//! - Describe agrees with `/_emulator/nodes` (the same nodes, ports, primaries and shards);
//! - the process table agrees with both: every node's pid is a live engine process working
//!   under the state dir, and no engine process works there that the emulator does not list
//!   (a node or a warm node): no orphan;
//! - every shard has exactly one primary (`ROLE` on every node), the one Describe names,
//!   replicas follow it, and the cluster-mode-disabled group takes a write on its primary
//!   endpoint;
//! - no acknowledged (`WAIT`-confirmed) write is lost;
//! - the parameter group's current maxmemory-policy runs on every node that uses it.
//!
//! Each check is polled for a short while (a check right after a settle may meet a
//! replica still finishing its sync); what still fails then is a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::{RedisClient, Resp};
use serde_json::Value;

use super::emulator::engine_processes;
use super::faults::{admin, admin_nodes};
use super::{RG, Soak};

/// How long a check may keep failing after the settle before it counts as a violation.
const CHECK_BOUND: Duration = Duration::from_secs(15);

/// Waits until every resource settles; returns how long it took (a violation past the bound).
pub async fn settle(soak: &mut Soak) -> Duration {
    let started = Instant::now();
    let deadline = started + soak.settle_bound;
    let mut seen;
    loop {
        match unsettled(soak).await {
            Ok(None) => break,
            Ok(Some(what)) => seen = what,
            Err(e) => seen = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            soak.violation(format!("not settled within {:?}: {seen}", soak.settle_bound));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    soak.settle_times.push(took);
    took
}

/// What is not settled yet, if anything.
async fn unsettled(soak: &Soak) -> anyhow::Result<Option<String>> {
    let client = &soak.client;
    let clusters = client.describe_cache_clusters().show_cache_node_info(true).max_records(100).send().await?;
    for c in clusters.cache_clusters() {
        let id = c.cache_cluster_id().unwrap_or_default();
        if c.cache_cluster_status() != Some("available") {
            return Ok(Some(format!("cluster {id} is {:?}", c.cache_cluster_status())));
        }
        for node in c.cache_nodes() {
            if node.cache_node_status() != Some("available") {
                return Ok(Some(format!("node {id}/{:?} is {:?}", node.cache_node_id(), node.cache_node_status())));
            }
        }
    }
    let groups = client.describe_replication_groups().max_records(100).send().await?;
    for g in groups.replication_groups() {
        if g.status() != Some("available") {
            return Ok(Some(format!("group {:?} is {:?}", g.replication_group_id(), g.status())));
        }
    }
    let snapshots = client.describe_snapshots().max_records(50).send().await?;
    for s in snapshots.snapshots() {
        if s.snapshot_status() != Some("available") {
            return Ok(Some(format!("snapshot {:?} is {:?}", s.snapshot_name(), s.snapshot_status())));
        }
    }
    for node in admin_nodes(soak).await? {
        if node["pid"].is_null() || node["health"] != "healthy" {
            return Ok(Some(format!(
                "node {}/{} has pid {} and health {}",
                node["cache_cluster_id"], node["cache_node_id"], node["pid"], node["health"]
            )));
        }
    }
    Ok(None)
}

/// Every invariant, each polled up to [`CHECK_BOUND`]; failures become violations.
pub async fn check(soak: &mut Soak) {
    for check in [Check::DescribeMatchesAdmin, Check::Processes, Check::Primaries, Check::Parameters] {
        let deadline = Instant::now() + CHECK_BOUND;
        loop {
            let result = match check {
                Check::DescribeMatchesAdmin => describe_matches_admin(soak).await,
                Check::Processes => processes_match(soak).await,
                Check::Primaries => one_primary_per_shard(soak).await,
                Check::Parameters => parameters_applied(soak).await,
            };
            match result {
                Ok(()) => break,
                Err(seen) if Instant::now() > deadline => {
                    soak.violation(format!("{}: {seen}", check.name()));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    lost_writes(soak).await;
}

#[derive(Clone, Copy)]
enum Check {
    DescribeMatchesAdmin,
    Processes,
    Primaries,
    Parameters,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DescribeMatchesAdmin => "Describe vs /_emulator/nodes",
            Check::Processes => "process table",
            Check::Primaries => "one primary per shard",
            Check::Parameters => "parameters",
        }
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The same nodes on the same ports, the same primary (cluster mode disabled) and the same
/// shard membership (cluster mode) in Describe and in `/_emulator/nodes`.
async fn describe_matches_admin(soak: &Soak) -> Result<(), String> {
    let admin = admin_nodes(soak).await.map_err(|e| format!("{e:#}"))?;
    let by_node: BTreeMap<(String, String), &Value> =
        admin.iter().map(|n| ((text(&n["cache_cluster_id"]), text(&n["cache_node_id"])), n)).collect();
    let clusters = soak
        .client
        .describe_cache_clusters()
        .show_cache_node_info(true)
        .max_records(100)
        .send()
        .await
        .map_err(|e| format!("DescribeCacheClusters: {e}"))?;
    let mut described = BTreeSet::new();
    for c in clusters.cache_clusters() {
        let id = c.cache_cluster_id().unwrap_or_default().to_string();
        for node in c.cache_nodes() {
            let key = (id.clone(), node.cache_node_id().unwrap_or_default().to_string());
            let Some(seen) = by_node.get(&key) else {
                return Err(format!("Describe lists node {key:?}, /_emulator/nodes does not"));
            };
            let port = node.endpoint().and_then(|e| e.port()).map(i64::from);
            if port != seen["port"].as_i64() {
                return Err(format!("node {key:?}: Describe port {port:?}, /_emulator/nodes port {}", seen["port"]));
            }
            described.insert(key);
        }
    }
    if let Some(extra) = by_node.keys().find(|k| !described.contains(*k)) {
        return Err(format!("/_emulator/nodes lists node {extra:?}, Describe does not"));
    }
    let groups = soak
        .client
        .describe_replication_groups()
        .max_records(100)
        .send()
        .await
        .map_err(|e| format!("DescribeReplicationGroups: {e}"))?;
    for g in groups.replication_groups() {
        let gid = g.replication_group_id().unwrap_or_default();
        let members: BTreeSet<String> = g.member_clusters().iter().cloned().collect();
        let listed: BTreeSet<String> =
            admin.iter().filter(|n| n["replication_group_id"] == gid).map(|n| text(&n["cache_cluster_id"])).collect();
        if members != listed {
            return Err(format!("group {gid}: Describe members {members:?}, /_emulator/nodes {listed:?}"));
        }
        for ng in g.node_groups() {
            let shard = ng.node_group_id().unwrap_or_default();
            for m in ng.node_group_members() {
                let cluster = m.cache_cluster_id().unwrap_or_default();
                let Some(seen) = admin.iter().find(|n| n["cache_cluster_id"] == cluster) else {
                    return Err(format!("group {gid}: member {cluster} not in /_emulator/nodes"));
                };
                if seen["node_group_id"] != shard {
                    return Err(format!(
                        "group {gid}: Describe puts {cluster} in shard {shard}, /_emulator/nodes in {}",
                        seen["node_group_id"]
                    ));
                }
                if let Some(role) = m.current_role()
                    && seen["role"] != role
                {
                    return Err(format!(
                        "group {gid}: Describe says {cluster} is {role}, /_emulator/nodes says {}",
                        seen["role"]
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every listed pid is a live engine process under the state dir, and every engine process
/// under the state dir is a listed node or warm node.
async fn processes_match(soak: &Soak) -> Result<(), String> {
    let admin = admin_nodes(soak).await.map_err(|e| format!("{e:#}"))?;
    let health = admin_health(soak).await?;
    let running = engine_processes(&soak.emulator.state_dir);
    let running_pids: BTreeSet<u64> = running.iter().map(|p| p.pid).collect();
    let mut expected = BTreeSet::new();
    for n in &admin {
        let Some(pid) = n["pid"].as_u64() else {
            return Err(format!("node {}/{} has no pid", n["cache_cluster_id"], n["cache_node_id"]));
        };
        if !running_pids.contains(&pid) {
            return Err(format!(
                "node {}/{} has pid {pid}, which is no live engine process under the state dir",
                n["cache_cluster_id"], n["cache_node_id"]
            ));
        }
        if !expected.insert(pid) {
            return Err(format!("pid {pid} listed for two nodes"));
        }
    }
    let warm = health["warm_nodes"].as_array().cloned().unwrap_or_default();
    expected.extend(warm.iter().filter_map(|w| w["pid"].as_u64()));
    let orphans: Vec<_> = running.iter().filter(|p| !expected.contains(&p.pid)).collect();
    if !orphans.is_empty() {
        return Err(format!("engine processes the emulator does not list (orphans): {orphans:?}"));
    }
    Ok(())
}

async fn admin_health(soak: &Soak) -> Result<Value, String> {
    match admin(soak, "GET", "/_emulator/health").await {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => Err(format!("/_emulator/health answered {status}: {body}")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// `ROLE` of a redis node: ("master", None) or ("slave", Some((host, port))).
async fn role(address: &str, port: u16) -> anyhow::Result<(String, Option<(String, u16)>)> {
    let mut redis = RedisClient::connect(address, port).await?;
    match redis.command(&["ROLE"]).await? {
        Resp::Array(Some(items)) => {
            let kind = items.first().and_then(Resp::text).unwrap_or_default();
            let master = match (items.get(1).and_then(Resp::text), items.get(2)) {
                (Some(host), Some(Resp::Integer(port))) if kind == "slave" => Some((host, *port as u16)),
                _ => None,
            };
            Ok((kind, master))
        }
        other => anyhow::bail!("ROLE answered {other:?}"),
    }
}

/// What a node answered to `ROLE`.
struct Seen<'a> {
    node: &'a Value,
    kind: String,
    /// A replica's primary.
    master: Option<(String, u16)>,
}

/// Exactly one master per shard, the one `/_emulator/nodes` names primary, replicas
/// replicating from it; the cluster-mode-disabled group's primary endpoint takes a write.
async fn one_primary_per_shard(soak: &Soak) -> Result<(), String> {
    let admin = admin_nodes(soak).await.map_err(|e| format!("{e:#}"))?;
    let mut shards: BTreeMap<(String, String), Vec<Seen>> = BTreeMap::new();
    for n in admin.iter().filter(|n| n["engine"] != "memcached" && !n["replication_group_id"].is_null()) {
        let (address, port) = (text(&n["address"]), n["port"].as_u64().unwrap_or_default() as u16);
        let (kind, master) = role(&address, port).await.map_err(|e| {
            format!("ROLE of {}/{} on {address}:{port}: {e:#}", n["cache_cluster_id"], n["cache_node_id"])
        })?;
        let shard = (text(&n["replication_group_id"]), text(&n["node_group_id"]));
        shards.entry(shard).or_default().push(Seen { node: n, kind, master });
    }
    for ((group, shard), nodes) in &shards {
        let masters: Vec<&Seen> = nodes.iter().filter(|s| s.kind == "master").collect();
        if masters.len() != 1 {
            let names: Vec<String> = masters.iter().map(|s| text(&s.node["cache_cluster_id"])).collect();
            return Err(format!("{group} shard {shard} has {} masters: {names:?}", masters.len()));
        }
        let primary = masters[0].node;
        if primary["role"] != "primary" {
            return Err(format!(
                "{group} shard {shard}: {} answers ROLE master but /_emulator/nodes calls it {}",
                primary["cache_cluster_id"], primary["role"]
            ));
        }
        let primary_at = (text(&primary["address"]), primary["port"].as_u64().unwrap_or_default() as u16);
        for seen in nodes {
            if seen.kind == "slave" && seen.master.as_ref().map(|m| m.1) != Some(primary_at.1) {
                return Err(format!(
                    "{group} shard {shard}: replica {} follows {:?}, the primary is {} on {primary_at:?}",
                    seen.node["cache_cluster_id"], seen.master, primary["cache_cluster_id"]
                ));
            }
        }
    }
    if let Some(load) = &soak.load {
        let (address, port) = &load.rg_primary;
        let mut redis =
            RedisClient::connect(address, *port).await.map_err(|e| format!("{RG} primary endpoint: {e:#}"))?;
        redis.set("soak:probe", "1").await.map_err(|e| format!("a write through {RG}'s primary endpoint: {e:#}"))?;
    }
    Ok(())
}

/// Every redis node of soak-rg runs the maxmemory-policy its parameter group asks for.
async fn parameters_applied(soak: &Soak) -> Result<(), String> {
    let admin = admin_nodes(soak).await.map_err(|e| format!("{e:#}"))?;
    for n in admin.iter().filter(|n| n["replication_group_id"] == RG) {
        let (address, port) = (text(&n["address"]), n["port"].as_u64().unwrap_or_default() as u16);
        let seen = async {
            let mut redis = RedisClient::connect(&address, port).await?;
            redis.config_get("maxmemory-policy").await
        }
        .await
        .map_err(|e| format!("CONFIG GET on {}: {e:#}", n["cache_cluster_id"]))?;
        if seen.as_deref() != Some(soak.policy.as_str()) {
            return Err(format!(
                "{} runs maxmemory-policy {seen:?}, its group asks for {}",
                n["cache_cluster_id"], soak.policy
            ));
        }
    }
    Ok(())
}

/// Reads back every acknowledged key; a lost one is a violation (each counted once).
async fn lost_writes(soak: &mut Soak) {
    let Some(load) = &soak.load else { return };
    let started = Instant::now();
    let mut first_error = None;
    let result = loop {
        match load.read_back().await {
            Ok(lost) => break Ok(lost),
            Err(e) if started.elapsed() > CHECK_BOUND => break Err(e),
            Err(e) => {
                first_error.get_or_insert(format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    if let (Some(e), Ok(_)) = (&first_error, &result) {
        // Settled, yet not readable at once: worth knowing, not a violation.
        soak.log(format!(
            "  read-back succeeded {:.1} s after the settle; first failed: {e}",
            started.elapsed().as_secs_f64()
        ));
        soak.late_reads.push((started.elapsed(), e.clone()));
    }
    match result {
        Ok(lost) => {
            for (group, keys) in lost.into_iter().filter(|(_, keys)| !keys.is_empty()) {
                soak.violation(format!(
                    "{} acknowledged write(s) lost in {group}, e.g. {:?}",
                    keys.len(),
                    keys.iter().take(5).collect::<Vec<_>>()
                ));
            }
        }
        Err(e) => soak.violation(format!("the acknowledged keys could not be read back: {e:#}")),
    }
}
