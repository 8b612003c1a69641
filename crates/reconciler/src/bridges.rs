//! The replication bridges the reconciler runs into cluster-mode groups (`nodes::bridge`:
//! nodes in cluster mode refuse `REPLICAOF`): a cluster-mode global datastore's secondaries
//! (`global`) and an online migration from a Redis Cluster (`migration`). One registry for
//! both, each user owning the ids under its own prefix.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use nodes::bridge::BridgeSpec;
use nodes::{NodeKey, Runtime};
use store::{CacheCluster, ReplicationGroup};

use crate::lock;

/// The bridges running, by id, with the ends each was started with (a moved end, after a
/// failover within a group, restarts it).
#[derive(Default)]
pub(crate) struct Bridges(Mutex<HashMap<String, (SocketAddr, Vec<NodeKey>)>>);

impl Bridges {
    pub(crate) async fn stop_all(&self, runtime: &Runtime) {
        self.stop_unwanted(runtime, "", &[]).await;
    }

    /// Stops the bridges whose id starts with `prefix`, but those in `keep`.
    pub(crate) async fn stop_unwanted(&self, runtime: &Runtime, prefix: &str, keep: &[String]) {
        let stale: Vec<String> =
            lock(&self.0).keys().filter(|id| id.starts_with(prefix) && !keep.contains(id)).cloned().collect();
        for id in stale {
            runtime.stop_bridge(&id).await;
            lock(&self.0).remove(&id);
        }
    }

    pub(crate) fn any_with_prefix(&self, prefix: &str) -> bool {
        lock(&self.0).keys().any(|id| id.starts_with(prefix))
    }

    /// The ids of the bridges under `prefix`.
    pub(crate) fn ids(&self, prefix: &str) -> Vec<String> {
        lock(&self.0).keys().filter(|id| id.starts_with(prefix)).cloned().collect()
    }

    /// Runs exactly the `wanted` bridges under `prefix`: starts the new ones (again those
    /// whose ends moved) and stops the others.
    pub(crate) async fn ensure(
        &self,
        runtime: &Runtime,
        prefix: &str,
        wanted: Vec<(String, BridgeSpec)>,
    ) -> Result<(), nodes::NodeError> {
        for (id, spec) in &wanted {
            let ends = (spec.source, spec.target.clone());
            if lock(&self.0).get(id) == Some(&ends) && runtime.bridge(id).is_some() {
                continue;
            }
            runtime.start_bridge(id, spec.clone()).await?;
            lock(&self.0).insert(id.clone(), ends);
        }
        let keep: Vec<String> = wanted.into_iter().map(|(id, _)| id).collect();
        self.stop_unwanted(runtime, prefix, &keep).await;
        Ok(())
    }

    /// Waits (up to `within`) until every bridge under `prefix` has applied all its source
    /// holds; whether they all did.
    pub(crate) async fn catch_up(&self, runtime: &Runtime, prefix: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        for id in self.ids(prefix) {
            while !runtime.in_sync(&id).await {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(bridge = id, "the bridge did not catch up in time");
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        true
    }
}

/// The primary of each shard of a cluster-mode group, by node group id.
pub(crate) fn shard_primaries(g: &ReplicationGroup) -> Vec<(&str, &CacheCluster)> {
    g.group
        .node_groups
        .iter()
        .filter(|n| !n.removing)
        .filter_map(|n| g.members.iter().find(|m| m.cluster.id == n.primary_cluster_id).map(|m| (n.id.as_str(), m)))
        .collect()
}

/// The node keys of a cluster-mode group's shard primaries: a bridge's targets.
pub(crate) fn target_primaries(g: &ReplicationGroup) -> Vec<NodeKey> {
    shard_primaries(g).into_iter().filter_map(|(_, m)| crate::replication_groups::node_key(&g.scope, m)).collect()
}
