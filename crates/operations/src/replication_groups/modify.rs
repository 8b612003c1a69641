//! ModifyReplicationGroup: a [`Plan`] checks the request against the group as it is (and
//! the catalog), then applies to the group and its members in one write, one setting family
//! at a time. A change of cluster mode is the `shards` module's.

use model::catalog::EngineVersion;
use protocol::shapes::*;
use protocol::{ApiError, RequestContext};
use store::{
    CacheCluster as StoredCluster, EventRecord, ReplicationGroup as StoredGroup, ReplicationGroupRecord, Scope,
};

use super::{change_available, existing, output};
use crate::Operations;
use crate::arn::{Kind, NotFound as _};
use crate::cache_clusters::{self as clusters, status};

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyReplicationGroupMessage,
) -> Result<ModifyReplicationGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let current = existing(ops, &scope, &input.replication_group_id).await?;
    let global_setting = input.cache_node_type.is_some()
        || input.engine.is_some()
        || input.engine_version.is_some()
        || input.cache_parameter_group_name.is_some();
    if let Some(global) = current.group.global_replication_group_id.as_deref().filter(|_| global_setting) {
        return Err(crate::global_datastores::part_of_global(&current.group.id, global));
    }
    let plan = Plan::check(ops, &scope, &current, &input).await?;
    if let Some(mode) = input.cluster_mode
        && mode.as_str() != current.group.cluster_mode.as_str()
        && !(mode == ClusterMode::Disabled && current.group.cluster_mode.is_empty())
    {
        let group = crate::shards::change_cluster_mode(ops, &scope, &current, mode, &input).await?;
        return Ok(ModifyReplicationGroupResult { replication_group: Some(output(&group, ops.endpoint_host())) });
    }
    plan.check_cluster_mode_rules(&current)?;
    let group =
        change_available(ops, &scope, &input.replication_group_id, |group, members| plan.apply(group, members)).await?;
    Ok(ModifyReplicationGroupResult { replication_group: Some(output(&group, ops.endpoint_host())) })
}

/// What a ModifyReplicationGroup asks for, checked against the group as it was read.
pub(crate) struct Plan<'a> {
    input: &'a ModifyReplicationGroupMessage,
    security_change: crate::transit::Change<'a>,
    user_groups_to_add: Vec<String>,
    user_groups_to_remove: Vec<String>,
    /// Redis OSS → Valkey: every node restarts in place on the new binary.
    new_engine: Option<String>,
    new_version: Option<EngineVersion>,
    parameter_group: Option<String>,
    snapshot_window: Option<String>,
    maintenance_window: Option<String>,
    apply_now: bool,
}

/// What applying a plan changed so far.
#[derive(Default)]
struct Changed {
    anything: bool,
    /// Something the nodes must act on: the group goes `modifying`.
    nodes: bool,
}

impl<'a> Plan<'a> {
    pub(crate) async fn check(
        ops: &Operations,
        scope: &Scope,
        current: &StoredGroup,
        input: &'a ModifyReplicationGroupMessage,
    ) -> Result<Self, ApiError> {
        let security_change = crate::transit::Change {
            transit_encryption_enabled: input.transit_encryption_enabled,
            mode: input.transit_encryption_mode,
            auth_token: input.auth_token.as_deref(),
            strategy: input.auth_token_update_strategy,
            to_rbac: input.user_group_ids_to_add.as_ref().is_some_and(|u| !u.is_empty()),
        };
        crate::transit::check_change(&security_change)?;
        let (user_groups_to_add, user_groups_to_remove) = user_group_changes(ops, scope, current, input).await?;
        let new_engine = engine_change(&current.group.engine, input.engine.as_deref(), input.engine_version.is_some())?;
        let engine = new_engine.as_deref().unwrap_or(&current.group.engine);
        let (new_version, parameter_group) = version_and_parameter_group(ops, scope, current, engine, input).await?;
        if let Some(node_type) = &input.cache_node_type {
            ops.check_node_type(node_type)?;
        }
        let (names, ids) = (input.cache_security_group_names.as_deref(), input.security_group_ids.as_deref());
        crate::security_groups::check_references(ops, scope, names, ids).await?;
        crate::validate::topic_arn(input.notification_topic_arn.as_deref())?;
        Ok(Self {
            input,
            security_change,
            user_groups_to_add,
            user_groups_to_remove,
            new_version,
            parameter_group,
            // A change of engine is made at once, whatever ApplyImmediately says.
            apply_now: input.apply_immediately.unwrap_or(false) || new_engine.is_some(),
            new_engine,
            snapshot_window: input.snapshot_window.as_deref().map(crate::validate::snapshot_window).transpose()?,
            maintenance_window: input
                .preferred_maintenance_window
                .as_deref()
                .map(crate::validate::maintenance_window)
                .transpose()?,
        })
    }

