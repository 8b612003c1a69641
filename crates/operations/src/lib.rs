//! ElastiCache semantics: AWS's validation rules, defaults and errors, and the state
//! changes they make in the store.
//!
//! # Layout
//! - [`Operations`]: implements the generated [`protocol::ElastiCache`] trait; each method
//!   hands over to the module of its resource family.
//! - `parameter_groups`, `engine_versions`, `subnet_groups`, `security_groups`, `tags`,
//!   `cache_clusters`, `replication_groups`, `snapshots`, `users`, `user_groups`, `events`:
//!   `serverless`, `serverless_snapshots`: one module per resource family; the long Create and Modify handlers of clusters and
//!   groups have a module each (`cache_clusters::create`, `replication_groups::modify`, …),
//!   a plan checked against AWS's rules and then applied. `shards`: cluster mode's node
//!   groups; `rbac`, `transit`: user groups, TLS and AUTH tokens of groups; `migration`:
//!   online migration into a group, `serverless_migration` into a serverless cache;
//!   `reserved_nodes`: reserved cache nodes and their offerings; `service_updates`: service
//!   updates and update actions; `global_datastores`: global datastores across regions and
//!   their secondary groups.
//! - The vocabulary it shares with the store and the reconciler (statuses, names, ARNs,
//!   the catalog of engines and parameters) is the `model` crate's.
//! - `arn`, `pagination`, `validate`, `lookups` (what a request refers to), `placement`
//!   (zones of new nodes): rules shared by every family; `access_string`: the Redis ACL rules
//!   of RBAC users; `settle`: waiting for a change to settle before answering.
//!
//! Handlers validate first and change nothing when they fail; each change is one store
//! transaction ([`store::Store::write`]) whose reads, checks and writes (and events) go
//! together. They never spawn processes or sleep: they record desired state and wake the
//! reconciler, which does the rest.

mod access_string;
mod arn;
mod cache_clusters;
mod engine_versions;
mod events;
mod global_datastores;
mod lookups;
mod messages;
mod migration;
mod pagination;
mod parameter_groups;
mod placement;
mod rbac;
mod replication_groups;
pub mod reserved_nodes;
mod security_groups;
pub mod serverless;
mod serverless_migration;
mod serverless_snapshots;
pub mod service_updates;
pub mod settle;
mod shards;
pub mod snapshots;
mod subnet_groups;
mod tags;
mod transit;
mod user_groups;
mod users;
mod validate;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use protocol::shapes::*;
use protocol::{ApiError, ElastiCache, RequestContext};
use store::{Scope, Store, StoreError};

use crate::arn::{Kind, NotFound as _};

pub use model::Catalog;
use settle::Awaited;

/// Emulator-wide settings the semantics depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub account: String,
    /// The simulated availability zones of every region: `a`, `b`, … suffixes are taken
    /// from these names and applied to the request's region.
    pub zones: Vec<String>,
    /// Woken when what changed is not in a resource's record (parameter values, users,
    /// user groups): the reconciler then looks at every resource. A record's write needs
    /// no wake-up: the reconciler watches the store's writes.
    pub reconcile: Arc<tokio::sync::Notify>,
    /// The local stand-in for S3: `<dir>/<bucket>/<key>` is `arn:aws:s3:::<bucket>/<key>`.
    pub exports_dir: std::path::PathBuf,
    /// How long a mutation may wait for its change to settle before it answers (zero:
    /// answer at once). See [`settle`].
    pub settle_timeout: std::time::Duration,
    /// Bytes one "GB" of a serverless cache's data storage limit stands for.
    pub serverless_gb_bytes: u64,
    /// The host every endpoint in API output names: `127.0.0.1`, or `--advertise-host`.
    pub endpoint_host: String,
    /// The cache nodes this machine can hold, over every region and account.
    pub node_capacity: NodeCapacity,
}

/// How many cache nodes this machine can hold, and what bounds it (named in the refusal).
#[derive(Debug, Clone)]
pub struct NodeCapacity {
    pub nodes: usize,
    pub bound_by: String,
}

pub struct Operations {
    store: Arc<Store>,
    settings: Settings,
    catalog: Arc<Catalog>,
    /// Scopes whose default resources exist in the store already.
    seeded: Mutex<HashSet<Scope>>,
    settle_times: settle::SettleTimes,
}

