//! The reconciler: compares the desired state in the store with what the node runtime
//! observes, and acts — starts, reconfigures, restarts and stops real nodes — then writes
//! the observed state and AWS's events back to the store.
//!
//! # Layout
//! - [`Reconciler`]: activation (periodic and on demand), one reconcile per cluster at a
//!   time, start-up recovery and reset.
//! - `cache_clusters`: one cluster's reconcile: creation, scaling, reboots, parameter
//!   changes, deletion, self-healing — all one code path.
//! - `health`: the monitor that probes every node and asks for repairs.
//!
//! An activation takes no input and reads current state, so creation, repair after a crash
//! and recovery after an emulator restart are the same code.

mod cache_clusters;
mod health;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodes::{ConfigEndpoint, Health, NodeKey, Runtime};
use operations::Operations;
use store::Scope;
use tokio::sync::{Notify, watch};

pub use health::HealthSettings;

/// How often every cluster is looked at even when nothing asked for it.
const PERIOD: Duration = Duration::from_secs(2);
/// Wait before retrying a reconcile that failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);

type ClusterKey = (Scope, String);

pub struct Reconciler {
    ops: Arc<Operations>,
    runtime: Arc<Runtime>,
    wake: Arc<Notify>,
    state_dir: PathBuf,
    health: HealthSettings,
    /// Clusters being reconciled right now: never two reconciles of one cluster at once.
    in_flight: Mutex<HashSet<ClusterKey>>,
    /// Memcached configuration endpoints, with the sender that publishes node lists.
    config_endpoints: tokio::sync::Mutex<HashMap<ClusterKey, (ConfigEndpoint, watch::Sender<nodes::ClusterConfig>)>>,
    /// The last health of every node, as the monitor saw it.
    observed: Mutex<HashMap<NodeKey, Health>>,
    /// Nodes the monitor found dead: restarted in place by the next reconcile.
    to_recover: Mutex<HashSet<NodeKey>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime's name for a scope.
pub fn scope_key(scope: &Scope) -> String {
    format!("{}/{}", scope.region, scope.account)
}

impl Reconciler {
    pub fn new(
        ops: Arc<Operations>,
        runtime: Arc<Runtime>,
        wake: Arc<Notify>,
        state_dir: &Path,
        health: HealthSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            ops,
            runtime,
            wake,
            state_dir: state_dir.to_path_buf(),
            health,
            in_flight: Mutex::new(HashSet::new()),
            config_endpoints: tokio::sync::Mutex::new(HashMap::new()),
            observed: Mutex::new(HashMap::new()),
            to_recover: Mutex::new(HashSet::new()),
        })
    }

    /// Where a node keeps its config, logs and data.
    fn node_dir(&self, scope: &Scope, cluster_id: &str, node_id: &str) -> PathBuf {
        self.cluster_dir(scope, cluster_id).join(node_id)
    }

    fn cluster_dir(&self, scope: &Scope, cluster_id: &str) -> PathBuf {
        self.state_dir.join("nodes").join(&scope.region).join(&scope.account).join(cluster_id)
    }

    /// Runs until `shutdown` resolves: reconciles on every wake-up and every PERIOD, and
    /// runs the health monitor. Nodes left by an emulator that was killed are reaped first.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let reaped = nodes::reap_orphans(&self.state_dir);
        if !reaped.is_empty() {
            tracing::warn!(count = reaped.len(), "killed node processes left over by a previous run");
        }
        let monitor = tokio::spawn(health::monitor(self.clone()));
        tokio::pin!(shutdown);
        loop {
            self.activate();
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
        monitor.abort();
        self.runtime.stop_all().await;
        self.config_endpoints.lock().await.clear();
    }

    /// Starts a reconcile for every cluster not being reconciled already.
    fn activate(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let clusters = match this.ops.store().all_cache_clusters().await {
                Ok(clusters) => clusters,
                Err(error) => {
                    tracing::error!(%error, "reading clusters failed");
                    return;
                }
            };
            for cluster in clusters {
                let key = (cluster.scope.clone(), cluster.cluster.id.clone());
                if !lock(&this.in_flight).insert(key.clone()) {
                    continue;
                }
                let this = this.clone();
                tokio::spawn(async move {
                    let retry = match cache_clusters::reconcile(&this, cluster).await {
                        Ok(retry) => retry,
                        Err(error) => {
                            tracing::warn!(cache_cluster = key.1, %error, "reconcile failed; will retry");
                            true
                        }
                    };
                    if retry {
                        // Back off, so a node that cannot start does not spin the machine.
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                    lock(&this.in_flight).remove(&key);
                    if retry {
                        this.wake.notify_one();
                    }
                });
            }
        });
    }

    /// Stops every node and endpoint and forgets them (after the store was reset).
    pub async fn reset(&self) {
        self.runtime.stop_all().await;
        self.config_endpoints.lock().await.clear();
        lock(&self.observed).clear();
        lock(&self.to_recover).clear();
        let _ = std::fs::remove_dir_all(self.state_dir.join("nodes"));
    }

    /// The health the monitor last saw for a node.
    pub fn health(&self, key: &NodeKey) -> Option<Health> {
        lock(&self.observed).get(key).copied()
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}
