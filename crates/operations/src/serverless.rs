//! Serverless caches (Valkey and Redis OSS): AWS's checks, and the cache's record written in
//! one transaction with the replication group that holds its data — cluster mode enabled,
//! a primary and a replica per shard in different zones, under the backing id of
//! `model::names::serverless_backing`, so none of the user's own listings show it. The
//! reconciler serves the cache's TLS endpoints in front of that group and moves the cache's
//! status on with the group's.
//!
//! Sources of AWS's behaviour are named next to each rule; where none is on record the
//! wording is the emulator's own (see the `messages` module for the ones on record).

use aws_smithy_types::DateTime;
use model::names::serverless_backing;
use model::status::cluster as status;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{ServerlessCacheRecord, StoreError, UsageLimit, now_millis};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::replication_groups::{create::plan as plan_group, endpoint};
use crate::{Operations, answered, internal, refuse, tags, validate, written};

/// "Serverless Caches per Region: 40" (AWS General Reference, ElastiCache quotas, L-BBCDAECC).
const QUOTA: usize = 40;
/// The console's limit for the name ("up to 40 characters").
const MAX_NAME_LEN: usize = 40;
/// The node type of the backing group's nodes: never shown, only sized.
const NODE_TYPE: &str = "cache.r7g.large";
/// What DescribeServerlessCaches answers for an omitted description (a real answer quoted
/// in mondoohq/mql#4530 shows `" "`).
const NO_DESCRIPTION: &str = " ";
/// The daily snapshot time AWS picks when none is given (real answers show various hours).
const DEFAULT_DAILY_SNAPSHOT_TIME: &str = "05:00";

/// Major engine versions offered, with the full version Describe reports and the engine
/// version the backing group runs. Redis 7 reports 7.1 and Memcached 1.6 reports 1.6.22 in
/// real answers (mondoohq/mql#4530); Valkey majors 7 and 8 from the Terraform provider's
/// tests, their full versions are not on record.
const VERSIONS: &[(&str, &str, &str)] =
    &[("memcached", "1.6", "1.6.22"), ("redis", "7", "7.1"), ("valkey", "7", "7.2"), ("valkey", "8", "8.0")];
/// How many Memcached nodes mirror a serverless Memcached cache's data: one per zone of two.
const MEMCACHED_MIRRORS: i32 = 2;

/// The major version a backing's engine version belongs to ("1.6" for Memcached 1.6.22).
pub(crate) fn major_of(engine: &str, version: &str) -> String {
    let offered = VERSIONS.iter().find(|(e, _, full)| *e == engine && version.starts_with(full));
    offered.map_or_else(|| version.split('.').next().unwrap_or_default().to_string(), |(_, major, _)| major.to_string())
}

fn not_found(name: &str) -> ApiError {
    Kind::ServerlessCache.not_found(name)
}

/// The stored cache `name` (lower case), or AWS's not-found answer.
pub(crate) async fn existing(
    ops: &Operations,
    scope: &store::Scope,
    name: &str,
) -> Result<ServerlessCacheRecord, ApiError> {
    ops.store.serverless_cache(scope, name).await.map_err(internal)?.ok_or_else(|| not_found(name))
}

/// "UserGroupId: … Available for Valkey and Redis OSS only" (CreateServerlessCache's API
/// reference); the wording of the refusal is the emulator's.
fn refuse_memcached_user_groups(engine: &str) -> Result<(), ApiError> {
    if engine == "memcached" {
        return Err(ApiError::invalid_parameter_combination(
            "User groups are available for Valkey and Redis OSS serverless caches only.",
        ));
    }
    Ok(())
}

fn invalid_state(name: &str, current: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidServerlessCacheStateFault,
        format!("Serverless cache {name} is not in available state (current state: {current})."),
    )
}

/// The major version asked for (the newest of the engine when none), and its full version.
fn version(engine: &str, major: Option<&str>) -> Result<(&'static str, &'static str), ApiError> {
    let offered = VERSIONS.iter().filter(|(e, _, _)| *e == engine);
    let found = match major {
        Some(major) => offered.clone().find(|(_, m, _)| *m == major),
        None => offered.clone().next_back(),
    };
    found.map(|(_, major, full)| (*major, *full)).ok_or_else(|| {
        let majors: Vec<&str> = offered.map(|(_, m, _)| *m).collect();
        ApiError::invalid_parameter_value(format!(
            "Invalid MajorEngineVersion {} for engine {engine}. Valid values: {}.",
            major.unwrap_or(""),
            majors.join(", ")
        ))
    })
}