impl Operations {
    /// The API over `store`, offering what `catalog` lists (both shared with the reconciler).
    pub fn new(store: Arc<Store>, catalog: Arc<Catalog>, settings: Settings) -> Self {
        Self {
            store,
            settings,
            catalog,
            seeded: Mutex::new(HashSet::new()),
            settle_times: settle::SettleTimes::default(),
        }
    }

    /// How long mutations waited for their changes to settle, by operation.
    pub fn settle_times(&self) -> &settle::SettleTimes {
        &self.settle_times
    }

    /// Waits (bounded by the settle timeout) until every `awaited` resource of the
    /// request's scope has settled, so the client's next poll sees the settled state.
    async fn settle(&self, ctx: &RequestContext, operation: &'static str, awaited: &[Awaited]) {
        let scope = Scope { region: ctx.region.clone(), account: ctx.account.clone() };
        settle::timed(&self.settle_times, operation, &self.store, &scope, awaited, self.settings.settle_timeout).await;
    }

    /// The host every endpoint in API output names.
    pub fn endpoint_host(&self) -> &str {
        &self.settings.endpoint_host
    }

    pub(crate) fn node_capacity(&self) -> &NodeCapacity {
        &self.settings.node_capacity
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Asks the reconciler to look at every resource (see [`Settings::reconcile`]).
    pub(crate) fn reconcile_everything(&self) {
        self.settings.reconcile.notify_one();
    }

    /// Applies every change waiting for a maintenance window, in every region, now.
    pub async fn run_maintenance(&self) -> Result<usize, ApiError> {
        let clusters = self.store.all_cache_clusters().await.map_err(internal)?;
        let scopes: HashSet<Scope> = clusters.into_iter().map(|c| c.scope).collect();
        let mut applied = 0;
        for scope in scopes {
            applied += cache_clusters::apply_pending(self, &scope).await?;
        }
        Ok(applied)
    }

    /// Deletes every resource of every region; default resources come back on next use.
    pub async fn reset(&self) -> Result<(), StoreError> {
        // Forget the seeding first: a request in between seeds again rather than finding
        // no default groups.
        self.seeded.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.store.reset().await?;
        self.seeded.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }

    /// The scope of a request, with AWS's default resources (default parameter groups, the
    /// `default` subnet and security groups, the `default` user) created on first use of a
    /// region.
    async fn scope(&self, ctx: &RequestContext) -> Result<Scope, ApiError> {
        let scope = Scope { region: ctx.region.clone(), account: ctx.account.clone() };
        let seeded = self.seeded.lock().unwrap_or_else(|e| e.into_inner()).contains(&scope);
        if !seeded {
            parameter_groups::seed_defaults(self, &scope).await?;
            subnet_groups::seed_default(self, &scope).await?;
            security_groups::seed_default(self, &scope).await?;
            users::seed_default(self, &scope).await?;
            self.seeded.lock().unwrap_or_else(|e| e.into_inner()).insert(scope.clone());
        }
        Ok(scope)
    }

    /// The simulated zones of `region`: the configured zones when they belong to it,
    /// otherwise the same letters under the region's name.
    pub fn zones(&self, region: &str) -> Vec<String> {
        self.settings
            .zones
            .iter()
            .map(|zone| {
                if zone.starts_with(region) {
                    zone.clone()
                } else {
                    let letter = zone.chars().last().filter(char::is_ascii_lowercase).unwrap_or('a');
                    format!("{region}{letter}")
                }
            })
            .collect()
    }
}

/// A cluster an answer names, to settle.
fn cluster_of(cluster: Option<&CacheCluster>) -> Vec<Awaited> {
    cluster.and_then(|c| c.cache_cluster_id.clone()).map(Awaited::CacheCluster).into_iter().collect()
}

/// A replication group an answer names, to settle with its members.
fn group_of(group: Option<&ReplicationGroup>) -> Vec<Awaited> {
    group.and_then(|g| g.replication_group_id.clone()).map(Awaited::ReplicationGroup).into_iter().collect()
}

/// A global datastore an answer names, to settle.
fn global_of(group: Option<&GlobalReplicationGroup>) -> Vec<Awaited> {
    group.and_then(|g| g.global_replication_group_id.clone()).map(Awaited::GlobalReplicationGroup).into_iter().collect()
}

/// A serverless cache an answer names, to settle.
fn serverless_of(cache: Option<&ServerlessCache>) -> Vec<Awaited> {
    cache.and_then(|c| c.serverless_cache_name.clone()).map(Awaited::ServerlessCache).into_iter().collect()
}

/// A snapshot an answer names, and the cluster or group it is taken from (`snapshotting`).
fn snapshot_of(snapshot: Option<&Snapshot>) -> Vec<Awaited> {
    let Some(snapshot) = snapshot else { return Vec::new() };
    let mut awaited: Vec<Awaited> = snapshot.snapshot_name.clone().map(Awaited::Snapshot).into_iter().collect();
    awaited.extend(snapshot.replication_group_id.clone().map(Awaited::ReplicationGroup));
    awaited.extend(snapshot.cache_cluster_id.clone().map(Awaited::CacheCluster));
    awaited
}

/// The outcome of a store read-modify-write as the API answers it: the resource, or
/// `not_found` when it is gone, or the change's own refusal, or an internal error.
fn updated<T>(result: Write<Option<T>>, not_found: impl FnOnce() -> ApiError) -> Result<T, ApiError> {
    written(result)?.ok_or_else(not_found)
}

/// What the work of one write transaction returns: the API's refusals, or a store failure.
type Write<T> = Result<T, store::UpdateError<ApiError>>;

/// Refuses a write transaction's work: nothing it wrote stays.
fn refuse<T>(error: ApiError) -> Write<T> {
    Err(store::UpdateError::Rejected(error))
}

/// A write transaction's outcome as the API answers it.
fn written<T>(result: Write<T>) -> Result<T, ApiError> {
    result.map_err(|e| match e {
        store::UpdateError::Rejected(e) => e,
        store::UpdateError::Store(e) => internal(e),
    })
}

/// A store error inside a write transaction, with the ones the API answers as itself
/// (`answer` returns None for the rest).
fn answered(error: StoreError, answer: impl FnOnce(&StoreError) -> Option<ApiError>) -> store::UpdateError<ApiError> {
    match answer(&error) {
        Some(api) => store::UpdateError::Rejected(api),
        None => store::UpdateError::Store(error),
    }
}

/// Checks, inside the write that creates a cluster or group, that the parameter and
/// subnet groups it was validated against are still there (a concurrent delete loses).
async fn groups_still_there(tx: &mut store::Tx, scope: &Scope, parameter_group: &str, subnet_group: &str) -> Write<()> {
    if tx.parameter_group(scope, parameter_group).await?.is_none() {
        return refuse(Kind::ParameterGroup.not_found(parameter_group));
    }
    if tx.subnet_group(scope, subnet_group).await?.is_none() {
        return refuse(messages::subnet_group_does_not_exist(subnet_group));
    }
    Ok(())
}

/// Store failures that are not a user's doing.
fn internal(error: StoreError) -> ApiError {
    tracing::error!(%error, "store failure");
    ApiError::internal(format!("An internal error occurred in the store: {error}"))
}

impl ElastiCache for Operations {
    async fn create_cache_cluster(
        &self,
        ctx: &RequestContext,
        input: CreateCacheClusterMessage,
    ) -> Result<CreateCacheClusterResult, ApiError> {
        let out = cache_clusters::create(self, ctx, input).await?;
        self.settle(ctx, "CreateCacheCluster", &cluster_of(out.cache_cluster.as_ref())).await;
        Ok(out)
    }

