//! CreateReplicationGroup: AWS's checks of the request, each in its own step, then the
//! group, its members and its user-group link written in one transaction.

use std::collections::HashSet;

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    CacheCluster as StoredCluster, CacheClusterRecord, PendingChanges, ReplicationGroup as StoredGroup,
    ReplicationGroupRecord, Scope, StoreError, TransitSecurity, now_millis,
};

use super::{MAX_ID_LEN, MAX_REPLICAS, QUOTA, adoptable, member, member_zones, next_member_ids, output};
use crate::arn::{self, Kind, NotFound as _};
use crate::cache_clusters::{self as clusters, status};
use crate::shards::ShardPlan;
use crate::{Operations, tags, written};

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateReplicationGroupMessage,
) -> Result<CreateReplicationGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let id = crate::validate::resource_id("ReplicationGroupId", &input.replication_group_id, MAX_ID_LEN)?;
    // A secondary of a global datastore: what it inherits comes from the primary group.
    let global = input.global_replication_group_id.clone();
    let input = match &global {
        Some(global) => crate::global_datastores::secondary::inherit(ops, ctx, &scope, &input, global).await?,
        None => input,
    };
    let mut new = plan(ops, &scope, &id, &input).await?;
    new.stored.group.global_replication_group_id = global.clone();
    written(
        ops.store
            .write(async |tx| {
                new.write(tx, ops.node_capacity()).await?;
                match &global {
                    Some(global) => crate::global_datastores::secondary::join(tx, &scope, global, &id).await,
                    None => Ok(()),
                }
            })
            .await,
    )?;
    tracing::info!(replication_group = id, members = new.stored.members.len(), "replication group: (none) -> creating");
    let group = output(&new.stored, ops.endpoint_host());
    let group = crate::global_datastores::with_membership(ops, &scope, vec![group], &[&new.stored]).await?;
    Ok(CreateReplicationGroupResult { replication_group: group.into_iter().next() })
}

/// A group checked against AWS's rules, ready to be written.
pub(crate) struct NewGroup {
    pub stored: StoredGroup,
    template: CacheClusterRecord,
    /// The existing cluster that becomes the primary.
    adopted: Option<String>,
    tags: Vec<store::TagRecord>,
}

/// Checks a CreateReplicationGroup request for group `id` (validated already) and plans
/// the group and its members; nothing is written.
pub(crate) async fn plan(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    input: &CreateReplicationGroupMessage,
) -> Result<NewGroup, ApiError> {
    let (scope, id, input) = (scope.clone(), id.to_string(), input.clone());
    let options = Options::check(&input)?;
    let (names, ids) = (input.cache_security_group_names.as_deref(), input.security_group_ids.as_deref());
    crate::security_groups::check_references(ops, &scope, names, ids).await?;
    crate::validate::topic_arn(input.notification_topic_arn.as_deref())?;
    let restore = Restore::of(ops, &scope, &input).await?;
    // An existing cluster can be adopted as the primary.
    let adopted = match &input.primary_cluster_id {
        Some(primary) => {
            let c = clusters::existing(ops, &scope, primary).await?;
            adoptable(&c)?;
            Some(c)
        }
        None => None,
    };
    let engine = engine(&input, adopted.as_ref())?;
    let template = match &adopted {
        Some(c) => c.cluster.clone(),
        None => new_member_template(ops, &scope, &input, &engine, &options, &restore).await?,
    };
    if !(0..=35).contains(&template.snapshot_retention_limit) {
        return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
    }
    let shards = shard_plans(ops, &scope, &input, &options, &template, adopted.is_some(), restore.shards).await?;
    let (automatic_failover, multi_az) = failover_settings(&input, shards.as_deref(), options.replicas)?;
    let zones = ops.subnet_group_zones(&scope, &template.subnet_group).await?;
    let user_group_ids =
        crate::rbac::check_attachable(ops, &scope, &options.user_groups, &engine, options.security.mode().is_some())
            .await?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let mut group = ReplicationGroupRecord {
        automatic_failover,
        multi_az,
        user_group_ids: user_group_ids.clone(),
        ..group_record(&id, &input, &engine, &template, &options)
    };
    let members = match &shards {
        Some(plans) => {
            crate::placement::check_zones(ops, &scope, &crate::shards::requested_zones(plans), &zones)?;
            let mode = if input.cluster_mode == Some(ClusterMode::Compatible) { "compatible" } else { "enabled" };
            group.cluster_mode = mode.to_string();
            // The snapshot's keys are spread over the shards once the cluster is up.
            group.restore_from = restore.from.clone();
            group.restore_arns = restore.arns.clone();
            let template = crate::shards::Template { cluster: &template, scope: &scope, zones: &zones };
            crate::shards::create_members(&template, &mut group, plans)
        }
        None => {
            group.cluster_mode = "disabled".to_string();
            let requested = input.preferred_cache_cluster_azs.clone().unwrap_or_default();
            let total = options.replicas as usize + 1;
            if !requested.is_empty() && requested.len() != total {
                return Err(ApiError::invalid_parameter_value(
                    "The number of PreferredCacheClusterAZs must equal the number of cache clusters in the group.",
                ));
            }
            crate::placement::check_zones(ops, &scope, &requested, &zones)?;
            let members = disabled_members(&scope, &id, &template, adopted.as_ref(), total, &requested, &zones);
            group.members = members.iter().map(|m| m.cluster.id.clone()).collect();
            members
        }
    };
    group.primary_cluster_id =
        group.node_groups.first().map_or_else(|| members[0].cluster.id.clone(), |g| g.primary_cluster_id.clone());
    let stored = StoredGroup { scope: scope.clone(), group, members };
    Ok(NewGroup { stored, template, adopted: adopted.map(|c| c.cluster.id), tags })
}

