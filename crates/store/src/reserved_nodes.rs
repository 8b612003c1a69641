//! Reserved cache nodes: one JSON document per reservation, keyed by its id. A reservation
//! copies its offering's terms (prices, duration) at purchase, as AWS keeps them; its state
//! is not stored but follows from its times (see `operations::reserved_nodes`).

use serde::{Deserialize, Serialize};

use crate::cache_clusters::encode;
use crate::{Result, Scope, Store, StoreError, TagRecord, Tx, insert_tags};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedCacheNodeRecord {
    pub id: String,
    pub offering_id: String,
    pub node_type: String,
    /// Seconds.
    pub duration: i32,
    pub fixed_price: f64,
    pub usage_price: f64,
    /// None: the offering charges `usage_price` per hour used instead (legacy Medium and
    /// Light Utilization).
    pub recurring_hourly: Option<f64>,
    pub node_count: i32,
    pub product_description: String,
    pub offering_type: String,
    pub start_millis: i64,
    /// When the emulator's admin API ended the reservation before its term.
    #[serde(default)]
    pub retired_millis: Option<i64>,
}

async fn read(
    conn: &mut sqlx::SqliteConnection,
    scope: Option<&Scope>,
    id: Option<&str>,
) -> Result<Vec<(Scope, ReservedCacheNodeRecord)>> {
    crate::read_documents(conn, "reserved_cache_nodes", scope, id).await
}

impl Tx {
    /// Records a purchase with its tags; [`StoreError::AlreadyExists`] when the id is taken.
    pub async fn create_reserved_cache_node(
        &mut self,
        scope: &Scope,
        node: &ReservedCacheNodeRecord,
        arn: &str,
        tags: &[TagRecord],
    ) -> Result<()> {
        sqlx::query("INSERT INTO reserved_cache_nodes (region, account, name, data) VALUES (?, ?, ?, ?)")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&node.id)
            .bind(encode(node)?)
            .execute(&mut **self)
            .await
            .map_err(StoreError::from_insert)?;
        insert_tags(self, arn, tags).await
    }

    pub async fn reserved_cache_nodes(&mut self, scope: &Scope) -> Result<Vec<ReservedCacheNodeRecord>> {
        Ok(read(self, Some(scope), None).await?.into_iter().map(|(_, r)| r).collect())
    }
}

impl Store {
    pub async fn reserved_cache_node(&self, scope: &Scope, id: &str) -> Result<Option<ReservedCacheNodeRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read(&mut conn, Some(scope), Some(id)).await?.into_iter().next().map(|(_, r)| r))
    }

    /// Every reservation of the scope, by id.
    pub async fn reserved_cache_nodes(&self, scope: &Scope) -> Result<Vec<ReservedCacheNodeRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read(&mut conn, Some(scope), None).await?.into_iter().map(|(_, r)| r).collect())
    }

    /// Every reservation named `id`, in any scope (for the admin API).
    pub async fn reserved_cache_nodes_named(&self, id: &str) -> Result<Vec<(Scope, ReservedCacheNodeRecord)>> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn, None, Some(id)).await
    }

    /// Ends a reservation at `millis` unless it ended already; `Ok(None)`: no such
    /// reservation.
    pub async fn retire_reserved_cache_node(
        &self,
        scope: &Scope,
        id: &str,
        millis: i64,
    ) -> Result<Option<ReservedCacheNodeRecord>> {
        let mut tx = self.begin().await?;
        let Some((_, mut node)) = read(&mut tx, Some(scope), Some(id)).await?.into_iter().next() else {
            return Ok(None);
        };
        if node.retired_millis.is_none() {
            node.retired_millis = Some(millis);
            sqlx::query("UPDATE reserved_cache_nodes SET data = ? WHERE region = ? AND account = ? AND name = ?")
                .bind(encode(&node)?)
                .bind(&scope.region)
                .bind(&scope.account)
                .bind(&node.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ReservedCacheNodeRecord {
        ReservedCacheNodeRecord {
            id: id.into(),
            offering_id: "0443a27b-4da5-4b90-b92d-929fbd7abed2".into(),
            node_type: "cache.m3.2xlarge".into(),
            duration: 31_536_000,
            fixed_price: 1772.0,
            usage_price: 0.0,
            recurring_hourly: Some(0.25),
            node_count: 2,
            product_description: "redis".into(),
            offering_type: "Heavy Utilization".into(),
            start_millis: 1_000,
            retired_millis: None,
        }
    }

    async fn write(
        store: &Store,
        scope: &Scope,
        id: &str,
        tags: &[TagRecord],
    ) -> std::result::Result<(), crate::UpdateError<()>> {
        store
            .write(async |tx| Ok(tx.create_reserved_cache_node(scope, &record(id), &format!("arn:{id}"), tags).await?))
            .await
    }

    #[tokio::test]
    async fn purchases_are_kept_per_scope_and_retired_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite")).await.expect("open");
        let east = Scope { region: "us-east-1".into(), account: "000000000000".into() };
        let west = Scope { region: "us-west-2".into(), account: "000000000000".into() };
        let tags = [TagRecord { key: "team".into(), value: "cache".into() }];
        write(&store, &east, "ri-a", &tags).await.expect("first purchase");
        write(&store, &west, "ri-a", &tags).await.expect("same id in another region");
        assert!(matches!(
            write(&store, &east, "ri-a", &tags).await,
            Err(crate::UpdateError::Store(StoreError::AlreadyExists))
        ));
        assert_eq!(store.reserved_cache_nodes(&east).await.expect("list"), [record("ri-a")]);
        assert_eq!(store.reserved_cache_nodes_named("ri-a").await.expect("named").len(), 2);
        assert_eq!(store.list_tags("arn:ri-a").await.expect("tags"), tags);

        let retired = store.retire_reserved_cache_node(&east, "ri-a", 5_000).await.expect("retire").expect("found");
        assert_eq!(retired.retired_millis, Some(5_000));
        let again = store.retire_reserved_cache_node(&east, "ri-a", 9_000).await.expect("retire").expect("found");
        assert_eq!(again.retired_millis, Some(5_000), "retired once");
        assert_eq!(store.retire_reserved_cache_node(&east, "nope", 1).await.expect("retire"), None);
        assert_eq!(store.reserved_cache_node(&west, "ri-a").await.expect("get").and_then(|r| r.retired_millis), None);

        store.reset().await.expect("reset");
        assert!(store.reserved_cache_nodes(&east).await.expect("list").is_empty());
    }
}
