//! One step of an update action applied with BatchApplyUpdateAction: the nodes of its
//! cluster or group restart one at a time, each back (and, in a group, replicating again)
//! before the next starts. A group's replicas go first; the primary hands over to a replica
//! (a planned failover) before it restarts as a replica itself. A replica leaves the reader
//! endpoint before its restart. The restart is the reboot machinery's (`reboot_requested`,
//! done by the cluster reconcile); the failover is `replication_groups::failover`'s.
//! BatchStopUpdateAction makes the action `stopping`: the node being updated finishes, no
//! other starts, and the action is `stopped`.

use std::sync::Arc;
use std::time::Duration;

use model::service_updates::action;
use model::status::cluster as status;
use nodes::replication::Role;
use store::{CacheCluster, Scope, UpdateActionRecord, now_millis};

use crate::error::Error;
use crate::{Reconciler, scope_key};

pub(crate) fn key(scope: &Scope, action: &UpdateActionRecord) -> crate::ClusterKey {
    (scope.clone(), format!("update-action/{}", action.key()))
}

/// Whether the node `(cluster, node_id)` runs again as it should after its restart.
async fn back(r: &Reconciler, scope: &Scope, member: &CacheCluster, node_id: &str, replica: bool) -> bool {
    let Some(node) = member.nodes.iter().find(|n| n.node_id == node_id) else { return true };
    if node.reboot_requested || node.status != status::AVAILABLE {
        return false;
    }
    let key = nodes::NodeKey::new(scope_key(scope), member.cluster.id.clone(), node_id.to_string());
    if r.runtime.get(&key).is_none() {
        return false;
    }
    if !replica {
        return true;
    }
    r.runtime.replication(&key).await.is_ok_and(|i| i.role == Role::Replica && i.link_up)
}

pub async fn reconcile(r: &Arc<Reconciler>, scope: Scope, name: String) -> Result<Option<Duration>, Error> {
    let Some(a) = r.store.update_action(&scope, &name).await.map_err(Error::Store)? else { return Ok(None) };
    if !action::ACTIVE.contains(&a.status.as_str()) {
        return Ok(None);
    }
    let group = match &a.replication_group_id {
        Some(id) => match r.store.replication_group(&scope, id).await.map_err(Error::Store)? {
            Some(g) => Some(g),
            None => return finish(r, &scope, &name, action::STOPPED).await,
        },
        None => None,
    };
    let members: Vec<CacheCluster> = match (&group, &a.cache_cluster_id) {
        (Some(g), _) => g.members.clone(),
        (None, Some(id)) => r.store.cache_cluster(&scope, id).await.map_err(Error::Store)?.into_iter().collect(),
        (None, None) => Vec::new(),
    };
    if members.is_empty() || members.iter().any(|m| m.cluster.status == status::DELETING) {
        return finish(r, &scope, &name, action::STOPPED).await;
    }
    let primary = group.as_ref().map(|g| g.group.primary_cluster_id.clone());
    let is_replica = |cluster: &str| primary.as_ref().is_some_and(|p| p != cluster) && members.len() > 1;

    // The node being updated: done once it runs (and replicates) again.
    if let Some(current) = a.nodes.iter().find(|n| n.status == action::IN_PROGRESS) {
        let Some(member) = members.iter().find(|m| m.cluster.id == current.cache_cluster_id) else {
            return mark_node(r, &scope, &name, current, action::COMPLETE).await;
        };
        if !back(r, &scope, member, &current.node_id, is_replica(&member.cluster.id)).await {
            return Ok(Some(crate::SOON));
        }
        tracing::info!(
            update_action = name,
            cache_cluster = current.cache_cluster_id,
            node = current.node_id,
            "node updated"
        );
        return mark_node(r, &scope, &name, current, action::COMPLETE).await;
    }
    if a.status == action::STOPPING {
        return finish(r, &scope, &name, action::STOPPED).await;
    }
    // Replicas first, in the action's order; the primary last.
    let waiting = |n: &&store::NodeUpdateRecord| n.status == action::WAITING_TO_START;
    let next = a
        .nodes
        .iter()
        .filter(waiting)
        .find(|n| is_replica(&n.cache_cluster_id))
        .or_else(|| a.nodes.iter().find(waiting));
    let Some(next) = next.cloned() else { return finish(r, &scope, &name, action::COMPLETE).await };
    let Some(member) = members.iter().find(|m| m.cluster.id == next.cache_cluster_id) else {
        return mark_node(r, &scope, &name, &next, action::COMPLETE).await;
    };
    if let Some(g) = &group {
        // Only a group whose replicas all replicate goes on: a restart never leaves it
        // without a copy of its data.
        if g.group.status != status::AVAILABLE || g.group.failover_to.is_some() {
            return Ok(Some(crate::SOON));
        }
        if !is_replica(&member.cluster.id) && members.len() > 1 {
            tracing::info!(
                update_action = name,
                replication_group = g.group.id,
                "primary hands over before its update"
            );
            let result = r
                .store
                .update_replication_group(&scope, &g.group.id, |group, _| {
                    if group.failover_to.is_none() && group.primary_cluster_id == member.cluster.id {
                        group.failover_to = Some(store::FailoverRequest::BestReplica);
                    }
                    Ok::<_, ()>(Vec::new())
                })
                .await;
            crate::error::stored(result)?;
            return Ok(Some(crate::SOON));
        }
        // The restart takes it out of the reader endpoint first (see `cache_clusters`).
    }
    let result = r
        .store
        .update_cache_cluster(&scope, &member.cluster.id, |_, nodes| {
            if let Some(node) = nodes.iter_mut().find(|n| n.node_id == next.node_id) {
                node.reboot_requested = true;
            }
            Ok::<_, ()>(Vec::new())
        })
        .await;
    crate::error::stored(result)?;
    tracing::info!(update_action = name, cache_cluster = next.cache_cluster_id, node = next.node_id, "updating node");
    mark_node(r, &scope, &name, &next, action::IN_PROGRESS).await
}

