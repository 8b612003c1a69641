//! Online migration into a replication group, as AWS runs it ("Online migration to
//! ElastiCache", user guide): StartMigration makes the group's primary a replica of the
//! customer's server, its replicas go on replicating from it, and clients can read but not
//! write; CompleteMigration promotes it again once it is in sync (at once with Force);
//! TestMigration only checks that the source can be replicated from. Each outcome is an
//! event of the group.
//!
//! With cluster mode enabled the source is a Redis Cluster, reached through the one endpoint
//! given, and "the ElastiCache primary node (in each shard) configures itself to become a
//! replica of your Valkey or Redis OSS instance (in corresponding shard owning same slots)"
//! (Migration-Initiate). Nodes in cluster mode refuse `REPLICAOF`, so each primary of the
//! source (found with `CLUSTER NODES` through that endpoint) is followed by a bridge
//! (`nodes::bridge`) writing into the group's shard primaries by slot, and the group's users
//! lose `@write` (`acl::read_only`): clients read, writes are refused (`NOPERM`, where a
//! replica answers `READONLY`). AWS reshards the target first when its slots differ from the
//! source's; bridges route by slot, so the emulator keeps the group's own layout.
//!
//! A source that cannot be reached, asks for a password, or runs in the other cluster mode
//! (AWS: "source and target should have the same cluster mode") ends the migration at once,
//! the group `available` again with an event saying why (AWS retries a few times first).

use std::net::SocketAddr;
use std::time::Duration;

use model::status::cluster as status;
use nodes::bridge::BridgeSpec;
use nodes::resp::Reply;
use nodes::{EngineKind, NodeKey};
use store::{EventRecord, MigrationPhase, MigrationRecord, ReplicationGroup, Scope};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::error::{Error, stored};
use crate::{Reconciler, scope_key};

/// Bound on reaching the source and on each of its answers.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long CompleteMigration waits for the bridges to apply all their sources hold.
const CATCH_UP: Duration = Duration::from_secs(2);
/// The operation's name in `progress`.
const MIGRATION: &str = "migration";

/// What the group's primary does about a migration, once this step has run.
pub(crate) enum Upstream {
    /// Nothing under way: the primary replicates from nobody.
    None,
    /// The primary replicates from the source at this address.
    Source(SocketAddr),
    /// The primary replicates from another region's primary node (a global datastore's
    /// secondary; see `global`).
    Peer(SocketAddr),
}

/// Carries out the group's migration as far as it can go now.
pub(crate) async fn step(r: &Reconciler, g: &ReplicationGroup, m: &MigrationRecord) -> Result<Upstream, Error> {
    let id = &g.group.id;
    let failed = |reason: String| failure(m.phase, id, &reason);
    let source = match resolve(&m.address, m.port).await {
        Ok(source) => source,
        Err(reason) => {
            end(r, g, failed(reason)).await?;
            return Ok(Upstream::None);
        }
    };
    match m.phase {
        MigrationPhase::Testing => {
            let message = match check(source, false).await {
                Ok(()) => format!("Test Migration successful for {id}"),
                Err(reason) => failed(reason),
            };
            end(r, g, message).await?;
            Ok(Upstream::None)
        }
        MigrationPhase::Migrating => {
            // Checked once, before the primary first follows it: later, the link's own
            // state tells (CompleteMigration waits for it).
            if replication_from(r, g, source).await.is_none()
                && let Err(reason) = check(source, false).await
            {
                end(r, g, failed(reason)).await?;
                return Ok(Upstream::None);
            }
            report_sync(r, g, source).await;
            Ok(Upstream::Source(source))
        }
        MigrationPhase::Completing { force } => {
            if force || replication_from(r, g, source).await == Some(true) {
                end(r, g, format!("Complete Migration successful for {id}")).await?;
                return Ok(Upstream::None);
            }
            let message = format!("Complete Migration failed for {id}: data is not in sync");
            record(r, &g.scope, id, message, MigrationPhase::Migrating).await?;
            Ok(Upstream::Source(source))
        }
    }
}