    async fn describe_cache_clusters(
        &self,
        ctx: &RequestContext,
        input: DescribeCacheClustersMessage,
    ) -> Result<CacheClusterMessage, ApiError> {
        cache_clusters::describe(self, ctx, input).await
    }

    async fn modify_cache_cluster(
        &self,
        ctx: &RequestContext,
        input: ModifyCacheClusterMessage,
    ) -> Result<ModifyCacheClusterResult, ApiError> {
        let out = cache_clusters::modify(self, ctx, input).await?;
        self.settle(ctx, "ModifyCacheCluster", &cluster_of(out.cache_cluster.as_ref())).await;
        Ok(out)
    }

    async fn reboot_cache_cluster(
        &self,
        ctx: &RequestContext,
        input: RebootCacheClusterMessage,
    ) -> Result<RebootCacheClusterResult, ApiError> {
        let out = cache_clusters::reboot(self, ctx, input).await?;
        self.settle(ctx, "RebootCacheCluster", &cluster_of(out.cache_cluster.as_ref())).await;
        Ok(out)
    }

    async fn delete_cache_cluster(
        &self,
        ctx: &RequestContext,
        input: DeleteCacheClusterMessage,
    ) -> Result<DeleteCacheClusterResult, ApiError> {
        let out = cache_clusters::delete(self, ctx, input).await?;
        self.settle(ctx, "DeleteCacheCluster", &cluster_of(out.cache_cluster.as_ref())).await;
        Ok(out)
    }

