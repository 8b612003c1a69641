//! What Describe shows after an emulator restart, until the nodes are back.
//!
//! No node survives the emulator (`PDEATHSIG`, and the orphans are reaped), so at start-up
//! the statuses in the store describe nodes that no longer run. Until each cluster's
//! reconcile has started them again, they say so: each node that was `available` is
//! `rebooting` and an available cluster `rebooting cache cluster nodes`, as when its nodes
//! are rebooted through the API. The reconciles settle them back to `available` as the
//! nodes answer (a cluster-mode member's once Redis Cluster serves it again), so a waiter
//! polling after a restart returns once the nodes are really there. A replication group keeps its status, as when a member is rebooted through the
//! API: marked `modifying`, a thousand groups' reconciles would poll their members (every
//! few milliseconds, as while one is created) for as long as the nodes take to return.

use model::status::cluster as status;
use store::{CacheCluster, Store, StoreError, UpdateError};

/// Marks every node recorded as available as rebooting (see the module doc); answers how
/// many. One transaction, before the API answers its first request.
pub(crate) async fn mark_nodes_restarting(store: &Store) -> Result<usize, StoreError> {
    let clusters = store.all_cache_clusters().await?;
    let restarting: Vec<&CacheCluster> = clusters.iter().filter(|c| has_available_node(c)).collect();
    let result = store
        .write(async |tx| {
            let mut count = 0;
            for c in &restarting {
                tx.update_cache_cluster(&c.scope, &c.cluster.id, |cluster, nodes| {
                    for node in nodes.iter_mut().filter(|n| n.status == status::AVAILABLE) {
                        node.status = status::NODE_REBOOTING.to_string();
                        count += 1;
                    }
                    if cluster.status == status::AVAILABLE {
                        cluster.status = status::REBOOTING.to_string();
                    }
                    Ok::<_, ()>(Vec::new())
                })
                .await?;
            }
            Ok::<_, UpdateError<()>>(count)
        })
        .await;
    match result {
        Ok(count) => Ok(count),
        Err(UpdateError::Store(error)) => Err(error),
        Err(UpdateError::Rejected(())) => Ok(0),
    }
}

/// Whether a node of `c` was running when the emulator stopped (one being deleted is
/// not started again).
fn has_available_node(c: &CacheCluster) -> bool {
    c.cluster.status != status::DELETING && c.nodes.iter().any(|n| n.status == status::AVAILABLE)
}
