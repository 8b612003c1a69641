//! One reconcile of a cluster-mode replication group on Redis Cluster. The store says
//! which members exist, which shard each belongs to, which member leads each shard and
//! which slots each shard should own; this brings the real cluster there, one step per
//! pass, reading what the nodes say every time:
//!
//! 1. shard failovers asked for (health monitor, TestFailover) are carried out first;
//! 2. nodes that do not know each other yet meet (`CLUSTER MEET`);
//! 3. replicas follow their shard's primary (`CLUSTER REPLICATE`);
//! 4. unowned slots go to the shard that should own them (`CLUSTER ADDSLOTSRANGE`);
//! 5. a reshard moves slots with their keys, then retires removed shards;
//! 6. a restore spreads the snapshot's keys over the shards;
//! 7. the configuration endpoint lists the primaries, and the group becomes available once
//!    every node reports `cluster_state:ok`.
//!
//! Member nodes are started, healed and stopped by the cache-cluster reconcile with
//! [`node_directives`]; Redis Cluster's own automatic failover is off, so failover happens
//! only here, through the same health monitor as for cluster mode disabled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use nodes::cluster::{self, ClusterNode, Primary};
use nodes::{Balance, Health, NodeKey};
use operations::cache_clusters::status;
use operations::replication_groups::SOURCE_TYPE;
use store::{CacheCluster, EventRecord, NodeGroupRecord, ReplicationGroup, ReshardingProgress, Scope};

use crate::cache_clusters::{Error, stored};
use crate::replication_groups::{address, ensure, node_key, point_primary_and_reader};
use crate::{Reconciler, lock};

/// Slots moved between two progress reports in the store.
const PROGRESS_EVERY: u32 = 512;
/// How long a replica may take to win a coordinated failover before it is forced.
const FAILOVER_WAIT: Duration = Duration::from_secs(2);

/// The settings every node of a cluster-mode group runs with.
pub fn node_directives(major_version: u32) -> Vec<(String, String)> {
    let mut directives: Vec<(String, String)> = [
        ("cluster-enabled", "yes"),
        ("cluster-config-file", "nodes.conf"),
        // Short, so clients soon stop being sent to a node that is down.
        ("cluster-node-timeout", "2000"),
        // Failover is the emulator's (health monitor, TestFailover), as on AWS.
        ("cluster-replica-no-failover", "yes"),
        // A shard without a primary must not take the other shards down with it.
        ("cluster-require-full-coverage", "no"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if major_version >= 7 {
        // Replicas stay in the shard the store puts them in.
        directives.push(("cluster-allow-replica-migration".to_string(), "no".to_string()));
    }
    directives
}

/// One member node that answered, with what it says about the cluster.
struct Seen<'a> {
    member: &'a CacheCluster,
    key: NodeKey,
    address: SocketAddr,
    view: Vec<ClusterNode>,
    me: ClusterNode,
    state_ok: bool,
}

impl Seen<'_> {
    fn knows(&self, id: &str) -> bool {
        self.view.iter().any(|n| n.id == id)
    }
}

async fn look(
    r: &Reconciler,
    scope: &Scope,
    member: &CacheCluster,
) -> Option<(NodeKey, SocketAddr, Vec<ClusterNode>, bool)> {
    let key = node_key(scope, member)?;
    let address = address(member)?;
    if r.health(&key).is_some_and(|h| h != Health::Healthy) {
        return None;
    }
    let mut session = r.runtime.session(&key).await.ok()?;
    let view = session.nodes().await.ok()?;
    let info = session.command(&["CLUSTER", "INFO"]).await.ok()?.as_text().unwrap_or_default();
    Some((key, address, view, info.contains("cluster_state:ok")))
}

