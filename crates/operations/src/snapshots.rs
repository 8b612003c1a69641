//! Snapshots of Redis/Valkey clusters and replication groups: the API half. The reconciler
//! takes the RDB file from a serving node (a replica when there is one, as AWS prefers),
//! copies and exports files, and deletes them.

use aws_smithy_types::DateTime;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{NodeSnapshotRecord, Scope, SnapshotRecord, StoreError, UpdateError, now_millis};

use crate::arn::{self, Kind, NotFound as _};
use crate::cache_clusters::{self as clusters, status};
use crate::pagination::paginate;
use crate::replication_groups::NODE_GROUP_ID;
use crate::{Operations, Write, answered, internal, refuse, tags, validate, written};

pub use model::status::snapshot as snapshot_status;

fn not_found(name: &str) -> ApiError {
    Kind::Snapshot.not_found(name)
}

fn cluster_not_available(id: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidCacheClusterStateFault, format!("Cache cluster {id} is not in available state."))
}

fn group_not_available(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidReplicationGroupStateFault,
        format!("Replication group {id} is not in available state."),
    )
}

/// Refuses, inside a write, a snapshot whose source is no longer available.
async fn source_still_available(tx: &mut store::Tx, scope: &Scope, s: &SnapshotRecord) -> Write<()> {
    if let Some(id) = &s.replication_group_id {
        let group = tx.replication_group(scope, id).await?;
        if group.is_none_or(|g| g.group.status != status::AVAILABLE) {
            return refuse(group_not_available(id));
        }
    } else if let Some(id) = &s.cache_cluster_id {
        let cluster = tx.cache_cluster(scope, id).await?;
        if cluster.is_none_or(|c| c.cluster.status != status::AVAILABLE) {
            return refuse(cluster_not_available(id));
        }
    }
    Ok(())
}

fn already_exists(name: &str) -> ApiError {
    ApiError::new(ErrorCode::SnapshotAlreadyExistsFault, format!("Snapshot {name} already exists."))
}

fn invalid_state(name: &str, status: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidSnapshotStateFault,
        format!("Snapshot {name} is not in available state (current state: {status})."),
    )
}

/// A snapshot of a cluster or of a replication group, one RDB file per shard, each taken
/// from the node of `sources` given for that shard (with the shard's slots, in cluster mode).
pub(crate) fn record_for(
    name: &str,
    source: &str,
    cluster: &store::CacheClusterRecord,
    group: Option<&store::ReplicationGroupRecord>,
    sources: &[(&store::CacheCluster, String, Option<String>)],
) -> SnapshotRecord {
    let first = sources.first().map(|(c, _, _)| *c);
    SnapshotRecord {
        name: name.to_string(),
        status: snapshot_status::CREATING.to_string(),
        source: source.to_string(),
        cache_cluster_id: group.is_none().then(|| cluster.id.clone()),
        replication_group_id: group.map(|g| g.id.clone()),
        replication_group_description: group.map(|g| g.description.clone()),
        automatic_failover: group.is_some_and(|g| g.automatic_failover),
        engine: cluster.engine.clone(),
        engine_version: cluster.engine_version.clone(),
        node_type: cluster.node_type.clone(),
        parameter_group: cluster.parameter_group.clone(),
        subnet_group: cluster.subnet_group.clone(),
        port: cluster.port,
        num_cache_nodes: cluster.num_nodes,
        preferred_zone: first.and_then(|c| c.nodes.first()).map(|n| n.zone.clone()),
        maintenance_window: cluster.maintenance_window.clone(),
        snapshot_window: cluster.snapshot_window.clone(),
        snapshot_retention_limit: group.map_or(cluster.snapshot_retention_limit, |g| g.snapshot_retention_limit),
        auto_minor_version_upgrade: cluster.auto_minor_version_upgrade,
        source_created_millis: group.map_or(cluster.created_millis, |g| g.created_millis),
        created_millis: now_millis(),
        nodes: sources
            .iter()
            .filter_map(|(c, node_group_id, slots)| {
                c.nodes.first().map(|n| NodeSnapshotRecord {
                    cache_cluster_id: c.cluster.id.clone(),
                    node_id: n.node_id.clone(),
                    node_group_id: node_group_id.clone(),
                    size_bytes: None,
                    node_created_millis: n.created_millis,
                    snapshot_millis: None,
                    slots: slots.clone(),
                })
            })
            .collect(),
        copy_of: None,
        export_to: None,
        delete_source_after: false,
        // A group's setting, or a member cluster's when snapshotted on its own.
        at_rest_encryption: group.map_or(cluster.at_rest_encryption, |g| g.at_rest_encryption),
        kms_key_id: group.and_then(|g| g.kms_key_id.clone()),
    }
}