fn engine(requested: &str) -> Result<String, ApiError> {
    let engine = requested.to_ascii_lowercase();
    match engine.as_str() {
        "valkey" | "redis" | "memcached" => Ok(engine),
        _ => Err(ApiError::invalid_parameter_value(format!(
            "Invalid engine {requested}. The options are valkey, memcached or redis."
        ))),
    }
}

/// CacheUsageLimits, checked: 0 removes a bound (AWS's Scaling guide), and the ranges are
/// AWS's: ECPU/s 1,000–15,000,000 (real answer quoted in terraform-provider-aws#35648),
/// data storage 1–5,000 GB (AWS's quota page; the wording is by analogy).
struct Limits {
    data_storage: Option<UsageLimit>,
    ecpu_per_second: Option<UsageLimit>,
}

impl Limits {
    fn check(limits: Option<&CacheUsageLimits>) -> Result<Self, ApiError> {
        let Some(limits) = limits else { return Ok(Self { data_storage: None, ecpu_per_second: None }) };
        let data_storage = limits
            .data_storage
            .as_ref()
            .map(|d| bounds("DataStorage", d.minimum, d.maximum, 1..=5_000))
            .transpose()?
            .flatten();
        let ecpu_per_second = limits
            .ecpu_per_second
            .as_ref()
            .map(|e| bounds("ECPUPerSecond", e.minimum, e.maximum, 1_000..=15_000_000))
            .transpose()?
            .flatten();
        Ok(Self { data_storage, ecpu_per_second })
    }
}

fn bounds(
    what: &str,
    minimum: Option<i32>,
    maximum: Option<i32>,
    range: std::ops::RangeInclusive<i32>,
) -> Result<Option<UsageLimit>, ApiError> {
    let (low, high) = (range.start(), range.end());
    for value in [minimum, maximum].into_iter().flatten() {
        if value != 0 && !range.contains(&value) {
            return Err(ApiError::invalid_parameter_value(format!(
                "Invalid value for {what} limit. Must be between {low} and {high}. You can set the value to zero to remove the limit."
            )));
        }
    }
    let (minimum, maximum) = (minimum.filter(|v| *v != 0), maximum.filter(|v| *v != 0));
    if let (Some(min), Some(max)) = (minimum, maximum)
        && min > max
    {
        return Err(ApiError::invalid_parameter_combination(format!(
            "The {what} minimum cannot be greater than its maximum."
        )));
    }
    Ok((minimum.is_some() || maximum.is_some()).then_some(UsageLimit { minimum, maximum }))
}

/// SnapshotRetentionLimit: "The maximum value allowed is 35 days" (the API reference).
fn retention(limit: Option<i32>) -> Result<i32, ApiError> {
    match limit.unwrap_or(0) {
        n @ 0..=35 => Ok(n),
        n => Err(ApiError::invalid_parameter_value(format!(
            "Invalid SnapshotRetentionLimit {n}. It must be between 0 and 35."
        ))),
    }
}

/// DailySnapshotTime: `HH:MM`, UTC (the API reference's examples).
fn daily_snapshot_time(time: &str) -> Result<String, ApiError> {
    let valid = time.split_once(':').is_some_and(|(h, m)| {
        h.len() == 2 && m.len() == 2 && h.parse::<u8>().is_ok_and(|h| h < 24) && m.parse::<u8>().is_ok_and(|m| m < 60)
    });
    if valid {
        Ok(time.to_string())
    } else {
        Err(ApiError::invalid_parameter_value(format!("Invalid DailySnapshotTime {time}. The format is HH:MM.")))
    }
}

fn subnet_ids(ids: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    let ids = ids.unwrap_or_default();
    if let Some(bad) = ids.iter().find(|id| !validate::is_foreign_id("subnet-", id)) {
        return Err(ApiError::invalid_parameter_value(format!(
            "Value ({bad}) for parameter SubnetIds is invalid. A subnet id starts with subnet-."
        )));
    }
    Ok(ids.to_vec())
}

/// The user group of a Valkey or Redis OSS cache: it must exist, be active and suit the
/// engine (the endpoint always speaks TLS, which RBAC needs).
async fn user_group(
    ops: &Operations,
    scope: &store::Scope,
    id: Option<&str>,
    engine: &str,
) -> Result<Option<String>, ApiError> {
    let Some(id) = id else { return Ok(None) };
    refuse_memcached_user_groups(engine)?;
    let ids = crate::rbac::check_attachable(ops, scope, &[id.to_string()], engine, true).await?;
    Ok(ids.into_iter().next())
}

