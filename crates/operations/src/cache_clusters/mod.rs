//! Cache clusters: the API half. Handlers validate like AWS, write the desired state (and
//! its events) in one transaction, answer at once, and wake the reconciler, which starts,
//! changes and stops the real nodes and writes back what it observes.

use std::sync::Arc;

use aws_smithy_types::DateTime;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    CacheCluster as StoredCluster, CacheClusterRecord, CacheNodeRecord, EventRecord, Scope, Start, UpdateError,
};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::page_size;
use crate::{NodeCapacity, Operations, Write, internal, refuse, written};

pub(crate) mod create;
mod modify;
pub use create::create;
pub use modify::modify;

/// AWS's default quotas.
const CLUSTER_QUOTA: usize = 300;
const NODES_PER_REGION: usize = 300;
const MEMCACHED_NODES_PER_CLUSTER: u32 = 40;
const MAX_ID_LEN: usize = 50;
pub(crate) const DEFAULT_MAINTENANCE_WINDOW: &str = "sun:05:00-sun:06:00";
pub(crate) const DEFAULT_SNAPSHOT_WINDOW: &str = "05:00-06:00";
pub use model::status::cluster as status;

fn is_memcached(engine: &str) -> bool {
    engine == "memcached"
}

fn default_port(engine: &str) -> u16 {
    if is_memcached(engine) { 11211 } else { 6379 }
}

fn not_found(id: &str) -> ApiError {
    Kind::Cluster.not_found(id)
}

fn invalid_state(id: &str, status: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCacheClusterStateFault,
        format!("Cache cluster {id} is not in available state (current state: {status})."),
    )
}

/// Refuses `adding` nodes past AWS's per-region node quota, or past what this machine can
/// hold in all regions together (checked inside the write that adds them, so concurrent
/// creates cannot overshoot either together).
pub(crate) async fn within_node_quota(
    tx: &mut store::Tx,
    scope: &Scope,
    adding: usize,
    machine: &NodeCapacity,
) -> Write<()> {
    let existing = tx.count_cache_nodes(scope).await?;
    if existing + adding > NODES_PER_REGION {
        return refuse(ApiError::new(
            ErrorCode::NodeQuotaForCustomerExceededFault,
            format!("The request would exceed the quota of {NODES_PER_REGION} cache nodes in this region."),
        ));
    }
    let on_machine = tx.count_all_cache_nodes().await?;
    if on_machine + adding > machine.nodes {
        return refuse(ApiError::new(
            ErrorCode::NodeQuotaForCustomerExceededFault,
            format!(
                "The request would exceed the {} cache nodes this machine can hold ({} of them run; the bound is {}).",
                machine.nodes, on_machine, machine.bound_by
            ),
        ));
    }
    Ok(())
}

/// Refuses a change written in `tx` past the quotas of [`within_node_quota`] when it added
/// nodes or left some to add in the maintenance window (both counted already: the window
/// adds them without asking again, and AWS checks a quota on the request). A change that
/// adds none always passes, even where a lowered `--max-nodes` is exceeded already.
pub(crate) async fn grown_within_quota(
    tx: &mut store::Tx,
    scope: &Scope,
    grows: bool,
    machine: &NodeCapacity,
) -> Write<()> {
    if !grows {
        return Ok(());
    }
    within_node_quota(tx, scope, 0, machine).await
}

/// The nodes a change waiting for the maintenance window will add to the cluster.
fn pending_nodes(cluster: &CacheClusterRecord, nodes: &[CacheNodeRecord]) -> usize {
    cluster.pending.num_nodes.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX).saturating_sub(nodes.len()))
}

/// A cluster, and its nodes, going `deleting`; AWS refuses to delete a cluster in the
/// middle of creating or changing it.
fn mark_deleting(
    cluster: &mut CacheClusterRecord,
    nodes: &mut [CacheNodeRecord],
) -> Result<Vec<store::EventRecord>, ApiError> {
    if !status::DELETABLE.contains(&cluster.status.as_str()) {
        return Err(invalid_state(&cluster.id, &cluster.status));
    }
    let from = std::mem::replace(&mut cluster.status, status::DELETING.to_string());
    tracing::info!(cache_cluster = cluster.id, from, to = status::DELETING, "cache cluster status");
    for node in nodes.iter_mut() {
        node.status = status::DELETING.to_string();
    }
    Ok(Vec::new())
}

