//! Cache clusters: the API half. Handlers validate like AWS, write the desired state (and
//! its events) in one transaction, answer at once, and wake the reconciler, which starts,
//! changes and stops the real nodes and writes back what it observes.

use aws_smithy_types::DateTime;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    CacheCluster as StoredCluster, CacheClusterRecord, CacheNodeRecord, EventRecord, PendingChanges, Scope, StoreError,
    UpdateError, now_millis,
};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::{Operations, Write, answered, groups_still_there, internal, refuse, tags, written};
use model::catalog::EngineVersion;

/// AWS's default quotas.
const CLUSTER_QUOTA: usize = 300;
const NODES_PER_REGION: usize = 300;
const MEMCACHED_NODES_PER_CLUSTER: u32 = 40;
const MAX_ID_LEN: usize = 50;
pub(crate) const DEFAULT_MAINTENANCE_WINDOW: &str = "sun:05:00-sun:06:00";
pub(crate) const DEFAULT_SNAPSHOT_WINDOW: &str = "05:00-06:00";
pub use model::status::cluster as status;

fn is_memcached(engine: &str) -> bool {
    engine == "memcached"
}

fn default_port(engine: &str) -> u16 {
    if is_memcached(engine) { 11211 } else { 6379 }
}

pub fn node_id(index: usize) -> String {
    format!("{index:04}")
}

fn not_found(id: &str) -> ApiError {
    Kind::Cluster.not_found(id)
}

fn invalid_state(id: &str, status: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCacheClusterStateFault,
        format!("Cache cluster {id} is not in available state (current state: {status})."),
    )
}

/// AWS's rule for cluster and replication group ids: 1–`max_len` letters, digits or
/// hyphens, starting with a letter, no trailing hyphen, no `--`. Stored lowercase.
pub(crate) fn validate_id(parameter: &str, id: &str, max_len: usize) -> Result<String, ApiError> {
    let ok = (1..=max_len).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--");
    if ok {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Invalid {parameter}: {id}. It must contain 1 to {max_len} alphanumeric characters or hyphens, begin with a letter, and must not end with a hyphen or contain two consecutive hyphens."
        )))
    }
}

/// `ddd:hh24:mi-ddd:hh24:mi`, lowercased as AWS stores it.
pub(crate) fn validate_maintenance_window(window: &str) -> Result<String, ApiError> {
    let window = window.to_ascii_lowercase();
    let part_ok = |p: &str| {
        let mut it = p.split(':');
        let (Some(day), Some(h), Some(m), None) = (it.next(), it.next(), it.next(), it.next()) else { return false };
        ["sun", "mon", "tue", "wed", "thu", "fri", "sat"].contains(&day)
            && h.len() == 2
            && m.len() == 2
            && h.parse::<u8>().is_ok_and(|h| h < 24)
            && m.parse::<u8>().is_ok_and(|m| m < 60)
    };
    match window.split_once('-') {
        Some((a, b)) if part_ok(a) && part_ok(b) => Ok(window),
        _ => Err(ApiError::invalid_parameter_value(format!(
            "Invalid PreferredMaintenanceWindow: {window}. The format is ddd:hh24:mi-ddd:hh24:mi."
        ))),
    }
}

/// `hh24:mi-hh24:mi`.
pub(crate) fn validate_snapshot_window(window: &str) -> Result<String, ApiError> {
    let time_ok = |t: &str| {
        t.split_once(':').is_some_and(|(h, m)| {
            h.len() == 2
                && m.len() == 2
                && h.parse::<u8>().is_ok_and(|h| h < 24)
                && m.parse::<u8>().is_ok_and(|m| m < 60)
        })
    };
    match window.split_once('-') {
        Some((a, b)) if time_ok(a) && time_ok(b) => Ok(window.to_string()),
        _ => Err(ApiError::invalid_parameter_value(format!(
            "Invalid SnapshotWindow: {window}. The format is hh24:mi-hh24:mi."
        ))),
    }
}

impl Operations {
    /// The offered version an engine version request names: exact, or a prefix
    /// (`7` → newest 7.x); none means the newest.
    pub(crate) fn engine_version<'a>(
        &'a self,
        engine: &'a str,
        requested: Option<&str>,
    ) -> Result<&'a EngineVersion, ApiError> {
        let mut versions = self.catalog.versions_of(engine).collect::<Vec<_>>();
        versions.reverse();
        let found = match requested {
            None => versions.first().copied(),
            Some(v) => versions
                .iter()
                .find(|o| o.engine_version == v)
                .or_else(|| versions.iter().find(|o| o.engine_version.starts_with(&format!("{v}."))))
                .or_else(|| versions.iter().find(|o| v.starts_with(&format!("{}.", o.engine_version))))
                .copied(),
        };
        found.ok_or_else(|| {
            ApiError::invalid_parameter_value(format!(
                "Cannot find version {} for {engine}",
                requested.unwrap_or("(default)")
            ))
        })
    }

    pub(crate) fn check_node_type(&self, node_type: &str) -> Result<(), ApiError> {
        match self.catalog.node_type(node_type) {
            Some(_) => Ok(()),
            None => Err(ApiError::invalid_parameter_value(format!("Invalid Cache Node Type: {node_type}"))),
        }
    }

    /// A parameter group that exists and belongs to `family`.
    pub(crate) async fn parameter_group_for(
        &self,
        scope: &Scope,
        name: Option<&str>,
        family: &str,
    ) -> Result<String, ApiError> {
        let name = name.map_or_else(|| format!("default.{family}"), str::to_ascii_lowercase);
        let group = self
            .store
            .parameter_group(scope, &name)
            .await
            .map_err(internal)?
            .ok_or_else(|| Kind::ParameterGroup.not_found(&name))?;
        if group.family != family {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Expected a parameter group of family {family} but found one of family {}",
                group.family
            )));
        }
        Ok(group.name)
    }

    /// The zones a subnet group spans, in order.
    pub(crate) async fn subnet_group_zones(&self, scope: &Scope, name: &str) -> Result<Vec<String>, ApiError> {
        let group = self
            .store
            .subnet_group(scope, name)
            .await
            .map_err(internal)?
            .ok_or_else(|| Kind::SubnetGroup.not_found(name))?;
        let mut zones: Vec<String> = Vec::new();
        for subnet in group.subnets {
            if !zones.contains(&subnet.availability_zone) {
                zones.push(subnet.availability_zone);
            }
        }
        Ok(zones)
    }
}

