//! Replication groups with cluster mode disabled: one shard, a primary and up to five
//! replicas, each member an ordinary cache cluster (`<group>-001`, …) that names the group.
//! As for clusters, handlers write desired state and the reconciler does the rest:
//! replication links, the emulator-served primary and reader endpoints, and failover.

use std::collections::HashSet;

use aws_smithy_types::DateTime;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    CacheCluster as StoredCluster, CacheClusterRecord, EventRecord, PendingChanges, ReplicationGroup as StoredGroup,
    ReplicationGroupRecord, Scope, StoreError, now_millis,
};

use crate::arn::{self, Kind, NotFound as _};
use crate::cache_clusters::{self as clusters, status};
use crate::pagination::paginate;
use crate::{Operations, internal, refuse, tags, written};
use store::SnapshotRecord;

const MAX_ID_LEN: usize = 40;
const QUOTA: usize = 300;
pub(crate) const MAX_REPLICAS: i32 = 5;
pub use model::names::NODE_GROUP_ID;
pub use model::status::source::REPLICATION_GROUP as SOURCE_TYPE;
/// TestFailover may run at most this often per day.
const TEST_FAILOVERS_PER_DAY: usize = 15;

fn not_found(id: &str) -> ApiError {
    Kind::ReplicationGroup.not_found(id)
}

fn invalid_state(id: &str, status: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidReplicationGroupStateFault,
        format!("Replication group {id} is not in available state (current state: {status})."),
    )
}

pub fn member_id(group: &str, index: usize) -> String {
    format!("{group}-{index:03}")
}

/// The next `count` member ids of `group`, `<group>-001` upward, skipping the group's own
/// `members` (an adopted primary may already hold one).
fn next_member_ids(group: &str, count: usize, members: &HashSet<String>) -> Vec<String> {
    (1..).map(|i| member_id(group, i)).filter(|id| !members.contains(id)).take(count).collect()
}

/// Every cluster id of the scope.
async fn cluster_ids(ops: &Operations, scope: &Scope) -> Result<HashSet<String>, ApiError> {
    Ok(ops.store.cache_clusters(scope).await.map_err(internal)?.into_iter().map(|c| c.cluster.id).collect())
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
    cluster.running_engine_version = None;
    (cluster, vec![clusters::new_node(1, zone)])
}

pub(crate) type StoredClusterParts = (CacheClusterRecord, Vec<store::CacheNodeRecord>);

