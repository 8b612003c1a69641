//! Cache security groups (the EC2-Classic access model), kept as metadata.

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{Ec2Authorization, Scope, SecurityGroupRecord, StoreError};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::{Operations, internal, tags, validate};

const QUOTA: usize = 50;
const DEFAULT_GROUP: &str = "default";

pub async fn seed_default(ops: &Operations, scope: &Scope) -> Result<(), ApiError> {
    let arn = arn::build(scope, Kind::SecurityGroup, DEFAULT_GROUP);
    ops.store.create_security_group(scope, DEFAULT_GROUP, "default", &arn, &[], None).await.map_err(internal)
}

fn output(scope: &Scope, group: &SecurityGroupRecord) -> CacheSecurityGroup {
    CacheSecurityGroup {
        arn: Some(arn::build(scope, Kind::SecurityGroup, &group.name)),
        cache_security_group_name: Some(group.name.clone()),
        description: Some(group.description.clone()),
        ec2_security_groups: Some(
            group
                .ingress
                .iter()
                .map(|a| EC2SecurityGroup {
                    ec2_security_group_name: Some(a.ec2_group_name.clone()),
                    ec2_security_group_owner_id: Some(a.ec2_owner_id.clone()),
                    status: Some("authorized".to_string()),
                })
                .collect(),
        ),
        owner_id: Some(scope.account.clone()),
    }
}

fn not_found(name: &str) -> ApiError {
    Kind::SecurityGroup.not_found(name)
}

async fn existing(ops: &Operations, scope: &Scope, name: &str) -> Result<SecurityGroupRecord, ApiError> {
    ops.store.security_group(scope, &name.to_ascii_lowercase()).await.map_err(internal)?.ok_or_else(|| not_found(name))
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateCacheSecurityGroupMessage,
) -> Result<CreateCacheSecurityGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.cache_security_group_name.to_ascii_lowercase();
    validate::group_name("CacheSecurityGroupName", &name)?;
    if name == DEFAULT_GROUP {
        return Err(ApiError::invalid_parameter_value("CacheSecurityGroupName cannot be the word \"Default\"."));
    }
    validate::description("Description", &input.description)?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let arn = arn::build(&scope, Kind::SecurityGroup, &name);
    ops.store.create_security_group(&scope, &name, &input.description, &arn, &tags, Some(QUOTA)).await.map_err(
        |e| match e {
            StoreError::AlreadyExists => ApiError::new(
                ErrorCode::CacheSecurityGroupAlreadyExistsFault,
                format!("Cache security group {name} already exists."),
            ),
            StoreError::QuotaExceeded(quota) => ApiError::new(
                ErrorCode::CacheSecurityGroupQuotaExceededFault,
                format!("The maximum number of cache security groups ({quota}) has been reached."),
            ),
            e => internal(e),
        },
    )?;
    tracing::info!(security_group = name, region = scope.region, "created cache security group");
    let group = SecurityGroupRecord { name, description: input.description, ingress: Vec::new() };
    Ok(CreateCacheSecurityGroupResult { cache_security_group: Some(output(&scope, &group)) })
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeCacheSecurityGroupsMessage,
) -> Result<CacheSecurityGroupMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let groups = match &input.cache_security_group_name {
        Some(name) => vec![existing(ops, &scope, name).await?],
        None => ops.store.security_groups(&scope).await.map_err(internal)?,
    };
    let page = paginate(groups, |g| g.name.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(CacheSecurityGroupMessage {
        cache_security_groups: Some(page.items.iter().map(|g| output(&scope, g)).collect()),
        marker: page.marker,
    })
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteCacheSecurityGroupMessage,
) -> Result<(), ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.cache_security_group_name.to_ascii_lowercase();
    if name == DEFAULT_GROUP {
        return Err(ApiError::new(
            ErrorCode::InvalidCacheSecurityGroupStateFault,
            "The default cache security group cannot be deleted.",
        ));
    }
    let arn = arn::build(&scope, Kind::SecurityGroup, &name);
    ops.store.delete_security_group(&scope, &name, &arn).await.map_err(|e| match e {
        StoreError::NotFound => not_found(&input.cache_security_group_name),
        e => internal(e),
    })?;
    tracing::info!(security_group = name, "deleted cache security group");
    Ok(())
}

fn authorization(name: String, owner: String) -> Result<Ec2Authorization, ApiError> {
    if name.trim().is_empty() || owner.trim().is_empty() {
        return Err(ApiError::invalid_parameter_value(
            "EC2SecurityGroupName and EC2SecurityGroupOwnerId must not be blank.",
        ));
    }
    Ok(Ec2Authorization { ec2_group_name: name, ec2_owner_id: owner })
}

pub async fn authorize(
    ops: &Operations,
    ctx: &RequestContext,
    input: AuthorizeCacheSecurityGroupIngressMessage,
) -> Result<AuthorizeCacheSecurityGroupIngressResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group = existing(ops, &scope, &input.cache_security_group_name).await?;
    let auth = authorization(input.ec2_security_group_name, input.ec2_security_group_owner_id)?;
    ops.store.authorize_ingress(&scope, &group.name, &auth).await.map_err(|e| match e {
        StoreError::AlreadyExists => ApiError::new(
            ErrorCode::AuthorizationAlreadyExistsFault,
            format!(
                "EC2 security group {} owned by {} is already authorized for {}.",
                auth.ec2_group_name, auth.ec2_owner_id, group.name
            ),
        ),
        StoreError::NotFound => not_found(&group.name),
        e => internal(e),
    })?;
    let group = existing(ops, &scope, &group.name).await?;
    Ok(AuthorizeCacheSecurityGroupIngressResult { cache_security_group: Some(output(&scope, &group)) })
}

pub async fn revoke(
    ops: &Operations,
    ctx: &RequestContext,
    input: RevokeCacheSecurityGroupIngressMessage,
) -> Result<RevokeCacheSecurityGroupIngressResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group = existing(ops, &scope, &input.cache_security_group_name).await?;
    let auth = authorization(input.ec2_security_group_name, input.ec2_security_group_owner_id)?;
    ops.store.revoke_ingress(&scope, &group.name, &auth).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::new(
            ErrorCode::AuthorizationNotFoundFault,
            format!(
                "EC2 security group {} owned by {} is not authorized for {}.",
                auth.ec2_group_name, auth.ec2_owner_id, group.name
            ),
        ),
        e => internal(e),
    })?;
    let group = existing(ops, &scope, &group.name).await?;
    Ok(RevokeCacheSecurityGroupIngressResult { cache_security_group: Some(output(&scope, &group)) })
}

pub async fn exists(ops: &Operations, scope: &Scope, name: &str) -> Result<bool, ApiError> {
    Ok(ops.store.security_group(scope, name).await.map_err(internal)?.is_some())
}

/// The security a create or modify names: every cache security group must exist, and
/// every VPC security group id must look like one ([`validate::is_foreign_id`]).
pub async fn check_references(
    ops: &Operations,
    scope: &Scope,
    names: Option<&[String]>,
    ids: Option<&[String]>,
) -> Result<(), ApiError> {
    for name in names.unwrap_or_default() {
        if !exists(ops, scope, &name.to_ascii_lowercase()).await? {
            return Err(not_found(name));
        }
    }
    for id in ids.unwrap_or_default() {
        if !validate::is_foreign_id("sg-", id) {
            // EC2's wording for a malformed value ("Value (…) for parameter … is invalid.").
            return Err(ApiError::invalid_parameter_value(format!(
                "Value ({id}) for parameter SecurityGroupIds is invalid. A security group id starts with sg-."
            )));
        }
    }
    Ok(())
}