    async fn list_allowed_node_type_modifications(
        &self,
        ctx: &RequestContext,
        input: ListAllowedNodeTypeModificationsMessage,
    ) -> Result<AllowedNodeTypeModificationsMessage, ApiError> {
        cache_clusters::allowed_node_type_modifications(self, ctx, input).await
    }

    async fn create_replication_group(
        &self,
        ctx: &RequestContext,
        input: CreateReplicationGroupMessage,
    ) -> Result<CreateReplicationGroupResult, ApiError> {
        let global = input.global_replication_group_id.clone().map(Awaited::GlobalReplicationGroup);
        let out = replication_groups::create(self, ctx, input).await?;
        let awaited: Vec<Awaited> = group_of(out.replication_group.as_ref()).into_iter().chain(global).collect();
        self.settle(ctx, "CreateReplicationGroup", &awaited).await;
        Ok(out)
    }

    async fn describe_replication_groups(
        &self,
        ctx: &RequestContext,
        input: DescribeReplicationGroupsMessage,
    ) -> Result<ReplicationGroupMessage, ApiError> {
        replication_groups::describe(self, ctx, input).await
    }

    async fn modify_replication_group(
        &self,
        ctx: &RequestContext,
        input: ModifyReplicationGroupMessage,
    ) -> Result<ModifyReplicationGroupResult, ApiError> {
        let out = replication_groups::modify(self, ctx, input).await?;
        self.settle(ctx, "ModifyReplicationGroup", &group_of(out.replication_group.as_ref())).await;
        Ok(out)
    }

    async fn delete_replication_group(
        &self,
        ctx: &RequestContext,
        input: DeleteReplicationGroupMessage,
    ) -> Result<DeleteReplicationGroupResult, ApiError> {
        let out = replication_groups::delete(self, ctx, input).await?;
        self.settle(ctx, "DeleteReplicationGroup", &group_of(out.replication_group.as_ref())).await;
        Ok(out)
    }

    async fn test_failover(
        &self,
        ctx: &RequestContext,
        input: TestFailoverMessage,
    ) -> Result<TestFailoverResult, ApiError> {
        let out = replication_groups::test_failover(self, ctx, input).await?;
        self.settle(ctx, "TestFailover", &group_of(out.replication_group.as_ref())).await;
        Ok(out)
    }

    async fn modify_replication_group_shard_configuration(
        &self,
        ctx: &RequestContext,
        input: ModifyReplicationGroupShardConfigurationMessage,
    ) -> Result<ModifyReplicationGroupShardConfigurationResult, ApiError> {
        let out = shards::modify_shard_configuration(self, ctx, input).await?;
        self.settle(ctx, "ModifyReplicationGroupShardConfiguration", &group_of(out.replication_group.as_ref())).await;
        Ok(out)
    }

    async fn increase_replica_count(
        &self,
        ctx: &RequestContext,
        input: IncreaseReplicaCountMessage,
    ) -> Result<IncreaseReplicaCountResult, ApiError> {
        let out = replication_groups::increase_replicas(self, ctx, input).await?;
        self.settle(ctx, "IncreaseReplicaCount", &group_of(out.replication_group.as_ref())).await;
        Ok(out)
    }

    async fn decrease_replica_count(
        &self,
        ctx: &RequestContext,
        input: DecreaseReplicaCountMessage,
    ) -> Result<DecreaseReplicaCountResult, ApiError> {
        let out = replication_groups::decrease_replicas(self, ctx, input).await?;
        self.settle(ctx, "DecreaseReplicaCount", &group_of(out.replication_group.as_ref())).await;
        Ok(out)
    }

    async fn create_snapshot(
        &self,
        ctx: &RequestContext,
        input: CreateSnapshotMessage,
    ) -> Result<CreateSnapshotResult, ApiError> {
        let out = snapshots::create(self, ctx, input).await?;
        self.settle(ctx, "CreateSnapshot", &snapshot_of(out.snapshot.as_ref())).await;
        Ok(out)
    }

    async fn describe_snapshots(
        &self,
        ctx: &RequestContext,
        input: DescribeSnapshotsMessage,
    ) -> Result<DescribeSnapshotsListMessage, ApiError> {
        snapshots::describe(self, ctx, input).await
    }

