//! Serverless caches: the cache's TLS endpoints in front of what holds its data, and the
//! cache's status, which follows that backing's. A Valkey or Redis OSS cache has two
//! ([`nodes::ServerlessEndpoint`], writer and reader) in front of a cluster-mode replication
//! group; a Memcached cache has one ([`nodes::MemcachedEndpoint`]) in front of a Memcached
//! cluster whose nodes it keeps as mirrors. The backing's own reconcile does all the node
//! work — starting, failing over, ACLs, snapshots — so this stays small.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use model::names::{serverless_backing, serverless_name};
use model::status::cluster as status;
use nodes::serverless::Role;
use nodes::{EcpuLimit, MemcachedEndpoint, ServerlessEndpoint};
use store::{EventRecord, ReplicationGroup, Scope, ServerlessCacheRecord, UpdateError};

use crate::endpoints::on_recorded_port;
use crate::error::{Error, stored};
use crate::replication_groups::address;
use crate::{ClusterKey, Reconciler};

/// The `SourceType` of a serverless cache's events.
const SOURCE_TYPE: &str = "serverless-cache";

/// The endpoints of one cache, and the ECPU/second maximum they share.
pub(crate) struct CacheEndpoints {
    ecpu: Arc<EcpuLimit>,
    serving: Serving,
}

enum Serving {
    /// Valkey and Redis OSS: the primary endpoint and the reader endpoint.
    Shards { writer: ServerlessEndpoint, reader: ServerlessEndpoint },
    /// Memcached: one endpoint (AWS gives a serverless Memcached cache no reader endpoint).
    Mirrors(MemcachedEndpoint),
}

impl CacheEndpoints {
    /// The ports Describe reports: the endpoint's, and the reader endpoint's if any.
    fn ports(&self) -> (u16, Option<u16>) {
        match &self.serving {
            Serving::Shards { writer, reader } => (writer.port(), Some(reader.port())),
            Serving::Mirrors(endpoint) => (endpoint.port(), None),
        }
    }
}

/// What holds a cache's data, as the store has it now.
enum Backing {
    Group(ReplicationGroup),
    Mirrors(store::CacheCluster),
}

impl Backing {
    async fn of(r: &Reconciler, scope: &Scope, cache: &ServerlessCacheRecord) -> Result<Option<Self>, Error> {
        let id = serverless_backing(&cache.name);
        Ok(match cache.engine.as_str() {
            "memcached" => r.store.cache_cluster(scope, &id).await.map_err(Error::Store)?.map(Self::Mirrors),
            _ => r.store.replication_group(scope, &id).await.map_err(Error::Store)?.map(Self::Group),
        })
    }

    fn status(&self) -> &str {
        match self {
            Self::Group(g) => &g.group.status,
            Self::Mirrors(c) => &c.cluster.status,
        }
    }
}

pub(crate) fn key(scope: &Scope, name: &str) -> ClusterKey {
    (scope.clone(), format!("serverless/{name}"))
}