/// The Describe form of a cluster.
pub fn output(c: &StoredCluster, show_nodes: bool, host: &str) -> CacheCluster {
    let cluster = &c.cluster;
    let memcached = is_memcached(&cluster.engine);
    let visible: Vec<&CacheNodeRecord> = c.nodes.iter().collect();
    let zones: Vec<&str> = visible.iter().map(|n| n.zone.as_str()).collect();
    let preferred_zone = match zones.first() {
        Some(first) if zones.iter().all(|z| z == first) => Some(first.to_string()),
        Some(_) => Some("Multiple".to_string()),
        None => None,
    };
    let to_reboot: Vec<String> =
        c.nodes.iter().filter(|n| n.parameter_status == status::PENDING_REBOOT).map(|n| n.node_id.clone()).collect();
    let parameter_status = if !to_reboot.is_empty() {
        status::PENDING_REBOOT
    } else if c.nodes.iter().any(|n| n.parameter_status == status::APPLYING) {
        status::APPLYING
    } else {
        status::IN_SYNC
    };
    let pending = &cluster.pending;
    CacheCluster {
        arn: Some(arn::build(&c.scope, Kind::Cluster, &cluster.id)),
        at_rest_encryption_enabled: Some(cluster.at_rest_encryption),
        auth_token_enabled: Some(!cluster.security.auth_tokens.is_empty()),
        auth_token_last_modified_date: cluster.security.auth_token_last_modified_millis.map(DateTime::from_millis),
        auto_minor_version_upgrade: Some(cluster.auto_minor_version_upgrade),
        cache_cluster_create_time: Some(DateTime::from_millis(cluster.created_millis)),
        cache_cluster_id: Some(cluster.id.clone()),
        cache_cluster_status: Some(cluster.status.clone()),
        cache_node_type: Some(cluster.node_type.clone()),
        cache_nodes: show_nodes.then(|| visible.iter().map(|n| node_output(n, host)).collect()),
        cache_parameter_group: Some(CacheParameterGroupStatus {
            cache_node_ids_to_reboot: Some(to_reboot),
            cache_parameter_group_name: Some(cluster.parameter_group.clone()),
            parameter_apply_status: Some(parameter_status.to_string()),
        }),
        cache_security_groups: Some(
            cluster
                .cache_security_groups
                .iter()
                .map(|name| CacheSecurityGroupMembership {
                    cache_security_group_name: Some(name.clone()),
                    status: Some("active".to_string()),
                })
                .collect(),
        ),
        cache_subnet_group_name: Some(cluster.subnet_group.clone()),
        client_download_landing_page: Some(
            "https://console.aws.amazon.com/elasticache/home#client-download:".to_string(),
        ),
        configuration_endpoint: if memcached {
            cluster
                .config_endpoint_port
                .map(|port| Endpoint { address: Some(host.to_string()), port: Some(i32::from(port)) })
        } else {
            None
        },
        engine: Some(cluster.engine.clone()),
        // AWS's version for what was asked, never the local binary's (see /_emulator/nodes).
        engine_version: Some(cluster.engine_version.clone()),
        ip_discovery: IpDiscovery::from_wire(&cluster.ip_discovery),
        log_delivery_configurations: Some(Vec::new()),
        network_type: NetworkType::from_wire(&cluster.network_type),
        notification_configuration: cluster.notification_topic_arn.as_ref().map(|arn| NotificationConfiguration {
            topic_arn: Some(arn.clone()),
            topic_status: Some("active".to_string()),
        }),
        num_cache_nodes: Some(cluster.num_nodes as i32),
        pending_modified_values: Some(PendingModifiedValues {
            auth_token_status: crate::transit::status_output(&cluster.security),
            cache_node_ids_to_remove: (!pending.node_ids_to_remove.is_empty())
                .then(|| pending.node_ids_to_remove.clone()),
            cache_node_type: pending.node_type.clone(),
            engine_version: pending.engine_version.clone(),
            log_delivery_configurations: None,
            num_cache_nodes: pending.num_nodes.map(|n| n as i32),
            scale_config: None,
            transit_encryption_enabled: None,
            transit_encryption_mode: None,
        }),
        preferred_availability_zone: preferred_zone,
        preferred_maintenance_window: Some(cluster.maintenance_window.clone()),
        preferred_outpost_arn: cluster.preferred_outpost_arn.clone(),
        replication_group_id: cluster.replication_group_id.clone(),
        replication_group_log_delivery_enabled: Some(false),
        security_groups: Some(
            cluster
                .security_group_ids
                .iter()
                .map(|id| SecurityGroupMembership {
                    security_group_id: Some(id.clone()),
                    status: Some("active".to_string()),
                })
                .collect(),
        ),
        snapshot_retention_limit: (!memcached).then_some(cluster.snapshot_retention_limit),
        snapshot_window: cluster.snapshot_window.clone(),
        transit_encryption_enabled: Some(cluster.security.transit_encryption),
        transit_encryption_mode: crate::transit::mode_output(&cluster.security),
    }
}

