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
    /// An online migration into the cache (PrepareMigration … CompleteMigration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<ServerlessMigration>,
}

/// An online migration from a customer's Valkey or Redis OSS into a serverless cache, for
/// the reconciler to carry out. It exists from PrepareMigration until the cutover is done
/// (or the preparation failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerlessMigration {
    /// The source's address (a name or an IPv4 address) and port, as given.
    pub address: String,
    pub port: u16,
    /// SourceAuthenticationConfiguration's secret, as given.
    pub secret_arn: Option<String>,
    /// The PEM certificate authority the source's TLS certificate is checked against
    /// (SourceTlsMode `verify-ca`); None: the source speaks plain RESP.
    pub tls_ca: Option<String>,
    pub phase: MigrationStage,
    /// AutoCutover: the cutover happens by itself once the data is in sync.
    pub auto_cutover: bool,
}

/// Where a serverless migration stands. Its wire name (`MigrationSummary.Status`) is
/// [`MigrationStage::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationStage {
    /// PrepareMigration: the source and the cache are being checked (cache `modifying`).
    Preparing,
    /// Checked; the cache's endpoint serves the source. Waiting for StartMigration.
    Prepared,
    /// StartMigration: the data is being copied and then followed. `clear`: the cache's data
    /// is deleted first (ClearTargetCacheData); `started`: the copy has begun (after a
    /// restart of the emulator it begins again on a cleared cache).
    Syncing { clear: bool, started: bool },
    /// The copy is done and the source's changes are applied as they come.
    InSync,
    /// CompleteMigration (or AutoCutover): at the next moment the cache holds all the
    /// source holds, the endpoint switches to the cache (cache `modifying`). `force`: at
    /// once, in sync or not.
    CuttingOver { force: bool },
    /// StopMigration: no more copying; the endpoint still serves the source.
    Stopped,
    /// The data sync could not start or broke (an event says why); StartMigration again.
    Failed,
}

impl MigrationStage {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Prepared => "prepared",
            Self::Syncing { .. } => "syncing",
            Self::InSync => "in-sync",
            Self::CuttingOver { .. } => "cutting-over",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    /// Whether the cache's endpoint sends clients to the source in this stage.
    pub fn serves_source(&self) -> bool {
        !matches!(self, Self::Preparing)
    }

    /// Whether data flows from the source into the cache in this stage.
    pub fn syncing(&self) -> bool {
        matches!(self, Self::Syncing { .. } | Self::InSync | Self::CuttingOver { .. })
    }
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