/// Zones for `count` new nodes: the requested ones, else spread (cross-az) or packed
/// (single-az) over the subnet group's zones, starting after the nodes already placed.
pub(crate) fn place(
    count: usize,
    requested: &[String],
    az_mode: &str,
    zones: &[String],
    existing: &[CacheNodeRecord],
) -> Vec<String> {
    if !requested.is_empty() {
        return (0..count).map(|i| requested[i % requested.len()].clone()).collect();
    }
    if az_mode != "cross-az" {
        let zone = existing.first().map(|n| n.zone.clone()).or_else(|| zones.first().cloned()).unwrap_or_default();
        return vec![zone; count];
    }
    // Each new node goes to the least used zone, so nodes stay spread as the cluster grows.
    let mut placed: Vec<String> = existing.iter().map(|n| n.zone.clone()).collect();
    (0..count)
        .map(|_| {
            let zone =
                zones.iter().min_by_key(|z| placed.iter().filter(|p| p == z).count()).cloned().unwrap_or_default();
            placed.push(zone.clone());
            zone
        })
        .collect()
}

pub(crate) fn new_node(index: usize, zone: String) -> CacheNodeRecord {
    CacheNodeRecord {
        node_id: node_id(index),
        status: status::CREATING.to_string(),
        zone,
        address: "127.0.0.1".to_string(),
        port: 0,
        created_millis: now_millis(),
        parameter_status: status::IN_SYNC.to_string(),
        reboot_requested: false,
        remove_requested: false,
        applied_parameters: Vec::new(),
        applied_max_memory: 0,
        applied_transit_mode: String::new(),
        applied_auth: String::new(),
    }
}

