//! Global datastores: one JSON document per global replication group, keyed by account and
//! id (a global datastore spans regions). It names its member groups and their roles; what
//! the members hold (engine, node type, shards) is read from the groups themselves.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::cache_clusters::{decode, encode};
use crate::{Result, Store, StoreError, TagRecord, Tx, UpdateError, insert_tags};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalReplicationGroupRecord {
    pub id: String,
    pub description: String,
    /// creating, primary-only, available, modifying, deleting.
    pub status: String,
    /// The primary first.
    pub members: Vec<GlobalMemberRecord>,
    /// FailoverGlobalReplicationGroup: the member to promote, for the reconciler.
    #[serde(default)]
    pub failover_to: Option<GlobalMemberKey>,
    pub created_millis: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalMemberRecord {
    pub region: String,
    pub replication_group_id: String,
    pub role: GlobalRole,
    /// associating, associated (AWS shows a member leaving as `associated` until it is
    /// gone; the Terraform provider waits on exactly that).
    pub status: String,
    /// DisassociateGlobalReplicationGroup: the member leaves once it replicates no more.
    #[serde(default)]
    pub disassociating: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalRole {
    Primary,
    Secondary,
}

/// A member group, by region and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalMemberKey {
    pub region: String,
    pub replication_group_id: String,
}

impl GlobalReplicationGroupRecord {
    pub fn primary(&self) -> Option<&GlobalMemberRecord> {
        self.members.iter().find(|m| m.role == GlobalRole::Primary)
    }

    pub fn member(&self, region: &str, group: &str) -> Option<&GlobalMemberRecord> {
        self.members.iter().find(|m| m.region == region && m.replication_group_id == group)
    }

    pub fn secondaries(&self) -> impl Iterator<Item = &GlobalMemberRecord> {
        self.members.iter().filter(|m| m.role == GlobalRole::Secondary)
    }
}

async fn read(
    conn: &mut sqlx::SqliteConnection,
    account: Option<&str>,
    id: Option<&str>,
) -> Result<Vec<(String, GlobalReplicationGroupRecord)>> {
    let rows = sqlx::query(
        "SELECT account, data FROM global_replication_groups
         WHERE (? IS NULL OR account = ?) AND (? IS NULL OR name = ?) ORDER BY account, name",
    )
    .bind(account)
    .bind(account)
    .bind(id)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|row| Ok((row.get("account"), decode(row.get("data"))?))).collect()
}

impl Tx {
    pub async fn global_replication_group(
        &mut self,
        account: &str,
        id: &str,
    ) -> Result<Option<GlobalReplicationGroupRecord>> {
        Ok(read(self, Some(account), Some(id)).await?.into_iter().next().map(|(_, g)| g))
    }

    pub async fn global_replication_groups(&mut self, account: &str) -> Result<Vec<GlobalReplicationGroupRecord>> {
        Ok(read(self, Some(account), None).await?.into_iter().map(|(_, g)| g).collect())
    }

    /// Records a new global datastore with its tags; [`StoreError::AlreadyExists`] when the
    /// id is taken.
    pub async fn create_global_replication_group(
        &mut self,
        account: &str,
        group: &GlobalReplicationGroupRecord,
        arn: &str,
        tags: &[TagRecord],
    ) -> Result<()> {
        sqlx::query("INSERT INTO global_replication_groups (account, name, data) VALUES (?, ?, ?)")
            .bind(account)
            .bind(&group.id)
            .bind(encode(group)?)
            .execute(&mut **self)
            .await
            .map_err(StoreError::from_insert)?;
        insert_tags(self, arn, tags).await
    }

    pub async fn put_global_replication_group(
        &mut self,
        account: &str,
        group: &GlobalReplicationGroupRecord,
    ) -> Result<()> {
        sqlx::query("UPDATE global_replication_groups SET data = ? WHERE account = ? AND name = ?")
            .bind(encode(group)?)
            .bind(account)
            .bind(&group.id)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    pub async fn delete_global_replication_group(&mut self, account: &str, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM global_replication_groups WHERE account = ? AND name = ?")
            .bind(account)
            .bind(id)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    /// Applies `change` to the global datastore and writes it back; `Ok(None)`: none such.
    pub async fn update_global_replication_group<E>(
        &mut self,
        account: &str,
        id: &str,
        change: impl FnOnce(&mut GlobalReplicationGroupRecord) -> std::result::Result<(), E>,
    ) -> std::result::Result<Option<GlobalReplicationGroupRecord>, UpdateError<E>> {
        let Some(mut group) = self.global_replication_group(account, id).await? else { return Ok(None) };
        change(&mut group).map_err(UpdateError::Rejected)?;
        self.put_global_replication_group(account, &group).await?;
        Ok(Some(group))
    }
}

impl Store {
    pub async fn global_replication_group(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<GlobalReplicationGroupRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read(&mut conn, Some(account), Some(id)).await?.into_iter().next().map(|(_, g)| g))
    }

    pub async fn global_replication_groups(&self, account: &str) -> Result<Vec<GlobalReplicationGroupRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read(&mut conn, Some(account), None).await?.into_iter().map(|(_, g)| g).collect())
    }

    /// Every global datastore of every account, with its account (for the reconciler).
    pub async fn all_global_replication_groups(&self) -> Result<Vec<(String, GlobalReplicationGroupRecord)>> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn, None, None).await
    }

    pub async fn update_global_replication_group<E>(
        &self,
        account: &str,
        id: &str,
        change: impl FnOnce(&mut GlobalReplicationGroupRecord) -> std::result::Result<(), E>,
    ) -> std::result::Result<Option<GlobalReplicationGroupRecord>, UpdateError<E>> {
        self.write(async |tx| tx.update_global_replication_group(account, id, change).await).await
    }
}
