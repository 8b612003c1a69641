//! One reconcile of one cache cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use model::status::cluster as status;
use model::status::source::CACHE_CLUSTER as SOURCE_TYPE;
use nodes::{ClusterConfig, ConfigEndpoint, EngineKind, NodeKey, NodeSpec, RunningNode};
use store::{CacheCluster, CacheNodeRecord, EventRecord, UpdateError};

use crate::error::Error;

use crate::{Reconciler, lock, scope_key};

/// The longest a restart waits for a drained node's connections through the reader endpoint
/// to end (a client holding one open is cut by the restart after that).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

fn engine_kind(engine: &str) -> EngineKind {
    match engine {
        "memcached" => EngineKind::Memcached,
        "valkey" => EngineKind::Valkey,
        _ => EngineKind::Redis,
    }
}

pub(crate) fn major_version(version: &str) -> u32 {
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// The memory of a node whose node type the catalog does not size.
pub(crate) const DEFAULT_MAX_MEMORY: u64 = 64 << 20;

/// What a reconcile did to one node, written back in one transaction.
enum Outcome {
    Started(RunningNode),
    /// Running, while its record still says it is coming up: the write of its start was
    /// lost (a store error under load), and no later look would start it again.
    Up,
    /// Parameters (and, for a new node type, memory) applied to the running process.
    Applied {
        pending_reboot: bool,
    },
    /// The node's passwords changed live (an AUTH token rotation).
    AuthApplied,
    Removed,
    /// Worth another try (a probe timed out, a port was taken, a command failed).
    Failed,
    /// The engine refused to run the node (it exited during start-up, or there is no binary
    /// for the engine): another try would fail the same way.
    CannotStart(String),
}

/// Brings one cluster to its desired state. Returns when to look again: after a failure,
/// or at once when the cluster changed state (a replication group may be waiting for it).
pub async fn reconcile(r: &Arc<Reconciler>, c: CacheCluster) -> Result<Option<Duration>, Error> {
    if c.cluster.status == status::DELETING {
        return delete(r, &c).await;
    }
    if status::FAILED_CREATION.contains(&c.cluster.status.as_str()) {
        // Nothing is retried; whatever did start stops, until the cluster is deleted.
        for node in &c.nodes {
            r.runtime.stop(&node_key(&c, &node.node_id)).await.map_err(Error::Node)?;
        }
        return Ok(None);
    }
    // Which nodes to recover was read (with the cluster) before the group's primary is: a
    // failover records the new primary before it asks for the old one's recovery, so a
    // recovered node always starts as a replica of the new primary, never as an empty
    // primary.
    let recovering: Vec<String> = c.nodes.iter().filter(|n| n.recover_requested).map(|n| n.node_id.clone()).collect();
    let desired = Desired::of(r, &c).await?;
    let outcomes = act_on_nodes(r, &c, &desired, &recovering).await?;
    let rejoining = rejoining_their_cluster(r, &c, &outcomes).await;
    // A failing endpoint must not lose what the node starts above did: it is retried.
    let (endpoint_port, endpoint_failed) = if desired.memcached {
        match config_endpoint(r, &c).await {
            Ok(port) => (Some(port), false),
            Err(error) => {
                tracing::warn!(cache_cluster = c.cluster.id, %error, "starting the configuration endpoint failed");
                (None, true)
            }
        }
    } else {
        (None, false)
    };
    let failed = endpoint_failed || outcomes.values().any(|o| matches!(o, Outcome::Failed | Outcome::CannotStart(_)));
    let cannot_start = outcomes.values().find_map(|o| match o {
        Outcome::CannotStart(reason) => Some(reason.clone()),
        _ => None,
    });
    // A creation that keeps failing for other reasons ends too, after a few attempts.
    let gave_up = failed && r.failed_attempts(&(c.scope.clone(), c.cluster.id.clone())) + 1 >= crate::MAX_ATTEMPTS;
    let observed = Observed {
        outcomes,
        recovering,
        rejoining,
        endpoint_port,
        creation_failure: cannot_start.clone().or_else(|| gave_up.then(|| "its nodes did not start".to_string())),
        cannot_start,
    };
    // A look that changes nothing (a steady cluster in a periodic pass) writes nothing and
    // reads nothing again; had the store changed since `c` was read, that write brings
    // another reconcile.
    let mut looked = c.clone();
    let unchanged = write_back(&mut looked.cluster, &mut looked.nodes, &desired, &observed).is_empty() && looked == c;
    let updated = if unchanged {
        looked
    } else {
        let result = r
            .store
            .update_cache_cluster(&c.scope, &c.cluster.id, |cluster, nodes| {
                Ok::<_, ()>(write_back(cluster, nodes, &desired, &observed))
            })
            .await;
        match result {
            Ok(Some(updated)) => updated,
            Ok(None) | Err(UpdateError::Rejected(())) => return Ok(None),
            Err(UpdateError::Store(e)) => return Err(Error::Store(e)),
        }
    };
    if updated.cluster.status != c.cluster.status {
        let reason = observed.creation_failure.as_ref().or(observed.cannot_start.as_ref());
        tracing::info!(
            cache_cluster = c.cluster.id,
            from = c.cluster.status,
            to = updated.cluster.status,
            reason,
            "cache cluster status"
        );
    }
    if desired.memcached {
        publish_config(r, &updated).await;
    }
    // A cluster of its own at rest runs quietly (a member's group decides for it).
    if c.cluster.replication_group_id.is_none() && !failed && updated.cluster.status == status::AVAILABLE {
        crate::pace::set(r, updated.nodes.iter().map(|n| node_key(&updated, &n.node_id)), nodes::Pace::Quiet).await;
    }
    Ok(if failed {
        Some(crate::RETRY_DELAY)
    } else if !observed.rejoining.is_empty() {
        Some(REJOIN_POLL)
    } else if updated.cluster.status != c.cluster.status {
        Some(Duration::ZERO)
    } else {
        None
    })
}

fn node_key(c: &CacheCluster, node_id: &str) -> NodeKey {
    NodeKey::new(scope_key(&c.scope), c.cluster.id.clone(), node_id)
}

/// How every node of the cluster should run: engine, settings, memory, TLS and passwords.
struct Desired {
    engine: EngineKind,
    memcached: bool,
    parameters: Vec<(String, String)>,
    max_memory_bytes: u64,
    directives: Vec<(String, String)>,
    member: crate::replication_groups::MemberStart,
    security: store::TransitSecurity,
    /// The transit mode the nodes themselves speak: `required`, or "" for plaintext.
    node_mode: &'static str,
    auth: String,
    ca: Option<Arc<nodes::tls::CertificateAuthority>>,
}

impl Desired {
    async fn of(r: &Reconciler, c: &CacheCluster) -> Result<Self, Error> {
        let engine = engine_kind(&c.cluster.engine);
        let memcached = engine == EngineKind::Memcached;
        let parameters =
            r.store.effective_parameters(&c.scope, &c.cluster.parameter_group, &r.catalog).await?.ok_or_else(|| {
                Error::Inconsistent(format!(
                    "parameter group {} of {} is gone",
                    c.cluster.parameter_group, c.cluster.id
                ))
            })?;
        let node_type = r.catalog.node_type(&c.cluster.node_type);
        let max_memory_bytes = if memcached {
            node_type.and_then(|t| t.memcached_max_cache_memory_mib).map_or(DEFAULT_MAX_MEMORY, |mib| mib << 20)
        } else {
            node_type.and_then(|t| t.redis_maxmemory_bytes).unwrap_or(DEFAULT_MAX_MEMORY)
        };
        // The group, read once: a member's limit, start and security are its group's.
        let group = match &c.cluster.replication_group_id {
            Some(id) => r.store.replication_group(&c.scope, id).await?,
            None => None,
        };
        // A serverless cache's data storage limit: shared out over its shards, or the
        // cluster's own for the mirrors of a serverless Memcached.
        let max_memory_bytes = match &c.cluster.replication_group_id {
            Some(_) => group.as_ref().and_then(|g| g.group.max_memory_bytes),
            None => c.cluster.max_memory_bytes,
        }
        .unwrap_or(max_memory_bytes);
        let major = r.runtime.engines().binary(engine).map_or(0, |b| major_version(&b.version));
        let member = crate::replication_groups::member_start(r, c, group.as_ref(), major).await;
        let directives =
            if memcached { member.directives.clone() } else { redis_directives(member.directives.clone(), major) };
        // TLS and AUTH token: the group's for a member. The nodes themselves speak TLS only
        // in mode `required`; in `preferred` the group's endpoints accept TLS for them.
        let security = crate::replication_groups::security(c, group.as_ref());
        // Memcached has no migration modes: with encryption in transit, its nodes speak TLS only.
        let node_tls = !memcached && security.mode() == Some(model::status::transit::REQUIRED);
        let node_mode = if node_tls { model::status::transit::REQUIRED } else { "" };
        let auth = security.auth_fingerprint();
        let tls = node_tls || (memcached && security.transit_encryption);
        let ca = if tls { Some(r.certificate_authority().map_err(Error::Node)?) } else { None };
        Ok(Self { engine, memcached, parameters, max_memory_bytes, directives, member, security, node_mode, auth, ca })
    }
}

/// What the nodes did, to be written back.
struct Observed {
    outcomes: HashMap<String, Outcome>,
    recovering: Vec<String>,
    /// Rebooted nodes of a cluster-mode member that run but whose cluster does not have them
    /// back yet: they stay rebooting.
    rejoining: Vec<String>,
    endpoint_port: Option<u16>,
    /// Why a node can never start (the engine refused it).
    cannot_start: Option<String>,
    /// Why the creation ends now, if it does.
    creation_failure: Option<String>,
}

/// Stops removed nodes, starts (or restarts) the nodes that need it, all at once, and
/// applies changes live to the running ones.
async fn act_on_nodes(
    r: &Arc<Reconciler>,
    c: &CacheCluster,
    desired: &Desired,
    recovering: &[String],
) -> Result<HashMap<String, Outcome>, Error> {
    let mut starts = Vec::new();
    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    for node in &c.nodes {
        let key = node_key(c, &node.node_id);
        let dir = r.node_dir(&c.scope, &c.cluster.id, &node.node_id);
        if node.remove_requested {
            r.runtime.stop(&key).await.map_err(Error::Node)?;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            outcomes.insert(node.node_id.clone(), Outcome::Removed);
            continue;
        }
        let running = r.runtime.get(&key);
        // Between plaintext and TLS the node's port changes what it speaks: a restart.
        let tls_changed = running.is_some() && node.applied_transit_mode != desired.node_mode;
        if tls_changed {
            tracing::info!(node = %key, from = node.applied_transit_mode, to = desired.node_mode, "node transit encryption");
        }
        // Another engine's binary (Redis OSS → Valkey): a restart, in place, with the data.
        let engine_changed =
            running.as_ref().is_some_and(|n| n.engine != desired.engine) && !desired.member.awaits_switch_over;
        if engine_changed {
            tracing::info!(node = %key, to = %desired.engine, "node changes engine");
        }
        let recover = recovering.contains(&node.node_id);
        if running.is_none() || node.reboot_requested || recover || tls_changed || engine_changed {
            if node.reboot_requested && running.is_some() {
                drained_from_reader(r, c, node).await;
            }
            match prepare_start(r, c, desired, node, recover).await? {
                Ok(spec) => {
                    let runtime = r.runtime.clone();
                    let node_id = node.node_id.clone();
                    starts.push(async move { (node_id, start_node(&runtime, spec).await) });
                }
                Err(outcome) => {
                    outcomes.insert(node.node_id.clone(), outcome);
                }
            }
        } else if !desired.memcached && node.applied_auth != desired.auth {
            outcomes.insert(node.node_id.clone(), apply_auth(r, &key, desired).await);
        } else if node.applied_parameters != desired.parameters
            || node.parameter_status == status::APPLYING
            || node.applied_max_memory != desired.max_memory_bytes
        {
            let outcome = apply_live(r, &key, node, &desired.parameters, desired.max_memory_bytes, desired.memcached);
            outcomes.insert(node.node_id.clone(), outcome.await);
        } else if [status::CREATING, status::NODE_REBOOTING].contains(&node.status.as_str()) {
            outcomes.insert(node.node_id.clone(), Outcome::Up);
        }
    }
    // A starting replica's full sync forks on its primary, which notices the end only at
    // its pace.
    if !starts.is_empty()
        && let Some(primary) = &desired.member.follows
    {
        crate::pace::set(r, [primary.clone()], nodes::Pace::Lively).await;
    }
    // Nodes start concurrently: a 20-node cluster takes as long as its slowest node.
    for (node_id, result) in futures::future::join_all(starts).await {
        outcomes.insert(node_id.clone(), started(r, c, &node_id, result).await);
    }
    Ok(outcomes)
}

/// The spec a node starts with, its directory ready (seeded from the snapshot a new
/// cluster restores, emptied for a node recovering from a crash); or why it cannot start.
/// Takes a replica about to restart (a reboot, a service update) out of its group's reader
/// endpoint and waits (bounded) until the reads it still serves there have ended, so no
/// read in flight is cut by the restart. Taken out again at each look: a group reconcile
/// that read the store before the reboot was asked for may have put it back.
async fn drained_from_reader(r: &Reconciler, c: &CacheCluster, node: &CacheNodeRecord) {
    let Some(group) = &c.cluster.replication_group_id else { return };
    let Ok(address) = node.address.parse::<std::net::Ipv4Addr>() else { return };
    let target = std::net::SocketAddr::from((address, node.port));
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        let open = match r.endpoints.groups.lock().await.get(&(c.scope.clone(), group.clone())) {
            Some(endpoints) => endpoints.reader.as_ref().map_or(0, |reader| {
                reader.drain(target);
                reader.remove(target);
                reader.open_to(target)
            }),
            None => 0,
        };
        if open == 0 || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn prepare_start(
    r: &Reconciler,
    c: &CacheCluster,
    desired: &Desired,
    node: &CacheNodeRecord,
    recover: bool,
) -> Result<Result<NodeSpec, Outcome>, Error> {
    let key = node_key(c, &node.node_id);
    let dir = r.node_dir(&c.scope, &c.cluster.id, &node.node_id);
    // A serverless Memcached cache's mirrors get their snapshot's items once they run
    // (`crate::serverless`): memcached loads no file.
    if node.status == status::CREATING
        && !desired.memcached
        && let Some(snapshot) = &c.cluster.restore_from
        && let Err(error) = crate::snapshots::seed_node(r, &c.scope, snapshot, &dir).await
    {
        tracing::warn!(cache_cluster = c.cluster.id, snapshot, %error, "seeding the node from its snapshot failed");
        return Ok(Err(Outcome::CannotStart(format!("snapshot {snapshot} could not be read: {error}"))));
    }
    // A crashed node comes back empty, as a replaced node does on AWS: not with the file a
    // clean stop or a snapshot left behind.
    if recover || (desired.member.empty_unless_joined && !dir.join("nodes.conf").exists()) {
        // A running process would write its data again as it stops.
        r.runtime.stop(&key).await.map_err(Error::Node)?;
        let _ = tokio::fs::remove_file(dir.join("dump.rdb")).await;
        let _ = tokio::fs::remove_dir_all(dir.join(nodes::config::AOF_DIR)).await;
    }
    Ok(Ok(NodeSpec {
        key,
        engine: desired.engine,
        address: node.address.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST),
        port: node.port,
        dir,
        max_memory_bytes: desired.max_memory_bytes,
        parameters: desired.parameters.clone(),
        directives: desired.directives.clone(),
        passwords: if desired.memcached { Vec::new() } else { desired.security.auth_tokens.clone() },
        tls: desired.ca.clone(),
        // Only a brand-new node waits for its start (see `nodes::warm`).
        warm_start: desired.member.warm_start && node.status == status::CREATING && !recover,
    }))
}

/// Starts a node on its port; when the port was taken while it was down (an emulator
/// restart), on a new one: a new endpoint beats a node that can never come back.
async fn start_node(runtime: &nodes::Runtime, spec: NodeSpec) -> Result<RunningNode, nodes::NodeError> {
    match runtime.start(spec.clone()).await {
        Err(nodes::NodeError::PortInUse { .. }) if spec.port != 0 => {
            tracing::warn!(node = %spec.key, port = spec.port, "port taken; moving the node to a new port");
            runtime.start(NodeSpec { port: 0, ..spec }).await
        }
        other => other,
    }
}

/// What a node start came to.
async fn started(
    r: &Reconciler,
    c: &CacheCluster,
    node_id: &str,
    result: Result<RunningNode, nodes::NodeError>,
) -> Outcome {
    match result {
        Ok(running) => {
            // A new process: its health history (a death already reported) is gone.
            lock(&r.monitor.observed).remove(&running.key);
            lock(&r.monitor.failures).remove(&running.key);
            // A node placed in a zone that is down comes up as unreachable as its peers.
            let zone = c.nodes.iter().find(|n| n.node_id == node_id).map(|n| n.zone.as_str());
            if zone.is_some_and(|z| r.zone_is_down(z))
                && let Err(error) = r.runtime.pause(&running.key).await
            {
                tracing::warn!(node = %running.key, %error, "freezing a node in a down zone failed");
            }
            Outcome::Started(running)
        }
        Err(error @ (nodes::NodeError::Exited { .. } | nodes::NodeError::BinaryMissing { .. })) => {
            tracing::warn!(cache_cluster = c.cluster.id, node = node_id, %error, "the engine refused to start the node");
            Outcome::CannotStart(error.to_string())
        }
        Err(error) => {
            tracing::warn!(cache_cluster = c.cluster.id, node = node_id, %error, "starting node failed");
            Outcome::Failed
        }
    }
}

/// How often a rebooted node that has not rejoined its cluster is asked again: a restart
/// of the emulator has every cluster-mode member asking at once, for up to 2 s.
const REJOIN_POLL: Duration = Duration::from_millis(100);

/// The rebooted nodes of a cluster-mode member (an API reboot, an emulator restart) that
/// run but do not serve yet: Redis Cluster answers `CLUSTERDOWN` until the node sees the
/// other primaries again, and a primary for its first 2 s whatever it sees
/// (`nodes::warm::WRITABLE_DELAY`). Only a node that kept its `nodes.conf` is held back: it
/// rejoins by itself; one without waits for its group's reconcile to meet it. A node frozen
/// in a zone that is down is not asked: the outage, not the reboot, is what it waits for.
async fn rejoining_their_cluster(r: &Reconciler, c: &CacheCluster, outcomes: &HashMap<String, Outcome>) -> Vec<String> {
    if c.cluster.node_group_id.is_none() {
        return Vec::new();
    }
    let mut rejoining = Vec::new();
    for node in c.nodes.iter().filter(|n| n.status == status::NODE_REBOOTING) {
        let up = matches!(outcomes.get(&node.node_id), Some(Outcome::Started(_) | Outcome::Up));
        let dir = r.node_dir(&c.scope, &c.cluster.id, &node.node_id);
        if !up || r.zone_is_down(&node.zone) || !dir.join("nodes.conf").exists() {
            continue;
        }
        let info = r.runtime.command(&node_key(c, &node.node_id), &["CLUSTER", "INFO"]).await;
        let serving = info.ok().and_then(|reply| reply.as_text().map(|t| t.contains("cluster_state:ok")));
        if serving != Some(true) {
            rejoining.push(node.node_id.clone());
        }
    }
    rejoining
}

/// A changed AUTH token, applied to the running node (a user group's users own the
/// default user instead: see `acl`).
async fn apply_auth(r: &Reconciler, key: &NodeKey, desired: &Desired) -> Outcome {
    if desired.member.rbac {
        return Outcome::AuthApplied;
    }
    match r.runtime.set_passwords(key, &desired.security.auth_tokens).await {
        Ok(()) => Outcome::AuthApplied,
        Err(error) => {
            tracing::warn!(node = %key, %error, "changing the AUTH token failed");
            Outcome::Failed
        }
    }
}

/// The store's side of one reconcile: what the nodes did, the cluster's status that
/// follows, and AWS's events for both.
fn write_back(
    cluster: &mut store::CacheClusterRecord,
    nodes: &mut Vec<CacheNodeRecord>,
    desired: &Desired,
    observed: &Observed,
) -> Vec<EventRecord> {
    let mut events = Vec::new();
    let node_set_changed = record_nodes(cluster, nodes, desired, observed, &mut events);
    if node_set_changed && desired.memcached {
        cluster.config_version += 1;
    }
    if let Some(port) = observed.endpoint_port {
        cluster.config_endpoint_port = Some(port);
    }
    let settled = nodes.iter().all(|n| {
        n.status == status::AVAILABLE
            && !n.reboot_requested
            && !n.remove_requested
            && n.parameter_status != status::APPLYING
            && (desired.memcached || (n.applied_transit_mode == desired.node_mode && n.applied_auth == desired.auth))
    });
    if settled {
        settle(cluster, &mut events);
    }
    if cluster.status == status::CREATING
        && let Some(reason) = &observed.creation_failure
    {
        events.push(fail_creation(cluster, reason));
    } else if let Some(reason) =
        observed.cannot_start.as_ref().filter(|_| cluster.status != status::INCOMPATIBLE_PARAMETERS)
    {
        events.push(incompatible_parameters(cluster, reason));
    }
    events
}

/// Records what each node's outcome changed; returns whether the set of nodes (or their
/// ports) changed, which Memcached's configuration endpoint announces.
fn record_nodes(
    cluster: &store::CacheClusterRecord,
    nodes: &mut Vec<CacheNodeRecord>,
    desired: &Desired,
    observed: &Observed,
    events: &mut Vec<EventRecord>,
) -> bool {
    let mut changed = false;
    let removed: Vec<String> = nodes
        .iter()
        .filter(|n| n.remove_requested && matches!(observed.outcomes.get(&n.node_id), Some(Outcome::Removed)))
        .map(|n| n.node_id.clone())
        .collect();
    if !removed.is_empty() {
        nodes.retain(|n| !removed.contains(&n.node_id));
        events.push(EventRecord::new(SOURCE_TYPE, &cluster.id, format!("Removed cache nodes {}", removed.join(", "))));
        changed = true;
    }
    for node in nodes.iter_mut() {
        match observed.outcomes.get(&node.node_id) {
            Some(Outcome::Started(running)) => {
                changed |= node.port != running.port || node.status == status::CREATING;
                started_event(&cluster.id, node, observed.recovering.contains(&node.node_id), events);
                node.port = running.port;
                if !observed.rejoining.contains(&node.node_id) {
                    node.status = status::AVAILABLE.to_string();
                }
                node.reboot_requested = false;
                node.recover_requested = false;
                node.parameter_status = status::IN_SYNC.to_string();
                node.applied_parameters = desired.parameters.clone();
                node.applied_max_memory = desired.max_memory_bytes;
                node.applied_transit_mode = desired.node_mode.to_string();
                node.applied_auth = desired.auth.clone();
            }
            Some(Outcome::Up) if !observed.rejoining.contains(&node.node_id) => {
                changed |= node.status == status::CREATING;
                node.status = status::AVAILABLE.to_string();
            }
            Some(Outcome::AuthApplied) => node.applied_auth = desired.auth.clone(),
            Some(Outcome::Applied { pending_reboot }) => {
                node.applied_parameters = desired.parameters.clone();
                node.applied_max_memory = desired.max_memory_bytes;
                node.parameter_status =
                    if *pending_reboot { status::PENDING_REBOOT } else { status::IN_SYNC }.to_string();
            }
            _ => {}
        }
    }
    changed
}

/// Every node runs as desired: a cluster in a passing status is available again.
fn settle(cluster: &mut store::CacheClusterRecord, events: &mut Vec<EventRecord>) {
    let passing = [status::CREATING, status::MODIFYING, status::REBOOTING, status::INCOMPATIBLE_PARAMETERS];
    if passing.contains(&cluster.status.as_str()) {
        if cluster.status == status::CREATING {
            events.push(EventRecord::new(SOURCE_TYPE, &cluster.id, "Cache cluster created"));
        }
        cluster.status = status::AVAILABLE.to_string();
    }
    // A token change has reached every node of this cluster.
    cluster.security.auth_token_status = None;
}

/// An existing node that would not start again: its parameters, as far as the engine is
/// concerned (AWS's incompatible-parameters).
fn incompatible_parameters(cluster: &mut store::CacheClusterRecord, reason: &str) -> EventRecord {
    cluster.status = status::INCOMPATIBLE_PARAMETERS.to_string();
    EventRecord::new(
        SOURCE_TYPE,
        &cluster.id,
        format!(
            "Cache cluster {} cannot start its nodes with the parameters of parameter group {}: {reason}",
            cluster.id, cluster.parameter_group
        ),
    )
}

/// The emulator's own settings of every redis node, after those its group asks for.
pub(crate) fn redis_directives(mut directives: Vec<(String, String)>, major: u32) -> Vec<(String, String)> {
    // Redis waits 5 s by default before syncing a new replica; nothing here needs the wait.
    directives.push(("repl-diskless-sync-delay".to_string(), "0".to_string()));
    // A clean stop (emulator shutdown, reboot) writes the data to the node's directory,
    // and the next start loads it: nodes keep their keys across emulator restarts. `force`:
    // a node still writing its first append-only file (just after it started) would
    // otherwise refuse to stop; the RDB file it saves holds everything.
    if major >= 7 {
        directives.push(("shutdown-on-sigterm".to_string(), "save force".to_string()));
    }
    directives
}

/// Applies changed parameters, and a new node type's memory, to a running node without a
/// restart (which would lose its data, as a scaling on AWS does not).
async fn apply_live(
    r: &Reconciler,
    key: &NodeKey,
    node: &CacheNodeRecord,
    parameters: &[(String, String)],
    max_memory_bytes: u64,
    memcached: bool,
) -> Outcome {
    let changes: Vec<(String, String)> =
        parameters.iter().filter(|p| !node.applied_parameters.contains(p)).cloned().collect();
    let not_live = match r.runtime.apply_parameters(key, &changes).await {
        Ok(not_live) => not_live,
        Err(error) => {
            tracing::warn!(node = %key, %error, "applying parameters failed");
            return Outcome::Failed;
        }
    };
    if node.applied_max_memory != max_memory_bytes {
        let applied = if memcached {
            // Memcached counts its memory in MiB (`-m`), as `nodes::config` starts it.
            let mib = max_memory_bytes.div_ceil(1 << 20).max(1);
            let answer = r.runtime.memcached_command(key, &format!("cache_memlimit {mib}")).await;
            answer.and_then(|line| match line.as_str() {
                "OK" => Ok(()),
                other => Err(nodes::NodeError::Protocol(other.to_string())),
            })
        } else {
            let bytes = max_memory_bytes.to_string();
            r.runtime.command(key, &["CONFIG", "SET", "maxmemory", &bytes]).await.map(drop)
        };
        if let Err(error) = applied {
            tracing::warn!(node = %key, %error, "applying the node's memory failed");
            return Outcome::Failed;
        }
    }
    Outcome::Applied { pending_reboot: !not_live.is_empty() }
}

/// Ends a creation for good: `restore-failed` when the cluster restores a snapshot,
/// `create-failed` otherwise. Returns the event that says why (AWS names the cause, e.g.
/// InsufficientCacheClusterCapacity; the wording here is the emulator's).
fn fail_creation(cluster: &mut store::CacheClusterRecord, reason: &str) -> EventRecord {
    let (to, message) = match &cluster.restore_from {
        Some(snapshot) => (
            status::RESTORE_FAILED,
            format!("Failed to restore cache cluster {} from snapshot {snapshot}: {reason}", cluster.id),
        ),
        None => (status::CREATE_FAILED, format!("Failed to create cache cluster {}: {reason}", cluster.id)),
    };
    cluster.status = to.to_string();
    EventRecord::new(SOURCE_TYPE, &cluster.id, message)
}

/// The events AWS emits when a node (re)starts.
fn started_event(cluster_id: &str, node: &CacheNodeRecord, recovered: bool, events: &mut Vec<EventRecord>) {
    let message = if recovered {
        format!("Finished recovery for cache nodes {}", node.node_id)
    } else if node.status == status::CREATING {
        format!("Added cache node {} in availability zone {}", node.node_id, node.zone)
    } else if node.reboot_requested {
        events.push(EventRecord::new(SOURCE_TYPE, cluster_id, format!("Cache node {} shutdown", node.node_id)));
        format!("Cache node {} restarted", node.node_id)
    } else {
        // Brought back after an emulator restart.
        format!("Cache node {} restarted", node.node_id)
    };
    events.push(EventRecord::new(SOURCE_TYPE, cluster_id, message));
}

async fn delete(r: &Arc<Reconciler>, c: &CacheCluster) -> Result<Option<Duration>, Error> {
    if crate::snapshots::final_snapshot_pending(r, &c.scope, &c.cluster.id).await {
        return Ok(Some(crate::SOON));
    }
    // Their data goes with the directory below: nothing to save first.
    for node in &c.nodes {
        let key = NodeKey::new(scope_key(&c.scope), c.cluster.id.clone(), node.node_id.clone());
        r.runtime.discard(&key).await.map_err(Error::Node)?;
        lock(&r.monitor.observed).remove(&key);
    }
    r.endpoints.memcached.lock().await.remove(&(c.scope.clone(), c.cluster.id.clone()));
    let _ = tokio::fs::remove_dir_all(r.cluster_dir(&c.scope, &c.cluster.id)).await;
    let arn = model::arn::build(&c.scope, model::arn::Kind::Cluster, &c.cluster.id);
    let events = [EventRecord::new(SOURCE_TYPE, &c.cluster.id, "Cache cluster deleted")];
    match r.store.delete_cache_cluster(&c.scope, &c.cluster.id, &arn, &events).await {
        Ok(()) | Err(store::StoreError::NotFound) => {
            tracing::info!(
                cache_cluster = c.cluster.id,
                from = status::DELETING,
                to = "deleted",
                "cache cluster status"
            );
            Ok(Some(Duration::ZERO))
        }
        Err(e) => Err(Error::Store(e)),
    }
}

/// The cluster's Memcached configuration endpoint, started on its recorded port (or a free
/// one the first time).
async fn config_endpoint(r: &Arc<Reconciler>, c: &CacheCluster) -> Result<u16, Error> {
    let key = (c.scope.clone(), c.cluster.id.clone());
    let mut endpoints = r.endpoints.memcached.lock().await;
    if let Some((endpoint, _)) = endpoints.get(&key) {
        return Ok(endpoint.port());
    }
    let (sender, receiver) = tokio::sync::watch::channel(cluster_config(r, c));
    let tls = if c.cluster.security.transit_encryption {
        let ca = r.certificate_authority().map_err(Error::Node)?;
        let (server, client) = (ca.server_config().map_err(Error::Node)?, ca.client_config().map_err(Error::Node)?);
        Some(nodes::discovery::EndpointTls { server, client })
    } else {
        None
    };
    let listen = r.runtime.exposure().listen;
    let endpoint = crate::endpoints::on_recorded_port(c.cluster.config_endpoint_port, |p| {
        ConfigEndpoint::start(listen, p, receiver.clone(), tls.clone())
    })
    .await?;
    let port = endpoint.port();
    endpoints.insert(key, (endpoint, sender));
    Ok(port)
}

/// The nodes auto discovery names: each under the advertised host (its address unless the
/// emulator advertises another), at its port.
fn cluster_config(r: &Reconciler, c: &CacheCluster) -> ClusterConfig {
    let exposure = r.runtime.exposure();
    ClusterConfig {
        version: c.cluster.config_version,
        nodes: c
            .nodes
            .iter()
            .filter(|n| n.port != 0 && !n.remove_requested)
            .map(|n| match exposure.is_advertised() {
                true => (exposure.host.clone(), exposure.ip, n.port),
                false => (n.address.clone(), n.address.parse().ok(), n.port),
            })
            .collect(),
    }
}

async fn publish_config(r: &Arc<Reconciler>, c: &CacheCluster) {
    let endpoints = r.endpoints.memcached.lock().await;
    if let Some((_, sender)) = endpoints.get(&(c.scope.clone(), c.cluster.id.clone())) {
        sender.send_if_modified(|current| {
            let next = cluster_config(r, c);
            let changed = *current != next;
            *current = next;
            changed
        });
    }
}
