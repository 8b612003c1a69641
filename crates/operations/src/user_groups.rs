//! User groups (RBAC): CreateUserGroup / ModifyUserGroup / DeleteUserGroup /
//! DescribeUserGroups.
//!
//! A group's members must exist, fit its engine ([`users::fits_group`]), have distinct user
//! names, and one of them must be named `default`: AWS configures that user as the
//! connection's default user on every node. The checks run inside the store transaction
//! that writes the change, against the users it reads.
//!
//! Statuses as in `users`: the call answers `creating` / `modifying` / `deleting` and the
//! stored group is `active` (or gone) at once; attaching groups to replication groups
//! (`replication_groups` in the record) is where node work, and lasting transitional
//! statuses, will come from.

use model::names::{is_serverless_backing, serverless_name};
use std::collections::HashSet;

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{EventRecord, Scope, StoreError, UpdateError, UserGroupRecord, now_millis};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::users::{self, ACTIVE, DEFAULT_USER};
use crate::{Operations, internal, tags, updated};

/// AWS's quotas: user groups per region, users per group.
const QUOTA: usize = 100;
const MAX_USERS: usize = 100;

const CREATING: &str = "creating";
const MODIFYING: &str = "modifying";
const DELETING: &str = "deleting";

fn output(scope: &Scope, group: &store::UserGroup, users: &[store::User], status: Option<&str>) -> UserGroup {
    let g = &group.group;
    // The newest engine version any member needs (6.0 at least).
    let minimum = group
        .user_ids
        .iter()
        .filter_map(|id| users.iter().find(|u| &u.user.id == id))
        .map(|u| users::minimum_engine_version(&u.user.engine, &u.user.authentication))
        .chain([users::minimum_engine_version(&g.engine, users::PASSWORD)])
        .max_by(|a, b| version_order(a).cmp(&version_order(b)))
        .unwrap_or("6.0");
    UserGroup {
        arn: Some(arn::build(scope, Kind::UserGroup, &g.id)),
        engine: Some(g.engine.clone()),
        minimum_engine_version: Some(minimum.to_string()),
        pending_changes: Some(UserGroupPendingChanges {
            user_ids_to_add: Some(Vec::new()),
            user_ids_to_remove: Some(Vec::new()),
        }),
        // A serverless cache's data group stands for the cache.
        replication_groups: Some(
            g.replication_groups.iter().filter(|id| !is_serverless_backing(id)).cloned().collect(),
        ),
        serverless_caches: Some(
            g.replication_groups.iter().filter_map(|id| serverless_name(id)).map(str::to_string).collect(),
        ),
        status: Some(status.unwrap_or(&g.status).to_string()),
        user_group_id: Some(g.id.clone()),
        user_ids: Some(group.user_ids.clone()),
    }
}

fn version_order(version: &str) -> Vec<u32> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

fn not_found(id: &str) -> ApiError {
    Kind::UserGroup.not_found(id)
}

fn event(id: &str, message: String) -> EventRecord {
    EventRecord::new("user-group", id, message)
}

/// Lowercased ids, each once, in the order given.
fn user_ids(ids: Option<Vec<String>>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.unwrap_or_default().into_iter().map(|id| id.to_ascii_lowercase()).filter(|id| seen.insert(id.clone())).collect()
}