/// What the request asks for that needs nothing but the request to check.
struct Options {
    /// Cluster mode asked for outright, or implied by several shards.
    cluster_requested: bool,
    security: TransitSecurity,
    at_rest: bool,
    kms_key_id: Option<String>,
    user_groups: Vec<String>,
    /// Replicas of the (one) shard: NumCacheClusters - 1, or ReplicasPerNodeGroup.
    replicas: i32,
}

impl Options {
    fn check(input: &CreateReplicationGroupMessage) -> Result<Self, ApiError> {
        crate::validate::description("ReplicationGroupDescription", &input.replication_group_description)?;
        let cluster_requested = input.cluster_mode.is_some_and(|m| m != ClusterMode::Disabled)
            || input.num_node_groups.is_some_and(|n| n > 1)
            || input.node_group_configuration.as_ref().is_some_and(|c| c.len() > 1);
        let security = crate::transit::on_create(
            input.engine.as_deref().unwrap_or("redis"),
            input.transit_encryption_enabled,
            input.transit_encryption_mode,
            input.auth_token.as_deref(),
        )?;
        // At-rest encryption is chosen at creation only, and a KMS key only goes with it.
        let at_rest = input.at_rest_encryption_enabled == Some(true);
        let kms_key_id = match &input.kms_key_id {
            Some(_) if !at_rest => {
                return Err(ApiError::invalid_parameter_combination(
                    "KmsKeyId can be specified only when AtRestEncryptionEnabled is true.",
                ));
            }
            Some(key) => Some(crate::validate::kms_key_id(key)?),
            None => None,
        };
        if at_rest && input.primary_cluster_id.is_some() {
            // An existing cluster's data was never encrypted at rest; AWS has it enabled only
            // on a group created with it.
            return Err(ApiError::invalid_parameter_combination(
                "AtRestEncryptionEnabled cannot be used with PrimaryClusterId: at-rest encryption can only be enabled when a replication group is created.",
            ));
        }
        let user_groups = input.user_group_ids.clone().unwrap_or_default();
        if !user_groups.is_empty() && input.auth_token.is_some() {
            return Err(ApiError::invalid_parameter_combination(
                "AuthToken and UserGroupIds cannot both be specified.",
            ));
        }
        if input.data_tiering_enabled == Some(true) {
            return Err(ApiError::invalid_parameter_combination(
                "Data tiering is only supported on cache.r6gd node types.",
            ));
        }
        let replicas = replicas(input)?;
        Ok(Self { cluster_requested, security, at_rest, kms_key_id, user_groups, replicas })
    }
}

