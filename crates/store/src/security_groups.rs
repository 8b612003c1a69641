//! Cache security groups (EC2-Classic style): metadata and their EC2 authorizations.

use sqlx::Row;

use crate::{Result, Scope, Store, StoreError, TagRecord, insert_tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupRecord {
    pub name: String,
    pub description: String,
    pub ingress: Vec<Ec2Authorization>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Authorization {
    pub ec2_group_name: String,
    pub ec2_owner_id: String,
}

impl Store {
    /// Creates a group; with `quota: None` an existing group of that name is left as it is
    /// (for the scope's `default` group).
    pub async fn create_security_group(
        &self,
        scope: &Scope,
        name: &str,
        description: &str,
        arn: &str,
        tags: &[TagRecord],
        quota: Option<usize>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Some(quota) = quota {
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM cache_security_groups WHERE region = ? AND account = ?")
                    .bind(&scope.region)
                    .bind(&scope.account)
                    .fetch_one(&mut *tx)
                    .await?;
            if count as usize >= quota {
                return Err(StoreError::QuotaExceeded(quota));
            }
        }
        let verb = if quota.is_some() { "INSERT" } else { "INSERT OR IGNORE" };
        sqlx::query(&format!(
            "{verb} INTO cache_security_groups (region, account, name, description) VALUES (?, ?, ?, ?)"
        ))
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(name)
        .bind(description)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_insert)?;
        insert_tags(&mut tx, arn, tags).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn security_group(&self, scope: &Scope, name: &str) -> Result<Option<SecurityGroupRecord>> {
        Ok(self.security_groups_where(scope, Some(name)).await?.into_iter().next())
    }

    /// Every group of the scope, by name.
    pub async fn security_groups(&self, scope: &Scope) -> Result<Vec<SecurityGroupRecord>> {
        self.security_groups_where(scope, None).await
    }

    async fn security_groups_where(&self, scope: &Scope, name: Option<&str>) -> Result<Vec<SecurityGroupRecord>> {
        let rows = sqlx::query(
            "SELECT g.name, g.description, i.ec2_group_name, i.ec2_owner_id
             FROM cache_security_groups g
             LEFT JOIN cache_security_group_ingress i
               ON i.region = g.region AND i.account = g.account AND i.group_name = g.name
             WHERE g.region = ? AND g.account = ? AND (? IS NULL OR g.name = ?)
             ORDER BY g.name, i.rowid",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(name)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut groups: Vec<SecurityGroupRecord> = Vec::new();
        for row in rows {
            let name: String = row.get("name");
            if groups.last().is_none_or(|g| g.name != name) {
                groups.push(SecurityGroupRecord { name, description: row.get("description"), ingress: Vec::new() });
            }
            if let (Some(ec2_group_name), Some(group)) =
                (row.get::<Option<String>, _>("ec2_group_name"), groups.last_mut())
            {
                group.ingress.push(Ec2Authorization { ec2_group_name, ec2_owner_id: row.get("ec2_owner_id") });
            }
        }
        Ok(groups)
    }

    pub async fn delete_security_group(&self, scope: &Scope, name: &str, arn: &str) -> Result<()> {
        self.delete_resource("cache_security_groups", "name", scope, name, arn, &[]).await
    }

    /// Adds an authorization; [`StoreError::AlreadyExists`] when it is there already,
    /// [`StoreError::NotFound`] when the group is not.
    pub async fn authorize_ingress(&self, scope: &Scope, group: &str, auth: &Ec2Authorization) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO cache_security_group_ingress (region, account, group_name, ec2_group_name, ec2_owner_id) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(group)
        .bind(&auth.ec2_group_name)
        .bind(&auth.ec2_owner_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::from_insert(e),
        })?;
        tx.commit().await
    }

    /// Removes an authorization; [`StoreError::NotFound`] when it is not there.
    pub async fn revoke_ingress(&self, scope: &Scope, group: &str, auth: &Ec2Authorization) -> Result<()> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM cache_security_group_ingress WHERE region = ? AND account = ? AND group_name = ? AND ec2_group_name = ? AND ec2_owner_id = ?",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(group)
        .bind(&auth.ec2_group_name)
        .bind(&auth.ec2_owner_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await
    }
}
