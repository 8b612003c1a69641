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

use model::status::cluster as status;
use model::status::source::REPLICATION_GROUP as SOURCE_TYPE;
use nodes::cluster::{self, ClusterNode, Primary};
use nodes::{Balance, Health, NodeKey};
use store::{CacheCluster, EventRecord, FailoverRequest, NodeGroupRecord, ReplicationGroup, ReshardingProgress, Scope};

use crate::Reconciler;
use crate::endpoints::{ensure, point_primary_and_reader};
use crate::error::{Error, stored};
use crate::replication_groups::{
    Binary, address, binary, node_key, observe_replicas, observed_health, starting_again, zone_of,
};

/// Slots one pipeline moves between two nodes; progress is reported after each lot.
const SLOTS_AT_ONCE: usize = 128;
/// Lots moving at once between two nodes.
const LOTS_AT_ONCE: usize = 8;
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

    /// Whether this node sees `other` as `other` sees itself (address, role, primary, slots,
    /// epoch) and not as failing: a node back from a restart or an outage is seen at an old
    /// address, or flagged failed, until gossip catches up.
    fn sees_as_is(&self, other: &Seen<'_>) -> bool {
        let me = &other.me;
        self.view.iter().any(|n| {
            n.id == me.id
                && n.address == me.address
                && !n.failing
                && n.primary == me.primary
                && n.primary_id == me.primary_id
                && n.slots == me.slots
                && n.epoch == me.epoch
        })
    }
}

/// Readies a node that has met nobody yet, before it meets anyone. It gets a configuration
/// epoch of its own, as `redis-cli --cluster create` does: two primaries with one epoch
/// would later settle the tie by node id, which can undo a failover of a young cluster.
/// A node from the warm pool holds every slot (see `warm::preparation`): a primary of a group
/// being created keeps only its shard's, which nobody else serves yet; any other gives up
/// all (slots that others serve, with their keys, move to it by migration). Answers
/// whether anything changed.
async fn ready_lone_node(r: &Reconciler, g: &ReplicationGroup, s: &Seen<'_>) -> Result<bool, nodes::NodeError> {
    let mut changed = false;
    if s.me.epoch == 0 {
        let epoch = g.group.members.iter().position(|m| *m == s.member.cluster.id).unwrap_or(0) + 1;
        // Refused when the node has an epoch already: nothing to do then.
        let _ = r.runtime.command(&s.key, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch.to_string()]).await;
        changed = true;
    }
    let creating = g.group.status == status::CREATING;
    let own: HashSet<u16> = g
        .group
        .node_groups
        .iter()
        .filter(|shard| creating && shard.primary_cluster_id == s.member.cluster.id)
        .flat_map(|shard| shard.slots.iter().flat_map(|&(a, b)| a..=b))
        .collect();
    let foreign = s.me.slots.iter().flat_map(|&(a, b)| a..=b).filter(|slot| !own.contains(slot));
    let mut args = vec!["CLUSTER".to_string(), "DELSLOTSRANGE".to_string()];
    for (from, to) in cluster::ranges(foreign) {
        args.extend([from.to_string(), to.to_string()]);
    }
    if args.len() > 2 {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        error_reply(r.runtime.command(&s.key, &args).await?)?;
        changed = true;
    }
    Ok(changed)
}

/// What a replica did about following its shard's primary.
enum Follow {
    /// The shard has no primary that answered: the health monitor's business.
    NoPrimary,
    /// It replicates from it, link up.
    Linked,
    /// Not yet: its link is coming up, it does not know the primary yet, or it still owns
    /// slots (a demoted primary that gossip has not told yet).
    Waiting,
    /// It was told to (CLUSTER REPLICATE), with the node's answer.
    Told(Result<nodes::resp::Reply, nodes::NodeError>),
}

async fn follow(r: &Reconciler, s: &Seen<'_>, primary: Option<&str>) -> Follow {
    let Some(primary) = primary else { return Follow::NoPrimary };
    if !s.me.primary && s.me.primary_id.as_deref() == Some(primary) {
        return if r.runtime.replication(&s.key).await.is_ok_and(|i| i.link_up) {
            Follow::Linked
        } else {
            Follow::Waiting
        };
    }
    if (s.me.primary && !s.me.slots.is_empty()) || !s.knows(primary) {
        return Follow::Waiting;
    }
    tracing::info!(member = s.member.cluster.id, shard = ?s.member.cluster.node_group_id, "replicating from the shard's primary");
    Follow::Told(r.runtime.command(&s.key, &["CLUSTER", "REPLICATE", primary]).await)
}

