//! Global datastores: each secondary region's group replicates from the primary region's
//! group, and the datastore's status and its members' follow what the nodes show.
//!
//! With cluster mode disabled the secondary's primary node is a real replica of the
//! primary group's primary (`REPLICAOF`, as the emulator's own user, TLS when the groups
//! use it); its replicas follow it, so the whole secondary is read-only to clients.
//! FailoverGlobalReplicationGroup pauses writes on the old primary, waits until the
//! promoted region holds every write it acknowledged, then swaps the roles.
//!
//! With cluster mode enabled nodes refuse `REPLICAOF`: each shard primary of the primary
//! group is replicated by a bridge (`nodes::bridge`, a replica speaking the replication
//! protocol) into the secondary's shard primaries, and the secondary's users lose `@write`
//! (see `acl`): its clients read, and writes are refused (`NOPERM`, where a replica would
//! answer `READONLY`). Its replicas follow its own shard primaries as in any cluster.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use model::status::cluster as group_status;
use model::status::global as status;
use nodes::bridge::{BridgePhase, BridgeSpec};
use nodes::resp::Reply;
use nodes::{EngineKind, NodeKey, Role};
use store::{
    GlobalMemberKey, GlobalMemberRecord, GlobalReplicationGroupRecord, GlobalRole, ReplicationGroup, Scope, UpdateError,
};

use crate::Reconciler;
use crate::bridges::{shard_primaries, target_primaries};
use crate::error::{Error, stored};
use crate::replication_groups::{address, node_key};

/// How long the old primary's writes are held at most during a failover between regions.
const FAILOVER_PAUSE: Duration = Duration::from_secs(5);
/// How long the promoted region gets to catch up with the old primary's last write.
const CATCH_UP: Duration = Duration::from_secs(2);

fn bridge_prefix(account: &str, global: &str) -> String {
    format!("global/{account}/{global}/")
}

fn member_prefix(account: &str, global: &str, member: &GlobalMemberRecord) -> String {
    format!("{}{}/{}/", bridge_prefix(account, global), member.region, member.replication_group_id)
}

/// The bridges a cluster-mode datastore needs now: for every secondary, one per shard of
/// the primary group, from that shard's primary into the secondary's shard primaries.
/// None while either side moves slots between its shards: a key moving in the primary
/// region is a DEL in one shard's stream and a RESTORE in another's, which two bridges
/// could apply in either order. The secondary catches up with a full sync of every shard
/// once both sides have their new layout (each bridge replaces only its source's slots).
async fn wanted_bridges(
    r: &Reconciler,
    account: &str,
    record: &GlobalReplicationGroupRecord,
    source: &ReplicationGroup,
) -> Result<Vec<(String, BridgeSpec)>, Error> {
    let tls = match source.group.security.transit_encryption {
        true => Some(r.certificate_authority().and_then(|ca| ca.client_config()).map_err(Error::Node)?),
        false => None,
    };
    let (user, password) = r.runtime.control_credentials();
    let mut wanted = Vec::new();
    for member in record.secondaries().filter(|m| !m.disassociating) {
        let scope = member_scope(account, &member.region);
        let Some(target) = r.store.replication_group(&scope, &member.replication_group_id).await? else { continue };
        let targets = target_primaries(&target);
        let resharding = source.group.resharding.is_some() || target.group.resharding.is_some();
        if targets.is_empty() || target.group.status == group_status::CREATING || resharding {
            continue;
        }
        let engine = if target.group.engine == "valkey" { EngineKind::Valkey } else { EngineKind::Redis };
        for (shard, node) in shard_primaries(source) {
            let Some(address) = address(node) else { continue };
            let id = format!("{}{shard}", member_prefix(account, &record.id, member));
            let spec = BridgeSpec {
                source: address,
                source_auth: Some((user.to_string(), password.to_string())),
                source_tls: tls.clone(),
                target: targets.clone(),
                scratch_dir: r.state_dir.join("bridges").join(id.replace('/', "_")),
                engine,
            };
            wanted.push((id, spec));
        }
    }
    Ok(wanted)
}

/// Starts the bridges a cluster-mode datastore needs (again when an end moved) and stops
/// the ones it no longer needs.
async fn ensure_bridges(
    r: &Reconciler,
    account: &str,
    record: &GlobalReplicationGroupRecord,
    source: Option<&ReplicationGroup>,
) -> Result<(), Error> {
    let wanted = match source.filter(|g| g.group.cluster_enabled()) {
        Some(source) => wanted_bridges(r, account, record, source).await?,
        None => Vec::new(),
    };
    r.bridges.ensure(&r.runtime, &bridge_prefix(account, &record.id), wanted).await.map_err(Error::Node)
}

