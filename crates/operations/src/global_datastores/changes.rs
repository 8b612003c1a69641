//! Changes made to every member of a datastore at once, in one write: ModifyGlobalReplicationGroup
//! (each member gets the ModifyReplicationGroup it amounts to, checked by the same plan) and,
//! with cluster mode, Increase/DecreaseNodeGroupsInGlobalReplicationGroup and
//! RebalanceSlotsInGlobalReplicationGroup (each member resharded as
//! ModifyReplicationGroupShardConfiguration would).

use protocol::shapes::*;
use protocol::{ApiError, RequestContext};
use store::{CacheCluster as StoredCluster, EventRecord, GlobalReplicationGroupRecord, ReplicationGroupRecord, Scope};

use super::{Linked, global_status, invalid_state, member_scope, not_found};
use crate::cache_clusters::status;
use crate::replication_groups::modify::Plan;
use crate::shards::Reshard;
use crate::{Operations, refuse, written};

/// ApplyImmediately is required and only `true` is taken (API reference: "Modifications to
/// Global Replication Groups cannot be requested to be applied in PreferredMaintenceWindow",
/// and "the only permitted value for this parameter is true").
fn immediately(apply_immediately: bool) -> Result<(), ApiError> {
    if apply_immediately {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter_value(
            "Modifications to Global Replication Groups cannot be requested to be applied in PreferredMaintenceWindow.",
        ))
    }
}

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyGlobalReplicationGroupMessage,
) -> Result<ModifyGlobalReplicationGroupResult, ApiError> {
    immediately(input.apply_immediately)?;
    if let Some(description) = &input.global_replication_group_description {
        crate::validate::description_length("GlobalReplicationGroupDescription", description)?;
    }
    let account = ctx.account.clone();
    let linked =
        Linked::read(ops, &account, super::existing(ops, &account, &input.global_replication_group_id).await?).await?;
    if let Some(node_type) = &input.cache_node_type {
        super::secondary::supported_node_type(ops, node_type)?;
    }
    // What each member is asked: the same ModifyReplicationGroup, checked in its own region.
    let asks_members = input.cache_node_type.is_some()
        || input.engine.is_some()
        || input.engine_version.is_some()
        || input.cache_parameter_group_name.is_some()
        || input.automatic_failover_enabled.is_some();
    let mut messages = Vec::new();
    for (member, group) in linked.record.members.iter().zip(&linked.groups) {
        let Some(group) = group.as_ref().filter(|_| asks_members) else { continue };
        messages.push((
            member_scope(&account, member),
            group,
            ModifyReplicationGroupMessage {
                replication_group_id: member.replication_group_id.clone(),
                apply_immediately: Some(true),
                cache_node_type: input.cache_node_type.clone(),
                engine: input.engine.clone(),
                engine_version: input.engine_version.clone(),
                cache_parameter_group_name: input.cache_parameter_group_name.clone(),
                automatic_failover_enabled: input.automatic_failover_enabled,
                ..Default::default()
            },
        ));
    }
    let mut plans = Vec::new();
    for (scope, group, message) in &messages {
        plans.push((scope, Plan::check(ops, scope, group, message).await?, &message.replication_group_id));
    }
    let record = apply(
        ops,
        &account,
        &input.global_replication_group_id,
        |record| {
            if let Some(description) = &input.global_replication_group_description {
                record.description = description.clone();
            }
            if asks_members {
                record.status = global_status::MODIFYING.to_string();
            }
        },
        plans.iter().map(|(scope, plan, id)| {
            (*scope, id.as_str(), |g: &mut ReplicationGroupRecord, m: &mut Vec<StoredCluster>| plan.apply(g, m))
        }),
    )
    .await?;
    let linked = Linked::read(ops, &account, record).await?;
    Ok(ModifyGlobalReplicationGroupResult { global_replication_group: Some(linked.output(&account, true)) })
}

pub async fn increase_node_groups(
    ops: &Operations,
    ctx: &RequestContext,
    input: IncreaseNodeGroupsInGlobalReplicationGroupMessage,
) -> Result<IncreaseNodeGroupsInGlobalReplicationGroupResult, ApiError> {
    immediately(input.apply_immediately)?;
    let zones_by_group = |group: &str, region: &str| -> Vec<Vec<String>> {
        input
            .regional_configurations
            .iter()
            .flatten()
            .filter(|c| c.replication_group_id.eq_ignore_ascii_case(group) && c.replication_group_region == region)
            .flat_map(|c| {
                c.resharding_configuration.iter().map(|r| r.preferred_availability_zones.clone().unwrap_or_default())
            })
            .collect()
    };
    let record = reshard_members(ops, ctx, &input.global_replication_group_id, |current, group, region| {
        let target = usize::try_from(input.node_group_count).unwrap_or(0);
        if target <= current {
            return Err(ApiError::invalid_parameter_value(format!(
                "NodeGroupCount must be greater than the current number of node groups ({current})."
            )));
        }
        Ok(Reshard { target, remove: Vec::new(), retain: Vec::new(), zones: zones_by_group(group, region) })
    })
    .await?;
    Ok(IncreaseNodeGroupsInGlobalReplicationGroupResult { global_replication_group: Some(record) })
}

