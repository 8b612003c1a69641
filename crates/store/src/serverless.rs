//! Serverless caches: the cache's own document. What holds its data is an ordinary
//! replication group (and its snapshots ordinary snapshots) under a backing id, see
//! `model::names::serverless_backing`.

use crate::cache_clusters::encode;
use crate::events::insert_events;
use crate::{EventRecord, Result, Scope, Store, StoreError, TagRecord, Tx, UpdateError, insert_tags};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerlessCacheRecord {
    pub name: String,
    pub description: String,
    /// creating, available, modifying, deleting, create-failed.
    pub status: String,
    pub engine: String,
    pub major_engine_version: String,
    pub full_engine_version: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub kms_key_id: Option<String>,
    pub user_group_id: Option<String>,
    pub snapshot_retention_limit: i32,
    pub daily_snapshot_time: String,
    pub data_storage: Option<UsageLimit>,
    pub ecpu_per_second: Option<UsageLimit>,
    pub created_millis: i64,
    /// Observed by the reconciler: the ports of the emulator-served endpoints.
    pub endpoint_port: Option<u16>,
    pub reader_endpoint_port: Option<u16>,
}

/// A CacheUsageLimits bound pair, as given (absent values stay absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLimit {
    pub minimum: Option<i32>,
    pub maximum: Option<i32>,
}

async fn read(
    conn: &mut sqlx::SqliteConnection,
    scope: Option<&Scope>,
    name: Option<&str>,
) -> Result<Vec<(Scope, ServerlessCacheRecord)>> {
    crate::read_documents(conn, "serverless_caches", scope, name).await
}

impl Tx {
    /// Creates a serverless cache record (with its tags and `events`); at most `quota` per
    /// scope ([`StoreError::QuotaExceeded`]).
    pub async fn create_serverless_cache(
        &mut self,
        scope: &Scope,
        cache: &ServerlessCacheRecord,
        arn: &str,
        tags: &[TagRecord],
        quota: usize,
    ) -> Result<()> {
        if self.serverless_caches(scope).await?.len() >= quota {
            return Err(StoreError::QuotaExceeded(quota));
        }
        sqlx::query("INSERT INTO serverless_caches (region, account, name, data) VALUES (?, ?, ?, ?)")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&cache.name)
            .bind(encode(cache)?)
            .execute(&mut **self)
            .await
            .map_err(StoreError::from_insert)?;
        insert_tags(self, arn, tags).await
    }

    pub async fn serverless_cache(&mut self, scope: &Scope, name: &str) -> Result<Option<ServerlessCacheRecord>> {
        Ok(read(self, Some(scope), Some(name)).await?.into_iter().next().map(|(_, c)| c))
    }

    pub async fn serverless_caches(&mut self, scope: &Scope) -> Result<Vec<ServerlessCacheRecord>> {
        Ok(read(self, Some(scope), None).await?.into_iter().map(|(_, c)| c).collect())
    }

    /// Read-modify-write of one serverless cache. `Ok(None)`: no such cache.
    pub async fn update_serverless_cache<E>(
        &mut self,
        scope: &Scope,
        name: &str,
        change: impl FnOnce(&mut ServerlessCacheRecord) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<ServerlessCacheRecord>, UpdateError<E>> {
        let Some(mut cache) = self.serverless_cache(scope, name).await? else { return Ok(None) };
        let events = change(&mut cache).map_err(UpdateError::Rejected)?;
        sqlx::query("UPDATE serverless_caches SET data = ? WHERE region = ? AND account = ? AND name = ?")
            .bind(encode(&cache)?)
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&cache.name)
            .execute(&mut **self)
            .await?;
        insert_events(self, scope, &events).await?;
        Ok(Some(cache))
    }

    /// Deletes a serverless cache record with its tags, recording `events`.
    pub async fn delete_serverless_cache(
        &mut self,
        scope: &Scope,
        name: &str,
        arn: &str,
        events: &[EventRecord],
    ) -> Result<()> {
        crate::delete_resource(self, "serverless_caches", "name", scope, name, arn, events).await
    }
}

impl Store {
    pub async fn serverless_cache(&self, scope: &Scope, name: &str) -> Result<Option<ServerlessCacheRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read(&mut conn, Some(scope), Some(name)).await?.into_iter().next().map(|(_, c)| c))
    }

    pub async fn serverless_caches(&self, scope: &Scope) -> Result<Vec<ServerlessCacheRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read(&mut conn, Some(scope), None).await?.into_iter().map(|(_, c)| c).collect())
    }

    /// Every serverless cache of every scope (for the reconciler).
    pub async fn all_serverless_caches(&self) -> Result<Vec<(Scope, ServerlessCacheRecord)>> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn, None, None).await
    }

    /// [`Tx::update_serverless_cache`] in a transaction of its own.
    pub async fn update_serverless_cache<E>(
        &self,
        scope: &Scope,
        name: &str,
        change: impl FnOnce(&mut ServerlessCacheRecord) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<ServerlessCacheRecord>, UpdateError<E>> {
        self.write(async |tx| tx.update_serverless_cache(scope, name, change).await).await
    }
}
