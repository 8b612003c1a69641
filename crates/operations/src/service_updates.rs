//! Service updates and update actions: DescribeServiceUpdates over the catalog's updates
//! and those the admin API published; DescribeUpdateActions, one action per service update
//! and cluster or group whose engine it applies to; BatchApplyUpdateAction and
//! BatchStopUpdateAction, which record what the reconciler then does (`reconciler::
//! service_updates` restarts the nodes one at a time, replicas first).
//!
//! An action never applied has no record: it is `not-applied`. Applying answers
//! `waiting-to-start` and stopping answers `stopping`, as aws-cli's examples show.
//! Sources: aws-cli's examples (`model/data/README.md`, "Service updates"). The
//! UnprocessedUpdateAction ErrorType/ErrorMessage wording is the emulator's own.

use aws_smithy_types::DateTime;
use model::service_updates::{AVAILABLE, ServiceUpdate, action};
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{NodeUpdateRecord, Scope, UpdateActionRecord, UpdateError, now_millis};

use crate::pagination::paginate;
use crate::{Operations, internal};

const ENGINES: [&str; 3] = ["redis", "valkey", "memcached"];

/// Every service update of the scope: the catalog's and the published ones (a published
/// update replaces the catalog's of the same name), by name.
async fn updates(ops: &Operations, scope: &Scope) -> Result<Vec<ServiceUpdate>, ApiError> {
    let published = ops.store.published_service_updates(scope).await.map_err(internal)?;
    let mut all: Vec<ServiceUpdate> =
        ops.catalog.service_updates().iter().filter(|u| !published.iter().any(|p| p.name == u.name)).cloned().collect();
    all.extend(published);
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::ServiceUpdateNotFoundFault, format!("Service update {name} not found."))
}

fn date(millis: i64) -> DateTime {
    DateTime::from_millis(millis)
}

fn update_output(u: &ServiceUpdate) -> protocol::shapes::ServiceUpdate {
    protocol::shapes::ServiceUpdate {
        auto_update_after_recommended_apply_by_date: Some(u.auto_update_after_recommended_apply_by_date),
        engine: Some(u.engine.clone()),
        engine_version: Some(u.engine_version.clone()),
        estimated_update_time: Some(u.estimated_update_time.clone()),
        service_update_description: Some(u.description.clone()),
        service_update_end_date: u.end_millis.map(date),
        service_update_name: Some(u.name.clone()),
        service_update_recommended_apply_by_date: u.recommended_apply_by_millis.map(date),
        service_update_release_date: Some(date(u.release_millis)),
        service_update_severity: ServiceUpdateSeverity::from_wire(&u.severity),
        service_update_status: ServiceUpdateStatus::from_wire(&u.status),
        service_update_type: ServiceUpdateType::from_wire(&u.update_type),
    }
}

pub async fn describe_service_updates(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeServiceUpdatesMessage,
) -> Result<ServiceUpdatesMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let all = updates(ops, &scope).await?;
    if let Some(name) = &input.service_update_name
        && !all.iter().any(|u| &u.name == name)
    {
        return Err(not_found(name));
    }
    let statuses = input.service_update_status.unwrap_or_default();
    let matching: Vec<ServiceUpdate> = all
        .into_iter()
        .filter(|u| input.service_update_name.as_ref().is_none_or(|n| *n == u.name))
        .filter(|u| statuses.is_empty() || statuses.iter().any(|s| s.as_str() == u.status))
        .collect();
    let page = paginate(matching, |u| u.name.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(ServiceUpdatesMessage {
        marker: page.marker,
        service_updates: Some(page.items.iter().map(update_output).collect()),
    })
}

/// A cluster or group an update action is about.
struct Target {
    replication_group_id: Option<String>,
    cache_cluster_id: Option<String>,
    engine: String,
    status: String,
    created_millis: i64,
    cluster_mode: bool,
    /// In update order: replicas first, the primary (or a cluster's last node) last.
    nodes: Vec<NodeUpdateRecord>,
}

impl Target {
    fn id(&self) -> &str {
        self.replication_group_id.as_deref().or(self.cache_cluster_id.as_deref()).unwrap_or_default()
    }

    fn matches(&self, action: &UpdateActionRecord) -> bool {
        action.replication_group_id == self.replication_group_id && action.cache_cluster_id == self.cache_cluster_id
    }
}