pub async fn decrease_node_groups(
    ops: &Operations,
    ctx: &RequestContext,
    input: DecreaseNodeGroupsInGlobalReplicationGroupMessage,
) -> Result<DecreaseNodeGroupsInGlobalReplicationGroupResult, ApiError> {
    immediately(input.apply_immediately)?;
    let global_id = input.global_replication_group_id.clone();
    // Global node group ids are `<global id>-<node group id>`; each member's shard is the
    // node group id.
    let local = |ids: &Option<Vec<String>>| -> Result<Vec<String>, ApiError> {
        ids.iter()
            .flatten()
            .map(|id| {
                id.strip_prefix(&format!("{global_id}-")).map(str::to_string).ok_or_else(|| {
                    ApiError::invalid_parameter_value(format!(
                        "{id} is not a node group of Global replication group {global_id}."
                    ))
                })
            })
            .collect()
    };
    let (remove, retain) = (local(&input.global_node_groups_to_remove)?, local(&input.global_node_groups_to_retain)?);
    let record = reshard_members(ops, ctx, &global_id, |current, _, _| {
        let target = usize::try_from(input.node_group_count).unwrap_or(0);
        if target >= current || target == 0 {
            return Err(ApiError::invalid_parameter_value(format!(
                "NodeGroupCount must be at least 1 and less than the current number of node groups ({current})."
            )));
        }
        Ok(Reshard { target, remove: remove.clone(), retain: retain.clone(), zones: Vec::new() })
    })
    .await?;
    Ok(DecreaseNodeGroupsInGlobalReplicationGroupResult { global_replication_group: Some(record) })
}

pub async fn rebalance_slots(
    ops: &Operations,
    ctx: &RequestContext,
    input: RebalanceSlotsInGlobalReplicationGroupMessage,
) -> Result<RebalanceSlotsInGlobalReplicationGroupResult, ApiError> {
    immediately(input.apply_immediately)?;
    let record = reshard_members(ops, ctx, &input.global_replication_group_id, |current, _, _| {
        Ok(Reshard { target: current, remove: Vec::new(), retain: Vec::new(), zones: Vec::new() })
    })
    .await?;
    Ok(RebalanceSlotsInGlobalReplicationGroupResult { global_replication_group: Some(record) })
}

/// Reshards every member as `request(current shard count, group, region)` asks, in one write.
async fn reshard_members(
    ops: &Operations,
    ctx: &RequestContext,
    global_id: &str,
    request: impl Fn(usize, &str, &str) -> Result<Reshard, ApiError>,
) -> Result<GlobalReplicationGroup, ApiError> {
    let account = ctx.account.clone();
    let linked = Linked::read(ops, &account, super::existing(ops, &account, global_id).await?).await?;
    if !linked.primary_group().is_some_and(|g| g.group.cluster_enabled()) {
        return Err(ApiError::invalid_parameter_value(format!(
            "Global replication group {global_id} does not have cluster mode enabled."
        )));
    }
    let mut changes = Vec::new();
    for (member, group) in linked.record.members.iter().zip(&linked.groups) {
        let Some(group) = group else { continue };
        let scope = member_scope(&account, member);
        let zones = ops.subnet_group_zones(&scope, &crate::replication_groups::subnet_group_of(group)).await?;
        let reshard = request(group.group.node_groups.len(), &member.replication_group_id, &member.region)?;
        changes.push((scope, member.replication_group_id.clone(), reshard, zones));
    }
    let record = apply(
        ops,
        &account,
        global_id,
        |record| record.status = global_status::MODIFYING.to_string(),
        changes.iter().map(|(scope, id, reshard, zones)| {
            (scope, id.as_str(), move |g: &mut ReplicationGroupRecord, m: &mut Vec<StoredCluster>| {
                crate::shards::reshard(g, m, reshard, scope, zones)
            })
        }),
    )
    .await?;
    Ok(Linked::read(ops, &account, record).await?.output(&account, true))
}

/// One write: the datastore (settled) changed by `change`, and each listed member group
/// (available) by its own change; any refusal leaves everything as it was.
async fn apply<'a, F>(
    ops: &Operations,
    account: &str,
    global_id: &str,
    change: impl FnOnce(&mut GlobalReplicationGroupRecord),
    members: impl IntoIterator<Item = (&'a Scope, &'a str, F)>,
) -> Result<GlobalReplicationGroupRecord, ApiError>
where
    F: FnOnce(&mut ReplicationGroupRecord, &mut Vec<StoredCluster>) -> Result<Vec<EventRecord>, ApiError>,
{
    let members: Vec<_> = members.into_iter().collect();
    let record = written(
        ops.store
            .write(async |tx| {
                let updated = tx.update_global_replication_group(account, global_id, |g| {
                    if !global_status::SETTLED.contains(&g.status.as_str()) {
                        return Err(invalid_state());
                    }
                    change(g);
                    Ok(())
                });
                let Some(record) = updated.await? else { return refuse(not_found(global_id)) };
                for (scope, id, change) in members {
                    let updated = tx.update_replication_group(scope, id, |g, m| {
                        if g.status != status::AVAILABLE {
                            return Err(crate::replication_groups::invalid_state(&g.id, &g.status));
                        }
                        change(g, m)
                    });
                    if updated.await?.is_none() {
                        return refuse(crate::replication_groups::not_found(id));
                    }
                }
                Ok(record)
            })
            .await,
    )?;
    Ok(record)
}
