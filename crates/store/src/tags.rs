//! Tags, by resource ARN.

use sqlx::Row;

use crate::{Result, Store, StoreError, insert_tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub key: String,
    pub value: String,
}

impl crate::Tx {
    /// Adds `tags` to `arn` inside a write (a resource created with its tags).
    pub async fn tag(&mut self, arn: &str, tags: &[TagRecord]) -> Result<()> {
        insert_tags(self, arn, tags).await
    }
}

impl Store {
    pub async fn list_tags(&self, arn: &str) -> Result<Vec<TagRecord>> {
        let rows = sqlx::query("SELECT key, value FROM tags WHERE arn = ? ORDER BY id")
            .bind(arn)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| TagRecord { key: r.get("key"), value: r.get("value") }).collect())
    }

    /// Adds or overwrites `tags`; fails with [`StoreError::QuotaExceeded`] when the resource
    /// would end up with more than `limit` tags.
    pub async fn add_tags(&self, arn: &str, tags: &[TagRecord], limit: usize) -> Result<Vec<TagRecord>> {
        let mut tx = self.begin().await?;
        insert_tags(&mut tx, arn, tags).await?;
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE arn = ?").bind(arn).fetch_one(&mut *tx).await?;
        if count as usize > limit {
            // Dropping the transaction rolls it back: nothing changes.
            return Err(StoreError::QuotaExceeded(limit));
        }
        tx.commit().await?;
        self.list_tags(arn).await
    }

    /// Removes `keys`; fails with [`StoreError::NotFound`] (and removes nothing) when one
    /// of them is not set.
    pub async fn remove_tags(&self, arn: &str, keys: &[String]) -> Result<Vec<TagRecord>> {
        let mut tx = self.begin().await?;
        let mut seen = std::collections::HashSet::new();
        for key in keys.iter().filter(|k| seen.insert(k.as_str())) {
            let removed = sqlx::query("DELETE FROM tags WHERE arn = ? AND key = ?")
                .bind(arn)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed == 0 {
                return Err(StoreError::NotFound);
            }
        }
        tx.commit().await?;
        self.list_tags(arn).await
    }
}