/// Replicas of a group with cluster mode disabled: NumCacheClusters - 1, or
/// ReplicasPerNodeGroup, never both.
fn replicas(input: &CreateReplicationGroupMessage) -> Result<i32, ApiError> {
    match (input.num_cache_clusters, input.replicas_per_node_group) {
        (Some(_), Some(_)) => Err(ApiError::invalid_parameter_combination(
            "NumCacheClusters and ReplicasPerNodeGroup cannot both be specified.",
        )),
        (Some(n), None) if !(1..=MAX_REPLICAS + 1).contains(&n) => Err(ApiError::invalid_parameter_value(format!(
            "NumCacheClusters must be between 1 and {}.",
            MAX_REPLICAS + 1
        ))),
        (Some(n), None) => Ok(n - 1),
        (None, Some(r)) if !(0..=MAX_REPLICAS).contains(&r) => Err(ApiError::invalid_parameter_value(format!(
            "ReplicasPerNodeGroup must be between 0 and {MAX_REPLICAS}."
        ))),
        (None, Some(r)) => Ok(r),
        (None, None) => Ok(0),
    }
}

/// What the new group restores: a snapshot (SnapshotName) or RDB files (SnapshotArns).
struct Restore {
    /// The snapshot, or the first file.
    from: Option<String>,
    /// How many shards the snapshot holds (or files were named).
    shards: usize,
    /// Every file SnapshotArns names.
    arns: Vec<String>,
}

impl Restore {
    async fn of(ops: &Operations, scope: &Scope, input: &CreateReplicationGroupMessage) -> Result<Self, ApiError> {
        match (&input.snapshot_name, input.snapshot_arns.as_deref()) {
            (Some(_), Some([_, ..])) => {
                Err(ApiError::invalid_parameter_combination("SnapshotName and SnapshotArns cannot both be specified."))
            }
            (Some(name), _) => {
                let engine = input.engine.as_deref().unwrap_or("redis");
                let snapshot = crate::snapshots::restorable(ops, scope, name, engine).await?;
                Ok(Self { shards: snapshot.nodes.len(), from: Some(snapshot.name), arns: Vec::new() })
            }
            (None, arns) => {
                let files = crate::snapshots::rdb_from_arns(ops, arns)?;
                Ok(Self { from: files.first().cloned(), shards: files.len(), arns: files })
            }
        }
    }
}

/// The engine: the adopted primary's, else the one asked for (Redis by default).
fn engine(input: &CreateReplicationGroupMessage, adopted: Option<&StoredCluster>) -> Result<String, ApiError> {
    let engine = match (adopted, &input.engine) {
        (Some(c), _) => c.cluster.engine.clone(),
        (None, Some(e)) => e.to_ascii_lowercase(),
        (None, None) => "redis".to_string(),
    };
    if !["redis", "valkey"].contains(&engine.as_str()) {
        return Err(ApiError::invalid_parameter_value(format!(
            "Invalid value for Engine: {engine}. Replication groups support redis and valkey."
        )));
    }
    Ok(engine)
}

/// What every new member of the group is made from, when no cluster is adopted.
async fn new_member_template(
    ops: &Operations,
    scope: &Scope,
    input: &CreateReplicationGroupMessage,
    engine: &str,
    options: &Options,
    restore: &Restore,
) -> Result<CacheClusterRecord, ApiError> {
    let node_type = input.cache_node_type.clone().ok_or_else(crate::messages::cache_node_type_required)?;
    ops.check_node_type(&node_type)?;
    let version = ops.engine_version(engine, input.engine_version.as_deref())?;
    let family = &version.cache_parameter_group_family;
    let default_group = options.cluster_requested.then(|| format!("default.{family}.cluster.on"));
    let requested_group = input.cache_parameter_group_name.as_deref().or(default_group.as_deref());
    let parameter_group = ops.parameter_group_for(scope, requested_group, family).await?;
    let port = match input.port {
        None => 6379,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => return Err(ApiError::invalid_parameter_value(format!("Invalid Port: {p}."))),
    };
    Ok(CacheClusterRecord {
        id: String::new(),
        status: status::CREATING.to_string(),
        engine: engine.to_string(),
        engine_version: version.actual_version.clone(),
        node_type,
        num_nodes: 1,
        az_mode: "single-az".to_string(),
        preferred_zones: Vec::new(),
        parameter_group,
        subnet_group: input
            .cache_subnet_group_name
            .as_deref()
            .unwrap_or(crate::subnet_groups::DEFAULT_GROUP)
            .to_ascii_lowercase(),
        security_group_ids: input.security_group_ids.clone().unwrap_or_default(),
        cache_security_groups: input.cache_security_group_names.clone().unwrap_or_default(),
        port,
        created_millis: now_millis(),
        maintenance_window: input.preferred_maintenance_window.as_deref().map_or_else(
            || Ok(clusters::DEFAULT_MAINTENANCE_WINDOW.to_string()),
            crate::validate::maintenance_window,
        )?,
        snapshot_window: Some(
            input
                .snapshot_window
                .as_deref()
                .map_or_else(|| Ok(clusters::DEFAULT_SNAPSHOT_WINDOW.to_string()), crate::validate::snapshot_window)?,
        ),
        snapshot_retention_limit: input.snapshot_retention_limit.unwrap_or(0),
        auto_minor_version_upgrade: input.auto_minor_version_upgrade.unwrap_or(true),
        network_type: "ipv4".to_string(),
        ip_discovery: "ipv4".to_string(),
        notification_topic_arn: input.notification_topic_arn.clone(),
        replication_group_id: None,
        node_group_id: None,
        pending: PendingChanges::default(),
        config_version: 1,
        config_endpoint_port: None,
        restore_from: restore.from.clone(),
        at_rest_encryption: options.at_rest,
        security: options.security.clone(),
        preferred_outpost_arn: None,
        max_memory_bytes: None,
    })
}

