//! Snapshots of serverless caches: ordinary snapshots of the cache's backing replication
//! group (real RDB data of every shard, taken, copied, exported and deleted by the
//! reconciler as any other), stored under a backing name (`model::names::serverless_backing`)
//! so that DescribeSnapshots never lists them and their names never meet the user's own.

use aws_smithy_types::DateTime;
use model::names::{is_serverless_backing, serverless_backing, serverless_name};
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{ServerlessCacheRecord, SnapshotRecord, StoreError, now_millis};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::snapshots::{Taken, snapshot_status};
use crate::{Operations, answered, internal, refuse, validate, written};

fn not_found(name: &str) -> ApiError {
    Kind::ServerlessCacheSnapshot.not_found(name)
}

fn already_exists(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ServerlessCacheSnapshotAlreadyExistsFault,
        format!("Serverless cache snapshot {name} already exists."),
    )
}

fn invalid_state(name: &str, status: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidServerlessCacheSnapshotStateFault,
        format!("Serverless cache snapshot {name} is not in available state (current state: {status})."),
    )
}

/// A name as given: "stored as a lowercase string" (the API reference), 1–255 characters.
fn checked_name(parameter: &str, name: &str) -> Result<String, ApiError> {
    validate::group_name(parameter, name)?;
    Ok(name.to_ascii_lowercase())
}

/// The snapshot of `cache` a CreateServerlessCacheSnapshot, a DeleteServerlessCache with
/// FinalSnapshotName or a daily backup records, after AWS's checks; nothing is written.
pub(crate) async fn plan(
    ops: &Operations,
    scope: &store::Scope,
    name: &str,
    cache: &ServerlessCacheRecord,
    taken: Taken,
) -> Result<SnapshotRecord, ApiError> {
    let last = taken == Taken::Final;
    let name = match taken {
        // AWS's own name, unique by construction.
        Taken::Automated => name.to_string(),
        _ => checked_name("ServerlessCacheSnapshotName", name)?,
    };
    if ops.store.snapshot(scope, &serverless_backing(&name)).await.map_err(internal)?.is_some() {
        return Err(already_exists(&name));
    }
    let backing = serverless_backing(&cache.name);
    // One snapshot at a time: the backing group or cluster is `snapshotting` while one is taken.
    let backing_status = match cache.engine.as_str() {
        "memcached" => ops.store.cache_cluster(scope, &backing).await.map_err(internal)?.map(|c| c.cluster.status),
        _ => ops.store.replication_group(scope, &backing).await.map_err(internal)?.map(|g| g.group.status),
    };
    let busy = backing_status.is_none_or(|s| s != model::status::cluster::AVAILABLE);
    if !last && (cache.status != model::status::cluster::AVAILABLE || busy) {
        return Err(ApiError::new(
            ErrorCode::InvalidServerlessCacheStateFault,
            format!("Serverless cache {} is not in available state.", cache.name),
        ));
    }
    let (cluster, group) = match cache.engine.as_str() {
        "memcached" => (Some(backing.as_str()), None),
        _ => (None, Some(backing.as_str())),
    };
    let mut snapshot =
        crate::snapshots::plan(ops, scope, &serverless_backing(&name), cluster, group, taken, None).await?;
    snapshot.kms_key_id = cache.kms_key_id.clone();
    Ok(snapshot)
}

/// What a snapshot was taken of: the backing group of a Valkey or Redis OSS cache, or the
/// backing cluster of a Memcached one.
fn backing_of(s: &SnapshotRecord) -> Option<&str> {
    s.replication_group_id.as_deref().or(s.cache_cluster_id.as_deref())
}

