//! Cluster mode enabled: a replication group's shards (node groups) on Redis Cluster —
//! slot ranges and AWS's rules for them, the shards a create asks for, resharding
//! (ModifyReplicationGroupShardConfiguration) and per-shard replica counts.
//!
//! Members are ordinary cache clusters named `<group>-<shard>-<nnn>` that name their
//! group and shard. Handlers only write the desired layout (which shard should own which
//! slots, which members exist); the reconciler forms the cluster and moves the slots.

use std::collections::{BTreeMap, HashSet};

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    CacheCluster as StoredCluster, EventRecord, NodeGroupRecord, ReplicationGroup as StoredGroup, ReshardingProgress,
    Scope,
};

use crate::Operations;
use crate::cache_clusters::status;
use crate::replication_groups::{self as groups, MAX_REPLICAS};

pub use model::names::SLOTS;
use model::names::{node_group_id, shard_member_id};
/// AWS's default quotas: shards per group and nodes per group.
pub(crate) const MAX_NODE_GROUPS: usize = 90;
const MAX_NODES: usize = 90;

/// Parses AWS's slot notation: `0-5460`, or several ranges separated by commas.
pub fn parse_slots(text: &str) -> Result<Vec<(u16, u16)>, ApiError> {
    let invalid = || {
        ApiError::invalid_parameter_value(format!(
            "Invalid slot range: {text}. Slots are ranges like 0-5460, from 0 to {}.",
            SLOTS - 1
        ))
    };
    text.split(',')
        .map(|part| {
            let (from, to) = part.trim().split_once('-').unwrap_or((part.trim(), part.trim()));
            let (from, to): (u16, u16) = (from.parse().map_err(|_| invalid())?, to.parse().map_err(|_| invalid())?);
            if from > to || to >= SLOTS {
                return Err(invalid());
            }
            Ok((from, to))
        })
        .collect()
}

pub fn format_slots(ranges: &[(u16, u16)]) -> String {
    ranges.iter().map(|(from, to)| format!("{from}-{to}")).collect::<Vec<_>>().join(",")
}

fn slots_of(ranges: &[(u16, u16)]) -> impl Iterator<Item = u16> + '_ {
    ranges.iter().flat_map(|&(from, to)| from..=to)
}

fn to_ranges(mut slots: Vec<u16>) -> Vec<(u16, u16)> {
    slots.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for slot in slots {
        match out.last_mut() {
            Some((_, to)) if *to + 1 == slot => *to = slot,
            _ => out.push((slot, slot)),
        }
    }
    out
}

/// How many slots each of `count` shards gets in an even split: AWS gives the remainder
/// to the first shards (3 shards: 0-5461, 5462-10922, 10923-16383).
fn even_sizes(count: usize) -> Vec<usize> {
    let total = usize::from(SLOTS);
    (0..count).map(|i| total / count + usize::from(i < total % count)).collect()
}

pub fn even_split(count: usize) -> Vec<Vec<(u16, u16)>> {
    let mut next = 0u16;
    even_sizes(count)
        .into_iter()
        .map(|size| {
            let from = next;
            next += size as u16;
            vec![(from, next - 1)]
        })
        .collect()
}

/// Every slot must belong to exactly one shard.
fn check_layout(layout: &[Vec<(u16, u16)>]) -> Result<(), ApiError> {
    let mut owners = vec![0u8; usize::from(SLOTS)];
    for slot in layout.iter().flat_map(|ranges| slots_of(ranges)) {
        let owner = &mut owners[usize::from(slot)];
        if *owner > 0 {
            return Err(ApiError::invalid_parameter_value(format!(
                "Slot {slot} is assigned to more than one node group."
            )));
        }
        *owner = 1;
    }
    if let Some(missing) = owners.iter().position(|o| *o == 0) {
        return Err(ApiError::invalid_parameter_value(format!(
            "Slot {missing} is not assigned to any node group: the slots of all node groups must cover 0-{}.",
            SLOTS - 1
        )));
    }
    Ok(())
}