/// A node's endpoint as clients are told of it: on `host`, at the node's port.
pub(crate) fn node_endpoint(node: &CacheNodeRecord, host: &str) -> Endpoint {
    Endpoint { address: Some(host.to_string()), port: Some(i32::from(node.port)) }
}

fn node_output(node: &CacheNodeRecord, host: &str) -> CacheNode {
    CacheNode {
        cache_node_create_time: Some(DateTime::from_millis(node.created_millis)),
        cache_node_id: Some(node.node_id.clone()),
        cache_node_status: Some(node.status.clone()),
        customer_availability_zone: Some(node.zone.clone()),
        customer_outpost_arn: None,
        endpoint: (node.port != 0).then(|| node_endpoint(node, host)),
        parameter_group_status: Some(node.parameter_status.clone()),
        source_cache_node_id: None,
    }
}

pub(crate) async fn existing(ops: &Operations, scope: &Scope, id: &str) -> Result<StoredCluster, ApiError> {
    ops.store.cache_cluster(scope, &id.to_ascii_lowercase()).await.map_err(internal)?.ok_or_else(|| not_found(id))
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeCacheClustersMessage,
) -> Result<CacheClusterMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let size = page_size(input.max_records)?;
    let standalone_only = input.show_cache_clusters_not_in_replication_groups.unwrap_or(false);
    // Read as shared pages (the store keeps them until its next write): what one call reads
    // is what it answers, never every cluster of the region.
    let mut read: Vec<Arc<Vec<StoredCluster>>> = Vec::new();
    match &input.cache_cluster_id {
        Some(id) => {
            let one = ops.store.cache_cluster_shared(&scope, &id.to_ascii_lowercase()).await.map_err(internal)?;
            if one.is_empty() {
                return Err(not_found(id));
            }
            read.push(one);
        }
        None => {
            // One more than a page tells where the next one starts; a serverless cache's
            // backing clusters in the way are skipped by reading on.
            let mut last: Option<String> = None;
            let mut shown = 0;
            loop {
                let start = match (&last, input.marker.as_deref()) {
                    (Some(last), _) => Start::After(last),
                    (None, Some(marker)) => Start::At(marker),
                    (None, None) => Start::First,
                };
                let wanted = size + 1 - shown;
                let batch =
                    ops.store.cache_clusters_page(&scope, start, wanted, standalone_only).await.map_err(internal)?;
                shown += batch.iter().filter(|c| !model::names::is_serverless_backing(&c.cluster.id)).count();
                let done = batch.len() < wanted || shown > size;
                last = batch.last().map(|c| c.cluster.id.clone());
                read.push(batch);
                if done {
                    break;
                }
            }
        }
    }
    // A serverless cache's nodes are its own business.
    let mut visible = read.iter().flat_map(|batch| batch.iter()).filter(|c| {
        !model::names::is_serverless_backing(&c.cluster.id)
            && (!standalone_only || c.cluster.replication_group_id.is_none())
            && input.marker.as_deref().is_none_or(|marker| c.cluster.id.as_str() >= marker)
    });
    let show_nodes = input.show_cache_node_info.unwrap_or(false);
    let host = ops.endpoint_host();
    let cache_clusters = visible.by_ref().take(size).map(|c| output(c, show_nodes, host)).collect();
    Ok(CacheClusterMessage {
        cache_clusters: Some(cache_clusters),
        marker: visible.next().map(|c| c.cluster.id.clone()),
    })
}

