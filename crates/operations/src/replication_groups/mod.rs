//! Replication groups with cluster mode disabled: one shard, a primary and up to five
//! replicas, each member an ordinary cache cluster (`<group>-001`, …) that names the group.
//! As for clusters, handlers write desired state and the reconciler does the rest:
//! replication links, the emulator-served primary and reader endpoints, and failover.
//!
//! CreateReplicationGroup's steps are in `create`, ModifyReplicationGroup's in `modify`;
//! cluster mode's shards in the crate's `shards`.

use std::collections::HashSet;

use aws_smithy_types::DateTime;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    CacheCluster as StoredCluster, CacheClusterRecord, EventRecord, PendingChanges, ReplicationGroup as StoredGroup,
    ReplicationGroupRecord, Scope, SnapshotRecord, now_millis,
};

use crate::arn::{self, Kind, NotFound as _};
use crate::cache_clusters::status;
use crate::pagination::paginate;
use crate::{Operations, Write, internal, refuse, written};

pub(crate) mod create;
pub(crate) mod modify;
pub use create::create;
pub use modify::modify;

const MAX_ID_LEN: usize = 40;
const QUOTA: usize = 300;
pub(crate) const MAX_REPLICAS: i32 = 5;
pub use model::names::NODE_GROUP_ID;
pub use model::status::source::REPLICATION_GROUP as SOURCE_TYPE;
/// TestFailover may run at most this often per day.
const TEST_FAILOVERS_PER_DAY: usize = 15;

pub(crate) fn not_found(id: &str) -> ApiError {
    Kind::ReplicationGroup.not_found(id)
}

pub(crate) fn invalid_state(id: &str, status: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidReplicationGroupStateFault,
        format!("Replication group {id} is not in available state (current state: {status})."),
    )
}

/// The next `count` member ids of `group`, `<group>-001` upward, skipping the group's own
/// `members` (an adopted primary may already hold one).
fn next_member_ids(group: &str, count: usize, members: &HashSet<String>) -> Vec<String> {
    (1..).map(|i| model::names::member_id(group, i)).filter(|id| !members.contains(id)).take(count).collect()
}

/// Every cluster id of the scope.
async fn cluster_ids(ops: &Operations, scope: &Scope) -> Result<HashSet<String>, ApiError> {
    Ok(ops.store.cache_cluster_ids(scope).await.map_err(internal)?.into_iter().collect())
}

/// A new member cluster of `group`, one node, modelled on the group's settings.
pub(crate) fn member(template: &CacheClusterRecord, id: String, group: &str, zone: String) -> StoredClusterParts {
    let mut cluster = template.clone();
    cluster.id = id;
    cluster.status = status::CREATING.to_string();
    cluster.num_nodes = 1;
    cluster.preferred_zones = vec![zone.clone()];
    cluster.replication_group_id = Some(group.to_string());
    cluster.created_millis = now_millis();
    cluster.pending = PendingChanges::default();
    (cluster, vec![crate::placement::new_node(1, zone)])
}

pub(crate) type StoredClusterParts = (CacheClusterRecord, Vec<store::CacheNodeRecord>);

/// Zones for `count` new members: requested ones, else spread so that members (the primary
/// first) land in different zones where possible.
fn member_zones(count: usize, requested: &[String], zones: &[String], existing: &[StoredCluster]) -> Vec<String> {
    let placed: Vec<store::CacheNodeRecord> = existing.iter().flat_map(|c| c.nodes.clone()).collect();
    crate::placement::place(count, requested, "cross-az", zones, &placed)
}

/// An endpoint the emulator serves on `port`, as clients are told of it: on `host`.
pub(crate) fn endpoint(host: &str, port: Option<u16>) -> Option<Endpoint> {
    port.map(|p| Endpoint { address: Some(host.to_string()), port: Some(i32::from(p)) })
}

/// One member of a node group: its role, zone, and (cluster mode disabled) its own endpoint.
pub(crate) fn member_output(m: &StoredCluster, primary: bool, with_endpoint: bool, host: &str) -> NodeGroupMember {
    let node = m.nodes.first();
    NodeGroupMember {
        cache_cluster_id: Some(m.cluster.id.clone()),
        cache_node_id: node.map(|n| n.node_id.clone()),
        current_role: Some(if primary { "primary" } else { "replica" }.to_string()),
        preferred_availability_zone: node.map(|n| n.zone.clone()),
        preferred_outpost_arn: None,
        read_endpoint: node
            .filter(|n| with_endpoint && n.port != 0)
            .map(|n| crate::cache_clusters::node_endpoint(n, host)),
    }
}