    async fn delete_snapshot(
        &self,
        ctx: &RequestContext,
        input: DeleteSnapshotMessage,
    ) -> Result<DeleteSnapshotResult, ApiError> {
        let out = snapshots::delete(self, ctx, input).await?;
        self.settle(ctx, "DeleteSnapshot", &snapshot_of(out.snapshot.as_ref())).await;
        Ok(out)
    }

    async fn copy_snapshot(
        &self,
        ctx: &RequestContext,
        input: CopySnapshotMessage,
    ) -> Result<CopySnapshotResult, ApiError> {
        let out = snapshots::copy(self, ctx, input).await?;
        self.settle(ctx, "CopySnapshot", &snapshot_of(out.snapshot.as_ref())).await;
        Ok(out)
    }

    async fn describe_events(
        &self,
        ctx: &RequestContext,
        input: DescribeEventsMessage,
    ) -> Result<EventsMessage, ApiError> {
        events::describe(self, ctx, input).await
    }

    async fn create_cache_parameter_group(
        &self,
        ctx: &RequestContext,
        input: CreateCacheParameterGroupMessage,
    ) -> Result<CreateCacheParameterGroupResult, ApiError> {
        parameter_groups::create(self, ctx, input).await
    }

    async fn describe_cache_parameter_groups(
        &self,
        ctx: &RequestContext,
        input: DescribeCacheParameterGroupsMessage,
    ) -> Result<CacheParameterGroupsMessage, ApiError> {
        parameter_groups::describe(self, ctx, input).await
    }

    async fn describe_cache_parameters(
        &self,
        ctx: &RequestContext,
        input: DescribeCacheParametersMessage,
    ) -> Result<CacheParameterGroupDetails, ApiError> {
        parameter_groups::describe_parameters(self, ctx, input).await
    }

    async fn describe_engine_default_parameters(
        &self,
        ctx: &RequestContext,
        input: DescribeEngineDefaultParametersMessage,
    ) -> Result<DescribeEngineDefaultParametersResult, ApiError> {
        parameter_groups::describe_engine_defaults(self, ctx, input).await
    }

    async fn modify_cache_parameter_group(
        &self,
        ctx: &RequestContext,
        input: ModifyCacheParameterGroupMessage,
    ) -> Result<CacheParameterGroupNameMessage, ApiError> {
        parameter_groups::modify(self, ctx, input).await
    }

    async fn reset_cache_parameter_group(
        &self,
        ctx: &RequestContext,
        input: ResetCacheParameterGroupMessage,
    ) -> Result<CacheParameterGroupNameMessage, ApiError> {
        parameter_groups::reset(self, ctx, input).await
    }

    async fn delete_cache_parameter_group(
        &self,
        ctx: &RequestContext,
        input: DeleteCacheParameterGroupMessage,
    ) -> Result<(), ApiError> {
        parameter_groups::delete(self, ctx, input).await
    }

    async fn describe_cache_engine_versions(
        &self,
        _ctx: &RequestContext,
        input: DescribeCacheEngineVersionsMessage,
    ) -> Result<CacheEngineVersionMessage, ApiError> {
        engine_versions::describe(self, input)
    }

    async fn create_cache_subnet_group(
        &self,
        ctx: &RequestContext,
        input: CreateCacheSubnetGroupMessage,
    ) -> Result<CreateCacheSubnetGroupResult, ApiError> {
        subnet_groups::create(self, ctx, input).await
    }

    async fn describe_cache_subnet_groups(
        &self,
        ctx: &RequestContext,
        input: DescribeCacheSubnetGroupsMessage,
    ) -> Result<CacheSubnetGroupMessage, ApiError> {
        subnet_groups::describe(self, ctx, input).await
    }

    async fn modify_cache_subnet_group(
        &self,
        ctx: &RequestContext,
        input: ModifyCacheSubnetGroupMessage,
    ) -> Result<ModifyCacheSubnetGroupResult, ApiError> {
        subnet_groups::modify(self, ctx, input).await
    }

    async fn delete_cache_subnet_group(
        &self,
        ctx: &RequestContext,
        input: DeleteCacheSubnetGroupMessage,
    ) -> Result<(), ApiError> {
        subnet_groups::delete(self, ctx, input).await
    }