/// Brings one cluster-mode group to its desired state. Returns when to look again.
pub async fn reconcile(r: &Arc<Reconciler>, g: ReplicationGroup) -> Result<Option<Duration>, Error> {
    let scope = g.scope.clone();
    let id = g.group.id.clone();
    if let Some(shard) = g.group.node_groups.iter().find(|s| s.failover_to.is_some()) {
        let retry = failover(r, &g, shard).await?;
        return Ok(Some(if retry { crate::RETRY_DELAY } else { crate::SOON }));
    }
    let live: Vec<&CacheCluster> = g.members.iter().filter(|m| m.cluster.status != status::DELETING).collect();
    let mut seen: Vec<Seen> = Vec::new();
    for member in &live {
        if let Some((key, address, view, state_ok)) = look(r, &scope, member).await
            && let Some(me) = view.iter().find(|n| n.myself).cloned()
        {
            seen.push(Seen { member, key, address, view, me, state_ok });
        }
    }
    let mut progressing = false;
    let mut failed = false;
    // A command that failed, or that the node refused, is retried by the next reconcile.
    let note = |result: Result<nodes::resp::Reply, nodes::NodeError>, what: &str, failed: &mut bool| {
        if let Err(error) = result.and_then(error_reply) {
            tracing::warn!(replication_group = id, %error, "{what} failed");
            *failed = true;
        }
    };

    // 2. A node that has met nobody yet gets a configuration epoch of its own first, as
    // `redis-cli --cluster create` does: two primaries with one epoch would later settle the
    // tie by node id, which can undo a failover of a young cluster. Then nodes that do not
    // know each other meet directly: gossip alone takes seconds to spread a new node.
    for s in seen.iter().filter(|s| s.view.len() == 1 && s.me.epoch == 0) {
        let epoch = g.group.members.iter().position(|m| *m == s.member.cluster.id).unwrap_or(0) + 1;
        let _ = r.runtime.command(&s.key, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch.to_string()]).await;
    }
    for s in &seen {
        for other in seen.iter().filter(|o| o.me.id != s.me.id && !s.knows(&o.me.id)) {
            // One side of a pair is enough, unless the other side already knows this one.
            if !other.knows(&s.me.id) && s.me.id > other.me.id {
                continue;
            }
            let (ip, port) = (other.address.ip().to_string(), other.address.port().to_string());
            tracing::info!(
                replication_group = id,
                member = s.member.cluster.id,
                other = other.member.cluster.id,
                "meeting"
            );
            let result = r.runtime.command(&s.key, &["CLUSTER", "MEET", &ip, &port]).await;
            note(result, "CLUSTER MEET", &mut failed);
            progressing = true;
        }
    }

    // Who leads each shard, by cluster node id.
    let id_of = |cluster_id: &str| seen.iter().find(|s| s.member.cluster.id == cluster_id).map(|s| s.me.id.clone());
    let shard_primary: BTreeMap<String, Option<String>> =
        g.group.node_groups.iter().map(|shard| (shard.id.clone(), id_of(&shard.primary_cluster_id))).collect();

    // 3. Replicas follow their shard's primary.
    let mut linked = 0;
    let replicas = live.iter().filter(|m| !is_primary(&g, m)).count();
    for s in seen.iter().filter(|s| !is_primary(&g, s.member)) {
        let shard = s.member.cluster.node_group_id.clone().unwrap_or_default();
        let Some(Some(primary)) = shard_primary.get(&shard) else { continue };
        if !s.me.primary && s.me.primary_id.as_deref() == Some(primary.as_str()) {
            if r.runtime.replication(&s.key).await.is_ok_and(|i| i.link_up) {
                linked += 1;
            } else {
                progressing = true;
            }
            continue;
        }
        progressing = true;
        // A node still owning slots is a demoted primary not told yet: gossip fixes it.
        if s.me.primary && !s.me.slots.is_empty() {
            continue;
        }
        if s.knows(primary) {
            tracing::info!(
                replication_group = id,
                member = s.member.cluster.id,
                shard,
                "replicating from the shard's primary"
            );
            let result = r.runtime.command(&s.key, &["CLUSTER", "REPLICATE", primary]).await;
            note(result, "CLUSTER REPLICATE", &mut failed);
        }
    }

    // 4. Slots nobody owns go to the shard that should own them. A node is the authority on
    // its own slots; the widest view covers nodes that are down.
    let mut owner: HashMap<u16, String> = HashMap::new();
    if let Some(widest) = seen.iter().max_by_key(|s| s.view.len()) {
        for node in &widest.view {
            for slot in node.slots.iter().flat_map(|&(a, b)| a..=b) {
                owner.insert(slot, node.id.clone());
            }
        }
    }
    for s in &seen {
        for slot in s.me.slots.iter().flat_map(|&(a, b)| a..=b) {
            owner.insert(slot, s.me.id.clone());
        }
    }
    let mut misplaced = 0u32;
    for shard in &g.group.node_groups {
        let Some(Some(primary)) = shard_primary.get(&shard.id) else {
            progressing = true;
            continue;
        };
        let slots: Vec<u16> = shard.slots.iter().flat_map(|&(a, b)| a..=b).collect();
        misplaced += slots.iter().filter(|slot| owner.get(slot).is_some_and(|o| o != primary)).count() as u32;
        let free: Vec<u16> = slots.into_iter().filter(|slot| !owner.contains_key(slot)).collect();
        if free.is_empty() {
            continue;
        }
        progressing = true;
        let Some(s) = seen.iter().find(|s| &s.me.id == primary) else { continue };
        let mut args = vec!["CLUSTER".to_string(), "ADDSLOTSRANGE".to_string()];
        for (from, to) in cluster::ranges(free) {
            args.extend([from.to_string(), to.to_string()]);
        }
        tracing::info!(replication_group = id, shard = shard.id, "assigning slots");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = r.runtime.command(&s.key, &args).await;
        note(result, "CLUSTER ADDSLOTSRANGE", &mut failed);
    }

    // Forget nodes that are no member any more (removed replicas, retired shards).
    let live_addresses: HashSet<SocketAddr> = live.iter().filter_map(|m| address(m)).collect();
    let member_ids: HashSet<&str> = seen.iter().map(|s| s.me.id.as_str()).collect();
    let ghosts: Vec<String> = seen
        .iter()
        .flat_map(|s| s.view.iter())
        .filter(|n| n.slots.is_empty() && !member_ids.contains(n.id.as_str()))
        .filter(|n| n.address.is_none_or(|a| !live_addresses.contains(&a)))
        .map(|n| n.id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for ghost in &ghosts {
        for s in seen.iter().filter(|s| s.knows(ghost)) {
            tracing::info!(replication_group = id, node = ghost, "forgetting a node that left the group");
            let _ = r.runtime.command(&s.key, &["CLUSTER", "FORGET", ghost]).await;
        }
    }

    // Every node must know every other before slots can move between them.
    let all_met = seen.iter().all(|s| seen.iter().all(|o| s.knows(&o.me.id)));
    let members_ready =
        all_met && seen.len() == live.len() && live.iter().all(|m| m.cluster.status == status::AVAILABLE);
    // Slots may only move once every node knows every owner: a node importing a slot
    // ignores gossip about it, so one that never learnt its owner would refuse the keys.
    let converged = views_agree(&seen) && seen.iter().all(|s| s.state_ok);
    let topology_ready = members_ready && !progressing && linked == replicas && converged;

    // 5. Resharding, once every member is up and in place.
    let mut finished_reshard = false;
    if g.group.resharding.is_some() && topology_ready {
        move_slots(r, &g, &seen, &shard_primary, &owner, misplaced).await?;
        retire_removed_shards(r, &g, &seen).await?;
        finished_reshard = true;
    }

    // 6. A restore, once the slots are in place.
    let mut restored = false;
    if let Some(snapshot) = &g.group.restore_from
        && topology_ready
        && misplaced == 0
    {
        crate::snapshots::seed_cluster(
            r,
            &g,
            snapshot,
            &seen.iter().map(|s| (s.me.clone(), s.key.clone())).collect::<Vec<_>>(),
        )
        .await?;
        restored = true;
    }

    // 7. The configuration endpoint, and the status.
    let primaries: Vec<SocketAddr> =
        seen.iter().filter(|s| s.me.primary && !s.me.slots.is_empty()).map(|s| s.address).collect();
    let port = {
        let mut all = r.group_endpoints.lock().await;
        let endpoints = all.entry((scope.clone(), id.clone())).or_default();
        let endpoint =
            ensure(&mut endpoints.configuration, g.group.configuration_endpoint_port, Balance::First).await?;
        endpoint.point_at(primaries);
        let port = endpoint.port();
        endpoints.set_tls(r.proxy_tls(g.group.security.mode()).map_err(Error::Node)?);
        port
    };
    if g.group.cluster_mode == "enabled"
        && let Some(endpoints) = r.group_endpoints.lock().await.get_mut(&(scope.clone(), id.clone()))
    {
        // Past compatible mode, only the configuration endpoint serves.
        endpoints.primary = None;
        endpoints.reader = None;
    }
    // Compatible mode still serves clients that do not speak the cluster protocol.
    let compatible_ports = match g.group.node_groups.first().filter(|_| g.group.cluster_mode == "compatible") {
        Some(shard) => {
            let primary = seen.iter().find(|s| s.member.cluster.id == shard.primary_cluster_id && s.me.primary);
            let replicas = seen.iter().filter(|s| !s.me.primary).map(|s| s.address).collect();
            Some(point_primary_and_reader(r, &g, primary.map(|s| s.address), replicas).await?)
        }
        None => None,
    };
    failed |= !crate::acl::sync(r, &g).await;
    let settled = topology_ready
        && misplaced == 0
        && (g.group.resharding.is_none() || finished_reshard)
        && (g.group.restore_from.is_none() || restored);
    let result = r
        .ops
        .store()
        .update_replication_group(&scope, &id, |group, _| {
            group.configuration_endpoint_port = Some(port);
            if let Some((primary, reader)) = compatible_ports {
                group.primary_endpoint_port = Some(primary);
                group.reader_endpoint_port = Some(reader);
            }
            if finished_reshard {
                group.resharding = None;
            }
            if restored {
                group.restore_from = None;
            }
            crate::replication_groups::settle(group, &g.group, settled);
            Ok::<_, ()>(Vec::new())
        })
        .await;
    stored(result)?;
    let transitional = [status::CREATING, status::MODIFYING].contains(&g.group.status.as_str());
    Ok(if failed {
        Some(crate::RETRY_DELAY)
    } else if !settled && (transitional || progressing) {
        // Gossip takes a moment to spread what was just done.
        Some(Duration::from_millis(20))
    } else {
        None
    })
}