pub(crate) fn check_zones(
    ops: &Operations,
    scope: &Scope,
    zones: &[String],
    allowed: &[String],
) -> Result<(), ApiError> {
    let region_zones = ops.zones(&scope.region);
    for zone in zones {
        if !region_zones.contains(zone) || !allowed.contains(zone) {
            return Err(ApiError::invalid_parameter_value(format!(
                "Invalid availability zone: {zone}. Valid zones: {}.",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// Refuses `adding` nodes past AWS's per-region node quota (checked inside the write that
/// adds them, so concurrent creates cannot overshoot it together).
pub(crate) async fn within_node_quota(tx: &mut store::Tx, scope: &Scope, adding: usize) -> Write<()> {
    let existing: usize = tx.cache_clusters(scope).await?.iter().map(|c| c.nodes.len()).sum();
    if existing + adding > NODES_PER_REGION {
        return refuse(ApiError::new(
            ErrorCode::NodeQuotaForCustomerExceededFault,
            format!("The request would exceed the quota of {NODES_PER_REGION} cache nodes in this region."),
        ));
    }
    Ok(())
}

/// A cluster, and its nodes, going `deleting`; AWS refuses to delete a cluster in the
/// middle of creating or changing it.
fn mark_deleting(
    cluster: &mut CacheClusterRecord,
    nodes: &mut [CacheNodeRecord],
) -> Result<Vec<store::EventRecord>, ApiError> {
    if !status::DELETABLE.contains(&cluster.status.as_str()) {
        return Err(invalid_state(&cluster.id, &cluster.status));
    }
    let from = std::mem::replace(&mut cluster.status, status::DELETING.to_string());
    tracing::info!(cache_cluster = cluster.id, from, to = status::DELETING, "cache cluster status");
    for node in nodes.iter_mut() {
        node.status = status::DELETING.to_string();
    }
    Ok(Vec::new())
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateCacheClusterMessage,
) -> Result<CreateCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let id = validate_id("CacheClusterId", &input.cache_cluster_id, MAX_ID_LEN)?;
    if let Some(group) = &input.replication_group_id {
        return Err(
            match ops.store.replication_group(&scope, &group.to_ascii_lowercase()).await.map_err(internal)? {
                Some(_) => ApiError::not_implemented("CreateCacheCluster with ReplicationGroupId"),
                None => Kind::ReplicationGroup.not_found(group),
            },
        );
    }
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
    let memcached = is_memcached(&engine);
    let node_type = input
        .cache_node_type
        .clone()
        .ok_or_else(|| ApiError::invalid_parameter_value("The parameter CacheNodeType must be provided."))?;
    ops.check_node_type(&node_type)?;
    let num_nodes = input.num_cache_nodes.unwrap_or(1);
    if memcached {
        if num_nodes < 1 {
            return Err(ApiError::invalid_parameter_value("NumCacheNodes must be at least 1."));
        }
        if num_nodes as u32 > MEMCACHED_NODES_PER_CLUSTER {
            return Err(ApiError::new(
                ErrorCode::NodeQuotaForClusterExceededFault,
                format!("A Memcached cluster can have at most {MEMCACHED_NODES_PER_CLUSTER} nodes."),
            ));
        }
    } else if num_nodes != 1 {
        return Err(ApiError::invalid_parameter_value(format!(
            "NumCacheNodes must be 1 for a {engine} cluster; use a replication group for replicas."
        )));
    }
    let version = ops.engine_version(&engine, input.engine_version.as_deref())?;
    let parameter_group = ops
        .parameter_group_for(&scope, input.cache_parameter_group_name.as_deref(), &version.cache_parameter_group_family)
        .await?;
    let subnet_group =
        input.cache_subnet_group_name.as_deref().unwrap_or(crate::subnet_groups::DEFAULT_GROUP).to_ascii_lowercase();
    let zones = ops.subnet_group_zones(&scope, &subnet_group).await?;
    for name in input.cache_security_group_names.iter().flatten() {
        if !crate::security_groups::exists(ops, &scope, &name.to_ascii_lowercase()).await? {
            return Err(Kind::SecurityGroup.not_found(name));
        }
    }
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
        (None, Some(list)) => {
            if list.len() != num_nodes as usize {
                return Err(ApiError::invalid_parameter_value(
                    "The number of PreferredAvailabilityZones must equal NumCacheNodes.",
                ));
            }
            list.clone()
        }
        (None, None) => Vec::new(),
    };
    check_zones(ops, &scope, &preferred, &zones)?;
    if az_mode == "single-az" && preferred.iter().any(|z| z != &preferred[0]) {
        return Err(ApiError::invalid_parameter_combination(
            "PreferredAvailabilityZones must all be the same zone when AZMode is single-az.",
        ));
    }
    if memcached
        && (input.snapshot_arns.is_some()
            || input.snapshot_name.is_some()
            || input.snapshot_retention_limit.is_some()
            || input.snapshot_window.is_some())
    {
        return Err(ApiError::invalid_parameter_combination("Snapshots are not supported for Memcached clusters."));
    }
    let restore_from = match (&input.snapshot_name, input.snapshot_arns.as_deref()) {
        (Some(_), Some([_, ..])) => {
            return Err(ApiError::invalid_parameter_combination(
                "SnapshotName and SnapshotArns cannot both be specified.",
            ));
        }
        (Some(name), _) => {
            let snapshot = crate::snapshots::restorable(ops, &scope, name, &engine).await?;
            if snapshot.nodes.len() > 1 {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Snapshot {name} holds several shards; restore it into a replication group with cluster mode enabled."
                )));
            }
            Some(snapshot.name)
        }
        (None, arns) => crate::snapshots::single_rdb(crate::snapshots::rdb_from_arns(ops, arns)?)?,
    };
    // AWS's rules (token only with TLS, its length and characters); Redis only.
    let security =
        crate::transit::on_create(&engine, input.transit_encryption_enabled, None, input.auth_token.as_deref())?;
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
    let maintenance_window = input
        .preferred_maintenance_window
        .as_deref()
        .map_or_else(|| Ok(DEFAULT_MAINTENANCE_WINDOW.to_string()), validate_maintenance_window)?;
    let snapshot_window = match (&input.snapshot_window, memcached) {
        (Some(w), _) => Some(validate_snapshot_window(w)?),
        (None, false) => Some(DEFAULT_SNAPSHOT_WINDOW.to_string()),
        (None, true) => None,
    };
    let snapshot_retention_limit = input.snapshot_retention_limit.unwrap_or(0);
    if !(0..=35).contains(&snapshot_retention_limit) {
        return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
    }
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;

    let nodes: Vec<CacheNodeRecord> = place(num_nodes as usize, &preferred, &az_mode, &zones, &[])
        .into_iter()
        .enumerate()
        .map(|(i, zone)| new_node(i + 1, zone))
        .collect();
    let cluster = CacheClusterRecord {
        id: id.clone(),
        status: status::CREATING.to_string(),
        engine: engine.clone(),
        engine_version: version.engine_version.clone(),
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
        maintenance_window,
        snapshot_window,
        snapshot_retention_limit,
        auto_minor_version_upgrade: input.auto_minor_version_upgrade.unwrap_or(true),
        network_type: "ipv4".to_string(),
        ip_discovery: "ipv4".to_string(),
        notification_topic_arn: input.notification_topic_arn,
        replication_group_id: None,
        node_group_id: None,
        pending: PendingChanges::default(),
        config_version: 1,
        running_engine_version: None,
        config_endpoint_port: None,
        restore_from,
        // CreateCacheCluster has no AtRestEncryptionEnabled: only groups are encrypted at
        // rest, so a cluster restored from an encrypted snapshot is not.
        at_rest_encryption: false,
        security,
    };
    let arn = arn::build(&scope, Kind::Cluster, &id);
    written(
        ops.store
            .write(async |tx| {
                groups_still_there(tx, &scope, &cluster.parameter_group, &cluster.subnet_group).await?;
                within_node_quota(tx, &scope, nodes.len()).await?;
                tx.create_cache_cluster(&scope, &cluster, &nodes, &arn, &tags, CLUSTER_QUOTA).await.map_err(|e| {
                    answered(e, |e| match e {
                        StoreError::AlreadyExists => Some(ApiError::new(
                            ErrorCode::CacheClusterAlreadyExistsFault,
                            format!("Cache cluster {id} already exists."),
                        )),
                        StoreError::QuotaExceeded(quota) => Some(ApiError::new(
                            ErrorCode::ClusterQuotaForCustomerExceededFault,
                            format!("The maximum number of cache clusters ({quota}) has been reached."),
                        )),
                        _ => None,
                    })
                })
            })
            .await,
    )?;
    tracing::info!(cache_cluster = id, region = scope.region, engine, "cache cluster: (none) -> creating");
    ops.wake_reconciler();
    let created = StoredCluster { scope: scope.clone(), cluster, nodes };
    Ok(CreateCacheClusterResult { cache_cluster: Some(output(&created, false)) })
}

/// The Describe form of a cluster.
pub fn output(c: &StoredCluster, show_nodes: bool) -> CacheCluster {
    let cluster = &c.cluster;
    let memcached = is_memcached(&cluster.engine);
    let visible: Vec<&CacheNodeRecord> = c.nodes.iter().collect();
    let zones: Vec<&str> = visible.iter().map(|n| n.zone.as_str()).collect();
    let preferred_zone = match zones.first() {
        Some(first) if zones.iter().all(|z| z == first) => Some(first.to_string()),
        Some(_) => Some("Multiple".to_string()),
        None => None,
    };
    let to_reboot: Vec<String> =
        c.nodes.iter().filter(|n| n.parameter_status == status::PENDING_REBOOT).map(|n| n.node_id.clone()).collect();
    let parameter_status = if !to_reboot.is_empty() {
        status::PENDING_REBOOT
    } else if c.nodes.iter().any(|n| n.parameter_status == status::APPLYING) {
        status::APPLYING
    } else {
        status::IN_SYNC
    };
    let pending = &cluster.pending;
    CacheCluster {
        arn: Some(arn::build(&c.scope, Kind::Cluster, &cluster.id)),
        at_rest_encryption_enabled: Some(cluster.at_rest_encryption),
        auth_token_enabled: Some(!cluster.security.auth_tokens.is_empty()),
        auth_token_last_modified_date: cluster.security.auth_token_last_modified_millis.map(DateTime::from_millis),
        auto_minor_version_upgrade: Some(cluster.auto_minor_version_upgrade),
        cache_cluster_create_time: Some(DateTime::from_millis(cluster.created_millis)),
        cache_cluster_id: Some(cluster.id.clone()),
        cache_cluster_status: Some(cluster.status.clone()),
        cache_node_type: Some(cluster.node_type.clone()),
        cache_nodes: show_nodes.then(|| visible.iter().map(|n| node_output(n)).collect()),
        cache_parameter_group: Some(CacheParameterGroupStatus {
            cache_node_ids_to_reboot: Some(to_reboot),
            cache_parameter_group_name: Some(cluster.parameter_group.clone()),
            parameter_apply_status: Some(parameter_status.to_string()),
        }),
        cache_security_groups: Some(
            cluster
                .cache_security_groups
                .iter()
                .map(|name| CacheSecurityGroupMembership {
                    cache_security_group_name: Some(name.clone()),
                    status: Some("active".to_string()),
                })
                .collect(),
        ),
        cache_subnet_group_name: Some(cluster.subnet_group.clone()),
        client_download_landing_page: Some(
            "https://console.aws.amazon.com/elasticache/home#client-download:".to_string(),
        ),
        configuration_endpoint: if memcached {
            cluster
                .config_endpoint_port
                .map(|port| Endpoint { address: Some("127.0.0.1".to_string()), port: Some(i32::from(port)) })
        } else {
            None
        },
        engine: Some(cluster.engine.clone()),
        engine_version: Some(cluster.running_engine_version.clone().unwrap_or_else(|| cluster.engine_version.clone())),
        ip_discovery: IpDiscovery::from_wire(&cluster.ip_discovery),
        log_delivery_configurations: Some(Vec::new()),
        network_type: NetworkType::from_wire(&cluster.network_type),
        notification_configuration: cluster.notification_topic_arn.as_ref().map(|arn| NotificationConfiguration {
            topic_arn: Some(arn.clone()),
            topic_status: Some("active".to_string()),
        }),
        num_cache_nodes: Some(cluster.num_nodes as i32),
        pending_modified_values: Some(PendingModifiedValues {
            auth_token_status: crate::transit::status_output(&cluster.security),
            cache_node_ids_to_remove: (!pending.node_ids_to_remove.is_empty())
                .then(|| pending.node_ids_to_remove.clone()),
            cache_node_type: pending.node_type.clone(),
            engine_version: pending.engine_version.clone(),
            log_delivery_configurations: None,
            num_cache_nodes: pending.num_nodes.map(|n| n as i32),
            scale_config: None,
            transit_encryption_enabled: None,
            transit_encryption_mode: None,
        }),
        preferred_availability_zone: preferred_zone,
        preferred_maintenance_window: Some(cluster.maintenance_window.clone()),
        preferred_outpost_arn: None,
        replication_group_id: cluster.replication_group_id.clone(),
        replication_group_log_delivery_enabled: Some(false),
        security_groups: Some(
            cluster
                .security_group_ids
                .iter()
                .map(|id| SecurityGroupMembership {
                    security_group_id: Some(id.clone()),
                    status: Some("active".to_string()),
                })
                .collect(),
        ),
        snapshot_retention_limit: (!memcached).then_some(cluster.snapshot_retention_limit),
        snapshot_window: cluster.snapshot_window.clone(),
        transit_encryption_enabled: Some(cluster.security.transit_encryption),
        transit_encryption_mode: crate::transit::mode_output(&cluster.security),
    }
}

fn node_output(node: &CacheNodeRecord) -> CacheNode {
    CacheNode {
        cache_node_create_time: Some(DateTime::from_millis(node.created_millis)),
        cache_node_id: Some(node.node_id.clone()),
        cache_node_status: Some(node.status.clone()),
        customer_availability_zone: Some(node.zone.clone()),
        customer_outpost_arn: None,
        endpoint: (node.port != 0)
            .then(|| Endpoint { address: Some(node.address.clone()), port: Some(i32::from(node.port)) }),
        parameter_group_status: Some(node.parameter_status.clone()),
        source_cache_node_id: None,
    }
}

pub(crate) async fn existing(ops: &Operations, scope: &Scope, id: &str) -> Result<StoredCluster, ApiError> {
    ops.store.cache_cluster(scope, &id.to_ascii_lowercase()).await.map_err(internal)?.ok_or_else(|| not_found(id))
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeCacheClustersMessage,
) -> Result<CacheClusterMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let clusters = match &input.cache_cluster_id {
        Some(id) => vec![existing(ops, &scope, id).await?],
        None => ops.store.cache_clusters(&scope).await.map_err(internal)?,
    };
    let standalone_only = input.show_cache_clusters_not_in_replication_groups.unwrap_or(false);
    let clusters: Vec<StoredCluster> =
        clusters.into_iter().filter(|c| !standalone_only || c.cluster.replication_group_id.is_none()).collect();
    let page = paginate(clusters, |c| c.cluster.id.clone(), input.marker.as_deref(), input.max_records)?;
    let show_nodes = input.show_cache_node_info.unwrap_or(false);
    Ok(CacheClusterMessage {
        cache_clusters: Some(page.items.iter().map(|c| output(c, show_nodes)).collect()),
        marker: page.marker,
    })
}