/// The Describe form of a group, its endpoints on `host`.
pub fn output(g: &StoredGroup, host: &str) -> ReplicationGroup {
    let group = &g.group;
    // The primary first: clients (Terraform among them) take the first member as primary.
    let mut members: Vec<&StoredCluster> = g.members.iter().filter(|m| m.cluster.status != status::DELETING).collect();
    members.sort_by_key(|m| (m.cluster.id != group.primary_cluster_id, m.cluster.id.clone()));
    let node_group_members =
        members.iter().map(|m| member_output(m, m.cluster.id == group.primary_cluster_id, true, host)).collect();
    let snapshotting = (group.snapshot_retention_limit > 0)
        .then(|| members.iter().next_back().map(|m| m.cluster.id.clone()))
        .flatten();
    ReplicationGroup {
        arn: Some(arn::build(&g.scope, Kind::ReplicationGroup, &group.id)),
        at_rest_encryption_enabled: Some(group.at_rest_encryption),
        auth_token_enabled: Some(!group.security.auth_tokens.is_empty()),
        auth_token_last_modified_date: group.security.auth_token_last_modified_millis.map(DateTime::from_millis),
        auto_minor_version_upgrade: g.members.first().map(|m| m.cluster.auto_minor_version_upgrade),
        automatic_failover: Some(if group.automatic_failover {
            AutomaticFailoverStatus::Enabled
        } else {
            AutomaticFailoverStatus::Disabled
        }),
        cache_node_type: Some(members.first().map_or_else(|| group.node_type.clone(), |m| m.cluster.node_type.clone())),
        cluster_enabled: Some(group.cluster_enabled()),
        cluster_mode: Some(match group.cluster_mode.as_str() {
            "enabled" => ClusterMode::Enabled,
            "compatible" => ClusterMode::Compatible,
            _ => ClusterMode::Disabled,
        }),
        configuration_endpoint: if group.cluster_enabled() {
            endpoint(host, group.configuration_endpoint_port)
        } else {
            None
        },
        data_tiering: Some(DataTieringStatus::Disabled),
        description: Some(group.description.clone()),
        durability: None,
        effective_durability: None,
        engine: Some(group.engine.clone()),
        global_replication_group_info: None,
        ip_discovery: Some(IpDiscovery::Ipv4),
        kms_key_id: group.kms_key_id.clone(),
        log_delivery_configurations: Some(Vec::new()),
        // In creation order: only NodeGroupMembers puts the primary first.
        member_clusters: Some(
            group.members.iter().filter(|id| members.iter().any(|m| &m.cluster.id == *id)).cloned().collect(),
        ),
        member_clusters_outpost_arns: None,
        multi_az: Some(if group.multi_az { MultiAZStatus::Enabled } else { MultiAZStatus::Disabled }),
        network_type: Some(NetworkType::Ipv4),
        node_groups: Some(if group.cluster_enabled() {
            crate::shards::node_groups_output(g, host)
        } else {
            vec![NodeGroup {
                node_group_id: Some(NODE_GROUP_ID.to_string()),
                node_group_members: Some(node_group_members),
                primary_endpoint: endpoint(host, group.primary_endpoint_port),
                reader_endpoint: endpoint(host, group.reader_endpoint_port),
                slots: None,
                status: Some(group.status.clone()),
            }]
        }),
        pending_modified_values: Some(ReplicationGroupPendingModifiedValues {
            auth_token_status: crate::transit::status_output(&group.security),
            resharding: group.resharding.as_ref().map(|progress| ReshardingStatus {
                slot_migration: Some(SlotMigration { progress_percentage: Some(progress.percentage()) }),
            }),
            ..Default::default()
        }),
        replication_group_create_time: Some(DateTime::from_millis(group.created_millis)),
        replication_group_id: Some(group.id.clone()),
        snapshot_retention_limit: Some(group.snapshot_retention_limit),
        snapshot_window: Some(group.snapshot_window.clone()),
        snapshotting_cluster_id: snapshotting,
        status: Some(group.status.clone()),
        storage_encryption_type: None,
        transit_encryption_enabled: Some(group.security.transit_encryption),
        transit_encryption_mode: crate::transit::mode_output(&group.security),
        user_group_ids: Some(group.user_group_ids.clone()),
    }
}

