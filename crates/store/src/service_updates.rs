//! Service updates published through the admin API (one document per update, per scope)
//! and update actions (one document per service update and cluster or group, with the
//! update status of each of its nodes). The catalog's updates are not stored: they are
//! `model`'s data.

use model::service_updates::ServiceUpdate;
use serde::{Deserialize, Serialize};

use crate::cache_clusters::encode;
use crate::{Result, Scope, Store, Tx};

/// One node's place in an update action, as DescribeUpdateActions reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeUpdateRecord {
    pub cache_cluster_id: String,
    pub node_id: String,
    /// The shard, for a replication group's member.
    pub node_group_id: Option<String>,
    /// A NodeUpdateStatus: waiting-to-start, in-progress, complete, stopped, ...
    pub status: String,
    pub initiated_millis: Option<i64>,
    pub start_millis: Option<i64>,
    pub end_millis: Option<i64>,
    pub modified_millis: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateActionRecord {
    pub service_update_name: String,
    pub replication_group_id: Option<String>,
    pub cache_cluster_id: Option<String>,
    /// An UpdateActionStatus.
    pub status: String,
    pub status_modified_millis: i64,
    /// In the order they are updated: replicas first, the primary last.
    pub nodes: Vec<NodeUpdateRecord>,
}

impl UpdateActionRecord {
    /// The document's key: one action per service update and cluster or group.
    pub fn key(&self) -> String {
        match (&self.replication_group_id, &self.cache_cluster_id) {
            (Some(group), _) => format!("{}|replication-group|{group}", self.service_update_name),
            (None, cluster) => {
                format!("{}|cache-cluster|{}", self.service_update_name, cluster.as_deref().unwrap_or_default())
            }
        }
    }
}

async fn put(conn: &mut sqlx::SqliteConnection, table: &str, scope: &Scope, name: &str, data: String) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {table} (region, account, name, data) VALUES (?, ?, ?, ?)
         ON CONFLICT (region, account, name) DO UPDATE SET data = excluded.data"
    ))
    .bind(&scope.region)
    .bind(&scope.account)
    .bind(name)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Tx {
    pub async fn update_actions(&mut self, scope: &Scope) -> Result<Vec<UpdateActionRecord>> {
        Ok(crate::read_documents(self, "update_actions", Some(scope), None)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    /// Writes an action as it is now.
    pub async fn put_update_action(&mut self, scope: &Scope, action: &UpdateActionRecord) -> Result<()> {
        put(self, "update_actions", scope, &action.key(), encode(action)?).await
    }
}

impl Store {
    /// Publishes (or replaces) a service update in a scope.
    pub async fn publish_service_update(&self, scope: &Scope, update: &ServiceUpdate) -> Result<()> {
        let mut tx = self.begin().await?;
        put(&mut tx, "service_updates", scope, &update.name, encode(update)?).await?;
        tx.commit().await
    }

    /// The updates published in a scope, by name.
    pub async fn published_service_updates(&self, scope: &Scope) -> Result<Vec<ServiceUpdate>> {
        let mut conn = self.pool.acquire().await?;
        Ok(crate::read_documents(&mut conn, "service_updates", Some(scope), None)
            .await?
            .into_iter()
            .map(|(_, u)| u)
            .collect())
    }

    pub async fn update_actions(&self, scope: &Scope) -> Result<Vec<UpdateActionRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(crate::read_documents(&mut conn, "update_actions", Some(scope), None)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    /// The actions of every scope the reconciler has to move on.
    pub async fn active_update_actions(&self) -> Result<Vec<(Scope, UpdateActionRecord)>> {
        let mut conn = self.pool.acquire().await?;
        let all: Vec<(Scope, UpdateActionRecord)> =
            crate::read_documents(&mut conn, "update_actions", None, None).await?;
        Ok(all
            .into_iter()
            .filter(|(_, a)| model::service_updates::action::ACTIVE.contains(&a.status.as_str()))
            .collect())
    }

    pub async fn update_action(&self, scope: &Scope, key: &str) -> Result<Option<UpdateActionRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(crate::read_documents(&mut conn, "update_actions", Some(scope), Some(key))
            .await?
            .into_iter()
            .next()
            .map(|(_, a)| a))
    }

    /// Read-modify-write of one action; `Ok(None)`: no such action.
    pub async fn change_update_action(
        &self,
        scope: &Scope,
        key: &str,
        change: impl FnOnce(&mut UpdateActionRecord),
    ) -> Result<Option<UpdateActionRecord>> {
        let mut tx = self.begin().await?;
        let found: Option<UpdateActionRecord> =
            crate::read_documents(&mut tx, "update_actions", Some(scope), Some(key))
                .await?
                .into_iter()
                .next()
                .map(|(_, a)| a);
        let Some(mut action) = found else { return Ok(None) };
        change(&mut action);
        put(&mut tx, "update_actions", scope, key, encode(&action)?).await?;
        tx.commit().await?;
        Ok(Some(action))
    }
}