pub fn output(scope: &Scope, s: &SnapshotRecord, show_node_groups: bool) -> Snapshot {
    Snapshot {
        arn: Some(arn::build(scope, Kind::Snapshot, &s.name)),
        auto_minor_version_upgrade: Some(s.auto_minor_version_upgrade),
        automatic_failover: s.replication_group_id.as_ref().map(|_| {
            if s.automatic_failover { AutomaticFailoverStatus::Enabled } else { AutomaticFailoverStatus::Disabled }
        }),
        cache_cluster_create_time: Some(DateTime::from_millis(s.source_created_millis)),
        cache_cluster_id: s.cache_cluster_id.clone(),
        cache_node_type: Some(s.node_type.clone()),
        cache_parameter_group_name: Some(s.parameter_group.clone()),
        cache_subnet_group_name: Some(s.subnet_group.clone()),
        data_tiering: Some(DataTieringStatus::Disabled),
        durability: None,
        engine: Some(s.engine.clone()),
        engine_version: Some(s.engine_version.clone()),
        kms_key_id: s.kms_key_id.clone(),
        node_snapshots: Some(
            s.nodes
                .iter()
                .map(|n| NodeSnapshot {
                    cache_cluster_id: Some(n.cache_cluster_id.clone()),
                    cache_node_create_time: Some(DateTime::from_millis(n.node_created_millis)),
                    cache_node_id: Some(n.node_id.clone()),
                    cache_size: n.size_bytes.map(|b| format!("{:.1} MB", b as f64 / 1_048_576.0)),
                    node_group_configuration: show_node_groups.then(|| NodeGroupConfiguration {
                        node_group_id: Some(n.node_group_id.clone()),
                        primary_availability_zone: s.preferred_zone.clone(),
                        slots: n.slots.clone(),
                        ..Default::default()
                    }),
                    node_group_id: s.replication_group_id.as_ref().map(|_| n.node_group_id.clone()),
                    snapshot_create_time: n.snapshot_millis.map(DateTime::from_millis),
                })
                .collect(),
        ),
        num_cache_nodes: s.cache_cluster_id.as_ref().map(|_| s.num_cache_nodes as i32),
        num_node_groups: s.replication_group_id.as_ref().map(|_| s.nodes.len() as i32),
        port: Some(i32::from(s.port)),
        preferred_availability_zone: s.preferred_zone.clone(),
        preferred_maintenance_window: Some(s.maintenance_window.clone()),
        preferred_outpost_arn: None,
        replication_group_description: s.replication_group_description.clone(),
        replication_group_id: s.replication_group_id.clone(),
        snapshot_name: Some(s.name.clone()),
        snapshot_retention_limit: Some(s.snapshot_retention_limit),
        snapshot_source: Some(s.source.clone()),
        snapshot_status: Some(s.status.clone()),
        snapshot_window: s.snapshot_window.clone(),
        topic_arn: None,
        vpc_id: None,
    }
}

/// Why a snapshot is taken: it decides its source label and the checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// CreateSnapshot: the source must be available and goes `snapshotting`.
    Manual,
    /// FinalSnapshotIdentifier: the source is being deleted; the caller checked it.
    Final,
    /// The daily backup of SnapshotRetentionLimit: like manual, under AWS's own name.
    Automated,
}