/// The slots each shard should own after a reshard that keeps `keep` (in order, new shards
/// included): an even split, reached by moving as few slots as possible — shards over
/// their share give up their highest slots, shards under it take them.
pub fn rebalance(current: &[(String, Vec<(u16, u16)>)], keep: &[String]) -> BTreeMap<String, Vec<(u16, u16)>> {
    let sizes = even_sizes(keep.len());
    let mut owned: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    let mut released: Vec<u16> = Vec::new();
    for (id, ranges) in current {
        let mut slots: Vec<u16> = slots_of(ranges).collect();
        slots.sort_unstable();
        match keep.iter().position(|k| k == id) {
            Some(index) => {
                if slots.len() > sizes[index] {
                    released.extend(slots.drain(sizes[index]..));
                }
                owned.insert(id.clone(), slots);
            }
            None => released.extend(slots),
        }
    }
    released.sort_unstable();
    let mut released = released.into_iter();
    for (index, id) in keep.iter().enumerate() {
        let slots = owned.entry(id.clone()).or_default();
        while slots.len() < sizes[index] {
            match released.next() {
                Some(slot) => slots.push(slot),
                None => break,
            }
        }
    }
    owned.into_iter().map(|(id, slots)| (id, to_ranges(slots))).collect()
}

/// One shard a create asks for.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub id: String,
    pub slots: Vec<(u16, u16)>,
    pub replicas: usize,
    /// Requested zones: the primary's, then the replicas' (either may be missing).
    pub primary_zone: Option<String>,
    pub replica_zones: Vec<String>,
}

fn replica_count(count: i32, parameter: &str) -> Result<usize, ApiError> {
    if !(0..=MAX_REPLICAS).contains(&count) {
        return Err(ApiError::invalid_parameter_value(format!("{parameter} must be between 0 and {MAX_REPLICAS}.")));
    }
    Ok(count as usize)
}

/// The shards of a new cluster-mode group, from NumNodeGroups, ReplicasPerNodeGroup and
/// NodeGroupConfiguration, checked as AWS checks them.
pub fn plan_create(input: &CreateReplicationGroupMessage) -> Result<Vec<ShardPlan>, ApiError> {
    if input.num_cache_clusters.is_some() || input.preferred_cache_cluster_azs.as_ref().is_some_and(|z| !z.is_empty()) {
        return Err(ApiError::invalid_parameter_combination(
            "NumCacheClusters and PreferredCacheClusterAZs are for cluster mode disabled; use NumNodeGroups, ReplicasPerNodeGroup and NodeGroupConfiguration.",
        ));
    }
    let configs = input.node_group_configuration.clone().unwrap_or_default();
    let count = match (input.num_node_groups, configs.len()) {
        (Some(n), c) if c > 0 && n as usize != c => {
            return Err(ApiError::invalid_parameter_value(format!(
                "NumNodeGroups ({n}) must equal the number of NodeGroupConfiguration entries ({c})."
            )));
        }
        (Some(n), _) if n < 1 => return Err(ApiError::invalid_parameter_value("NumNodeGroups must be at least 1.")),
        (Some(n), _) => n as usize,
        (None, 0) => 1,
        (None, c) => c,
    };
    if count > MAX_NODE_GROUPS {
        return Err(ApiError::new(
            ErrorCode::NodeGroupsPerReplicationGroupQuotaExceededFault,
            format!("A replication group can have at most {MAX_NODE_GROUPS} node groups."),
        ));
    }
    let default_replicas = replica_count(input.replicas_per_node_group.unwrap_or(0), "ReplicasPerNodeGroup")?;
    let with_slots = configs.iter().filter(|c| c.slots.is_some()).count();
    if with_slots != 0 && with_slots != count {
        return Err(ApiError::invalid_parameter_value(
            "Slots must be given for every node group in NodeGroupConfiguration, or for none.",
        ));
    }
    let layout = if with_slots == 0 {
        even_split(count)
    } else {
        configs.iter().map(|c| parse_slots(c.slots.as_deref().unwrap_or_default())).collect::<Result<_, _>>()?
    };
    check_layout(&layout)?;
    let mut seen = HashSet::new();
    let mut plans = Vec::with_capacity(count);
    for (index, slots) in layout.into_iter().enumerate() {
        let config = configs.get(index).cloned().unwrap_or_default();
        let id = match &config.node_group_id {
            Some(id) if id.len() <= 4 && !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) => {
                node_group_id(id.parse().unwrap_or(0))
            }
            Some(id) => {
                return Err(ApiError::invalid_parameter_value(format!(
                    "Invalid NodeGroupId: {id}. It must be 1 to 4 digits."
                )));
            }
            None => node_group_id(index + 1),
        };
        if id == "0000" || !seen.insert(id.clone()) {
            return Err(ApiError::invalid_parameter_value(format!("NodeGroupId {id} is invalid or used twice.")));
        }
        let replicas = match config.replica_count {
            Some(n) => replica_count(n, "ReplicaCount")?,
            None => default_replicas,
        };
        let replica_zones = config.replica_availability_zones.clone().unwrap_or_default();
        if !replica_zones.is_empty() && replica_zones.len() != replicas {
            return Err(ApiError::invalid_parameter_value(format!(
                "Node group {id}: the number of ReplicaAvailabilityZones must equal its ReplicaCount ({replicas})."
            )));
        }
        plans.push(ShardPlan { id, slots, replicas, primary_zone: config.primary_availability_zone, replica_zones });
    }
    let nodes: usize = plans.iter().map(|p| p.replicas + 1).sum();
    if nodes > MAX_NODES {
        return Err(ApiError::new(
            ErrorCode::NodeQuotaForClusterExceededFault,
            format!("A replication group can have at most {MAX_NODES} nodes; {nodes} were requested."),
        ));
    }
    Ok(plans)
}