/// The snapshot a new cache restores (by its stored name), from SnapshotArnsToRestore:
/// a serverless cache snapshot or a replication group's.
fn snapshot_to_restore(arns: Option<&[String]>) -> Result<Option<String>, ApiError> {
    match arns.unwrap_or_default() {
        [] => Ok(None),
        [one] => {
            let parsed = arn::parse(one)?;
            match parsed.kind {
                Kind::ServerlessCacheSnapshot => Ok(Some(serverless_backing(&parsed.name))),
                Kind::Snapshot => Ok(Some(parsed.name)),
                _ => Err(ApiError::invalid_parameter_value(format!(
                    "Invalid SnapshotArnsToRestore {one}: not a snapshot ARN."
                ))),
            }
        }
        _ => Err(ApiError::invalid_parameter_value("SnapshotArnsToRestore can name one snapshot.")),
    }
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateServerlessCacheRequest,
) -> Result<CreateServerlessCacheResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = validate::resource_id("ServerlessCacheName", &input.serverless_cache_name, MAX_NAME_LEN)?;
    let engine = engine(&input.engine)?;
    let (major, full) = version(&engine, input.major_engine_version.as_deref())?;
    let description = input.description.clone().unwrap_or_default();
    validate::description_length("Description", &description)?;
    let limits = Limits::check(input.cache_usage_limits.as_ref())?;
    let snapshot_retention_limit = retention(input.snapshot_retention_limit)?;
    let daily = input.daily_snapshot_time.as_deref().map(daily_snapshot_time).transpose()?;
    let subnet_ids = match subnet_ids(input.subnet_ids.as_deref())? {
        ids if ids.is_empty() => default_subnet_ids(ops, &scope).await?,
        ids => ids,
    };
    crate::security_groups::check_references(ops, &scope, None, input.security_group_ids.as_deref()).await?;
    let kms_key_id = input.kms_key_id.as_deref().map(validate::kms_key_id).transpose()?;
    let user_group_id = user_group(ops, &scope, input.user_group_id.as_deref(), &engine).await?;
    let restore = snapshot_to_restore(input.snapshot_arns_to_restore.as_deref())?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let cache = ServerlessCacheRecord {
        name: name.clone(),
        description,
        status: status::CREATING.to_string(),
        engine,
        major_engine_version: major.to_string(),
        full_engine_version: full.to_string(),
        subnet_ids,
        security_group_ids: input.security_group_ids.clone().unwrap_or_default(),
        kms_key_id,
        user_group_id,
        snapshot_retention_limit,
        daily_snapshot_time: daily.unwrap_or_else(|| DEFAULT_DAILY_SNAPSHOT_TIME.to_string()),
        data_storage: limits.data_storage,
        ecpu_per_second: limits.ecpu_per_second,
        created_millis: now_millis(),
        endpoint_port: None,
        reader_endpoint_port: None,
        migration: None,
    };
    let mut backing = match cache.engine.as_str() {
        "memcached" => Backing::Mirrors(Box::new(mirrors(ops, &scope, &cache, restore).await?)),
        _ => Backing::Group(Box::new(shards(ops, &scope, &cache, restore).await?)),
    };
    let arn = arn::build(&scope, Kind::ServerlessCache, &name);
    let refusal = |e: &StoreError| match e {
        StoreError::AlreadyExists => Some(ApiError::new(
            ErrorCode::ServerlessCacheAlreadyExistsFault,
            format!("Serverless cache {name} already exists."),
        )),
        StoreError::QuotaExceeded(quota) => Some(ApiError::new(
            ErrorCode::ServerlessCacheQuotaForCustomerExceededFault,
            format!("The maximum number of serverless caches ({quota}) has been reached."),
        )),
        _ => None,
    };
    written(
        ops.store
            .write(async |tx| {
                tx.create_serverless_cache(&scope, &cache, &arn, &tags, QUOTA)
                    .await
                    .map_err(|e| answered(e, refusal))?;
                match &mut backing {
                    Backing::Group(group) => group.write(tx, ops.node_capacity()).await,
                    Backing::Mirrors(planned) => {
                        crate::cache_clusters::create::write(tx, &planned.0, &planned.1, ops.node_capacity()).await
                    }
                }
            })
            .await,
    )?;
    tracing::info!(serverless_cache = name, "serverless cache: (none) -> creating");
    Ok(CreateServerlessCacheResponse { serverless_cache: Some(output(&scope, &cache, ops.endpoint_host())) })
}