/// The event of a migration (or its test) that cannot go on.
fn failure(phase: MigrationPhase, id: &str, reason: &str) -> String {
    match phase {
        MigrationPhase::Testing => format!("Test Migration failed for {id}: {reason}"),
        _ => format!("Migration failed for {id}: {reason}"),
    }
}

/// The source's IPv4 address and port.
async fn resolve(address: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::time::timeout(SOURCE_TIMEOUT, tokio::net::lookup_host((address, port)))
        .await
        .map_err(|_| format!("{address} could not be resolved in time"))?
        .map_err(|e| format!("{address} could not be resolved: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{address} has no IPv4 address"))
}

/// Whether the source answers as a replication source can: no password asked, the
/// group's cluster mode (`cluster`). Why not, otherwise.
async fn check(source: SocketAddr, cluster: bool) -> Result<(), String> {
    let info = tokio::time::timeout(SOURCE_TIMEOUT, async {
        let mut stream = BufReader::new(TcpStream::connect(source).await?);
        nodes::resp::command(&mut stream, &["INFO", "cluster"]).await.map_err(std::io::Error::other)
    })
    .await
    .map_err(|_| format!("{source} did not answer in time"))?
    .map_err(|e| format!("cannot connect to {source}: {e}"))?;
    match info {
        Reply::Error(e) if e.starts_with("NOAUTH") => Err(format!("{source} requires authentication")),
        Reply::Error(e) => Err(format!("{source} answered {e}")),
        reply => match (reply.as_text().is_some_and(|t| t.contains("cluster_enabled:1")), cluster) {
            (true, false) => Err(format!("{source} runs in cluster mode; the replication group does not")),
            (false, true) => Err(format!("{source} does not run in cluster mode; the replication group does")),
            _ => Ok(()),
        },
    }
}

/// Whether a cluster-mode group's migration has bridges write into it: its clients may only
/// read.
pub(crate) fn bridged(g: &ReplicationGroup) -> bool {
    g.group.cluster_enabled() && g.group.migration.as_ref().is_some_and(|m| m.phase != MigrationPhase::Testing)
}

/// The runtime's names of the bridges of `g`'s migration start with this.
fn bridge_prefix(g: &ReplicationGroup) -> String {
    format!("migration/{}/{}/", scope_key(&g.scope), g.group.id)
}

/// Stops the bridges of `g`'s migration, if any (the group is being deleted, say).
pub(crate) async fn stop(r: &Reconciler, g: &ReplicationGroup) {
    r.bridges.stop_unwanted(&r.runtime, &bridge_prefix(g), &[]).await;
}