fn node(cluster: &str, node_id: &str, node_group_id: Option<String>) -> NodeUpdateRecord {
    NodeUpdateRecord {
        cache_cluster_id: cluster.to_string(),
        node_id: node_id.to_string(),
        node_group_id,
        status: action::NOT_APPLIED.to_string(),
        initiated_millis: None,
        start_millis: None,
        end_millis: None,
        modified_millis: 0,
    }
}

async fn targets(ops: &Operations, scope: &Scope) -> Result<Vec<Target>, ApiError> {
    let groups = ops.store.replication_groups(scope).await.map_err(internal)?;
    let clusters = ops.store.cache_clusters(scope).await.map_err(internal)?;
    Ok(build_targets(groups, clusters))
}

fn build_targets(groups: Vec<store::ReplicationGroup>, clusters: Vec<store::CacheCluster>) -> Vec<Target> {
    let mut out = Vec::new();
    for g in groups {
        let cluster_mode = g.group.cluster_enabled();
        let shard = |m: &store::CacheCluster| {
            if cluster_mode { m.cluster.node_group_id.clone() } else { Some(model::names::NODE_GROUP_ID.to_string()) }
        };
        let mut members: Vec<&store::CacheCluster> = g.members.iter().collect();
        // Replicas first, then the primary, which hands over before its restart.
        members.sort_by_key(|m| m.cluster.id == g.group.primary_cluster_id);
        let nodes = members
            .iter()
            .flat_map(|m| m.nodes.iter().map(move |n| node(&m.cluster.id, &n.node_id, shard(m))))
            .collect();
        out.push(Target {
            replication_group_id: Some(g.group.id.clone()),
            cache_cluster_id: None,
            engine: g.group.engine.clone(),
            status: g.group.status.clone(),
            created_millis: g.group.created_millis,
            cluster_mode,
            nodes,
        });
    }
    for c in clusters.into_iter().filter(|c| c.cluster.replication_group_id.is_none()) {
        out.push(Target {
            replication_group_id: None,
            cache_cluster_id: Some(c.cluster.id.clone()),
            engine: c.cluster.engine.clone(),
            status: c.cluster.status.clone(),
            created_millis: c.cluster.created_millis,
            cluster_mode: false,
            nodes: c.nodes.iter().map(|n| node(&c.cluster.id, &n.node_id, None)).collect(),
        });
    }
    out
}

/// The action of `update` on `target`: the stored one, or a `not-applied` one.
fn action_of(update: &ServiceUpdate, target: &Target, stored: &[UpdateActionRecord]) -> UpdateActionRecord {
    stored.iter().find(|a| a.service_update_name == update.name && target.matches(a)).cloned().unwrap_or_else(|| {
        UpdateActionRecord {
            service_update_name: update.name.clone(),
            replication_group_id: target.replication_group_id.clone(),
            cache_cluster_id: target.cache_cluster_id.clone(),
            status: action::NOT_APPLIED.to_string(),
            status_modified_millis: update.release_millis.max(target.created_millis),
            nodes: target.nodes.clone(),
        }
    })
}

fn sla_met(update: &ServiceUpdate, a: &UpdateActionRecord) -> SlaMet {
    match (a.status.as_str(), update.recommended_apply_by_millis) {
        (action::COMPLETE, Some(by)) if a.status_modified_millis <= by => SlaMet::Yes,
        (action::COMPLETE, Some(_)) => SlaMet::No,
        _ => SlaMet::NA,
    }
}