/// The Describe form of a stored snapshot of a serverless cache.
fn output(scope: &store::Scope, s: &SnapshotRecord) -> ServerlessCacheSnapshot {
    let name = serverless_name(&s.name).unwrap_or(&s.name);
    let cache = backing_of(s).and_then(serverless_name).map(str::to_string);
    let bytes: Option<u64> = s.nodes.iter().map(|n| n.size_bytes).sum();
    ServerlessCacheSnapshot {
        arn: Some(arn::build(scope, Kind::ServerlessCacheSnapshot, name)),
        bytes_used_for_cache: bytes.map(|b| b.to_string()),
        create_time: Some(DateTime::from_millis(s.created_millis)),
        expiry_time: None,
        kms_key_id: s.kms_key_id.clone(),
        serverless_cache_configuration: Some(ServerlessCacheConfiguration {
            engine: Some(s.engine.clone()),
            major_engine_version: Some(crate::serverless::major_of(&s.engine, &s.engine_version)),
            serverless_cache_name: cache,
        }),
        serverless_cache_snapshot_name: Some(name.to_string()),
        snapshot_type: Some(s.source.clone()),
        status: Some(s.status.clone()),
    }
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateServerlessCacheSnapshotRequest,
) -> Result<CreateServerlessCacheSnapshotResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let cache_name = input.serverless_cache_name.to_ascii_lowercase();
    let cache = crate::serverless::existing(ops, &scope, &cache_name).await?;
    let mut snapshot = plan(ops, &scope, &input.serverless_cache_snapshot_name, &cache, Taken::Manual).await?;
    if let Some(key) = &input.kms_key_id {
        snapshot.kms_key_id = Some(validate::kms_key_id(key)?);
        snapshot.at_rest_encryption = true;
    }
    let tags = crate::tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let arn =
        arn::build(&scope, Kind::ServerlessCacheSnapshot, &input.serverless_cache_snapshot_name.to_ascii_lowercase());
    written(
        ops.store
            .write(async |tx| {
                crate::snapshots::record(tx, &scope, &snapshot, &[]).await?;
                Ok(tx.tag(&arn, &tags).await?)
            })
            .await,
    )?;
    Ok(CreateServerlessCacheSnapshotResponse { serverless_cache_snapshot: Some(output(&scope, &snapshot)) })
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeServerlessCacheSnapshotsRequest,
) -> Result<DescribeServerlessCacheSnapshotsResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let cache = input.serverless_cache_name.as_deref().map(str::to_ascii_lowercase);
    if let Some(cache) = &cache
        && ops.store.serverless_cache(&scope, cache).await.map_err(internal)?.is_none()
    {
        return Err(Kind::ServerlessCache.not_found(cache));
    }
    let wanted = input.serverless_cache_snapshot_name.as_deref().map(|n| serverless_backing(&n.to_ascii_lowercase()));
    let group = cache.as_deref().map(serverless_backing);
    let snapshots: Vec<SnapshotRecord> = ops
        .store
        .snapshots(&scope)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|s| is_serverless_backing(&s.name))
        .filter(|s| wanted.as_ref().is_none_or(|w| *w == s.name))
        .filter(|s| group.is_none() || backing_of(s) == group.as_deref())
        .filter(|s| input.snapshot_type.as_ref().is_none_or(|t| *t == s.source))
        .collect();
    if let (Some(name), true) = (&input.serverless_cache_snapshot_name, snapshots.is_empty()) {
        return Err(not_found(name));
    }
    let page = paginate(snapshots, |s| s.name.clone(), input.next_token.as_deref(), input.max_results)?;
    Ok(DescribeServerlessCacheSnapshotsResponse {
        next_token: page.marker,
        serverless_cache_snapshots: Some(page.items.iter().map(|s| output(&scope, s)).collect()),
    })
}