    async fn create_cache_security_group(
        &self,
        ctx: &RequestContext,
        input: CreateCacheSecurityGroupMessage,
    ) -> Result<CreateCacheSecurityGroupResult, ApiError> {
        security_groups::create(self, ctx, input).await
    }

    async fn describe_cache_security_groups(
        &self,
        ctx: &RequestContext,
        input: DescribeCacheSecurityGroupsMessage,
    ) -> Result<CacheSecurityGroupMessage, ApiError> {
        security_groups::describe(self, ctx, input).await
    }

    async fn delete_cache_security_group(
        &self,
        ctx: &RequestContext,
        input: DeleteCacheSecurityGroupMessage,
    ) -> Result<(), ApiError> {
        security_groups::delete(self, ctx, input).await
    }

    async fn authorize_cache_security_group_ingress(
        &self,
        ctx: &RequestContext,
        input: AuthorizeCacheSecurityGroupIngressMessage,
    ) -> Result<AuthorizeCacheSecurityGroupIngressResult, ApiError> {
        security_groups::authorize(self, ctx, input).await
    }

    async fn revoke_cache_security_group_ingress(
        &self,
        ctx: &RequestContext,
        input: RevokeCacheSecurityGroupIngressMessage,
    ) -> Result<RevokeCacheSecurityGroupIngressResult, ApiError> {
        security_groups::revoke(self, ctx, input).await
    }

    async fn add_tags_to_resource(
        &self,
        ctx: &RequestContext,
        input: AddTagsToResourceMessage,
    ) -> Result<TagListMessage, ApiError> {
        tags::add(self, ctx, input).await
    }

    async fn remove_tags_from_resource(
        &self,
        ctx: &RequestContext,
        input: RemoveTagsFromResourceMessage,
    ) -> Result<TagListMessage, ApiError> {
        tags::remove(self, ctx, input).await
    }

    async fn list_tags_for_resource(
        &self,
        ctx: &RequestContext,
        input: ListTagsForResourceMessage,
    ) -> Result<TagListMessage, ApiError> {
        tags::list(self, ctx, input).await
    }

    async fn create_user(&self, ctx: &RequestContext, input: CreateUserMessage) -> Result<User, ApiError> {
        users::create(self, ctx, input).await
    }

    async fn describe_users(
        &self,
        ctx: &RequestContext,
        input: DescribeUsersMessage,
    ) -> Result<DescribeUsersResult, ApiError> {
        users::describe(self, ctx, input).await
    }

    async fn modify_user(&self, ctx: &RequestContext, input: ModifyUserMessage) -> Result<User, ApiError> {
        users::modify(self, ctx, input).await
    }

    async fn delete_user(&self, ctx: &RequestContext, input: DeleteUserMessage) -> Result<User, ApiError> {
        users::delete(self, ctx, input).await
    }

    async fn create_user_group(
        &self,
        ctx: &RequestContext,
        input: CreateUserGroupMessage,
    ) -> Result<UserGroup, ApiError> {
        user_groups::create(self, ctx, input).await
    }

    async fn describe_user_groups(
        &self,
        ctx: &RequestContext,
        input: DescribeUserGroupsMessage,
    ) -> Result<DescribeUserGroupsResult, ApiError> {
        user_groups::describe(self, ctx, input).await
    }

    async fn modify_user_group(
        &self,
        ctx: &RequestContext,
        input: ModifyUserGroupMessage,
    ) -> Result<UserGroup, ApiError> {
        user_groups::modify(self, ctx, input).await
    }

    async fn delete_user_group(
        &self,
        ctx: &RequestContext,
        input: DeleteUserGroupMessage,
    ) -> Result<UserGroup, ApiError> {
        user_groups::delete(self, ctx, input).await
    }

    async fn create_serverless_cache(
        &self,
        ctx: &RequestContext,
        input: CreateServerlessCacheRequest,
    ) -> Result<CreateServerlessCacheResponse, ApiError> {
        let out = serverless::create(self, ctx, input).await?;
        self.settle(ctx, "CreateServerlessCache", &serverless_of(out.serverless_cache.as_ref())).await;
        Ok(out)
    }

    async fn start_migration(
        &self,
        ctx: &RequestContext,
        input: StartMigrationMessage,
    ) -> Result<StartMigrationResponse, ApiError> {
        migration::start(self, ctx, input).await
    }

    async fn test_migration(
        &self,
        ctx: &RequestContext,
        input: TestMigrationMessage,
    ) -> Result<TestMigrationResponse, ApiError> {
        migration::test(self, ctx, input).await
    }