/// Records a new snapshot of a cluster or group in `creating` and marks the source
/// `snapshotting` (not for a final snapshot: its source is being deleted).
#[allow(clippy::too_many_arguments)]
async fn start(
    ops: &Operations,
    scope: &Scope,
    name: &str,
    cluster_id: Option<&str>,
    group_id: Option<&str>,
    tags: &[store::TagRecord],
    taken: Taken,
    kms_key_id: Option<String>,
) -> Result<SnapshotRecord, ApiError> {
    let snapshot = plan(ops, scope, name, cluster_id, group_id, taken, kms_key_id).await?;
    written(ops.store.write(async |tx| record(tx, scope, &snapshot, tags).await).await)?;
    Ok(snapshot)
}

/// The snapshot a CreateSnapshot, a final or an automated snapshot would record, after
/// A snapshot comes from a cluster or from a group, never both: refused before anything
/// else is looked at. (AWS's wording for this is not on record.)
fn one_source(cluster_id: Option<&str>, group_id: Option<&str>) -> Result<(), ApiError> {
    if cluster_id.is_some() && group_id.is_some() {
        return Err(ApiError::invalid_parameter_combination(
            "Give either CacheClusterId or ReplicationGroupId, not both.",
        ));
    }
    Ok(())
}

/// AWS's checks; nothing is written. With CreateSnapshot's KmsKeyId, the snapshot is
/// stored encrypted and records that key, whatever its source's setting.
pub(crate) async fn plan(
    ops: &Operations,
    scope: &Scope,
    name: &str,
    cluster_id: Option<&str>,
    group_id: Option<&str>,
    taken: Taken,
    kms_key_id: Option<String>,
) -> Result<SnapshotRecord, ApiError> {
    one_source(cluster_id, group_id)?;
    // Automated names are AWS's own; a serverless cache's snapshots are stored under a
    // backing name its own module made from a name it checked.
    if taken != Taken::Automated && !model::names::is_serverless_backing(name) {
        validate::group_name("SnapshotName", name)?;
    }
    if ops.store.snapshot(scope, name).await.map_err(internal)?.is_some() {
        return Err(already_exists(name));
    }
    let final_snapshot = taken == Taken::Final;
    let source = if taken == Taken::Automated { "automated" } else { "manual" };
    let snapshot = match (cluster_id, group_id) {
        (Some(id), None) => {
            let c = clusters::existing(ops, scope, id).await?;
            // A serverless Memcached cache has snapshots; a Memcached cluster has none.
            if !model::names::is_serverless_backing(&c.cluster.id) {
                check_engine(&c.cluster.engine)?;
            }
            if !final_snapshot && c.cluster.status != status::AVAILABLE {
                return Err(cluster_not_available(&c.cluster.id));
            }
            let mut record = record_for(name, source, &c.cluster, None, &[(&c, NODE_GROUP_ID.to_string(), None)]);
            // A member snapshotted on its own: the group's key is the one recorded.
            if let Some(group) = &c.cluster.replication_group_id
                && let Some(g) = ops.store.replication_group(scope, group).await.map_err(internal)?
            {
                record.kms_key_id = g.group.kms_key_id.clone();
            }
            record
        }
        (None, Some(id)) => {
            let g = ops
                .store
                .replication_group(scope, &id.to_ascii_lowercase())
                .await
                .map_err(internal)?
                .ok_or_else(|| Kind::ReplicationGroup.not_found(id))?;
            if !final_snapshot && g.group.status != status::AVAILABLE {
                return Err(group_not_available(&g.group.id));
            }
            // From each shard, a replica when there is one, as AWS prefers; the primary otherwise.
            let sources: Vec<(&store::CacheCluster, String, Option<String>)> = if g.group.cluster_enabled() {
                g.group
                    .node_groups
                    .iter()
                    .filter_map(|shard| {
                        let members = crate::shards::shard_members(&g, shard);
                        let from =
                            members.iter().find(|m| m.cluster.id != shard.primary_cluster_id).or(members.first());
                        from.map(|m| (*m, shard.id.clone(), Some(crate::shards::format_slots(&shard.slots))))
                    })
                    .collect()
            } else {
                let from = g
                    .members
                    .iter()
                    .find(|m| m.cluster.id != g.group.primary_cluster_id)
                    .or_else(|| g.members.first())
                    .ok_or_else(|| ApiError::internal("replication group without members"))?;
                vec![(from, NODE_GROUP_ID.to_string(), None)]
            };
            let template =
                sources.first().map(|(c, _, _)| &c.cluster).ok_or_else(|| ApiError::internal("no shards"))?;
            record_for(name, source, template, Some(&g.group), &sources)
        }
        _ => {
            return Err(ApiError::invalid_parameter_combination(
                "Exactly one of CacheClusterId and ReplicationGroupId must be provided.",
            ));
        }
    };
    let mut snapshot = SnapshotRecord { delete_source_after: final_snapshot, ..snapshot };
    if let Some(key) = kms_key_id {
        snapshot.at_rest_encryption = true;
        snapshot.kms_key_id = Some(key);
    }
    Ok(snapshot)
}