fn action_output(update: &ServiceUpdate, target: &Target, a: &UpdateActionRecord, node_level: bool) -> UpdateAction {
    let done = a.nodes.iter().filter(|n| n.status == action::COMPLETE).count();
    let node_status = |n: &NodeUpdateRecord| NodeUpdateStatus::from_wire(&n.status);
    let initiated_by = |n: &NodeUpdateRecord| n.initiated_millis.map(|_| NodeUpdateInitiatedBy::Customer);
    let (mut groups, mut nodes) = (None, None);
    if node_level && target.replication_group_id.is_some() {
        let mut shards: Vec<NodeGroupUpdateStatus> = Vec::new();
        for n in &a.nodes {
            let member = NodeGroupMemberUpdateStatus {
                cache_cluster_id: Some(n.cache_cluster_id.clone()),
                cache_node_id: Some(n.node_id.clone()),
                node_deletion_date: None,
                node_update_end_date: n.end_millis.map(date),
                node_update_initiated_by: initiated_by(n),
                node_update_initiated_date: n.initiated_millis.map(date),
                node_update_start_date: n.start_millis.map(date),
                node_update_status: node_status(n),
                node_update_status_modified_date: Some(date(n.modified_millis.max(a.status_modified_millis))),
            };
            match shards.iter_mut().find(|s| s.node_group_id == n.node_group_id) {
                Some(shard) => shard.node_group_member_update_status.get_or_insert_default().push(member),
                None => shards.push(NodeGroupUpdateStatus {
                    node_group_id: n.node_group_id.clone(),
                    node_group_member_update_status: Some(vec![member]),
                }),
            }
        }
        groups = Some(shards);
    } else if node_level {
        nodes = Some(
            a.nodes
                .iter()
                .map(|n| CacheNodeUpdateStatus {
                    cache_node_id: Some(n.node_id.clone()),
                    node_deletion_date: None,
                    node_update_end_date: n.end_millis.map(date),
                    node_update_initiated_by: initiated_by(n),
                    node_update_initiated_date: n.initiated_millis.map(date),
                    node_update_start_date: n.start_millis.map(date),
                    node_update_status: node_status(n),
                    node_update_status_modified_date: Some(date(n.modified_millis.max(a.status_modified_millis))),
                })
                .collect(),
        );
    }
    UpdateAction {
        cache_cluster_id: a.cache_cluster_id.clone(),
        cache_node_update_status: nodes,
        engine: Some(target.engine.clone()),
        estimated_update_time: Some(update.estimated_update_time.clone()),
        node_group_update_status: groups,
        nodes_updated: Some(format!("{done}/{}", a.nodes.len())),
        replication_group_id: a.replication_group_id.clone(),
        service_update_name: Some(update.name.clone()),
        service_update_recommended_apply_by_date: update.recommended_apply_by_millis.map(date),
        service_update_release_date: Some(date(update.release_millis)),
        service_update_severity: ServiceUpdateSeverity::from_wire(&update.severity),
        service_update_status: ServiceUpdateStatus::from_wire(&update.status),
        service_update_type: ServiceUpdateType::from_wire(&update.update_type),
        sla_met: Some(sla_met(update, a)),
        update_action_available_date: Some(date(update.release_millis.max(target.created_millis))),
        update_action_status: UpdateActionStatus::from_wire(&a.status),
        update_action_status_modified_date: Some(date(a.status_modified_millis)),
    }
}

pub async fn describe_update_actions(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeUpdateActionsMessage,
) -> Result<UpdateActionsMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    if let Some(engine) = &input.engine
        && !ENGINES.contains(&engine.as_str())
    {
        return Err(ApiError::invalid_parameter_value(format!(
            "Invalid value for Engine: {engine}. Valid values are redis, valkey and memcached."
        )));
    }
    let range = input.service_update_time_range.as_ref();
    if let Some(TimeRangeFilter { start_time: Some(start), end_time: Some(end) }) = range
        && start.to_millis().unwrap_or(0) > end.to_millis().unwrap_or(0)
    {
        return Err(ApiError::invalid_parameter_value(
            "The StartTime of ServiceUpdateTimeRange must not be after its EndTime.",
        ));
    }
    let millis = |t: Option<&DateTime>| t.and_then(|t| t.to_millis().ok());
    let (start, end) =
        (millis(range.and_then(|r| r.start_time.as_ref())), millis(range.and_then(|r| r.end_time.as_ref())));
    let group_ids = input.replication_group_ids.unwrap_or_default();
    let cluster_ids = input.cache_cluster_ids.unwrap_or_default();
    let update_statuses = input.service_update_status.unwrap_or_default();
    let action_statuses = input.update_action_status.unwrap_or_default();
    let node_level = input.show_node_level_update_status.unwrap_or(false);

    let all = updates(ops, &scope).await?;
    let targets = targets(ops, &scope).await?;
    let stored = ops.store.update_actions(&scope).await.map_err(internal)?;
    let mut matching: Vec<(String, UpdateAction)> = Vec::new();
    for update in &all {
        if input.service_update_name.as_ref().is_some_and(|n| *n != update.name)
            || !(update_statuses.is_empty() || update_statuses.iter().any(|s| s.as_str() == update.status))
            || start.is_some_and(|s| update.release_millis < s)
            || end.is_some_and(|e| update.release_millis > e)
        {
            continue;
        }
        for target in targets.iter().filter(|t| update.applies_to(&t.engine)) {
            let named = (group_ids.is_empty() && cluster_ids.is_empty())
                || target.replication_group_id.as_ref().is_some_and(|id| group_ids.contains(id))
                || target.cache_cluster_id.as_ref().is_some_and(|id| cluster_ids.contains(id));
            if !named || input.engine.as_ref().is_some_and(|e| *e != target.engine) {
                continue;
            }
            let a = action_of(update, target, &stored);
            if !(action_statuses.is_empty() || action_statuses.iter().any(|s| s.as_str() == a.status)) {
                continue;
            }
            matching.push((a.key(), action_output(update, target, &a, node_level)));
        }
    }
    matching.sort_by(|a, b| a.0.cmp(&b.0));
    let page = paginate(matching, |(key, _)| key.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(UpdateActionsMessage {
        marker: page.marker,
        update_actions: Some(page.items.into_iter().map(|(_, a)| a).collect()),
    })
}