/// The shards of a cluster-mode group, or None for cluster mode disabled. The parameter
/// group decides, as on AWS: `cluster-enabled yes` is cluster mode.
async fn shard_plans(
    ops: &Operations,
    scope: &Scope,
    input: &CreateReplicationGroupMessage,
    options: &Options,
    template: &CacheClusterRecord,
    adopting: bool,
    snapshot_shards: usize,
) -> Result<Option<Vec<ShardPlan>>, ApiError> {
    let cluster_parameter = crate::parameter_groups::effective_values(ops, scope, &template.parameter_group)
        .await?
        .iter()
        .any(|(name, value)| name == "cluster-enabled" && value == "yes");
    if options.cluster_requested && !cluster_parameter {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Cluster mode needs a parameter group with cluster-enabled set to yes; {} has it set to no.",
            template.parameter_group
        )));
    }
    if input.cluster_mode == Some(ClusterMode::Disabled) && cluster_parameter {
        return Err(ApiError::invalid_parameter_combination(format!(
            "ClusterMode disabled needs a parameter group with cluster-enabled set to no; {} has it set to yes.",
            template.parameter_group
        )));
    }
    if !cluster_parameter {
        if snapshot_shards > 1 {
            return Err(ApiError::invalid_parameter_combination(
                "A snapshot with several shards (or several SnapshotArns) can only be restored with cluster mode enabled.",
            ));
        }
        return Ok(None);
    }
    if adopting {
        return Err(ApiError::invalid_parameter_combination(
            "PrimaryClusterId cannot be used with cluster mode enabled.",
        ));
    }
    if input.automatic_failover_enabled == Some(false) {
        return Err(ApiError::invalid_parameter_combination(
            "Redis with cluster mode enabled cannot be created with automatic failover disabled.",
        ));
    }
    Ok(Some(crate::shards::plan_create(input)?))
}

/// AutomaticFailoverEnabled and MultiAZEnabled, checked against the replicas there will be.
/// Cluster mode always fails over automatically; the fewest replicas of any shard count.
fn failover_settings(
    input: &CreateReplicationGroupMessage,
    shards: Option<&[ShardPlan]>,
    replicas: i32,
) -> Result<(bool, bool), ApiError> {
    let automatic_failover = input.automatic_failover_enabled.unwrap_or(shards.is_some());
    let multi_az = input.multi_az_enabled.unwrap_or(false);
    let replicas = shards.map_or(replicas, |s| s.iter().map(|p| p.replicas as i32).min().unwrap_or(0));
    if automatic_failover && replicas < 1 && shards.is_none() {
        return Err(ApiError::invalid_parameter_value(
            "Automatic failover requires at least one read replica (NumCacheClusters of 2 or more).",
        ));
    }
    if multi_az && (!automatic_failover || replicas < 1) {
        return Err(ApiError::invalid_parameter_combination(
            "Multi-AZ requires automatic failover to be enabled and at least one read replica.",
        ));
    }
    Ok((automatic_failover, multi_az))
}