/// What holds a new cache's data: a cluster-mode replication group (Valkey, Redis OSS), or
/// a Memcached cluster whose nodes the endpoint keeps as mirrors of each other.
enum Backing {
    Group(Box<crate::replication_groups::create::NewGroup>),
    Mirrors(Box<(store::CacheCluster, Vec<store::TagRecord>)>),
}

/// The replication group behind a Valkey or Redis OSS cache: cluster mode enabled, a
/// primary and a replica per shard in different zones.
async fn shards(
    ops: &Operations,
    scope: &store::Scope,
    cache: &ServerlessCacheRecord,
    restore: Option<String>,
) -> Result<crate::replication_groups::create::NewGroup, ApiError> {
    let backing = serverless_backing(&cache.name);
    let group_input = CreateReplicationGroupMessage {
        replication_group_id: backing.clone(),
        replication_group_description: format!("data of serverless cache {}", cache.name),
        engine: Some(cache.engine.clone()),
        engine_version: Some(cache.full_engine_version.clone()),
        cache_node_type: Some(NODE_TYPE.to_string()),
        cluster_mode: Some(ClusterMode::Enabled),
        num_node_groups: restore.is_none().then_some(1),
        replicas_per_node_group: Some(1),
        automatic_failover_enabled: Some(true),
        multi_az_enabled: Some(true),
        snapshot_name: restore,
        ..Default::default()
    };
    let mut new_group = plan_group(ops, scope, &backing, &group_input).await?;
    new_group.stored.group.user_group_ids = cache.user_group_id.iter().cloned().collect();
    new_group.stored.group.max_memory_bytes =
        node_memory(ops, cache.data_storage, new_group.stored.group.node_groups.len());
    Ok(new_group)
}

/// The Memcached cluster behind a serverless Memcached cache: two nodes in different
/// zones, each holding all the data (the endpoint writes to both), so a node or a zone
/// can fail behind the endpoint. The data storage limit is each node's memory.
async fn mirrors(
    ops: &Operations,
    scope: &store::Scope,
    cache: &ServerlessCacheRecord,
    restore: Option<String>,
) -> Result<(store::CacheCluster, Vec<store::TagRecord>), ApiError> {
    let backing = serverless_backing(&cache.name);
    if let Some(snapshot) = &restore {
        crate::snapshots::restorable(ops, scope, snapshot, "memcached").await?;
    }
    let input = CreateCacheClusterMessage {
        cache_cluster_id: backing.clone(),
        engine: Some("memcached".to_string()),
        engine_version: Some(cache.full_engine_version.clone()),
        cache_node_type: Some(NODE_TYPE.to_string()),
        num_cache_nodes: Some(MEMCACHED_MIRRORS),
        az_mode: Some(AZMode::CrossAz),
        ..Default::default()
    };
    let (mut planned, tags) = crate::cache_clusters::create::plan(ops, scope, &backing, input).await?;
    planned.cluster.restore_from = restore;
    planned.cluster.max_memory_bytes = node_memory(ops, cache.data_storage, 1);
    Ok((planned, tags))
}

/// What each node of a cache with `shards` shards may hold under its data storage limit
/// (None: no limit, the node type's memory). Beyond it, keys with a TTL are evicted first
/// (the parameter group's `volatile-lru`), then writes get the engine's OOM error, as AWS's
/// Scaling guide describes.
fn node_memory(ops: &Operations, data_storage: Option<UsageLimit>, shards: usize) -> Option<u64> {
    let gb = u64::try_from(data_storage?.maximum?).ok()?;
    Some(gb.saturating_mul(ops.settings.serverless_gb_bytes) / shards.max(1) as u64)
}

/// AWS picks the default VPC's subnets when none are given: here, the default subnet group's.
async fn default_subnet_ids(ops: &Operations, scope: &store::Scope) -> Result<Vec<String>, ApiError> {
    let group = ops.store.subnet_group(scope, crate::subnet_groups::DEFAULT_GROUP).await.map_err(internal)?;
    Ok(group.map(|g| g.subnets.into_iter().map(|s| s.subnet_id).collect()).unwrap_or_default())
}