/// Carries out a cluster-mode group's migration as far as it can go now; `ready`: the
/// group's shards are in place (the bridges wait for it).
pub(crate) async fn cluster_step(r: &Reconciler, g: &ReplicationGroup, ready: bool) -> Result<(), Error> {
    let prefix = bridge_prefix(g);
    let Some(m) = &g.group.migration else {
        r.bridges.stop_unwanted(&r.runtime, &prefix, &[]).await;
        return Ok(());
    };
    let id = &g.group.id;
    let failed = |reason: String| failure(m.phase, id, &reason);
    let source = match resolve(&m.address, m.port).await {
        Ok(source) => source,
        Err(reason) => return end(r, g, failed(reason)).await,
    };
    match m.phase {
        MigrationPhase::Testing => {
            let checked = match check(source, true).await {
                Ok(()) => source_primaries(source).await.map(drop),
                Err(reason) => Err(reason),
            };
            let message = match checked {
                Ok(()) => format!("Test Migration successful for {id}"),
                Err(reason) => failed(reason),
            };
            end(r, g, message).await
        }
        MigrationPhase::Migrating => {
            let running = r.bridges.any_with_prefix(&prefix);
            // Checked once, before the first bridge starts: later the bridges' own links
            // tell (CompleteMigration waits for them).
            if !running && let Err(reason) = check(source, true).await {
                return end(r, g, failed(reason)).await;
            }
            let primaries = match source_primaries(source).await {
                Ok(primaries) => primaries,
                Err(reason) if !running => return end(r, g, failed(reason)).await,
                Err(reason) => {
                    // The bridges retry on their own; the layout is looked at again later.
                    tracing::warn!(replication_group = id, reason, "migration: the source's shards are unknown");
                    return Ok(());
                }
            };
            let targets = crate::bridges::target_primaries(g);
            if !ready || targets.is_empty() {
                return Ok(());
            }
            let engine = if g.group.engine == "valkey" { EngineKind::Valkey } else { EngineKind::Redis };
            let wanted = primaries
                .into_iter()
                .map(|(node, address)| {
                    let bridge = format!("{prefix}{node}");
                    let spec = BridgeSpec {
                        source: address,
                        // AWS's prerequisite: the source has no AUTH.
                        source_auth: None,
                        source_tls: None,
                        target: targets.clone(),
                        scratch_dir: r.state_dir.join("bridges").join(bridge.replace('/', "_")),
                        engine,
                    };
                    (bridge, spec)
                })
                .collect();
            match r.bridges.ensure(&r.runtime, &prefix, wanted).await {
                Ok(()) => Ok(()),
                Err(e) => end(r, g, failed(format!("the replication from the source cannot start: {e}"))).await,
            }
        }
        MigrationPhase::Completing { force } => {
            let in_sync = r.bridges.any_with_prefix(&prefix) && r.bridges.catch_up(&r.runtime, &prefix, CATCH_UP).await;
            if force || in_sync {
                end(r, g, format!("Complete Migration successful for {id}")).await?;
                // Writes come back at once rather than at the group's next reconcile.
                if let Some(fresh) = r.store.replication_group(&g.scope, id).await? {
                    crate::acl::sync(r, &fresh).await;
                }
                return Ok(());
            }
            let message = format!("Complete Migration failed for {id}: data is not in sync");
            record(r, &g.scope, id, message, MigrationPhase::Migrating).await
        }
    }
}

/// The primaries of the source cluster that serve slots, by cluster node id, as the node
/// at `source` sees them.
async fn source_primaries(source: SocketAddr) -> Result<Vec<(String, SocketAddr)>, String> {
    let reply = tokio::time::timeout(SOURCE_TIMEOUT, async {
        let mut stream = BufReader::new(TcpStream::connect(source).await?);
        nodes::resp::command(&mut stream, &["CLUSTER", "NODES"]).await.map_err(std::io::Error::other)
    })
    .await
    .map_err(|_| format!("{source} did not answer in time"))?
    .map_err(|e| format!("cannot connect to {source}: {e}"))?;
    let text = match reply {
        Reply::Error(e) => return Err(format!("{source} answered {e} to CLUSTER NODES")),
        reply => reply.as_text().ok_or_else(|| format!("{source} answered CLUSTER NODES with {reply:?}"))?,
    };
    let primaries: Vec<(String, SocketAddr)> = nodes::cluster::parse_nodes(&text)
        .into_iter()
        .filter(|n| n.primary && !n.failing && !n.slots.is_empty())
        .filter_map(|n| {
            // A node that never met another may not know its own address.
            let address = n.address.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
            Some((n.id, address.or(n.myself.then_some(source))?))
        })
        .collect();
    if primaries.is_empty() {
        return Err(format!("the cluster of {source} has no primary serving slots"));
    }
    Ok(primaries)
}

/// Whether the group's primary replicates from `source`: None if not, else whether its
/// link is up (the initial sync done, the stream flowing): in sync.
async fn replication_from(r: &Reconciler, g: &ReplicationGroup, source: SocketAddr) -> Option<bool> {
    let primary = g.members.iter().find(|m| m.cluster.id == g.group.primary_cluster_id);
    let key = primary.and_then(|p| crate::replication_groups::node_key(&g.scope, p))?;
    let std::net::IpAddr::V4(source_ip) = source.ip() else { return None };
    let info = r.runtime.replication(&key).await.ok()?;
    (info.primary == Some((source_ip, source.port()))).then_some(info.link_up)
}