/// The rules every member list must keep (see the module doc).
fn check_members(group_id: &str, engine: &str, ids: &[String], users: &[store::User]) -> Result<(), ApiError> {
    if ids.len() > MAX_USERS {
        return Err(ApiError::invalid_parameter_value(format!("A user group can have at most {MAX_USERS} users.")));
    }
    let mut members = Vec::with_capacity(ids.len());
    for id in ids {
        let user = users.iter().find(|u| &u.user.id == id).ok_or_else(|| Kind::User.not_found(id))?;
        members.push(&user.user);
    }
    for user in &members {
        if !users::fits_group(engine, user) {
            return Err(users::engine_mismatch(group_id, engine, &user.id));
        }
    }
    let mut names = HashSet::new();
    for user in &members {
        if !names.insert(user.name.as_str()) {
            return Err(ApiError::new(
                ErrorCode::DuplicateUserNameFault,
                format!("User group {group_id} cannot have two users named {}.", user.name),
            ));
        }
    }
    if !names.contains(DEFAULT_USER) {
        return Err(ApiError::new(
            ErrorCode::DefaultUserRequired,
            "User group needs to contain a user with the user name default.",
        ));
    }
    Ok(())
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateUserGroupMessage,
) -> Result<UserGroup, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group_id = users::id("UserGroupId", &input.user_group_id)?;
    let engine = users::engine(&input.engine)?;
    let ids = user_ids(input.user_ids);
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let record = UserGroupRecord {
        id: group_id.clone(),
        engine: engine.clone(),
        status: ACTIVE.to_string(),
        replication_groups: Vec::new(),
        created_millis: now_millis(),
    };
    let group = store::UserGroup { group: record, user_ids: ids };
    let arn = arn::build(&scope, Kind::UserGroup, &group_id);
    let mut all_users = Vec::new();
    let result = ops
        .store
        .create_user_group(&scope, &group, &arn, &tags, QUOTA, |users| {
            check_members(&group_id, &engine, &group.user_ids, users)?;
            all_users = users.to_vec();
            Ok(vec![event(&group_id, format!("User group {group_id} has been created"))])
        })
        .await;
    match result {
        Ok(()) => {}
        Err(UpdateError::Rejected(e)) => return Err(e),
        Err(UpdateError::Store(StoreError::AlreadyExists)) => {
            return Err(ApiError::new(
                ErrorCode::UserGroupAlreadyExistsFault,
                format!("User group {group_id} already exists."),
            ));
        }
        Err(UpdateError::Store(StoreError::QuotaExceeded(quota))) => {
            return Err(ApiError::new(
                ErrorCode::UserGroupQuotaExceededFault,
                format!("The maximum number of user groups ({quota}) has been reached."),
            ));
        }
        Err(UpdateError::Store(e)) => return Err(internal(e)),
    }
    tracing::info!(user_group = group_id, region = scope.region, engine, users = ?group.user_ids, from = CREATING, to = ACTIVE, "created user group");
    Ok(output(&scope, &group, &all_users, Some(CREATING)))
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeUserGroupsMessage,
) -> Result<DescribeUserGroupsResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let groups = match &input.user_group_id {
        Some(group_id) => {
            let group_id = group_id.to_ascii_lowercase();
            vec![ops.store.user_group(&scope, &group_id).await.map_err(internal)?.ok_or_else(|| not_found(&group_id))?]
        }
        None => ops.store.user_groups(&scope).await.map_err(internal)?,
    };
    let page = paginate(groups, |g| g.group.id.clone(), input.marker.as_deref(), input.max_records)?;
    let users = ops.store.users(&scope).await.map_err(internal)?;
    Ok(DescribeUserGroupsResult {
        marker: page.marker,
        user_groups: Some(page.items.iter().map(|g| output(&scope, g, &users, None)).collect()),
    })
}

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyUserGroupMessage,
) -> Result<UserGroup, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group_id = input.user_group_id.to_ascii_lowercase();
    let to_add = user_ids(input.user_ids_to_add);
    let to_remove = user_ids(input.user_ids_to_remove);
    let engine = input.engine.as_deref().map(users::engine).transpose()?;
    if to_add.is_empty() && to_remove.is_empty() && engine.is_none() {
        return Err(ApiError::invalid_parameter_combination(
            "At least one of UserIdsToAdd, UserIdsToRemove or Engine must be provided.",
        ));
    }
    if let Some(both) = to_add.iter().find(|id| to_remove.contains(id)) {
        return Err(ApiError::invalid_parameter_combination(format!(
            "User {both} cannot be both added to and removed from the user group."
        )));
    }
    let mut all_users = Vec::new();
    let result = ops
        .store
        .update_user_group(&scope, &group_id, |group, members, users| {
            if group.status != ACTIVE {
                return Err(ApiError::new(
                    ErrorCode::InvalidUserGroupStateFault,
                    format!("User group {} is not in active state.", group.id),
                ));
            }
            for id in &to_add {
                if !users.iter().any(|u| &u.user.id == id) {
                    return Err(Kind::User.not_found(id));
                }
                if members.contains(id) {
                    return Err(ApiError::invalid_parameter_value(format!(
                        "User {id} is already a member of user group {}.",
                        group.id
                    )));
                }
            }
            for id in &to_remove {
                if !members.contains(id) {
                    return Err(ApiError::invalid_parameter_value(format!(
                        "User {id} is not a member of user group {}.",
                        group.id
                    )));
                }
            }
            members.retain(|id| !to_remove.contains(id));
            members.extend(to_add.iter().cloned());
            if let Some(engine) = &engine {
                group.engine = engine.clone();
            }
            check_members(&group.id, &group.engine, members, users)?;
            all_users = users.to_vec();
            Ok(vec![event(&group.id, format!("User group {} has been modified", group.id))])
        })
        .await;
    let group = updated(result, || not_found(&group_id))?;
    tracing::info!(user_group = group_id, from = ACTIVE, to = MODIFYING, added = ?to_add, removed = ?to_remove, "modifying user group");
    tracing::info!(user_group = group_id, from = MODIFYING, to = ACTIVE, "modified user group");
    ops.reconcile_everything();
    let mut out = output(&scope, &group, &all_users, Some(MODIFYING));
    out.pending_changes =
        Some(UserGroupPendingChanges { user_ids_to_add: Some(to_add), user_ids_to_remove: Some(to_remove) });
    Ok(out)
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteUserGroupMessage,
) -> Result<UserGroup, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group_id = input.user_group_id.to_ascii_lowercase();
    let arn = arn::build(&scope, Kind::UserGroup, &group_id);
    let result = ops
        .store
        .delete_user_group(&scope, &group_id, &arn, |group| {
            let g = &group.group;
            if g.status != ACTIVE {
                return Err(ApiError::new(
                    ErrorCode::InvalidUserGroupStateFault,
                    format!("User group {} is not in active state.", g.id),
                ));
            }
            if !g.replication_groups.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidUserGroupStateFault,
                    format!(
                        "User group {} is associated with replication group(s) or serverless cache(s) {} and cannot be deleted.",
                        g.id,
                        g.replication_groups.iter().map(|id| serverless_name(id).unwrap_or(id)).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            Ok(vec![event(&g.id, format!("User group {} has been deleted", g.id))])
        })
        .await;
    let group = updated(result, || not_found(&group_id))?;
    tracing::info!(user_group = group_id, from = ACTIVE, to = DELETING, "deleted user group");
    let users = ops.store.users(&scope).await.map_err(internal)?;
    Ok(output(&scope, &group, &users, Some(DELETING)))
}

