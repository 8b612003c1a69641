//! Cache clusters and their nodes: the desired spec written by the API and the observed
//! state written by the reconciler, one JSON document per row.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use std::sync::Arc;

use crate::shared::ClusterRead;
use crate::{EventRecord, Result, Scope, Store, StoreError, TagRecord, Tx, insert_tags};

/// The nodes that clusters' changes waiting for the maintenance window will add, by the
/// partial index of migration 0013 (only such clusters are read); a caller may narrow it
/// with `AND c.…` terms.
const PENDING_ADDITIONS: &str = "SELECT IFNULL(SUM(MAX(0, c.pending_num_nodes - (SELECT COUNT(*) FROM cache_nodes n \
     WHERE n.region = c.region AND n.account = c.account AND n.cluster_id = c.id))), 0) \
     FROM cache_clusters c WHERE c.pending_num_nodes IS NOT NULL";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheClusterRecord {
    pub id: String,
    /// AWS's CacheClusterStatus: creating, available, modifying, deleting,
    /// rebooting cache cluster nodes, ...
    pub status: String,
    pub engine: String,
    /// The version the user asked for (or the default); Describe reports the running one.
    pub engine_version: String,
    pub node_type: String,
    /// Desired number of nodes.
    pub num_nodes: u32,
    pub az_mode: String,
    pub preferred_zones: Vec<String>,
    pub parameter_group: String,
    pub subnet_group: String,
    pub security_group_ids: Vec<String>,
    pub cache_security_groups: Vec<String>,
    pub port: u16,
    pub created_millis: i64,
    pub maintenance_window: String,
    pub snapshot_window: Option<String>,
    pub snapshot_retention_limit: i32,
    pub auto_minor_version_upgrade: bool,
    pub network_type: String,
    pub ip_discovery: String,
    pub notification_topic_arn: Option<String>,
    pub replication_group_id: Option<String>,
    /// The shard of a cluster-mode group this member belongs to (`0001`, ...).
    #[serde(default)]
    pub node_group_id: Option<String>,
    /// Changes waiting for the maintenance window (ApplyImmediately=false).
    pub pending: PendingChanges,
    /// Memcached Auto Discovery: bumped whenever the node list changes.
    pub config_version: u64,
    /// Observed by the reconciler: the Memcached configuration endpoint's port.
    pub config_endpoint_port: Option<u16>,
    /// The snapshot whose data new nodes start with.
    #[serde(default)]
    pub restore_from: Option<String>,
    /// A member of a group with AtRestEncryptionEnabled (AWS shows it per cluster too).
    #[serde(default)]
    pub at_rest_encryption: bool,
    /// TLS and AUTH token of a standalone cluster (a member follows its group's).
    #[serde(default)]
    pub security: TransitSecurity,
    /// The Outpost asked for (CreateCacheCluster PreferredOutpostArn): kept and shown only.
    #[serde(default)]
    pub preferred_outpost_arn: Option<String>,
    /// The memory each node may use, when not its node type's: a serverless Memcached
    /// cache's data storage limit (its nodes mirror each other, so each holds it all).
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
}

/// Transit encryption and the AUTH token of a cluster or replication group.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransitSecurity {
    pub transit_encryption: bool,
    /// `preferred` or `required` while `transit_encryption` is on.
    pub transit_mode: Option<String>,
    /// The AUTH tokens the nodes accept, the current one first: one, or two while a
    /// token rotates (ROTATE adds one, SET leaves only the given one). Kept here because
    /// the nodes need them at every start; never returned by the API nor logged.
    pub auth_tokens: Vec<String>,
    pub auth_token_last_modified_millis: Option<i64>,
    /// AWS's PendingModifiedValues.AuthTokenStatus (`ROTATING`, `SETTING`) until applied.
    pub auth_token_status: Option<String>,
}

impl TransitSecurity {
    /// The transit encryption mode the nodes run in: `None` (off), `preferred`, `required`.
    pub fn mode(&self) -> Option<&str> {
        if self.transit_encryption { Some(self.transit_mode.as_deref().unwrap_or("required")) } else { None }
    }