/// The members of one shard, the primary first.
pub fn shard_members<'a>(g: &'a StoredGroup, shard: &NodeGroupRecord) -> Vec<&'a StoredCluster> {
    let mut members: Vec<&StoredCluster> = g
        .members
        .iter()
        .filter(|m| {
            m.cluster.node_group_id.as_deref() == Some(shard.id.as_str()) && m.cluster.status != status::DELETING
        })
        .collect();
    members.sort_by_key(|m| (m.cluster.id != shard.primary_cluster_id, m.cluster.id.clone()));
    members
}

/// The Describe form of a cluster-mode group's shards.
pub fn node_groups_output(g: &StoredGroup, host: &str) -> Vec<NodeGroup> {
    let compatible = g.group.cluster_mode == "compatible";
    g.group
        .node_groups
        .iter()
        .map(|shard| NodeGroup {
            node_group_id: Some(shard.id.clone()),
            node_group_members: Some(
                shard_members(g, shard)
                    .into_iter()
                    .map(|m| groups::member_output(m, m.cluster.id == shard.primary_cluster_id, false, host))
                    .collect(),
            ),
            // Compatible mode keeps serving clients that do not speak the cluster protocol.
            primary_endpoint: compatible.then(|| groups::endpoint(host, g.group.primary_endpoint_port)).flatten(),
            reader_endpoint: compatible.then(|| groups::endpoint(host, g.group.reader_endpoint_port)).flatten(),
            slots: Some(format_slots(&shard.slots)),
            status: Some(
                if shard.removing || shard_members(g, shard).iter().any(|m| m.cluster.status == status::CREATING) {
                    status::MODIFYING
                } else {
                    status::AVAILABLE
                }
                .to_string(),
            ),
        })
        .collect()
}

/// What new members are made from: the settings they copy, where they may go.
pub struct Template<'a> {
    pub cluster: &'a store::CacheClusterRecord,
    pub scope: &'a Scope,
    /// The zones of the group's subnet group.
    pub zones: &'a [String],
}