/// Apply or stop.
#[derive(Clone, Copy, PartialEq)]
enum Batch {
    Apply,
    Stop,
}

fn unprocessed(
    update: &str,
    group: Option<&str>,
    cluster: Option<&str>,
    kind: &str,
    message: String,
) -> UnprocessedUpdateAction {
    UnprocessedUpdateAction {
        cache_cluster_id: cluster.map(str::to_string),
        error_message: Some(message),
        error_type: Some(kind.to_string()),
        replication_group_id: group.map(str::to_string),
        service_update_name: Some(update.to_string()),
    }
}

/// What one id of a batch comes to: the action to write, or why not.
fn decide(
    batch: Batch,
    update: &ServiceUpdate,
    target: &Target,
    current: UpdateActionRecord,
    now: i64,
) -> Result<Option<UpdateActionRecord>, (&'static str, String)> {
    let id = target.id();
    let invalid = "InvalidParameterValue";
    if batch == Batch::Apply {
        if update.status != AVAILABLE {
            return Err((
                invalid,
                format!("Service update {} is {} and can no longer be applied.", update.name, update.status),
            ));
        }
        if !update.applies_to(&target.engine) {
            return Err((
                invalid,
                format!("Service update {} does not apply to {} engine {}.", update.name, id, target.engine),
            ));
        }
        if target.cluster_mode {
            return Err((
                "InvalidParameterCombination",
                format!(
                    "The emulator does not apply service updates to cluster mode enabled replication group {id} yet."
                ),
            ));
        }
        if target.status != model::status::cluster::AVAILABLE {
            let kind = if target.replication_group_id.is_some() {
                "InvalidReplicationGroupStateFault"
            } else {
                "InvalidCacheClusterStateFault"
            };
            return Err((kind, format!("{id} is not in available state (it is {}).", target.status)));
        }
    }
    match (batch, current.status.as_str()) {
        (Batch::Apply, action::WAITING_TO_START | action::IN_PROGRESS) => Ok(None),
        (Batch::Apply, action::COMPLETE) => {
            Err((invalid, format!("Service update {} is already complete on {id}.", update.name)))
        }
        (Batch::Apply, action::STOPPING) => {
            Err((invalid, format!("Service update {} is stopping on {id}; apply it again once stopped.", update.name)))
        }
        (Batch::Apply, _) => {
            let mut next = current;
            next.status = action::WAITING_TO_START.to_string();
            next.status_modified_millis = now;
            // Nodes updated already stay updated; a new node (added since) joins.
            let nodes = target.nodes.iter().map(|n| {
                let old =
                    next.nodes.iter().find(|o| o.cache_cluster_id == n.cache_cluster_id && o.node_id == n.node_id);
                match old.filter(|o| o.status == action::COMPLETE) {
                    Some(done) => done.clone(),
                    None => NodeUpdateRecord {
                        status: action::WAITING_TO_START.to_string(),
                        initiated_millis: Some(now),
                        modified_millis: now,
                        ..n.clone()
                    },
                }
            });
            next.nodes = nodes.collect();
            Ok(Some(next))
        }
        (Batch::Stop, action::WAITING_TO_START | action::IN_PROGRESS) => {
            let mut next = current;
            next.status = action::STOPPING.to_string();
            next.status_modified_millis = now;
            Ok(Some(next))
        }
        (Batch::Stop, action::STOPPING) => Ok(None),
        (Batch::Stop, status) => {
            Err((invalid, format!("Service update {} is {status} on {id}: nothing to stop.", update.name)))
        }
    }
}