/// The Describe form of a cache. The endpoints appear once the reconciler serves them (a
/// Create answer has none, as on AWS).
pub fn output(scope: &store::Scope, c: &ServerlessCacheRecord, host: &str) -> ServerlessCache {
    let limits = (c.data_storage.is_some() || c.ecpu_per_second.is_some()).then(|| CacheUsageLimits {
        data_storage: c.data_storage.map(|d| DataStorage {
            maximum: d.maximum,
            minimum: d.minimum,
            unit: DataStorageUnit::Gb,
        }),
        ecpu_per_second: c.ecpu_per_second.map(|e| ECPUPerSecond { maximum: e.maximum, minimum: e.minimum }),
    });
    let description = if c.description.is_empty() { NO_DESCRIPTION.to_string() } else { c.description.clone() };
    ServerlessCache {
        arn: Some(arn::build(scope, Kind::ServerlessCache, &c.name)),
        cache_usage_limits: limits,
        create_time: Some(DateTime::from_millis(c.created_millis)),
        daily_snapshot_time: Some(c.daily_snapshot_time.clone()),
        description: Some(description),
        endpoint: endpoint(host, c.endpoint_port),
        engine: Some(c.engine.clone()),
        full_engine_version: Some(c.full_engine_version.clone()),
        kms_key_id: c.kms_key_id.clone(),
        major_engine_version: Some(c.major_engine_version.clone()),
        migration: crate::serverless_migration::summary(c, host),
        network_type: Some(NetworkType::Ipv4),
        reader_endpoint: endpoint(host, c.reader_endpoint_port),
        security_group_ids: Some(c.security_group_ids.clone()).filter(|ids| !ids.is_empty()),
        serverless_cache_name: Some(c.name.clone()),
        snapshot_retention_limit: Some(c.snapshot_retention_limit),
        status: Some(c.status.clone()),
        storage_encryption_type: Some(if c.kms_key_id.is_some() {
            StorageEncryptionType::SseKms
        } else {
            StorageEncryptionType::SseElasticache
        }),
        subnet_ids: Some(c.subnet_ids.clone()),
        user_group_id: c.user_group_id.clone(),
        ..Default::default()
    }
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeServerlessCachesRequest,
) -> Result<DescribeServerlessCachesResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let caches = match &input.serverless_cache_name {
        Some(name) => {
            let name = name.to_ascii_lowercase();
            vec![existing(ops, &scope, &name).await?]
        }
        None => ops.store.serverless_caches(&scope).await.map_err(internal)?,
    };
    let page = paginate(caches, |c| c.name.clone(), input.next_token.as_deref(), input.max_results)?;
    Ok(DescribeServerlessCachesResponse {
        next_token: page.marker,
        serverless_caches: Some(page.items.iter().map(|c| output(&scope, c, ops.endpoint_host())).collect()),
    })
}

/// The one change a ModifyServerlessCache makes: AWS takes one field per request, counting
/// the fields present (terraform-provider-aws#37499 and others quote the answer), with the
/// usage limits as one field and the engine with its major version as one.
enum Change {
    Description(String),
    Limits(Limits),
    SecurityGroups(Vec<String>),
    Retention(i32),
    DailySnapshotTime(String),
    UserGroup(Option<String>),
    Engine(Upgrade),
}

/// A cache's move to a newer major version, or from Redis OSS to Valkey.
struct Upgrade {
    engine: String,
    major: &'static str,
    full: &'static str,
}

impl Upgrade {
    /// AWS's rules: Valkey is the one engine a cache can move to (the answer quoted in
    /// terraform-provider-aws#39711), and versions only go up. The wording of the other
    /// refusals is the emulator's.
    fn of(input: &ModifyServerlessCacheRequest, current: &ServerlessCacheRecord) -> Result<Self, ApiError> {
        if input.engine.as_deref().is_some_and(|e| !e.eq_ignore_ascii_case("valkey")) {
            return Err(ApiError::invalid_parameter_value(
                "This API supports only cross-engine upgrades to Valkey engine currently",
            ));
        }
        let engine = input.engine.as_deref().map_or_else(|| current.engine.clone(), str::to_ascii_lowercase);
        if engine != current.engine && current.engine != "redis" {
            return Err(ApiError::invalid_parameter_combination(format!(
                "A {} serverless cache cannot move to {engine}.",
                current.engine
            )));
        }
        let (major, full) = version(&engine, input.major_engine_version.as_deref())?;
        if model::catalog::is_downgrade(&current.full_engine_version, full) {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Cannot downgrade serverless cache {} from {} {} to {engine} {major}.",
                current.name, current.engine, current.major_engine_version
            )));
        }
        if engine == current.engine && major == current.major_engine_version {
            return Err(ApiError::invalid_parameter_combination("No modifications were requested"));
        }
        Ok(Self { engine, major, full })
    }

    /// The ModifyReplicationGroup that moves the backing group along: the new version with
    /// the default cluster-mode parameter group of its family.
    fn group_change(&self, ops: &Operations, backing: &str) -> Result<ModifyReplicationGroupMessage, ApiError> {
        let family = &ops.engine_version(&self.engine, Some(self.full))?.cache_parameter_group_family;
        Ok(ModifyReplicationGroupMessage {
            replication_group_id: backing.to_string(),
            engine: Some(self.engine.clone()),
            engine_version: Some(self.full.to_string()),
            cache_parameter_group_name: Some(format!("default.{family}.cluster.on")),
            apply_immediately: Some(true),
            ..Default::default()
        })
    }
}

