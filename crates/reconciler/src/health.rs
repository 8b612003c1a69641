//! The health monitor: probes every supervised node continuously.
//!
//! - A node whose process is gone is reported with AWS's recovery event and handed to the
//!   reconciler, which restarts it in place.
//! - The primary of a replication group with automatic failover that is gone, or has not
//!   answered `failure_threshold` probes in a row (frozen, zone outage), is failed over
//!   first; the old primary comes back as a replica.
//!
//! A crash from outside, an admin `kill`/`stop` and a zone outage all take these paths.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::status::source::CACHE_CLUSTER as SOURCE_TYPE;
use nodes::{Health, NodeKey};
use store::{EventRecord, Scope};

use crate::{Reconciler, lock};

/// What the monitor has seen of the nodes.
#[derive(Default)]
pub(crate) struct Memory {
    /// The last health of every node.
    pub(crate) observed: Mutex<HashMap<NodeKey, Health>>,
    /// Consecutive failed probes of every node.
    pub(crate) failures: Mutex<HashMap<NodeKey, u32>>,
    /// Zones in a simulated outage.
    pub(crate) zones_down: Mutex<HashSet<String>>,
    /// Moves whenever a node's health changes, for live views to read it again.
    changes: Changes,
}

struct Changes(tokio::sync::watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(0))
    }
}

impl Reconciler {
    /// Moves whenever the health monitor sees a node's health change (read
    /// [`Reconciler::health`] again each time it does).
    pub fn health_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.monitor.changes.0.subscribe()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Time between two probes of a node.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
    /// Failed probes in a row after which an unreachable primary is failed over.
    pub failure_threshold: u32,
}

impl Default for HealthSettings {
    /// A dead primary is detected within one interval and a frozen one within
    /// threshold × (interval + timeout): both well under a second.
    fn default() -> Self {
        Self { interval: Duration::from_millis(100), timeout: Duration::from_millis(150), failure_threshold: 3 }
    }
}

fn scope_of(key: &NodeKey) -> Option<Scope> {
    let (region, account) = key.scope.split_once('/')?;
    Some(Scope { region: region.to_string(), account: account.to_string() })
}

pub async fn monitor(r: Arc<Reconciler>) {
    loop {
        tokio::time::sleep(r.health.interval).await;
        let probes = r.runtime.running().into_iter().map(|node| {
            let r = r.clone();
            async move {
                let health = r.runtime.probe(&node.key, r.health.timeout).await;
                (node.key, health)
            }
        });
        for (key, health) in futures::future::join_all(probes).await {
            let previous = lock(&r.monitor.observed).insert(key.clone(), health);
            if previous != Some(health) {
                r.monitor.changes.0.send_modify(|generation| *generation = generation.wrapping_add(1));
            }
            let failures = {
                let mut failures = lock(&r.monitor.failures);
                let count = failures.entry(key.clone()).or_insert(0);
                *count = if health == Health::Healthy { 0 } else { *count + 1 };
                *count
            };
            // A node that answers again (a resumed primary, a zone back) may need demoting
            // or re-linking at once.
            if health == Health::Healthy && previous.is_some_and(|p| p != Health::Healthy) {
                r.schedule.wake.notify_one();
            }
            let newly_exited = health == Health::Exited && previous != Some(Health::Exited);
            let newly_unreachable = health != Health::Healthy && failures == r.health.failure_threshold;
            if !newly_exited && !newly_unreachable {
                continue;
            }
            let Some(scope) = scope_of(&key) else { continue };
            if let Some(group) = primary_with_failover(&r, &scope, &key).await {
                tracing::warn!(node = %key, %health, replication_group = group, "primary failed; failing over");
                request_failover(&r, &scope, &group, &key.cluster_id).await;
                continue;
            }
            if newly_exited {
                recover(&r, &scope, key).await;
            }
        }
    }
}

/// The replication group whose primary (or, in cluster mode, one of whose shard primaries)
/// `key` is, when the group fails over automatically.
async fn primary_with_failover(r: &Reconciler, scope: &Scope, key: &NodeKey) -> Option<String> {
    let cluster = r.store.cache_cluster(scope, &key.cluster_id).await.ok()??;
    let group_id = cluster.cluster.replication_group_id?;
    let group = r.store.replication_group(scope, &group_id).await.ok()??.group;
    let leads = if group.cluster_enabled() {
        group.node_group_led_by(&key.cluster_id).is_some()
    } else {
        group.primary_cluster_id == key.cluster_id
    };
    (group.automatic_failover && leads).then_some(group_id)
}

/// Asks for a failover away from `primary` (of the group, or of its shard in cluster mode),
/// unless the primary changed or a failover is already asked for: the group's reconcile
/// carries it out.
async fn request_failover(r: &Reconciler, scope: &Scope, group: &str, primary: &str) {
    let result = r
        .store
        .update_replication_group(scope, group, |g, _| {
            if let Some(shard) = g.node_groups.iter_mut().find(|s| s.primary_cluster_id == primary) {
                shard.failover_to.get_or_insert(store::FailoverRequest::BestReplica);
            } else if g.primary_cluster_id == primary && g.failover_to.is_none() {
                g.failover_to = Some(store::FailoverRequest::BestReplica);
            }
            Ok::<_, ()>(Vec::new())
        })
        .await;
    if let Err(store::UpdateError::Store(error)) = result {
        tracing::error!(%error, replication_group = group, "asking for a failover failed");
    }
    r.schedule.wake.notify_one();
}

/// Hands a dead node to the reconciler, which restarts it in place.
async fn recover(r: &Reconciler, scope: &Scope, key: NodeKey) {
    tracing::warn!(node = %key, "node process is gone; recovering");
    let event = EventRecord::new(SOURCE_TYPE, &key.cluster_id, format!("Recovering cache nodes {}", key.node_id));
    if let Err(error) = r.store.record_events(scope, &[event]).await {
        tracing::error!(%error, "recording a recovery event failed");
    }
    r.request_recovery(scope, &key).await;
}