pub async fn reconcile(
    r: &Arc<Reconciler>,
    scope: Scope,
    cache: ServerlessCacheRecord,
) -> Result<Option<Duration>, Error> {
    let backing = Backing::of(r, &scope, &cache).await?;
    if cache.status == status::DELETING {
        if backing.is_some() {
            // The backing's own reconcile is deleting it (and taking the final snapshot).
            return Ok(Some(crate::SOON));
        }
        crate::serverless_migration::stop(r, &scope, &cache.name).await;
        r.endpoints.serverless.lock().await.remove(&key(&scope, &cache.name));
        let arn = model::arn::build(&scope, model::arn::Kind::ServerlessCache, &cache.name);
        let event = EventRecord::new(SOURCE_TYPE, &cache.name, "Serverless cache deleted");
        let deleted = r
            .store
            .write(async |tx| {
                tx.delete_serverless_cache(&scope, &cache.name, &arn, &[event]).await.map_err(UpdateError::<()>::from)
            })
            .await;
        stored(deleted)?;
        tracing::info!(
            serverless_cache = cache.name,
            from = status::DELETING,
            to = "(none)",
            "serverless cache status"
        );
        return Ok(None);
    }
    let Some(backing) = backing else {
        return settle(r, &scope, &cache, None, status::CREATE_FAILED).await;
    };
    // Endpoints started during a migration serve its source from their first command.
    let route = crate::serverless_migration::route_of(r, &scope, &cache).await;
    let ports = point_endpoints(r, &scope, &cache, &backing, route).await?;
    if let (Some(migration), Backing::Group(group)) = (&cache.migration, &backing)
        && cache.status != status::CREATING
    {
        let outcome = crate::serverless_migration::step(r, &scope, &cache, group, migration).await?;
        let fresh = r.store.serverless_cache(&scope, &cache.name).await.map_err(Error::Store)?;
        let Some(fresh) = fresh.filter(|c| c.status != status::DELETING) else { return Ok(Some(crate::SOON)) };
        let again = settle(r, &scope, &fresh, Some(ports), &outcome.status).await?;
        return Ok(outcome.again.or(again));
    }
    let next = match (cache.status.as_str(), backing.status()) {
        (status::CREATING | status::MODIFYING, status::AVAILABLE | status::SNAPSHOTTING) => status::AVAILABLE,
        (status::CREATING, status::CREATE_FAILED | status::RESTORE_FAILED) => status::CREATE_FAILED,
        (current, _) => current,
    };
    if cache.status == status::CREATING
        && next == status::AVAILABLE
        && let Backing::Mirrors(cluster) = &backing
        && let Some(snapshot) = &cluster.cluster.restore_from
    {
        // Memcached loads no file at start: the mirrors get the snapshot's items now,
        // before the cache is available (again after a crash: loading twice is harmless).
        let loaded = crate::snapshots::load_mirrors(r, &scope, snapshot, &mirrors(r, cluster)).await;
        match loaded {
            Ok(items) => tracing::info!(serverless_cache = cache.name, snapshot, items, "snapshot restored"),
            Err(error) => {
                tracing::warn!(serverless_cache = cache.name, snapshot, %error, "restoring the snapshot failed");
                return settle(r, &scope, &cache, Some(ports), status::CREATE_FAILED).await;
            }
        }
    }
    settle(r, &scope, &cache, Some(ports), next).await
}

/// The mirrors of a serverless Memcached cache that can serve, in the order the endpoint
/// prefers them: node id order, leaving out nodes not started yet and nodes in a zone that
/// is down (they accept connections and never answer).
fn mirrors(r: &Reconciler, cluster: &store::CacheCluster) -> Vec<SocketAddr> {
    cluster
        .nodes
        .iter()
        .filter(|n| n.port != 0 && !r.zone_is_down(&n.zone))
        .filter_map(|n| Some(SocketAddr::from((n.address.parse::<Ipv4Addr>().ok()?, n.port))))
        .collect()
}

/// Points a cache's shard endpoints at the primaries the store names for the backing group
/// `group_id`: they write to no other node. Read while the caller holds the endpoints'
/// lock, so that a reconcile that read the group before a failover cannot point them back
/// at the old primary after the failover pointed them on.
async fn point_at_primaries(
    r: &Reconciler,
    scope: &Scope,
    group_id: &str,
    writer: &ServerlessEndpoint,
    reader: &ServerlessEndpoint,
) -> Result<(), Error> {
    let group: Option<ReplicationGroup> = r.store.replication_group(scope, group_id).await.map_err(Error::Store)?;
    let primaries: Vec<SocketAddr> = group
        .iter()
        .flat_map(|g| {
            let leads = |id: &str| g.group.node_groups.iter().any(|s| s.primary_cluster_id == id);
            g.members.iter().filter(move |m| leads(&m.cluster.id)).filter_map(address)
        })
        .collect();
    writer.point_at(primaries.clone());
    reader.point_at(primaries);
    Ok(())
}