impl Change {
    async fn of(
        ops: &Operations,
        scope: &store::Scope,
        input: &ModifyServerlessCacheRequest,
        current: &ServerlessCacheRecord,
    ) -> Result<Self, ApiError> {
        let present = [
            input.description.is_some(),
            input.cache_usage_limits.is_some(),
            input.security_group_ids.is_some(),
            input.snapshot_retention_limit.is_some(),
            input.daily_snapshot_time.is_some(),
            input.user_group_id.is_some() || input.remove_user_group == Some(true),
            input.engine.is_some() || input.major_engine_version.is_some(),
        ];
        match present.iter().filter(|p| **p).count() {
            0 => return Err(ApiError::invalid_parameter_combination("No modifications were requested")),
            1 => {}
            _ => {
                return Err(ApiError::invalid_parameter_combination(
                    "Serverless Cache modifications only support modifying one field per request.",
                ));
            }
        }
        if let Some(description) = &input.description {
            validate::description_length("Description", description)?;
            return Ok(Self::Description(description.clone()));
        }
        if let Some(limits) = &input.cache_usage_limits {
            return Ok(Self::Limits(Limits::check(Some(limits))?));
        }
        if let Some(ids) = &input.security_group_ids {
            crate::security_groups::check_references(ops, scope, None, Some(ids)).await?;
            return Ok(Self::SecurityGroups(ids.clone()));
        }
        if let Some(limit) = input.snapshot_retention_limit {
            return Ok(Self::Retention(retention(Some(limit))?));
        }
        if let Some(time) = &input.daily_snapshot_time {
            return Ok(Self::DailySnapshotTime(daily_snapshot_time(time)?));
        }
        if input.engine.is_some() || input.major_engine_version.is_some() {
            return Ok(Self::Engine(Upgrade::of(input, current)?));
        }
        if input.remove_user_group == Some(true) {
            refuse_memcached_user_groups(&current.engine)?;
            if input.user_group_id.is_some() {
                return Err(ApiError::invalid_parameter_combination(
                    "UserGroupId and RemoveUserGroup cannot both be specified.",
                ));
            }
            return Ok(Self::UserGroup(None));
        }
        let id = user_group(ops, scope, input.user_group_id.as_deref(), &current.engine).await?;
        Ok(Self::UserGroup(id))
    }
}

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyServerlessCacheRequest,
) -> Result<ModifyServerlessCacheResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.serverless_cache_name.to_ascii_lowercase();
    let current = existing(ops, &scope, &name).await?;
    let change = Change::of(ops, &scope, &input, &current).await?;
    let backing = serverless_backing(&name);
    // An upgrade is the backing group's ModifyReplicationGroup, checked as one.
    let group_change = match &change {
        Change::Engine(upgrade) => Some(upgrade.group_change(ops, &backing)?),
        _ => None,
    };
    let group_plan = match &group_change {
        Some(message) => {
            let group = crate::replication_groups::existing(ops, &scope, &backing).await?;
            Some(crate::replication_groups::modify::Plan::check(ops, &scope, &group, message).await?)
        }
        None => None,
    };
    let cache = written(
        ops.store
            .write(async |tx| {
                let apply = |c: &mut ServerlessCacheRecord| {
                    if c.status != status::AVAILABLE {
                        return Err(invalid_state(&c.name, &c.status));
                    }
                    crate::serverless_migration::refuse_while_migrating(c)?;
                    match &change {
                        Change::Description(d) => c.description = d.clone(),
                        Change::Limits(l) => (c.data_storage, c.ecpu_per_second) = (l.data_storage, l.ecpu_per_second),
                        Change::SecurityGroups(ids) => c.security_group_ids = ids.clone(),
                        Change::Retention(n) => c.snapshot_retention_limit = *n,
                        Change::DailySnapshotTime(t) => c.daily_snapshot_time = t.clone(),
                        Change::UserGroup(id) => c.user_group_id = id.clone(),
                        Change::Engine(u) => {
                            c.engine = u.engine.clone();
                            (c.major_engine_version, c.full_engine_version) = (u.major.into(), u.full.into());
                        }
                    }
                    c.status = status::MODIFYING.to_string();
                    Ok(Vec::new())
                };
                let Some(cache) = tx.update_serverless_cache(&scope, &name, apply).await? else {
                    return refuse(not_found(&name));
                };
                match &change {
                    Change::UserGroup(id) => relink_user_group(tx, &scope, &backing, id.as_deref()).await?,
                    Change::Limits(limits) if cache.engine == "memcached" => {
                        let memory = node_memory(ops, limits.data_storage, 1);
                        tx.update_cache_cluster(&scope, &backing, |c, _| {
                            c.max_memory_bytes = memory;
                            Ok::<_, ApiError>(Vec::new())
                        })
                        .await?;
                    }
                    Change::Limits(limits) => {
                        let memory = |shards| node_memory(ops, limits.data_storage, shards);
                        tx.update_replication_group(&scope, &backing, |g, _| {
                            g.max_memory_bytes = memory(g.node_groups.len());
                            Ok::<_, ApiError>(Vec::new())
                        })
                        .await?;
                    }
                    _ => {}
                }
                if let Some(plan) = &group_plan {
                    tx.update_replication_group(&scope, &backing, |g, members| {
                        if g.status != status::AVAILABLE {
                            return Err(invalid_state(&name, &g.status));
                        }
                        plan.apply(g, members)
                    })
                    .await?;
                }
                Ok(cache)
            })
            .await,
    )?;
    tracing::info!(
        serverless_cache = name,
        from = status::AVAILABLE,
        to = status::MODIFYING,
        "serverless cache status"
    );
    Ok(ModifyServerlessCacheResponse { serverless_cache: Some(output(&scope, &cache, ops.endpoint_host())) })
}

