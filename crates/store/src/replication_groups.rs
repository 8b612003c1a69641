//! Replication groups: the group's document, and its member clusters (ordinary cache
//! clusters that name the group) read and written together.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::cache_clusters::{Clusters, decode, encode, read_clusters, write_cluster};
use crate::{CacheCluster, EventRecord, Result, Scope, Store, StoreError, TagRecord, Tx, UpdateError, insert_tags};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationGroupRecord {
    pub id: String,
    pub description: String,
    /// creating, available, modifying, deleting, ...
    pub status: String,
    pub engine: String,
    pub node_type: String,
    pub automatic_failover: bool,
    pub multi_az: bool,
    /// The member cluster that is primary now.
    pub primary_cluster_id: String,
    /// Member cluster ids in creation order.
    pub members: Vec<String>,
    pub snapshot_retention_limit: i32,
    pub snapshot_window: String,
    pub snapshotting_cluster_id: Option<String>,
    pub created_millis: i64,
    pub port: u16,
    /// Observed by the reconciler: the ports of the emulator-served endpoints.
    pub primary_endpoint_port: Option<u16>,
    pub reader_endpoint_port: Option<u16>,
    /// On delete: the primary stays as a standalone cluster.
    pub retain_primary_on_delete: bool,
    /// A failover the reconciler must carry out (cluster mode disabled).
    #[serde(default)]
    pub failover_to: Option<FailoverRequest>,
    /// When TestFailover was called (AWS limits how often).
    #[serde(default)]
    pub test_failovers: Vec<i64>,
    /// `enabled` or `compatible` for a sharded group on Redis Cluster; `disabled` (or
    /// empty, in groups stored before cluster mode existed) otherwise.
    #[serde(default)]
    pub cluster_mode: String,
    /// Cluster mode: the shards, with the slots each should own.
    #[serde(default)]
    pub node_groups: Vec<NodeGroupRecord>,
    /// Observed by the reconciler: the cluster-mode configuration endpoint's port.
    #[serde(default)]
    pub configuration_endpoint_port: Option<u16>,
    /// Cluster mode: a slot migration under way.
    #[serde(default)]
    pub resharding: Option<ReshardingProgress>,
    /// Cluster mode: the snapshot whose keys are spread over the shards once the cluster
    /// is up (each shard's members start empty).
    #[serde(default)]
    pub restore_from: Option<String>,
    /// Cluster mode seeded from SnapshotArns: every file named (restore_from is the first).
    #[serde(default)]
    pub restore_arns: Vec<String>,
    /// AtRestEncryptionEnabled: the group's snapshot files are stored encrypted.
    #[serde(default)]
    pub at_rest_encryption: bool,
    /// The KmsKeyId given at creation, as given (recorded and shown; the files use the
    /// state dir's own key).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// TLS and AUTH token, for every member.
    #[serde(default)]
    pub security: crate::TransitSecurity,
    /// User groups (RBAC) whose users are the ACL of every node.
    #[serde(default)]
    pub user_group_ids: Vec<String>,
    /// The memory each node may hold, instead of its node type's: a serverless cache's data
    /// storage limit shared out over its shards.
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    /// Online migration from a customer's Redis OSS / Valkey (StartMigration, TestMigration).
    #[serde(default)]
    pub migration: Option<MigrationRecord>,
    /// The global datastore this group is a member of (its role is the datastore's to say).
    #[serde(default)]
    pub global_replication_group_id: Option<String>,
}

/// An online migration into a group, for the reconciler to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// The source's address (a name or an IPv4 address) and port, as given.
    pub address: String,
    pub port: u16,
    pub phase: MigrationPhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationPhase {
    /// TestMigration: only whether the source can be replicated from; the group is untouched.
    Testing,
    /// The primary replicates from the source (status `migrating`).
    Migrating,
    /// CompleteMigration: the primary stops replicating once in sync, or at once with `force`.
    Completing { force: bool },
}

impl ReplicationGroupRecord {
    pub fn cluster_enabled(&self) -> bool {
        matches!(self.cluster_mode.as_str(), "enabled" | "compatible")
    }

    /// The node group a cluster-mode member is the primary of.
    pub fn node_group_led_by(&self, cluster_id: &str) -> Option<&NodeGroupRecord> {
        self.node_groups.iter().find(|g| g.primary_cluster_id == cluster_id)
    }
}

/// One shard of a cluster-mode group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeGroupRecord {
    /// `0001`, `0002`, ...
    pub id: String,
    /// The slot ranges (inclusive) this shard should own; empty for a shard being removed.
    pub slots: Vec<(u16, u16)>,
    /// The member cluster that is this shard's primary now.
    pub primary_cluster_id: String,
    /// A failover of this shard the reconciler must carry out.
    pub failover_to: Option<FailoverRequest>,
    /// The shard goes away once its slots have moved to the others.
    pub removing: bool,
}

