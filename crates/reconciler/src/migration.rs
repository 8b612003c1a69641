//! Online migration into a replication group (cluster mode disabled), as AWS runs it
//! ("Online migration to ElastiCache", user guide): StartMigration makes the group's
//! primary a replica of the customer's server, its replicas go on replicating from it, and
//! clients can read but not write; CompleteMigration promotes it again once it is in sync
//! (at once with Force); TestMigration only checks that the source can be replicated from.
//! Each outcome is an event of the group.
//!
//! A source that cannot be reached, asks for a password, or runs in cluster mode ends the
//! migration at once, the group `available` again with an event saying why (AWS retries a
//! few times first).

use std::net::SocketAddr;
use std::time::Duration;

use model::status::cluster as status;
use nodes::NodeKey;
use nodes::resp::Reply;
use store::{EventRecord, MigrationPhase, MigrationRecord, ReplicationGroup, Scope};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::Reconciler;
use crate::error::{Error, stored};

/// Bound on reaching the source and on each of its answers.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

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
    let failed = |reason: String| match m.phase {
        MigrationPhase::Testing => format!("Test Migration failed for {id}: {reason}"),
        _ => format!("Migration failed for {id}: {reason}"),
    };
    let source = match resolve(&m.address, m.port).await {
        Ok(source) => source,
        Err(reason) => {
            end(r, g, failed(reason)).await?;
            return Ok(Upstream::None);
        }
    };
    match m.phase {
        MigrationPhase::Testing => {
            let message = match check(source).await {
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
                && let Err(reason) = check(source).await
            {
                end(r, g, failed(reason)).await?;
                return Ok(Upstream::None);
            }
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

/// The source's IPv4 address and port.
async fn resolve(address: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::time::timeout(SOURCE_TIMEOUT, tokio::net::lookup_host((address, port)))
        .await
        .map_err(|_| format!("{address} could not be resolved in time"))?
        .map_err(|e| format!("{address} could not be resolved: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{address} has no IPv4 address"))
}

/// Whether the source answers as a replication source can: no password asked, no cluster
/// mode (the group has none). Why not, otherwise.
async fn check(source: SocketAddr) -> Result<(), String> {
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
        reply if reply.as_text().is_some_and(|t| t.contains("cluster_enabled:1")) => {
            Err(format!("{source} runs in cluster mode; the replication group does not"))
        }
        _ => Ok(()),
    }
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
    unfollow(r, g).await;
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