pub(crate) async fn existing(ops: &Operations, scope: &Scope, id: &str) -> Result<StoredGroup, ApiError> {
    ops.store.replication_group(scope, &id.to_ascii_lowercase()).await.map_err(internal)?.ok_or_else(|| not_found(id))
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeReplicationGroupsMessage,
) -> Result<ReplicationGroupMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let groups = match &input.replication_group_id {
        Some(id) => vec![existing(ops, &scope, id).await?],
        None => ops.store.replication_groups(&scope).await.map_err(internal)?,
    };
    // A serverless cache's data group is shown as the cache only.
    let groups: Vec<StoredGroup> =
        groups.into_iter().filter(|g| !model::names::is_serverless_backing(&g.group.id)).collect();
    let page = paginate(groups, |g| g.group.id.clone(), input.marker.as_deref(), input.max_records)?;
    let stored: Vec<&StoredGroup> = page.items.iter().collect();
    let outputs = page.items.iter().map(|g| output(g, ops.endpoint_host())).collect();
    Ok(ReplicationGroupMessage {
        marker: page.marker,
        replication_groups: Some(crate::global_datastores::with_membership(ops, &scope, outputs, &stored).await?),
    })
}

/// Runs `change` on an available group in one transaction, then wakes the reconciler.
/// Whether an existing cluster can become the primary of a new group (PrimaryClusterId).
fn adoptable(c: &StoredCluster) -> Result<(), ApiError> {
    let id = &c.cluster.id;
    if c.cluster.engine == "memcached" {
        return Err(ApiError::invalid_parameter_value("A Memcached cluster cannot be part of a replication group."));
    }
    if c.cluster.replication_group_id.is_some() {
        return Err(ApiError::invalid_parameter_value(format!(
            "Cache cluster {id} is already a member of a replication group."
        )));
    }
    if c.cluster.status != status::AVAILABLE {
        return Err(ApiError::new(
            ErrorCode::InvalidCacheClusterStateFault,
            format!("Cache cluster {id} is not in available state."),
        ));
    }
    Ok(())
}

/// Changes a group that is available, in one write; when the change moves the group to
/// other user groups, they record it in the same write.
pub(crate) async fn change_available(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    change: impl FnOnce(&mut ReplicationGroupRecord, &mut Vec<StoredCluster>) -> Result<Vec<EventRecord>, ApiError>,
) -> Result<StoredGroup, ApiError> {
    let id = id.to_ascii_lowercase();
    let group = written(
        ops.store
            .write(async |tx| {
                let (mut before, mut grows) = (Vec::new(), false);
                let node_count = |members: &[StoredCluster]| members.iter().map(|m| m.nodes.len()).sum::<usize>();
                let changed = tx.update_replication_group(scope, &id, |group, members| {
                    if group.status != status::AVAILABLE {
                        return Err(invalid_state(&group.id, &group.status));
                    }
                    before = group.user_group_ids.clone();
                    let nodes_before = node_count(members);
                    let events = change(group, members)?;
                    grows = node_count(members) > nodes_before;
                    Ok(events)
                });
                let Some(group) = changed.await? else { return refuse(not_found(&id)) };
                // A parameter group deleted since the change was checked is not taken.
                for c in group.members.iter().map(|m| &m.cluster) {
                    crate::groups_still_there(tx, scope, &c.parameter_group, &c.subnet_group).await?;
                }
                crate::cache_clusters::grown_within_quota(tx, scope, grows, ops.node_capacity()).await?;
                let now = &group.group.user_group_ids;
                if *now != before {
                    let dropped: Vec<String> = before.into_iter().filter(|g| !now.contains(g)).collect();
                    crate::rbac::link(tx, scope, &dropped, &id, false).await?;
                    crate::rbac::link(tx, scope, now, &id, true).await?;
                }
                Ok(group)
            })
            .await,
    )?;
    Ok(group)
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteReplicationGroupMessage,
) -> Result<DeleteReplicationGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let retain = input.retain_primary_cluster.unwrap_or(false);
    let final_snapshot = match &input.final_snapshot_identifier {
        Some(name) => {
            let current = existing(ops, &scope, &input.replication_group_id).await?;
            if current.group.status != status::AVAILABLE {
                return Err(invalid_state(&current.group.id, &current.group.status));
            }
            let taken = crate::snapshots::Taken::Final;
            Some(crate::snapshots::plan(ops, &scope, name, None, Some(&current.group.id), taken, None).await?)
        }
        None => None,
    };
    let id = input.replication_group_id.to_ascii_lowercase();
    // One write: refused, nothing changes (the final snapshot included).
    let group = written(
        ops.store.write(async |tx| mark_deleted(tx, &scope, &id, retain, final_snapshot.as_ref()).await).await,
    )?;
    Ok(DeleteReplicationGroupResult { replication_group: Some(output(&group, ops.endpoint_host())) })
}