/// Runs `change` on an available cluster in one transaction; `InvalidCacheClusterState`
/// otherwise.
async fn change_available(
    ops: &Operations,
    scope: &Scope,
    id: &str,
    change: impl FnOnce(&mut CacheClusterRecord, &mut Vec<CacheNodeRecord>) -> Result<Vec<EventRecord>, ApiError>,
) -> Result<StoredCluster, ApiError> {
    let id = id.to_ascii_lowercase();
    let result = ops
        .store
        .update_cache_cluster(scope, &id, |cluster, nodes| {
            if cluster.status != status::AVAILABLE {
                return Err(invalid_state(&cluster.id, &cluster.status));
            }
            change(cluster, nodes)
        })
        .await;
    let updated = crate::updated(result, || not_found(&id))?;
    ops.wake_reconciler();
    Ok(updated)
}

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyCacheClusterMessage,
) -> Result<ModifyCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let current = existing(ops, &scope, &input.cache_cluster_id).await?;
    let engine = current.cluster.engine.clone();
    let memcached = is_memcached(&engine);
    let apply_now = input.apply_immediately.unwrap_or(false);

    // Validate everything against the current state before changing anything.
    let family =
        ops.engine_version(&engine, Some(&current.cluster.engine_version))?.cache_parameter_group_family.clone();
    let new_version = match &input.engine_version {
        Some(v) => {
            let version = ops.engine_version(&engine, Some(v))?;
            if model::catalog::is_downgrade(&current.cluster.engine_version, &version.engine_version) {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Cannot downgrade {engine} from {} to {}.",
                    current.cluster.engine_version, version.engine_version
                )));
            }
            Some(version.clone())
        }
        None => None,
    };
    let target_family = new_version.as_ref().map_or(family.clone(), |v| v.cache_parameter_group_family.clone());
    let parameter_group = match &input.cache_parameter_group_name {
        Some(name) => Some(ops.parameter_group_for(&scope, Some(name), &target_family).await?),
        None if target_family != family => {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Upgrading to family {target_family} requires a CacheParameterGroupName of that family."
            )));
        }
        None => None,
    };
    if let Some(node_type) = &input.cache_node_type {
        ops.check_node_type(node_type)?;
        if memcached {
            return Err(ApiError::invalid_parameter_combination("Memcached clusters cannot change their node type."));
        }
    }
    let zones = ops.subnet_group_zones(&scope, &current.cluster.subnet_group).await?;
    let new_zones = input.new_availability_zones.clone().unwrap_or_default();
    check_zones(ops, &scope, &new_zones, &zones)?;
    for name in input.cache_security_group_names.iter().flatten() {
        if !crate::security_groups::exists(ops, &scope, &name.to_ascii_lowercase()).await? {
            return Err(Kind::SecurityGroup.not_found(name));
        }
    }
    let maintenance_window =
        input.preferred_maintenance_window.as_deref().map(validate_maintenance_window).transpose()?;
    let snapshot_window = input.snapshot_window.as_deref().map(validate_snapshot_window).transpose()?;
    if memcached && (input.snapshot_window.is_some() || input.snapshot_retention_limit.is_some()) {
        return Err(ApiError::invalid_parameter_combination("Snapshots are not supported for Memcached clusters."));
    }
    if input.snapshot_retention_limit.is_some_and(|l| !(0..=35).contains(&l)) {
        return Err(ApiError::invalid_parameter_value("SnapshotRetentionLimit must be between 0 and 35."));
    }
    // AUTH token changes of a standalone Redis cluster, as for a replication group.
    let token_change = crate::transit::Change {
        transit_encryption_enabled: None,
        mode: None,
        auth_token: input.auth_token.as_deref(),
        strategy: input.auth_token_update_strategy,
        to_rbac: false,
    };
    crate::transit::check_change(&token_change)?;
    if memcached && !token_change.is_empty() {
        return Err(ApiError::invalid_parameter_combination("AUTH tokens are for Redis clusters only."));
    }

    let updated = change_available(ops, &scope, &input.cache_cluster_id, |cluster, nodes| {
        let mut changed = false;
        if !token_change.is_empty() {
            if let Some(group) = &cluster.replication_group_id {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "Cache cluster {} is a member of replication group {group}: change its AUTH token there.",
                    cluster.id
                )));
            }
            // Applied live by the reconciler; the cluster is modifying until every node has it.
            if crate::transit::apply(&mut cluster.security, &token_change)? {
                changed = true;
                cluster.status = status::MODIFYING.to_string();
            }
        }
        let mut pending = cluster.pending.clone();
        if let Some(num) = input.num_cache_nodes {
            let live = nodes.iter().filter(|n| !n.remove_requested).count() as i32;
            if !memcached && num != 1 {
                return Err(ApiError::invalid_parameter_value(format!(
                    "NumCacheNodes must be 1 for a {engine} cluster."
                )));
            }
            if num < 1 || num as u32 > MEMCACHED_NODES_PER_CLUSTER {
                return Err(ApiError::new(
                    ErrorCode::NodeQuotaForClusterExceededFault,
                    format!("NumCacheNodes must be between 1 and {MEMCACHED_NODES_PER_CLUSTER}."),
                ));
            }
            let to_remove = input.cache_node_ids_to_remove.clone().unwrap_or_default();
            if num < live {
                if to_remove.len() as i32 != live - num {
                    return Err(ApiError::invalid_parameter_value(format!(
                        "To remove {} cache nodes, CacheNodeIdsToRemove must list exactly that many node ids.",
                        live - num
                    )));
                }
                for node_id in &to_remove {
                    if !nodes.iter().any(|n| &n.node_id == node_id && !n.remove_requested) {
                        return Err(ApiError::invalid_parameter_value(format!("Cache node {node_id} does not exist.")));
                    }
                }
            } else if !to_remove.is_empty() && num > live {
                return Err(ApiError::invalid_parameter_combination(
                    "CacheNodeIdsToRemove can only be used to decrease NumCacheNodes.",
                ));
            }
            if num != live || !to_remove.is_empty() {
                changed = true;
                if apply_now {
                    resize(cluster, nodes, num as u32, &to_remove, &new_zones, &zones);
                } else {
                    pending.num_nodes = Some(num as u32);
                    pending.node_ids_to_remove = to_remove;
                }
            } else if pending.num_nodes.is_some() {
                // AWS: the current count cancels a pending add or remove.
                changed = true;
                pending.num_nodes = None;
                pending.node_ids_to_remove.clear();
            }
        }
        if let Some(node_type) = &input.cache_node_type
            && node_type != &cluster.node_type
        {
            changed = true;
            if apply_now {
                set_node_type(cluster, nodes, node_type);
            } else {
                pending.node_type = Some(node_type.clone());
            }
        }
        if let Some(version) = &new_version
            && version.engine_version != cluster.engine_version
        {
            changed = true;
            if apply_now {
                cluster.engine_version = version.engine_version.clone();
            } else {
                pending.engine_version = Some(version.engine_version.clone());
            }
        }
        if let Some(group) = &parameter_group
            && group != &cluster.parameter_group
        {
            changed = true;
            cluster.parameter_group = group.clone();
            for node in nodes.iter_mut() {
                node.parameter_status = status::APPLYING.to_string();
            }
        }
        if let Some(window) = &maintenance_window {
            changed |= window != &cluster.maintenance_window;
            cluster.maintenance_window = window.clone();
        }
        if let Some(window) = &snapshot_window {
            changed |= Some(window) != cluster.snapshot_window.as_ref();
            cluster.snapshot_window = Some(window.clone());
        }
        if let Some(limit) = input.snapshot_retention_limit {
            changed |= limit != cluster.snapshot_retention_limit;
            cluster.snapshot_retention_limit = limit;
        }
        if let Some(flag) = input.auto_minor_version_upgrade {
            changed |= flag != cluster.auto_minor_version_upgrade;
            cluster.auto_minor_version_upgrade = flag;
        }
        if let Some(topic) = &input.notification_topic_arn {
            changed = true;
            cluster.notification_topic_arn = Some(topic.clone());
        }
        if input.notification_topic_status.as_deref() == Some("inactive") {
            changed = true;
            cluster.notification_topic_arn = None;
        }
        if let Some(ids) = &input.security_group_ids {
            changed = true;
            cluster.security_group_ids = ids.clone();
        }
        if let Some(names) = &input.cache_security_group_names {
            changed = true;
            cluster.cache_security_groups = names.clone();
        }
        if let Some(mode) = input.az_mode {
            if !memcached {
                return Err(ApiError::invalid_parameter_value("AZMode is only supported for Memcached clusters."));
            }
            changed = true;
            cluster.az_mode = mode.as_str().to_string();
        }
        // AWS: ApplyImmediately applies this request and whatever was pending.
        if apply_now && !pending.is_empty() {
            changed = true;
            let waiting = std::mem::take(&mut pending);
            if input.num_cache_nodes.is_none()
                && let Some(num) = waiting.num_nodes
            {
                resize(cluster, nodes, num, &waiting.node_ids_to_remove, &[], &zones);
            }
            if input.cache_node_type.is_none()
                && let Some(node_type) = waiting.node_type
            {
                set_node_type(cluster, nodes, &node_type);
            }
            if new_version.is_none()
                && let Some(version) = waiting.engine_version
            {
                cluster.engine_version = version;
            }
        }
        if !changed {
            return Err(ApiError::invalid_parameter_combination("No modifications were requested."));
        }
        cluster.pending = pending;
        let touches_nodes = nodes.iter().any(|n| {
            n.status == status::CREATING
                || n.remove_requested
                || n.reboot_requested
                || n.parameter_status == status::APPLYING
        });
        if touches_nodes {
            cluster.status = status::MODIFYING.to_string();
        }
        Ok(Vec::new())
    })
    .await?;
    tracing::info!(cache_cluster = updated.cluster.id, to = updated.cluster.status, "cache cluster modified");
    Ok(ModifyCacheClusterResult { cache_cluster: Some(output(&updated, false)) })
}

