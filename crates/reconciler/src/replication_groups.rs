//! One reconcile of one replication group (cluster mode disabled): replication links from
//! every replica to the primary, the emulator-served primary and reader endpoints, the
//! group's status, failovers (automatic, TestFailover, PrimaryClusterId switch-over) and
//! deletion. The endpoints themselves are `endpoints`'. Member nodes themselves are started, healed and stopped by the cluster
//! reconcile, which makes replicas start as replicas of the current primary.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use model::status::cluster as status;
use model::status::source::REPLICATION_GROUP as SOURCE_TYPE;
use nodes::replication::Role;
use nodes::{Health, NodeKey, Pace};
use store::{CacheCluster, EventRecord, FailoverRequest, ReplicationGroup, Scope, UpdateError};

use crate::endpoints::point_primary_and_reader;
use crate::error::{Error, stored};
use crate::{Reconciler, lock, scope_key};

pub(crate) fn node_key(scope: &Scope, member: &CacheCluster) -> Option<NodeKey> {
    member.nodes.first().map(|n| NodeKey::new(scope_key(scope), member.cluster.id.clone(), n.node_id.clone()))
}

pub(crate) fn address(member: &CacheCluster) -> Option<SocketAddr> {
    let node = member.nodes.first().filter(|n| n.port != 0)?;
    Some(SocketAddr::new(node.address.parse().unwrap_or(Ipv4Addr::LOCALHOST).into(), node.port))
}

/// A member whose node is supervised and answers: it answered its last probe, or missed
/// fewer probes in a row than make a primary fail over (one slow probe on a busy machine
/// must not take a node out of its endpoints). A node gone, or frozen by an outage, is not.
fn serving(r: &Reconciler, scope: &Scope, member: &CacheCluster) -> bool {
    let Some(key) = node_key(scope, member) else { return false };
    let missed = || lock(&r.monitor.failures).get(&key).copied().unwrap_or(0);
    r.runtime.get(&key).is_some()
        && match r.health(&key) {
            None | Some(Health::Healthy) => true,
            Some(Health::Unreachable) => missed() < r.health.failure_threshold,
            Some(Health::Exited | Health::Paused) => false,
        }
}

/// The TLS and AUTH settings a cluster's nodes run with: its group's (`group`, as read
/// for it) for a member, its own otherwise.
pub fn security(c: &CacheCluster, group: Option<&ReplicationGroup>) -> store::TransitSecurity {
    group.map_or_else(|| c.cluster.security.clone(), |g| g.group.security.clone())
}

/// How a member's node starts because of its group.
#[derive(Default)]
pub struct MemberStart {
    /// A cluster-mode node's cluster settings, or a replica's `replicaof` its primary.
    pub directives: Vec<(String, String)>,
    /// A cluster-mode replica joining the cluster for the first time must start without
    /// data: keys it brought would make it claim their slots.
    pub empty_unless_joined: bool,
    /// A user group is attached: its users, not the AUTH token, define the default user.
    pub rbac: bool,
    /// A new node may start from a warm node (`nodes::warm`): a cluster-mode shard's primary,
    /// the primary of a group without cluster mode, a cluster of no group; never a replica
    /// (a cluster-mode one would hold every slot, another would start as a primary).
    pub warm_start: bool,
    /// The primary of a group (or cluster-mode shard) with replicas: a change of binary
    /// (Redis OSS → Valkey) reaches it only once it has handed over to a replica (see
    /// [`reconcile`] and `cluster_mode::reconcile`).
    pub awaits_switch_over: bool,
    /// The node a replica starts as a replica of: it serves the full sync.
    pub follows: Option<NodeKey>,
}

/// How member `c` of `group` (as read for it) starts; a cluster of no group starts as itself.
pub async fn member_start(
    r: &Reconciler,
    c: &CacheCluster,
    group: Option<&ReplicationGroup>,
    major_version: u32,
) -> MemberStart {
    let Some(group) = group else { return MemberStart { warm_start: true, ..MemberStart::default() } };
    let rbac = !group.group.user_group_ids.is_empty();
    let mut directives = crate::acl::config_directives(r, group).await;
    if group.group.cluster_enabled() {
        directives.extend(crate::cluster_mode::node_directives(major_version));
        let primary = group.group.node_group_led_by(&c.cluster.id).is_some();
        let shard_size = group.members.iter().filter(|m| m.cluster.node_group_id == c.cluster.node_group_id).count();
        return MemberStart {
            directives,
            empty_unless_joined: !primary,
            rbac,
            warm_start: primary,
            awaits_switch_over: primary && shard_size > 1,
            // Cluster-mode nodes keep their pace (`crate::pace`).
            follows: None,
        };
    }
    let primary = group.members.iter().find(|m| m.cluster.id == group.group.primary_cluster_id);
    let mut follows = None;
    if group.group.primary_cluster_id != c.cluster.id
        && let Some(primary) = primary
        && let Some(address) = address(primary)
    {
        directives.push(("replicaof".to_string(), format!("{} {}", address.ip(), address.port())));
        follows = node_key(&c.scope, primary);
    }
    let is_primary = group.group.primary_cluster_id == c.cluster.id;
    let awaits_switch_over = is_primary && group.members.len() > 1;
    MemberStart { directives, rbac, warm_start: is_primary, awaits_switch_over, follows, ..Default::default() }
}

