//! The health monitor: probes every supervised node continuously. A node whose process is
//! gone is reported (with AWS's recovery event) and handed to the reconciler, which
//! restarts it in place; a crash from outside and an admin `kill` take this same path.

use std::sync::Arc;
use std::time::Duration;

use nodes::Health;
use operations::cache_clusters::SOURCE_TYPE;
use store::{EventRecord, Scope};

use crate::{Reconciler, lock};

#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Time between two probes of a node.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self { interval: Duration::from_millis(100), timeout: Duration::from_millis(250) }
    }
}

fn scope_of(key: &nodes::NodeKey) -> Option<Scope> {
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
            let previous = lock(&r.observed).insert(key.clone(), health);
            if health != Health::Exited || previous == Some(Health::Exited) {
                continue;
            }
            tracing::warn!(node = %key, "node process is gone; recovering");
            if let Some(scope) = scope_of(&key) {
                let event =
                    EventRecord::new(SOURCE_TYPE, &key.cluster_id, format!("Recovering cache nodes {}", key.node_id));
                if let Err(error) = r.ops.store().record_events(&scope, &[event]).await {
                    tracing::error!(%error, "recording a recovery event failed");
                }
            }
            lock(&r.to_recover).insert(key);
            r.wake.notify_one();
        }
    }
}
