//! CreateCacheCluster: AWS's checks of the request, each in its own step, then the cluster
//! and its nodes written in one transaction.

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    CacheCluster as StoredCluster, CacheClusterRecord, CacheNodeRecord, PendingChanges, Scope, StoreError, now_millis,
};

use super::{
    CLUSTER_QUOTA, DEFAULT_MAINTENANCE_WINDOW, DEFAULT_SNAPSHOT_WINDOW, MAX_ID_LEN, MEMCACHED_NODES_PER_CLUSTER,
    default_port, is_memcached, output, status, within_node_quota,
};
use crate::arn::{self, Kind};
use crate::{Operations, answered, groups_still_there, tags, written};

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateCacheClusterMessage,
) -> Result<CreateCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let id = crate::validate::resource_id("CacheClusterId", &input.cache_cluster_id, MAX_ID_LEN)?;
    if input.replication_group_id.is_some() {
        let member = crate::replication_groups::add_member(ops, &scope, &id, &input).await?;
        tracing::info!(cache_cluster = id, replication_group = ?member.cluster.replication_group_id, "cache cluster: (none) -> creating (a replica)");
        return Ok(CreateCacheClusterResult { cache_cluster: Some(output(&member, false, ops.endpoint_host())) });
    }
    let (created, tags) = plan(ops, &scope, &id, input).await?;
    written(ops.store.write(async |tx| write(tx, &created, &tags, ops.node_capacity()).await).await)?;
    let engine = &created.cluster.engine;
    tracing::info!(cache_cluster = id, region = scope.region, engine, "cache cluster: (none) -> creating");
    Ok(CreateCacheClusterResult { cache_cluster: Some(output(&created, false, ops.endpoint_host())) })
}

/// The cluster `id` a CreateCacheCluster asks for, with its nodes and tags, after AWS's
/// checks; nothing is written.
pub(crate) async fn plan(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    input: CreateCacheClusterMessage,
) -> Result<(StoredCluster, Vec<store::TagRecord>), ApiError> {
    let (scope, id) = (scope.clone(), id.to_string());
    let (engine, num_nodes) = engine_and_size(&input)?;
    let memcached = is_memcached(&engine);
    let node_type = input.cache_node_type.clone().ok_or_else(crate::messages::cache_node_type_required)?;
    ops.check_node_type(&node_type)?;
    let version = ops.engine_version(&engine, input.engine_version.as_deref())?;
    let parameter_group = ops
        .parameter_group_for(&scope, input.cache_parameter_group_name.as_deref(), &version.cache_parameter_group_family)
        .await?;
    let subnet_group =
        input.cache_subnet_group_name.as_deref().unwrap_or(crate::subnet_groups::DEFAULT_GROUP).to_ascii_lowercase();
    let zones = ops.subnet_group_zones(&scope, &subnet_group).await?;
    let (names, ids) = (input.cache_security_group_names.as_deref(), input.security_group_ids.as_deref());
    crate::security_groups::check_references(ops, &scope, names, ids).await?;
    crate::validate::topic_arn(input.notification_topic_arn.as_deref())?;
    let (az_mode, preferred) = placement(&input, memcached, num_nodes)?;
    crate::placement::check_zones(ops, &scope, &preferred, &zones)?;
    let restore_from = restore_source(ops, &scope, &input, &engine).await?;
    // Kept and shown as given: the emulator has no Outposts to place nodes on.
    let mut outposts = input.preferred_outpost_arn.iter().chain(input.preferred_outpost_arns.iter().flatten());
    for arn in outposts.clone() {
        crate::validate::outpost_arn(arn)?;
    }
    let outpost = outposts.next().cloned();
    // AWS's rules (token only with TLS, its length and characters; no token for Memcached).
    let security =
        crate::transit::on_create(&engine, input.transit_encryption_enabled, None, input.auth_token.as_deref())?;
    // AWS docs: "In-transit encryption ... Memcached versions 1.6.12 and later".
    if memcached && security.transit_encryption && model::catalog::is_downgrade("1.6.12", &version.actual_version) {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Encryption in transit is supported for Memcached 1.6.12 and later, not {}.",
            version.actual_version
        )));
    }
    if input.network_type.is_some_and(|n| n != NetworkType::Ipv4)
        || input.ip_discovery.is_some_and(|d| d != IpDiscovery::Ipv4)
    {
        return Err(ApiError::invalid_parameter_combination(
            "The subnets of the cache subnet group support only the ipv4 network type.",
        ));
    }
    let port = match input.port {
        None => default_port(&engine),
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => return Err(ApiError::invalid_parameter_value(format!("Invalid Port: {p}."))),
    };
    let windows = Windows::check(&input, memcached)?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;

    let nodes: Vec<CacheNodeRecord> = crate::placement::place(num_nodes, &preferred, &az_mode, &zones, &[])
        .into_iter()
        .enumerate()
        .map(|(i, zone)| crate::placement::new_node(i + 1, zone))
        .collect();
    let cluster = CacheClusterRecord {
        id: id.clone(),
        status: status::CREATING.to_string(),
        engine: engine.clone(),
        engine_version: version.actual_version.clone(),
        node_type,
        num_nodes: num_nodes as u32,
        az_mode,
        preferred_zones: preferred,
        parameter_group,
        subnet_group,
        security_group_ids: input.security_group_ids.unwrap_or_default(),
        cache_security_groups: input.cache_security_group_names.unwrap_or_default(),
        port,
        created_millis: now_millis(),
        maintenance_window: windows.maintenance,
        snapshot_window: windows.snapshot,
        snapshot_retention_limit: windows.retention_limit,
        auto_minor_version_upgrade: input.auto_minor_version_upgrade.unwrap_or(true),
        network_type: "ipv4".to_string(),
        ip_discovery: "ipv4".to_string(),
        notification_topic_arn: input.notification_topic_arn,
        replication_group_id: None,
        node_group_id: None,
        pending: PendingChanges::default(),
        config_version: 1,
        config_endpoint_port: None,
        restore_from,
        // CreateCacheCluster has no AtRestEncryptionEnabled: only groups are encrypted at
        // rest, so a cluster restored from an encrypted snapshot is not.
        at_rest_encryption: false,
        security,
        preferred_outpost_arn: outpost,
        max_memory_bytes: None,
    };
    Ok((StoredCluster { scope, cluster, nodes }, tags))
}

