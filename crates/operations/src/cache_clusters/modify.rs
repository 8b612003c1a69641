//! ModifyCacheCluster: a [`Plan`] checks the request against the cluster as it is (and the
//! catalog), then applies to the cluster and its nodes in one write, one setting family at a
//! time. Without ApplyImmediately, size, node type and version wait for the maintenance
//! window (`pending`).

use model::catalog::EngineVersion;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{CacheCluster as StoredCluster, CacheClusterRecord, CacheNodeRecord, EventRecord, PendingChanges, Scope};

use super::{
    MEMCACHED_NODES_PER_CLUSTER, change_available, existing, is_memcached, output, resize, set_node_type, status,
};
use crate::Operations;

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyCacheClusterMessage,
) -> Result<ModifyCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let current = existing(ops, &scope, &input.cache_cluster_id).await?;
    // Everything is checked against the current state before anything changes.
    let plan = Plan::check(ops, &scope, &current, &input).await?;
    let updated =
        change_available(ops, &scope, &input.cache_cluster_id, |cluster, nodes| plan.apply(cluster, nodes)).await?;
    tracing::info!(cache_cluster = updated.cluster.id, to = updated.cluster.status, "cache cluster modified");
    Ok(ModifyCacheClusterResult { cache_cluster: Some(output(&updated, false, ops.endpoint_host())) })
}

/// What a ModifyCacheCluster asks for, checked against the cluster as it was read.
struct Plan<'a> {
    input: &'a ModifyCacheClusterMessage,
    memcached: bool,
    apply_now: bool,
    new_version: Option<EngineVersion>,
    parameter_group: Option<String>,
    /// The subnet group's zones, and the zones asked for new nodes.
    zones: Vec<String>,
    new_zones: Vec<String>,
    maintenance_window: Option<String>,
    snapshot_window: Option<String>,
    token_change: crate::transit::Change<'a>,
}

