//! AddTagsToResource / RemoveTagsFromResource / ListTagsForResource, on every taggable
//! resource type, with AWS's limits.

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{Scope, StoreError, TagRecord};

use crate::arn::{self, Kind, NotFound as _};
use crate::{Operations, internal, parameter_groups, security_groups, subnet_groups, user_groups, users};

/// AWS's limit of tags per resource.
pub const MAX_TAGS: usize = 50;
const MAX_KEY_LEN: usize = 128;
const MAX_VALUE_LEN: usize = 256;

fn quota_exceeded() -> ApiError {
    ApiError::new(
        ErrorCode::TagQuotaPerResourceExceeded,
        format!(
            "The request cannot be processed because it would cause the resource to have more than the allowed number of tags ({MAX_TAGS})."
        ),
    )
}

/// Checks tags as AWS does; a key given twice keeps its last value.
pub fn validate(tags: &[Tag]) -> Result<Vec<TagRecord>, ApiError> {
    let mut records: Vec<TagRecord> = Vec::new();
    for tag in tags {
        let key = tag.key.clone().unwrap_or_default();
        let value = tag.value.clone().unwrap_or_default();
        if key.is_empty() || key.chars().count() > MAX_KEY_LEN {
            return Err(ApiError::invalid_parameter_value(format!(
                "Tag keys must be between 1 and {MAX_KEY_LEN} characters long."
            )));
        }
        if value.chars().count() > MAX_VALUE_LEN {
            return Err(ApiError::invalid_parameter_value(format!(
                "Tag values must be at most {MAX_VALUE_LEN} characters long."
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_parameter_value("Tag keys must not start with the reserved prefix aws:."));
        }
        records.retain(|r| r.key != key);
        records.push(TagRecord { key, value });
    }
    if records.len() > MAX_TAGS {
        return Err(quota_exceeded());
    }
    Ok(records)
}

fn output(tags: Vec<TagRecord>) -> TagListMessage {
    TagListMessage {
        tag_list: Some(tags.into_iter().map(|t| Tag { key: Some(t.key), value: Some(t.value) }).collect()),
    }
}

/// The canonical ARN of an existing resource in the request's scope.
async fn resolve(ops: &Operations, scope: &Scope, text: &str) -> Result<String, ApiError> {
    let arn = crate::arn::parse(text)?;
    if arn.account != scope.account {
        return Err(crate::messages::arn_of_another_account());
    }
    let name = arn.name.to_ascii_lowercase();
    let exists = arn.is_in(scope)
        && match arn.kind {
            Kind::ParameterGroup => parameter_groups::exists(ops, scope, &name).await?,
            Kind::SubnetGroup => subnet_groups::exists(ops, scope, &name).await?,
            Kind::SecurityGroup => security_groups::exists(ops, scope, &name).await?,
            Kind::Cluster => ops.store.cache_cluster(scope, &name).await.map_err(internal)?.is_some(),
            Kind::ReplicationGroup => match ops.store.replication_group(scope, &name).await.map_err(internal)? {
                Some(g) if g.group.status != crate::cache_clusters::status::AVAILABLE => {
                    return Err(crate::messages::group_not_available_for_tagging());
                }
                found => found.is_some(),
            },
            Kind::Snapshot => ops.store.snapshot(scope, &arn.name).await.map_err(internal)?.is_some(),
            Kind::User => users::exists(ops, scope, &name).await?,
            Kind::UserGroup => user_groups::exists(ops, scope, &name).await?,
            Kind::ServerlessCache => ops.store.serverless_cache(scope, &name).await.map_err(internal)?.is_some(),
            Kind::ServerlessCacheSnapshot => {
                let stored = model::names::serverless_backing(&name);
                ops.store.snapshot(scope, &stored).await.map_err(internal)?.is_some()
            }
            Kind::ReservedInstance => crate::reserved_nodes::exists(ops, scope, &name).await?,
            Kind::GlobalReplicationGroup => {
                ops.store.global_replication_group(&scope.account, &arn.name).await.map_err(internal)?.is_some()
            }
        };
    if !exists {
        return Err(arn.kind.not_found(&arn.name));
    }
    // Snapshot names keep their case; every other id is stored lowercase.
    Ok(match arn.kind {
        Kind::Snapshot => arn::build(scope, arn.kind, &arn.name),
        // Global datastore ids keep the case AWS gives them (the suffix as validated).
        Kind::GlobalReplicationGroup => model::arn::build_global(&scope.account, &arn.name),
        _ => arn::build(scope, arn.kind, &name),
    })
}

pub async fn add(
    ops: &Operations,
    ctx: &RequestContext,
    input: AddTagsToResourceMessage,
) -> Result<TagListMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let arn = resolve(ops, &scope, &input.resource_name).await?;
    let tags = validate(&input.tags)?;
    let all = ops.store.add_tags(&arn, &tags, MAX_TAGS).await.map_err(|e| match e {
        StoreError::QuotaExceeded(_) => quota_exceeded(),
        e => internal(e),
    })?;
    Ok(output(all))
}

pub async fn remove(
    ops: &Operations,
    ctx: &RequestContext,
    input: RemoveTagsFromResourceMessage,
) -> Result<TagListMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let arn = resolve(ops, &scope, &input.resource_name).await?;
    let remaining = ops.store.remove_tags(&arn, &input.tag_keys).await.map_err(|e| match e {
        StoreError::NotFound => {
            ApiError::new(ErrorCode::TagNotFoundFault, "The requested tag was not found on this resource.")
        }
        e => internal(e),
    })?;
    Ok(output(remaining))
}

pub async fn list(
    ops: &Operations,
    ctx: &RequestContext,
    input: ListTagsForResourceMessage,
) -> Result<TagListMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let arn = resolve(ops, &scope, &input.resource_name).await?;
    Ok(output(ops.store.list_tags(&arn).await.map_err(internal)?))
}