/// The engine, and how many nodes: 1 to 40 for Memcached, exactly 1 otherwise.
fn engine_and_size(input: &CreateCacheClusterMessage) -> Result<(String, usize), ApiError> {
    let engine = input
        .engine
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter_value("The parameter Engine must be provided."))?
        .to_ascii_lowercase();
    if !["redis", "valkey", "memcached"].contains(&engine.as_str()) {
        return Err(ApiError::invalid_parameter_value(format!(
            "Invalid value for Engine: {engine}. Valid values: redis, valkey, memcached."
        )));
    }
    let num_nodes = input.num_cache_nodes.unwrap_or(1);
    if !is_memcached(&engine) {
        if num_nodes != 1 {
            return Err(ApiError::invalid_parameter_value(format!(
                "NumCacheNodes must be 1 for a {engine} cluster; use a replication group for replicas."
            )));
        }
    } else if num_nodes < 1 {
        return Err(ApiError::invalid_parameter_value("NumCacheNodes must be at least 1."));
    } else if num_nodes as u32 > MEMCACHED_NODES_PER_CLUSTER {
        return Err(ApiError::new(
            ErrorCode::NodeQuotaForClusterExceededFault,
            format!("A Memcached cluster can have at most {MEMCACHED_NODES_PER_CLUSTER} nodes."),
        ));
    }
    Ok((engine, num_nodes as usize))
}

/// AZMode (Memcached only) and the preferred zones, one or one per node.
fn placement(
    input: &CreateCacheClusterMessage,
    memcached: bool,
    num_nodes: usize,
) -> Result<(String, Vec<String>), ApiError> {
    let az_mode = input.az_mode.map_or("single-az", |m| m.as_str()).to_string();
    if !memcached && input.az_mode.is_some() {
        return Err(ApiError::invalid_parameter_value("AZMode is only supported for Memcached clusters."));
    }
    let preferred: Vec<String> = match (&input.preferred_availability_zone, &input.preferred_availability_zones) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_parameter_combination(
                "PreferredAvailabilityZone and PreferredAvailabilityZones cannot both be specified.",
            ));
        }
        (Some(zone), None) => vec![zone.clone()],
        (None, Some(list)) if list.len() != num_nodes => {
            return Err(ApiError::invalid_parameter_value(
                "The number of PreferredAvailabilityZones must equal NumCacheNodes.",
            ));
        }
        (None, Some(list)) => list.clone(),
        (None, None) => Vec::new(),
    };
    if az_mode == "single-az" && preferred.iter().any(|z| z != &preferred[0]) {
        return Err(ApiError::invalid_parameter_combination(
            "PreferredAvailabilityZones must all be the same zone when AZMode is single-az.",
        ));
    }
    Ok((az_mode, preferred))
}