/// A failover asked for: to the best replica (automatic failover, TestFailover), or to a
/// given member (a switch-over with PrimaryClusterId). Stored as the member's id, and the
/// empty string for the best one, as rows written before this type existed have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FailoverRequest {
    BestReplica,
    To(String),
}

impl FailoverRequest {
    /// The member asked for, if one was.
    pub fn target(&self) -> Option<&str> {
        match self {
            FailoverRequest::BestReplica => None,
            FailoverRequest::To(member) => Some(member),
        }
    }
}

impl From<String> for FailoverRequest {
    fn from(member: String) -> Self {
        if member.is_empty() { FailoverRequest::BestReplica } else { FailoverRequest::To(member) }
    }
}

impl From<FailoverRequest> for String {
    fn from(request: FailoverRequest) -> Self {
        request.target().unwrap_or_default().to_string()
    }
}

/// How far a slot migration has got, as AWS reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReshardingProgress {
    pub slots_moved: u32,
    pub slots_to_move: u32,
}

impl ReshardingProgress {
    pub fn percentage(&self) -> f64 {
        if self.slots_to_move == 0 { 0.0 } else { 100.0 * f64::from(self.slots_moved) / f64::from(self.slots_to_move) }
    }
}

/// A group with its member clusters, as read in one go.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationGroup {
    pub scope: Scope,
    pub group: ReplicationGroupRecord,
    pub members: Vec<CacheCluster>,
}

pub(crate) async fn read_groups(
    conn: &mut sqlx::SqliteConnection,
    scope: Option<&Scope>,
    id: Option<&str>,
) -> Result<Vec<ReplicationGroup>> {
    let records = read_group_records(&mut *conn, scope, id).await?;
    // Members by index: one group's, or those of every group read.
    let clusters = match (scope, id) {
        (Some(scope), Some(id)) => read_clusters(&mut *conn, Clusters::Group(scope, id)).await?,
        (Some(scope), None) => read_clusters(&mut *conn, Clusters::Members(scope)).await?,
        (None, _) => read_clusters(&mut *conn, Clusters::All).await?,
    };
    let mut members_of: HashMap<(Scope, String), Vec<CacheCluster>> = HashMap::new();
    for cluster in clusters {
        if let Some(group) = cluster.cluster.replication_group_id.clone() {
            members_of.entry((cluster.scope.clone(), group)).or_default().push(cluster);
        }
    }
    Ok(records
        .into_iter()
        .map(|(scope, group)| {
            let members = members_of.remove(&(scope.clone(), group.id.clone())).unwrap_or_default();
            ReplicationGroup { scope, group, members }
        })
        .collect())
}

/// The groups' own records (of one scope, one id, or all), without their members.
async fn read_group_records(
    conn: &mut sqlx::SqliteConnection,
    scope: Option<&Scope>,
    id: Option<&str>,
) -> Result<Vec<(Scope, ReplicationGroupRecord)>> {
    let filter = match (scope, id) {
        (None, None) => "1",
        (None, Some(_)) => "id = ?",
        (Some(_), None) => "region = ? AND account = ?",
        (Some(_), Some(_)) => "region = ? AND account = ? AND id = ?",
    };
    let sql =
        format!("SELECT region, account, data FROM replication_groups WHERE {filter} ORDER BY region, account, id");
    let mut query = sqlx::query(&sql);
    if let Some(scope) = scope {
        query = query.bind(&scope.region).bind(&scope.account);
    }
    if let Some(id) = id {
        query = query.bind(id);
    }
    let rows = query.fetch_all(conn).await?;
    rows.into_iter()
        .map(|row| Ok((Scope { region: row.get("region"), account: row.get("account") }, decode(row.get("data"))?)))
        .collect()
}

async fn write_group(tx: &mut sqlx::SqliteConnection, scope: &Scope, group: &ReplicationGroupRecord) -> Result<()> {
    crate::versions::write_document(tx, "replication_groups", scope, &group.id, encode(group)?).await
}

impl Tx {
    /// Creates a group and its member clusters. Fails with [`StoreError::AlreadyExists`]
    /// when the group exists, [`StoreError::MemberExists`] when a member's cluster id is
    /// taken (but by the PrimaryClusterId it adopts), [`StoreError::QuotaExceeded`] past
    /// `quota` groups.
    pub async fn create_replication_group(
        &mut self,
        group: &ReplicationGroup,
        arn: &str,
        tags: &[TagRecord],
        quota: usize,
    ) -> Result<()> {
        let scope = &group.scope;
        let tx: &mut sqlx::SqliteConnection = self;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM replication_groups WHERE region = ? AND account = ?")
            .bind(&scope.region)
            .bind(&scope.account)
            .fetch_one(&mut *tx)
            .await?;
        if count as usize >= quota {
            return Err(StoreError::QuotaExceeded(quota));
        }
        sqlx::query("INSERT INTO replication_groups (region, account, id, data) VALUES (?, ?, ?, '{}')")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&group.group.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_insert)?;
        write_group(tx, scope, &group.group).await?;
        for member in &group.members {
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM cache_clusters WHERE region = ? AND account = ? AND id = ?")
                    .bind(&scope.region)
                    .bind(&scope.account)
                    .bind(&member.cluster.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            // A member may be an existing cluster the group adopts (PrimaryClusterId).
            if taken.is_some() && member.cluster.id != group.group.primary_cluster_id {
                return Err(StoreError::MemberExists(member.cluster.id.clone()));
            }
            write_cluster(tx, scope, &member.cluster, &member.nodes).await?;
        }
        insert_tags(tx, arn, tags).await
    }