/// Moves one available snapshot on (`change`), inside a write.
async fn change_available(
    ops: &Operations,
    scope: &store::Scope,
    name: &str,
    change: impl FnOnce(&mut SnapshotRecord),
) -> Result<SnapshotRecord, ApiError> {
    let name = name.to_ascii_lowercase();
    let result = ops
        .store
        .update_snapshot(scope, &serverless_backing(&name), |s| {
            if ![snapshot_status::AVAILABLE, snapshot_status::FAILED].contains(&s.status.as_str()) {
                return Err(invalid_state(&name, &s.status));
            }
            change(s);
            Ok(Vec::new())
        })
        .await;
    let snapshot = crate::updated(result, || not_found(&name))?;
    Ok(snapshot)
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteServerlessCacheSnapshotRequest,
) -> Result<DeleteServerlessCacheSnapshotResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let snapshot = change_available(ops, &scope, &input.serverless_cache_snapshot_name, |s| {
        s.status = snapshot_status::DELETING.to_string();
    })
    .await?;
    Ok(DeleteServerlessCacheSnapshotResponse { serverless_cache_snapshot: Some(output(&scope, &snapshot)) })
}

/// Writes the snapshot's RDB files to `<bucket>/<snapshot name>` in the local stand-in for
/// S3 (the export directory), as CopySnapshot with TargetBucket does.
pub async fn export(
    ops: &Operations,
    ctx: &RequestContext,
    input: ExportServerlessCacheSnapshotRequest,
) -> Result<ExportServerlessCacheSnapshotResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let bucket = input.s3_bucket_name.clone();
    crate::snapshots::validate_bucket(&bucket)?;
    let name = input.serverless_cache_snapshot_name.to_ascii_lowercase();
    // "Available for Valkey and Redis OSS only" (the API reference); the wording is the emulator's.
    if ops
        .store
        .snapshot(&scope, &serverless_backing(&name))
        .await
        .map_err(internal)?
        .is_some_and(|s| s.engine == "memcached")
    {
        return Err(ApiError::invalid_parameter_value(
            "Exporting a snapshot is available for Valkey and Redis OSS serverless caches only.",
        ));
    }
    let snapshot = change_available(ops, &scope, &name, |s| {
        s.status = snapshot_status::EXPORTING.to_string();
        s.export_to = Some(format!("{bucket}/{name}"));
    })
    .await?;
    Ok(ExportServerlessCacheSnapshotResponse { serverless_cache_snapshot: Some(output(&scope, &snapshot)) })
}

pub async fn copy(
    ops: &Operations,
    ctx: &RequestContext,
    input: CopyServerlessCacheSnapshotRequest,
) -> Result<CopyServerlessCacheSnapshotResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let source_name = input.source_serverless_cache_snapshot_name.to_ascii_lowercase();
    let target = checked_name("TargetServerlessCacheSnapshotName", &input.target_serverless_cache_snapshot_name)?;
    let kms_key_id = input.kms_key_id.as_deref().map(validate::kms_key_id).transpose()?;
    let source = serverless_backing(&source_name);
    let tags = crate::tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let copied = written(
        ops.store
            .write(async |tx| {
                let original = match tx.snapshot(&scope, &source).await? {
                    Some(s) if s.status == snapshot_status::AVAILABLE => s,
                    Some(s) => return refuse(invalid_state(&source_name, &s.status)),
                    None => return refuse(not_found(&source_name)),
                };
                let copy = SnapshotRecord {
                    name: serverless_backing(&target),
                    status: snapshot_status::CREATING.to_string(),
                    source: "manual".to_string(),
                    created_millis: now_millis(),
                    copy_of: Some(source.clone()),
                    export_to: None,
                    delete_source_after: false,
                    at_rest_encryption: original.at_rest_encryption || kms_key_id.is_some(),
                    kms_key_id: kms_key_id.clone().or(original.kms_key_id.clone()),
                    ..original
                };
                // Its tags are the serverless snapshot's (the stored snapshot has none).
                let arn = arn::build(&scope, Kind::ServerlessCacheSnapshot, &target);
                tx.create_snapshot(&scope, &copy, &arn, &tags, &[]).await.map_err(|e| {
                    answered(e, |e| matches!(e, StoreError::AlreadyExists).then(|| already_exists(&target)))
                })?;
                Ok(copy)
            })
            .await,
    )?;
    Ok(CopyServerlessCacheSnapshotResponse { serverless_cache_snapshot: Some(output(&scope, &copied)) })
}