/// Gives the backing group the cache's new user group (or none), live: its reconcile
/// writes the new ACL to every node.
async fn relink_user_group(
    tx: &mut store::Tx,
    scope: &store::Scope,
    backing: &str,
    id: Option<&str>,
) -> crate::Write<()> {
    let Some(group) = tx.replication_group(scope, backing).await? else { return refuse(not_found(backing)) };
    crate::rbac::link(tx, scope, &group.group.user_group_ids, backing, false).await?;
    let ids: Vec<String> = id.map(str::to_string).into_iter().collect();
    crate::rbac::link(tx, scope, &ids, backing, true).await?;
    tx.update_replication_group(scope, backing, |g, _| {
        g.user_group_ids = ids.clone();
        g.status = status::MODIFYING.to_string();
        Ok::<_, ApiError>(Vec::new())
    })
    .await?;
    Ok(())
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteServerlessCacheRequest,
) -> Result<DeleteServerlessCacheResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.serverless_cache_name.to_ascii_lowercase();
    let current = existing(ops, &scope, &name).await?;
    if ![status::AVAILABLE, status::CREATE_FAILED].contains(&current.status.as_str()) {
        return Err(invalid_state(&name, &current.status));
    }
    let backing = serverless_backing(&name);
    let final_snapshot = match &input.final_snapshot_name {
        Some(snapshot) => Some(
            crate::serverless_snapshots::plan(ops, &scope, snapshot, &current, crate::snapshots::Taken::Final).await?,
        ),
        None => None,
    };
    let cache = written(
        ops.store
            .write(async |tx| {
                let apply = |c: &mut ServerlessCacheRecord| {
                    if ![status::AVAILABLE, status::CREATE_FAILED].contains(&c.status.as_str()) {
                        return Err(invalid_state(&c.name, &c.status));
                    }
                    c.status = status::DELETING.to_string();
                    Ok(Vec::new())
                };
                let Some(cache) = tx.update_serverless_cache(&scope, &name, apply).await? else {
                    return refuse(not_found(&name));
                };
                // Not while a snapshot is being taken (the backing is `snapshotting`).
                let backing_status = match cache.engine.as_str() {
                    "memcached" => tx.cache_cluster(&scope, &backing).await?.map(|c| c.cluster.status),
                    _ => tx.replication_group(&scope, &backing).await?.map(|g| g.group.status),
                };
                if let Some(current) = backing_status.filter(|s| !status::DELETABLE.contains(&s.as_str())) {
                    return refuse(invalid_state(&name, &current));
                }
                let final_snapshot = final_snapshot.as_ref();
                match cache.engine.as_str() {
                    "memcached" => {
                        crate::cache_clusters::mark_deleted(tx, &scope, &backing, final_snapshot).await?;
                    }
                    _ => {
                        crate::replication_groups::mark_deleted(tx, &scope, &backing, false, final_snapshot).await?;
                    }
                }
                Ok(cache)
            })
            .await,
    )?;
    tracing::info!(serverless_cache = name, from = current.status, to = status::DELETING, "serverless cache status");
    Ok(DeleteServerlessCacheResponse { serverless_cache: Some(output(&scope, &cache, ops.endpoint_host())) })
}