/// The new group's record, before its members and failover settings are filled in.
fn group_record(
    id: &str,
    input: &CreateReplicationGroupMessage,
    engine: &str,
    template: &CacheClusterRecord,
    options: &Options,
) -> ReplicationGroupRecord {
    ReplicationGroupRecord {
        id: id.to_string(),
        description: input.replication_group_description.clone(),
        status: status::CREATING.to_string(),
        engine: engine.to_string(),
        node_type: template.node_type.clone(),
        automatic_failover: false,
        multi_az: false,
        primary_cluster_id: String::new(),
        members: Vec::new(),
        snapshot_retention_limit: template.snapshot_retention_limit,
        snapshot_window: template.snapshot_window.clone().unwrap_or_default(),
        snapshotting_cluster_id: None,
        created_millis: now_millis(),
        port: template.port,
        primary_endpoint_port: None,
        reader_endpoint_port: None,
        retain_primary_on_delete: false,
        failover_to: None,
        test_failovers: Vec::new(),
        cluster_mode: String::new(),
        node_groups: Vec::new(),
        configuration_endpoint_port: None,
        resharding: None,
        restore_from: None,
        restore_arns: Vec::new(),
        at_rest_encryption: options.at_rest,
        kms_key_id: options.kms_key_id.clone(),
        security: options.security.clone(),
        user_group_ids: Vec::new(),
        max_memory_bytes: None,
        migration: None,
        global_replication_group_id: None,
    }
}

/// The `total` members of a group with cluster mode disabled: the adopted primary first,
/// then new ones in the requested zones, else spread over the subnet group's zones.
fn disabled_members(
    scope: &Scope,
    id: &str,
    template: &CacheClusterRecord,
    adopted: Option<&StoredCluster>,
    total: usize,
    requested: &[String],
    zones: &[String],
) -> Vec<StoredCluster> {
    let mut members: Vec<StoredCluster> = Vec::new();
    if let Some(primary) = adopted {
        let mut primary = primary.clone();
        primary.cluster.replication_group_id = Some(id.to_string());
        members.push(primary);
    }
    let new_count = total - members.len();
    let zones_for_new = member_zones(new_count, &requested[requested.len().min(members.len())..], zones, &members);
    // A new member's id taken by another cluster is refused by the store (AWS's
    // CacheClusterAlreadyExists), never overwritten.
    let own: HashSet<String> = members.iter().map(|m| m.cluster.id.clone()).collect();
    let new_ids = next_member_ids(id, zones_for_new.len(), &own);
    for (member_id, zone) in new_ids.into_iter().zip(zones_for_new) {
        let (cluster, nodes) = member(template, member_id, id, zone);
        members.push(StoredCluster { scope: scope.clone(), cluster, nodes });
    }
    members
}

impl NewGroup {
    /// Writes the group, its members and its user-group link inside `tx`, checking again
    /// what could have changed since it was validated: the groups it uses, the cluster it
    /// adopts, the node quota.
    pub(crate) async fn write(&self, tx: &mut store::Tx, machine: &crate::NodeCapacity) -> crate::Write<()> {
        let (stored, template) = (&self.stored, &self.template);
        let (scope, id) = (&stored.scope, &stored.group.id);
        let adopted = self.adopted.as_deref();
        let arn = arn::build(scope, Kind::ReplicationGroup, id);
        let new_nodes: usize =
            stored.members.iter().filter(|m| Some(m.cluster.id.as_str()) != adopted).map(|m| m.nodes.len()).sum();
        let refusal = |e: &StoreError| match e {
            StoreError::AlreadyExists => Some(crate::messages::replication_group_already_exists()),
            StoreError::MemberExists(member) => Some(ApiError::new(
                ErrorCode::CacheClusterAlreadyExistsFault,
                format!("Cache cluster {member} already exists."),
            )),
            StoreError::QuotaExceeded(quota) => Some(ApiError::new(
                ErrorCode::ClusterQuotaForCustomerExceededFault,
                format!("The maximum number of replication groups ({quota}) has been reached."),
            )),
            _ => None,
        };
        crate::groups_still_there(tx, scope, &template.parameter_group, &template.subnet_group).await?;
        if let Some(adopted) = adopted {
            match tx.cache_cluster(scope, adopted).await? {
                Some(c) => adoptable(&c).or_else(crate::refuse)?,
                None => return crate::refuse(Kind::Cluster.not_found(adopted)),
            }
        }
        clusters::within_node_quota(tx, scope, new_nodes, machine).await?;
        tx.create_replication_group(stored, &arn, &self.tags, QUOTA).await.map_err(|e| crate::answered(e, refusal))?;
        crate::rbac::link(tx, scope, &stored.group.user_group_ids, id, true).await
    }
}
