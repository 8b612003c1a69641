//! Cache subnet groups. There is no VPC here: every scope has one simulated VPC, and a
//! subnet id is pinned to one of the simulated zones by a stable hash of the id.

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{Scope, StoreError, SubnetGroupRecord, SubnetRecord};

use crate::arn::{self, Kind};
use crate::pagination::paginate;
use crate::{Operations, answered, internal, messages, refuse, tags, validate, written};

/// AWS's default quotas.
const QUOTA: usize = 150;
const SUBNETS_PER_GROUP: usize = 20;
pub const DEFAULT_GROUP: &str = "default";

/// FNV-1a: a stable hash, so ids and zones stay the same across restarts and versions.
fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// An EC2-style id: `prefix-` and 17 hex digits.
fn resource_id(prefix: &str, parts: &[&str]) -> String {
    format!("{prefix}-{:017x}", stable_hash(parts))
}

fn vpc_id(scope: &Scope) -> String {
    resource_id("vpc", &[&scope.region, &scope.account])
}

fn zone_of(ops: &Operations, scope: &Scope, subnet_id: &str) -> String {
    let zones = ops.zones(&scope.region);
    let index = (stable_hash(&[subnet_id]) % zones.len().max(1) as u64) as usize;
    zones.get(index).cloned().unwrap_or_else(|| format!("{}a", scope.region))
}

/// The `default` group: one subnet per simulated zone.
pub async fn seed_default(ops: &Operations, scope: &Scope) -> Result<(), ApiError> {
    let subnets = ops
        .zones(&scope.region)
        .into_iter()
        .map(|zone| SubnetRecord {
            subnet_id: resource_id("subnet", &[&scope.account, &zone]),
            availability_zone: zone,
        })
        .collect();
    let group = SubnetGroupRecord {
        name: DEFAULT_GROUP.to_string(),
        description: "default".to_string(),
        vpc_id: vpc_id(scope),
        subnets,
    };
    ops.store.ensure_default_subnet_group(scope, &group).await.map_err(internal)
}

fn output(scope: &Scope, group: &SubnetGroupRecord) -> CacheSubnetGroup {
    CacheSubnetGroup {
        arn: Some(arn::build(scope, Kind::SubnetGroup, &group.name)),
        cache_subnet_group_description: Some(group.description.clone()),
        cache_subnet_group_name: Some(group.name.clone()),
        subnets: Some(
            group
                .subnets
                .iter()
                .map(|s| Subnet {
                    subnet_availability_zone: Some(AvailabilityZone { name: Some(s.availability_zone.clone()) }),
                    subnet_identifier: Some(s.subnet_id.clone()),
                    subnet_outpost: None,
                    supported_network_types: Some(vec![NetworkType::Ipv4]),
                })
                .collect(),
        ),
        supported_network_types: Some(vec![NetworkType::Ipv4]),
        vpc_id: Some(group.vpc_id.clone()),
    }
}

/// Validates subnet ids ([`validate::is_foreign_id`]) and places each in a zone.
fn subnets(ops: &Operations, scope: &Scope, ids: &[String]) -> Result<Vec<SubnetRecord>, ApiError> {
    if ids.is_empty() {
        return Err(messages::subnet_ids_required());
    }
    let mut records: Vec<SubnetRecord> = Vec::new();
    for id in ids {
        if !validate::is_foreign_id("subnet-", id) {
            return Err(ApiError::new(ErrorCode::InvalidSubnet, format!("The subnet ID '{id}' does not exist")));
        }
        if !records.iter().any(|r| r.subnet_id == *id) {
            records.push(SubnetRecord { subnet_id: id.clone(), availability_zone: zone_of(ops, scope, id) });
        }
    }
    if records.len() > SUBNETS_PER_GROUP {
        return Err(ApiError::new(
            ErrorCode::CacheSubnetQuotaExceededFault,
            format!("A cache subnet group can have at most {SUBNETS_PER_GROUP} subnets."),
        ));
    }
    Ok(records)
}

