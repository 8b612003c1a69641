//! Cache parameter groups and the values users set in them.

use sqlx::Row;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use crate::{Result, Scope, Store, StoreError, TagRecord, Tx, delete_resource, insert_tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterGroupRecord {
    pub name: String,
    pub family: String,
    pub description: String,
    /// AWS's `default.*` groups: present in every region, read-only.
    pub is_default: bool,
}

async fn read_group(conn: &mut SqliteConnection, scope: &Scope, name: &str) -> Result<Option<ParameterGroupRecord>> {
    let row = sqlx::query("SELECT * FROM cache_parameter_groups WHERE region = ? AND account = ? AND name = ?")
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(record))
}

impl Tx {
    pub async fn parameter_group(&mut self, scope: &Scope, name: &str) -> Result<Option<ParameterGroupRecord>> {
        read_group(self, scope, name).await
    }

    pub async fn delete_parameter_group(&mut self, scope: &Scope, name: &str, arn: &str) -> Result<()> {
        delete_resource(self, "cache_parameter_groups", "name", scope, name, arn, &[]).await
    }
}

fn record(row: &SqliteRow) -> ParameterGroupRecord {
    ParameterGroupRecord {
        name: row.get("name"),
        family: row.get("family"),
        description: row.get("description"),
        is_default: row.get::<i64, _>("is_default") != 0,
    }
}

impl Store {
    /// Creates the default groups of a scope that do not exist yet.
    pub async fn ensure_default_parameter_groups(&self, scope: &Scope, groups: &[ParameterGroupRecord]) -> Result<()> {
        let mut tx = self.begin().await?;
        for group in groups {
            sqlx::query(
                "INSERT OR IGNORE INTO cache_parameter_groups (region, account, name, family, description, is_default) VALUES (?, ?, ?, ?, ?, 1)",
            )
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&group.name)
            .bind(&group.family)
            .bind(&group.description)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Creates a user group with its tags; fails when the name is taken or `quota` user
    /// groups exist already.
    pub async fn create_parameter_group(
        &self,
        scope: &Scope,
        group: &ParameterGroupRecord,
        arn: &str,
        tags: &[TagRecord],
        quota: usize,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM cache_parameter_groups WHERE region = ? AND account = ? AND is_default = 0",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .fetch_one(&mut *tx)
        .await?;
        if count as usize >= quota {
            return Err(StoreError::QuotaExceeded(quota));
        }
        sqlx::query(
            "INSERT INTO cache_parameter_groups (region, account, name, family, description, is_default) VALUES (?, ?, ?, ?, ?, 0)",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&group.name)
        .bind(&group.family)
        .bind(&group.description)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_insert)?;
        insert_tags(&mut tx, arn, tags).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn parameter_group(&self, scope: &Scope, name: &str) -> Result<Option<ParameterGroupRecord>> {
        read_group(&mut *self.pool.acquire().await?, scope, name).await
    }

    /// Every group of the scope, by name.
    pub async fn parameter_groups(&self, scope: &Scope) -> Result<Vec<ParameterGroupRecord>> {
        let rows = sqlx::query("SELECT * FROM cache_parameter_groups WHERE region = ? AND account = ? ORDER BY name")
            .bind(&scope.region)
            .bind(&scope.account)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// The values a user set in a group, by parameter name.
    pub async fn parameter_values(&self, scope: &Scope, group: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT name, value FROM cache_parameter_values WHERE region = ? AND account = ? AND group_name = ? ORDER BY name",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(group)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get("name"), r.get("value"))).collect())
    }

    /// The values nodes of group `name` run with (family defaults, a default group's
    /// built-in values, then the user's; see [`model::parameters::effective`]); None when
    /// the group does not exist or its family is unknown to `catalog`.
    pub async fn effective_parameters(
        &self,
        scope: &Scope,
        name: &str,
        catalog: &model::Catalog,
    ) -> Result<Option<Vec<(String, String)>>> {
        let Some(group) = self.parameter_group(scope, name).await? else { return Ok(None) };
        let user_values = self.parameter_values(scope, &group.name).await?;
        Ok(model::parameters::effective(catalog, &group.family, &group.name, group.is_default, user_values))
    }

    /// Sets `values` in one transaction.
    pub async fn set_parameter_values(&self, scope: &Scope, group: &str, values: &[(String, String)]) -> Result<()> {
        let mut tx = self.begin().await?;
        for (name, value) in values {
            sqlx::query(
                "INSERT INTO cache_parameter_values (region, account, group_name, name, value) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (region, account, group_name, name) DO UPDATE SET value = excluded.value",
            )
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(group)
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
                _ => StoreError::Database(e),
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Back to the family's defaults: the named parameters, or all of them when `names` is
    /// `None`.
    pub async fn reset_parameter_values(&self, scope: &Scope, group: &str, names: Option<&[String]>) -> Result<()> {
        let mut tx = self.begin().await?;
        match names {
            None => {
                sqlx::query("DELETE FROM cache_parameter_values WHERE region = ? AND account = ? AND group_name = ?")
                    .bind(&scope.region)
                    .bind(&scope.account)
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(names) => {
                for name in names {
                    sqlx::query(
                        "DELETE FROM cache_parameter_values WHERE region = ? AND account = ? AND group_name = ? AND name = ?",
                    )
                    .bind(&scope.region)
                    .bind(&scope.account)
                    .bind(group)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
