//! The SQLite repository: the single source of truth for every resource.
//!
//! # Layout
//! - [`Store`]: opening (WAL, migrations from `migrations/`), reset.
//! - `tx`: [`Tx`], one write transaction under the write lock, and [`Store::write`], which
//!   runs an API call's reads, checks and writes in one.
//! - `parameter_groups`, `subnet_groups`, `security_groups`, `tags`, `cache_clusters`,
//!   `replication_groups`, `global` (global datastores), `serverless`, `snapshots`, `users`
//!   (users and user groups),
//!   `reserved_nodes`, `events`: one module
//!   per resource family, each a set of `impl Tx` methods (reads and writes inside a write)
//!   and `impl Store` methods (reads, and a write on its own) over plain records.
//! - `versions`: which clusters and groups were written since a version, for the
//!   reconciler's passes over changes.
//!
//! Every state change is one transaction, and writers are serialised by one lock: what a
//! write read is what it changes. "Create the same name concurrently" has exactly one
//! winner, and a check inside a write cannot be overtaken by another writer.

mod cache_clusters;
mod events;
mod global;
mod parameter_groups;
mod replication_groups;
mod reserved_nodes;
mod security_groups;
mod serverless;
mod service_updates;
mod shared;
mod snapshots;
mod subnet_groups;
mod tags;
mod tx;
mod users;
mod versions;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{Mutex, watch};

pub use cache_clusters::{
    CacheCluster, CacheClusterRecord, CacheNodeRecord, PendingChanges, Start, TransitSecurity, UpdateError,
};
pub use events::{EVENT_RETENTION_MILLIS, EventFilter, EventRecord, now_millis};
pub use global::{GlobalMemberKey, GlobalMemberRecord, GlobalReplicationGroupRecord, GlobalRole};
pub use parameter_groups::ParameterGroupRecord;
pub use replication_groups::{
    FailoverRequest, MigrationPhase, MigrationRecord, NodeGroupRecord, ReplicationGroup, ReplicationGroupRecord,
    ReshardingProgress,
};
pub use reserved_nodes::ReservedCacheNodeRecord;
pub use security_groups::{Ec2Authorization, SecurityGroupRecord};
pub use serverless::{MigrationStage, ServerlessCacheRecord, ServerlessMigration, UsageLimit};
pub use service_updates::{NodeUpdateRecord, UpdateActionRecord};
pub use snapshots::{NodeSnapshotRecord, SnapshotRecord};
pub use subnet_groups::{SubnetGroupRecord, SubnetRecord};
pub use tags::TagRecord;
pub use tx::Tx;
pub use users::{User, UserGroup, UserGroupRecord, UserRecord};
pub use versions::Versions;