/// Inside a write: records the final snapshot (if any) and marks group `id` and its members
/// `deleting` (the primary leaves the group instead with `retain`); its user groups forget
/// it and its automated snapshots go with it.
pub(crate) async fn mark_deleted(
    tx: &mut store::Tx,
    scope: &Scope,
    id: &str,
    retain: bool,
    final_snapshot: Option<&SnapshotRecord>,
) -> Write<StoredGroup> {
    let mark_deleting = |group: &mut ReplicationGroupRecord, members: &mut Vec<StoredCluster>| {
        if !status::DELETABLE.contains(&group.status.as_str()) {
            return Err(invalid_state(&group.id, &group.status));
        }
        // A member leaves its global datastore first (the Terraform provider disassociates
        // before it deletes).
        if let Some(global) = &group.global_replication_group_id {
            return Err(crate::global_datastores::part_of_global(&group.id, global));
        }
        tracing::info!(
            replication_group = group.id,
            retain,
            from = group.status,
            to = status::DELETING,
            "replication group status"
        );
        group.status = status::DELETING.to_string();
        group.retain_primary_on_delete = retain;
        for member in members.iter_mut() {
            if retain && member.cluster.id == group.primary_cluster_id {
                member.cluster.replication_group_id = None;
                continue;
            }
            member.cluster.status = status::DELETING.to_string();
            member.nodes.iter_mut().for_each(|n| n.status = status::DELETING.to_string());
        }
        Ok(Vec::new())
    };
    if let Some(snapshot) = final_snapshot {
        crate::snapshots::record(tx, scope, snapshot, &[]).await?;
    }
    let Some(group) = tx.update_replication_group(scope, id, mark_deleting).await? else {
        return refuse(not_found(id));
    };
    crate::rbac::link(tx, scope, &group.group.user_group_ids, &group.group.id, false).await?;
    let of = |s: &SnapshotRecord| s.replication_group_id.as_deref() == Some(group.group.id.as_str());
    crate::snapshots::prune(tx, scope, of, 0).await?;
    Ok(group)
}