/// Records a planned snapshot in `creating`, inside a write. The source's status is checked
/// again and moved to `snapshotting` in the same write (not for a final snapshot: its
/// source is being deleted), so of two concurrent snapshots of one source, one is refused.
pub(crate) async fn record(
    tx: &mut store::Tx,
    scope: &Scope,
    snapshot: &SnapshotRecord,
    tags: &[store::TagRecord],
) -> Write<()> {
    let final_snapshot = snapshot.delete_source_after;
    if !final_snapshot {
        source_still_available(tx, scope, snapshot).await?;
    }
    let arn = arn::build(scope, Kind::Snapshot, &snapshot.name);
    tx.create_snapshot(scope, snapshot, &arn, tags, &[])
        .await
        .map_err(|e| answered(e, |e| matches!(e, StoreError::AlreadyExists).then(|| already_exists(&snapshot.name))))?;
    if !final_snapshot {
        tx.mark_snapshot_source(scope, snapshot, status::AVAILABLE, status::SNAPSHOTTING).await?;
    }
    Ok(())
}

fn check_engine(engine: &str) -> Result<(), ApiError> {
    if engine == "memcached" {
        return Err(ApiError::new(
            ErrorCode::SnapshotFeatureNotSupportedFault,
            "Snapshots are not supported for Memcached clusters.",
        ));
    }
    Ok(())
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateSnapshotMessage,
) -> Result<CreateSnapshotResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let kms_key_id = input.kms_key_id.as_deref().map(validate::kms_key_id).transpose()?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let snapshot = start(
        ops,
        &scope,
        &input.snapshot_name,
        input.cache_cluster_id.as_deref(),
        input.replication_group_id.as_deref(),
        &tags,
        Taken::Manual,
        kms_key_id,
    )
    .await?;
    tracing::info!(snapshot = snapshot.name, "snapshot: (none) -> creating");
    Ok(CreateSnapshotResult { snapshot: Some(output(&scope, &snapshot, false)) })
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeSnapshotsMessage,
) -> Result<DescribeSnapshotsListMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    one_source(input.cache_cluster_id.as_deref(), input.replication_group_id.as_deref())?;
    if let Some(source) = input.snapshot_source.as_deref()
        && !["manual", "automated", "system"].contains(&source)
    {
        return Err(ApiError::invalid_parameter_value(format!(
            "Invalid value {source} for SnapshotSource. Valid values: manual, automated, system."
        )));
    }
    let snapshots = match &input.snapshot_name {
        Some(name) => vec![ops.store.snapshot(&scope, name).await.map_err(internal)?.ok_or_else(|| not_found(name))?],
        None => ops.store.snapshots(&scope).await.map_err(internal)?,
    };
    // DescribeServerlessCacheSnapshots shows those.
    let snapshots: Vec<SnapshotRecord> =
        snapshots.into_iter().filter(|s| !model::names::is_serverless_backing(&s.name)).collect();
    if let Some(id) = &input.cache_cluster_id
        && ops.store.cache_cluster(&scope, &id.to_ascii_lowercase()).await.map_err(internal)?.is_none()
        && !snapshots.iter().any(|s| s.cache_cluster_id.as_deref() == Some(id.as_str()))
    {
        return Err(Kind::Cluster.not_found(id));
    }
    let cluster_id = input.cache_cluster_id.as_ref().map(|id| id.to_ascii_lowercase());
    let group_id = input.replication_group_id.as_ref().map(|id| id.to_ascii_lowercase());
    if let Some(id) = &group_id
        && ops.store.replication_group(&scope, id).await.map_err(internal)?.is_none()
        && !snapshots.iter().any(|s| s.replication_group_id.as_deref() == Some(id.as_str()))
    {
        return Err(Kind::ReplicationGroup.not_found(id));
    }
    let matching: Vec<SnapshotRecord> = snapshots
        .into_iter()
        .filter(|s| cluster_id.as_ref().is_none_or(|id| s.cache_cluster_id.as_ref() == Some(id)))
        .filter(|s| group_id.as_ref().is_none_or(|id| s.replication_group_id.as_ref() == Some(id)))
        .filter(|s| input.snapshot_source.as_ref().is_none_or(|source| s.source == *source))
        .collect();
    let page = paginate(matching, |s| s.name.clone(), input.marker.as_deref(), input.max_records)?;
    let show = input.show_node_group_config.unwrap_or(false);
    Ok(DescribeSnapshotsListMessage {
        marker: page.marker,
        snapshots: Some(page.items.iter().map(|s| output(&scope, s, show)).collect()),
    })
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteSnapshotMessage,
) -> Result<DeleteSnapshotResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.snapshot_name;
    let result = ops
        .store
        .update_snapshot(&scope, &name, |s| {
            if ![snapshot_status::AVAILABLE, snapshot_status::FAILED].contains(&s.status.as_str()) {
                return Err(invalid_state(&s.name, &s.status));
            }
            s.status = snapshot_status::DELETING.to_string();
            Ok(Vec::new())
        })
        .await;
    let snapshot = crate::updated(result, || not_found(&name))?;
    Ok(DeleteSnapshotResult { snapshot: Some(output(&scope, &snapshot, false)) })
}