/// Each `(node, other)`: `node` sends `other` a CLUSTER MEET, over one connection per
/// node, every node at once. Answers whether every node took its meetings.
async fn meet(r: &Reconciler, meetings: &[(&Seen<'_>, &Seen<'_>)]) -> bool {
    let mut by_node: BTreeMap<&str, (&NodeKey, Vec<SocketAddr>)> = BTreeMap::new();
    for (node, other) in meetings {
        by_node.entry(node.me.id.as_str()).or_insert((&node.key, Vec::new())).1.push(other.address);
    }
    let sends = by_node.into_values().map(|(key, addresses)| async move {
        let mut session = r.runtime.session(key).await?;
        for address in addresses {
            let (ip, port) = (address.ip().to_string(), address.port().to_string());
            error_reply(session.command(&["CLUSTER", "MEET", &ip, &port]).await?)?;
        }
        Ok::<_, nodes::NodeError>(())
    });
    futures::future::join_all(sends).await.iter().all(Result::is_ok)
}

/// Tells every member that sees another out of date what that one now is: a node asked to
/// meet a peer that knows it sends it a MEET, which the peer takes as a ping and learns the
/// sender's role, primary, slots and epoch from. Gossip alone takes up to half the node
/// timeout per pair to spread a change (a node met through a handshake is first known
/// without its slots), and clients could be sent to the wrong node meanwhile. Best effort:
/// gossip spreads it anyway.
async fn refresh_stale_views(r: &Reconciler, seen: &[Seen<'_>]) {
    let mut meetings = Vec::new();
    for behind in seen {
        for about in seen {
            if behind.me.id != about.me.id && behind.knows(&about.me.id) && !behind.sees_as_is(about) {
                meetings.push((about, behind));
            }
        }
    }
    meet(r, &meetings).await;
}

async fn look(
    r: &Reconciler,
    scope: &Scope,
    member: &CacheCluster,
) -> Option<(NodeKey, SocketAddr, Vec<ClusterNode>, bool)> {
    let key = node_key(scope, member)?;
    let address = address(member)?;
    if r.unhealthy(&key) {
        return None;
    }
    let mut session = r.runtime.session(&key).await.ok()?;
    let view = session.nodes().await.ok()?;
    let info = session.command(&["CLUSTER", "INFO"]).await.ok()?.as_text().unwrap_or_default();
    Some((key, address, view, info.contains("cluster_state:ok")))
}

/// Brings one cluster-mode group to its desired state. Returns when to look again.
pub async fn reconcile(r: &Arc<Reconciler>, g: ReplicationGroup) -> Result<Option<Duration>, Error> {
    if let Some(shard) = g.group.node_groups.iter().find(|s| s.failover_to.is_some()) {
        let retry = failover(r, &g, shard).await?;
        return Ok(Some(if retry { crate::RETRY_DELAY } else { crate::SOON }));
    }
    let live: Vec<&CacheCluster> = g.members.iter().filter(|m| m.cluster.status != status::DELETING).collect();
    let seen = observe(r, &g, &live).await;
    let seen = seen.as_slice();
    let mut pass = Pass { r, g: &g, progressing: false, failed: false };
    // 1. New nodes are readied and meet the others.
    pass.ready_and_meet(seen).await;
    // Who leads each shard, by cluster node id.
    let node_id_of =
        |cluster_id: &str| seen.iter().find(|s| s.member.cluster.id == cluster_id).map(|s| s.me.id.clone());
    let shard_primary: BTreeMap<String, Option<String>> =
        g.group.node_groups.iter().map(|shard| (shard.id.clone(), node_id_of(&shard.primary_cluster_id))).collect();
    // 2. Replicas follow their shard's primary.
    let linked = pass.link_replicas(seen, &shard_primary).await;
    // 3. Slots nobody owns go to the shard that should own them.
    let owner = slot_owners(seen);
    let misplaced = pass.assign_free_slots(seen, &shard_primary, &owner).await;
    // 4. Nodes that are no member any more are forgotten.
    pass.forget_ghosts(seen, &live).await;
    let replicas = live.iter().filter(|m| !is_primary(&g, m)).count();
    let topology_ready = pass.topology_ready(seen, &live).await && linked == replicas;
    // 5. Resharding, once every member is up and in place.
    let finished_reshard = g.group.resharding.is_some() && topology_ready;
    if finished_reshard {
        move_slots(r, &g, seen, &shard_primary, &owner, misplaced).await?;
        retire_removed_shards(r, &g, seen).await?;
    }
    // 6. A restore, once the slots are in place.
    let restoring = g.group.restore_from.as_ref().filter(|_| topology_ready && misplaced == 0);
    if let Some(snapshot) = restoring {
        let nodes: Vec<_> = seen.iter().map(|s| (s.me.clone(), s.key.clone())).collect();
        crate::snapshots::seed_cluster(r, &g, snapshot, &nodes).await?;
    }
    // 7. The endpoints, the users, and the status.
    let (port, compatible_ports) = endpoints(r, &g, seen).await?;
    pass.failed |= !crate::acl::sync(r, &g).await;
    // 8. An online migration: bridges from the source's primaries, once the shards are in
    // place.
    let in_place = topology_ready && misplaced == 0 && g.group.resharding.is_none();
    crate::migration::cluster_step(r, &g, in_place).await?;
    // 9. A change of binary (Redis OSS → Valkey): per shard, the replicas first (their own
    // reconciles restart them), then the primary hands over to one of them.
    let hand_overs = if topology_ready { shards_to_hand_over(r, &g, &live) } else { Vec::new() };
    let on_their_binary = live.iter().all(|m| binary(r, &g.scope, m) == Binary::Current);
    let settled = topology_ready
        && misplaced == 0
        && on_their_binary
        && (g.group.resharding.is_none() || finished_reshard)
        && (g.group.restore_from.is_none() || restoring.is_some());
    if finished_reshard {
        r.progress.finish(&g.scope, RESHARDING, &g.group.id);
    }
    let result = r
        .store
        .update_replication_group(&g.scope, &g.group.id, |group, _| {
            group.configuration_endpoint_port = Some(port);
            if let Some((primary, reader)) = compatible_ports {
                group.primary_endpoint_port = Some(primary);
                group.reader_endpoint_port = Some(reader);
            }
            if finished_reshard {
                group.resharding = None;
            }
            if restoring.is_some() {
                group.restore_from = None;
            }
            for shard in group.node_groups.iter_mut().filter(|s| hand_overs.contains(&s.id)) {
                tracing::info!(
                    replication_group = group.id,
                    shard = shard.id,
                    "primary hands over before its change of binary"
                );
                shard.failover_to.get_or_insert(store::FailoverRequest::BestReplica);
            }
            crate::replication_groups::settle(group, &g.group, settled);
            Ok::<_, ()>(Vec::new())
        })
        .await;
    stored(result)?;
    let transitional = [status::CREATING, status::MODIFYING].contains(&g.group.status.as_str());
    Ok(if pass.failed {
        Some(crate::RETRY_DELAY)
    } else if !settled && (transitional || pass.progressing) {
        // Redis acts on what was just done in its cluster cron, every 100 ms.
        Some(Duration::from_millis(5))
    } else {
        None
    })
}

/// The shards whose primary still runs another engine's binary while all its replicas run
/// their own.
fn shards_to_hand_over(r: &Reconciler, g: &ReplicationGroup, live: &[&CacheCluster]) -> Vec<String> {
    let mut shards = Vec::new();
    for shard in &g.group.node_groups {
        let members: Vec<&CacheCluster> =
            live.iter().copied().filter(|m| m.cluster.node_group_id.as_deref() == Some(shard.id.as_str())).collect();
        let (primaries, replicas): (Vec<&CacheCluster>, Vec<&CacheCluster>) =
            members.into_iter().partition(|m| m.cluster.id == shard.primary_cluster_id);
        let primary_behind = primaries.iter().any(|p| binary(r, &g.scope, p) == Binary::Other);
        if primary_behind && !replicas.is_empty() && replicas.iter().all(|m| binary(r, &g.scope, m) == Binary::Current)
        {
            shards.push(shard.id.clone());
        }
    }
    shards
}

/// Every live member asked at once (a pass takes as long as the slowest answer): the ones
/// that answered, with their view of the cluster.
async fn observe<'a>(r: &Reconciler, g: &ReplicationGroup, live: &[&'a CacheCluster]) -> Vec<Seen<'a>> {
    let looks = futures::future::join_all(live.iter().map(|member| look(r, &g.scope, member))).await;
    let mut seen = Vec::new();
    for (member, looked) in live.iter().zip(looks) {
        if let Some((key, address, view, state_ok)) = looked
            && let Some(me) = view.iter().find(|n| n.myself).cloned()
        {
            seen.push(Seen { member, key, address, view, me, state_ok });
        }
    }
    seen
}

