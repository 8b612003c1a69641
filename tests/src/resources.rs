//! Describe, wait-until-available, wait-until-gone and events of cache clusters and
//! replication groups over the SDK: what every node-running test binary does between its
//! Create calls and its assertions. Each wait is bounded by [`SETTLE`].

use std::collections::BTreeMap;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::config::http::HttpResponse;
use aws_sdk_elasticache::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_elasticache::types::{CacheCluster, ReplicationGroup, SourceType};

use crate::{SETTLE, api_error, poll_until};

/// DescribeCacheClusters(id, ShowCacheNodeInfo) → the one cluster.
pub async fn describe_cluster(client: &Client, id: &str) -> CacheCluster {
    let out = client
        .describe_cache_clusters()
        .cache_cluster_id(id)
        .show_cache_node_info(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeCacheClusters {id}: {e:?}"));
    assert_eq!(out.cache_clusters().len(), 1, "one cluster for {id}: {out:?}");
    out.cache_clusters()[0].clone()
}

/// Polls until the cluster is `available` (and every node too, with an endpoint).
pub async fn wait_cluster_available(client: &Client, id: &str) -> CacheCluster {
    poll_until(&format!("cluster {id} available"), SETTLE, || async {
        let c = describe_cluster(client, id).await;
        let nodes_ok = !c.cache_nodes().is_empty()
            && c.cache_nodes().iter().all(|n| n.cache_node_status() == Some("available") && n.endpoint().is_some());
        if c.cache_cluster_status() == Some("available") && nodes_ok {
            Ok(c)
        } else {
            Err(format!("{:?} nodes {:?}", c.cache_cluster_status(), c.cache_nodes()))
        }
    })
    .await
}

/// Polls until DescribeCacheClusters(id) answers CacheClusterNotFound (404).
pub async fn wait_cluster_gone(client: &Client, id: &str) {
    wait_not_found(&format!("cluster {id} gone"), "CacheClusterNotFound", || async {
        let out = client.describe_cache_clusters().cache_cluster_id(id).send().await?;
        Ok(format!("{:?}", out.cache_clusters().first().and_then(|c| c.cache_cluster_status())))
    })
    .await
}

/// DescribeReplicationGroups(id) → the one group.
pub async fn describe_group(client: &Client, id: &str) -> ReplicationGroup {
    let out = client
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeReplicationGroups {id}: {e:?}"));
    assert_eq!(out.replication_groups().len(), 1, "one group for {id}: {out:?}");
    out.replication_groups()[0].clone()
}

/// Polls until the group is `available`.
pub async fn wait_group_available(client: &Client, id: &str) -> ReplicationGroup {
    poll_until(&format!("replication group {id} available"), SETTLE, || async {
        let g = describe_group(client, id).await;
        if g.status() == Some("available") { Ok(g) } else { Err(format!("{:?}", g.status())) }
    })
    .await
}

/// Polls until DescribeReplicationGroups(id) answers ReplicationGroupNotFoundFault (404).
pub async fn wait_group_gone(client: &Client, id: &str) {
    wait_not_found(&format!("replication group {id} gone"), "ReplicationGroupNotFoundFault", || async {
        let out = client.describe_replication_groups().replication_group_id(id).send().await?;
        Ok(format!("{:?}", out.replication_groups().first().and_then(|g| g.status())))
    })
    .await
}

/// Polls `describe` (which answers the status it still sees) until it fails with `code` and
/// status 404; panics on any other error.
pub async fn wait_not_found<E, F, Fut>(what: &str, code: &str, mut describe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    poll_until(what, SETTLE, || {
        let call = describe();
        async move {
            match call.await {
                Ok(seen) => Err(seen),
                Err(e) => {
                    let error = api_error::<(), _>(Err(e));
                    if error.code == code && error.status == 404 {
                        Ok(())
                    } else {
                        panic!("waiting for {what}: {error:?}")
                    }
                }
            }
        }
    })
    .await
}

/// Every event of `source` (type `kind`) in the last hour (all pages), oldest first.
pub async fn events_of(client: &Client, kind: SourceType, source: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_events()
            .source_type(kind.clone())
            .source_identifier(source)
            .duration(60)
            .set_marker(marker)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeEvents {source}: {e:?}"));
        all.extend(out.events().iter().cloned());
        marker = out.marker;
        if marker.is_none() {
            break;
        }
    }
    all.sort_by_key(|e| e.date().map(|d| (d.secs(), d.subsec_nanos())));
    all.into_iter().map(|e| e.message().unwrap_or_default().to_string()).collect()
}

/// Polls until the events of `source` include every message of `expected` (at least as often
/// as it is listed there); returns them.
pub async fn wait_events(client: &Client, kind: SourceType, source: &str, expected: &[&str]) -> Vec<String> {
    poll_until(&format!("events {expected:?} of {source}"), SETTLE, || async {
        let events = events_of(client, kind.clone(), source).await;
        let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
        for e in expected {
            *wanted.entry(e).or_default() += 1;
        }
        let missing = wanted.iter().any(|(m, n)| events.iter().filter(|e| e == m).count() < *n);
        if missing { Err(format!("{events:?}")) } else { Ok(events) }
    })
    .await
}

/// Polls until the events of `source` include `expected`; returns them.
pub async fn wait_event(client: &Client, kind: SourceType, source: &str, expected: &str) -> Vec<String> {
    wait_events(client, kind, source, &[expected]).await
}