/// New members for `shard`: `count` of them, in `requested` zones or spread over the
/// template's zones away from the zones already used.
fn add_members(
    template: &Template,
    group: &mut store::ReplicationGroupRecord,
    members: &mut Vec<StoredCluster>,
    shard: &str,
    count: usize,
    requested: &[String],
) {
    let (scope, zones) = (template.scope, template.zones);
    let placed: Vec<store::CacheNodeRecord> = members.iter().flat_map(|m| m.nodes.clone()).collect();
    let shard_zones: Vec<store::CacheNodeRecord> = members
        .iter()
        .filter(|m| m.cluster.node_group_id.as_deref() == Some(shard))
        .flat_map(|m| m.nodes.clone())
        .collect();
    // Within a shard, members go to different zones first; across shards, load evens out.
    let existing = if shard_zones.is_empty() { placed } else { shard_zones };
    let new_zones = crate::placement::place(count, requested, "cross-az", zones, &existing);
    let taken: HashSet<String> = members.iter().map(|m| m.cluster.id.clone()).collect();
    let ids = (1..).map(|i| shard_member_id(&group.id, shard, i)).filter(|id| !taken.contains(id)).take(count);
    for (id, zone) in ids.zip(new_zones) {
        let (mut cluster, nodes) = groups::member(template.cluster, id, &group.id, zone);
        cluster.node_group_id = Some(shard.to_string());
        cluster.restore_from = None;
        group.members.push(cluster.id.clone());
        members.push(StoredCluster { scope: scope.clone(), cluster, nodes });
    }
}

/// A new shard `id` owning `slots`: its `count` members (the first is its primary) and its
/// record.
fn add_shard(
    template: &Template,
    group: &mut store::ReplicationGroupRecord,
    members: &mut Vec<StoredCluster>,
    id: &str,
    slots: Vec<(u16, u16)>,
    count: usize,
    requested: &[String],
) {
    add_members(template, group, members, id, count, requested);
    let primary = members
        .iter()
        .filter(|m| m.cluster.node_group_id.as_deref() == Some(id))
        .map(|m| m.cluster.id.clone())
        .min()
        .unwrap_or_default();
    group.node_groups.push(NodeGroupRecord {
        id: id.to_string(),
        slots,
        primary_cluster_id: primary,
        failover_to: None,
        removing: false,
    });
}

/// The members of a new cluster-mode group, shard by shard; fills in `group.node_groups`.
pub fn create_members(
    template: &Template,
    group: &mut store::ReplicationGroupRecord,
    plans: &[ShardPlan],
) -> Vec<StoredCluster> {
    let zones = template.zones;
    let mut members = Vec::new();
    for plan in plans {
        let mut requested: Vec<String> = plan.primary_zone.iter().cloned().collect();
        if !plan.replica_zones.is_empty() {
            if requested.is_empty() {
                // The primary's zone is then AWS's choice: the least used one.
                let placed: Vec<store::CacheNodeRecord> =
                    members.iter().flat_map(|m: &StoredCluster| m.nodes.clone()).collect();
                requested = crate::placement::place(1, &[], "cross-az", zones, &placed);
            }
            requested.extend(plan.replica_zones.iter().cloned());
        }
        add_shard(template, group, &mut members, &plan.id, plan.slots.clone(), plan.replicas + 1, &requested);
    }
    members
}

/// The zones the plans request, for checking against the subnet group.
pub fn requested_zones(plans: &[ShardPlan]) -> Vec<String> {
    plans.iter().flat_map(|p| p.primary_zone.iter().chain(p.replica_zones.iter()).cloned()).collect()
}

fn not_cluster_mode(id: &str) -> ApiError {
    ApiError::invalid_parameter_value(format!("Replication group {id} does not have cluster mode enabled."))
}

/// A change of a cluster-mode group's shard count: to `target` shards; fewer by removing
/// `remove` or keeping `retain` (one of them, as AWS asks); new shards' zones in `zones`.
pub(crate) struct Reshard {
    pub target: usize,
    pub remove: Vec<String>,
    pub retain: Vec<String>,
    pub zones: Vec<Vec<String>>,
}