/// Zones for `count` new members: requested ones, else spread so that members (the primary
/// first) land in different zones where possible.
fn member_zones(count: usize, requested: &[String], zones: &[String], existing: &[StoredCluster]) -> Vec<String> {
    let placed: Vec<store::CacheNodeRecord> = existing.iter().flat_map(|c| c.nodes.clone()).collect();
    clusters::place(count, requested, "cross-az", zones, &placed)
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateReplicationGroupMessage,
) -> Result<CreateReplicationGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let id = clusters::validate_id("ReplicationGroupId", &input.replication_group_id, MAX_ID_LEN)?;
    if input.replication_group_description.trim().is_empty() {
        return Err(ApiError::invalid_parameter_value("ReplicationGroupDescription must not be blank."));
    }
    if let Some(global) = &input.global_replication_group_id {
        return Err(ApiError::new(
            ErrorCode::GlobalReplicationGroupNotFoundFault,
            format!("GlobalReplicationGroup not found: {global}"),
        ));
    }
    // Cluster mode is asked for outright, or implied by several shards.
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
    let requested_user_groups = input.user_group_ids.clone().unwrap_or_default();
    if !requested_user_groups.is_empty() && input.auth_token.is_some() {
        return Err(ApiError::invalid_parameter_combination("AuthToken and UserGroupIds cannot both be specified."));
    }
    // With the number of shards the snapshot holds, and every file SnapshotArns names.
    let (restore_from, snapshot_shards, restore_arns) = match (&input.snapshot_name, input.snapshot_arns.as_deref()) {
        (Some(_), Some([_, ..])) => {
            return Err(ApiError::invalid_parameter_combination(
                "SnapshotName and SnapshotArns cannot both be specified.",
            ));
        }
        (Some(name), _) => {
            let engine = input.engine.as_deref().unwrap_or("redis");
            let snapshot = crate::snapshots::restorable(ops, &scope, name, engine).await?;
            (Some(snapshot.name), snapshot.nodes.len(), Vec::new())
        }
        (None, arns) => {
            let files = crate::snapshots::rdb_from_arns(ops, arns)?;
            (files.first().cloned(), files.len(), files)
        }
    };
    if input.data_tiering_enabled == Some(true) {
        return Err(ApiError::invalid_parameter_combination(
            "Data tiering is only supported on cache.r6gd node types.",
        ));
    }

    // An existing cluster can be adopted as the primary.
    let adopted = match &input.primary_cluster_id {
        Some(primary) => {
            let c = clusters::existing(ops, &scope, primary).await?;
            adoptable(&c)?;
            Some(c)
        }
        None => None,
    };
    let engine = match (&adopted, &input.engine) {
        (Some(c), _) => c.cluster.engine.clone(),
        (None, Some(e)) => e.to_ascii_lowercase(),
        (None, None) => "redis".to_string(),
    };
    if !["redis", "valkey"].contains(&engine.as_str()) {
        return Err(ApiError::invalid_parameter_value(format!(
            "Invalid value for Engine: {engine}. Replication groups support redis and valkey."
        )));
    }
    let replicas = match (input.num_cache_clusters, input.replicas_per_node_group) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_parameter_combination(
                "NumCacheClusters and ReplicasPerNodeGroup cannot both be specified.",
            ));
        }
        (Some(n), None) => {
            if !(1..=MAX_REPLICAS + 1).contains(&n) {
                return Err(ApiError::invalid_parameter_value(format!(
                    "NumCacheClusters must be between 1 and {}.",
                    MAX_REPLICAS + 1
                )));
            }
            n - 1
        }
        (None, Some(r)) => {
            if !(0..=MAX_REPLICAS).contains(&r) {
                return Err(ApiError::invalid_parameter_value(format!(
                    "ReplicasPerNodeGroup must be between 0 and {MAX_REPLICAS}."
                )));
            }
            r
        }
        (None, None) => 0,
    };
    let template = match &adopted {
        Some(c) => c.cluster.clone(),
        None => {
            let node_type = input
                .cache_node_type
                .clone()
                .ok_or_else(|| ApiError::invalid_parameter_value("The parameter CacheNodeType must be provided."))?;
            ops.check_node_type(&node_type)?;
            let version = ops.engine_version(&engine, input.engine_version.as_deref())?;
            let family = &version.cache_parameter_group_family;
            let default_group = cluster_requested.then(|| format!("default.{family}.cluster.on"));
            let parameter_group = ops
                .parameter_group_for(
                    &scope,
                    input.cache_parameter_group_name.as_deref().or(default_group.as_deref()),
                    family,
                )
                .await?;
            let port = match input.port {
                None => 6379,
                Some(p) if (1..=65535).contains(&p) => p as u16,
                Some(p) => return Err(ApiError::invalid_parameter_value(format!("Invalid Port: {p}."))),
            };
            CacheClusterRecord {
                id: String::new(),
                status: status::CREATING.to_string(),
                engine: engine.clone(),
                engine_version: version.engine_version.clone(),
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
                    clusters::validate_maintenance_window,
                )?,
                snapshot_window: Some(input.snapshot_window.as_deref().map_or_else(
                    || Ok(clusters::DEFAULT_SNAPSHOT_WINDOW.to_string()),
                    clusters::validate_snapshot_window,
                )?),
                snapshot_retention_limit: input.snapshot_retention_limit.unwrap_or(0),
                auto_minor_version_upgrade: input.auto_minor_version_upgrade.unwrap_or(true),
                network_type: "ipv4".to_string(),
                ip_discovery: "ipv4".to_string(),
                notification_topic_arn: input.notification_topic_arn.clone(),
                replication_group_id: None,
                node_group_id: None,
                pending: PendingChanges::default(),
                config_version: 1,
                running_engine_version: None,
                config_endpoint_port: None,
                restore_from: restore_from.clone(),
                at_rest_encryption: at_rest,
                security: security.clone(),
            }
        }
    };
    if !(0..=35).contains(&template.snapshot_retention_limit) {
        return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
    }
    // The parameter group decides, as on AWS: `cluster-enabled yes` is cluster mode.
    let cluster_parameter = crate::parameter_groups::effective_values(ops, &scope, &template.parameter_group)
        .await?
        .iter()
        .any(|(name, value)| name == "cluster-enabled" && value == "yes");
    if cluster_requested && !cluster_parameter {
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
    let shards = if cluster_parameter {
        if adopted.is_some() {
            return Err(ApiError::invalid_parameter_combination(
                "PrimaryClusterId cannot be used with cluster mode enabled.",
            ));
        }
        if input.automatic_failover_enabled == Some(false) {
            return Err(ApiError::invalid_parameter_combination(
                "Redis with cluster mode enabled cannot be created with automatic failover disabled.",
            ));
        }
        Some(crate::shards::plan_create(&input)?)
    } else {
        None
    };
    if shards.is_none() && snapshot_shards > 1 {
        return Err(ApiError::invalid_parameter_combination(
            "A snapshot with several shards (or several SnapshotArns) can only be restored with cluster mode enabled.",
        ));
    }
    // Cluster mode always fails over automatically; the fewest replicas of any shard count.
    let automatic_failover = input.automatic_failover_enabled.unwrap_or(shards.is_some());
    let multi_az = input.multi_az_enabled.unwrap_or(false);
    let replicas = shards.as_ref().map_or(replicas, |s| s.iter().map(|p| p.replicas as i32).min().unwrap_or(0));
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
    let zones = ops.subnet_group_zones(&scope, &template.subnet_group).await?;
    let user_group_ids =
        crate::rbac::check_attachable(ops, &scope, &requested_user_groups, &engine, security.mode().is_some()).await?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let mut group = ReplicationGroupRecord {
        id: id.clone(),
        description: input.replication_group_description.clone(),
        status: status::CREATING.to_string(),
        engine: engine.clone(),
        node_type: template.node_type.clone(),
        automatic_failover,
        multi_az,
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
        at_rest_encryption: at_rest,
        kms_key_id,
        security: security.clone(),
        user_group_ids: user_group_ids.clone(),
    };
    let members = match &shards {
        Some(plans) => {
            clusters::check_zones(ops, &scope, &crate::shards::requested_zones(plans), &zones)?;
            let mode = if input.cluster_mode == Some(ClusterMode::Compatible) { "compatible" } else { "enabled" };
            group.cluster_mode = mode.to_string();
            // The snapshot's keys are spread over the shards once the cluster is up.
            group.restore_from = restore_from.clone();
            group.restore_arns = restore_arns.clone();
            let template = crate::shards::Template { cluster: &template, scope: &scope, zones: &zones };
            crate::shards::create_members(&template, &mut group, plans)
        }
        None => {
            group.cluster_mode = "disabled".to_string();
            let requested = input.preferred_cache_cluster_azs.clone().unwrap_or_default();
            let total = replicas as usize + 1;
            if !requested.is_empty() && requested.len() != total {
                return Err(ApiError::invalid_parameter_value(
                    "The number of PreferredCacheClusterAZs must equal the number of cache clusters in the group.",
                ));
            }
            clusters::check_zones(ops, &scope, &requested, &zones)?;
            let mut members: Vec<StoredCluster> = Vec::new();
            if let Some(primary) = &adopted {
                let mut primary = primary.clone();
                primary.cluster.replication_group_id = Some(id.clone());
                members.push(primary);
            }
            let new_count = total - members.len();
            let zones_for_new =
                member_zones(new_count, &requested[requested.len().min(members.len())..], &zones, &members);
            // A new member's id taken by another cluster is refused by the store (AWS's
            // CacheClusterAlreadyExists), never overwritten.
            let own: HashSet<String> = members.iter().map(|m| m.cluster.id.clone()).collect();
            let new_ids = next_member_ids(&id, zones_for_new.len(), &own);
            for (member_id, zone) in new_ids.into_iter().zip(zones_for_new) {
                let (cluster, nodes) = member(&template, member_id, &id, zone);
                members.push(StoredCluster { scope: scope.clone(), cluster, nodes });
            }
            group.members = members.iter().map(|m| m.cluster.id.clone()).collect();
            members
        }
    };
    group.primary_cluster_id =
        group.node_groups.first().map_or_else(|| members[0].cluster.id.clone(), |g| g.primary_cluster_id.clone());
    let stored = StoredGroup { scope: scope.clone(), group, members };
    let adopted_id = adopted.as_ref().map(|c| c.cluster.id.clone());
    let (template_parameter_group, template_subnet_group) = (&template.parameter_group, &template.subnet_group);
    let arn = arn::build(&scope, Kind::ReplicationGroup, &id);
    let new_nodes =
        stored.members.iter().filter(|m| Some(&m.cluster.id) != adopted_id.as_ref()).map(|m| m.nodes.len()).sum();
    // One write: what was validated above is checked again where it could have changed
    // since (the groups it uses, the cluster it adopts, the node quota).
    written(
        ops.store
            .write(async |tx| {
                crate::groups_still_there(tx, &scope, template_parameter_group, template_subnet_group).await?;
                if let Some(adopted) = &adopted_id {
                    match tx.cache_cluster(&scope, adopted).await? {
                        Some(c) => adoptable(&c).or_else(crate::refuse)?,
                        None => return crate::refuse(Kind::Cluster.not_found(adopted)),
                    }
                }
                clusters::within_node_quota(tx, &scope, new_nodes).await?;
                tx.create_replication_group(&stored, &arn, &tags, QUOTA).await.map_err(|e| {
                    crate::answered(e, |e| match e {
                        StoreError::AlreadyExists => Some(ApiError::new(
                            ErrorCode::ReplicationGroupAlreadyExistsFault,
                            format!("Replication group {id} already exists."),
                        )),
                        StoreError::MemberExists(member) => Some(ApiError::new(
                            ErrorCode::CacheClusterAlreadyExistsFault,
                            format!("Cache cluster {member} already exists."),
                        )),
                        StoreError::QuotaExceeded(quota) => Some(ApiError::new(
                            ErrorCode::ClusterQuotaForCustomerExceededFault,
                            format!("The maximum number of replication groups ({quota}) has been reached."),
                        )),
                        _ => None,
                    })
                })?;
                crate::rbac::link(tx, &scope, &user_group_ids, &id, true).await
            })
            .await,
    )?;
    tracing::info!(replication_group = id, members = stored.members.len(), "replication group: (none) -> creating");
    ops.wake_reconciler();
    Ok(CreateReplicationGroupResult { replication_group: Some(output(&stored)) })
}