/// Whether every bridge into a cluster-mode secondary streams the primary's writes.
fn bridged(
    r: &Reconciler,
    account: &str,
    record: &GlobalReplicationGroupRecord,
    member: &GlobalMemberRecord,
    source: &ReplicationGroup,
) -> bool {
    let prefix = member_prefix(account, &record.id, member);
    shard_primaries(source).iter().all(|(shard, _)| {
        r.runtime.bridge(&format!("{prefix}{shard}")).is_some_and(|s| s.phase == BridgePhase::Streaming && s.link_up)
    })
}

/// Whether `g` is a cluster-mode secondary, which its datastore's bridges write to: its
/// users may only read.
pub(crate) async fn bridged_secondary(r: &Reconciler, g: &ReplicationGroup) -> bool {
    let Some(id) = g.group.global_replication_group_id.as_ref().filter(|_| g.group.cluster_enabled()) else {
        return false;
    };
    match r.store.global_replication_group(&g.scope.account, id).await {
        Ok(Some(record)) => record
            .member(&g.scope.region, &g.group.id)
            .is_some_and(|m| m.role == GlobalRole::Secondary && !m.disassociating),
        _ => false,
    }
}

pub(crate) fn key(account: &str, id: &str) -> crate::ClusterKey {
    (Scope { region: String::new(), account: account.to_string() }, format!("global/{id}"))
}

fn member_scope(account: &str, region: &str) -> Scope {
    Scope { region: region.to_string(), account: account.to_string() }
}

/// The primary member of a group: its current primary cluster.
fn primary_of(g: &ReplicationGroup) -> Option<&store::CacheCluster> {
    g.members.iter().find(|m| m.cluster.id == g.group.primary_cluster_id)
}

/// Where a group's primary replicates from, when the group is a secondary of a global
/// datastore: the primary region's primary node.
pub(crate) async fn upstream(r: &Reconciler, g: &ReplicationGroup) -> Result<Option<SocketAddr>, Error> {
    let Some(id) = &g.group.global_replication_group_id else { return Ok(None) };
    let Some(record) = r.store.global_replication_group(&g.scope.account, id).await? else { return Ok(None) };
    let Some(me) = record.member(&g.scope.region, &g.group.id) else { return Ok(None) };
    // While a failover between regions is asked for, the roles stand until `failover`
    // swaps them: a secondary promoted early would take writes the old primary still
    // acknowledges.
    if me.role != GlobalRole::Secondary || me.disassociating {
        return Ok(None);
    }
    let Some(primary) = record.primary() else { return Ok(None) };
    let scope = member_scope(&g.scope.account, &primary.region);
    let group = r.store.replication_group(&scope, &primary.replication_group_id).await?;
    Ok(group.as_ref().and_then(primary_of).and_then(address))
}

/// Makes the primary at `key` a replica of `upstream`, another emulator node: as the
/// emulator's own user, which every node knows.
pub(crate) async fn follow(r: &Reconciler, key: &NodeKey, upstream: SocketAddr) -> Result<(), nodes::NodeError> {
    let (host, port) = (upstream.ip().to_string(), upstream.port().to_string());
    r.runtime.command(key, &["REPLICAOF", &host, &port]).await.map(drop)
}