pub async fn copy(
    ops: &Operations,
    ctx: &RequestContext,
    input: CopySnapshotMessage,
) -> Result<CopySnapshotResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let kms_key_id = input.kms_key_id.as_deref().map(validate::kms_key_id).transpose()?;
    let source = ops
        .store
        .snapshot(&scope, &input.source_snapshot_name)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(&input.source_snapshot_name))?;
    if source.status != snapshot_status::AVAILABLE {
        return Err(invalid_state(&source.name, &source.status));
    }
    let target = input.target_snapshot_name.clone();
    // The name becomes a file name in the bucket too: the rule keeps it inside.
    validate::group_name("TargetSnapshotName", &target)?;
    if let Some(bucket) = &input.target_bucket {
        // An export: the files go to the bucket (a local export directory); no snapshot is
        // created. The source is `exporting` until they are written.
        validate_bucket(bucket)?;
        let result = ops
            .store
            .update_snapshot(&scope, &source.name, |s| {
                if s.status != snapshot_status::AVAILABLE {
                    return Err(invalid_state(&s.name, &s.status));
                }
                s.status = snapshot_status::EXPORTING.to_string();
                s.export_to = Some(format!("{bucket}/{target}"));
                Ok(Vec::new())
            })
            .await;
        let exported = crate::updated(result, || not_found(&source.name))?;
        // Described under the exported name, as the copy AWS writes to the bucket. With a
        // KmsKeyId the bucket's object is encrypted server-side under that key on AWS, and
        // read back as the plain RDB file it holds; the export directory (or the S3
        // endpoint) gets that plain file, and the key is shown as asked for.
        let kms_key_id = kms_key_id.or(exported.kms_key_id.clone());
        let shown = SnapshotRecord { name: target, kms_key_id, ..exported };
        return Ok(CopySnapshotResult { snapshot: Some(output(&scope, &shown, false)) });
    }
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let copy = SnapshotRecord {
        name: target.clone(),
        status: snapshot_status::CREATING.to_string(),
        source: "manual".to_string(),
        created_millis: now_millis(),
        copy_of: Some(source.name.clone()),
        export_to: None,
        delete_source_after: false,
        // Encrypted when the source is, or under the KmsKeyId asked for.
        at_rest_encryption: source.at_rest_encryption || kms_key_id.is_some(),
        kms_key_id: kms_key_id.or(source.kms_key_id.clone()),
        ..source
    };
    let arn = arn::build(&scope, Kind::Snapshot, &target);
    // The source is checked again in the write: one being deleted meanwhile is not copied.
    written(
        ops.store
            .write(async |tx| {
                match tx.snapshot(&scope, &source.name).await? {
                    Some(s) if s.status == snapshot_status::AVAILABLE => {}
                    Some(s) => return refuse(invalid_state(&s.name, &s.status)),
                    None => return refuse(not_found(&source.name)),
                }
                tx.create_snapshot(&scope, &copy, &arn, &tags, &[]).await.map_err(|e| {
                    answered(e, |e| matches!(e, StoreError::AlreadyExists).then(|| already_exists(&target)))
                })
            })
            .await,
    )?;
    Ok(CopySnapshotResult { snapshot: Some(output(&scope, &copy, false)) })
}