async fn batch(
    ops: &Operations,
    ctx: &RequestContext,
    kind: Batch,
    name: &str,
    group_ids: Option<Vec<String>>,
    cluster_ids: Option<Vec<String>>,
) -> Result<UpdateActionResultsMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let (group_ids, cluster_ids) = (group_ids.unwrap_or_default(), cluster_ids.unwrap_or_default());
    if group_ids.is_empty() && cluster_ids.is_empty() {
        return Err(ApiError::invalid_parameter_value(
            "At least one of ReplicationGroupIds or CacheClusterIds must be specified.",
        ));
    }
    let update = updates(ops, &scope).await?.into_iter().find(|u| u.name == name).ok_or_else(|| not_found(name))?;
    let all = targets(ops, &scope).await?;
    let now = now_millis();
    let result = ops
        .store
        .write(async |tx| {
            let stored = tx.update_actions(&scope).await?;
            let (mut processed, mut refused) = (Vec::new(), Vec::new());
            let asked = group_ids.iter().map(|id| (Some(id.as_str()), None)).chain(cluster_ids.iter().map(|id| (None, Some(id.as_str()))));
            for (group, cluster) in asked {
                let target = all.iter().find(|t| {
                    (group.is_some() && t.replication_group_id.as_deref() == group)
                        || (cluster.is_some() && t.cache_cluster_id.as_deref() == cluster)
                });
                let Some(target) = target else {
                    let (kind, message) = match (group, cluster) {
                        (Some(id), _) => ("ReplicationGroupNotFoundFault", format!("ReplicationGroup not found: {id}")),
                        (_, id) => {
                            let id = id.unwrap_or_default();
                            let member = tx.cache_cluster(&scope, id).await?.and_then(|c| c.cluster.replication_group_id);
                            match member {
                                Some(g) => ("InvalidParameterValue", format!("Cache cluster {id} is a member of replication group {g}: apply the update to the group.")),
                                None => ("CacheClusterNotFoundFault", format!("CacheCluster not found: {id}")),
                            }
                        }
                    };
                    refused.push(unprocessed(name, group, cluster, kind, message));
                    continue;
                };
                let current = action_of(&update, target, &stored);
                match decide(kind, &update, target, current.clone(), now) {
                    Ok(next) => {
                        let status = next.as_ref().map_or(current.status.clone(), |n| n.status.clone());
                        if let Some(next) = &next {
                            tx.put_update_action(&scope, next).await?;
                            tracing::info!(
                                update_action = next.key(),
                                region = scope.region,
                                from = current.status,
                                to = next.status,
                                "update action status"
                            );
                        }
                        processed.push(ProcessedUpdateAction {
                            cache_cluster_id: cluster.map(str::to_string),
                            replication_group_id: group.map(str::to_string),
                            service_update_name: Some(name.to_string()),
                            update_action_status: UpdateActionStatus::from_wire(&status),
                        });
                    }
                    Err((kind, message)) => refused.push(unprocessed(name, group, cluster, kind, message)),
                }
            }
            Ok::<_, UpdateError<ApiError>>((processed, refused))
        })
        .await;
    let (processed, refused) = match result {
        Ok(done) => done,
        Err(UpdateError::Rejected(e)) => return Err(e),
        Err(UpdateError::Store(e)) => return Err(internal(e)),
    };
    Ok(UpdateActionResultsMessage {
        processed_update_actions: Some(processed),
        unprocessed_update_actions: Some(refused),
    })
}