impl<'a> Plan<'a> {
    async fn check(
        ops: &Operations,
        scope: &Scope,
        current: &StoredCluster,
        input: &'a ModifyCacheClusterMessage,
    ) -> Result<Self, ApiError> {
        let memcached = is_memcached(&current.cluster.engine);
        if let Some(engine) = input.engine.as_deref().filter(|e| !e.eq_ignore_ascii_case(&current.cluster.engine)) {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Cannot change the engine of a cache cluster to {engine}: a replication group moves from Redis OSS to Valkey with ModifyReplicationGroup."
            )));
        }
        let (new_version, parameter_group) = version_and_parameter_group(ops, scope, current, input).await?;
        if let Some(node_type) = &input.cache_node_type {
            ops.check_node_type(node_type)?;
            if memcached {
                return Err(ApiError::invalid_parameter_combination(
                    "Memcached clusters cannot change their node type.",
                ));
            }
        }
        let zones = ops.subnet_group_zones(scope, &current.cluster.subnet_group).await?;
        let new_zones = input.new_availability_zones.clone().unwrap_or_default();
        crate::placement::check_zones(ops, scope, &new_zones, &zones)?;
        let (names, ids) = (input.cache_security_group_names.as_deref(), input.security_group_ids.as_deref());
        crate::security_groups::check_references(ops, scope, names, ids).await?;
        crate::validate::topic_arn(input.notification_topic_arn.as_deref())?;
        let maintenance_window =
            input.preferred_maintenance_window.as_deref().map(crate::validate::maintenance_window).transpose()?;
        let snapshot_window = input.snapshot_window.as_deref().map(crate::validate::snapshot_window).transpose()?;
        if memcached && (input.snapshot_window.is_some() || input.snapshot_retention_limit.is_some()) {
            return Err(ApiError::invalid_parameter_combination("Snapshots are not supported for Memcached clusters."));
        }
        if input.snapshot_retention_limit.is_some_and(|l| !(0..=35).contains(&l)) {
            return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
        }
        // AUTH token changes of a standalone Redis cluster, as for a replication group.
        let token_change = crate::transit::Change {
            transit_encryption_enabled: None,
            mode: None,
            auth_token: input.auth_token.as_deref(),
            strategy: input.auth_token_update_strategy,
            to_rbac: false,
        };
        crate::transit::check_change(&token_change)?;
        if memcached && !token_change.is_empty() {
            return Err(ApiError::invalid_parameter_combination("AUTH tokens are for Redis clusters only."));
        }
        Ok(Self {
            input,
            memcached,
            apply_now: input.apply_immediately.unwrap_or(false),
            new_version,
            parameter_group,
            zones,
            new_zones,
            maintenance_window,
            snapshot_window,
            token_change,
        })
    }

    /// Applies the plan to the cluster as it is now (inside the write).
    fn apply(
        &self,
        cluster: &mut CacheClusterRecord,
        nodes: &mut Vec<CacheNodeRecord>,
    ) -> Result<Vec<EventRecord>, ApiError> {
        let mut changed = self.apply_token(cluster)?;
        let mut pending = cluster.pending.clone();
        changed |= self.apply_size(cluster, nodes, &mut pending)?;
        changed |= self.apply_engine(cluster, nodes, &mut pending);
        changed |= self.apply_settings(cluster)?;
        // AWS: ApplyImmediately applies this request and whatever was pending.
        if self.apply_now && !pending.is_empty() {
            changed = true;
            self.apply_pending(cluster, nodes, std::mem::take(&mut pending));
        }
        if !changed {
            return Err(ApiError::invalid_parameter_combination("No modifications were requested."));
        }
        cluster.pending = pending;
        let touches_nodes = nodes.iter().any(|n| {
            n.status == status::CREATING
                || n.remove_requested
                || n.reboot_requested
                || n.parameter_status == status::APPLYING
        });
        if touches_nodes {
            cluster.status = status::MODIFYING.to_string();
        }
        Ok(Vec::new())
    }

    /// An AUTH token change, applied live by the reconciler; the cluster is modifying until
    /// every node has it. A member of a group changes its token through the group.
    fn apply_token(&self, cluster: &mut CacheClusterRecord) -> Result<bool, ApiError> {
        if self.token_change.is_empty() {
            return Ok(false);
        }
        if let Some(group) = &cluster.replication_group_id {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Cache cluster {} is a member of replication group {group}: change its AUTH token there.",
                cluster.id
            )));
        }
        let changed = crate::transit::apply(&mut cluster.security, &self.token_change)?;
        if changed {
            cluster.status = status::MODIFYING.to_string();
        }
        Ok(changed)
    }

    /// NumCacheNodes (and CacheNodeIdsToRemove): Memcached clusters grow and shrink.
    fn apply_size(
        &self,
        cluster: &mut CacheClusterRecord,
        nodes: &mut Vec<CacheNodeRecord>,
        pending: &mut PendingChanges,
    ) -> Result<bool, ApiError> {
        let Some(num) = self.input.num_cache_nodes else { return Ok(false) };
        let live = nodes.iter().filter(|n| !n.remove_requested).count() as i32;
        if !self.memcached && num != 1 {
            return Err(ApiError::invalid_parameter_value(format!(
                "NumCacheNodes must be 1 for a {} cluster.",
                cluster.engine
            )));
        }
        if num < 1 || num as u32 > MEMCACHED_NODES_PER_CLUSTER {
            return Err(ApiError::new(
                ErrorCode::NodeQuotaForClusterExceededFault,
                format!("NumCacheNodes must be between 1 and {MEMCACHED_NODES_PER_CLUSTER}."),
            ));
        }
        let to_remove = self.input.cache_node_ids_to_remove.clone().unwrap_or_default();
        if num < live {
            if to_remove.len() as i32 != live - num {
                return Err(ApiError::invalid_parameter_value(format!(
                    "To remove {} cache nodes, CacheNodeIdsToRemove must list exactly that many node ids.",
                    live - num
                )));
            }
            if let Some(unknown) =
                to_remove.iter().find(|id| !nodes.iter().any(|n| &n.node_id == *id && !n.remove_requested))
            {
                return Err(ApiError::invalid_parameter_value(format!("Cache node {unknown} does not exist.")));
            }
        } else if !to_remove.is_empty() && num > live {
            return Err(ApiError::invalid_parameter_combination(
                "CacheNodeIdsToRemove can only be used to decrease NumCacheNodes.",
            ));
        }
        if num != live || !to_remove.is_empty() {
            if self.apply_now {
                resize(cluster, nodes, num as u32, &to_remove, &self.new_zones, &self.zones);
            } else {
                pending.num_nodes = Some(num as u32);
                pending.node_ids_to_remove = to_remove;
            }
            Ok(true)
        } else if pending.num_nodes.is_some() {
            // AWS: the current count cancels a pending add or remove.
            pending.num_nodes = None;
            pending.node_ids_to_remove.clear();
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Node type, engine version and parameter group.
    fn apply_engine(
        &self,
        cluster: &mut CacheClusterRecord,
        nodes: &mut [CacheNodeRecord],
        pending: &mut PendingChanges,
    ) -> bool {
        let mut changed = false;
        if let Some(node_type) = self.input.cache_node_type.as_ref().filter(|t| **t != cluster.node_type) {
            changed = true;
            if self.apply_now {
                set_node_type(cluster, nodes, node_type);
            } else {
                pending.node_type = Some(node_type.clone());
            }
        }
        if let Some(version) = self.new_version.as_ref().filter(|v| v.actual_version != cluster.engine_version) {
            changed = true;
            if self.apply_now {
                cluster.engine_version = version.actual_version.clone();
            } else {
                pending.engine_version = Some(version.actual_version.clone());
            }
        }
        if let Some(group) = self.parameter_group.as_ref().filter(|g| **g != cluster.parameter_group) {
            changed = true;
            cluster.parameter_group = group.clone();
            nodes.iter_mut().for_each(|n| n.parameter_status = status::APPLYING.to_string());
        }
        changed
    }

    /// Windows, retention, notifications, security groups and AZMode: record changes only.
    fn apply_settings(&self, cluster: &mut CacheClusterRecord) -> Result<bool, ApiError> {
        let input = self.input;
        let mut changed = false;
        if let Some(window) = &self.maintenance_window {
            changed |= *window != cluster.maintenance_window;
            cluster.maintenance_window = window.clone();
        }
        if let Some(window) = &self.snapshot_window {
            changed |= Some(window) != cluster.snapshot_window.as_ref();
            cluster.snapshot_window = Some(window.clone());
        }
        if let Some(limit) = input.snapshot_retention_limit {
            changed |= limit != cluster.snapshot_retention_limit;
            cluster.snapshot_retention_limit = limit;
        }
        if let Some(flag) = input.auto_minor_version_upgrade {
            changed |= flag != cluster.auto_minor_version_upgrade;
            cluster.auto_minor_version_upgrade = flag;
        }
        if let Some(topic) = &input.notification_topic_arn {
            changed = true;
            cluster.notification_topic_arn = Some(topic.clone());
        }
        if input.notification_topic_status.as_deref() == Some("inactive") {
            changed = true;
            cluster.notification_topic_arn = None;
        }
        if let Some(ids) = &input.security_group_ids {
            changed = true;
            cluster.security_group_ids = ids.clone();
        }
        if let Some(names) = &input.cache_security_group_names {
            changed = true;
            cluster.cache_security_groups = names.clone();
        }
        if let Some(mode) = input.az_mode {
            if !self.memcached {
                return Err(ApiError::invalid_parameter_value("AZMode is only supported for Memcached clusters."));
            }
            changed = true;
            cluster.az_mode = mode.as_str().to_string();
        }
        Ok(changed)
    }

    /// What was waiting for the maintenance window, unless this request changes it itself.
    fn apply_pending(
        &self,
        cluster: &mut CacheClusterRecord,
        nodes: &mut Vec<CacheNodeRecord>,
        waiting: PendingChanges,
    ) {
        if self.input.num_cache_nodes.is_none()
            && let Some(num) = waiting.num_nodes
        {
            resize(cluster, nodes, num, &waiting.node_ids_to_remove, &[], &self.zones);
        }
        if self.input.cache_node_type.is_none()
            && let Some(node_type) = waiting.node_type
        {
            set_node_type(cluster, nodes, &node_type);
        }
        if self.new_version.is_none()
            && let Some(version) = waiting.engine_version
        {
            cluster.engine_version = version;
        }
    }
}

/// EngineVersion (never a downgrade) and CacheParameterGroupName: a version of another
/// family needs a parameter group of that family.
async fn version_and_parameter_group(
    ops: &Operations,
    scope: &Scope,
    current: &StoredCluster,
    input: &ModifyCacheClusterMessage,
) -> Result<(Option<EngineVersion>, Option<String>), ApiError> {
    let engine = &current.cluster.engine;
    let family = ops.recorded_version(engine, &current.cluster.engine_version)?.cache_parameter_group_family.clone();
    let new_version = match &input.engine_version {
        Some(v) => {
            let version = ops.engine_version(engine, Some(v))?;
            if model::catalog::is_downgrade(&current.cluster.engine_version, &version.actual_version) {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Cannot downgrade {engine} from {} to {}.",
                    current.cluster.engine_version, version.actual_version
                )));
            }
            Some(version.clone())
        }
        None => None,
    };
    let target_family = new_version.as_ref().map_or(family.clone(), |v| v.cache_parameter_group_family.clone());
    let parameter_group = match &input.cache_parameter_group_name {
        Some(name) => Some(ops.parameter_group_for(scope, Some(name), &target_family).await?),
        None if target_family != family => {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Upgrading to family {target_family} requires a CacheParameterGroupName of that family."
            )));
        }
        None => None,
    };
    Ok((new_version, parameter_group))
}