/// Applies `request` to a stored group: new shards and their members, the new slot layout
/// (the fewest slots moved), shards to remove marked, and the group `modifying`; the
/// reconciler then migrates the slots. Checks AWS's rules and quotas first.
pub(crate) fn reshard(
    group: &mut store::ReplicationGroupRecord,
    members: &mut Vec<StoredCluster>,
    request: &Reshard,
    scope: &Scope,
    zones: &[String],
) -> Result<Vec<EventRecord>, ApiError> {
    let Reshard { target, remove, retain, zones: resharding_zones } = request;
    let target = *target;
    if !group.cluster_enabled() {
        return Err(not_cluster_mode(&group.id));
    }
    let existing: Vec<String> = group.node_groups.iter().map(|g| g.id.clone()).collect();
    let unknown = remove.iter().chain(retain).find(|id| !existing.contains(id));
    if let Some(id) = unknown {
        return Err(ApiError::new(ErrorCode::NodeGroupNotFoundFault, format!("Node group {id} not found.")));
    }
    let mut keep: Vec<String> = if target < existing.len() {
        match (remove.is_empty(), retain.is_empty()) {
            (false, true) if existing.len() - remove.len() == target => {
                existing.iter().filter(|id| !remove.contains(id)).cloned().collect()
            }
            (true, false) if retain.len() == target => {
                existing.iter().filter(|id| retain.contains(id)).cloned().collect()
            }
            _ => {
                return Err(ApiError::invalid_parameter_value(format!(
                    "Scaling in to {target} node groups needs either NodeGroupsToRemove listing {} node groups or NodeGroupsToRetain listing {target}.",
                    existing.len() - target
                )));
            }
        }
    } else {
        if !remove.is_empty() || !retain.is_empty() {
            return Err(ApiError::invalid_parameter_combination(
                "NodeGroupsToRemove and NodeGroupsToRetain are only for reducing the number of node groups.",
            ));
        }
        existing.clone()
    };
    let replicas = members
        .iter()
        .filter(|m| m.cluster.node_group_id.as_deref() == existing.first().map(String::as_str))
        .count()
        .saturating_sub(1);
    let added = target.saturating_sub(existing.len());
    let nodes = members.iter().filter(|m| m.cluster.status != status::DELETING).count() + added * (replicas + 1);
    if nodes > MAX_NODES {
        return Err(ApiError::new(
            ErrorCode::NodeQuotaForClusterExceededFault,
            format!("A replication group can have at most {MAX_NODES} nodes."),
        ));
    }
    let cluster = members.first().map(|m| m.cluster.clone()).ok_or_else(|| ApiError::internal("no members"))?;
    let template = Template { cluster: &cluster, scope, zones };
    let first_new = existing.iter().filter_map(|id| id.parse::<usize>().ok()).max().unwrap_or(0) + 1;
    for index in 0..added {
        let id = node_group_id(first_new + index);
        let requested = resharding_zones.get(existing.len() + index).cloned().unwrap_or_default();
        // Slots come to it with the rebalance below.
        add_shard(&template, group, members, &id, Vec::new(), replicas + 1, &requested);
        keep.push(id);
    }
    let current_slots: Vec<(String, Vec<(u16, u16)>)> =
        group.node_groups.iter().map(|g| (g.id.clone(), g.slots.clone())).collect();
    let layout = rebalance(&current_slots, &keep);
    for shard in &mut group.node_groups {
        shard.slots = layout.get(&shard.id).cloned().unwrap_or_default();
        shard.removing = !keep.contains(&shard.id);
    }
    group.resharding = Some(ReshardingProgress { slots_moved: 0, slots_to_move: 0 });
    group.status = status::MODIFYING.to_string();
    Ok(Vec::new())
}