/// One reconcile of a cluster-mode group, over what its members said (`seen`): whether it
/// made progress (look again soon) or something failed (retry later).
struct Pass<'a> {
    r: &'a Reconciler,
    g: &'a ReplicationGroup,
    progressing: bool,
    failed: bool,
}

/// The owner of every slot, by node id. A node is the authority on its own slots; the
/// widest view covers nodes that are down.
fn slot_owners<'s>(seen: &'s [Seen<'_>]) -> Vec<Option<&'s str>> {
    let mut owner: Vec<Option<&str>> = vec![None; usize::from(cluster::SLOTS)];
    if let Some(widest) = seen.iter().max_by_key(|s| s.view.len()) {
        for node in &widest.view {
            for slot in node.slots.iter().flat_map(|&(a, b)| a..=b) {
                owner[usize::from(slot)] = Some(&node.id);
            }
        }
    }
    for s in seen {
        for slot in s.me.slots.iter().flat_map(|&(a, b)| a..=b) {
            owner[usize::from(slot)] = Some(&s.me.id);
        }
    }
    owner
}

impl Pass<'_> {
    /// A command that failed, or that the node refused, is retried by the next reconcile.
    fn note(&mut self, result: Result<nodes::resp::Reply, nodes::NodeError>, what: &str) {
        if let Err(error) = result.and_then(error_reply) {
            tracing::warn!(replication_group = self.g.group.id, %error, "{what} failed");
            self.failed = true;
        }
    }

    /// Nodes that have met nobody yet are readied (every node at once), then nodes that do
    /// not know each other meet directly: gossip alone takes seconds to spread a new node.
    async fn ready_and_meet(&mut self, seen: &[Seen<'_>]) {
        let (r, g, id) = (self.r, self.g, &self.g.group.id);
        let lone = seen.iter().filter(|s| s.view.len() == 1).map(|s| ready_lone_node(r, g, s));
        for result in futures::future::join_all(lone).await {
            match result {
                Ok(changed) => self.progressing |= changed,
                Err(error) => {
                    tracing::warn!(replication_group = id, %error, "readying a new node failed");
                    self.failed = true;
                }
            }
        }
        let mut meetings = Vec::new();
        for s in seen {
            for other in seen.iter().filter(|o| o.me.id != s.me.id && !s.knows(&o.me.id)) {
                // One side of a pair is enough, unless the other side already knows this one.
                if !other.knows(&s.me.id) && s.me.id > other.me.id {
                    continue;
                }
                tracing::info!(
                    replication_group = id,
                    member = s.member.cluster.id,
                    other = other.member.cluster.id,
                    "meeting"
                );
                meetings.push((s, other));
            }
        }
        if !meetings.is_empty() {
            self.progressing = true;
            if !meet(r, &meetings).await {
                tracing::warn!(replication_group = id, "CLUSTER MEET failed");
                self.failed = true;
            }
        }
    }

    /// Replicas follow their shard's primary (every replica at once); what a replica has
    /// become is announced to everyone at once (see `refresh_stale_views`). Returns how many
    /// replicas are linked.
    async fn link_replicas(&mut self, seen: &[Seen<'_>], shard_primary: &BTreeMap<String, Option<String>>) -> usize {
        let (r, g) = (self.r, self.g);
        let follows = seen.iter().filter(|s| !is_primary(g, s.member)).map(|s| {
            let shard = s.member.cluster.node_group_id.clone().unwrap_or_default();
            let primary = shard_primary.get(&shard).cloned().flatten();
            async move { (s, follow(r, s, primary.as_deref()).await) }
        });
        let mut linked = 0;
        let mut told = Vec::new();
        for (s, followed) in futures::future::join_all(follows).await {
            match followed {
                Follow::NoPrimary => {}
                Follow::Linked => linked += 1,
                Follow::Waiting => self.progressing = true,
                Follow::Told(result) => told.push((s, result)),
            }
        }
        let mut announcements = Vec::new();
        for (s, result) in told {
            self.progressing = true;
            self.note(result, "CLUSTER REPLICATE");
            announcements.extend(seen.iter().filter(|o| o.me.id != s.me.id && s.knows(&o.me.id)).map(|o| (s, o)));
        }
        meet(r, &announcements).await;
        linked
    }

    /// Gives each shard's primary the shard's slots nobody owns; returns how many slots
    /// another node owns (a reshard moves those).
    async fn assign_free_slots(
        &mut self,
        seen: &[Seen<'_>],
        shard_primary: &BTreeMap<String, Option<String>>,
        owner: &[Option<&str>],
    ) -> u32 {
        let mut misplaced = 0u32;
        for shard in &self.g.group.node_groups {
            let Some(Some(primary)) = shard_primary.get(&shard.id) else {
                self.progressing = true;
                continue;
            };
            let slots: Vec<u16> = shard.slots.iter().flat_map(|&(a, b)| a..=b).collect();
            let owned_by = |slot: u16| owner[usize::from(slot)];
            misplaced += slots.iter().filter(|&&slot| owned_by(slot).is_some_and(|o| o != primary)).count() as u32;
            let free: Vec<u16> = slots.into_iter().filter(|&slot| owned_by(slot).is_none()).collect();
            if free.is_empty() {
                continue;
            }
            self.progressing = true;
            let Some(key) = seen.iter().find(|s| &s.me.id == primary).map(|s| s.key.clone()) else { continue };
            let mut args = vec!["CLUSTER".to_string(), "ADDSLOTSRANGE".to_string()];
            for (from, to) in cluster::ranges(free) {
                args.extend([from.to_string(), to.to_string()]);
            }
            tracing::info!(replication_group = self.g.group.id, shard = shard.id, "assigning slots");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let result = self.r.runtime.command(&key, &args).await;
            self.note(result, "CLUSTER ADDSLOTSRANGE");
        }
        misplaced
    }

    /// Forgets nodes that are no member any more (removed replicas, retired shards).
    async fn forget_ghosts(&self, seen: &[Seen<'_>], live: &[&CacheCluster]) {
        let live_addresses: HashSet<SocketAddr> = live.iter().filter_map(|m| address(m)).collect();
        let member_ids: HashSet<&str> = seen.iter().map(|s| s.me.id.as_str()).collect();
        let ghosts: HashSet<&str> = seen
            .iter()
            .flat_map(|s| s.view.iter())
            .filter(|n| n.slots.is_empty() && !member_ids.contains(n.id.as_str()))
            .filter(|n| n.address.is_none_or(|a| !live_addresses.contains(&a)))
            .map(|n| n.id.as_str())
            .collect();
        for ghost in ghosts {
            for s in seen.iter().filter(|s| s.knows(ghost)) {
                tracing::info!(
                    replication_group = self.g.group.id,
                    node = ghost,
                    "forgetting a node that left the group"
                );
                let _ = self.r.runtime.command(&s.key, &["CLUSTER", "FORGET", ghost]).await;
            }
        }
    }

    /// Whether every member is up, every node knows every other and agrees on every owner,
    /// and nothing is in progress: only then may slots move. A node importing a slot
    /// ignores gossip about it, so one that never learnt its owner would refuse the keys.
    async fn topology_ready(&self, seen: &[Seen<'_>], live: &[&CacheCluster]) -> bool {
        let all_met = seen.iter().all(|s| seen.iter().all(|o| s.knows(&o.me.id)));
        let members_ready =
            all_met && seen.len() == live.len() && live.iter().all(|m| m.cluster.status == status::AVAILABLE);
        let agree = views_agree(seen);
        if !agree {
            refresh_stale_views(self.r, seen).await;
        }
        let converged = agree && seen.iter().all(|s| s.state_ok);
        members_ready && !self.progressing && converged
    }
}

/// The configuration endpoint, pointed at the primaries that hold slots; in compatible mode
/// also the primary and reader endpoints (for clients that do not speak the cluster
/// protocol). Returns their ports.
async fn endpoints(
    r: &Reconciler,
    g: &ReplicationGroup,
    seen: &[Seen<'_>],
) -> Result<(u16, Option<(u16, u16)>), Error> {
    let key = (g.scope.clone(), g.group.id.clone());
    // Only the primaries the store names: a node back from an outage still claims its old
    // slots until gossip demotes it, and a client sent there would get a stale slot map.
    let serving = |s: &&Seen<'_>| s.me.primary && !s.me.slots.is_empty();
    let mut primaries: Vec<SocketAddr> =
        seen.iter().filter(serving).filter(|s| is_primary(g, s.member)).map(|s| s.address).collect();
    if primaries.is_empty() {
        primaries = seen.iter().filter(serving).map(|s| s.address).collect();
    }
    let port = {
        let mut all = r.endpoints.groups.lock().await;
        let endpoints = all.entry(key.clone()).or_default();
        let endpoint =
            ensure(r, &mut endpoints.configuration, g.group.configuration_endpoint_port, Balance::First).await?;
        endpoint.point_at(primaries);
        let port = endpoint.port();
        endpoints.set_tls(r.proxy_tls(g.group.security.mode()).map_err(Error::Node)?);
        if g.group.cluster_mode == "enabled" {
            // Past compatible mode, only the configuration endpoint serves.
            endpoints.primary = None;
            endpoints.reader = None;
        }
        port
    };
    let compatible_ports = match g.group.node_groups.first().filter(|_| g.group.cluster_mode == "compatible") {
        Some(shard) => {
            let primary = seen.iter().find(|s| s.member.cluster.id == shard.primary_cluster_id && s.me.primary);
            let replicas = seen.iter().filter(|s| !s.me.primary).map(|s| s.address).collect();
            Some(point_primary_and_reader(r, g, primary.map(|s| s.address), replicas, &[]).await?)
        }
        None => None,
    };
    Ok((port, compatible_ports))
}

/// Whether every node sees every other as that node sees itself (see `Seen::sees_as_is`),
/// and no two primaries share an epoch: until gossip has spread and ties are
/// settled, a client could be sent to the wrong node, or a later tie-break undo a failover.
fn views_agree(seen: &[Seen<'_>]) -> bool {
    let mut epochs: Vec<u64> = seen.iter().filter(|s| s.me.primary).map(|s| s.me.epoch).collect();
    epochs.sort_unstable();
    let distinct = epochs.windows(2).all(|w| w[0] != w[1]);
    distinct && seen.iter().all(|s| seen.iter().all(|o| s.sees_as_is(o)))
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
    owner: &[Option<&str>],
    misplaced: u32,
) -> Result<(), Error> {
    let mut moves: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
    for shard in &g.group.node_groups {
        let Some(Some(to)) = shard_primary.get(&shard.id) else { continue };
        for slot in shard.slots.iter().flat_map(|&(a, b)| a..=b) {
            if let Some(from) = owner[usize::from(slot)].filter(|from| from != to) {
                moves.entry((from.to_string(), to.clone())).or_default().push(slot);
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
            // Lots of slots on their own connections at once: valkey 8 makes each SETSLOT
            // wait for its replicas, so one connection would wait a round trip per slot.
            for wave in slots.chunks(SLOTS_AT_ONCE * LOTS_AT_ONCE) {
                let lots = wave.chunks(SLOTS_AT_ONCE).map(|lot| async move {
                    let mut source = r.runtime.session(from_key).await.map_err(Error::Node)?;
                    let mut target = r.runtime.session(to_key).await.map_err(Error::Node)?;
                    let keys = cluster::migrate_slots(
                        lot,
                        Primary { session: &mut source, id: from, address: from_address },
                        Primary { session: &mut target, id: to, address: to_address },
                        r.runtime.control_credentials(),
                    )
                    .await
                    .map_err(Error::Node)?;
                    moved_keys.fetch_add(keys, Ordering::Relaxed);
                    let done = moved_slots.fetch_add(lot.len() as u32, Ordering::Relaxed) + lot.len() as u32;
                    report(r, g, done, total).await
                });
                futures::future::try_join_all(lots).await?;
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

/// The name of a reshard in [`crate::progress`].
const RESHARDING: &str = "resharding";

async fn report(r: &Reconciler, g: &ReplicationGroup, moved: u32, total: u32) -> Result<(), Error> {
    r.progress.report(&g.scope, RESHARDING, &g.group.id, u64::from(moved), u64::from(total));
    let result = r
        .store
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
        .store
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
    Ok(())
}

/// Promotes a replica of `shard`: the target asked for, or the healthiest, most up-to-date
/// one. A coordinated failover when the old primary still answers (nothing is lost), a
/// takeover when it does not. Returns whether to retry.
async fn failover(r: &Arc<Reconciler>, g: &ReplicationGroup, shard: &NodeGroupRecord) -> Result<bool, Error> {
    let scope = &g.scope;
    let old = shard.primary_cluster_id.clone();
    let request = shard.failover_to.clone().unwrap_or(FailoverRequest::BestReplica);
    let old_member = g.members.iter().find(|m| m.cluster.id == old);
    let old_key = old_member.and_then(|m| node_key(scope, m));
    let old_health = observed_health(r, old_key.as_ref()).await;
    let candidates: Vec<&CacheCluster> = g
        .members
        .iter()
        .filter(|m| m.cluster.node_group_id.as_deref() == Some(shard.id.as_str()))
        .filter(|m| m.cluster.status != status::DELETING)
        .collect();
    if starting_again(&candidates) {
        return Ok(true);
    }
    if let Some(done) = promoted_already(r, scope, &candidates, &old).await {
        tracing::info!(replication_group = g.group.id, shard = shard.id, from = old, to = done, "failover found done");
        record_failover(r, g, shard, Some(done)).await?;
        return Ok(false);
    }
    let replicas = observe_replicas(r, scope, &candidates).await;
    let primary = crate::failover::Primary { id: &old, zone: zone_of(old_member), health: old_health };
    let (new, new_key) = match crate::failover::decide(&request, &primary, &replicas) {
        crate::failover::Decision::Promote { to, .. } => {
            match candidates.iter().find(|m| m.cluster.id == to).and_then(|m| node_key(scope, m).map(|k| (*m, k))) {
                Some(found) => found,
                None => return Ok(true),
            }
        }
        crate::failover::Decision::RestartPrimary => {
            tracing::warn!(
                replication_group = g.group.id,
                shard = shard.id,
                "no replica to promote; restarting the primary in place"
            );
            record_failover(r, g, shard, None).await?;
            if let Some(key) = old_key {
                r.request_recovery(&g.scope, &key).await;
            }
            return Ok(false);
        }
        crate::failover::Decision::Wait => {
            tracing::warn!(replication_group = g.group.id, shard = shard.id, "no healthy replica to promote; retrying");
            return Ok(true);
        }
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
    crate::serverless::repoint(r, &g.scope, &g.group.id).await?;
    if old_health == Health::Exited
        && let Some(key) = old_key
    {
        r.request_recovery(&g.scope, &key).await;
    }
    Ok(false)
}

/// The member of the shard, other than its recorded primary `old`, that Redis Cluster has
/// already made primary (it owns slots): a failover done whose record was not (the
/// emulator was killed between the two). Failing over again would find no replica.
async fn promoted_already<'a>(
    r: &Reconciler,
    scope: &Scope,
    candidates: &[&'a CacheCluster],
    old: &str,
) -> Option<&'a str> {
    for member in candidates.iter().filter(|m| m.cluster.id != old) {
        let Some(key) = node_key(scope, member) else { continue };
        let Ok(mut session) = r.runtime.session(&key).await else { continue };
        let view = session.nodes().await.unwrap_or_default();
        if view.iter().any(|n| n.myself && n.primary && !n.slots.is_empty()) {
            return Some(member.cluster.id.as_str());
        }
    }
    None
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
        .store
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
                events.push(EventRecord::new(model::status::source::CACHE_CLUSTER, new, message));
            }
            Ok::<_, ()>(events)
        })
        .await;
    stored(result)
}