pub async fn batch_apply(
    ops: &Operations,
    ctx: &RequestContext,
    input: BatchApplyUpdateActionMessage,
) -> Result<UpdateActionResultsMessage, ApiError> {
    batch(ops, ctx, Batch::Apply, &input.service_update_name, input.replication_group_ids, input.cache_cluster_ids)
        .await
}

pub async fn batch_stop(
    ops: &Operations,
    ctx: &RequestContext,
    input: BatchStopUpdateActionMessage,
) -> Result<UpdateActionResultsMessage, ApiError> {
    batch(ops, ctx, Batch::Stop, &input.service_update_name, input.replication_group_ids, input.cache_cluster_ids).await
}

/// What the admin API publishes: AWS's fields, each with a default.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Publish {
    pub service_update_name: Option<String>,
    pub service_update_release_date: Option<String>,
    pub service_update_end_date: Option<String>,
    pub service_update_severity: Option<String>,
    pub service_update_recommended_apply_by_date: Option<String>,
    pub service_update_status: Option<String>,
    pub service_update_description: Option<String>,
    pub service_update_type: Option<String>,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub auto_update_after_recommended_apply_by_date: Option<bool>,
    pub estimated_update_time: Option<String>,
}

/// Publishes a service update in `region` (the emulator's admin API); answers it, or why
/// the request is invalid.
pub async fn publish(ops: &Operations, region: &str, account: &str, p: Publish) -> Result<ServiceUpdate, String> {
    let now = now_millis();
    let day = 86_400_000;
    let date = |field: &str, text: Option<&String>, default: i64| match text {
        Some(t) => model::service_updates::parse_date(t)
            .ok_or_else(|| format!("{field}: {t} is not a date like 2024-06-11T16:00:00Z")),
        None => Ok(default),
    };
    let one_of = |field: &str, value: Option<String>, allowed: &[&str], default: &str| {
        let value = value.unwrap_or_else(|| default.to_string());
        if allowed.contains(&value.as_str()) {
            Ok(value)
        } else {
            Err(format!("{field}: {value} is not one of {}", allowed.join(", ")))
        }
    };
    let release = date("ServiceUpdateReleaseDate", p.service_update_release_date.as_ref(), now)?;
    let update = ServiceUpdate {
        // AWS's names: elasticache-YYYYMMDD-NNN.
        name: p.service_update_name.unwrap_or_else(|| {
            let day = crate::reserved_nodes::civil_date(release);
            format!("elasticache-{day}-{:03}", (now % 1000).max(1))
        }),
        release_millis: release,
        end_millis: Some(date("ServiceUpdateEndDate", p.service_update_end_date.as_ref(), release + 365 * day)?),
        severity: one_of(
            "ServiceUpdateSeverity",
            p.service_update_severity,
            &model::service_updates::SEVERITIES,
            "important",
        )?,
        recommended_apply_by_millis: Some(date(
            "ServiceUpdateRecommendedApplyByDate",
            p.service_update_recommended_apply_by_date.as_ref(),
            release + 30 * day,
        )?),
        status: one_of("ServiceUpdateStatus", p.service_update_status, &model::service_updates::STATUSES, AVAILABLE)?,
        description: p.service_update_description.unwrap_or_else(|| {
            "Upgrades to improve the security, reliability, and operational performance of your ElastiCache nodes"
                .to_string()
        }),
        update_type: one_of(
            "ServiceUpdateType",
            p.service_update_type,
            &[model::service_updates::SECURITY_UPDATE],
            model::service_updates::SECURITY_UPDATE,
        )?,
        engine: p.engine.unwrap_or_else(|| "redis, valkey, memcached".to_string()),
        engine_version: p.engine_version.unwrap_or_else(|| {
            "redis 4.0.10 and onwards, valkey 7.2 and onwards, memcached 1.4.5 and onwards".to_string()
        }),
        auto_update_after_recommended_apply_by_date: p.auto_update_after_recommended_apply_by_date.unwrap_or(false),
        estimated_update_time: p.estimated_update_time.unwrap_or_else(|| "30 minutes per node".to_string()),
    };
    let scope = Scope { region: region.to_string(), account: account.to_string() };
    ops.store.publish_service_update(&scope, &update).await.map_err(|e| e.to_string())?;
    tracing::info!(service_update = update.name, region, status = update.status, "published service update");
    Ok(update)
}