/// Whether every node sees every other as that node sees itself (role, primary, slots,
/// epoch), and no two primaries share an epoch: until gossip has spread and ties are
/// settled, a client could be sent to the wrong node, or a later tie-break undo a failover.
fn views_agree(seen: &[Seen<'_>]) -> bool {
    let mut epochs: Vec<u64> = seen.iter().filter(|s| s.me.primary).map(|s| s.me.epoch).collect();
    epochs.sort_unstable();
    let distinct = epochs.windows(2).all(|w| w[0] != w[1]);
    distinct
        && seen.iter().all(|s| {
            seen.iter().all(|o| {
                s.view.iter().any(|n| {
                    n.id == o.me.id
                        && n.primary == o.me.primary
                        && n.primary_id == o.me.primary_id
                        && n.slots == o.me.slots
                        && n.epoch == o.me.epoch
                })
            })
        })
}

fn error_reply(reply: nodes::resp::Reply) -> Result<nodes::resp::Reply, nodes::NodeError> {
    match reply {
        nodes::resp::Reply::Error(e) => Err(nodes::NodeError::Protocol(e)),
        other => Ok(other),
    }
}

fn is_primary(g: &ReplicationGroup, member: &CacheCluster) -> bool {
    g.group.node_groups.iter().any(|s| s.primary_cluster_id == member.cluster.id)
}

/// Moves every slot whose owner is not its shard's primary, keys included, reporting
/// progress as it goes. Each (source, target) pair of primaries moves its slots on its own
/// connections, concurrently with the other pairs: the work is round trips, not CPU.
async fn move_slots(
    r: &Reconciler,
    g: &ReplicationGroup,
    seen: &[Seen<'_>],
    shard_primary: &BTreeMap<String, Option<String>>,
    owner: &HashMap<u16, String>,
    misplaced: u32,
) -> Result<(), Error> {
    let mut moves: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
    for shard in &g.group.node_groups {
        let Some(Some(to)) = shard_primary.get(&shard.id) else { continue };
        for slot in shard.slots.iter().flat_map(|&(a, b)| a..=b) {
            if let Some(from) = owner.get(&slot).filter(|from| *from != to) {
                moves.entry((from.clone(), to.clone())).or_default().push(slot);
            }
        }
    }
    let primaries: HashMap<&str, (&NodeKey, SocketAddr)> =
        seen.iter().filter(|s| s.me.primary).map(|s| (s.me.id.as_str(), (&s.key, s.address))).collect();
    let total = misplaced.max(moves.values().map(|slots| slots.len() as u32).sum());
    let moved_slots = AtomicU32::new(0);
    let moved_keys = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    report(r, g, 0, total).await?;
    let pairs = moves.iter().map(|((from, to), slots)| {
        let (primaries, moved_slots, moved_keys) = (&primaries, &moved_slots, &moved_keys);
        async move {
            let unreachable = || Error::Node(nodes::NodeError::Protocol("a primary is not reachable".to_string()));
            let (from_key, from_address) = primaries.get(from.as_str()).copied().ok_or_else(unreachable)?;
            let (to_key, to_address) = primaries.get(to.as_str()).copied().ok_or_else(unreachable)?;
            let mut source = r.runtime.session(from_key).await.map_err(Error::Node)?;
            let mut target = r.runtime.session(to_key).await.map_err(Error::Node)?;
            for &slot in slots {
                let keys = cluster::migrate_slot(
                    slot,
                    Primary { session: &mut source, id: from, address: from_address },
                    Primary { session: &mut target, id: to, address: to_address },
                    r.runtime.control_credentials(),
                )
                .await
                .map_err(Error::Node)?;
                moved_keys.fetch_add(keys, Ordering::Relaxed);
                let done = moved_slots.fetch_add(1, Ordering::Relaxed) + 1;
                if done.is_multiple_of(PROGRESS_EVERY) {
                    report(r, g, done, total).await?;
                }
            }
            Ok::<_, Error>(())
        }
    });
    futures::future::try_join_all(pairs).await?;
    let (slots, keys) = (moved_slots.into_inner(), moved_keys.into_inner());
    tracing::info!(
        replication_group = g.group.id,
        slots,
        keys,
        ms = started.elapsed().as_millis() as u64,
        "slots moved"
    );
    report(r, g, slots, total).await
}

async fn report(r: &Reconciler, g: &ReplicationGroup, moved: u32, total: u32) -> Result<(), Error> {
    let result = r
        .ops
        .store()
        .update_replication_group(&g.scope, &g.group.id, |group, _| {
            group.resharding = Some(ReshardingProgress { slots_moved: moved, slots_to_move: total });
            Ok::<_, ()>(Vec::new())
        })
        .await;
    stored(result)
}

/// Shards whose slots have all moved away leave: every other node forgets their nodes,
/// and their members are deleted.
async fn retire_removed_shards(r: &Reconciler, g: &ReplicationGroup, seen: &[Seen<'_>]) -> Result<(), Error> {
    let removed: Vec<&NodeGroupRecord> = g.group.node_groups.iter().filter(|s| s.removing).collect();
    if removed.is_empty() {
        return Ok(());
    }
    let leaving =
        |s: &Seen| removed.iter().any(|shard| s.member.cluster.node_group_id.as_deref() == Some(shard.id.as_str()));
    for gone in seen.iter().filter(|s| leaving(s)) {
        for stay in seen.iter().filter(|s| !leaving(s)) {
            let _ = r.runtime.command(&stay.key, &["CLUSTER", "FORGET", &gone.me.id]).await;
        }
    }
    let removed_ids: Vec<String> = removed.iter().map(|s| s.id.clone()).collect();
    let result = r
        .ops
        .store()
        .update_replication_group(&g.scope, &g.group.id, |group, members| {
            group.node_groups.retain(|s| !removed_ids.contains(&s.id));
            for member in members.iter_mut() {
                if member.cluster.node_group_id.as_ref().is_some_and(|s| removed_ids.contains(s)) {
                    member.cluster.status = status::DELETING.to_string();
                    member.nodes.iter_mut().for_each(|n| n.status = status::DELETING.to_string());
                    group.members.retain(|m| *m != member.cluster.id);
                }
            }
            Ok::<_, ()>(vec![EventRecord::new(
                SOURCE_TYPE,
                &group.id,
                format!("Removed node groups {} from replication group {}", removed_ids.join(", "), group.id),
            )])
        })
        .await;
    stored(result)?;
    r.wake.notify_one();
    Ok(())
}

/// Promotes a replica of `shard`: the target asked for, or the healthiest, most up-to-date
/// one. A coordinated failover when the old primary still answers (nothing is lost), a
/// takeover when it does not. Returns whether to retry.
async fn failover(r: &Arc<Reconciler>, g: &ReplicationGroup, shard: &NodeGroupRecord) -> Result<bool, Error> {
    let scope = &g.scope;
    let old = shard.primary_cluster_id.clone();
    let target = shard.failover_to.clone().filter(|t| !t.is_empty());
    let in_shard = |m: &&CacheCluster| m.cluster.node_group_id.as_deref() == Some(shard.id.as_str());
    let old_key = g.members.iter().find(|m| m.cluster.id == old).and_then(|m| node_key(scope, m));
    let old_health = match &old_key {
        Some(key) => r.runtime.probe(key, r.health.timeout).await,
        None => Health::Exited,
    };
    let mut best: Option<(&CacheCluster, NodeKey, (u64, bool))> = None;
    for member in
        g.members.iter().filter(in_shard).filter(|m| m.cluster.id != old && m.cluster.status != status::DELETING)
    {
        if target.as_ref().is_some_and(|t| *t != member.cluster.id) {
            continue;
        }
        let Some(key) = node_key(scope, member) else { continue };
        if r.runtime.probe(&key, r.health.timeout).await != Health::Healthy {
            continue;
        }
        let Ok(info) = r.runtime.replication(&key).await else { continue };
        let other_zone = member.nodes.first().map(|n| &n.zone)
            != g.members.iter().find(|m| m.cluster.id == old).and_then(|m| m.nodes.first()).map(|n| &n.zone);
        let rank = (info.offset, other_zone);
        if best.as_ref().is_none_or(|(_, _, b)| rank > *b) {
            best = Some((member, key, rank));
        }
    }
    let Some((new, new_key, _)) = best else {
        if target.is_none() && old_health == Health::Exited {
            tracing::warn!(
                replication_group = g.group.id,
                shard = shard.id,
                "no replica to promote; restarting the primary in place"
            );
            if let Some(key) = old_key {
                lock(&r.to_recover).insert(key);
            }
            record_failover(r, g, shard, None).await?;
            return Ok(false);
        }
        tracing::warn!(replication_group = g.group.id, shard = shard.id, "no healthy replica to promote; retrying");
        return Ok(true);
    };
    let mut session = r.runtime.session(&new_key).await.map_err(Error::Node)?;
    let promoted = |view: &[ClusterNode]| view.iter().any(|n| n.myself && n.primary);
    if old_health == Health::Healthy {
        // Coordinated: the old primary stops writes until this replica has caught up.
        session.command(&["CLUSTER", "FAILOVER"]).await.map_err(Error::Node)?;
        let deadline = tokio::time::Instant::now() + FAILOVER_WAIT;
        while tokio::time::Instant::now() < deadline && !promoted(&session.nodes().await.map_err(Error::Node)?) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    if !promoted(&session.nodes().await.map_err(Error::Node)?) {
        session.command(&["CLUSTER", "FAILOVER", "TAKEOVER"]).await.map_err(Error::Node)?;
    }
    if !promoted(&session.nodes().await.map_err(Error::Node)?) {
        return Ok(true);
    }
    let new_id = new.cluster.id.clone();
    tracing::info!(replication_group = g.group.id, shard = shard.id, from = old, to = new_id, "failover completed");
    record_failover(r, g, shard, Some(&new_id)).await?;
    if old_health == Health::Exited
        && let Some(key) = old_key
    {
        lock(&r.to_recover).insert(key);
    }
    r.wake.notify_one();
    Ok(false)
}

/// Records a shard's new primary (if any) and drops the failover request.
async fn record_failover(
    r: &Reconciler,
    g: &ReplicationGroup,
    shard: &NodeGroupRecord,
    new: Option<&str>,
) -> Result<(), Error> {
    let old = shard.primary_cluster_id.clone();
    let result = r
        .ops
        .store()
        .update_replication_group(&g.scope, &g.group.id, |group, _| {
            let mut events = Vec::new();
            let Some(record) = group.node_groups.iter_mut().find(|s| s.id == shard.id) else { return Err(()) };
            record.failover_to = None;
            if let Some(new) = new
                && record.primary_cluster_id == old
            {
                record.primary_cluster_id = new.to_string();
                if group.primary_cluster_id == old {
                    group.primary_cluster_id = new.to_string();
                }
                let message = format!("Failover from primary node {old} to replica node {new} completed");
                events.push(EventRecord::new(SOURCE_TYPE, &group.id, message.clone()));
                events.push(EventRecord::new(operations::cache_clusters::SOURCE_TYPE, new, message));
            }
            Ok::<_, ()>(events)
        })
        .await;
    stored(result)
}