/// A new node type: the reconciler gives running nodes its memory without a restart. (An
/// engine version change needs nothing of the nodes: this machine has one binary per
/// engine, so the version that runs cannot change.)
pub fn set_node_type(cluster: &mut CacheClusterRecord, nodes: &mut [CacheNodeRecord], node_type: &str) {
    cluster.node_type = node_type.to_string();
    nodes.iter_mut().for_each(|n| n.parameter_status = status::APPLYING.to_string());
}

/// Grows or shrinks the node list to `target` nodes: new nodes get the next ids, removed
/// nodes are marked for the reconciler to stop.
pub fn resize(
    cluster: &mut CacheClusterRecord,
    nodes: &mut Vec<CacheNodeRecord>,
    target: u32,
    to_remove: &[String],
    requested_zones: &[String],
    zones: &[String],
) {
    for node in nodes.iter_mut().filter(|n| to_remove.contains(&n.node_id)) {
        node.remove_requested = true;
        node.status = status::DELETING.to_string();
    }
    let live = nodes.iter().filter(|n| !n.remove_requested).count();
    if (target as usize) > live {
        let next = nodes.iter().filter_map(|n| n.node_id.parse::<usize>().ok()).max().unwrap_or(0) + 1;
        let placed: Vec<CacheNodeRecord> = nodes.iter().filter(|n| !n.remove_requested).cloned().collect();
        let new_zones = place(target as usize - live, requested_zones, &cluster.az_mode, zones, &placed);
        for (i, zone) in new_zones.into_iter().enumerate() {
            nodes.push(new_node(next + i, zone));
        }
    }
    cluster.num_nodes = target;
}