    /// What a group with cluster mode enabled cannot be asked.
    fn check_cluster_mode_rules(&self, current: &StoredGroup) -> Result<(), ApiError> {
        if !current.group.cluster_enabled() {
            return Ok(());
        }
        if self.input.primary_cluster_id.is_some() {
            return Err(ApiError::invalid_parameter_combination(
                "PrimaryClusterId cannot be used with cluster mode enabled; use TestFailover with a NodeGroupId.",
            ));
        }
        if self.input.automatic_failover_enabled == Some(false) {
            return Err(ApiError::invalid_parameter_combination(
                "Automatic failover cannot be disabled for Redis with cluster mode enabled.",
            ));
        }
        Ok(())
    }

    /// Applies the plan to the group as it is now (inside the write).
    pub(crate) fn apply(
        &self,
        group: &mut ReplicationGroupRecord,
        members: &mut [StoredCluster],
    ) -> Result<Vec<EventRecord>, ApiError> {
        let mut changed = Changed::default();
        self.apply_failover_settings(group, members.len(), &mut changed)?;
        self.apply_group_settings(group, &mut changed)?;
        for member in members.iter_mut() {
            self.apply_member_settings(member, &mut changed)?;
        }
        self.apply_security(group, members, &mut changed)?;
        self.apply_user_groups(group, &mut changed)?;
        self.apply_primary(group, members, &mut changed)?;
        if !changed.anything {
            return Err(ApiError::invalid_parameter_combination("No modifications were requested."));
        }
        if changed.nodes {
            group.status = status::MODIFYING.to_string();
        }
        Ok(Vec::new())
    }

    fn apply_failover_settings(
        &self,
        group: &mut ReplicationGroupRecord,
        member_count: usize,
        changed: &mut Changed,
    ) -> Result<(), ApiError> {
        let input = self.input;
        let automatic_failover = input.automatic_failover_enabled.unwrap_or(group.automatic_failover);
        let multi_az = input.multi_az_enabled.unwrap_or(if automatic_failover { group.multi_az } else { false });
        if automatic_failover && member_count < 2 {
            return Err(ApiError::invalid_parameter_value("Automatic failover requires at least one read replica."));
        }
        if multi_az && !automatic_failover {
            return Err(ApiError::invalid_parameter_combination("Multi-AZ requires automatic failover to be enabled."));
        }
        if input.automatic_failover_enabled.is_some() || input.multi_az_enabled.is_some() {
            changed.anything |= automatic_failover != group.automatic_failover || multi_az != group.multi_az;
            group.automatic_failover = automatic_failover;
            group.multi_az = multi_az;
        }
        Ok(())
    }

    fn apply_group_settings(&self, group: &mut ReplicationGroupRecord, changed: &mut Changed) -> Result<(), ApiError> {
        if let Some(engine) = &self.new_engine {
            changed.anything = true;
            group.engine = engine.clone();
        }
        if let Some(description) = &self.input.replication_group_description {
            crate::validate::description("ReplicationGroupDescription", description)?;
            changed.anything |= *description != group.description;
            group.description = description.clone();
        }
        if let Some(limit) = self.input.snapshot_retention_limit {
            if !(0..=35).contains(&limit) {
                return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
            }
            changed.anything |= limit != group.snapshot_retention_limit;
            group.snapshot_retention_limit = limit;
        }
        if let Some(window) = &self.snapshot_window {
            changed.anything |= *window != group.snapshot_window;
            group.snapshot_window = window.clone();
        }
        Ok(())
    }