/// A member's node as the runtime has it: down (or being replaced), up on the engine the
/// member asks for, or up on another (a change of binary under way).
#[derive(PartialEq)]
pub(crate) enum Binary {
    Down,
    Current,
    Other,
}

pub(crate) fn binary(r: &Reconciler, scope: &Scope, member: &CacheCluster) -> Binary {
    match node_key(scope, member).and_then(|key| r.runtime.get(&key)) {
        None => Binary::Down,
        Some(node) if node.engine.name() == member.cluster.engine => Binary::Current,
        Some(_) => Binary::Other,
    }
}

/// Marks a group available once `settled`, judged on `read`, the group as the reconcile
/// read it: a change made since (a new member, a new layout, a failover asked for) is
/// looked at by the next reconcile. A settled, available group's token change has reached
/// every node.
pub(crate) fn settle(group: &mut store::ReplicationGroupRecord, read: &store::ReplicationGroupRecord, settled: bool) {
    let unchanged = group.status == read.status
        && group.members == read.members
        && group.node_groups.iter().map(|s| &s.slots).eq(read.node_groups.iter().map(|s| &s.slots));
    let failover_pending = group.failover_to.is_some() || group.node_groups.iter().any(|s| s.failover_to.is_some());
    let transitional = [status::CREATING, status::MODIFYING].contains(&group.status.as_str());
    if settled && unchanged && !failover_pending && transitional {
        tracing::info!(
            replication_group = group.id,
            from = group.status,
            to = status::AVAILABLE,
            "replication group status"
        );
        group.status = status::AVAILABLE.to_string();
    }
    if settled && group.status == status::AVAILABLE {
        group.security.auth_token_status = None;
    }
}