pub async fn reboot(
    ops: &Operations,
    ctx: &RequestContext,
    input: RebootCacheClusterMessage,
) -> Result<RebootCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    if input.cache_node_ids_to_reboot.is_empty() {
        return Err(ApiError::invalid_parameter_value("CacheNodeIdsToReboot must list at least one cache node."));
    }
    let updated = change_available(ops, &scope, &input.cache_cluster_id, |cluster, nodes| {
        for node_id in &input.cache_node_ids_to_reboot {
            let node = nodes
                .iter_mut()
                .find(|n| &n.node_id == node_id)
                .ok_or_else(|| ApiError::invalid_parameter_value(format!("Cache node {node_id} does not exist.")))?;
            node.reboot_requested = true;
            node.status = status::NODE_REBOOTING.to_string();
        }
        cluster.status = status::REBOOTING.to_string();
        Ok(Vec::new())
    })
    .await?;
    tracing::info!(cache_cluster = updated.cluster.id, "cache cluster: available -> rebooting cache cluster nodes");
    Ok(RebootCacheClusterResult { cache_cluster: Some(output(&updated, false)) })
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteCacheClusterMessage,
) -> Result<DeleteCacheClusterResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let current = existing(ops, &scope, &input.cache_cluster_id).await?;
    if let Some(group) = &current.cluster.replication_group_id {
        return Err(ApiError::new(
            ErrorCode::InvalidCacheClusterStateFault,
            format!("Cache cluster {} is a member of replication group {group}.", current.cluster.id),
        ));
    }
    if input.final_snapshot_identifier.is_some() && is_memcached(&current.cluster.engine) {
        return Err(ApiError::invalid_parameter_combination(
            "FinalSnapshotIdentifier is not supported for Memcached clusters.",
        ));
    }
    let deletable = status::DELETABLE.contains(&current.cluster.status.as_str());
    // A final snapshot needs nodes that serve.
    if !deletable || (input.final_snapshot_identifier.is_some() && current.cluster.status != status::AVAILABLE) {
        return Err(invalid_state(&current.cluster.id, &current.cluster.status));
    }
    // The final snapshot is taken before the nodes go: the reconciler deletes the cluster
    // once it is written.
    let final_snapshot = match &input.final_snapshot_identifier {
        Some(name) => Some(
            crate::snapshots::plan(
                ops,
                &scope,
                name,
                Some(&current.cluster.id),
                None,
                crate::snapshots::Taken::Final,
                None,
            )
            .await?,
        ),
        None => None,
    };
    // One write: refused, nothing changes (the final snapshot included); its automated
    // snapshots go with it.
    let id = current.cluster.id.clone();
    let updated = written(
        ops.store
            .write(async |tx| {
                if let Some(snapshot) = &final_snapshot {
                    crate::snapshots::record(tx, &scope, snapshot, &[]).await?;
                }
                let Some(updated) = tx.update_cache_cluster(&scope, &id, |c, n| mark_deleting(c, n)).await? else {
                    return refuse(not_found(&id));
                };
                crate::snapshots::prune(tx, &scope, |s| s.cache_cluster_id.as_deref() == Some(id.as_str()), 0).await?;
                Ok(updated)
            })
            .await,
    )?;
    ops.wake_reconciler();
    Ok(DeleteCacheClusterResult { cache_cluster: Some(output(&updated, false)) })
}

