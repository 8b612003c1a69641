//! `GET /_emulator/topology`: every region, its zones, nodes and resources in one JSON
//! document, for the dashboard and the CLI.
//!
//! Resources are read through the operations' Describe calls, so that their endpoints and
//! statuses are exactly what the Query API answers; nodes are the objects of
//! `GET /_emulator/nodes`, built by [`nodes`] for both.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nodes::NodeKey;
use protocol::shapes::*;
use protocol::{ElastiCache as _, RequestContext};
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::error;

pub async fn topology(State(state): State<AppState>) -> Response {
    match build(&state).await {
        Ok(topology) => Json(topology).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Every node the emulator runs, one JSON object each (the `/_emulator/nodes` form).
pub async fn nodes(state: &AppState) -> Result<Vec<Value>, store::StoreError> {
    let store = state.operations.store();
    let clusters = store.all_cache_clusters().await?;
    let groups = store.all_replication_groups().await?;
    let mut out = Vec::new();
    for c in clusters {
        let group = c
            .cluster
            .replication_group_id
            .as_ref()
            .and_then(|id| groups.iter().find(|g| g.scope == c.scope && &g.group.id == id).map(|g| &g.group));
        let role = match group {
            _ if c.cluster.engine == "memcached" => Value::Null,
            Some(g) if g.cluster_enabled() && g.node_group_led_by(&c.cluster.id).is_none() => json!("replica"),
            Some(g) if !g.cluster_enabled() && g.primary_cluster_id != c.cluster.id => json!("replica"),
            _ => json!("primary"),
        };
        let node_group_id = match group {
            Some(g) if g.cluster_enabled() => c.cluster.node_group_id.clone(),
            Some(_) => Some(model::names::NODE_GROUP_ID.to_string()),
            None => None,
        };
        for node in &c.nodes {
            let key = NodeKey::new(reconciler::scope_key(&c.scope), c.cluster.id.clone(), node.node_id.clone());
            let running = state.reconciler.runtime().get(&key);
            out.push(json!({
                "region": c.scope.region,
                "cache_cluster_id": c.cluster.id,
                "cache_node_id": node.node_id,
                "replication_group_id": c.cluster.replication_group_id,
                // The serverless cache whose data the node holds, if any: named by its
                // backing group's id, or for Memcached by its backing cluster's.
                "serverless_cache": model::names::serverless_name(
                    c.cluster.replication_group_id.as_deref().unwrap_or(&c.cluster.id)
                ),
                "node_group_id": node_group_id,
                "role": role,
                "engine": c.cluster.engine,
                // AWS's version (as Describe shows it), and the local binary that serves it.
                "engine_version": c.cluster.engine_version,
                "binary": running.as_ref().map(|r| {
                    let engines = state.reconciler.runtime().engines();
                    let engine = c.cluster.engine.parse().ok();
                    let binary = engine.and_then(|e| engines.binary(e));
                    json!({
                        "path": binary.map(|b| b.path.display().to_string()),
                        "version": r.engine_version,
                        "why": engine.and_then(|e| engines.why(e, &c.cluster.engine_version)),
                    })
                }),
                "availability_zone": node.zone,
                "address": node.address,
                "port": node.port,
                "transit_encryption_mode": c.cluster.security.mode(),
                "pid": running.as_ref().map(|r| r.pid),
                "status": node.status,
                "health": state.reconciler.health(&key).map_or("unknown", |h| h.as_str()),
            }));
        }
    }
    Ok(out)
}

/// What one region holds, in the topology's JSON form.
#[derive(Default)]
struct Region {
    nodes: Vec<Value>,
    replication_groups: Vec<Value>,
    cache_clusters: Vec<Value>,
    serverless_caches: Vec<Value>,
    global_datastores: Vec<Value>,
    /// Long operations under way (`reconciler::progress`): reshards, snapshots.
    progress: Vec<Value>,
}

async fn build(state: &AppState) -> Result<Value, String> {
    let store = state.operations.store();
    let text = |e: store::StoreError| e.to_string();
    // Every scope holding a resource; a region with none is described as empty, without
    // a Describe call (which would seed its default resources).
    let mut scopes: BTreeSet<(String, String)> = BTreeSet::new();
    let clusters = store.all_cache_clusters().await.map_err(text)?.into_iter().map(|c| c.scope);
    let caches = store.all_serverless_caches().await.map_err(text)?.into_iter().map(|(scope, _)| scope);
    scopes.extend(clusters.chain(caches).map(|s| (s.region, s.account)));
    let globals = store.all_global_replication_groups().await.map_err(text)?;
    let accounts: BTreeSet<String> = globals.into_iter().map(|(account, _)| account).collect();

    let mut regions: BTreeMap<String, Region> = BTreeMap::new();
    regions.insert(state.config.region.clone(), Region::default());
    for node in nodes(state).await.map_err(text)? {
        let region = node["region"].as_str().unwrap_or_default().to_string();
        regions.entry(region).or_default().nodes.push(node);
    }
    for (name, account) in &scopes {
        let ctx = context(name, account);
        let region = regions.entry(name.clone()).or_default();
        let clusters = cache_clusters(state, &ctx).await?;
        let mut groups = replication_groups(state, &ctx).await?;
        for group in &mut groups {
            // A group's Describe carries no version of its own: its members' is the group's.
            group["engine_version"] = clusters
                .iter()
                .find(|c| c["replication_group_id"] == group["id"])
                .map_or(Value::Null, |c| c["engine_version"].clone());
        }
        region.replication_groups.extend(groups);
        region.cache_clusters.extend(clusters);
        region.serverless_caches.extend(serverless_caches(state, &ctx).await?);
    }
    for step in state.reconciler.progress() {
        let percent = step.percent();
        let mut value = json!(step);
        value["percent"] = json!(percent);
        regions.entry(step.region.clone()).or_default().progress.push(value);
    }
    for account in &accounts {
        for (home, datastore) in global_datastores(state, &context(&state.config.region, account)).await? {
            regions.entry(home).or_default().global_datastores.push(datastore);
        }
    }

    // The server's own region first, then the others by name.
    let own = regions.remove_entry(&state.config.region);
    let regions: Vec<Value> = own
        .into_iter()
        .chain(regions)
        .map(|(name, r)| {
            let zones: Vec<Value> = state
                .operations
                .zones(&name)
                .into_iter()
                .map(|zone| json!({"name": zone, "outage": state.reconciler.zone_is_down(&zone)}))
                .collect();
            json!({
                "name": name,
                "zones": zones,
                "nodes": r.nodes,
                "replication_groups": r.replication_groups,
                "cache_clusters": r.cache_clusters,
                "serverless_caches": r.serverless_caches,
                "global_datastores": r.global_datastores,
                "progress": r.progress,
            })
        })
        .collect();
    Ok(json!({"default_region": state.config.region, "regions": regions}))
}

fn context(region: &str, account: &str) -> RequestContext {
    RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        region: region.to_string(),
        account: account.to_string(),
    }
}

/// `host:port`, as a client would connect to it.
fn address(endpoint: Option<&Endpoint>) -> Value {
    match endpoint {
        Some(Endpoint { address: Some(host), port: Some(port) }) => json!(format!("{host}:{port}")),
        _ => Value::Null,
    }
}

/// Describe pages hold at most 100 records; each list is read to its end.
const PAGE: i32 = 100;

async fn replication_groups(state: &AppState, ctx: &RequestContext) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let input = DescribeReplicationGroupsMessage { marker, max_records: Some(PAGE), ..Default::default() };
        let page = state.operations.describe_replication_groups(ctx, input).await.map_err(|e| e.to_string())?;
        out.extend(page.replication_groups.unwrap_or_default().iter().map(replication_group));
        marker = page.marker;
        if marker.is_none() {
            return Ok(out);
        }
    }
}