pub async fn modify_shard_configuration(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyReplicationGroupShardConfigurationMessage,
) -> Result<ModifyReplicationGroupShardConfigurationResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    if !input.apply_immediately {
        return Err(ApiError::invalid_parameter_value(
            "ApplyImmediately must be true: resharding can only be applied immediately.",
        ));
    }
    let count = input.node_group_count;
    if count < 1 {
        return Err(ApiError::invalid_parameter_value("NodeGroupCount must be at least 1."));
    }
    if count as usize > MAX_NODE_GROUPS {
        return Err(ApiError::new(
            ErrorCode::NodeGroupsPerReplicationGroupQuotaExceededFault,
            format!("A replication group can have at most {MAX_NODE_GROUPS} node groups."),
        ));
    }
    let current = groups::existing(ops, &scope, &input.replication_group_id).await?;
    // A member's shards change with its datastore's (the node-group operations of
    // global replication groups), all members at once.
    if let Some(global) = &current.group.global_replication_group_id {
        return Err(crate::global_datastores::part_of_global(&current.group.id, global));
    }
    let zones = ops.subnet_group_zones(&scope, &groups::subnet_group_of(&current)).await?;
    let resharding_zones: Vec<Vec<String>> = input
        .resharding_configuration
        .iter()
        .flatten()
        .map(|c| c.preferred_availability_zones.clone().unwrap_or_default())
        .collect();
    crate::placement::check_zones(ops, &scope, &resharding_zones.concat(), &zones)?;
    let request = Reshard {
        target: count as usize,
        remove: input.node_groups_to_remove.clone().unwrap_or_default(),
        retain: input.node_groups_to_retain.clone().unwrap_or_default(),
        zones: resharding_zones,
    };
    let group = groups::change_available(ops, &scope, &input.replication_group_id, |group, members| {
        reshard(group, members, &request, &scope, &zones)
    })
    .await?;
    tracing::info!(
        replication_group = group.group.id,
        node_groups = count,
        "replication group: available -> modifying (resharding)"
    );
    Ok(ModifyReplicationGroupShardConfigurationResult {
        replication_group: Some(groups::output(&group, ops.endpoint_host())),
    })
}

/// ModifyReplicationGroup with a new ClusterMode: AWS's two steps from cluster mode
/// disabled, never back. To `compatible`, every member restarts on Redis Cluster as one
/// shard holding every slot (the primary keeps its data; replicas resync), and the primary
/// and reader endpoints keep serving clients that do not speak the cluster protocol; to
/// `enabled`, only the configuration endpoint remains.
pub async fn change_cluster_mode(
    ops: &Operations,
    scope: &Scope,
    current: &StoredGroup,
    mode: ClusterMode,
    input: &ModifyReplicationGroupMessage,
) -> Result<StoredGroup, ApiError> {
    let now = if current.group.cluster_mode.is_empty() { "disabled" } else { current.group.cluster_mode.as_str() };
    let others_asked = input.engine_version.is_some()
        || input.cache_node_type.is_some()
        || input.primary_cluster_id.is_some()
        || input.automatic_failover_enabled.is_some()
        || input.multi_az_enabled.is_some()
        || input.replication_group_description.is_some();
    if others_asked {
        return Err(ApiError::invalid_parameter_combination(
            "ClusterMode cannot be changed together with other modifications.",
        ));
    }
    let parameter_group = match (now, mode) {
        ("disabled", ClusterMode::Compatible) => {
            let replicas = current.members.iter().filter(|m| m.cluster.status != status::DELETING).count() - 1;
            if !current.group.automatic_failover || replicas < 1 {
                return Err(ApiError::invalid_parameter_combination(
                    "Changing cluster mode requires automatic failover enabled and at least one replica.",
                ));
            }
            let first = current.members.first().ok_or_else(|| ApiError::internal("group has no members"))?;
            let version = ops.recorded_version(&first.cluster.engine, &first.cluster.engine_version)?;
            if model::catalog::is_downgrade("7.0", &version.engine_version) {
                return Err(ApiError::invalid_parameter_combination(
                    "Changing cluster mode requires engine version 7.0 or later.",
                ));
            }
            let family = &version.cache_parameter_group_family;
            // A default group is swapped for its cluster.on twin, as AWS does.
            let name = match &input.cache_parameter_group_name {
                Some(name) => name.to_ascii_lowercase(),
                None if first.cluster.parameter_group == format!("default.{family}") => {
                    format!("default.{family}.cluster.on")
                }
                None => {
                    return Err(ApiError::invalid_parameter_combination(
                        "Changing cluster mode needs a CacheParameterGroupName with cluster-enabled set to yes.",
                    ));
                }
            };
            let name = ops.parameter_group_for(scope, Some(&name), family).await?;
            let cluster_enabled = crate::parameter_groups::effective_values(ops, scope, &name)
                .await?
                .iter()
                .any(|(k, v)| k == "cluster-enabled" && v == "yes");
            if !cluster_enabled {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Parameter group {name} must have cluster-enabled set to yes."
                )));
            }
            Some(name)
        }
        ("compatible", ClusterMode::Enabled) => None,
        (now, wanted) => {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Cluster mode can only go from disabled to compatible to enabled, not from {now} to {}.",
                wanted.as_str()
            )));
        }
    };
    let group = groups::change_available(ops, scope, &current.group.id, |group, members| {
        group.cluster_mode = mode.as_str().to_string();
        if let Some(name) = &parameter_group {
            group.node_groups = vec![NodeGroupRecord {
                id: groups::NODE_GROUP_ID.to_string(),
                slots: vec![(0, SLOTS - 1)],
                primary_cluster_id: group.primary_cluster_id.clone(),
                failover_to: None,
                removing: false,
            }];
            for member in members.iter_mut().filter(|m| m.cluster.status != status::DELETING) {
                member.cluster.node_group_id = Some(groups::NODE_GROUP_ID.to_string());
                member.cluster.parameter_group = name.clone();
                member.cluster.status = status::MODIFYING.to_string();
                member.nodes.iter_mut().for_each(|n| n.reboot_requested = true);
            }
            group.status = status::MODIFYING.to_string();
        }
        tracing::info!(replication_group = group.id, to = group.cluster_mode, "cluster mode changing");
        Ok(Vec::new())
    })
    .await?;
    Ok(group)
}