/// Runs `change` on an available cluster in one transaction; `InvalidCacheClusterState`
/// otherwise.
async fn change_available(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    change: impl FnOnce(&mut CacheClusterRecord, &mut Vec<CacheNodeRecord>) -> Result<Vec<EventRecord>, ApiError>,
) -> Result<StoredCluster, ApiError> {
    let id = id.to_ascii_lowercase();
    let updated = written(
        ops.store
            .write(async |tx| {
                let mut grows = false;
                let changed = tx.update_cache_cluster(scope, &id, |cluster, nodes| {
                    if cluster.status != status::AVAILABLE {
                        return Err(invalid_state(&cluster.id, &cluster.status));
                    }
                    let before = (nodes.len(), pending_nodes(cluster, nodes));
                    let events = change(cluster, nodes)?;
                    grows = nodes.len() > before.0 || pending_nodes(cluster, nodes) > before.1;
                    Ok(events)
                });
                let Some(updated) = changed.await? else { return refuse(not_found(&id)) };
                // A parameter group deleted since the change was checked is not taken.
                let c = &updated.cluster;
                crate::groups_still_there(tx, scope, &c.parameter_group, &c.subnet_group).await?;
                grown_within_quota(tx, scope, grows, ops.node_capacity()).await?;
                Ok(updated)
            })
            .await,
    )?;
    Ok(updated)
}

/// A new node type: the reconciler gives running nodes its memory without a restart. (An
/// engine version change needs nothing of the nodes: this machine has one binary per
/// engine, so the version that runs cannot change.)
pub fn set_node_type(cluster: &mut CacheClusterRecord, nodes: &mut [CacheNodeRecord], node_type: &str) {
    cluster.node_type = node_type.to_string();
    nodes.iter_mut().for_each(|n| n.parameter_status = status::APPLYING.to_string());
}

/// Grows or shrinks the node list to `target` nodes: new nodes get the next ids, removed
/// nodes are marked for the reconciler to stop.
pub fn resize(
    cluster: &mut CacheClusterRecord,
    nodes: &mut Vec<CacheNodeRecord>,
    target: u32,
    to_remove: &[String],
    requested_zones: &[String],
    zones: &[String],
) {
    for node in nodes.iter_mut().filter(|n| to_remove.contains(&n.node_id)) {
        node.remove_requested = true;
        node.status = status::DELETING.to_string();
    }
    let live = nodes.iter().filter(|n| !n.remove_requested).count();
    if (target as usize) > live {
        let next = nodes.iter().filter_map(|n| n.node_id.parse::<usize>().ok()).max().unwrap_or(0) + 1;
        let placed: Vec<CacheNodeRecord> = nodes.iter().filter(|n| !n.remove_requested).cloned().collect();
        let new_zones =
            crate::placement::place(target as usize - live, requested_zones, &cluster.az_mode, zones, &placed);
        for (i, zone) in new_zones.into_iter().enumerate() {
            nodes.push(crate::placement::new_node(next + i, zone));
        }
    }
    cluster.num_nodes = target;
}