/// How far the group's primary has replicated the source (its replication offset against
/// the source's), for `status` and the log. AWS shows no figure for this.
async fn report_sync(r: &Reconciler, g: &ReplicationGroup, source: SocketAddr) {
    let primary = g.members.iter().find(|m| m.cluster.id == g.group.primary_cluster_id);
    let Some(key) = primary.and_then(|p| crate::replication_groups::node_key(&g.scope, p)) else { return };
    let Ok(ours) = r.runtime.replication(&key).await else { return };
    let theirs = tokio::time::timeout(SOURCE_TIMEOUT, async {
        let mut stream = BufReader::new(TcpStream::connect(source).await.ok()?);
        let reply = nodes::resp::command(&mut stream, &["INFO", "replication"]).await.ok()?;
        nodes::ReplicationInfo::parse(&reply.as_text()?).ok()
    })
    .await;
    if let Ok(Some(theirs)) = theirs {
        r.progress.report(&g.scope, MIGRATION, &g.group.id, ours.offset.min(theirs.offset), theirs.offset);
    }
}

/// Makes the primary at `key` a replica of the source. It reaches the source as nobody: the
/// source knows nothing of the emulator's own user, which nodes use among themselves.
pub(crate) async fn follow(r: &Reconciler, key: &NodeKey, source: SocketAddr) -> Result<(), nodes::NodeError> {
    r.runtime.command(key, &["CONFIG", "SET", "masteruser", "", "masterauth", ""]).await?;
    let (host, port) = (source.ip().to_string(), source.port().to_string());
    r.runtime.command(key, &["REPLICAOF", &host, &port]).await.map(drop)
}

/// The primary of `g` reaches its peers as the emulator's own user again, as every node does
/// (a failover may make it a replica later).
async fn unfollow(r: &Reconciler, g: &ReplicationGroup) {
    let primary = g.members.iter().find(|m| m.cluster.id == g.group.primary_cluster_id);
    let Some(key) = primary.and_then(|p| crate::replication_groups::node_key(&g.scope, p)) else { return };
    let (user, password) = r.runtime.control_credentials();
    let (user, password) = (user.to_string(), password.to_string());
    let reset = r.runtime.command(&key, &["CONFIG", "SET", "masteruser", &user, "masterauth", &password]).await;
    if let Err(error) = reset {
        tracing::warn!(node = %key, %error, "restoring the node's replication user failed");
    }
}

/// Ends the migration: the group is `available`, and `message` says how it went.
async fn end(r: &Reconciler, g: &ReplicationGroup, message: String) -> Result<(), Error> {
    tracing::info!(replication_group = g.group.id, message, "migration ended");
    r.progress.finish(&g.scope, MIGRATION, &g.group.id);
    match g.group.cluster_enabled() {
        true => stop(r, g).await,
        false => unfollow(r, g).await,
    }
    let result = r
        .store
        .update_replication_group(&g.scope, &g.group.id, |group, _| {
            group.migration = None;
            if group.status == status::MIGRATING {
                group.status = status::AVAILABLE.to_string();
            }
            Ok::<_, ()>(vec![event(&group.id, &message)])
        })
        .await;
    stored(result)
}

/// Records `message` and moves the migration to `phase`.
async fn record(r: &Reconciler, scope: &Scope, id: &str, message: String, phase: MigrationPhase) -> Result<(), Error> {
    let result = r
        .store
        .update_replication_group(scope, id, |group, _| {
            if let Some(m) = group.migration.as_mut() {
                m.phase = phase;
            }
            Ok::<_, ()>(vec![event(&group.id, &message)])
        })
        .await;
    stored(result)
}

fn event(id: &str, message: &str) -> EventRecord {
    EventRecord::new(model::status::source::REPLICATION_GROUP, id, message)
}
