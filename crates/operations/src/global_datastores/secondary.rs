//! A secondary group: CreateReplicationGroup with `GlobalReplicationGroupId`, in a region the
//! datastore has no member in yet. It inherits from the primary what must match (engine,
//! version, node type, shards, encryption, as the user guide's "All clusters … should have
//! the same …" and CloudFormation's "prepopulated to match the primary cluster" say), and
//! AWS refuses the request when it gives any of them.

use protocol::shapes::*;
use protocol::{ApiError, RequestContext};
use store::{GlobalMemberRecord, GlobalRole, Scope};

use super::{MAX_SECONDARIES, existing, global_status, invalid_state, member_scope};
use crate::{Operations, Write, refuse};

/// AWS's answer to a secondary given what it inherits (quoted in
/// terraform-provider-aws#24854).
fn inherited_parameter() -> ApiError {
    ApiError::invalid_parameter_combination(
        "Cannot use the given parameters when creating new replication group in an existing global replication group.",
    )
}

/// Global datastores need Redis OSS 5.0.6 or later (user guide, "Prerequisites and
/// limitations"), or Valkey (7.2 and 8.0 in the Terraform provider's acceptance tests).
pub(crate) fn supported_engine(engine: &str, version: &str) -> Result<(), ApiError> {
    let parts: Vec<u32> = version.split('.').map_while(|p| p.parse().ok()).collect();
    let at_least = |minimum: &[u32]| parts.as_slice() >= minimum;
    let supported = match engine {
        "redis" => at_least(&[5, 0, 6]),
        "valkey" => true,
        _ => false,
    };
    if supported {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Global datastore requires Valkey, or Redis OSS 5.0.6 or later; the replication group runs {engine} {version}."
        )))
    }
}

/// "Global datastores are not supported on instances older than m5 or r5" (user guide):
/// M and R families of the fifth generation on.
pub(crate) fn supported_node_type(ops: &Operations, node_type: &str) -> Result<(), ApiError> {
    ops.check_node_type(node_type)?;
    let family = node_type.strip_prefix("cache.").and_then(|t| t.split('.').next()).unwrap_or_default();
    let mut chars = family.chars();
    let class = chars.next();
    let generation: String = chars.take_while(char::is_ascii_digit).collect();
    let modern = matches!(class, Some('m' | 'r')) && generation.parse::<u32>().is_ok_and(|g| g >= 5);
    if modern {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Global datastore is not supported for node type {node_type}: use an M5 or R5 node type or newer."
        )))
    }
}

/// The request as the secondary's CreateReplicationGroup plans it: what it inherits filled
/// in from the datastore's primary group.
pub(crate) async fn inherit(
    ops: &Operations,
    ctx: &RequestContext,
    scope: &Scope,
    input: &CreateReplicationGroupMessage,
    global_id: &str,
) -> Result<CreateReplicationGroupMessage, ApiError> {
    let given_inherited = input.engine.is_some()
        || input.engine_version.is_some()
        || input.cache_node_type.is_some()
        || input.cache_parameter_group_name.is_some()
        || input.num_node_groups.is_some()
        || input.cluster_mode.is_some()
        || input.transit_encryption_enabled.is_some()
        || input.transit_encryption_mode.is_some()
        || input.at_rest_encryption_enabled.is_some()
        || input.snapshot_arns.is_some()
        || input.snapshot_name.is_some()
        || input.primary_cluster_id.is_some()
        || input.cache_security_group_names.is_some();
    if given_inherited {
        return Err(inherited_parameter());
    }
    let record = existing(ops, &ctx.account, global_id).await?;
    may_join(&record, &scope.region)?;
    let primary = record.primary().ok_or_else(invalid_state)?;
    let group =
        crate::replication_groups::existing(ops, &member_scope(&ctx.account, primary), &primary.replication_group_id)
            .await?;
    let first = group.members.first().map(|m| &m.cluster);
    let mut inherited = input.clone();
    inherited.engine = Some(group.group.engine.clone());
    // As the catalog lists it (`7.1`, not the recorded `7.1.0`).
    let version = first.map(|c| ops.recorded_version(&group.group.engine, &c.engine_version)).transpose()?;
    inherited.engine_version = version.map(|v| v.engine_version.clone());
    inherited.cache_node_type = Some(group.group.node_type.clone());
    inherited.at_rest_encryption_enabled = Some(group.group.at_rest_encryption);
    inherited.transit_encryption_enabled = Some(group.group.security.transit_encryption);
    inherited.transit_encryption_mode = crate::transit::mode_output(&group.group.security);
    if group.group.cluster_enabled() {
        // The primary's shards, slot for slot, so that each secondary shard holds what the
        // matching primary shard does. Replica counts and zones stay the request's.
        let given = input.node_group_configuration.clone().unwrap_or_default();
        if given.iter().any(|c| c.slots.is_some() || c.node_group_id.is_some()) {
            return Err(inherited_parameter());
        }
        let shards: Vec<NodeGroupConfiguration> = group
            .group
            .node_groups
            .iter()
            .filter(|n| !n.removing)
            .enumerate()
            .map(|(i, shard)| NodeGroupConfiguration {
                node_group_id: Some(shard.id.clone()),
                slots: Some(crate::shards::format_slots(&shard.slots)),
                ..given.get(i).cloned().unwrap_or_default()
            })
            .collect();
        inherited.cluster_mode = Some(ClusterMode::Enabled);
        inherited.num_node_groups = Some(shards.len() as i32);
        inherited.node_group_configuration = Some(shards);
    }
    Ok(inherited)
}

/// Whether a group in `region` may join the datastore now.
fn may_join(record: &store::GlobalReplicationGroupRecord, region: &str) -> Result<(), ApiError> {
    if !global_status::SETTLED.contains(&record.status.as_str()) {
        return Err(invalid_state());
    }
    if record.members.iter().any(|m| m.region == region) {
        return Err(ApiError::invalid_parameter_value(format!(
            "Global replication group {} already has a member in region {region}.",
            record.id
        )));
    }
    if record.secondaries().count() >= MAX_SECONDARIES {
        return Err(ApiError::invalid_parameter_value(format!(
            "Global replication group {} already has {MAX_SECONDARIES} secondary regions, the most it can have.",
            record.id
        )));
    }
    Ok(())
}

/// Inside the write that creates the secondary group `group` of `scope`: the datastore
/// takes it as a member (checked again: another region may have joined meanwhile).
pub(crate) async fn join(tx: &mut store::Tx, scope: &Scope, global_id: &str, group: &str) -> Write<()> {
    let joined = tx.update_global_replication_group(&scope.account, global_id, |record| {
        may_join(record, &scope.region)?;
        record.members.push(GlobalMemberRecord {
            region: scope.region.clone(),
            replication_group_id: group.to_string(),
            role: GlobalRole::Secondary,
            status: global_status::member::ASSOCIATING.to_string(),
            disassociating: false,
        });
        record.status = global_status::MODIFYING.to_string();
        Ok(())
    });
    match joined.await? {
        Some(_) => Ok(()),
        None => refuse(super::not_found(global_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_from_redis_5_0_6_and_valkey() {
        assert!(supported_engine("redis", "5.0.6").is_ok());
        assert!(supported_engine("redis", "7.1.0").is_ok());
        assert!(supported_engine("redis", "5.0.5").is_err());
        assert!(supported_engine("redis", "4.0.10").is_err());
        assert!(supported_engine("valkey", "8.0.1").is_ok());
        assert!(supported_engine("memcached", "1.6.22").is_err());
    }
}