/// Applies the changes waiting for the maintenance window of every cluster of the scope.
pub async fn apply_pending(ops: &Operations, scope: &Scope) -> Result<usize, ApiError> {
    let mut applied = 0;
    for c in ops.store.cache_clusters(scope).await.map_err(internal)? {
        if c.cluster.pending.is_empty() || c.cluster.status != status::AVAILABLE {
            continue;
        }
        let zones = ops.subnet_group_zones(scope, &c.cluster.subnet_group).await?;
        let result = ops
            .store
            .update_cache_cluster(scope, &c.cluster.id, |cluster, nodes| {
                // Checked again under the lock: the cluster may have changed since.
                if cluster.pending.is_empty() || cluster.status != status::AVAILABLE {
                    return Err(());
                }
                let pending = std::mem::take(&mut cluster.pending);
                if let Some(num) = pending.num_nodes {
                    resize(cluster, nodes, num, &pending.node_ids_to_remove, &[], &zones);
                }
                if let Some(node_type) = pending.node_type {
                    set_node_type(cluster, nodes, &node_type);
                }
                if let Some(version) = pending.engine_version {
                    cluster.engine_version = version;
                }
                cluster.status = status::MODIFYING.to_string();
                Ok(Vec::new())
            })
            .await;
        match result {
            Ok(Some(_)) => applied += 1,
            Ok(None) | Err(UpdateError::Rejected(())) => {}
            Err(UpdateError::Store(e)) => return Err(internal(e)),
        }
    }
    ops.wake_reconciler();
    Ok(applied)
}