    pub async fn replication_group(&mut self, scope: &Scope, id: &str) -> Result<Option<ReplicationGroup>> {
        Ok(read_groups(self, Some(scope), Some(id)).await?.into_iter().next())
    }

    /// Read-modify-write of a group and its members. Members the change adds are created;
    /// members it drops from the list are left as they are (the reconciler deletes members
    /// through their own status). `Ok(None)`: no such group.
    pub async fn update_replication_group<E>(
        &mut self,
        scope: &Scope,
        id: &str,
        change: impl FnOnce(&mut ReplicationGroupRecord, &mut Vec<CacheCluster>) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<ReplicationGroup>, UpdateError<E>> {
        let Some(mut current) = self.replication_group(scope, id).await? else { return Ok(None) };
        let events = change(&mut current.group, &mut current.members).map_err(UpdateError::Rejected)?;
        self.put_replication_group(&current).await?;
        self.record_events(scope, &events).await?;
        Ok(Some(current))
    }

    /// Writes a group and its members as they are now.
    pub async fn put_replication_group(&mut self, group: &ReplicationGroup) -> Result<()> {
        write_group(self, &group.scope, &group.group).await?;
        for member in &group.members {
            write_cluster(self, &group.scope, &member.cluster, &member.nodes).await?;
        }
        Ok(())
    }
}

impl Store {
    pub async fn replication_group(&self, scope: &Scope, id: &str) -> Result<Option<ReplicationGroup>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_groups(&mut conn, Some(scope), Some(id)).await?.into_iter().next())
    }

    /// The groups of a scope, by id.
    pub async fn replication_groups(&self, scope: &Scope) -> Result<Vec<ReplicationGroup>> {
        let mut conn = self.pool.acquire().await?;
        read_groups(&mut conn, Some(scope), None).await
    }

    /// Every group of every scope (for the reconciler).
    pub async fn all_replication_groups(&self) -> Result<Vec<ReplicationGroup>> {
        let mut conn = self.pool.acquire().await?;
        read_groups(&mut conn, None, None).await
    }

    /// Every group's own record, without its members: reading those too is reading every
    /// member cluster of the store, most of the cost when only the groups' fields matter.
    pub async fn all_replication_group_records(&self) -> Result<Vec<(Scope, ReplicationGroupRecord)>> {
        let mut conn = self.pool.acquire().await?;
        read_group_records(&mut conn, None, None).await
    }

    /// [`Tx::update_replication_group`] in a transaction of its own.
    ///
    /// A change that changes nothing and records no event writes nothing (no transaction,
    /// no wake-up of the store's watchers), as for clusters: the reconciler's passes make
    /// such changes of every steady group.
    pub async fn update_replication_group<E>(
        &self,
        scope: &Scope,
        id: &str,
        mut change: impl FnMut(
            &mut ReplicationGroupRecord,
            &mut Vec<CacheCluster>,
        ) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<ReplicationGroup>, UpdateError<E>> {
        let Some(read) = self.replication_group(scope, id).await? else { return Ok(None) };
        let mut tried = read.clone();
        let events = change(&mut tried.group, &mut tried.members).map_err(UpdateError::Rejected)?;
        if events.is_empty() && tried == read {
            return Ok(Some(read));
        }
        self.write(async |tx| {
            let Some(current) = tx.replication_group(scope, id).await? else { return Ok(None) };
            if current != read {
                return tx.update_replication_group(scope, id, change).await;
            }
            tx.put_replication_group(&tried).await?;
            tx.record_events(scope, &events).await?;
            Ok(Some(tried))
        })
        .await
    }

    /// Removes a group (its members must be gone or released already) and its tags.
    pub async fn delete_replication_group(
        &self,
        scope: &Scope,
        id: &str,
        arn: &str,
        events: &[EventRecord],
    ) -> Result<()> {
        self.delete_resource("replication_groups", "id", scope, id, arn, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_requests_are_stored_as_rows_before_they_had_a_type() {
        let best: Option<FailoverRequest> = serde_json::from_str("\"\"").unwrap();
        assert_eq!(best, Some(FailoverRequest::BestReplica));
        let to: FailoverRequest = serde_json::from_str("\"g-002\"").unwrap();
        assert_eq!(to, FailoverRequest::To("g-002".into()));
        assert_eq!(serde_json::to_string(&FailoverRequest::BestReplica).unwrap(), "\"\"");
        assert_eq!(serde_json::to_string(&to).unwrap(), "\"g-002\"");
    }
}