pub async fn exists(ops: &Operations, scope: &Scope, id: &str) -> Result<bool, ApiError> {
    Ok(ops.store.user_group(scope, id).await.map_err(internal)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str, engine: &str, authentication: &str) -> store::User {
        store::User {
            user: store::UserRecord {
                id: id.into(),
                name: name.into(),
                engine: engine.into(),
                access_string: "on ~* +@all".into(),
                authentication: authentication.into(),
                password_hashes: Vec::new(),
                status: ACTIVE.into(),
                created_millis: 0,
            },
            group_ids: Vec::new(),
        }
    }

    fn ids(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn member_rules() {
        let users = [
            user("default", "default", "redis", "no-password"),
            user("app", "app", "redis", "password"),
            user("app2", "app", "redis", "password"),
            user("vk-default", "default", "valkey", "password"),
            user("vk", "vk", "valkey", "no-password"),
        ];
        let code =
            |engine: &str, members: &[&str]| check_members("g", engine, &ids(members), &users).err().map(|e| e.code);
        assert_eq!(code("redis", &["default", "app"]), None);
        assert_eq!(code("redis", &[]), Some("DefaultUserRequired"));
        assert_eq!(code("redis", &["app"]), Some("DefaultUserRequired"));
        assert_eq!(code("redis", &["default", "nobody"]), Some("UserNotFound"));
        assert_eq!(code("redis", &["default", "app", "app2"]), Some("DuplicateUserName"));
        assert_eq!(code("redis", &["default", "vk-default"]), Some("InvalidParameterValue"));
        // A valkey group takes valkey users, and redis users that authenticate.
        assert_eq!(code("valkey", &["vk-default", "app", "vk"]), None);
        assert_eq!(code("valkey", &["default"]), Some("InvalidParameterValue"));
    }

    #[test]
    fn ids_are_lowercased_once_each() {
        assert_eq!(user_ids(Some(ids(&["Default", "app", "DEFAULT"]))), ["default", "app"]);
    }
}
