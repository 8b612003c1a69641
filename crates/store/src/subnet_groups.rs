//! Cache subnet groups: metadata only; each subnet is pinned to one simulated zone.

use sqlx::Row;

use sqlx::SqliteConnection;

use crate::{Result, Scope, Store, StoreError, TagRecord, Tx, delete_resource, insert_tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetGroupRecord {
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub subnets: Vec<SubnetRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetRecord {
    pub subnet_id: String,
    pub availability_zone: String,
}

/// How a write treats an existing group of the same name.
enum Upsert {
    Create { quota: usize },
    CreateIfMissing,
    Replace,
}

impl Store {
    pub async fn create_subnet_group(
        &self,
        scope: &Scope,
        group: &SubnetGroupRecord,
        arn: &str,
        tags: &[TagRecord],
        quota: usize,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        write_subnet_group(&mut tx, scope, group, Some((arn, tags)), Upsert::Create { quota }).await?;
        tx.commit().await
    }

    /// Creates the scope's `default` group unless it exists.
    pub async fn ensure_default_subnet_group(&self, scope: &Scope, group: &SubnetGroupRecord) -> Result<()> {
        let mut tx = self.begin().await?;
        write_subnet_group(&mut tx, scope, group, None, Upsert::CreateIfMissing).await?;
        tx.commit().await
    }

    pub async fn subnet_group(&self, scope: &Scope, name: &str) -> Result<Option<SubnetGroupRecord>> {
        Ok(read_groups(&mut *self.pool.acquire().await?, scope, Some(name)).await?.into_iter().next())
    }

    /// Every group of the scope, by name.
    pub async fn subnet_groups(&self, scope: &Scope) -> Result<Vec<SubnetGroupRecord>> {
        read_groups(&mut *self.pool.acquire().await?, scope, None).await
    }
}

impl Tx {
    pub async fn subnet_group(&mut self, scope: &Scope, name: &str) -> Result<Option<SubnetGroupRecord>> {
        Ok(read_groups(self, scope, Some(name)).await?.into_iter().next())
    }

    /// Replaces the description and subnets of an existing group.
    pub async fn update_subnet_group(&mut self, scope: &Scope, group: &SubnetGroupRecord) -> Result<()> {
        write_subnet_group(self, scope, group, None, Upsert::Replace).await
    }

    pub async fn delete_subnet_group(&mut self, scope: &Scope, name: &str, arn: &str) -> Result<()> {
        delete_resource(self, "cache_subnet_groups", "name", scope, name, arn, &[]).await
    }
}

async fn write_subnet_group(
    tx: &mut SqliteConnection,
    scope: &Scope,
    group: &SubnetGroupRecord,
    tags: Option<(&str, &[TagRecord])>,
    mode: Upsert,
) -> Result<()> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM cache_subnet_groups WHERE region = ? AND account = ? AND name = ?")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&group.name)
            .fetch_optional(&mut *tx)
            .await?;
    match (&mode, exists.is_some()) {
        (Upsert::CreateIfMissing, true) => return Ok(()),
        (Upsert::Create { .. }, true) => return Err(StoreError::AlreadyExists),
        (Upsert::Replace, false) => return Err(StoreError::NotFound),
        (Upsert::Create { quota }, false) => {
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM cache_subnet_groups WHERE region = ? AND account = ?")
                    .bind(&scope.region)
                    .bind(&scope.account)
                    .fetch_one(&mut *tx)
                    .await?;
            if count as usize >= *quota {
                return Err(StoreError::QuotaExceeded(*quota));
            }
        }
        _ => {}
    }
    sqlx::query(
        "INSERT INTO cache_subnet_groups (region, account, name, description, vpc_id) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (region, account, name) DO UPDATE SET description = excluded.description",
    )
    .bind(&scope.region)
    .bind(&scope.account)
    .bind(&group.name)
    .bind(&group.description)
    .bind(&group.vpc_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM cache_subnets WHERE region = ? AND account = ? AND group_name = ?")
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&group.name)
        .execute(&mut *tx)
        .await?;
    for (position, subnet) in group.subnets.iter().enumerate() {
        sqlx::query(
                "INSERT OR IGNORE INTO cache_subnets (region, account, group_name, subnet_id, availability_zone, position) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&group.name)
            .bind(&subnet.subnet_id)
            .bind(&subnet.availability_zone)
            .bind(position as i64)
            .execute(&mut *tx)
            .await?;
    }
    if let Some((arn, tags)) = tags {
        insert_tags(tx, arn, tags).await?;
    }
    Ok(())
}

async fn read_groups(conn: &mut SqliteConnection, scope: &Scope, name: Option<&str>) -> Result<Vec<SubnetGroupRecord>> {
    let rows = sqlx::query(
        "SELECT g.name, g.description, g.vpc_id, s.subnet_id, s.availability_zone
             FROM cache_subnet_groups g
             LEFT JOIN cache_subnets s ON s.region = g.region AND s.account = g.account AND s.group_name = g.name
             WHERE g.region = ? AND g.account = ? AND (? IS NULL OR g.name = ?)
             ORDER BY g.name, s.position",
    )
    .bind(&scope.region)
    .bind(&scope.account)
    .bind(name)
    .bind(name)
    .fetch_all(conn)
    .await?;
    let mut groups: Vec<SubnetGroupRecord> = Vec::new();
    for row in rows {
        let name: String = row.get("name");
        if groups.last().is_none_or(|g| g.name != name) {
            groups.push(SubnetGroupRecord {
                name,
                description: row.get("description"),
                vpc_id: row.get("vpc_id"),
                subnets: Vec::new(),
            });
        }
        if let (Some(subnet_id), Some(group)) = (row.get::<Option<String>, _>("subnet_id"), groups.last_mut()) {
            group.subnets.push(SubnetRecord { subnet_id, availability_zone: row.get("availability_zone") });
        }
    }
    Ok(groups)
}
