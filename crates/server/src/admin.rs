//! The emulator-only admin API under `/_emulator/` (JSON).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nodes::NodeKey;
use serde_json::{Value, json};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_emulator/health", get(health))
        .route("/_emulator/ca.pem", get(ca_pem))
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/maintenance", post(maintenance))
        .route("/_emulator/snapshots/automated", post(automated_snapshots))
        .route("/_emulator/nodes", get(list_nodes))
        .route("/_emulator/topology", get(crate::topology::topology))
        .route("/_emulator/events", get(crate::event_stream::events))
        .route("/_emulator/ui", get(crate::ui::page))
        .route("/_emulator/nodes/{cluster}/{node}/{action}", post(node_action))
        .route("/_emulator/zones/{zone}/outage", post(start_outage).delete(end_outage))
        .route("/_emulator/regions/{region}/outage", post(start_region_outage).delete(end_region_outage))
        .route("/_emulator/reserved-cache-nodes/{id}/retire", post(retire_reserved_cache_node))
        .route("/_emulator/service-updates", post(publish_service_update))
}

pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"status": "error", "message": message.to_string()}))).into_response()
}

/// The certificate of the CA every TLS node and endpoint certificate is issued by, for
/// clients to verify against (created on first use, then kept in the state dir).
async fn ca_pem(State(state): State<AppState>) -> Response {
    match state.reconciler.certificate_authority() {
        Ok(ca) => {
            ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], ca.pem().to_string()).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "region": state.config.region,
        "zones": state.config.zones,
        "engines": state.reconciler.runtime().engines().to_json(),
        "warm_nodes": state.reconciler.runtime().warm_nodes().iter()
            .map(|n| json!({"engine": n.engine.name(), "pid": n.pid, "port": n.port, "cluster_mode": n.cluster_mode, "ready": n.ready}))
            .collect::<Vec<_>>(),
        "warm_nodes_wanted": state.reconciler.runtime().warm_nodes_wanted(),
        // `serve --init-dir`: a CI step waits for `done` (or `failed`, naming the script).
        "init": state.init.report(),
    }))
}