    async fn complete_migration(
        &self,
        ctx: &RequestContext,
        input: CompleteMigrationMessage,
    ) -> Result<CompleteMigrationResponse, ApiError> {
        let out = migration::complete(self, ctx, input).await?;
        self.settle(ctx, "CompleteMigration", &serverless_of(out.serverless_cache.as_ref())).await;
        Ok(out)
    }

    async fn prepare_migration(
        &self,
        ctx: &RequestContext,
        input: PrepareMigrationRequest,
    ) -> Result<PrepareMigrationResponse, ApiError> {
        let out = serverless_migration::prepare(self, ctx, input).await?;
        self.settle(ctx, "PrepareMigration", &serverless_of(out.serverless_cache.as_ref())).await;
        Ok(out)
    }

    async fn stop_migration(
        &self,
        ctx: &RequestContext,
        input: StopMigrationRequest,
    ) -> Result<StopMigrationResponse, ApiError> {
        serverless_migration::stop(self, ctx, input).await
    }

    async fn describe_service_updates(
        &self,
        ctx: &RequestContext,
        input: DescribeServiceUpdatesMessage,
    ) -> Result<ServiceUpdatesMessage, ApiError> {
        service_updates::describe_service_updates(self, ctx, input).await
    }

    async fn describe_update_actions(
        &self,
        ctx: &RequestContext,
        input: DescribeUpdateActionsMessage,
    ) -> Result<UpdateActionsMessage, ApiError> {
        service_updates::describe_update_actions(self, ctx, input).await
    }

    async fn batch_apply_update_action(
        &self,
        ctx: &RequestContext,
        input: BatchApplyUpdateActionMessage,
    ) -> Result<UpdateActionResultsMessage, ApiError> {
        service_updates::batch_apply(self, ctx, input).await
    }

    async fn batch_stop_update_action(
        &self,
        ctx: &RequestContext,
        input: BatchStopUpdateActionMessage,
    ) -> Result<UpdateActionResultsMessage, ApiError> {
        service_updates::batch_stop(self, ctx, input).await
    }

    async fn describe_reserved_cache_nodes_offerings(
        &self,
        _ctx: &RequestContext,
        input: DescribeReservedCacheNodesOfferingsMessage,
    ) -> Result<ReservedCacheNodesOfferingMessage, ApiError> {
        reserved_nodes::describe_offerings(self, input)
    }

    async fn purchase_reserved_cache_nodes_offering(
        &self,
        ctx: &RequestContext,
        input: PurchaseReservedCacheNodesOfferingMessage,
    ) -> Result<PurchaseReservedCacheNodesOfferingResult, ApiError> {
        reserved_nodes::purchase(self, ctx, input).await
    }

    async fn describe_reserved_cache_nodes(
        &self,
        ctx: &RequestContext,
        input: DescribeReservedCacheNodesMessage,
    ) -> Result<ReservedCacheNodeMessage, ApiError> {
        reserved_nodes::describe(self, ctx, input).await
    }

    async fn describe_serverless_caches(
        &self,
        ctx: &RequestContext,
        input: DescribeServerlessCachesRequest,
    ) -> Result<DescribeServerlessCachesResponse, ApiError> {
        serverless::describe(self, ctx, input).await
    }

    async fn modify_serverless_cache(
        &self,
        ctx: &RequestContext,
        input: ModifyServerlessCacheRequest,
    ) -> Result<ModifyServerlessCacheResponse, ApiError> {
        let out = serverless::modify(self, ctx, input).await?;
        self.settle(ctx, "ModifyServerlessCache", &serverless_of(out.serverless_cache.as_ref())).await;
        Ok(out)
    }

    async fn delete_serverless_cache(
        &self,
        ctx: &RequestContext,
        input: DeleteServerlessCacheRequest,
    ) -> Result<DeleteServerlessCacheResponse, ApiError> {
        let out = serverless::delete(self, ctx, input).await?;
        self.settle(ctx, "DeleteServerlessCache", &serverless_of(out.serverless_cache.as_ref())).await;
        Ok(out)
    }

    async fn create_serverless_cache_snapshot(
        &self,
        ctx: &RequestContext,
        input: CreateServerlessCacheSnapshotRequest,
    ) -> Result<CreateServerlessCacheSnapshotResponse, ApiError> {
        serverless_snapshots::create(self, ctx, input).await
    }