/// The snapshot (SnapshotName) or RDB file (SnapshotArns) the cluster starts from, if any:
/// one shard only; never for Memcached.
async fn restore_source(
    ops: &Operations,
    scope: &Scope,
    input: &CreateCacheClusterMessage,
    engine: &str,
) -> Result<Option<String>, ApiError> {
    if is_memcached(engine)
        && (input.snapshot_arns.is_some()
            || input.snapshot_name.is_some()
            || input.snapshot_retention_limit.is_some()
            || input.snapshot_window.is_some())
    {
        return Err(ApiError::invalid_parameter_combination("Snapshots are not supported for Memcached clusters."));
    }
    match (&input.snapshot_name, input.snapshot_arns.as_deref()) {
        (Some(_), Some([_, ..])) => {
            Err(ApiError::invalid_parameter_combination("SnapshotName and SnapshotArns cannot both be specified."))
        }
        (Some(name), _) => {
            let snapshot = crate::snapshots::restorable(ops, scope, name, engine).await?;
            if snapshot.nodes.len() > 1 {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Snapshot {name} holds several shards; restore it into a replication group with cluster mode enabled."
                )));
            }
            Ok(Some(snapshot.name))
        }
        (None, arns) => crate::snapshots::single_rdb(crate::snapshots::rdb_from_arns(ops, arns)?),
    }
}

/// The maintenance and snapshot windows and the snapshot retention, with AWS's defaults.
struct Windows {
    maintenance: String,
    /// None for Memcached, which has no snapshots.
    snapshot: Option<String>,
    retention_limit: i32,
}

impl Windows {
    fn check(input: &CreateCacheClusterMessage, memcached: bool) -> Result<Self, ApiError> {
        let maintenance = input
            .preferred_maintenance_window
            .as_deref()
            .map_or_else(|| Ok(DEFAULT_MAINTENANCE_WINDOW.to_string()), crate::validate::maintenance_window)?;
        let snapshot = match (&input.snapshot_window, memcached) {
            (Some(w), _) => Some(crate::validate::snapshot_window(w)?),
            (None, false) => Some(DEFAULT_SNAPSHOT_WINDOW.to_string()),
            (None, true) => None,
        };
        let retention_limit = input.snapshot_retention_limit.unwrap_or(0);
        if !(0..=35).contains(&retention_limit) {
            return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
        }
        Ok(Self { maintenance, snapshot, retention_limit })
    }
}

/// Writes a planned cluster, its nodes and tags inside a write, checking again what could
/// have changed since it was validated: the groups it uses and the node quota.
pub(crate) async fn write(
    tx: &mut store::Tx,
    c: &StoredCluster,
    tags: &[store::TagRecord],
    machine: &crate::NodeCapacity,
) -> crate::Write<()> {
    let (scope, id) = (&c.scope, &c.cluster.id);
    let arn = arn::build(scope, Kind::Cluster, id);
    let refusal = |e: &StoreError| match e {
        StoreError::AlreadyExists => Some(ApiError::new(
            ErrorCode::CacheClusterAlreadyExistsFault,
            format!("Cache cluster {id} already exists."),
        )),
        StoreError::QuotaExceeded(quota) => Some(ApiError::new(
            ErrorCode::ClusterQuotaForCustomerExceededFault,
            format!("The maximum number of cache clusters ({quota}) has been reached."),
        )),
        _ => None,
    };
    groups_still_there(tx, scope, &c.cluster.parameter_group, &c.cluster.subnet_group).await?;
    within_node_quota(tx, scope, c.nodes.len(), machine).await?;
    tx.create_cache_cluster(scope, &c.cluster, &c.nodes, &arn, tags, CLUSTER_QUOTA)
        .await
        .map_err(|e| answered(e, refusal))
}