    /// A fingerprint of the tokens, to tell whether a node runs with the current ones
    /// without storing them a second time.
    pub fn auth_fingerprint(&self) -> String {
        use sha2::Digest as _;
        if self.auth_tokens.is_empty() {
            return String::new();
        }
        let mut hash = sha2::Sha256::new();
        for token in &self.auth_tokens {
            hash.update(token.as_bytes());
            hash.update([0u8]);
        }
        hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for TransitSecurity {
    // Hand-written: a logged record must never show a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitSecurity")
            .field("transit_encryption", &self.transit_encryption)
            .field("transit_mode", &self.transit_mode)
            .field("auth_tokens", &self.auth_tokens.len())
            .field("auth_token_last_modified_millis", &self.auth_token_last_modified_millis)
            .field("auth_token_status", &self.auth_token_status)
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingChanges {
    pub num_nodes: Option<u32>,
    pub node_ids_to_remove: Vec<String>,
    pub node_type: Option<String>,
    pub engine_version: Option<String>,
}

impl PendingChanges {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheNodeRecord {
    pub node_id: String,
    /// creating, available, rebooting, deleting, ...
    pub status: String,
    pub zone: String,
    pub address: String,
    /// 0 until the node first starts; kept across restarts so the endpoint never changes.
    pub port: u16,
    pub created_millis: i64,
    /// in-sync, or pending-reboot when a static parameter changed.
    pub parameter_status: String,
    /// A reboot was requested and has not happened yet.
    pub reboot_requested: bool,
    /// The node goes away (scale-in) once the reconciler has stopped it.
    pub remove_requested: bool,
    /// The node's process died (or was left without a replica to promote): the reconciler
    /// replaces it in place, empty, as AWS replaces a failed node.
    #[serde(default)]
    pub recover_requested: bool,
    /// The parameter values the running process was given or has applied since.
    pub applied_parameters: Vec<(String, String)>,
    /// The memory limit the running process has (it follows the node type).
    #[serde(default)]
    pub applied_max_memory: u64,
    /// The transit encryption mode the running process was started with (empty: none).
    #[serde(default)]
    pub applied_transit_mode: String,
    /// [`TransitSecurity::auth_fingerprint`] of the tokens the running process accepts.
    #[serde(default)]
    pub applied_auth: String,
}

/// Why a read-modify-write did not happen.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// The change itself refused (nothing was written).
    Rejected(E),
    Store(StoreError),
}

/// A cluster with its nodes, as read in one go.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheCluster {
    pub scope: Scope,
    pub cluster: CacheClusterRecord,
    pub nodes: Vec<CacheNodeRecord>,
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) async fn write_cluster(
    tx: &mut sqlx::SqliteConnection,
    scope: &Scope,
    cluster: &CacheClusterRecord,
    nodes: &[CacheNodeRecord],
) -> Result<()> {
    crate::versions::write_document(tx, "cache_clusters", scope, &cluster.id, encode(cluster)?).await?;
    sqlx::query("DELETE FROM cache_nodes WHERE region = ? AND account = ? AND cluster_id = ?")
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&cluster.id)
        .execute(&mut *tx)
        .await?;
    for node in nodes {
        sqlx::query("INSERT INTO cache_nodes (region, account, cluster_id, node_id, data) VALUES (?, ?, ?, ?, ?)")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&cluster.id)
            .bind(&node.node_id)
            .bind(encode(node)?)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Which clusters a read takes. Each is one range of an index (the primary key, or the
/// replication group's), so its cost follows what it returns, not what the store holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clusters<'a> {
    /// Every cluster of every scope (the reconciler's pass).
    All,
    /// Every cluster written after version `since`, up to `until` (see `versions`).
    Changed {
        since: i64,
        until: i64,
    },
    Scope(&'a Scope),
    One(&'a Scope, &'a str),
    /// The members of one replication group.
    Group(&'a Scope, &'a str),
    /// The members of every replication group of the scope.
    Members(&'a Scope),
    /// Up to `limit` clusters in id order from `start` on.
    Page {
        scope: &'a Scope,
        start: Start<'a>,
        limit: usize,
        standalone_only: bool,
    },
}

/// Where a page of clusters starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    First,
    /// At this id (a marker names the first cluster of its page).
    At(&'a str),
    /// Just past this id.
    After(&'a str),
}

pub(crate) async fn read_clusters(conn: &mut sqlx::SqliteConnection, which: Clusters<'_>) -> Result<Vec<CacheCluster>> {
    const SCOPE: &str = "region = ? AND account = ?";
    let (filter, key, limit): (String, Option<&str>, i64) = match which {
        Clusters::All => ("1".into(), None, -1),
        Clusters::Changed { .. } => ("version > ? AND version <= ?".into(), None, -1),
        Clusters::Scope(_) => (SCOPE.into(), None, -1),
        Clusters::One(_, id) => (format!("{SCOPE} AND id = ?"), Some(id), -1),
        Clusters::Group(_, group) => (format!("{SCOPE} AND replication_group_id = ?"), Some(group), -1),
        Clusters::Members(_) => (format!("{SCOPE} AND replication_group_id IS NOT NULL"), None, -1),
        Clusters::Page { start, limit, standalone_only, .. } => {
            let mut filter = SCOPE.to_string();
            let key = match start {
                Start::First => None,
                Start::At(id) => {
                    filter.push_str(" AND id >= ?");
                    Some(id)
                }
                Start::After(id) => {
                    filter.push_str(" AND id > ?");
                    Some(id)
                }
            };
            if standalone_only {
                filter.push_str(" AND replication_group_id IS NULL");
            }
            (filter, key, i64::try_from(limit).unwrap_or(i64::MAX))
        }
    };
    // The clusters are chosen (and limited) first, then joined with their nodes: one
    // statement, so a cluster and its nodes are read as of the same moment.
    let sql = format!(
        "SELECT c.region, c.account, c.id, c.data, n.data AS node
         FROM (SELECT region, account, id, data FROM cache_clusters WHERE {filter}
               ORDER BY region, account, id LIMIT ?) c
         LEFT JOIN cache_nodes n ON n.region = c.region AND n.account = c.account AND n.cluster_id = c.id
         ORDER BY c.region, c.account, c.id, n.node_id"
    );
    let mut query = sqlx::query(&sql);
    if let Clusters::Scope(scope)
    | Clusters::One(scope, _)
    | Clusters::Group(scope, _)
    | Clusters::Members(scope)
    | Clusters::Page { scope, .. } = which
    {
        query = query.bind(&scope.region).bind(&scope.account);
    }
    if let Clusters::Changed { since, until } = which {
        query = query.bind(since).bind(until);
    }
    if let Some(key) = key {
        query = query.bind(key);
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    let mut clusters: Vec<CacheCluster> = Vec::new();
    let mut last: Option<(&str, &str, &str)> = None;
    for row in &rows {
        let key: (&str, &str, &str) = (row.get(0), row.get(1), row.get(2));
        // Rows of one cluster follow each other, one per node: its document is decoded once.
        if last != Some(key) {
            let scope = Scope { region: key.0.to_string(), account: key.1.to_string() };
            clusters.push(CacheCluster { scope, cluster: decode(row.get(3))?, nodes: Vec::new() });
            last = Some(key);
        }
        if let (Some(node), Some(current)) = (row.get::<Option<&str>, _>(4), clusters.last_mut()) {
            current.nodes.push(decode(node)?);
        }
    }
    Ok(clusters)
}

impl Tx {
    /// Creates a cluster with its nodes and tags; fails when the id is taken or `quota`
    /// clusters exist already in the scope.
    pub async fn create_cache_cluster(
        &mut self,
        scope: &Scope,
        cluster: &CacheClusterRecord,
        nodes: &[CacheNodeRecord],
        arn: &str,
        tags: &[TagRecord],
        quota: usize,
    ) -> Result<()> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cache_clusters WHERE region = ? AND account = ?")
            .bind(&scope.region)
            .bind(&scope.account)
            .fetch_one(&mut **self)
            .await?;
        if count as usize >= quota {
            return Err(StoreError::QuotaExceeded(quota));
        }
        sqlx::query("INSERT INTO cache_clusters (region, account, id, data) VALUES (?, ?, ?, '{}')")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&cluster.id)
            .execute(&mut **self)
            .await
            .map_err(StoreError::from_insert)?;
        write_cluster(self, scope, cluster, nodes).await?;
        insert_tags(self, arn, tags).await
    }

    pub async fn cache_cluster(&mut self, scope: &Scope, id: &str) -> Result<Option<CacheCluster>> {
        Ok(read_clusters(self, Clusters::One(scope, id)).await?.into_iter().next())
    }

    pub async fn cache_clusters(&mut self, scope: &Scope) -> Result<Vec<CacheCluster>> {
        read_clusters(self, Clusters::Scope(scope)).await
    }

    /// How many cache nodes the scope has, and will have once the changes waiting for the
    /// maintenance window are applied: what its node quota counts. Counted by index.
    pub async fn count_cache_nodes(&mut self, scope: &Scope) -> Result<usize> {
        let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cache_nodes WHERE region = ? AND account = ?")
            .bind(&scope.region)
            .bind(&scope.account)
            .fetch_one(&mut **self)
            .await?;
        let pending: i64 = sqlx::query_scalar(&format!("{PENDING_ADDITIONS} AND c.region = ? AND c.account = ?"))
            .bind(&scope.region)
            .bind(&scope.account)
            .fetch_one(&mut **self)
            .await?;
        Ok(usize::try_from(nodes + pending).unwrap_or(0))
    }

    /// [`Tx::count_cache_nodes`] of every scope together (the machine's capacity check).
    pub async fn count_all_cache_nodes(&mut self) -> Result<usize> {
        let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cache_nodes").fetch_one(&mut **self).await?;
        let pending: i64 = sqlx::query_scalar(PENDING_ADDITIONS).fetch_one(&mut **self).await?;
        Ok(usize::try_from(nodes + pending).unwrap_or(0))
    }

    /// Read-modify-write of one cluster: `change` returns the events to record with the
    /// change, or an error to change nothing. `Ok(None)`: no such cluster.
    pub async fn update_cache_cluster<E>(
        &mut self,
        scope: &Scope,
        id: &str,
        change: impl FnOnce(&mut CacheClusterRecord, &mut Vec<CacheNodeRecord>) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<CacheCluster>, UpdateError<E>> {
        let Some(mut current) = self.cache_cluster(scope, id).await? else { return Ok(None) };
        let events = change(&mut current.cluster, &mut current.nodes).map_err(UpdateError::Rejected)?;
        self.put_cache_cluster(scope, &current.cluster, &current.nodes).await?;
        self.record_events(scope, &events).await?;
        Ok(Some(current))
    }

    /// Writes a cluster and its nodes as they are now.
    pub async fn put_cache_cluster(
        &mut self,
        scope: &Scope,
        cluster: &CacheClusterRecord,
        nodes: &[CacheNodeRecord],
    ) -> Result<()> {
        write_cluster(self, scope, cluster, nodes).await
    }
}

impl Store {
    pub async fn cache_cluster(&self, scope: &Scope, id: &str) -> Result<Option<CacheCluster>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_clusters(&mut conn, Clusters::One(scope, id)).await?.into_iter().next())
    }

    /// The clusters of a scope, by id.
    pub async fn cache_clusters(&self, scope: &Scope) -> Result<Vec<CacheCluster>> {
        let mut conn = self.pool.acquire().await?;
        read_clusters(&mut conn, Clusters::Scope(scope)).await
    }

    /// [`Store::cache_cluster`] for Describe: none or one, shared, answered from memory
    /// while the store has not changed since it was last read.
    pub async fn cache_cluster_shared(&self, scope: &Scope, id: &str) -> Result<Arc<Vec<CacheCluster>>> {
        self.shared
            .clusters(scope, ClusterRead::One(id.to_string()), async || {
                let mut conn = self.pool.acquire().await?;
                read_clusters(&mut conn, Clusters::One(scope, id)).await
            })
            .await
    }

    /// Up to `limit` clusters of a scope in id order from `start` on (a page of Describe),
    /// only those in no replication group when `standalone_only`; shared, answered from
    /// memory while the store has not changed since it was last read.
    pub async fn cache_clusters_page(
        &self,
        scope: &Scope,
        start: Start<'_>,
        limit: usize,
        standalone_only: bool,
    ) -> Result<Arc<Vec<CacheCluster>>> {
        self.shared
            .clusters(scope, ClusterRead::page(start, limit, standalone_only), async || {
                let mut conn = self.pool.acquire().await?;
                read_clusters(&mut conn, Clusters::Page { scope, start, limit, standalone_only }).await
            })
            .await
    }

    /// The ids of a scope's clusters, read from the key alone (no document decoded).
    pub async fn cache_cluster_ids(&self, scope: &Scope) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM cache_clusters WHERE region = ? AND account = ? ORDER BY id")
            .bind(&scope.region)
            .bind(&scope.account)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The clusters that name `group` as theirs (the group itself may be gone already).
    pub async fn replication_group_members(&self, scope: &Scope, group: &str) -> Result<Vec<CacheCluster>> {
        let mut conn = self.pool.acquire().await?;
        read_clusters(&mut conn, Clusters::Group(scope, group)).await
    }

    /// Every cluster of every scope (for the reconciler).
    pub async fn all_cache_clusters(&self) -> Result<Vec<CacheCluster>> {
        let mut conn = self.pool.acquire().await?;
        read_clusters(&mut conn, Clusters::All).await
    }

    /// Read-modify-write of one cluster in a transaction of its own, so that the API and
    /// the reconciler never overwrite each other's changes. See [`Tx::update_cache_cluster`].
    ///
    /// A change that changes nothing and records no event (the reconciler's periodic pass
    /// over a settled cluster) takes no write transaction: it is tried on the cluster as
    /// read, and only a change that does something is made under the write lock, on the
    /// cluster as it is then (`change` runs again only if it moved meanwhile). Writes are
    /// then what the store's readers see move, not every pass over every cluster.
    pub async fn update_cache_cluster<E>(
        &self,
        scope: &Scope,
        id: &str,
        mut change: impl FnMut(
            &mut CacheClusterRecord,
            &mut Vec<CacheNodeRecord>,
        ) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<CacheCluster>, UpdateError<E>> {
        let Some(read) = self.cache_cluster(scope, id).await? else { return Ok(None) };
        let mut tried = read.clone();
        let events = change(&mut tried.cluster, &mut tried.nodes).map_err(UpdateError::Rejected)?;
        if events.is_empty() && tried == read {
            return Ok(Some(read));
        }
        self.write(async |tx| {
            let Some(current) = tx.cache_cluster(scope, id).await? else { return Ok(None) };
            if current != read {
                return tx.update_cache_cluster(scope, id, change).await;
            }
            tx.put_cache_cluster(scope, &tried.cluster, &tried.nodes).await?;
            tx.record_events(scope, &events).await?;
            Ok(Some(tried))
        })
        .await
    }

    /// Removes a cluster, its nodes and its tags, recording `events`. A member's group
    /// changes with it (see `versions::stamp`): its members are read from theirs.
    pub async fn delete_cache_cluster(&self, scope: &Scope, id: &str, arn: &str, events: &[EventRecord]) -> Result<()> {
        let mut tx = self.begin().await?;
        let group: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT replication_group_id FROM cache_clusters WHERE region = ? AND account = ? AND id = ?",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        crate::delete_resource(&mut tx, "cache_clusters", "id", scope, id, arn, events).await?;
        if let Some((Some(group),)) = group {
            crate::versions::stamp(&mut tx, "replication_groups", scope, &group).await?;
        }
        tx.commit().await
    }
}