/// Points a serverless cache's endpoints at the primaries the store now names for its
/// backing group `group_id` (nothing for other groups). A failover calls this before the
/// old primary restarts: back on its port, that node believes it still owns its slots until
/// the cluster tells it otherwise, and writes it took meanwhile would be lost.
pub(crate) async fn repoint(r: &Reconciler, scope: &Scope, group_id: &str) -> Result<(), Error> {
    let Some(name) = serverless_name(group_id) else { return Ok(()) };
    let all = r.endpoints.serverless.lock().await;
    match all.get(&key(scope, name)) {
        Some(CacheEndpoints { serving: Serving::Shards { writer, reader }, .. }) => {
            point_at_primaries(r, scope, group_id, writer, reader).await
        }
        _ => Ok(()),
    }
}

/// Sends every command reaching the shard endpoints of the cache `name` to `source` (an
/// online migration's source) or, None, to the cache's own shards.
pub(crate) async fn route(r: &Reconciler, scope: &Scope, name: &str, source: Option<nodes::serverless::Upstream>) {
    let all = r.endpoints.serverless.lock().await;
    if let Some(CacheEndpoints { serving: Serving::Shards { writer, reader }, .. }) = all.get(&key(scope, name)) {
        writer.route_to(source.clone());
        reader.route_to(source);
    }
}

/// Holds new commands on both shard endpoints of the cache `name` once the ones under
/// way are answered (within `within`), until the holds are dropped; None if they could
/// not be held (nothing is held then).
pub(crate) async fn hold(
    r: &Reconciler,
    scope: &Scope,
    name: &str,
    within: Duration,
) -> Option<Vec<nodes::serverless::Hold>> {
    let all = r.endpoints.serverless.lock().await;
    let Some(CacheEndpoints { serving: Serving::Shards { writer, reader }, .. }) = all.get(&key(scope, name)) else {
        return None;
    };
    let writer = writer.hold(within).await?;
    let reader = reader.hold(within).await?;
    Some(vec![writer, reader])
}

/// How much data the serverless cache `name` holds behind its endpoint: its shard count and
/// the sum of its primaries' data (`used_memory` less `used_memory_overhead`). None while
/// its backing group is not available (resharding, failing over) or a primary does not
/// answer: no scaling then.
pub(crate) async fn data_size(
    r: &Reconciler,
    scope: &Scope,
    name: &str,
) -> Result<Option<(usize, u64)>, store::StoreError> {
    let Some(group) = r.store.replication_group(scope, &serverless_backing(name)).await? else {
        return Ok(None);
    };
    if group.group.status != status::AVAILABLE {
        return Ok(None);
    }
    let mut total = 0;
    for shard in &group.group.node_groups {
        let primary = group.members.iter().find(|m| m.cluster.id == shard.primary_cluster_id);
        let Some(key) = primary.and_then(|m| crate::replication_groups::node_key(scope, m)) else { return Ok(None) };
        let Ok(reply) = r.runtime.command(&key, &["INFO", "memory"]).await else { return Ok(None) };
        let text = reply.as_text().unwrap_or_default();
        let field = |name: &str| nodes::resp::info_field(&text, name)?.parse::<u64>().ok();
        // What used_memory_dataset means, computed here: valkey 8 reports it wrapped below
        // zero while the data is smaller than the overhead (a replication backlog, say).
        let (Some(used), Some(overhead)) = (field("used_memory"), field("used_memory_overhead")) else {
            return Ok(None);
        };
        total += used.saturating_sub(overhead);
    }
    Ok(Some((group.group.node_groups.len(), total)))
}

