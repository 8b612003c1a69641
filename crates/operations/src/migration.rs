//! Online migration into a replication group (StartMigration, TestMigration,
//! CompleteMigration): AWS's checks, and the migration recorded on the group for the
//! reconciler, which makes the group's primary a replica of the customer's server, tests
//! the connection, and cuts over (`reconciler::migration`).
//!
//! AWS's rules, from "Preparing your source and target for migration" (ElastiCache user
//! guide): the target runs Valkey, or Redis OSS 5.0.5 and later (5.0.6 with cluster mode);
//! it has no encryption in transit, has Multi-AZ and is no part of a global datastore; the
//! endpoint list holds one element, with cluster mode too (the source cluster's other
//! nodes are found through it). Whether the source's cluster mode matches the group's is
//! the reconciler's to find out. The wording of the refusals is the emulator's unless a
//! comment names a source. Migrations into serverless caches: see `serverless_migration`.

use model::status::cluster as status;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{MigrationPhase, MigrationRecord, ReplicationGroup as StoredGroup, Scope};

use crate::Operations;
use crate::arn::{Kind, NotFound as _};
use crate::replication_groups::{change_available, existing, output};

/// The oldest Redis OSS a group can migrate into, cluster mode disabled.
const OLDEST_REDIS: &str = "5.0.5";
/// The oldest Redis OSS a group with cluster mode enabled can migrate into.
const OLDEST_REDIS_CLUSTER: &str = "5.0.6";

fn already_migrating(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ReplicationGroupAlreadyUnderMigrationFault,
        format!("Replication group {id} is already under migration."),
    )
}

/// The one source endpoint of CustomerNodeEndpointList.
pub(crate) fn source(list: Option<&[CustomerNodeEndpoint]>) -> Result<(String, u16), ApiError> {
    let [endpoint] = list.unwrap_or_default() else {
        return Err(ApiError::invalid_parameter_value("CustomerNodeEndpointList should have only one element."));
    };
    let address = endpoint.address.as_deref().map(str::trim).filter(|a| !a.is_empty() && a.len() <= 255);
    let address = address
        .filter(|a| a.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)))
        .ok_or_else(|| ApiError::invalid_parameter_value("The Address of the customer node endpoint is invalid."))?;
    let port = endpoint.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0).ok_or_else(|| {
        ApiError::invalid_parameter_value("The Port of the customer node endpoint must be between 1 and 65535.")
    })?;
    Ok((address.to_string(), port))
}

/// Whether `group` can take a migration, by AWS's rules.
fn check_target(group: &StoredGroup) -> Result<(), ApiError> {
    let g = &group.group;
    if g.migration.as_ref().is_some_and(|m| m.phase != MigrationPhase::Testing) {
        return Err(already_migrating(&g.id));
    }
    let version = group.members.first().map(|m| m.cluster.engine_version.as_str()).unwrap_or_default();
    let oldest = if g.cluster_enabled() { OLDEST_REDIS_CLUSTER } else { OLDEST_REDIS };
    if g.engine == "redis" && model::catalog::is_downgrade(oldest, version) {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Online migration needs Valkey or Redis OSS {oldest} or later; replication group {} runs {version}.",
            g.id
        )));
    }
    if let Some(global) = &g.global_replication_group_id {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Online migration is not supported for replication group {}: it is part of global datastore {global}.",
            g.id
        )));
    }
    if g.security.transit_encryption {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Online migration is not supported for replication group {}: it has encryption in transit enabled.",
            g.id
        )));
    }
    if !g.multi_az {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Online migration needs Multi-AZ enabled on replication group {}.",
            g.id
        )));
    }
    Ok(())
}

/// Records `phase` from the source in the listed group, once AWS's checks pass.
async fn begin(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    list: Option<&[CustomerNodeEndpoint]>,
    phase: MigrationPhase,
) -> Result<ReplicationGroup, ApiError> {
    let (address, port) = source(list)?;
    let current = existing(ops, scope, id).await?;
    check_target(&current)?;
    let group = change_available(ops, scope, id, |group, _| {
        if group.migration.as_ref().is_some_and(|m| m.phase != MigrationPhase::Testing) {
            return Err(already_migrating(&group.id));
        }
        group.migration = Some(MigrationRecord { address: address.clone(), port, phase });
        if phase == MigrationPhase::Migrating {
            tracing::info!(
                replication_group = group.id,
                from = group.status,
                to = status::MIGRATING,
                "replication group status"
            );
            group.status = status::MIGRATING.to_string();
        }
        Ok(Vec::new())
    })
    .await?;
    Ok(output(&group, ops.endpoint_host()))
}

pub async fn start(
    ops: &Operations,
    ctx: &RequestContext,
    input: StartMigrationMessage,
) -> Result<StartMigrationResponse, ApiError> {
    let id = match (&input.replication_group_id, &input.serverless_cache_name) {
        (Some(id), None) => id,
        (None, Some(name)) => return crate::serverless_migration::start(ops, ctx, name, &input).await,
        _ => {
            return Err(ApiError::invalid_parameter_combination(
                "Exactly one of ReplicationGroupId and ServerlessCacheName must be provided.",
            ));
        }
    };
    let scope = ops.scope(ctx).await?;
    let list = input.customer_node_endpoint_list.as_deref();
    let group = begin(ops, &scope, id, list, MigrationPhase::Migrating).await?;
    Ok(StartMigrationResponse { replication_group: Some(group), serverless_cache: None })
}

/// "Async API to test connection between source and target replication group" (the API
/// reference): the result is an event of the group.
pub async fn test(
    ops: &Operations,
    ctx: &RequestContext,
    input: TestMigrationMessage,
) -> Result<TestMigrationResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let list = Some(input.customer_node_endpoint_list.as_slice());
    let group = begin(ops, &scope, &input.replication_group_id, list, MigrationPhase::Testing).await?;
    Ok(TestMigrationResponse { replication_group: Some(group) })
}

/// The primary stops replicating from the source once it is in sync (or at once with
/// Force), and the group is `available` again; the reconciler says how it went in an event
/// ("Complete Migration successful for <id>", as the user guide quotes it).
pub async fn complete(
    ops: &Operations,
    ctx: &RequestContext,
    input: CompleteMigrationMessage,
) -> Result<CompleteMigrationResponse, ApiError> {
    let force = input.force.unwrap_or(false);
    let id = match (&input.replication_group_id, &input.serverless_cache_name) {
        (Some(id), None) => id.to_ascii_lowercase(),
        (None, Some(name)) => return crate::serverless_migration::complete(ops, ctx, name, force).await,
        _ => {
            return Err(ApiError::invalid_parameter_combination(
                "Exactly one of ReplicationGroupId and ServerlessCacheName must be provided.",
            ));
        }
    };
    let scope = ops.scope(ctx).await?;
    let result = ops
        .store
        .update_replication_group(&scope, &id, |group, _| {
            let migrating = group.migration.as_mut().filter(|m| m.phase != MigrationPhase::Testing);
            let Some(migration) = migrating.filter(|_| group.status == status::MIGRATING) else {
                return Err(ApiError::new(
                    ErrorCode::ReplicationGroupNotUnderMigrationFault,
                    format!("Replication group {id} is not under migration."),
                ));
            };
            migration.phase = MigrationPhase::Completing { force };
            Ok(Vec::new())
        })
        .await;
    let group = crate::updated(result, || Kind::ReplicationGroup.not_found(&id))?;
    Ok(CompleteMigrationResponse {
        replication_group: Some(output(&group, ops.endpoint_host())),
        serverless_cache: None,
    })
}