/// At most this many shards behind one endpoint (AWS's limit for a cluster-mode group).
const MAX_SHARDS: usize = crate::shards::MAX_NODE_GROUPS;

/// The shard count a cache with `shards` shards holding `data_bytes` should scale to, the
/// emulator's stand-in for AWS's automatic scaling: past `shard_bytes` per shard, one more;
/// below half of what one shard fewer would hold, one fewer (the gap keeps it from
/// flapping). None: stay.
pub fn scaling_target(shards: usize, data_bytes: u64, shard_bytes: u64) -> Option<usize> {
    let holds = |n: usize| (n as u64).saturating_mul(shard_bytes);
    if shard_bytes == 0 || shards == 0 {
        None
    } else if data_bytes > holds(shards) && shards < MAX_SHARDS {
        Some(shards + 1)
    } else if shards > 1 && data_bytes < holds(shards - 1) / 2 {
        Some(shards - 1)
    } else {
        None
    }
}

/// Scales the cache `name` to `target` shards behind its endpoint (the last shards go when
/// it shrinks): its backing group reshards as ModifyReplicationGroupShardConfiguration
/// would, and each node's share of the data storage limit follows. Refused, changing
/// nothing, unless the cache and its group are available.
pub async fn scale(ops: &Operations, scope: &store::Scope, name: &str, target: usize) -> Result<(), ApiError> {
    let cache = existing(ops, scope, name).await?;
    if cache.status != status::AVAILABLE {
        return Err(invalid_state(name, &cache.status));
    }
    // Not while a migration copies into the shards (its bridge writes to them).
    crate::serverless_migration::refuse_while_migrating(&cache)?;
    let backing = serverless_backing(name);
    let group = crate::replication_groups::existing(ops, scope, &backing).await?;
    let zones = ops.subnet_group_zones(scope, &crate::replication_groups::subnet_group_of(&group)).await?;
    let mut shards: Vec<String> = group.group.node_groups.iter().map(|s| s.id.clone()).collect();
    shards.sort();
    let request = crate::shards::Reshard {
        target,
        remove: shards.get(target..).map(<[String]>::to_vec).unwrap_or_default(),
        retain: Vec::new(),
        zones: Vec::new(),
    };
    let memory = node_memory(ops, cache.data_storage, target);
    crate::replication_groups::change_available(ops, scope, &backing, |group, members| {
        let events = crate::shards::reshard(group, members, &request, scope, &zones)?;
        group.max_memory_bytes = memory;
        Ok(events)
    })
    .await?;
    tracing::info!(serverless_cache = name, from = shards.len(), to = target, "serverless cache: scaling");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_by_a_shard_past_a_shard_of_data_and_back_well_below() {
        const MIB: u64 = 1 << 20;
        assert_eq!(scaling_target(1, MIB, 2 * MIB), None);
        assert_eq!(scaling_target(1, 2 * MIB + 1, 2 * MIB), Some(2));
        assert_eq!(scaling_target(2, 3 * MIB, 2 * MIB), None, "more than one shard's worth keeps two");
        assert_eq!(scaling_target(2, MIB / 2, 2 * MIB), Some(1));
        assert_eq!(scaling_target(2, MIB + 1, 2 * MIB), None, "the gap keeps it from flapping");
        assert_eq!(scaling_target(MAX_SHARDS, u64::MAX, 2 * MIB), None);
        assert_eq!(scaling_target(3, 0, 0), None, "no threshold, no scaling");
    }
}