    /// Settings AWS keeps per member cluster (Terraform reads them from the first).
    fn apply_member_settings(&self, member: &mut StoredCluster, changed: &mut Changed) -> Result<(), ApiError> {
        let input = self.input;
        let cluster = &mut member.cluster;
        let mut touches_nodes = false;
        if let Some(window) = &self.maintenance_window {
            changed.anything |= *window != cluster.maintenance_window;
            cluster.maintenance_window = window.clone();
        }
        if let Some(flag) = input.auto_minor_version_upgrade {
            changed.anything |= flag != cluster.auto_minor_version_upgrade;
            cluster.auto_minor_version_upgrade = flag;
        }
        if let Some(ids) = &input.security_group_ids {
            changed.anything |= *ids != cluster.security_group_ids;
            cluster.security_group_ids = ids.clone();
        }
        if let Some(names) = &input.cache_security_group_names {
            changed.anything |= *names != cluster.cache_security_groups;
            cluster.cache_security_groups = names.clone();
        }
        if let Some(topic) = &input.notification_topic_arn {
            changed.anything |= cluster.notification_topic_arn.as_ref() != Some(topic);
            cluster.notification_topic_arn = Some(topic.clone());
        }
        if input.notification_topic_status.as_deref() == Some("inactive") {
            changed.anything |= cluster.notification_topic_arn.is_some();
            cluster.notification_topic_arn = None;
        }
        if let Some(group_name) = &self.parameter_group
            && *group_name != cluster.parameter_group
        {
            touches_nodes = true;
            cluster.parameter_group = group_name.clone();
            member.nodes.iter_mut().for_each(|n| n.parameter_status = status::APPLYING.to_string());
        }
        if let Some(engine) = &self.new_engine {
            // Another binary serves the nodes: the reconciler restarts each in place, with
            // its data, the replicas first and the primary after handing over.
            touches_nodes = true;
            cluster.engine = engine.clone();
        }
        if let Some(version) = self.new_version.as_ref().filter(|v| v.actual_version != cluster.engine_version) {
            changed.anything = true;
            if !self.apply_now {
                cluster.pending.engine_version = Some(version.actual_version.clone());
            } else if model::catalog::is_downgrade(&cluster.engine_version, &version.actual_version) {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Cannot downgrade {} from {} to {}.",
                    cluster.engine, cluster.engine_version, version.actual_version
                )));
            } else {
                cluster.engine_version = version.actual_version.clone();
            }
        }
        if let Some(node_type) = input.cache_node_type.as_ref().filter(|t| **t != cluster.node_type) {
            changed.anything = true;
            if self.apply_now {
                touches_nodes = true;
                clusters::set_node_type(cluster, &mut member.nodes, node_type);
            } else {
                // Applied in the maintenance window, as on AWS.
                cluster.pending.node_type = Some(node_type.clone());
            }
        }
        if touches_nodes {
            changed.anything = true;
            changed.nodes = true;
            cluster.status = status::MODIFYING.to_string();
        }
        Ok(())
    }

    /// TLS and AUTH token changes apply at once (AWS does not wait for a window), to every
    /// member: a TLS mode change restarts the nodes, a token change is applied live.
    fn apply_security(
        &self,
        group: &mut ReplicationGroupRecord,
        members: &mut [StoredCluster],
        changed: &mut Changed,
    ) -> Result<(), ApiError> {
        if self.security_change.is_empty() {
            return Ok(());
        }
        let mut security = group.security.clone();
        if crate::transit::apply(&mut security, &self.security_change)? {
            tracing::info!(
                replication_group = group.id,
                from = ?group.security.mode(),
                to = ?security.mode(),
                auth_token_status = ?security.auth_token_status,
                "replication group transit encryption / AUTH token change"
            );
            changed.anything = true;
            changed.nodes = true;
            for member in members.iter_mut() {
                member.cluster.security = security.clone();
                member.cluster.status = status::MODIFYING.to_string();
            }
            group.security = security;
        }
        Ok(())
    }

    /// The nodes' ACL follows a user-group change at once; the group's nodes stay up.
    fn apply_user_groups(&self, group: &mut ReplicationGroupRecord, changed: &mut Changed) -> Result<(), ApiError> {
        let (to_add, to_remove) = (&self.user_groups_to_add, &self.user_groups_to_remove);
        if to_add.is_empty() && to_remove.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<String> = group.user_group_ids.iter().filter(|id| !to_remove.contains(id)).cloned().collect();
        ids.extend(to_add.iter().filter(|id| !group.user_group_ids.contains(id)).cloned());
        if ids.len() > 1 {
            return Err(ApiError::invalid_parameter_value("A replication group can have at most 1 user group."));
        }
        if ids != group.user_group_ids {
            changed.anything = true;
            group.user_group_ids = ids;
        }
        Ok(())
    }

    /// PrimaryClusterId: a failover to that member.
    fn apply_primary(
        &self,
        group: &mut ReplicationGroupRecord,
        members: &[StoredCluster],
        changed: &mut Changed,
    ) -> Result<(), ApiError> {
        let Some(primary) = &self.input.primary_cluster_id else { return Ok(()) };
        let primary = primary.to_ascii_lowercase();
        if !members.iter().any(|m| m.cluster.id == primary) {
            return Err(Kind::Cluster.not_found(&primary));
        }
        if primary != group.primary_cluster_id {
            changed.anything = true;
            changed.nodes = true;
            group.failover_to = Some(store::FailoverRequest::To(primary));
        }
        Ok(())
    }
}