/// Records the endpoints' ports and the next status; answers when to look again.
async fn settle(
    r: &Reconciler,
    scope: &Scope,
    cache: &ServerlessCacheRecord,
    ports: Option<(u16, Option<u16>)>,
    next: &str,
) -> Result<Option<Duration>, Error> {
    let recorded = (cache.endpoint_port, cache.reader_endpoint_port);
    let changed = cache.status != next || ports.is_some_and(|(w, rd)| recorded != (Some(w), rd));
    if changed {
        let result = r
            .store
            .update_serverless_cache(scope, &cache.name, |c| {
                let mut events = Vec::new();
                if c.status != next {
                    tracing::info!(serverless_cache = c.name, from = c.status, to = next, "serverless cache status");
                    if c.status == status::CREATING && next == status::AVAILABLE {
                        events.push(EventRecord::new(SOURCE_TYPE, &c.name, "Serverless cache created"));
                    }
                    c.status = next.to_string();
                }
                if let Some((writer, reader)) = ports {
                    (c.endpoint_port, c.reader_endpoint_port) = (Some(writer), reader);
                }
                Ok::<_, ()>(events)
            })
            .await;
        stored(result)?;
    }
    Ok([status::CREATING, status::MODIFYING].contains(&next).then_some(crate::SOON))
}

/// Starts the cache's endpoints (on their recorded ports when they are free; sending
/// commands to `route`, a migration's source, if given) and points them at the nodes that
/// serve; returns their ports.
async fn point_endpoints(
    r: &Reconciler,
    scope: &Scope,
    cache: &ServerlessCacheRecord,
    backing: &Backing,
    route: Option<nodes::serverless::Upstream>,
) -> Result<(u16, Option<u16>), Error> {
    let mut all = r.endpoints.serverless.lock().await;
    let key = key(scope, &cache.name);
    if !all.contains_key(&key) {
        let endpoints = start_endpoints(r, cache, backing).await?;
        if let Serving::Shards { writer, reader } = &endpoints.serving {
            writer.route_to(route.clone());
            reader.route_to(route);
        }
        all.insert(key.clone(), endpoints);
    }
    let endpoints = all.get(&key).ok_or(Error::Store(store::StoreError::NotFound))?;
    endpoints.ecpu.set(cache.ecpu_per_second.and_then(|e| e.maximum).and_then(|m| u64::try_from(m).ok()));
    match (&endpoints.serving, backing) {
        (Serving::Shards { writer, reader }, _) => {
            point_at_primaries(r, scope, &serverless_backing(&cache.name), writer, reader).await?;
        }
        (Serving::Mirrors(endpoint), Backing::Mirrors(cluster)) => endpoint.point_at(mirrors(r, cluster)),
        (Serving::Mirrors(_), Backing::Group(_)) => {}
    }
    Ok(endpoints.ports())
}

async fn start_endpoints(
    r: &Reconciler,
    cache: &ServerlessCacheRecord,
    backing: &Backing,
) -> Result<CacheEndpoints, Error> {
    let tls = r.endpoint_tls_config().map_err(Error::Node)?;
    let ecpu = Arc::new(EcpuLimit::default());
    let listen = r.runtime.exposure().listen;
    let advertised = r.runtime.exposure().is_advertised().then(|| r.runtime.exposure().host.clone());
    if let Backing::Mirrors(_) = backing {
        let start = |p| MemcachedEndpoint::start(listen, p, tls.clone(), ecpu.clone());
        let endpoint = on_recorded_port(cache.endpoint_port, start).await?;
        return Ok(CacheEndpoints { ecpu, serving: Serving::Mirrors(endpoint) });
    }
    let (user, password) = r.runtime.control_credentials();
    let control = (user.to_string(), password.to_string());
    let start = |port: Option<u16>, role: Role| {
        let (tls, control, ecpu, advertised) = (tls.clone(), control.clone(), ecpu.clone(), advertised.clone());
        on_recorded_port(port, move |p| {
            ServerlessEndpoint::start(listen, advertised.clone(), p, tls.clone(), role, control.clone(), ecpu.clone())
        })
    };
    let writer = start(cache.endpoint_port, Role::Writer).await?;
    let reader = start(cache.reader_endpoint_port, Role::Reader).await?;
    Ok(CacheEndpoints { ecpu, serving: Serving::Shards { writer, reader } })
}