pub(crate) fn endpoint(port: Option<u16>) -> Option<Endpoint> {
    port.map(|p| Endpoint { address: Some("127.0.0.1".to_string()), port: Some(i32::from(p)) })
}

/// One member of a node group: its role, zone, and (cluster mode disabled) its own endpoint.
pub(crate) fn member_output(m: &StoredCluster, primary: bool, with_endpoint: bool) -> NodeGroupMember {
    let node = m.nodes.first();
    NodeGroupMember {
        cache_cluster_id: Some(m.cluster.id.clone()),
        cache_node_id: node.map(|n| n.node_id.clone()),
        current_role: Some(if primary { "primary" } else { "replica" }.to_string()),
        preferred_availability_zone: node.map(|n| n.zone.clone()),
        preferred_outpost_arn: None,
        read_endpoint: node
            .filter(|n| with_endpoint && n.port != 0)
            .map(|n| Endpoint { address: Some(n.address.clone()), port: Some(i32::from(n.port)) }),
    }
}

/// The Describe form of a group.
pub fn output(g: &StoredGroup) -> ReplicationGroup {
    let group = &g.group;
    // The primary first: clients (Terraform among them) take the first member as primary.
    let mut members: Vec<&StoredCluster> = g.members.iter().filter(|m| m.cluster.status != status::DELETING).collect();
    members.sort_by_key(|m| (m.cluster.id != group.primary_cluster_id, m.cluster.id.clone()));
    let node_group_members =
        members.iter().map(|m| member_output(m, m.cluster.id == group.primary_cluster_id, true)).collect();
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
            endpoint(group.configuration_endpoint_port)
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
            crate::shards::node_groups_output(g)
        } else {
            vec![NodeGroup {
                node_group_id: Some(NODE_GROUP_ID.to_string()),
                node_group_members: Some(node_group_members),
                primary_endpoint: endpoint(group.primary_endpoint_port),
                reader_endpoint: endpoint(group.reader_endpoint_port),
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
    let page = paginate(groups, |g| g.group.id.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(ReplicationGroupMessage {
        marker: page.marker,
        replication_groups: Some(page.items.iter().map(output).collect()),
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
                let mut before = Vec::new();
                let changed = tx.update_replication_group(scope, &id, |group, members| {
                    if group.status != status::AVAILABLE {
                        return Err(invalid_state(&group.id, &group.status));
                    }
                    before = group.user_group_ids.clone();
                    change(group, members)
                });
                let Some(group) = changed.await? else { return refuse(not_found(&id)) };
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
    ops.wake_reconciler();
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
    let mark_deleting = |group: &mut ReplicationGroupRecord, members: &mut Vec<StoredCluster>| {
        if !status::DELETABLE.contains(&group.status.as_str()) {
            return Err(invalid_state(&group.id, &group.status));
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
    // One write: refused, nothing changes (the final snapshot included); its user group
    // forgets it and its automated snapshots go with it.
    let group = written(
        ops.store
            .write(async |tx| {
                if let Some(snapshot) = &final_snapshot {
                    crate::snapshots::record(tx, &scope, snapshot, &[]).await?;
                }
                let Some(group) = tx.update_replication_group(&scope, &id, mark_deleting).await? else {
                    return refuse(not_found(&id));
                };
                crate::rbac::link(tx, &scope, &group.group.user_group_ids, &group.group.id, false).await?;
                let of = |s: &SnapshotRecord| s.replication_group_id.as_deref() == Some(group.group.id.as_str());
                crate::snapshots::prune(tx, &scope, of, 0).await?;
                Ok(group)
            })
            .await,
    )?;
    ops.wake_reconciler();
    Ok(DeleteReplicationGroupResult { replication_group: Some(output(&group)) })
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
    Ok(TestFailoverResult { replication_group: Some(output(&group)) })
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
        return Ok(IncreaseReplicaCountResult { replication_group: Some(output(&group)) });
    }
    let target = replica_target(input.new_replica_count, input.replica_configuration.as_deref())?;
    let group = change_replicas(ops, &scope, &current, target, Vec::new(), true).await?;
    Ok(IncreaseReplicaCountResult { replication_group: Some(output(&group)) })
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
        return Ok(DecreaseReplicaCountResult { replication_group: Some(output(&group)) });
    }
    let target = replica_target(input.new_replica_count, input.replica_configuration.as_deref())?;
    if target.is_none() && remove.is_empty() {
        return Err(ApiError::invalid_parameter_combination(
            "Either NewReplicaCount, ReplicaConfiguration or ReplicasToRemove must be provided.",
        ));
    }
    let group = change_replicas(ops, &scope, &current, target, remove, false).await?;
    Ok(DecreaseReplicaCountResult { replication_group: Some(output(&group)) })
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

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyReplicationGroupMessage,
) -> Result<ModifyReplicationGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let current = existing(ops, &scope, &input.replication_group_id).await?;
    let security_change = crate::transit::Change {
        transit_encryption_enabled: input.transit_encryption_enabled,
        mode: input.transit_encryption_mode,
        auth_token: input.auth_token.as_deref(),
        strategy: input.auth_token_update_strategy,
        to_rbac: input.user_group_ids_to_add.as_ref().is_some_and(|u| !u.is_empty()),
    };
    crate::transit::check_change(&security_change)?;
    if input.user_group_ids_to_add.as_ref().is_some_and(|u| !u.is_empty())
        && input.auth_token.is_some()
        && input.auth_token_update_strategy != Some(AuthTokenUpdateStrategyType::Delete)
    {
        return Err(ApiError::invalid_parameter_combination(
            "UserGroupIdsToAdd cannot be combined with a new AuthToken.",
        ));
    }
    let transit_after = input.transit_encryption_enabled.unwrap_or(current.group.security.mode().is_some());
    let to_add = crate::rbac::check_attachable(
        ops,
        &scope,
        &input.user_group_ids_to_add.clone().unwrap_or_default(),
        &current.group.engine,
        transit_after,
    )
    .await?;
    let to_remove: Vec<String> =
        input.user_group_ids_to_remove.iter().flatten().map(|id| id.to_ascii_lowercase()).collect();
    if let Some(unknown) = to_remove.iter().find(|id| !current.group.user_group_ids.contains(id)) {
        return Err(ApiError::invalid_parameter_value(format!(
            "User group {unknown} is not associated with replication group {}.",
            current.group.id
        )));
    }
    if let Some(mode) = input.cluster_mode
        && mode.as_str() != current.group.cluster_mode.as_str()
        && !(mode == ClusterMode::Disabled && current.group.cluster_mode.is_empty())
    {
        let group = crate::shards::change_cluster_mode(ops, &scope, &current, mode, &input).await?;
        return Ok(ModifyReplicationGroupResult { replication_group: Some(output(&group)) });
    }
    if current.group.cluster_enabled() {
        if input.primary_cluster_id.is_some() {
            return Err(ApiError::invalid_parameter_combination(
                "PrimaryClusterId cannot be used with cluster mode enabled; use TestFailover with a NodeGroupId.",
            ));
        }
        if input.automatic_failover_enabled == Some(false) {
            return Err(ApiError::invalid_parameter_combination(
                "Automatic failover cannot be disabled for Redis with cluster mode enabled.",
            ));
        }
    }
    let family = current
        .members
        .first()
        .map(|m| {
            ops.engine_version(&m.cluster.engine, Some(&m.cluster.engine_version))
                .map(|v| v.cache_parameter_group_family.clone())
        })
        .transpose()?
        .unwrap_or_default();
    let engine = current.group.engine.clone();
    let new_version = match &input.engine_version {
        Some(v) => {
            let version = ops.engine_version(&engine, Some(v))?.clone();
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
    let target_family = new_version.as_ref().map_or(family.clone(), |v| v.cache_parameter_group_family.clone());
    let parameter_group = match &input.cache_parameter_group_name {
        Some(name) => Some(ops.parameter_group_for(&scope, Some(name), &target_family).await?),
        None => None,
    };
    if let Some(node_type) = &input.cache_node_type {
        ops.check_node_type(node_type)?;
    }
    for name in input.cache_security_group_names.iter().flatten() {
        if !crate::security_groups::exists(ops, &scope, &name.to_ascii_lowercase()).await? {
            return Err(Kind::SecurityGroup.not_found(name));
        }
    }
    let snapshot_window = input.snapshot_window.as_deref().map(clusters::validate_snapshot_window).transpose()?;
    let maintenance_window =
        input.preferred_maintenance_window.as_deref().map(clusters::validate_maintenance_window).transpose()?;
    let apply_now = input.apply_immediately.unwrap_or(false);
    let group = change_available(ops, &scope, &input.replication_group_id, |group, members| {
        let mut changed = false;
        let replicas = members.len().saturating_sub(1);
        let automatic_failover = input.automatic_failover_enabled.unwrap_or(group.automatic_failover);
        let multi_az = input.multi_az_enabled.unwrap_or(if automatic_failover { group.multi_az } else { false });
        if automatic_failover && replicas < 1 {
            return Err(ApiError::invalid_parameter_value("Automatic failover requires at least one read replica."));
        }
        if multi_az && !automatic_failover {
            return Err(ApiError::invalid_parameter_combination("Multi-AZ requires automatic failover to be enabled."));
        }
        if input.automatic_failover_enabled.is_some() || input.multi_az_enabled.is_some() {
            changed |= automatic_failover != group.automatic_failover || multi_az != group.multi_az;
            group.automatic_failover = automatic_failover;
            group.multi_az = multi_az;
        }
        if let Some(description) = &input.replication_group_description {
            changed |= *description != group.description;
            group.description = description.clone();
        }
        if let Some(limit) = input.snapshot_retention_limit {
            if !(0..=35).contains(&limit) {
                return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
            }
            changed |= limit != group.snapshot_retention_limit;
            group.snapshot_retention_limit = limit;
        }
        if let Some(window) = &snapshot_window {
            changed |= *window != group.snapshot_window;
            group.snapshot_window = window.clone();
        }
        let mut touches_nodes = false;
        for member in members.iter_mut() {
            let cluster = &mut member.cluster;
            if let Some(window) = &maintenance_window {
                changed |= *window != cluster.maintenance_window;
                cluster.maintenance_window = window.clone();
            }
            if let Some(flag) = input.auto_minor_version_upgrade {
                changed |= flag != cluster.auto_minor_version_upgrade;
                cluster.auto_minor_version_upgrade = flag;
            }
            // Settings AWS keeps per member cluster (Terraform reads them from the first).
            if let Some(ids) = &input.security_group_ids {
                changed |= *ids != cluster.security_group_ids;
                cluster.security_group_ids = ids.clone();
            }
            if let Some(names) = &input.cache_security_group_names {
                changed |= *names != cluster.cache_security_groups;
                cluster.cache_security_groups = names.clone();
            }
            if let Some(topic) = &input.notification_topic_arn {
                changed |= cluster.notification_topic_arn.as_ref() != Some(topic);
                cluster.notification_topic_arn = Some(topic.clone());
            }
            if input.notification_topic_status.as_deref() == Some("inactive") {
                changed |= cluster.notification_topic_arn.is_some();
                cluster.notification_topic_arn = None;
            }
            if let Some(group_name) = &parameter_group
                && *group_name != cluster.parameter_group
            {
                changed = true;
                touches_nodes = true;
                cluster.parameter_group = group_name.clone();
                member.nodes.iter_mut().for_each(|n| n.parameter_status = status::APPLYING.to_string());
            }
            if let Some(version) = &new_version
                && version.engine_version != cluster.engine_version
                && !apply_now
            {
                changed = true;
                cluster.pending.engine_version = Some(version.engine_version.clone());
            } else if let Some(version) = &new_version
                && version.engine_version != cluster.engine_version
            {
                if model::catalog::is_downgrade(&cluster.engine_version, &version.engine_version) {
                    return Err(ApiError::invalid_parameter_combination(format!(
                        "Cannot downgrade {} from {} to {}.",
                        cluster.engine, cluster.engine_version, version.engine_version
                    )));
                }
                changed = true;
                cluster.engine_version = version.engine_version.clone();
            }
            if let Some(node_type) = &input.cache_node_type
                && *node_type != cluster.node_type
            {
                changed = true;
                if apply_now {
                    touches_nodes = true;
                    clusters::set_node_type(cluster, &mut member.nodes, node_type);
                } else {
                    // Applied in the maintenance window, as on AWS.
                    cluster.pending.node_type = Some(node_type.clone());
                }
            }
            if touches_nodes {
                cluster.status = status::MODIFYING.to_string();
            }
        }
        // TLS and AUTH token changes apply at once (AWS does not wait for a window), to
        // every member: a TLS mode change restarts the nodes, a token change is applied live.
        if !security_change.is_empty() {
            let mut security = group.security.clone();
            if crate::transit::apply(&mut security, &security_change)? {
                tracing::info!(
                    replication_group = group.id,
                    from = ?group.security.mode(),
                    to = ?security.mode(),
                    auth_token_status = ?security.auth_token_status,
                    "replication group transit encryption / AUTH token change"
                );
                changed = true;
                touches_nodes = true;
                group.security = security.clone();
                for member in members.iter_mut() {
                    member.cluster.security = security.clone();
                    member.cluster.status = status::MODIFYING.to_string();
                }
            }
        }
        if !to_add.is_empty() || !to_remove.is_empty() {
            let mut ids: Vec<String> =
                group.user_group_ids.iter().filter(|id| !to_remove.contains(id)).cloned().collect();
            ids.extend(to_add.iter().filter(|id| !group.user_group_ids.contains(id)).cloned());
            if ids.len() > 1 {
                return Err(ApiError::invalid_parameter_value("A replication group can have at most 1 user group."));
            }
            if ids != group.user_group_ids {
                // The nodes' ACL follows at once; the group's nodes stay up.
                changed = true;
                group.user_group_ids = ids;
            }
        }
        if let Some(primary) = &input.primary_cluster_id {
            let primary = primary.to_ascii_lowercase();
            if !members.iter().any(|m| m.cluster.id == primary) {
                return Err(Kind::Cluster.not_found(&primary));
            }
            if primary != group.primary_cluster_id {
                changed = true;
                touches_nodes = true;
                group.failover_to = Some(store::FailoverRequest::To(primary));
            }
        }
        if !changed {
            return Err(ApiError::invalid_parameter_combination("No modifications were requested."));
        }
        if touches_nodes {
            group.status = status::MODIFYING.to_string();
        }
        Ok(Vec::new())
    })
    .await?;
    Ok(ModifyReplicationGroupResult { replication_group: Some(output(&group)) })
}