/// UserGroupIdsToAdd (attachable to this group) and UserGroupIdsToRemove (attached to it).
async fn user_group_changes(
    ops: &Operations,
    scope: &Scope,
    current: &StoredGroup,
    input: &ModifyReplicationGroupMessage,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    if input.user_group_ids_to_add.as_ref().is_some_and(|u| !u.is_empty())
        && input.auth_token.is_some()
        && input.auth_token_update_strategy != Some(AuthTokenUpdateStrategyType::Delete)
    {
        return Err(ApiError::invalid_parameter_combination(
            "UserGroupIdsToAdd cannot be combined with a new AuthToken.",
        ));
    }
    let transit_after = input.transit_encryption_enabled.unwrap_or(current.group.security.mode().is_some());
    let requested = input.user_group_ids_to_add.clone().unwrap_or_default();
    let to_add = crate::rbac::check_attachable(ops, scope, &requested, &current.group.engine, transit_after).await?;
    let to_remove: Vec<String> =
        input.user_group_ids_to_remove.iter().flatten().map(|id| id.to_ascii_lowercase()).collect();
    if let Some(unknown) = to_remove.iter().find(|id| !current.group.user_group_ids.contains(id)) {
        return Err(ApiError::invalid_parameter_value(format!(
            "User group {unknown} is not associated with replication group {}.",
            current.group.id
        )));
    }
    Ok((to_add, to_remove))
}

/// EngineVersion and CacheParameterGroupName: a new version of another family needs a
/// parameter group of that family.
/// Redis OSS → Valkey is the one change of engine AWS offers a group, to a Valkey version
/// named with it. (The wording of these refusals is the emulator's.)
fn engine_change(current: &str, requested: Option<&str>, version_given: bool) -> Result<Option<String>, ApiError> {
    let Some(requested) = requested.map(str::to_ascii_lowercase).filter(|e| e != current) else { return Ok(None) };
    if current != "redis" || requested != "valkey" {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Cannot change the engine from {current} to {requested}: only Redis OSS to Valkey is supported."
        )));
    }
    if !version_given {
        return Err(ApiError::invalid_parameter_combination(
            "Changing the engine to valkey needs the EngineVersion to move to.",
        ));
    }
    Ok(Some(requested))
}

/// The version asked for (in `engine`, the group's or the one it moves to) and the
/// parameter group that goes with it.
async fn version_and_parameter_group(
    ops: &Operations,
    scope: &Scope,
    current: &StoredGroup,
    engine: &str,
    input: &ModifyReplicationGroupMessage,
) -> Result<(Option<EngineVersion>, Option<String>), ApiError> {
    let family = current
        .members
        .first()
        .map(|m| {
            ops.recorded_version(&m.cluster.engine, &m.cluster.engine_version)
                .map(|v| v.cache_parameter_group_family.clone())
        })
        .transpose()?
        .unwrap_or_default();
    let new_version = match &input.engine_version {
        Some(v) => {
            let version = ops.engine_version(engine, Some(v))?.clone();
            if version.cache_parameter_group_family != family && input.cache_parameter_group_name.is_none() {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Upgrading to family {} requires a CacheParameterGroupName of that family.",
                    version.cache_parameter_group_family
                )));
            }
            Some(version)
        }
        None => None,
    };
    let target_family = new_version.as_ref().map_or(family, |v| v.cache_parameter_group_family.clone());
    let parameter_group = match &input.cache_parameter_group_name {
        Some(name) => Some(ops.parameter_group_for(scope, Some(name), &target_family).await?),
        None => None,
    };
    Ok((new_version, parameter_group))
}