fn not_found(name: &str) -> ApiError {
    messages::subnet_group_not_found(name)
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateCacheSubnetGroupMessage,
) -> Result<CreateCacheSubnetGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    validate::group_name("CacheSubnetGroupName", &input.cache_subnet_group_name)?;
    validate::description("CacheSubnetGroupDescription", &input.cache_subnet_group_description)?;
    let subnets = subnets(ops, &scope, &input.subnet_ids)?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let group = SubnetGroupRecord {
        name: input.cache_subnet_group_name.to_ascii_lowercase(),
        description: input.cache_subnet_group_description,
        vpc_id: vpc_id(&scope),
        subnets,
    };
    let arn = arn::build(&scope, Kind::SubnetGroup, &group.name);
    ops.store.create_subnet_group(&scope, &group, &arn, &tags, QUOTA).await.map_err(|e| match e {
        StoreError::AlreadyExists => ApiError::new(
            ErrorCode::CacheSubnetGroupAlreadyExistsFault,
            format!("Cache subnet group {} already exists.", group.name),
        ),
        StoreError::QuotaExceeded(quota) => ApiError::new(
            ErrorCode::CacheSubnetGroupQuotaExceededFault,
            format!("The maximum number of cache subnet groups ({quota}) has been reached."),
        ),
        e => internal(e),
    })?;
    tracing::info!(subnet_group = group.name, region = scope.region, "created cache subnet group");
    Ok(CreateCacheSubnetGroupResult { cache_subnet_group: Some(output(&scope, &group)) })
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeCacheSubnetGroupsMessage,
) -> Result<CacheSubnetGroupMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let groups = match &input.cache_subnet_group_name {
        Some(name) => vec![
            ops.store
                .subnet_group(&scope, &name.to_ascii_lowercase())
                .await
                .map_err(internal)?
                .ok_or_else(|| not_found(name))?,
        ],
        None => ops.store.subnet_groups(&scope).await.map_err(internal)?,
    };
    let page = paginate(groups, |g| g.name.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(CacheSubnetGroupMessage {
        cache_subnet_groups: Some(page.items.iter().map(|g| output(&scope, g)).collect()),
        marker: page.marker,
    })
}

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyCacheSubnetGroupMessage,
) -> Result<ModifyCacheSubnetGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.cache_subnet_group_name.to_ascii_lowercase();
    if let Some(description) = &input.cache_subnet_group_description {
        validate::description("CacheSubnetGroupDescription", description)?;
    }
    let subnets = input.subnet_ids.as_deref().map(|ids| subnets(ops, &scope, ids)).transpose()?;
    // Read and written in one transaction: concurrent modifies never undo each other.
    let group = written(
        ops.store
            .write(async |tx| {
                let Some(mut group) = tx.subnet_group(&scope, &name).await? else { return refuse(not_found(&name)) };
                if let Some(description) = input.cache_subnet_group_description {
                    group.description = description;
                }
                if let Some(subnets) = subnets {
                    group.subnets = subnets;
                }
                tx.update_subnet_group(&scope, &group).await?;
                Ok(group)
            })
            .await,
    )?;
    tracing::info!(subnet_group = group.name, "modified cache subnet group");
    Ok(ModifyCacheSubnetGroupResult { cache_subnet_group: Some(output(&scope, &group)) })
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteCacheSubnetGroupMessage,
) -> Result<(), ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.cache_subnet_group_name.to_ascii_lowercase();
    if name == DEFAULT_GROUP {
        return Err(ApiError::new(
            ErrorCode::CacheSubnetGroupInUse,
            "The default cache subnet group cannot be deleted.",
        ));
    }
    let arn = arn::build(&scope, Kind::SubnetGroup, &name);
    // The in-use check and the delete are one transaction: a create that uses the group
    // either comes first (and the delete is refused) or finds the group gone.
    written(
        ops.store
            .write(async |tx| {
                if tx.cache_clusters(&scope).await?.iter().any(|c| c.cluster.subnet_group == name) {
                    return refuse(ApiError::new(
                        ErrorCode::CacheSubnetGroupInUse,
                        format!("Cache subnet group {name} is in use by one or more cache clusters."),
                    ));
                }
                tx.delete_subnet_group(&scope, &name, &arn).await.map_err(|e| {
                    answered(e, |e| {
                        matches!(e, StoreError::NotFound)
                            .then(|| messages::subnet_group_does_not_exist(&input.cache_subnet_group_name))
                    })
                })
            })
            .await,
    )?;
    tracing::info!(subnet_group = name, "deleted cache subnet group");
    Ok(())
}

pub async fn exists(ops: &Operations, scope: &Scope, name: &str) -> Result<bool, ApiError> {
    Ok(ops.store.subnet_group(scope, name).await.map_err(internal)?.is_some())
}