/// Deletes every resource of every region and stops every node; returns when done.
async fn reset(State(state): State<AppState>) -> Response {
    state.reconciler.pause().await;
    let result = state.operations.reset().await;
    state.reconciler.reset().await;
    state.reconciler.resume();
    match result {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reset failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

/// Applies every change waiting for a maintenance window now.
async fn maintenance(State(state): State<AppState>) -> Response {
    match state.operations.run_maintenance().await {
        Ok(clusters) => Json(json!({"status": "ok", "clusters": clusters})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// One day of automated backups now: a snapshot of every cluster and group with a
/// retention limit, and the oldest beyond the limit deleted.
async fn automated_snapshots(State(state): State<AppState>) -> Response {
    match operations::snapshots::run_automated(&state.operations, operations::snapshots::Schedule::Now).await {
        Ok(started) => Json(json!({"status": "ok", "snapshots": started})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Ends a reservation now, as if its term were over: Describe shows it `retired` from then
/// on. Ids are per region; the server's own region wins when several have it.
async fn retire_reserved_cache_node(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match operations::reserved_nodes::retire(&state.operations, &id, &state.config.region).await {
        Ok(Some(retired)) => Json(json!({
            "status": "ok",
            "region": retired.region,
            "reserved_cache_node_id": retired.reserved_cache_node_id,
            "state": retired.state,
        }))
        .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no reserved cache node {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Publishes a service update (AWS's field names, each optional; `Region` picks the region,
/// the server's by default), so that DescribeServiceUpdates and DescribeUpdateActions list
/// it and BatchApplyUpdateAction can apply it.
async fn publish_service_update(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let text = if body.is_empty() { b"{}".as_slice() } else { &body };
    let value: Value = match serde_json::from_slice(text) {
        Ok(value) => value,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a JSON object: {e}")),
    };
    let region = value.get("Region").and_then(Value::as_str).unwrap_or(&state.config.region).to_string();
    let request: operations::service_updates::Publish = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match operations::service_updates::publish(&state.operations, &region, &state.config.account, request).await {
        Ok(u) => Json(json!({
            "status": "ok",
            "region": region,
            "ServiceUpdateName": u.name,
            "ServiceUpdateSeverity": u.severity,
            "ServiceUpdateStatus": u.status,
            "Engine": u.engine,
        }))
        .into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

async fn list_nodes(State(state): State<AppState>) -> Response {
    match crate::topology::nodes(&state).await {
        Ok(nodes) => Json(Value::Array(nodes)).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `kill` (SIGKILL, as a crash), `stop` (frozen, not dead) or `resume` one node.
async fn node_action(
    State(state): State<AppState>,
    Path((cluster, node, action)): Path<(String, String, String)>,
) -> Response {
    let clusters = match state.operations.store().all_cache_clusters().await {
        Ok(clusters) => clusters,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    // Cluster ids are per region: prefer the default region's when several match.
    let found = clusters
        .iter()
        .filter(|c| c.cluster.id == cluster.to_ascii_lowercase() && c.nodes.iter().any(|n| n.node_id == node))
        .min_by_key(|c| c.scope.region != state.config.region);
    let Some(c) = found else {
        return error(StatusCode::NOT_FOUND, format!("no node {node} in cache cluster {cluster}"));
    };
    let key = NodeKey::new(reconciler::scope_key(&c.scope), c.cluster.id.clone(), node.clone());
    let runtime = state.reconciler.runtime();
    let result = match action.as_str() {
        "kill" => runtime.kill(&key).await,
        "stop" => runtime.pause(&key).await,
        "resume" => runtime.resume(&key).await,
        other => return error(StatusCode::BAD_REQUEST, format!("unknown action {other}: use kill, stop or resume")),
    };
    match result {
        Ok(()) => {
            Json(json!({"status": "ok", "cache_cluster_id": c.cluster.id, "cache_node_id": node, "action": action}))
                .into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

async fn start_outage(State(state): State<AppState>, Path(zone): Path<String>) -> Response {
    outage(state, zone, true).await
}

async fn end_outage(State(state): State<AppState>, Path(zone): Path<String>) -> Response {
    outage(state, zone, false).await
}

async fn start_region_outage(State(state): State<AppState>, Path(region): Path<String>) -> Response {
    region_outage(state, region, true).await
}

async fn end_region_outage(State(state): State<AppState>, Path(region): Path<String>) -> Response {
    region_outage(state, region, false).await
}

/// A whole region goes down: an outage of every zone the region has, so nodes started
/// there meanwhile start frozen too. Other regions (a global datastore's secondaries) go on.
async fn region_outage(state: AppState, region: String, down: bool) -> Response {
    let zones = state.operations.zones(&region);
    let mut nodes = Vec::new();
    for zone in &zones {
        match state.reconciler.zone_outage(zone, down).await {
            Ok(affected) => nodes.extend(affected),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    Json(json!({
        "status": "ok",
        "region": region,
        "zones": zones,
        "outage": down,
        "nodes": nodes.iter().map(|k| json!({"cache_cluster_id": k.cluster_id, "cache_node_id": k.node_id})).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Every node in `zone` becomes unreachable (frozen) until the outage ends.
async fn outage(state: AppState, zone: String, down: bool) -> Response {
    if !state.config.zones.contains(&zone) {
        return error(StatusCode::NOT_FOUND, format!("unknown zone {zone}; zones: {}", state.config.zones.join(", ")));
    }
    match state.reconciler.zone_outage(&zone, down).await {
        Ok(nodes) => Json(json!({
            "status": "ok",
            "zone": zone,
            "outage": down,
            "nodes": nodes.iter().map(|k| json!({"cache_cluster_id": k.cluster_id, "cache_node_id": k.node_id})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