/// S3's bucket naming rule, which the local export directory also relies on: 3–63
/// lowercase letters, digits, dots and hyphens, starting and ending with a letter or
/// digit, no `..`, and not an IP address.
pub(crate) fn validate_bucket(bucket: &str) -> Result<(), ApiError> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge(bucket.chars().next())
        && edge(bucket.chars().last())
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err();
    if ok { Ok(()) } else { Err(ApiError::invalid_parameter_value(format!("Invalid TargetBucket: {bucket}."))) }
}

/// The snapshot a new cluster or group restores: it must exist, be available and hold
/// data of `engine`.
pub(crate) async fn restorable(
    ops: &Operations,
    scope: &Scope,
    name: &str,
    engine: &str,
) -> Result<SnapshotRecord, ApiError> {
    let snapshot = ops.store.snapshot(scope, name).await.map_err(internal)?.ok_or_else(|| not_found(name))?;
    if snapshot.status != snapshot_status::AVAILABLE {
        return Err(invalid_state(name, &snapshot.status));
    }
    if snapshot.engine != engine && !(["redis", "valkey"].contains(&snapshot.engine.as_str()) && engine != "memcached")
    {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Snapshot {name} holds {} data and cannot be restored into {engine}.",
            snapshot.engine
        )));
    }
    Ok(snapshot)
}

/// When automated backups run.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// Now, for every source: one "day" of a sped-up clock (the admin API's trigger).
    Now,
    /// Daily, in each source's SnapshotWindow (UTC), as AWS does.
    Daily { now_millis: i64 },
}

const DAY_MILLIS: i64 = 24 * 3600 * 1000;

impl Schedule {
    fn due(self, window: Option<&str>, last_automated: Option<i64>) -> bool {
        match self {
            Schedule::Now => true,
            Schedule::Daily { now_millis } => {
                // Not twice in one window: the last one must be most of a day old.
                let recent = last_automated.is_some_and(|t| now_millis - t < DAY_MILLIS - 3600 * 1000);
                !recent && window.is_some_and(|w| in_window(w, now_millis))
            }
        }
    }
}

/// Whether `hh:mm-hh:mm` (UTC, possibly across midnight) contains the time of day.
fn in_window(window: &str, millis: i64) -> bool {
    let minutes = |t: &str| -> Option<i64> {
        let (h, m) = t.split_once(':')?;
        Some(h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?)
    };
    let Some((start, end)) = window.split_once('-').and_then(|(a, b)| Some((minutes(a)?, minutes(b)?))) else {
        return false;
    };
    let now = millis.rem_euclid(DAY_MILLIS) / 60_000;
    if start <= end { (start..end).contains(&now) } else { now >= start || now < end }
}