/// An IncreaseReplicaCount / DecreaseReplicaCount on a cluster-mode group.
pub struct ReplicaChange {
    /// `NewReplicaCount`, for every shard.
    pub new_count: Option<i32>,
    /// `ReplicaConfiguration`, per shard.
    pub configuration: Vec<ConfigureShard>,
    /// `ReplicasToRemove`.
    pub remove: Vec<String>,
    pub increase: bool,
}

/// Applies per-shard replica counts to a cluster-mode group.
pub fn change_shard_replicas(
    group: &mut store::ReplicationGroupRecord,
    members: &mut Vec<StoredCluster>,
    scope: &Scope,
    zones: &[String],
    change: &ReplicaChange,
) -> Result<(), ApiError> {
    let ReplicaChange { new_count, configuration, remove, increase } = change;
    let (new_count, increase) = (*new_count, *increase);
    let mut targets: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for shard in &group.node_groups {
        let current = shard_replicas(members, shard).len();
        let count = match new_count {
            Some(n) => replica_count(n, "NewReplicaCount")?,
            None => current,
        };
        targets.insert(shard.id.clone(), (count, Vec::new()));
    }
    for config in configuration {
        let Some(target) = targets.get_mut(&config.node_group_id) else {
            return Err(ApiError::new(
                ErrorCode::NodeGroupNotFoundFault,
                format!("Node group {} not found.", config.node_group_id),
            ));
        };
        *target = (
            replica_count(config.new_replica_count, "NewReplicaCount")?,
            config.preferred_availability_zones.clone().unwrap_or_default(),
        );
    }
    for name in remove {
        let Some(member) = members.iter().find(|m| &m.cluster.id == name && m.cluster.status != status::DELETING)
        else {
            return Err(ApiError::invalid_parameter_value(format!(
                "Cache cluster {name} is not a member of {}.",
                group.id
            )));
        };
        let shard = member.cluster.node_group_id.clone().unwrap_or_default();
        if group.node_groups.iter().any(|g| g.primary_cluster_id == *name) {
            return Err(ApiError::invalid_parameter_value(format!("Cannot remove the primary cluster {name}.")));
        }
        if new_count.is_none()
            && configuration.is_empty()
            && let Some(target) = targets.get_mut(&shard)
        {
            target.0 = target.0.saturating_sub(1);
        }
    }
    let cluster = members.first().map(|m| m.cluster.clone()).ok_or_else(|| ApiError::internal("no members"))?;
    let template = Template { cluster: &cluster, scope, zones };
    let shards = group.node_groups.clone();
    let mut changed = false;
    for shard in &shards {
        let current = shard_replicas(members, shard);
        let (target, zones_wanted) = targets.get(&shard.id).cloned().unwrap_or((current.len(), Vec::new()));
        if increase && target > current.len() {
            changed = true;
            add_members(&template, group, members, &shard.id, target - current.len(), &zones_wanted);
        } else if !increase && target < current.len() {
            changed = true;
            let named: Vec<String> = current.iter().filter(|id| remove.contains(id)).cloned().collect();
            let mut drop: Vec<String> = named.into_iter().take(current.len() - target).collect();
            for id in current.iter().rev() {
                if drop.len() >= current.len() - target {
                    break;
                }
                if !drop.contains(id) {
                    drop.push(id.clone());
                }
            }
            for member in members.iter_mut().filter(|m| drop.contains(&m.cluster.id)) {
                member.cluster.status = status::DELETING.to_string();
                member.nodes.iter_mut().for_each(|n| n.status = status::DELETING.to_string());
            }
            group.members.retain(|m| !drop.contains(m));
        } else if target != current.len() {
            let word = if increase { "greater" } else { "less" };
            return Err(ApiError::invalid_parameter_value(format!(
                "The new replica count of node group {} ({target}) must be {word} than the current one ({}).",
                shard.id,
                current.len()
            )));
        }
    }
    if !changed {
        return Err(ApiError::invalid_parameter_value("No node group's replica count changes."));
    }
    Ok(())
}

