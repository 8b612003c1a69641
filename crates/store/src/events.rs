//! Events, as DescribeEvents answers them.

use sqlx::Row;

use crate::{Result, Scope, Store, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub source_type: String,
    pub source_identifier: String,
    pub message: String,
    pub date_millis: i64,
}

impl EventRecord {
    pub fn new(source_type: &str, source_identifier: &str, message: impl Into<String>) -> Self {
        Self {
            source_type: source_type.to_string(),
            source_identifier: source_identifier.to_string(),
            message: message.into(),
            date_millis: now_millis(),
        }
    }
}

/// How long events are kept: DescribeEvents shows at most the last 14 days ("Duration …
/// Maximum value: 20160", AWS's DescribeEvents reference), so older ones are deleted.
pub const EVENT_RETENTION_MILLIS: i64 = 14 * 24 * 60 * 60 * 1000;

pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Which events to list; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source_type: Option<String>,
    pub source_identifier: Option<String>,
    pub start_millis: Option<i64>,
    pub end_millis: Option<i64>,
}

pub(crate) async fn insert_events(
    tx: &mut sqlx::SqliteConnection,
    scope: &Scope,
    events: &[EventRecord],
) -> Result<()> {
    for event in events {
        sqlx::query(
            "INSERT INTO events (region, account, source_type, source_identifier, message, date_millis) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&event.source_type)
        .bind(&event.source_identifier)
        .bind(&event.message)
        .bind(event.date_millis)
        .execute(&mut *tx)
        .await?;
        tracing::info!(source = event.source_identifier, message = event.message, "event");
    }
    Ok(())
}

fn record(row: &sqlx::sqlite::SqliteRow) -> EventRecord {
    EventRecord {
        source_type: row.get("source_type"),
        source_identifier: row.get("source_identifier"),
        message: row.get("message"),
        date_millis: row.get("date_millis"),
    }
}

impl Store {
    /// Events of the scope, oldest first, with their ids (stable pagination keys).
    pub async fn events(&self, scope: &Scope, filter: &EventFilter) -> Result<Vec<(i64, EventRecord)>> {
        let rows = sqlx::query(
            "SELECT id, source_type, source_identifier, message, date_millis FROM events
             WHERE region = ? AND account = ?
               AND (? IS NULL OR source_type = ?)
               AND (? IS NULL OR source_identifier = ?)
               AND (? IS NULL OR date_millis >= ?)
               AND (? IS NULL OR date_millis <= ?)
             ORDER BY id",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&filter.source_type)
        .bind(&filter.source_type)
        .bind(&filter.source_identifier)
        .bind(&filter.source_identifier)
        .bind(filter.start_millis)
        .bind(filter.start_millis)
        .bind(filter.end_millis)
        .bind(filter.end_millis)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get("id"), record(r))).collect())
    }

    /// Events of every scope recorded after the one with id `after` (0: from the first), oldest
    /// first, at most `limit`: what a live feed has not passed on yet.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Scope, EventRecord)>> {
        let rows = sqlx::query(
            "SELECT id, region, account, source_type, source_identifier, message, date_millis FROM events
             WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("id"), Scope { region: r.get("region"), account: r.get("account") }, record(r)))
            .collect())
    }

    /// The id of the latest event of any scope (0 when there is none).
    pub async fn last_event_id(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events").fetch_one(&self.pool).await?;
        Ok(id.unwrap_or(0))
    }

    /// Deletes the events older than [`EVENT_RETENTION_MILLIS`] at `now_millis` (none of
    /// which DescribeEvents can show) and answers how many. Finding none, it writes nothing,
    /// so the change watchers are not woken for it.
    pub async fn forget_old_events(&self, now_millis: i64) -> Result<u64> {
        let before = now_millis - EVENT_RETENTION_MILLIS;
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT MIN(date_millis) FROM events").fetch_one(&self.pool).await?;
        if oldest.is_none_or(|oldest| oldest >= before) {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM events WHERE date_millis < ?")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// Records events outside any other change (e.g. a node seen dead by the monitor).
    pub async fn record_events(&self, scope: &Scope, events: &[EventRecord]) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.record_events(scope, events).await?;
        tx.commit().await
    }
}

impl Tx {
    /// Records events with the rest of the transaction.
    pub async fn record_events(&mut self, scope: &Scope, events: &[EventRecord]) -> Result<()> {
        insert_events(self, scope, events).await
    }
}