pub async fn allowed_node_type_modifications(
    ops: &Operations,
    ctx: &RequestContext,
    input: ListAllowedNodeTypeModificationsMessage,
) -> Result<AllowedNodeTypeModificationsMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let cluster = match (&input.cache_cluster_id, &input.replication_group_id) {
        (Some(id), _) => existing(ops, &scope, id).await?,
        (None, Some(group)) => {
            let group = ops
                .store
                .replication_group(&scope, &group.to_ascii_lowercase())
                .await
                .map_err(internal)?
                .ok_or_else(|| Kind::ReplicationGroup.not_found(group))?;
            group.members.into_iter().next().ok_or_else(|| ApiError::internal("replication group without members"))?
        }
        (None, None) => {
            return Err(ApiError::invalid_parameter_combination(
                "Either CacheClusterId or ReplicationGroupId must be provided.",
            ));
        }
    };
    if is_memcached(&cluster.cluster.engine) {
        return Err(ApiError::invalid_parameter_combination("Memcached clusters cannot change their node type."));
    }
    let memory = |name: &str| ops.catalog.node_type(name).and_then(|t| t.redis_maxmemory_bytes).unwrap_or(0);
    let current = memory(&cluster.cluster.node_type);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for (name, node_type) in ops.catalog.node_types() {
        let Some(bytes) = node_type.redis_maxmemory_bytes else { continue };
        if name == &cluster.cluster.node_type {
            continue;
        }
        if bytes > current { up.push(name.clone()) } else { down.push(name.clone()) }
    }
    Ok(AllowedNodeTypeModificationsMessage { scale_down_modifications: Some(down), scale_up_modifications: Some(up) })
}