pub async fn reboot(
    ops: &Operations,
    ctx: &RequestContext,
    input: RebootCacheClusterMessage,
) -> Result<RebootCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    if input.cache_node_ids_to_reboot.is_empty() {
        return Err(ApiError::invalid_parameter_value("CacheNodeIdsToReboot must list at least one cache node."));
    }
    let updated = change_available(ops, &scope, &input.cache_cluster_id, |cluster, nodes| {
        for node_id in &input.cache_node_ids_to_reboot {
            let node = nodes
                .iter_mut()
                .find(|n| &n.node_id == node_id)
                .ok_or_else(|| ApiError::invalid_parameter_value(format!("Cache node {node_id} does not exist.")))?;
            node.reboot_requested = true;
            node.status = status::NODE_REBOOTING.to_string();
        }
        cluster.status = status::REBOOTING.to_string();
        Ok(Vec::new())
    })
    .await?;
    tracing::info!(cache_cluster = updated.cluster.id, "cache cluster: available -> rebooting cache cluster nodes");
    Ok(RebootCacheClusterResult { cache_cluster: Some(output(&updated, false, ops.endpoint_host())) })
}

/// Why DeleteCacheCluster refuses a replication group's member, in AWS's words where they
/// are on record (the Terraform provider decides whether to retry by them).
fn member_not_deletable(cluster: &CacheClusterRecord, group: Option<&store::ReplicationGroup>) -> ApiError {
    let Some(stored) = group else { return Kind::ReplicationGroup.not_found(&cluster.id) };
    let group = &stored.group;
    let members = stored.members.iter().filter(|m| m.cluster.status != status::DELETING).count();
    let is_primary = if group.cluster_enabled() {
        group.node_group_led_by(&cluster.id).is_some()
    } else {
        group.primary_cluster_id == cluster.id
    };
    let shard_mates = stored.members.iter().filter(|m| m.cluster.node_group_id == cluster.node_group_id).count();
    if members <= 1 {
        crate::messages::only_member()
    } else if is_primary {
        crate::messages::serving_as_primary(&cluster.id, &group.id)
    } else if group.automatic_failover && shard_mates <= 2 {
        crate::messages::only_read_replica(&group.id)
    } else {
        // AWS deletes such a replica; the emulator removes replicas through
        // DecreaseReplicaCount only.
        ApiError::new(
            ErrorCode::InvalidCacheClusterStateFault,
            format!(
                "Cache cluster {} is a replica in replication group {}: remove it with DecreaseReplicaCount.",
                cluster.id, group.id
            ),
        )
    }
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteCacheClusterMessage,
) -> Result<DeleteCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let current = existing(ops, &scope, &input.cache_cluster_id).await?;
    if let Some(group) = &current.cluster.replication_group_id {
        let group = ops.store.replication_group(&scope, group).await.map_err(internal)?;
        return Err(member_not_deletable(&current.cluster, group.as_ref()));
    }
    if input.final_snapshot_identifier.is_some() && is_memcached(&current.cluster.engine) {
        return Err(ApiError::invalid_parameter_combination(
            "FinalSnapshotIdentifier is not supported for Memcached clusters.",
        ));
    }
    let deletable = status::DELETABLE.contains(&current.cluster.status.as_str());
    // A final snapshot needs nodes that serve.
    if !deletable || (input.final_snapshot_identifier.is_some() && current.cluster.status != status::AVAILABLE) {
        return Err(invalid_state(&current.cluster.id, &current.cluster.status));
    }
    // The final snapshot is taken before the nodes go: the reconciler deletes the cluster
    // once it is written.
    let final_snapshot = match &input.final_snapshot_identifier {
        Some(name) => Some(
            crate::snapshots::plan(
                ops,
                &scope,
                name,
                Some(&current.cluster.id),
                None,
                crate::snapshots::Taken::Final,
                None,
            )
            .await?,
        ),
        None => None,
    };
    // One write: refused, nothing changes (the final snapshot included); its automated
    // snapshots go with it.
    let id = &current.cluster.id;
    let updated =
        written(ops.store.write(async |tx| mark_deleted(tx, &scope, id, final_snapshot.as_ref()).await).await)?;
    Ok(DeleteCacheClusterResult { cache_cluster: Some(output(&updated, false, ops.endpoint_host())) })
}