fn replication_group(g: &ReplicationGroup) -> Value {
    let node_groups = g.node_groups.as_deref().unwrap_or_default();
    // Cluster mode disabled has one node group holding the group's endpoints; a
    // cluster-mode group in compatible mode repeats them on every shard.
    let first = node_groups.first();
    let shards: Vec<Value> = node_groups
        .iter()
        .map(|shard| {
            let members = shard.node_group_members.as_deref().unwrap_or_default();
            let primary = members.iter().find(|m| m.current_role.as_deref() == Some("primary"));
            json!({
                "id": shard.node_group_id,
                "slots": shard.slots,
                "status": shard.status,
                "primary": primary.and_then(|m| m.cache_cluster_id.clone()),
                "members": members.iter().filter_map(|m| m.cache_cluster_id.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "id": g.replication_group_id,
        "status": g.status,
        "engine": g.engine,
        "engine_version": Value::Null,
        "cluster_mode": g.cluster_enabled.unwrap_or(false),
        "cluster_mode_setting": g.cluster_mode.as_ref().map(|m| m.as_str()),
        "primary_endpoint": address(first.and_then(|n| n.primary_endpoint.as_ref())),
        "reader_endpoint": address(first.and_then(|n| n.reader_endpoint.as_ref())),
        "configuration_endpoint": address(g.configuration_endpoint.as_ref()),
        "automatic_failover": g.automatic_failover.as_ref().map(|a| a.as_str()),
        "multi_az": g.multi_az.as_ref().map(|m| m.as_str()),
        "node_type": g.cache_node_type,
        "transit_encryption": g.transit_encryption_enabled,
        "global_datastore": g.global_replication_group_info.as_ref().and_then(|i| i.global_replication_group_id.clone()),
        "shards": shards,
    })
}

async fn cache_clusters(state: &AppState, ctx: &RequestContext) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let input = DescribeCacheClustersMessage {
            marker,
            max_records: Some(PAGE),
            show_cache_node_info: Some(true),
            ..Default::default()
        };
        let page = state.operations.describe_cache_clusters(ctx, input).await.map_err(|e| e.to_string())?;
        for c in page.cache_clusters.unwrap_or_default() {
            out.push(json!({
                "id": c.cache_cluster_id,
                "status": c.cache_cluster_status,
                "engine": c.engine,
                "engine_version": c.engine_version,
                "replication_group_id": c.replication_group_id,
                "num_nodes": c.num_cache_nodes,
                "node_type": c.cache_node_type,
                "configuration_endpoint": address(c.configuration_endpoint.as_ref()),
                "nodes": c.cache_nodes.unwrap_or_default().iter().map(|n| json!({
                    "id": n.cache_node_id,
                    "status": n.cache_node_status,
                    "availability_zone": n.customer_availability_zone,
                    "endpoint": address(n.endpoint.as_ref()),
                })).collect::<Vec<_>>(),
            }));
        }
        marker = page.marker;
        if marker.is_none() {
            return Ok(out);
        }
    }
}

async fn serverless_caches(state: &AppState, ctx: &RequestContext) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut next_token = None;
    loop {
        let input = DescribeServerlessCachesRequest { next_token, max_results: Some(PAGE), ..Default::default() };
        let page = state.operations.describe_serverless_caches(ctx, input).await.map_err(|e| e.to_string())?;
        for c in page.serverless_caches.unwrap_or_default() {
            out.push(json!({
                "name": c.serverless_cache_name,
                "status": c.status,
                "engine": c.engine,
                "engine_version": c.full_engine_version,
                "endpoint": address(c.endpoint.as_ref()),
                "reader_endpoint": address(c.reader_endpoint.as_ref()),
            }));
        }
        next_token = page.next_token;
        if next_token.is_none() {
            return Ok(out);
        }
    }
}

