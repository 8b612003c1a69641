//! Serverless caches: the cache's two TLS endpoints ([`nodes::ServerlessEndpoint`], writer
//! and reader) in front of its backing replication group, and the cache's status, which
//! follows the group's. The group's own reconcile (cluster mode) does all the node work —
//! starting, failing over, ACLs, snapshots — so this stays small.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use model::names::{serverless_backing, serverless_name};
use model::status::cluster as status;
use nodes::ServerlessEndpoint;
use nodes::serverless::Role;
use store::{EventRecord, ReplicationGroup, Scope, ServerlessCacheRecord, UpdateError};

use crate::endpoints::on_recorded_port;
use crate::error::{Error, stored};
use crate::replication_groups::address;
use crate::{ClusterKey, Reconciler};

/// The `SourceType` of a serverless cache's events.
const SOURCE_TYPE: &str = "serverless-cache";

/// The endpoints of one cache.
pub(crate) struct CacheEndpoints {
    writer: ServerlessEndpoint,
    reader: ServerlessEndpoint,
}

pub(crate) fn key(scope: &Scope, name: &str) -> ClusterKey {
    (scope.clone(), format!("serverless/{name}"))
}

pub async fn reconcile(
    r: &Arc<Reconciler>,
    scope: Scope,
    cache: ServerlessCacheRecord,
) -> Result<Option<Duration>, Error> {
    let group = r.store.replication_group(&scope, &serverless_backing(&cache.name)).await.map_err(Error::Store)?;
    if cache.status == status::DELETING {
        if group.is_some() {
            // The group's own reconcile is deleting it (and taking the final snapshot).
            return Ok(Some(crate::SOON));
        }
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
    let Some(group) = group else {
        return settle(r, &scope, &cache, None, status::CREATE_FAILED).await;
    };
    let ports = point_endpoints(r, &scope, &cache).await?;
    let next = match (cache.status.as_str(), group.group.status.as_str()) {
        (status::CREATING | status::MODIFYING, status::AVAILABLE | status::SNAPSHOTTING) => status::AVAILABLE,
        (status::CREATING, status::CREATE_FAILED | status::RESTORE_FAILED) => status::CREATE_FAILED,
        (current, _) => current,
    };
    settle(r, &scope, &cache, Some(ports), next).await
}

/// Points `endpoints` at the primaries the store names for the backing group `group_id`:
/// they write to no other node. Read while the caller holds the endpoints' lock, so that a
/// reconcile that read the group before a failover cannot point them back at the old
/// primary after the failover pointed them on.
async fn point_at_primaries(
    r: &Reconciler,
    scope: &Scope,
    group_id: &str,
    endpoints: &CacheEndpoints,
) -> Result<(), Error> {
    let group: Option<ReplicationGroup> = r.store.replication_group(scope, group_id).await.map_err(Error::Store)?;
    let primaries: Vec<SocketAddr> = group
        .iter()
        .flat_map(|g| {
            let leads = |id: &str| g.group.node_groups.iter().any(|s| s.primary_cluster_id == id);
            g.members.iter().filter(move |m| leads(&m.cluster.id)).filter_map(address)
        })
        .collect();
    endpoints.writer.point_at(primaries.clone());
    endpoints.reader.point_at(primaries);
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
        Some(endpoints) => point_at_primaries(r, scope, group_id, endpoints).await,
        None => Ok(()),
    }
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
    ports: Option<(u16, u16)>,
    next: &str,
) -> Result<Option<Duration>, Error> {
    let recorded = (cache.endpoint_port, cache.reader_endpoint_port);
    let changed = cache.status != next || ports.is_some_and(|(w, rd)| recorded != (Some(w), Some(rd)));
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
                    (c.endpoint_port, c.reader_endpoint_port) = (Some(writer), Some(reader));
                }
                Ok::<_, ()>(events)
            })
            .await;
        stored(result)?;
    }
    Ok([status::CREATING, status::MODIFYING].contains(&next).then_some(crate::SOON))
}

/// Starts the cache's endpoints (on their recorded ports when they are free) and points
/// them at the backing group's primaries; returns their ports.
async fn point_endpoints(r: &Reconciler, scope: &Scope, cache: &ServerlessCacheRecord) -> Result<(u16, u16), Error> {
    let mut all = r.endpoints.serverless.lock().await;
    let key = key(scope, &cache.name);
    if !all.contains_key(&key) {
        let tls = r.endpoint_tls_config().map_err(Error::Node)?;
        let (user, password) = r.runtime.control_credentials();
        let control = (user.to_string(), password.to_string());
        let start = |port: Option<u16>, role: Role| {
            let (tls, control) = (tls.clone(), control.clone());
            on_recorded_port(port, move |p| {
                ServerlessEndpoint::start(Ipv4Addr::LOCALHOST, p, tls.clone(), role, control.clone())
            })
        };
        let writer = start(cache.endpoint_port, Role::Writer).await?;
        let reader = start(cache.reader_endpoint_port, Role::Reader).await?;
        all.insert(key.clone(), CacheEndpoints { writer, reader });
    }
    let endpoints = all.get(&key).ok_or(Error::Store(store::StoreError::NotFound))?;
    point_at_primaries(r, scope, &serverless_backing(&cache.name), endpoints).await?;
    Ok((endpoints.writer.port(), endpoints.reader.port()))
}
