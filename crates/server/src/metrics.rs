//! `GET /metrics` in Prometheus text format: API requests by action and outcome, counted as
//! they are answered, and gauges read when scraped — resources by status, nodes by health.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// API requests answered, by (action, outcome): `ok` or the AWS error code.
#[derive(Default)]
pub struct ApiMetrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
}

impl ApiMetrics {
    /// Counts one answered request. `action` must be one the API knows (or `unknown`), so
    /// that clients cannot grow the label set at will.
    pub fn record(&self, action: &str, outcome: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((action.to_string(), outcome.to_string())).or_default() += 1;
    }
}

/// A label value with Prometheus's escapes.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &BTreeMap<String, u64>, key: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (value, count) in samples {
        let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {count}", label(value));
    }
}

fn count_by<I: IntoIterator<Item = String>>(values: I) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

/// How long mutations waited for their change to settle before answering, per operation.
fn settle_histograms(out: &mut String, histograms: &BTreeMap<&'static str, operations::settle::SettleHistogram>) {
    let name = "elasticache_local_settle_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time a mutation waited for its change to settle before answering.\n# TYPE {name} histogram"
    );
    for (operation, h) in histograms {
        let operation = label(operation);
        let mut cumulative = 0;
        for (bound, count) in operations::settle::BUCKETS.iter().zip(h.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{operation=\"{operation}\",le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{operation=\"{operation}\",le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{operation=\"{operation}\"}} {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count{{operation=\"{operation}\"}} {}", h.count);
    }
    let name = "elasticache_local_settle_timeouts_total";
    let _ = writeln!(out, "# HELP {name} Mutations that answered before their change settled.\n# TYPE {name} counter");
    for (operation, h) in histograms {
        let _ = writeln!(out, "{name}{{operation=\"{}\"}} {}", label(operation), h.timed_out);
    }
}

fn connection_metrics(out: &mut String, connections: &crate::connections::Connections) {
    for (name, kind, help, value) in [
        ("elasticache_local_http_connections", "gauge", "HTTP connections open.", connections.open_count() as u64),
        (
            "elasticache_local_http_connections_evicted_total",
            "counter",
            "Idle HTTP connections closed to make room for new ones.",
            connections.evicted_count(),
        ),
        (
            "elasticache_local_http_connections_refused_total",
            "counter",
            "New HTTP connections closed at once because every open one was mid-request.",
            connections.refused_count(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.operations.store();
    let (clusters, groups, snapshots) =
        match (store.all_cache_clusters().await, store.all_replication_groups().await, store.all_snapshots().await) {
            (Ok(c), Ok(g), Ok(s)) => (c, g, s),
            _ => return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response(),
        };
    let mut out = String::from(
        "# HELP elasticache_local_up The emulator answers.\n# TYPE elasticache_local_up gauge\nelasticache_local_up 1\n",
    );
    {
        let requests = state.metrics.requests.lock().unwrap_or_else(|e| e.into_inner());
        let name = "elasticache_local_api_requests_total";
        let _ =
            writeln!(out, "# HELP {name} Query API requests answered, by action and outcome.\n# TYPE {name} counter");
        for ((action, outcome), count) in requests.iter() {
            let _ = writeln!(out, "{name}{{action=\"{}\",outcome=\"{}\"}} {count}", label(action), label(outcome));
        }
    }
    connection_metrics(&mut out, &state.connections);
    settle_histograms(&mut out, &state.operations.settle_times().snapshot());
    let by_status = count_by(clusters.iter().map(|c| c.cluster.status.clone()));
    family(&mut out, "elasticache_local_cache_clusters", "gauge", "Cache clusters, by status.", &by_status, "status");
    let by_status = count_by(groups.iter().map(|g| g.group.status.clone()));
    family(
        &mut out,
        "elasticache_local_replication_groups",
        "gauge",
        "Replication groups, by status.",
        &by_status,
        "status",
    );
    let by_status = count_by(snapshots.iter().map(|(_, s)| s.status.clone()));
    family(&mut out, "elasticache_local_snapshots", "gauge", "Snapshots, by status.", &by_status, "status");
    let runtime = state.reconciler.runtime();
    let by_health = count_by(
        runtime.running().iter().map(|n| state.reconciler.health(&n.key).map_or("unknown", |h| h.as_str()).to_string()),
    );
    family(
        &mut out,
        "elasticache_local_nodes",
        "gauge",
        "Node processes, by last observed health.",
        &by_health,
        "health",
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