/// Brings one group to its desired state. Returns when to look again: soon while links
/// come up, later after a failure.
pub async fn reconcile(r: &Arc<Reconciler>, g: ReplicationGroup) -> Result<Option<Duration>, Error> {
    let scope = g.scope.clone();
    let id = g.group.id.clone();
    if g.group.status == status::DELETING {
        crate::migration::stop(r, &g).await;
        if g.members.is_empty() {
            r.endpoints.groups.lock().await.remove(&(scope.clone(), id.clone()));
            let arn = model::arn::build(&scope, model::arn::Kind::ReplicationGroup, &id);
            match r.store.delete_replication_group(&scope, &id, &arn, &[]).await {
                Ok(()) | Err(store::StoreError::NotFound) => {
                    tracing::info!(
                        replication_group = id,
                        from = status::DELETING,
                        to = "deleted",
                        "replication group status"
                    )
                }
                Err(e) => return Err(Error::Store(e)),
            }
        }
        return Ok(None);
    }
    if g.group.status == status::CREATE_FAILED {
        return Ok(None);
    }
    if let Some(failed) = g.members.iter().find(|m| status::FAILED_CREATION.contains(&m.cluster.status.as_str())) {
        return fail_creation(r, &g, &failed.cluster.id).await;
    }
    if g.group.cluster_enabled() {
        return crate::cluster_mode::reconcile(r, g).await;
    }
    // A group at rest lets its nodes run quietly (`crate::pace`); one that is changing, or
    // follows another (a migration, a global datastore), raises them first.
    let at_rest = g.group.status == status::AVAILABLE
        && g.group.failover_to.is_none()
        && g.group.migration.is_none()
        && g.group.global_replication_group_id.is_none();
    let member_keys = || g.members.iter().filter_map(|m| node_key(&scope, m)).collect::<Vec<_>>();
    if !at_rest {
        crate::pace::set(r, member_keys(), Pace::Lively).await;
    }
    if let Some(request) = g.group.failover_to.clone() {
        let retry = failover(r, &scope, &id, request).await?;
        return Ok(retry.then_some(crate::RETRY_DELAY));
    }
    let upstream = match &g.group.migration {
        Some(migration) => crate::migration::step(r, &g, migration).await?,
        None => match crate::global::upstream(r, &g).await? {
            Some(peer) => crate::migration::Upstream::Peer(peer),
            None => crate::migration::Upstream::None,
        },
    };
    let live: Vec<&CacheCluster> = g.members.iter().filter(|m| m.cluster.status != status::DELETING).collect();
    let primary = live.iter().find(|m| m.cluster.id == g.group.primary_cluster_id).copied();
    let primary_address = primary.and_then(address);

    // Replication links: the primary replicates from nobody (from the source of a
    // migration while one runs), every replica from it.
    let mut linked = Vec::new();
    let mut failed = false;
    for member in &live {
        let (Some(key), true) = (node_key(&scope, member), serving(r, &scope, member)) else { continue };
        let Ok(info) = r.runtime.replication(&key).await else { continue };
        let is_primary = member.cluster.id == g.group.primary_cluster_id;
        let result = match (is_primary, info.role, primary_address) {
            (true, _, _) if let crate::migration::Upstream::Source(source) = upstream => {
                if info.primary != Some((ip(&source), source.port())) {
                    tracing::info!(replication_group = id, member = member.cluster.id, %source, "migrating from");
                    crate::migration::follow(r, &key, source).await
                } else {
                    Ok(())
                }
            }
            (true, _, _) if let crate::migration::Upstream::Peer(peer) = upstream => {
                if info.primary != Some((ip(&peer), peer.port())) {
                    tracing::info!(replication_group = id, member = member.cluster.id, %peer, "replicating from the global datastore's primary region");
                    crate::global::follow(r, &key, peer).await
                } else {
                    Ok(())
                }
            }
            (true, Role::Replica, _) => {
                tracing::info!(replication_group = id, member = member.cluster.id, "replica -> primary");
                r.runtime.command(&key, &["REPLICAOF", "NO", "ONE"]).await.map(|_| ())
            }
            (false, _, Some(target)) if info.primary != Some((ip(&target), target.port())) => {
                tracing::info!(replication_group = id, member = member.cluster.id, from = ?info.primary, to = %target, "replicating from");
                let port = target.port().to_string();
                r.runtime.command(&key, &["REPLICAOF", &ip(&target).to_string(), &port]).await.map(|_| ())
            }
            (false, Role::Replica, Some(_)) if info.link_up => {
                linked.push(member.cluster.id.clone());
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(replication_group = id, member = member.cluster.id, %error, "wiring replication failed");
            failed = true;
        }
    }

    // Endpoints follow the primary; the reader spreads over linked replicas.
    let primary_target = primary.filter(|p| serving(r, &scope, p)).and_then(address);
    let replica_targets: Vec<SocketAddr> = live
        .iter()
        .filter(|m| linked.contains(&m.cluster.id) && serving(r, &scope, m))
        // A replica about to restart (a reboot, a service update) leaves the reader first.
        .filter(|m| !m.nodes.iter().any(|n| n.reboot_requested))
        .filter_map(|m| address(m))
        .collect();
    let serving: Vec<SocketAddr> = live.iter().filter(|m| serving(r, &scope, m)).filter_map(|m| address(m)).collect();
    let (primary_port, reader_port) =
        point_primary_and_reader(r, &g, primary_target, replica_targets, &serving).await?;

    let replicas = live.len().saturating_sub(1);
    failed |= !crate::acl::sync(r, &g).await;
    // A change of binary (Redis OSS → Valkey) reaches the replicas first (their own
    // reconciles restart them); once they all run it and replicate, the primary hands over
    // to one of them, and then restarts as a replica.
    let is_primary = |m: &CacheCluster| m.cluster.id == g.group.primary_cluster_id;
    let hand_over = replicas > 0
        && linked.len() == replicas
        && primary.is_some_and(|p| binary(r, &scope, p) == Binary::Other)
        && live.iter().filter(|m| !is_primary(m)).all(|m| binary(r, &scope, m) == Binary::Current);
    let settled = live.iter().all(|m| m.cluster.status == status::AVAILABLE)
        && linked.len() == replicas
        && live.iter().all(|m| binary(r, &scope, m) == Binary::Current);
    let result = r
        .store
        .update_replication_group(&scope, &id, |group, _| {
            if hand_over && group.failover_to.is_none() {
                tracing::info!(replication_group = group.id, "primary hands over before its change of binary");
                group.failover_to = Some(store::FailoverRequest::BestReplica);
            }
            group.primary_endpoint_port = Some(primary_port);
            group.reader_endpoint_port = Some(reader_port);
            settle(group, &g.group, settled);
            Ok::<_, ()>(Vec::new())
        })
        .await;
    if at_rest && settled && !failed && !hand_over {
        crate::pace::set(r, member_keys(), Pace::Quiet).await;
    }
    match result {
        Ok(_) | Err(UpdateError::Rejected(())) if failed => Ok(Some(crate::RETRY_DELAY)),
        // Only a group on its way to available is worth watching closely.
        Ok(_) | Err(UpdateError::Rejected(())) => {
            let transitional = [status::CREATING, status::MODIFYING].contains(&g.group.status.as_str());
            Ok((!settled && transitional).then_some(crate::SOON))
        }
        Err(UpdateError::Store(e)) => Err(Error::Store(e)),
    }
}

/// A group being created whose member could not be created cannot be created either.
async fn fail_creation(r: &Reconciler, g: &ReplicationGroup, member: &str) -> Result<Option<Duration>, Error> {
    let result = r
        .store
        .update_replication_group(&g.scope, &g.group.id, |group, _| {
            if group.status != status::CREATING {
                return Err(());
            }
            tracing::info!(
                replication_group = group.id,
                from = group.status,
                to = status::CREATE_FAILED,
                member,
                "replication group status"
            );
            group.status = status::CREATE_FAILED.to_string();
            // The emulator's wording: AWS's event names the member and the cause.
            let message =
                format!("Failed to create replication group {}: cache cluster {member} could not be created", group.id);
            Ok(vec![EventRecord::new(SOURCE_TYPE, &group.id, message)])
        })
        .await;
    stored(result)?;
    Ok(None)
}

/// A node's health for a failover: a failure the monitor found on its last look (it looks
/// at a failing node every tick) stands; otherwise a probe now. Probing a hung primary
/// again would wait out the probe's timeout, twice, in a failover due within a second.
/// No node at all: exited.
pub(crate) async fn observed_health(r: &Reconciler, key: Option<&NodeKey>) -> Health {
    match key {
        Some(key) => match r.health(key) {
            Some(failed) if failed != Health::Healthy => failed,
            _ => r.runtime.probe(key, r.health.timeout).await,
        },
        None => Health::Exited,
    }
}

/// Whether the emulator is starting any of `members`' nodes again (after its own restart,
/// or a reboot). Those are not dead: a failover decided now would find no replica and
/// restart the primary in place, dropping the request.
pub(crate) fn starting_again(members: &[&CacheCluster]) -> bool {
    members.iter().any(|m| m.nodes.iter().any(|n| n.status == status::NODE_REBOOTING))
}

/// The zone of a member's node.
pub(crate) fn zone_of(member: Option<&CacheCluster>) -> &str {
    member.and_then(|m| m.nodes.first()).map_or("", |n| n.zone.as_str())
}

/// What a failover decision needs of each member: health and replication offset, every
/// member asked at once.
pub(crate) async fn observe_replicas<'a>(
    r: &Reconciler,
    scope: &Scope,
    members: &[&'a CacheCluster],
) -> Vec<crate::failover::Replica<'a>> {
    let observe = members.iter().map(|member| async move {
        let key = node_key(scope, member);
        let health = observed_health(r, key.as_ref()).await;
        // A replica not linked to the primary since it (re)started holds none of the
        // primary's recent writes: promoting it would lose them, so it is no candidate.
        let offset = match (&key, health) {
            (Some(key), Health::Healthy) => {
                r.runtime.replication(key).await.ok().filter(|i| i.linked_since_start).map(|i| i.offset)
            }
            _ => None,
        };
        crate::failover::Replica { id: member.cluster.id.as_str(), zone: zone_of(Some(member)), health, offset }
    });
    futures::future::join_all(observe).await
}