/// Moves one node of the action to `to` (and the action to in-progress).
async fn mark_node(
    r: &Reconciler,
    scope: &Scope,
    name: &str,
    node: &store::NodeUpdateRecord,
    to: &str,
) -> Result<Option<Duration>, Error> {
    let now = now_millis();
    r.store
        .change_update_action(scope, name, |a| {
            if a.status == action::WAITING_TO_START {
                a.status = action::IN_PROGRESS.to_string();
                a.status_modified_millis = now;
            }
            if let Some(n) =
                a.nodes.iter_mut().find(|n| n.cache_cluster_id == node.cache_cluster_id && n.node_id == node.node_id)
            {
                n.status = to.to_string();
                n.modified_millis = now;
                if to == action::IN_PROGRESS {
                    n.start_millis = Some(now);
                } else {
                    n.end_millis = Some(now);
                }
            }
        })
        .await
        .map_err(Error::Store)?;
    Ok(Some(crate::SOON))
}

/// Ends the action `to` complete or stopped; nodes not reached stay as they are, stopped.
async fn finish(r: &Reconciler, scope: &Scope, name: &str, to: &str) -> Result<Option<Duration>, Error> {
    let now = now_millis();
    let done = r
        .store
        .change_update_action(scope, name, |a| {
            tracing::info!(update_action = name, from = a.status, to, "update action status");
            a.status = to.to_string();
            a.status_modified_millis = now;
            for n in a.nodes.iter_mut().filter(|n| n.status == action::WAITING_TO_START) {
                n.status = action::STOPPED.to_string();
                n.modified_millis = now;
            }
        })
        .await
        .map_err(Error::Store)?;
    if let Some(a) = done {
        let (kind, id) = match (&a.replication_group_id, &a.cache_cluster_id) {
            (Some(g), _) => (model::status::source::REPLICATION_GROUP, g.clone()),
            (None, c) => (model::status::source::CACHE_CLUSTER, c.clone().unwrap_or_default()),
        };
        // The emulator's wording: no AWS event text for service updates was found.
        let message = format!(
            "Service update {} {} on {id}",
            a.service_update_name,
            if to == action::COMPLETE { "completed" } else { "stopped" }
        );
        let _ = r.store.record_events(scope, &[store::EventRecord::new(kind, &id, message)]).await;
    }
    Ok(None)
}