/// Automated backups: every available cluster or group with a SnapshotRetentionLimit whose
/// backup is due gets an automated snapshot, and automated snapshots beyond the limit are
/// deleted, oldest first. Returns the snapshots started.
pub async fn run_automated(ops: &Operations, schedule: Schedule) -> Result<Vec<String>, ApiError> {
    let stamp = aws_smithy_types::DateTime::from_millis(now_millis())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    // AWS names automated snapshots automatic.<id>-YYYY-MM-DD-HH-MM.
    let minute: String = stamp.chars().take(16).map(|c| if c == 'T' || c == ':' { '-' } else { c }).collect();
    let snapshots = ops.store.all_snapshots().await.map_err(internal)?;
    let last_automated = |scope: &Scope, of: &dyn Fn(&SnapshotRecord) -> bool| {
        snapshots
            .iter()
            .filter(|(s, r)| s == scope && r.source == "automated" && of(r))
            .map(|(_, r)| r.created_millis)
            .max()
    };
    let mut started = Vec::new();
    for c in ops.store.all_cache_clusters().await.map_err(internal)? {
        let id = c.cluster.id.as_str();
        let of = |s: &SnapshotRecord| s.cache_cluster_id.as_deref() == Some(id);
        if c.cluster.replication_group_id.is_none()
            && c.cluster.engine != "memcached"
            && c.cluster.snapshot_retention_limit > 0
            && c.cluster.status == status::AVAILABLE
            && schedule.due(c.cluster.snapshot_window.as_deref(), last_automated(&c.scope, &of))
        {
            let name = automated_name(ops, &c.scope, id, &minute, str::to_string).await?;
            let snapshot = plan(ops, &c.scope, &name, Some(id), None, Taken::Automated, None).await?;
            record_automated(ops, &c.scope, &snapshot, of, c.cluster.snapshot_retention_limit).await?;
            started.push(name);
        }
    }
    for g in ops.store.all_replication_groups().await.map_err(internal)? {
        let id = g.group.id.as_str();
        let of = |s: &SnapshotRecord| s.replication_group_id.as_deref() == Some(id);
        // A serverless cache's group is backed up by the cache's own settings, below.
        if !model::names::is_serverless_backing(id)
            && g.group.snapshot_retention_limit > 0
            && g.group.status == status::AVAILABLE
            && schedule.due(Some(&g.group.snapshot_window), last_automated(&g.scope, &of))
        {
            let name = automated_name(ops, &g.scope, id, &minute, str::to_string).await?;
            let snapshot = plan(ops, &g.scope, &name, None, Some(id), Taken::Automated, None).await?;
            record_automated(ops, &g.scope, &snapshot, of, g.group.snapshot_retention_limit).await?;
            started.push(name);
        }
    }
    for (scope, cache) in ops.store.all_serverless_caches().await.map_err(internal)? {
        let group = model::names::serverless_backing(&cache.name);
        let of = |s: &SnapshotRecord| s.replication_group_id.as_deref() == Some(group.as_str());
        let window = daily_window(&cache.daily_snapshot_time);
        if cache.snapshot_retention_limit > 0
            && cache.status == status::AVAILABLE
            && schedule.due(window.as_deref(), last_automated(&scope, &of))
        {
            let name = automated_name(ops, &scope, &cache.name, &minute, model::names::serverless_backing).await?;
            let snapshot = match crate::serverless_snapshots::plan(ops, &scope, &name, &cache, Taken::Automated).await {
                Ok(snapshot) => snapshot,
                // Busy (another snapshot, a change under way): the next look takes it.
                Err(e) if e.code == ErrorCode::InvalidServerlessCacheStateFault.code() => continue,
                Err(e) => return Err(e),
            };
            record_automated(ops, &scope, &snapshot, of, cache.snapshot_retention_limit).await?;
            started.push(name);
        }
    }
    Ok(started)
}

/// Records an automated snapshot and prunes its source's automated snapshots to `limit`,
/// in one write.
async fn record_automated(
    ops: &Operations,
    scope: &Scope,
    snapshot: &SnapshotRecord,
    of: impl Fn(&SnapshotRecord) -> bool,
    limit: i32,
) -> Result<(), ApiError> {
    written(
        ops.store
            .write(async |tx| {
                record(tx, scope, snapshot, &[]).await?;
                prune(tx, scope, of, limit).await
            })
            .await,
    )
}

/// A serverless cache's DailySnapshotTime (`HH:MM`) as the hour-long window it starts.
fn daily_window(time: &str) -> Option<String> {
    let (h, m) = time.split_once(':')?;
    let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    Some(format!("{h:02}:{m:02}-{:02}:{m:02}", (h + 1) % 24))
}