/// Brings one datastore's status, members and failover to what the nodes show.
pub(crate) async fn reconcile(r: &Reconciler, account: String, id: String) -> Result<Option<Duration>, Error> {
    let Some(record) = r.store.global_replication_group(&account, &id).await? else {
        r.bridges.stop_unwanted(&r.runtime, &bridge_prefix(&account, &id), &[]).await;
        return Ok(None);
    };
    if record.status == status::DELETING {
        r.bridges.stop_unwanted(&r.runtime, &bridge_prefix(&account, &id), &[]).await;
        return delete(r, &account, &record).await;
    }
    if let Some(target) = record.failover_to.clone() {
        failover(r, &account, &record, &target).await?;
        return Ok(Some(crate::SOON));
    }
    let source = match record.primary() {
        Some(p) => r.store.replication_group(&member_scope(&account, &p.region), &p.replication_group_id).await?,
        None => None,
    };
    ensure_bridges(r, &account, &record, source.as_ref()).await?;
    let mut linked = Vec::new();
    let mut leaving = Vec::new();
    for member in &record.members {
        let scope = member_scope(&account, &member.region);
        let group = r.store.replication_group(&scope, &member.replication_group_id).await?;
        let Some(group) = group else { continue };
        if member.disassociating {
            let stopped = match group.group.cluster_enabled() {
                true => !r.bridges.any_with_prefix(&member_prefix(&account, &id, member)),
                false => stopped_following(r, &group).await,
            };
            if stopped {
                leaving.push((scope, group.group.id.clone()));
            }
            continue;
        }
        let available = group.group.status == group_status::AVAILABLE;
        let ready = match (member.role, &source) {
            (GlobalRole::Primary, _) => available,
            (GlobalRole::Secondary, Some(source)) if group.group.cluster_enabled() => {
                available && bridged(r, &account, &record, member, source)
            }
            (GlobalRole::Secondary, _) => {
                let upstream = source.as_ref().and_then(primary_of).and_then(address);
                available && follows(r, &group, upstream).await
            }
        };
        if ready {
            linked.push((member.region.clone(), member.replication_group_id.clone()));
        }
    }
    // One write: the groups that left are standalone exactly when the datastore no longer
    // names them.
    let update = async |tx: &mut store::Tx| {
        for (scope, group) in &leaving {
            release(tx, scope, group).await?;
        }
        tx.update_global_replication_group(&account, &id, |g| {
            // What was looked at above is the record as read; an API call that changed it
            // since (a delete, a failover) is looked at again rather than overwritten.
            if *g != record {
                return Err(());
            }
            g.members.retain(|m| {
                !(m.disassociating
                    && leaving.iter().any(|(s, id)| s.region == m.region && *id == m.replication_group_id))
            });
            for m in &mut g.members {
                let ready = linked.iter().any(|(region, id)| *region == m.region && *id == m.replication_group_id);
                if ready && m.status != status::member::ASSOCIATED {
                    tracing::info!(
                        global_replication_group = g.id,
                        member = m.replication_group_id,
                        region = m.region,
                        "member associated"
                    );
                    m.status = status::member::ASSOCIATED.to_string();
                }
            }
            let settled = g.members.iter().all(|m| m.status == status::member::ASSOCIATED && !m.disassociating)
                && g.members
                    .iter()
                    .all(|m| linked.iter().any(|(region, id)| *region == m.region && *id == m.replication_group_id));
            if settled {
                let next = if g.secondaries().next().is_some() { status::AVAILABLE } else { status::PRIMARY_ONLY };
                if g.status != next {
                    tracing::info!(
                        global_replication_group = g.id,
                        from = g.status,
                        to = next,
                        "global replication group status"
                    );
                    g.status = next.to_string();
                }
            }
            Ok::<_, ()>(())
        })
        .await
    };
    let result = r.store.write(update).await;
    match result {
        Ok(Some(g)) if status::SETTLED.contains(&g.status.as_str()) => Ok(None),
        Ok(_) | Err(UpdateError::Rejected(())) => Ok(Some(crate::SOON)),
        Err(UpdateError::Store(e)) => Err(Error::Store(e)),
    }
}

/// Whether a secondary group's primary replicates from `upstream` (the primary region's
/// primary), its link up.
async fn follows(r: &Reconciler, g: &ReplicationGroup, upstream: Option<SocketAddr>) -> bool {
    let Some(upstream) = upstream else { return false };
    let Some(key) = primary_of(g).and_then(|p| node_key(&g.scope, p)) else { return false };
    let Ok(info) = r.runtime.replication(&key).await else { return false };
    info.role == Role::Replica
        && info.primary.map(|(ip, port)| SocketAddr::new(IpAddr::V4(ip), port)) == Some(upstream)
        && info.link_up
}

/// Whether a leaving secondary's primary stopped replicating from the other region (its
/// own reconcile stops it, the datastore no longer naming its upstream).
async fn stopped_following(r: &Reconciler, g: &ReplicationGroup) -> bool {
    let Some(key) = primary_of(g).and_then(|p| node_key(&g.scope, p)) else { return true };
    match r.runtime.replication(&key).await {
        Ok(info) => info.role == Role::Primary,
        Err(_) => false,
    }
}

/// Inside a write: a group leaves its datastore, a standalone group again.
async fn release(tx: &mut store::Tx, scope: &Scope, group: &str) -> Result<(), UpdateError<()>> {
    tx.update_replication_group(scope, group, |g, _| {
        tracing::info!(replication_group = g.id, "left its global datastore");
        g.global_replication_group_id = None;
        Ok::<_, ()>(Vec::new())
    })
    .await
    .map(drop)
}

/// DeleteGlobalReplicationGroup: the primary (the only member left) is released and the
/// datastore is gone, in one write.
async fn delete(
    r: &Reconciler,
    account: &str,
    record: &GlobalReplicationGroupRecord,
) -> Result<Option<Duration>, Error> {
    let result = r
        .store
        .write(async |tx| {
            for member in &record.members {
                release(tx, &member_scope(account, &member.region), &member.replication_group_id).await?;
            }
            Ok(tx.delete_global_replication_group(account, &record.id).await?)
        })
        .await;
    stored(result)?;
    tracing::info!(
        global_replication_group = record.id,
        from = status::DELETING,
        to = "deleted",
        "global replication group status"
    );
    Ok(None)
}

