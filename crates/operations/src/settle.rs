//! Answering once a change has settled. A mutation writes its desired state and, before the
//! HTTP answer goes out, waits (bounded) until the reconciler has taken every resource it
//! touched to its next stable status, so that a client's first poll — an SDK waiter polls at
//! once, then sleeps 15 s — already sees `available` (or the resource gone). The answer's
//! body is still what AWS answers at the moment of the call (`creating`, `deleting`, ...).
//!
//! The wait holds no lock: it wakes on [`store::Store::changes`] (every write transaction
//! moves it) and reads the resources again; it never sleeps. A client that disconnects drops
//! only the wait, never the change, which the store holds already.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use store::{Scope, Store, StoreError};

use crate::cache_clusters::status;
use crate::snapshots::snapshot_status;

/// Cluster and replication group statuses the emulator moves on from by itself.
const TRANSITIONAL: &[&str] =
    &[status::CREATING, status::MODIFYING, status::DELETING, status::REBOOTING, status::SNAPSHOTTING];
/// Snapshot statuses the emulator moves on from by itself.
const SNAPSHOT_TRANSITIONAL: &[&str] =
    &[snapshot_status::CREATING, snapshot_status::EXPORTING, snapshot_status::DELETING];

/// A resource a mutation waits for, by id (as stored: lowercase).
#[derive(Debug, Clone)]
pub enum Awaited {
    CacheCluster(String),
    /// The group and every member cluster it has (or had, while it is being deleted).
    ReplicationGroup(String),
    Snapshot(String),
    ServerlessCache(String),
    /// A global datastore (of the request's account, seen from any region).
    GlobalReplicationGroup(String),
}

impl Awaited {
    async fn settled(&self, store: &Store, scope: &Scope) -> Result<bool, StoreError> {
        Ok(match self {
            Awaited::CacheCluster(id) => {
                store.cache_cluster(scope, id).await?.is_none_or(|c| !TRANSITIONAL.contains(&c.cluster.status.as_str()))
            }
            Awaited::ReplicationGroup(id) => {
                let group_settled = store
                    .replication_group(scope, id)
                    .await?
                    .is_none_or(|g| !TRANSITIONAL.contains(&g.group.status.as_str()));
                group_settled
                    && store
                        .replication_group_members(scope, id)
                        .await?
                        .iter()
                        .all(|c| !TRANSITIONAL.contains(&c.cluster.status.as_str()))
            }
            Awaited::Snapshot(name) => {
                store.snapshot(scope, name).await?.is_none_or(|s| !SNAPSHOT_TRANSITIONAL.contains(&s.status.as_str()))
            }
            Awaited::ServerlessCache(name) => {
                store.serverless_cache(scope, name).await?.is_none_or(|c| !TRANSITIONAL.contains(&c.status.as_str()))
            }
            Awaited::GlobalReplicationGroup(id) => store
                .global_replication_group(&scope.account, id)
                .await?
                .is_none_or(|g| model::status::global::SETTLED.contains(&g.status.as_str())),
        })
    }
}

/// Waits until every `awaited` resource has settled, `timeout` has passed, or the store
/// fails; answers whether they settled.
async fn wait(store: &Store, scope: &Scope, awaited: &[Awaited], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = store.changes();
    loop {
        // Marked seen before reading: a write that lands during the reads wakes the next wait.
        changes.borrow_and_update();
        let mut settled = true;
        for resource in awaited {
            match resource.settled(store, scope).await {
                Ok(true) => {}
                Ok(false) => {
                    settled = false;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, ?resource, "reading a resource to settle failed; answering now");
                    return false;
                }
            }
        }
        if settled {
            return true;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            // The deadline passed, or the store is gone.
            _ => return false,
        }
    }
}

/// Upper bounds (seconds) of the settle-time histogram's buckets.
pub const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One operation's settle times: a Prometheus histogram, and how many waits hit the bound.
#[derive(Debug, Clone, Default)]
pub struct SettleHistogram {
    /// Observations at or below each of [`BUCKETS`] (not cumulative).
    pub buckets: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
    pub timed_out: u64,
}

/// Settle times by operation, for `GET /metrics`.
#[derive(Debug, Default)]
pub struct SettleTimes(Mutex<BTreeMap<&'static str, SettleHistogram>>);

impl SettleTimes {
    pub(crate) fn record(&self, operation: &'static str, took: Duration, settled: bool) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = all.entry(operation).or_default();
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            histogram.buckets[bucket] += 1;
        }
        histogram.count += 1;
        histogram.sum_seconds += seconds;
        histogram.timed_out += u64::from(!settled);
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, SettleHistogram> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Times one wait and records it under `operation`.
pub(crate) async fn timed(
    times: &SettleTimes,
    operation: &'static str,
    store: &Store,
    scope: &Scope,
    awaited: &[Awaited],
    timeout: Duration,
) {
    if timeout.is_zero() {
        return;
    }
    let started = Instant::now();
    let settled = wait(store, scope, awaited, timeout).await;
    times.record(operation, started.elapsed(), settled);
    if !settled {
        tracing::debug!(operation, ?awaited, ?timeout, "answering before the change settled");
    }
}