pub async fn test_failover(
    ops: &Operations,
    ctx: &RequestContext,
    input: TestFailoverMessage,
) -> Result<TestFailoverResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let shard = input.node_group_id.clone();
    let no_such_shard = || {
        ApiError::new(
            ErrorCode::NodeGroupNotFoundFault,
            format!("Node group {shard} not found in replication group {}.", input.replication_group_id),
        )
    };
    let group = change_available(ops, &scope, &input.replication_group_id, |group, members| {
        let (shard_members, primary) = if group.cluster_enabled() {
            let node_group = group.node_groups.iter().find(|g| g.id == shard).ok_or_else(no_such_shard)?;
            let count = members.iter().filter(|m| m.cluster.node_group_id.as_deref() == Some(shard.as_str())).count();
            (count, node_group.primary_cluster_id.clone())
        } else if shard == NODE_GROUP_ID {
            (members.len(), group.primary_cluster_id.clone())
        } else {
            return Err(no_such_shard());
        };
        if !group.automatic_failover || shard_members < 2 {
            return Err(ApiError::new(
                ErrorCode::TestFailoverNotAvailableFault,
                "TestFailover requires automatic failover to be enabled and at least one replica.",
            ));
        }
        let now = now_millis();
        group.test_failovers.retain(|t| now - t < 24 * 3600 * 1000);
        if group.test_failovers.len() >= TEST_FAILOVERS_PER_DAY {
            return Err(ApiError::new(
                ErrorCode::APICallRateForCustomerExceededFault,
                format!("TestFailover can be called at most {TEST_FAILOVERS_PER_DAY} times in 24 hours."),
            ));
        }
        group.test_failovers.push(now);
        group.status = status::MODIFYING.to_string();
        match group.node_groups.iter_mut().find(|g| g.id == shard) {
            Some(node_group) => node_group.failover_to = Some(store::FailoverRequest::BestReplica),
            None => group.failover_to = Some(store::FailoverRequest::BestReplica),
        }
        tracing::info!(replication_group = group.id, node_group = shard, primary, "test failover requested");
        Ok(vec![EventRecord::new(SOURCE_TYPE, &group.id, format!("Test Failover API called for node group {shard}"))])
    })
    .await?;
    Ok(TestFailoverResult { replication_group: Some(output(&group, ops.endpoint_host())) })
}

/// Adds or removes replicas. `remove` names the members to remove when decreasing.
async fn change_replicas(
    ops: &Operations,
    scope: &Scope,
    current: &StoredGroup,
    target: Option<i32>,
    remove: Vec<String>,
    increase: bool,
) -> Result<StoredGroup, ApiError> {
    let id = &current.group.id;
    let existing_ids = cluster_ids(ops, scope).await?;
    let zones = ops.subnet_group_zones(scope, &subnet_group_of(current)).await?;
    change_available(ops, scope, id, |group, members| {
        let replicas = members
            .iter()
            .filter(|m| m.cluster.id != group.primary_cluster_id && m.cluster.status != status::DELETING)
            .count() as i32;
        let target = match (target, remove.is_empty()) {
            (Some(t), _) => t,
            (None, false) if !increase => replicas - remove.len() as i32,
            _ => return Err(ApiError::invalid_parameter_value("NewReplicaCount must be provided.")),
        };
        if !(0..=MAX_REPLICAS).contains(&target) {
            return Err(ApiError::invalid_parameter_value(format!(
                "NewReplicaCount must be between 0 and {MAX_REPLICAS}."
            )));
        }
        if increase && target <= replicas {
            return Err(ApiError::invalid_parameter_value(format!(
                "NewReplicaCount ({target}) must be greater than the current number of replicas ({replicas})."
            )));
        }
        if !increase && target >= replicas {
            return Err(ApiError::invalid_parameter_value(format!(
                "NewReplicaCount ({target}) must be less than the current number of replicas ({replicas})."
            )));
        }
        if !increase && target < 1 && group.automatic_failover {
            return Err(ApiError::invalid_parameter_combination(
                "A replication group with automatic failover enabled needs at least one replica.",
            ));
        }
        if increase {
            let own: HashSet<String> = members.iter().map(|m| m.cluster.id.clone()).collect();
            let new_zones = member_zones((target - replicas) as usize, &[], &zones, members);
            let new_ids = next_member_ids(&group.id, new_zones.len(), &own);
            // Another cluster holding a new member's id is never overwritten.
            if let Some(taken) = new_ids.iter().find(|id| existing_ids.contains(*id) && !own.contains(*id)) {
                return Err(ApiError::new(
                    ErrorCode::CacheClusterAlreadyExistsFault,
                    format!("Cache cluster {taken} already exists."),
                ));
            }
            let template =
                members.first().map(|m| m.cluster.clone()).ok_or_else(|| ApiError::internal("group has no members"))?;
            for (member_id, zone) in new_ids.into_iter().zip(new_zones) {
                let (cluster, nodes) = member(&template, member_id, &group.id, zone);
                group.members.push(cluster.id.clone());
                members.push(StoredCluster { scope: scope.clone(), cluster, nodes });
            }
        } else {
            let mut to_remove = remove.clone();
            for name in &to_remove {
                if *name == group.primary_cluster_id {
                    return Err(ApiError::invalid_parameter_value(format!(
                        "Cannot remove the primary cluster {name}."
                    )));
                }
                if !members.iter().any(|m| &m.cluster.id == name && m.cluster.status != status::DELETING) {
                    return Err(ApiError::invalid_parameter_value(format!(
                        "Cache cluster {name} is not a replica of replication group {}.",
                        group.id
                    )));
                }
            }
            if to_remove.is_empty() {
                // The newest replicas go first.
                let mut candidates: Vec<String> =
                    members.iter().map(|m| m.cluster.id.clone()).filter(|m| *m != group.primary_cluster_id).collect();
                candidates.sort();
                to_remove = candidates.into_iter().rev().take((replicas - target) as usize).collect();
            } else if to_remove.len() as i32 != replicas - target {
                return Err(ApiError::invalid_parameter_value(
                    "ReplicasToRemove must list exactly as many replicas as NewReplicaCount removes.",
                ));
            }
            for member in members.iter_mut().filter(|m| to_remove.contains(&m.cluster.id)) {
                member.cluster.status = status::DELETING.to_string();
                member.nodes.iter_mut().for_each(|n| n.status = status::DELETING.to_string());
            }
            group.members.retain(|m| !to_remove.contains(m));
        }
        group.status = status::MODIFYING.to_string();
        Ok(Vec::new())
    })
    .await
}