pub use model::Scope;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("cache cluster {0} already exists")]
    MemberExists(String),
    #[error("quota of {0} exceeded")]
    QuotaExceeded(usize),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::AlreadyExists`].
    fn from_insert(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::AlreadyExists,
            _ => Self::Database(error),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Connections for reads, which run in parallel (WAL)…
const CONNECTIONS: u32 = 8;
/// …of a [`Store::with_own_reads`] (the API's: its reads mostly hit kept answers)…
const OWN_READ_CONNECTIONS: u32 = 4;
/// …and for writes, one at a time under the write lock. Their own, so a writer holding the
/// lock never waits for a connection behind a thousand reconciles' reads (waits of over 2 s
/// at a thousand nodes, with every other writer queued behind it). Two, so the next writer
/// need not wait for the previous one's connection to go back to its pool.
const WRITE_CONNECTIONS: u32 = 2;

pub struct Store {
    pool: SqlitePool,
    /// How `pool` was opened, for [`Store::with_own_reads`].
    options: SqliteConnectOptions,
    /// Connections for write transactions only (see [`WRITE_CONNECTIONS`]).
    writers: SqlitePool,
    /// Held for the whole of every write transaction (see [`Tx`]).
    write_lock: Arc<Mutex<()>>,
    /// Bumped at the end of every write transaction: what waits for a change to settle
    /// reads again when it moves, instead of polling.
    changes: Arc<watch::Sender<u64>>,
    /// Reads answered again from memory until the next write (see `shared`).
    shared: Arc<shared::SharedReads>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = open_pool(&options, CONNECTIONS).await?;
        sqlx::migrate!("../../migrations").run(&pool).await?;
        let writers = open_pool(&options, WRITE_CONNECTIONS).await?;
        Ok(Self {
            pool,
            options,
            writers,
            write_lock: Arc::default(),
            changes: Arc::new(watch::Sender::new(0)),
            shared: Arc::default(),
        })
    }

    /// The same store, reading through connections of its own: the API's, so that a
    /// client's read never queues behind the reconciler's (while a thousand nodes started
    /// again after a kill -9, a Describe page waited up to 5.3 s for a connection). Writes,
    /// the write lock, the change signal and the kept reads are shared with `self`.
    pub async fn with_own_reads(&self) -> Result<Self> {
        Ok(Self {
            pool: open_pool(&self.options, OWN_READ_CONNECTIONS).await?,
            options: self.options.clone(),
            writers: self.writers.clone(),
            write_lock: self.write_lock.clone(),
            changes: self.changes.clone(),
            shared: self.shared.clone(),
        })
    }

    /// Moves after every write transaction (whatever it wrote): read what you wait for
    /// again each time it does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Deletes every resource of every scope.
    pub async fn reset(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        for table in [
            "events",
            "reserved_cache_nodes",
            "service_updates",
            "update_actions",
            "user_group_members",
            "user_groups",
            "users",
            "snapshots",
            "serverless_caches",
            "global_replication_groups",
            "replication_groups",
            "cache_nodes",
            "cache_clusters",
            "tags",
            "cache_parameter_values",
            "cache_parameter_groups",
            "cache_subnets",
            "cache_subnet_groups",
            "cache_security_group_ingress",
            "cache_security_groups",
        ] {
            sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The JSON documents of a `(region, account, name, data)` table, by scope and name (None:
/// any), in key order.
async fn read_documents<T: serde::de::DeserializeOwned>(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    scope: Option<&Scope>,
    name: Option<&str>,
) -> Result<Vec<(Scope, T)>> {
    use sqlx::Row;
    // Only the conditions that apply, so that each read is one range of the primary key
    // (`? IS NULL OR ...` would make SQLite scan the whole table).
    let filter = match (scope, name) {
        (None, None) => "1",
        (None, Some(_)) => "name = ?",
        (Some(_), None) => "region = ? AND account = ?",
        (Some(_), Some(_)) => "region = ? AND account = ? AND name = ?",
    };
    let sql = format!("SELECT region, account, data FROM {table} WHERE {filter} ORDER BY region, account, name");
    let mut query = sqlx::query(&sql);
    if let Some(scope) = scope {
        query = query.bind(&scope.region).bind(&scope.account);
    }
    if let Some(name) = name {
        query = query.bind(name);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            let scope = Scope { region: row.get("region"), account: row.get("account") };
            Ok((scope, cache_clusters::decode(row.get("data"))?))
        })
        .collect()
}

/// Inserts `tags` for `arn` inside an ongoing transaction (used by every Create).
async fn insert_tags(tx: &mut sqlx::SqliteConnection, arn: &str, tags: &[TagRecord]) -> Result<()> {
    for tag in tags {
        sqlx::query("INSERT INTO tags (arn, key, value) VALUES (?, ?, ?) ON CONFLICT (arn, key) DO UPDATE SET value = excluded.value")
            .bind(arn)
            .bind(&tag.key)
            .bind(&tag.value)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// [`delete_resource`] in a transaction of its own.
    async fn delete_resource(
        &self,
        table: &str,
        key_column: &str,
        scope: &Scope,
        key: &str,
        arn: &str,
        events: &[EventRecord],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        delete_resource(&mut tx, table, key_column, scope, key, arn, events).await?;
        tx.commit().await
    }
}

/// Deletes the resource `key` of a scoped table (`key_column` names it) with its tags and
/// records `events`; [`StoreError::NotFound`] when absent. Rows that belong to it go with
/// it (`ON DELETE CASCADE`).
async fn delete_resource(
    tx: &mut sqlx::SqliteConnection,
    table: &str,
    key_column: &str,
    scope: &Scope,
    key: &str,
    arn: &str,
    events: &[EventRecord],
) -> Result<()> {
    let deleted = sqlx::query(&format!("DELETE FROM {table} WHERE region = ? AND account = ? AND {key_column} = ?"))
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    delete_tags(tx, arn).await?;
    events::insert_events(tx, scope, events).await
}

async fn delete_tags(tx: &mut sqlx::SqliteConnection, arn: &str) -> Result<()> {
    sqlx::query("DELETE FROM tags WHERE arn = ?").bind(arn).execute(&mut *tx).await?;
    Ok(())
}

/// A pool of `size` connections, every one opened here, one after another, and kept:
/// opening one sets the journal mode, which needs a lock that a concurrent writer could hold.
async fn open_pool(options: &SqliteConnectOptions, size: u32) -> Result<SqlitePool> {
    let pool = SqlitePoolOptions::new()
        .max_connections(size)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.clone())
        .await?;
    let mut warm = Vec::new();
    for _ in 0..size {
        warm.push(pool.acquire().await?);
    }
    drop(warm);
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's reads go on while every read connection of the reconciler's store is taken
    /// (a thousand reconciles reading at once).
    #[tokio::test]
    async fn a_store_with_its_own_reads_does_not_wait_for_the_others_connections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reconciler = Store::open(&dir.path().join("store.sqlite")).await.expect("open");
        let api = reconciler.with_own_reads().await.expect("own reads");
        let scope = Scope { region: "us-east-1".into(), account: "000000000000".into() };
        let mut taken = Vec::new();
        for _ in 0..CONNECTIONS {
            taken.push(reconciler.pool.acquire().await.expect("a read connection"));
        }
        let event = EventRecord::new("cache-cluster", "busy", "written while every read connection is taken");
        reconciler.record_events(&scope, &[event]).await.expect("writes have their own connections");
        let filter = EventFilter::default();
        let read = tokio::time::timeout(Duration::from_secs(10), api.events(&scope, &filter));
        let read = read.await.expect("the API's read waits for nothing");
        assert_eq!(read.expect("read").len(), 1);
        drop(taken);
    }
}