/// FailoverGlobalReplicationGroup: `target` becomes the primary region. With the old
/// primary healthy, its writes are held until the target holds all it acknowledged, so
/// none is lost; the old primary then follows the new one (cluster mode: its users lose
/// `@write` and the bridges turn round), and the held writes are refused rather than lost.
async fn failover(
    r: &Reconciler,
    account: &str,
    record: &GlobalReplicationGroupRecord,
    target: &GlobalMemberKey,
) -> Result<(), Error> {
    let old = match record.primary() {
        Some(p) => r.store.replication_group(&member_scope(account, &p.region), &p.replication_group_id).await?,
        None => None,
    };
    let new = r.store.replication_group(&member_scope(account, &target.region), &target.replication_group_id).await?;
    let cluster = old.as_ref().is_some_and(|g| g.group.cluster_enabled());
    let old_primaries: Vec<NodeKey> = match &old {
        Some(g) if cluster => shard_primaries(g).into_iter().filter_map(|(_, m)| node_key(&g.scope, m)).collect(),
        Some(g) => primary_of(g).and_then(|p| node_key(&g.scope, p)).into_iter().collect(),
        None => Vec::new(),
    };
    let mut paused = Vec::new();
    for key in &old_primaries {
        if pause_writes(r, key).await {
            paused.push(key.clone());
        }
    }
    let new_primary = new.as_ref().and_then(|g| primary_of(g).map(|p| (node_key(&g.scope, p), address(p))));
    if !paused.is_empty() && paused.len() == old_primaries.len() {
        match (cluster, target_member(record, target), &new_primary) {
            (true, Some(member), _) => {
                r.bridges.catch_up(&r.runtime, &member_prefix(account, &record.id, member), CATCH_UP).await;
            }
            (false, _, Some((Some(new_key), _))) => catch_up(r, &old_primaries[0], new_key).await,
            _ => {}
        }
    }
    let result = r
        .store
        .update_global_replication_group(account, &record.id, |g| {
            for m in &mut g.members {
                let promoted = m.region == target.region && m.replication_group_id == target.replication_group_id;
                m.role = if promoted { GlobalRole::Primary } else { GlobalRole::Secondary };
                if !promoted {
                    m.status = status::member::ASSOCIATING.to_string();
                }
            }
            g.failover_to = None;
            Ok::<_, ()>(())
        })
        .await;
    stored(result.map(drop))?;
    tracing::info!(
        global_replication_group = record.id,
        region = target.region,
        group = target.replication_group_id,
        "failed over between regions"
    );
    if cluster {
        // The next reconcile starts the bridges from the new primary region.
        r.bridges.stop_unwanted(&r.runtime, &bridge_prefix(account, &record.id), &[]).await;
        for group in [&old, &new].into_iter().flatten() {
            if let Some(fresh) = r.store.replication_group(&group.scope, &group.group.id).await? {
                crate::acl::sync(r, &fresh).await;
            }
        }
    } else if let Some((Some(new_key), new_address)) = new_primary {
        // At once rather than at the groups' next reconciles: the fewer the moments without
        // a writable primary, the better.
        if let Err(error) = r.runtime.command(&new_key, &["REPLICAOF", "NO", "ONE"]).await {
            tracing::warn!(node = %new_key, %error, "promoting the new primary region failed; its reconcile retries");
        }
        if let (Some(old_key), Some(address)) = (old_primaries.first(), new_address)
            && let Err(error) = follow(r, old_key, address).await
        {
            tracing::warn!(node = %old_key, %error, "the old primary could not follow the new one yet; its reconcile retries");
        }
    }
    for key in &paused {
        let _ = r.runtime.command(key, &["CLIENT", "UNPAUSE"]).await;
    }
    r.schedule.wake.notify_one();
    Ok(())
}

fn target_member<'a>(
    record: &'a GlobalReplicationGroupRecord,
    target: &GlobalMemberKey,
) -> Option<&'a GlobalMemberRecord> {
    record.member(&target.region, &target.replication_group_id)
}

/// Holds every client write on `key`'s node (reads go on); whether it could.
async fn pause_writes(r: &Reconciler, key: &NodeKey) -> bool {
    let millis = FAILOVER_PAUSE.as_millis().to_string();
    matches!(r.runtime.command(key, &["CLIENT", "PAUSE", &millis, "WRITE"]).await, Ok(Reply::Simple(_)))
}

/// Waits (bounded) until `replica` has applied every write `primary` holds.
async fn catch_up(r: &Reconciler, primary: &NodeKey, replica: &NodeKey) {
    let Ok(source) = r.runtime.replication(primary).await else { return };
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while tokio::time::Instant::now() < deadline {
        match r.runtime.replication(replica).await {
            Ok(info) if info.offset >= source.offset => return,
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
    tracing::warn!(node = %replica, "the promoted region did not catch up in time");
}