/// CreateCacheCluster with ReplicationGroupId: cluster `id` joins `group` as a read
/// replica (API reference: "the cluster is added to the specified replication group as a
/// read replica"), in the zone asked for or the one that spreads the group best. Only
/// for Redis OSS and Valkey groups with cluster mode disabled, at most MAX_REPLICAS.
pub(crate) async fn add_member(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    input: &CreateCacheClusterMessage,
) -> Result<StoredCluster, ApiError> {
    let group_id = input.replication_group_id.clone().unwrap_or_default().to_ascii_lowercase();
    let current = existing(ops, scope, &group_id).await?;
    if input.engine.as_deref().is_some_and(|e| e != current.group.engine) {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Engine {} does not match the engine of replication group {group_id} ({}).",
            input.engine.as_deref().unwrap_or_default(),
            current.group.engine
        )));
    }
    if current.group.cluster_enabled() {
        return Err(ApiError::invalid_parameter_value(format!(
            "Replication group {group_id} has cluster mode enabled: add replicas with IncreaseReplicaCount."
        )));
    }
    if let Some(global) = &current.group.global_replication_group_id {
        return Err(crate::global_datastores::part_of_global(&group_id, global));
    }
    if cluster_ids(ops, scope).await?.contains(id) {
        return Err(ApiError::new(
            ErrorCode::CacheClusterAlreadyExistsFault,
            format!("Cache cluster {id} already exists."),
        ));
    }
    let zones = ops.subnet_group_zones(scope, &subnet_group_of(&current)).await?;
    let requested: Vec<String> = input.preferred_availability_zone.iter().cloned().collect();
    crate::placement::check_zones(ops, scope, &requested, &zones)?;
    let group = change_available(ops, scope, &group_id, |group, members| {
        let live = members.iter().filter(|m| m.cluster.status != status::DELETING).count() as i32;
        if live > MAX_REPLICAS {
            return Err(ApiError::new(
                ErrorCode::NodeQuotaForClusterExceededFault,
                format!("Replication group {group_id} already has {MAX_REPLICAS} replicas, the most it can have."),
            ));
        }
        let zone = member_zones(1, &requested, &zones, members).into_iter().next().unwrap_or_default();
        let template =
            members.first().map(|m| m.cluster.clone()).ok_or_else(|| ApiError::internal("group has no members"))?;
        let (cluster, nodes) = member(&template, id.to_string(), &group.id, zone);
        group.members.push(cluster.id.clone());
        members.push(StoredCluster { scope: scope.clone(), cluster, nodes });
        group.status = status::MODIFYING.to_string();
        Ok(Vec::new())
    })
    .await?;
    group.members.into_iter().find(|m| m.cluster.id == id).ok_or_else(|| not_found(&group_id))
}

/// The subnet group a group's members were placed with.
pub(crate) fn subnet_group_of(g: &StoredGroup) -> String {
    g.members.first().map(|m| m.cluster.subnet_group.clone()).unwrap_or_default()
}