/// AWS's name, made unique when the clock runs faster than a minute per backup; `stored`
/// is the name it is stored under (a serverless cache's snapshots have a backing name).
async fn automated_name(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    minute: &str,
    stored: impl Fn(&str) -> String,
) -> Result<String, ApiError> {
    let base = format!("automatic.{id}-{minute}");
    let mut name = base.clone();
    let mut n = 1;
    while ops.store.snapshot(scope, &stored(&name)).await.map_err(internal)?.is_some() {
        n += 1;
        name = format!("{base}-{n}");
    }
    Ok(name)
}

/// Deletes the automated snapshots of one source beyond `keep`, oldest first (all of
/// them with `keep` 0: they go with their cluster or group, as on AWS).
pub(crate) async fn prune(
    tx: &mut store::Tx,
    scope: &Scope,
    of: impl Fn(&SnapshotRecord) -> bool,
    keep: i32,
) -> Write<()> {
    let mut automated: Vec<SnapshotRecord> = tx
        .snapshots(scope)
        .await?
        .into_iter()
        .filter(|s| s.source == "automated" && s.status != snapshot_status::DELETING && of(s))
        .collect();
    automated.sort_by_key(|s| std::cmp::Reverse(s.created_millis));
    for old in automated.iter().skip(keep.max(0) as usize) {
        let deleting = tx.update_snapshot(scope, &old.name, |s| {
            s.status = snapshot_status::DELETING.to_string();
            Ok::<_, ()>(Vec::new())
        });
        if let Err(UpdateError::Store(e)) = deleting.await {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Prefix of the S3 object ARNs SnapshotArns names.
pub use model::names::S3_ARN_PREFIX;

/// The RDB files a new cluster or group seeds from, given as SnapshotArns; each must exist
/// in the local stand-in for S3 (where exports go). Several only for cluster mode, whose
/// shards share out their keys.
pub(crate) fn rdb_from_arns(ops: &Operations, arns: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    let arns = arns.unwrap_or_default();
    for arn in arns {
        let object = arn
            .strip_prefix(S3_ARN_PREFIX)
            .filter(|o| o.contains('/') && !o.split('/').any(|part| part == ".." || part.is_empty()))
            .ok_or_else(|| {
                ApiError::invalid_parameter_value(format!("Invalid S3 object ARN in SnapshotArns: {arn}"))
            })?;
        let path = ops.settings.exports_dir.join(object);
        if !path.is_file() {
            return Err(ApiError::invalid_parameter_value(format!(
                "The S3 object {arn} does not exist (looked for {}).",
                path.display()
            )));
        }
    }
    Ok(arns.to_vec())
}

/// The one RDB file of SnapshotArns for a target without shards.
pub(crate) fn single_rdb(arns: Vec<String>) -> Result<Option<String>, ApiError> {
    if arns.len() > 1 {
        return Err(ApiError::invalid_parameter_combination(
            "Several SnapshotArns can only seed a replication group with cluster mode enabled.",
        ));
    }
    Ok(arns.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_windows_are_utc_times_of_day() {
        let at = |h: i64, m: i64| 3 * DAY_MILLIS + (h * 60 + m) * 60_000;
        assert!(in_window("05:00-06:00", at(5, 30)));
        assert!(!in_window("05:00-06:00", at(6, 0)));
        assert!(in_window("23:00-01:00", at(0, 30)));
        assert!(!in_window("23:00-01:00", at(12, 0)));
        assert!(!in_window("nonsense", at(5, 30)));
        // A serverless cache's DailySnapshotTime starts an hour-long window.
        assert_eq!(daily_window("23:30").as_deref(), Some("23:30-00:30"));
        assert_eq!(daily_window("5:07").as_deref(), Some("05:07-06:07"));
        assert_eq!(daily_window("noon"), None);
        let daily = Schedule::Daily { now_millis: at(5, 30) };
        assert!(daily.due(Some("05:00-06:00"), None));
        assert!(!daily.due(Some("05:00-06:00"), Some(at(5, 10))));
        assert!(daily.due(Some("05:00-06:00"), Some(at(5, 10) - DAY_MILLIS)));
        assert!(Schedule::Now.due(None, Some(at(5, 29))));
    }
}