    async fn copy_serverless_cache_snapshot(
        &self,
        ctx: &RequestContext,
        input: CopyServerlessCacheSnapshotRequest,
    ) -> Result<CopyServerlessCacheSnapshotResponse, ApiError> {
        serverless_snapshots::copy(self, ctx, input).await
    }

    async fn describe_serverless_cache_snapshots(
        &self,
        ctx: &RequestContext,
        input: DescribeServerlessCacheSnapshotsRequest,
    ) -> Result<DescribeServerlessCacheSnapshotsResponse, ApiError> {
        serverless_snapshots::describe(self, ctx, input).await
    }

    async fn delete_serverless_cache_snapshot(
        &self,
        ctx: &RequestContext,
        input: DeleteServerlessCacheSnapshotRequest,
    ) -> Result<DeleteServerlessCacheSnapshotResponse, ApiError> {
        serverless_snapshots::delete(self, ctx, input).await
    }

    async fn export_serverless_cache_snapshot(
        &self,
        ctx: &RequestContext,
        input: ExportServerlessCacheSnapshotRequest,
    ) -> Result<ExportServerlessCacheSnapshotResponse, ApiError> {
        serverless_snapshots::export(self, ctx, input).await
    }

    async fn create_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: CreateGlobalReplicationGroupMessage,
    ) -> Result<CreateGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::create(self, ctx, input).await?;
        self.settle(ctx, "CreateGlobalReplicationGroup", &global_of(out.global_replication_group.as_ref())).await;
        Ok(out)
    }

    async fn describe_global_replication_groups(
        &self,
        ctx: &RequestContext,
        input: DescribeGlobalReplicationGroupsMessage,
    ) -> Result<DescribeGlobalReplicationGroupsResult, ApiError> {
        global_datastores::describe(self, ctx, input).await
    }

    async fn modify_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: ModifyGlobalReplicationGroupMessage,
    ) -> Result<ModifyGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::changes::modify(self, ctx, input).await?;
        self.settle(ctx, "ModifyGlobalReplicationGroup", &global_of(out.global_replication_group.as_ref())).await;
        Ok(out)
    }

    async fn delete_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: DeleteGlobalReplicationGroupMessage,
    ) -> Result<DeleteGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::delete(self, ctx, input).await?;
        self.settle(ctx, "DeleteGlobalReplicationGroup", &global_of(out.global_replication_group.as_ref())).await;
        Ok(out)
    }

    async fn disassociate_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: DisassociateGlobalReplicationGroupMessage,
    ) -> Result<DisassociateGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::disassociate(self, ctx, input).await?;
        self.settle(ctx, "DisassociateGlobalReplicationGroup", &global_of(out.global_replication_group.as_ref())).await;
        Ok(out)
    }

    async fn failover_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: FailoverGlobalReplicationGroupMessage,
    ) -> Result<FailoverGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::failover(self, ctx, input).await?;
        self.settle(ctx, "FailoverGlobalReplicationGroup", &global_of(out.global_replication_group.as_ref())).await;
        Ok(out)
    }

    async fn increase_node_groups_in_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: IncreaseNodeGroupsInGlobalReplicationGroupMessage,
    ) -> Result<IncreaseNodeGroupsInGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::changes::increase_node_groups(self, ctx, input).await?;
        self.settle(
            ctx,
            "IncreaseNodeGroupsInGlobalReplicationGroup",
            &global_of(out.global_replication_group.as_ref()),
        )
        .await;
        Ok(out)
    }

    async fn decrease_node_groups_in_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: DecreaseNodeGroupsInGlobalReplicationGroupMessage,
    ) -> Result<DecreaseNodeGroupsInGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::changes::decrease_node_groups(self, ctx, input).await?;
        self.settle(
            ctx,
            "DecreaseNodeGroupsInGlobalReplicationGroup",
            &global_of(out.global_replication_group.as_ref()),
        )
        .await;
        Ok(out)
    }

    async fn rebalance_slots_in_global_replication_group(
        &self,
        ctx: &RequestContext,
        input: RebalanceSlotsInGlobalReplicationGroupMessage,
    ) -> Result<RebalanceSlotsInGlobalReplicationGroupResult, ApiError> {
        let out = global_datastores::changes::rebalance_slots(self, ctx, input).await?;
        self.settle(ctx, "RebalanceSlotsInGlobalReplicationGroup", &global_of(out.global_replication_group.as_ref()))
            .await;
        Ok(out)
    }
}