/// Replica counts per shard of a cluster-mode group.
async fn change_shard_replicas(
    ops: &Operations,
    scope: &Scope,
    current: &StoredGroup,
    change: crate::shards::ReplicaChange,
) -> Result<StoredGroup, ApiError> {
    let zones = ops.subnet_group_zones(scope, &subnet_group_of(current)).await?;
    change_available(ops, scope, &current.group.id, |group, members| {
        crate::shards::change_shard_replicas(group, members, scope, &zones, &change)?;
        group.status = status::MODIFYING.to_string();
        Ok(Vec::new())
    })
    .await
}

pub async fn increase_replicas(
    ops: &Operations,
    ctx: &RequestContext,
    input: IncreaseReplicaCountMessage,
) -> Result<IncreaseReplicaCountResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let current = existing(ops, &scope, &input.replication_group_id).await?;
    if current.group.cluster_enabled() {
        let change = crate::shards::ReplicaChange {
            new_count: input.new_replica_count,
            configuration: input.replica_configuration.unwrap_or_default(),
            remove: Vec::new(),
            increase: true,
        };
        let group = change_shard_replicas(ops, &scope, &current, change).await?;
        return Ok(IncreaseReplicaCountResult { replication_group: Some(output(&group, ops.endpoint_host())) });
    }
    let target = replica_target(input.new_replica_count, input.replica_configuration.as_deref())?;
    let group = change_replicas(ops, &scope, &current, target, Vec::new(), true).await?;
    Ok(IncreaseReplicaCountResult { replication_group: Some(output(&group, ops.endpoint_host())) })
}

pub async fn decrease_replicas(
    ops: &Operations,
    ctx: &RequestContext,
    input: DecreaseReplicaCountMessage,
) -> Result<DecreaseReplicaCountResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let remove: Vec<String> =
        input.replicas_to_remove.unwrap_or_default().iter().map(|r| r.to_ascii_lowercase()).collect();
    let current = existing(ops, &scope, &input.replication_group_id).await?;
    if current.group.cluster_enabled() {
        let configuration = input.replica_configuration.unwrap_or_default();
        if input.new_replica_count.is_none() && configuration.is_empty() && remove.is_empty() {
            return Err(ApiError::invalid_parameter_combination(
                "Either NewReplicaCount, ReplicaConfiguration or ReplicasToRemove must be provided.",
            ));
        }
        let change =
            crate::shards::ReplicaChange { new_count: input.new_replica_count, configuration, remove, increase: false };
        let group = change_shard_replicas(ops, &scope, &current, change).await?;
        return Ok(DecreaseReplicaCountResult { replication_group: Some(output(&group, ops.endpoint_host())) });
    }
    let target = replica_target(input.new_replica_count, input.replica_configuration.as_deref())?;
    if target.is_none() && remove.is_empty() {
        return Err(ApiError::invalid_parameter_combination(
            "Either NewReplicaCount, ReplicaConfiguration or ReplicasToRemove must be provided.",
        ));
    }
    let group = change_replicas(ops, &scope, &current, target, remove, false).await?;
    Ok(DecreaseReplicaCountResult { replication_group: Some(output(&group, ops.endpoint_host())) })
}

/// The replica count asked for, by NewReplicaCount or the one node group's configuration.
fn replica_target(count: Option<i32>, configuration: Option<&[ConfigureShard]>) -> Result<Option<i32>, ApiError> {
    match (count, configuration) {
        (Some(_), Some(c)) if !c.is_empty() => Err(ApiError::invalid_parameter_combination(
            "NewReplicaCount and ReplicaConfiguration cannot both be specified.",
        )),
        (Some(n), _) => Ok(Some(n)),
        (None, Some([shard])) if shard.node_group_id == NODE_GROUP_ID => Ok(Some(shard.new_replica_count)),
        (None, Some([shard])) => Err(ApiError::new(
            ErrorCode::NodeGroupNotFoundFault,
            format!("Node group {} not found.", shard.node_group_id),
        )),
        (None, Some([])) | (None, None) => Ok(None),
        (None, Some(_)) => {
            Err(ApiError::invalid_parameter_value("Only node group 0001 exists when cluster mode is disabled."))
        }
    }
}
