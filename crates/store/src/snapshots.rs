//! Snapshots: one document per snapshot; the RDB files themselves live in the state dir.

use serde::{Deserialize, Serialize};

use crate::cache_clusters::encode;
use crate::events::insert_events;
use crate::{EventRecord, Result, Scope, Store, StoreError, TagRecord, Tx, UpdateError, insert_tags};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub name: String,
    /// creating, available, copying, exporting, deleting.
    pub status: String,
    /// manual or automated.
    pub source: String,
    pub cache_cluster_id: Option<String>,
    pub replication_group_id: Option<String>,
    pub replication_group_description: Option<String>,
    pub automatic_failover: bool,
    pub engine: String,
    pub engine_version: String,
    pub node_type: String,
    pub parameter_group: String,
    pub subnet_group: String,
    pub port: u16,
    pub num_cache_nodes: u32,
    pub preferred_zone: Option<String>,
    pub maintenance_window: String,
    pub snapshot_window: Option<String>,
    pub snapshot_retention_limit: i32,
    pub auto_minor_version_upgrade: bool,
    pub source_created_millis: i64,
    pub created_millis: i64,
    pub nodes: Vec<NodeSnapshotRecord>,
    /// For a copy: the snapshot whose files it copies.
    pub copy_of: Option<String>,
    /// For an export in progress: the bucket the files go to.
    pub export_to: Option<String>,
    /// The cluster or group is deleted once this (final) snapshot is taken.
    pub delete_source_after: bool,
    /// The files are stored encrypted (the source had AtRestEncryptionEnabled, or a
    /// KmsKeyId was given).
    #[serde(default)]
    pub at_rest_encryption: bool,
    /// The KMS key id recorded with it, as AWS shows it.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshotRecord {
    pub cache_cluster_id: String,
    pub node_id: String,
    pub node_group_id: String,
    pub size_bytes: Option<u64>,
    pub node_created_millis: i64,
    pub snapshot_millis: Option<i64>,
    /// Cluster mode: the slots the shard held, in AWS's notation.
    #[serde(default)]
    pub slots: Option<String>,
}

async fn read_snapshots(
    conn: &mut sqlx::SqliteConnection,
    scope: Option<&Scope>,
    name: Option<&str>,
) -> Result<Vec<(Scope, SnapshotRecord)>> {
    crate::read_documents(conn, "snapshots", scope, name).await
}

impl Tx {
    /// Moves the snapshot's source (its replication group, else its cache cluster) from
    /// status `from` to `to`; a source in another status, or gone, is left alone.
    pub async fn mark_snapshot_source(
        &mut self,
        scope: &Scope,
        s: &SnapshotRecord,
        from: &str,
        to: &str,
    ) -> Result<()> {
        if let Some(id) = &s.replication_group_id {
            if let Some(mut group) = self.replication_group(scope, id).await?
                && group.group.status == from
            {
                group.group.status = to.to_string();
                self.put_replication_group(&group).await?;
            }
        } else if let Some(id) = &s.cache_cluster_id
            && let Some(mut cluster) = self.cache_cluster(scope, id).await?
            && cluster.cluster.status == from
        {
            cluster.cluster.status = to.to_string();
            self.put_cache_cluster(scope, &cluster.cluster, &cluster.nodes).await?;
        }
        Ok(())
    }

    /// Creates a snapshot record (and its tags), recording `events`.
    pub async fn create_snapshot(
        &mut self,
        scope: &Scope,
        snapshot: &SnapshotRecord,
        arn: &str,
        tags: &[TagRecord],
        events: &[EventRecord],
    ) -> Result<()> {
        sqlx::query("INSERT INTO snapshots (region, account, name, data) VALUES (?, ?, ?, ?)")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&snapshot.name)
            .bind(encode(snapshot)?)
            .execute(&mut **self)
            .await
            .map_err(StoreError::from_insert)?;
        insert_tags(self, arn, tags).await?;
        insert_events(self, scope, events).await
    }

    pub async fn snapshot(&mut self, scope: &Scope, name: &str) -> Result<Option<SnapshotRecord>> {
        Ok(read_snapshots(self, Some(scope), Some(name)).await?.into_iter().next().map(|(_, s)| s))
    }

    /// The snapshots of a scope, by name.
    pub async fn snapshots(&mut self, scope: &Scope) -> Result<Vec<SnapshotRecord>> {
        Ok(read_snapshots(self, Some(scope), None).await?.into_iter().map(|(_, s)| s).collect())
    }

    /// Read-modify-write of one snapshot. `Ok(None)`: no such snapshot.
    pub async fn update_snapshot<E>(
        &mut self,
        scope: &Scope,
        name: &str,
        change: impl FnOnce(&mut SnapshotRecord) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<SnapshotRecord>, UpdateError<E>> {
        let Some(mut snapshot) = self.snapshot(scope, name).await? else { return Ok(None) };
        let events = change(&mut snapshot).map_err(UpdateError::Rejected)?;
        self.put_snapshot(scope, &snapshot).await?;
        self.record_events(scope, &events).await?;
        Ok(Some(snapshot))
    }

    /// Writes an existing snapshot as it is now.
    pub async fn put_snapshot(&mut self, scope: &Scope, snapshot: &SnapshotRecord) -> Result<()> {
        sqlx::query("UPDATE snapshots SET data = ? WHERE region = ? AND account = ? AND name = ?")
            .bind(encode(snapshot)?)
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&snapshot.name)
            .execute(&mut **self)
            .await?;
        Ok(())
    }
}

impl Store {
    /// [`Tx::mark_snapshot_source`] on its own.
    pub async fn mark_snapshot_source(&self, scope: &Scope, s: &SnapshotRecord, from: &str, to: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.mark_snapshot_source(scope, s, from, to).await?;
        tx.commit().await
    }

    pub async fn snapshot(&self, scope: &Scope, name: &str) -> Result<Option<SnapshotRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_snapshots(&mut conn, Some(scope), Some(name)).await?.into_iter().next().map(|(_, s)| s))
    }

    /// The snapshots of a scope, by name.
    pub async fn snapshots(&self, scope: &Scope) -> Result<Vec<SnapshotRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_snapshots(&mut conn, Some(scope), None).await?.into_iter().map(|(_, s)| s).collect())
    }

    /// Every snapshot of every scope (for the reconciler).
    pub async fn all_snapshots(&self) -> Result<Vec<(Scope, SnapshotRecord)>> {
        let mut conn = self.pool.acquire().await?;
        read_snapshots(&mut conn, None, None).await
    }

    /// [`Tx::update_snapshot`] in a transaction of its own.
    pub async fn update_snapshot<E>(
        &self,
        scope: &Scope,
        name: &str,
        change: impl FnOnce(&mut SnapshotRecord) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<SnapshotRecord>, UpdateError<E>> {
        self.write(async |tx| tx.update_snapshot(scope, name, change).await).await
    }

    pub async fn delete_snapshot(&self, scope: &Scope, name: &str, arn: &str, events: &[EventRecord]) -> Result<()> {
        self.delete_resource("snapshots", "name", scope, name, arn, events).await
    }
}
