//! What changed since the reconciler last looked: every write of a cluster or a group
//! stamps its row with the next version of its table (`migrations/0011_versions.sql`,
//! counted in `write_versions`, `0012`, so a version is never handed out twice), so
//! a pass over changes reads the rows written since, by index, at a cost that follows the
//! changes rather than what the store holds. A deleted member leaves no row to read, so
//! its group's row is stamped instead ([`stamp`]).

use sqlx::Row;

use crate::cache_clusters::{Clusters, read_clusters};
use crate::replication_groups::read_groups;
use crate::{CacheCluster, ReplicationGroup, Result, Scope, Store};

/// The latest versions written, of clusters and of groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    pub clusters: i64,
    pub groups: i64,
}

/// Writes the document of the row `(scope, id)` of `table` (`cache_clusters` or
/// `replication_groups`), stamped with the table's next version.
pub(crate) async fn write_document(
    conn: &mut sqlx::SqliteConnection,
    table: &'static str,
    scope: &Scope,
    id: &str,
    data: String,
) -> Result<()> {
    let version = next_version(conn, table).await?;
    sqlx::query(&format!(
        "INSERT INTO {table} (region, account, id, data, version) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (region, account, id) DO UPDATE SET data = excluded.data, version = excluded.version"
    ))
    .bind(&scope.region)
    .bind(&scope.account)
    .bind(id)
    .bind(data)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stamps the row `(scope, id)` of `table`, if there is one, as written now, its document
/// unchanged: a change a pass over changes must see that no write of the row made.
pub(crate) async fn stamp(
    conn: &mut sqlx::SqliteConnection,
    table: &'static str,
    scope: &Scope,
    id: &str,
) -> Result<()> {
    let version = next_version(conn, table).await?;
    sqlx::query(&format!("UPDATE {table} SET version = ? WHERE region = ? AND account = ? AND id = ?"))
        .bind(version)
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn next_version(conn: &mut sqlx::SqliteConnection, table: &'static str) -> Result<i64> {
    let (version,): (i64,) =
        sqlx::query_as("UPDATE write_versions SET version = version + 1 WHERE name = ? RETURNING version")
            .bind(table)
            .fetch_one(conn)
            .await?;
    Ok(version)
}

impl Store {
    /// The versions of the latest writes. Writes commit in version order (under the write
    /// lock), so every row at or below these is readable now; a write under way shows
    /// later, above them.
    pub async fn versions(&self) -> Result<Versions> {
        let row = sqlx::query(
            "SELECT (SELECT version FROM write_versions WHERE name = 'cache_clusters'),
                    (SELECT version FROM write_versions WHERE name = 'replication_groups')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Versions { clusters: row.get(0), groups: row.get(1) })
    }

    /// The clusters and groups written after `since`, up to `until` (groups with their
    /// members).
    pub async fn changed(
        &self,
        since: Versions,
        until: Versions,
    ) -> Result<(Vec<CacheCluster>, Vec<ReplicationGroup>)> {
        let mut conn = self.pool.acquire().await?;
        let clusters =
            read_clusters(&mut conn, Clusters::Changed { since: since.clusters, until: until.clusters }).await?;
        let keys: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT region, account, id FROM replication_groups WHERE version > ? AND version <= ?
             ORDER BY region, account, id",
        )
        .bind(since.groups)
        .bind(until.groups)
        .fetch_all(&mut *conn)
        .await?;
        let mut groups = Vec::with_capacity(keys.len());
        for (region, account, id) in keys {
            groups.extend(read_groups(&mut conn, Some(&Scope { region, account }), Some(&id)).await?);
        }
        Ok((clusters, groups))
    }

    /// How many nodes the store knows.
    pub async fn cache_node_count(&self) -> Result<usize> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cache_nodes").fetch_one(&self.pool).await?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Every node the store knows, as (scope, cluster id, node id), without reading the
    /// clusters' documents.
    pub async fn cache_node_keys(&self) -> Result<Vec<(Scope, String, String)>> {
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT region, account, cluster_id, node_id FROM cache_nodes")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(region, account, cluster, node)| (Scope { region, account }, cluster, node))
            .collect())
    }
}