/// Every global datastore of the context's account, with the region it belongs under: its
/// primary member's.
async fn global_datastores(state: &AppState, ctx: &RequestContext) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let input = DescribeGlobalReplicationGroupsMessage {
            marker,
            max_records: Some(PAGE),
            show_member_info: Some(true),
            ..Default::default()
        };
        let page = state.operations.describe_global_replication_groups(ctx, input).await.map_err(|e| e.to_string())?;
        for g in page.global_replication_groups.unwrap_or_default() {
            let members = g.members.unwrap_or_default();
            let home = members
                .iter()
                .find(|m| m.role.as_deref() == Some("PRIMARY"))
                .or(members.first())
                .and_then(|m| m.replication_group_region.clone())
                .unwrap_or_else(|| ctx.region.clone());
            let members: Vec<Value> = members
                .iter()
                .map(|m| {
                    json!({
                        "replication_group_id": m.replication_group_id,
                        "region": m.replication_group_region,
                        "role": m.role,
                        "status": m.status,
                    })
                })
                .collect();
            out.push((
                home,
                json!({
                    "id": g.global_replication_group_id,
                    "status": g.status,
                    "engine": g.engine,
                    "engine_version": g.engine_version,
                    "cluster_mode": g.cluster_enabled,
                    "members": members,
                }),
            ));
        }
        marker = page.marker;
        if marker.is_none() {
            return Ok(out);
        }
    }
}