fn ip(address: &SocketAddr) -> Ipv4Addr {
    match address.ip() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
    }
}

/// Drops the failover `request` if it is still the one asked for.
async fn clear_failover(r: &Reconciler, scope: &Scope, id: &str, request: &FailoverRequest) -> Result<(), Error> {
    let result = r
        .store
        .update_replication_group(scope, id, |group, _| {
            if group.failover_to.as_ref() == Some(request) {
                group.failover_to = None;
            }
            Ok::<_, ()>(Vec::new())
        })
        .await;
    stored(result)
}

/// Promotes the replica `crate::failover::decide` picks for `request`. Repoints the other
/// replicas and the primary endpoint, records AWS's events; the old primary, once back, is
/// made a replica by the next reconcile. Answers whether to try again.
pub async fn failover(r: &Arc<Reconciler>, scope: &Scope, id: &str, request: FailoverRequest) -> Result<bool, Error> {
    let Some(g) = r.store.replication_group(scope, id).await.map_err(Error::Store)? else { return Ok(false) };
    let old = g.group.primary_cluster_id.clone();
    let old_member = g.members.iter().find(|m| m.cluster.id == old);
    let old_key = old_member.and_then(|m| node_key(scope, m));
    let old_health = observed_health(r, old_key.as_ref()).await;
    let candidates: Vec<&CacheCluster> = g.members.iter().filter(|m| m.cluster.status != status::DELETING).collect();
    if starting_again(&candidates) {
        return Ok(true);
    }
    let replicas = observe_replicas(r, scope, &candidates).await;
    let primary = crate::failover::Primary { id: &old, zone: zone_of(old_member), health: old_health };
    let new = match crate::failover::decide(&request, &primary, &replicas) {
        crate::failover::Decision::Promote { to, .. } => g
            .members
            .iter()
            .find(|m| m.cluster.id == to)
            .ok_or_else(|| Error::Inconsistent("promoted member vanished".into()))?,
        crate::failover::Decision::RestartPrimary => {
            tracing::warn!(replication_group = id, "no healthy replica to promote; restarting the primary in place");
            clear_failover(r, scope, id, &request).await?;
            if let Some(key) = old_key {
                r.request_recovery(scope, &key).await;
            }
            return Ok(false);
        }
        crate::failover::Decision::Wait => {
            tracing::warn!(replication_group = id, "no healthy replica to promote; retrying");
            return Ok(true);
        }
    };
    let new_id = new.cluster.id.clone();
    let (Some(new_key), Some(new_address)) = (node_key(scope, new), address(new)) else { return Ok(true) };
    // A planned switch-over (the old primary still answers) loses nothing: writes to the
    // old primary pause until the new one has caught up, and it becomes a replica at once.
    let planned = old_health == Health::Healthy;
    if planned && let Some(key) = &old_key {
        let _ = r.runtime.command(key, &["CLIENT", "PAUSE", "2000", "WRITE"]).await;
        let target = r.runtime.replication(key).await.map(|i| i.offset).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline
            && r.runtime.replication(&new_key).await.map(|i| i.offset).unwrap_or(0) < target
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    r.runtime.command(&new_key, &["REPLICAOF", "NO", "ONE"]).await.map_err(Error::Node)?;
    let port = new_address.port().to_string();
    let new_ip = ip(&new_address).to_string();
    if planned && let Some(key) = &old_key {
        let _ = r.runtime.command(key, &["REPLICAOF", &new_ip, &port]).await;
        let _ = r.runtime.command(key, &["CLIENT", "UNPAUSE"]).await;
    }
    for member in g.members.iter().filter(|m| m.cluster.id != new_id && m.cluster.id != old) {
        if let Some(key) = node_key(scope, member)
            && let Err(error) = r.runtime.command(&key, &["REPLICAOF", &new_ip, &port]).await
        {
            tracing::warn!(replication_group = id, member = member.cluster.id, %error, "repointing replica failed");
        }
    }
    if let Some(endpoint) =
        r.endpoints.groups.lock().await.get(&(scope.clone(), id.to_string())).and_then(|e| e.primary.as_ref())
    {
        endpoint.point_at(vec![new_address]);
    }
    // A primary that is alive but unreachable (frozen, zone outage) must not keep taking
    // writes through old connections when it comes back: the next reconcile demotes it.
    let message = format!("Failover from primary node {old} to replica node {new_id} completed");
    let result = r
        .store
        .update_replication_group(scope, id, |group, _| {
            // Only the failover asked for, from the primary it started from.
            if group.primary_cluster_id != old {
                return Err(());
            }
            group.primary_cluster_id = new_id.clone();
            if group.failover_to.as_ref() == Some(&request) {
                group.failover_to = None;
            }
            Ok::<_, ()>(vec![
                EventRecord::new(SOURCE_TYPE, &group.id, message.clone()),
                EventRecord::new(model::status::source::CACHE_CLUSTER, &new_id, message.clone()),
            ])
        })
        .await;
    stored(result)?;
    tracing::info!(replication_group = id, from = old, to = new_id, "failover completed");
    // If the old primary's process is gone, the cluster reconcile restarts it as a replica.
    if let Some(key) = old_key
        && r.runtime.probe(&key, r.health.timeout).await == Health::Exited
    {
        r.request_recovery(scope, &key).await;
    }
    Ok(false)
}
