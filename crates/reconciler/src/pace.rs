//! How often nodes run their timers ([`nodes::Pace`]). The nodes of a steady replication
//! group without cluster mode, and of a steady single-node redis cluster, run them once a
//! second. Whatever forks or syncs on a node raises its pace first: a group that is not
//! steady (its reconcile raises every member), a replica starting (its primary serves the
//! full sync), a snapshot (the node that saves). A node missed here is slower to notice its
//! fork's end (up to a second), never wrong. Cluster-mode nodes keep redis's pace: their
//! cluster bus runs on the same timer.

use nodes::{NodeKey, Pace};

use crate::Reconciler;

/// Sets `pace` on the nodes of `keys`. A failure costs only CPU or time, so it is logged.
/// A node the health monitor found failing is skipped: a hung one would hold the caller
/// for the command's timeout (500 ms of a failover that must end within a second), and the
/// next reconcile sets its pace once it answers again.
pub(crate) async fn set(r: &Reconciler, keys: impl IntoIterator<Item = NodeKey>, pace: Pace) {
    let paced = keys.into_iter().filter(|key| !r.unhealthy(key)).map(|key| async move {
        if let Err(error) = r.runtime.pace(&key, pace).await {
            tracing::debug!(node = %key, ?pace, %error, "setting the node's pace failed");
        }
    });
    futures::future::join_all(paced).await;
}