/// Inside a write: records the final snapshot (taken before the nodes go: the reconciler
/// deletes the cluster once it is written), marks the cluster `deleting` and removes its
/// automated snapshots, which go with it.
pub(crate) async fn mark_deleted(
    tx: &mut store::Tx,
    scope: &Scope,
    id: &str,
    final_snapshot: Option<&store::SnapshotRecord>,
) -> crate::Write<StoredCluster> {
    if let Some(snapshot) = final_snapshot {
        crate::snapshots::record(tx, scope, snapshot, &[]).await?;
    }
    let Some(updated) = tx.update_cache_cluster(scope, id, |c, n| mark_deleting(c, n)).await? else {
        return refuse(not_found(id));
    };
    crate::snapshots::prune(tx, scope, |s| s.cache_cluster_id.as_deref() == Some(id), 0).await?;
    Ok(updated)
}

/// Applies the changes waiting for the maintenance window of every cluster of the scope.
pub async fn apply_pending(ops: &Operations, scope: &Scope) -> Result<usize, ApiError> {
    let mut applied = 0;
    for c in ops.store.cache_clusters(scope).await.map_err(internal)? {
        if c.cluster.pending.is_empty() || c.cluster.status != status::AVAILABLE {
            continue;
        }
        let zones = ops.subnet_group_zones(scope, &c.cluster.subnet_group).await?;
        let result = ops
            .store
            .update_cache_cluster(scope, &c.cluster.id, |cluster, nodes| {
                // Checked again under the lock: the cluster may have changed since.
                if cluster.pending.is_empty() || cluster.status != status::AVAILABLE {
                    return Err(());
                }
                let pending = std::mem::take(&mut cluster.pending);
                if let Some(num) = pending.num_nodes {
                    resize(cluster, nodes, num, &pending.node_ids_to_remove, &[], &zones);
                }
                if let Some(node_type) = pending.node_type {
                    set_node_type(cluster, nodes, &node_type);
                }
                if let Some(version) = pending.engine_version {
                    cluster.engine_version = version;
                }
                cluster.status = status::MODIFYING.to_string();
                Ok(Vec::new())
            })
            .await;
        match result {
            Ok(Some(_)) => applied += 1,
            Ok(None) | Err(UpdateError::Rejected(())) => {}
            Err(UpdateError::Store(e)) => return Err(internal(e)),
        }
    }
    Ok(applied)
}

pub async fn allowed_node_type_modifications(
    ops: &Operations,
    ctx: &RequestContext,
    input: ListAllowedNodeTypeModificationsMessage,
) -> Result<AllowedNodeTypeModificationsMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let cluster = match (&input.cache_cluster_id, &input.replication_group_id) {
        (Some(id), _) => existing(ops, &scope, id).await?,
        (None, Some(group)) => {
            let group = ops
                .store
                .replication_group(&scope, &group.to_ascii_lowercase())
                .await
                .map_err(internal)?
                .ok_or_else(|| Kind::ReplicationGroup.not_found(group))?;
            group.members.into_iter().next().ok_or_else(|| ApiError::internal("replication group without members"))?
        }
        (None, None) => {
            return Err(ApiError::invalid_parameter_combination(
                "Either CacheClusterId or ReplicationGroupId must be provided.",
            ));
        }
    };
    if is_memcached(&cluster.cluster.engine) {
        return Err(ApiError::invalid_parameter_combination("Memcached clusters cannot change their node type."));
    }
    let memory = |name: &str| ops.catalog.node_type(name).and_then(|t| t.redis_maxmemory_bytes).unwrap_or(0);
    let current = memory(&cluster.cluster.node_type);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for (name, node_type) in ops.catalog.node_types() {
        let Some(bytes) = node_type.redis_maxmemory_bytes else { continue };
        if name == &cluster.cluster.node_type {
            continue;
        }
        if bytes > current { up.push(name.clone()) } else { down.push(name.clone()) }
    }
    Ok(AllowedNodeTypeModificationsMessage { scale_down_modifications: Some(down), scale_up_modifications: Some(up) })
}
