//! Role-based access control on replication groups: which user groups may be attached
//! (`UserGroupIds`, `UserGroupIdsToAdd` / `UserGroupIdsToRemove`), and the links kept on
//! both sides — the group lists its user groups, each user group lists the replication
//! groups it serves (so it cannot be deleted while attached). The reconciler turns the
//! attached users into every node's ACL.

use protocol::{ApiError, ErrorCode};
use store::Scope;

use crate::arn::{Kind, NotFound as _};
use crate::{Operations, Write, internal};

/// AWS attaches one user group to a replication group.
const MAX_USER_GROUPS: usize = 1;

/// Checks that `ids` (lowercased, deduplicated) can serve a group of `engine`: they exist,
/// are active and of the same engine, and transit encryption is on, as AWS requires.
pub async fn check_attachable(
    ops: &Operations,
    scope: &Scope,
    ids: &[String],
    engine: &str,
    transit_encryption: bool,
) -> Result<Vec<String>, ApiError> {
    let mut ids: Vec<String> = ids.iter().map(|id| id.to_ascii_lowercase()).collect();
    ids.dedup();
    if ids.is_empty() {
        return Ok(ids);
    }
    if ids.len() > MAX_USER_GROUPS {
        return Err(ApiError::invalid_parameter_value(format!(
            "A replication group can have at most {MAX_USER_GROUPS} user group."
        )));
    }
    if !transit_encryption {
        return Err(ApiError::invalid_parameter_combination(
            "User groups (role-based access control) require TransitEncryptionEnabled.",
        ));
    }
    for id in &ids {
        let group =
            ops.store.user_group(scope, id).await.map_err(internal)?.ok_or_else(|| Kind::UserGroup.not_found(id))?;
        if group.group.status != "active" {
            return Err(ApiError::new(
                ErrorCode::InvalidUserGroupStateFault,
                format!("User group {id} is not in active state."),
            ));
        }
        // A Redis OSS user group serves a Valkey cache too (terraform-provider-aws's
        // serverless cache tests attach one to a valkey cache).
        let compatible = group.group.engine == engine || (engine == "valkey" && group.group.engine == "redis");
        if !compatible {
            return Err(ApiError::invalid_parameter_combination(format!(
                "User group {id} is for engine {}, not {engine}.",
                group.group.engine
            )));
        }
    }
    Ok(ids)
}

/// Records on each user group of `ids` that `replication_group` uses it (`attach`) or no
/// longer does, in the caller's write.
pub(crate) async fn link(
    tx: &mut store::Tx,
    scope: &Scope,
    ids: &[String],
    replication_group: &str,
    attach: bool,
) -> Write<()> {
    for id in ids {
        let linked = tx.update_user_group(scope, id, |group, _, _| {
            group.replication_groups.retain(|g| g != replication_group);
            if attach {
                group.replication_groups.push(replication_group.to_string());
            }
            Ok::<_, ()>(Vec::new())
        });
        if let Err(store::UpdateError::Store(e)) = linked.await {
            return Err(e.into());
        }
    }
    Ok(())
}