/// The replica member ids of a shard, oldest first.
fn shard_replicas(members: &[StoredCluster], shard: &NodeGroupRecord) -> Vec<String> {
    let mut ids: Vec<String> = members
        .iter()
        .filter(|m| {
            m.cluster.node_group_id.as_deref() == Some(shard.id.as_str())
                && m.cluster.status != status::DELETING
                && m.cluster.id != shard.primary_cluster_id
        })
        .map(|m| m.cluster.id.clone())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_aws() {
        assert_eq!(even_split(3), vec![vec![(0, 5461)], vec![(5462, 10922)], vec![(10923, 16383)]]);
        assert_eq!(even_split(1), vec![vec![(0, 16383)]]);
    }

    #[test]
    fn parses_and_checks_slots() {
        assert_eq!(parse_slots("0-100,200").expect("slots"), vec![(0, 100), (200, 200)]);
        assert!(parse_slots("5-1").is_err());
        assert!(parse_slots("0-16384").is_err());
        assert!(parse_slots("a-b").is_err());
        assert!(check_layout(&[vec![(0, 8191)], vec![(8192, 16383)]]).is_ok());
        assert!(check_layout(&[vec![(0, 8191)], vec![(8191, 16383)]]).is_err());
        assert!(check_layout(&[vec![(0, 8190)], vec![(8192, 16383)]]).is_err());
    }

    #[test]
    fn rebalance_moves_only_what_it_must() {
        let current: Vec<(String, Vec<(u16, u16)>)> =
            even_split(3).into_iter().enumerate().map(|(i, r)| (node_group_id(i + 1), r)).collect();
        let keep: Vec<String> = (1..=4).map(node_group_id).collect();
        let layout = rebalance(&current, &keep);
        let sizes: Vec<usize> = keep.iter().map(|id| slots_of(&layout[id]).count()).collect();
        assert_eq!(sizes, vec![4096; 4]);
        // Existing shards keep their lowest slots.
        assert_eq!(layout["0001"], vec![(0, 4095)]);
        check_layout(&layout.values().cloned().collect::<Vec<_>>()).expect("every slot once");

        let back = rebalance(&layout.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(), &keep[..2]);
        assert_eq!(back.len(), 2);
        check_layout(&back.values().cloned().collect::<Vec<_>>()).expect("every slot once");
    }
}
