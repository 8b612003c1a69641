//! `elasticache-local status`: what a running emulator holds, region by region, as plain
//! text tables (from `GET /_emulator/topology`); exit status 2 when a resource is in a
//! failure status, 1 when the emulator cannot be asked.

use std::fmt::Write as _;

use serde_json::Value;

use super::{EXIT_ERROR, EndpointArg};

/// The exit status when some resource is in a failure status.
pub const EXIT_FAILED_RESOURCE: i32 = 2;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    endpoint: EndpointArg,
}

pub async fn run(args: Args) -> i32 {
    let endpoint = match args.endpoint.resolve() {
        Ok(endpoint) => endpoint,
        Err(message) => {
            eprintln!("elasticache-local status: {message}");
            return EXIT_ERROR;
        }
    };
    let topology = match endpoint.get("/_emulator/topology").await {
        Ok((200, topology)) => topology,
        Ok((404, _)) => {
            eprintln!(
                "elasticache-local status: {} has no /_emulator/topology (an older elasticache-local?)",
                endpoint.url
            );
            return EXIT_ERROR;
        }
        Ok((status, body)) => {
            eprintln!("elasticache-local status: {}", super::server_message(status, &body));
            return EXIT_ERROR;
        }
        Err(message) => {
            eprintln!("elasticache-local status: {message}");
            return EXIT_ERROR;
        }
    };
    let report = render(&topology);
    print!("{}", report.text);
    if report.failed.is_empty() {
        return 0;
    }
    for failed in &report.failed {
        eprintln!("failed: {failed}");
    }
    EXIT_FAILED_RESOURCE
}

/// Statuses AWS leaves a resource in when it could not be created, restored or kept
/// running: only a change by the user (or a delete) gets it out.
pub fn is_failure(status: &str) -> bool {
    status == "failed" || status.ends_with("-failed") || status.starts_with("incompatible-")
}

/// The text `status` prints, and each resource in a failure status ("cache cluster c1 is
/// create-failed").
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub failed: Vec<String>,
}

pub fn render(topology: &Value) -> Report {
    let mut report = Report::default();
    let default_region = topology["default_region"].as_str().unwrap_or_default();
    for region in list(&topology["regions"]) {
        render_region(region, default_region, &mut report);
    }
    report
}

fn render_region(region: &Value, default_region: &str, report: &mut Report) {
    let name = text(&region["name"]);
    let zones = list(&region["zones"]);
    let zone_names: Vec<String> = zones
        .iter()
        .map(|z| {
            let zone = text(&z["name"]);
            if z["outage"].as_bool() == Some(true) { format!("{zone} (outage)") } else { zone }
        })
        .collect();
    let own = if name == default_region { " (default)" } else { "" };
    let _ = writeln!(report.text, "Region {name}{own}, zones: {}", zone_names.join(", "));

    let mut check = |kind: &str, id: String, status: &Value| {
        let status = text(status);
        if is_failure(&status) {
            report.failed.push(format!("{kind} {id} in {name} is {status}"));
        }
    };
    let mut tables = Vec::new();

    let groups = list(&region["replication_groups"]);
    let mut table = Table::new(&[
        "REPLICATION GROUP",
        "STATUS",
        "ENGINE",
        "CLUSTER MODE",
        "SHARDS",
        "FAILOVER",
        "PRIMARY ENDPOINT",
        "READER ENDPOINT",
        "CONFIGURATION ENDPOINT",
    ]);
    for g in groups {
        check("replication group", text(&g["id"]), &g["status"]);
        table.row(vec![
            text(&g["id"]),
            text(&g["status"]),
            engine(&g["engine"], &g["engine_version"]),
            if g["cluster_mode"].as_bool() == Some(true) { "enabled" } else { "disabled" }.to_string(),
            list(&g["shards"]).len().to_string(),
            text(&g["automatic_failover"]),
            text(&g["primary_endpoint"]),
            text(&g["reader_endpoint"]),
            text(&g["configuration_endpoint"]),
        ]);
    }
    tables.push(table);

    let mut table =
        Table::new(&["CACHE CLUSTER", "STATUS", "ENGINE", "REPLICATION GROUP", "NODES", "CONFIGURATION ENDPOINT"]);
    for c in list(&region["cache_clusters"]) {
        check("cache cluster", text(&c["id"]), &c["status"]);
        table.row(vec![
            text(&c["id"]),
            text(&c["status"]),
            engine(&c["engine"], &c["engine_version"]),
            text(&c["replication_group_id"]),
            text(&c["num_nodes"]),
            text(&c["configuration_endpoint"]),
        ]);
    }
    tables.push(table);

    let mut table = Table::new(&["SERVERLESS CACHE", "STATUS", "ENGINE", "ENDPOINT", "READER ENDPOINT"]);
    for s in list(&region["serverless_caches"]) {
        check("serverless cache", text(&s["name"]), &s["status"]);
        table.row(vec![
            text(&s["name"]),
            text(&s["status"]),
            engine(&s["engine"], &s["engine_version"]),
            text(&s["endpoint"]),
            text(&s["reader_endpoint"]),
        ]);
    }
    tables.push(table);

    let mut table = Table::new(&["GLOBAL DATASTORE", "STATUS", "MEMBERS"]);
    for g in list(&region["global_datastores"]) {
        check("global datastore", text(&g["id"]), &g["status"]);
        let members: Vec<String> = list(&g["members"])
            .iter()
            .map(|m| {
                let role = text(&m["role"]).to_ascii_lowercase();
                format!("{} ({}, {role})", text(&m["replication_group_id"]), text(&m["region"]))
            })
            .collect();
        table.row(vec![text(&g["id"]), text(&g["status"]), members.join(", ")]);
    }
    tables.push(table);

    // Long operations under way, when the server reports them (`progress`: one object per
    // operation, as the reconciler's progress table holds them).
    let mut table = Table::new(&["OPERATION", "RESOURCE", "DONE", "TOTAL", "PERCENT"]);
    for p in list(&region["progress"]) {
        let percent = match (p["done"].as_f64(), p["total"].as_f64()) {
            (Some(done), Some(total)) if total > 0.0 => format!("{:.0}%", 100.0 * done / total),
            _ => "-".to_string(),
        };
        table.row(vec![text(&p["operation"]), text(&p["resource"]), text(&p["done"]), text(&p["total"]), percent]);
    }
    tables.push(table);

    // Nodes zone by zone, in the region's zone order; a zone the region does not list last.
    let zone_rank = |zone: &str| zones.iter().position(|z| z["name"] == zone).unwrap_or(usize::MAX);
    let mut nodes: Vec<&Value> = list(&region["nodes"]).iter().collect();
    nodes.sort_by_key(|n| {
        let zone = text(&n["availability_zone"]);
        (zone_rank(&zone), zone, text(&n["cache_cluster_id"]), text(&n["cache_node_id"]))
    });
    let mut table = Table::new(&[
        "ZONE",
        "CACHE CLUSTER",
        "NODE",
        "ROLE",
        "HEALTH",
        "STATUS",
        "ENGINE",
        "ADDRESS",
        "PORT",
        "PID",
        "GROUP",
        "SHARD",
    ]);
    for n in nodes {
        table.row(vec![
            text(&n["availability_zone"]),
            text(&n["cache_cluster_id"]),
            text(&n["cache_node_id"]),
            text(&n["role"]),
            text(&n["health"]),
            text(&n["status"]),
            engine(&n["engine"], &n["engine_version"]),
            text(&n["address"]),
            text(&n["port"]),
            text(&n["pid"]),
            text(&n["replication_group_id"]),
            text(&n["node_group_id"]),
        ]);
    }
    tables.push(table);

    let shown: Vec<&Table> = tables.iter().filter(|t| !t.rows.is_empty()).collect();
    if shown.is_empty() {
        report.text.push_str("  no resources\n");
    }
    for table in shown {
        report.text.push('\n');
        report.text.push_str(&table.render());
    }
    report.text.push('\n');
}

/// The array at `value`, or none.
fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A cell: strings as they are, numbers and booleans as JSON writes them, nothing as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn engine(engine: &Value, version: &Value) -> String {
    match (engine.as_str(), version.as_str()) {
        (Some(engine), Some(version)) => format!("{engine} {version}"),
        _ => text(engine),
    }
}

/// Columns padded to their widest cell, two spaces apart.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "default_region": "us-east-1",
            "regions": [{
                "name": "us-east-1",
                "zones": [
                    {"name": "us-east-1a", "outage": false},
                    {"name": "us-east-1b", "outage": true},
                    {"name": "us-east-1c", "outage": false}
                ],
                "nodes": [
                    {"region": "us-east-1", "cache_cluster_id": "rg1-002", "cache_node_id": "0001",
                     "replication_group_id": "rg1", "node_group_id": "0001", "role": "replica",
                     "engine": "redis", "engine_version": "7.1.0", "availability_zone": "us-east-1b",
                     "address": "127.0.0.1", "port": 40002, "pid": null, "status": "available",
                     "health": "unreachable"},
                    {"region": "us-east-1", "cache_cluster_id": "rg1-001", "cache_node_id": "0001",
                     "replication_group_id": "rg1", "node_group_id": "0001", "role": "primary",
                     "engine": "redis", "engine_version": "7.1.0", "availability_zone": "us-east-1a",
                     "address": "127.0.0.1", "port": 40001, "pid": 4242, "status": "available",
                     "health": "healthy"}
                ],
                "replication_groups": [{
                    "id": "rg1", "status": "available", "engine": "redis", "engine_version": "7.1.0",
                    "cluster_mode": false, "primary_endpoint": "127.0.0.1:41000",
                    "reader_endpoint": "127.0.0.1:41001", "configuration_endpoint": null,
                    "automatic_failover": "enabled", "multi_az": "enabled",
                    "shards": [{"id": "0001", "slots": null, "status": "available", "primary": "rg1-001",
                                "members": ["rg1-001", "rg1-002"]}]
                }],
                "cache_clusters": [
                    {"id": "rg1-001", "status": "available", "engine": "redis", "engine_version": "7.1.0",
                     "replication_group_id": "rg1", "num_nodes": 1, "configuration_endpoint": null},
                    {"id": "broken", "status": "create-failed", "engine": "memcached",
                     "engine_version": "1.6.22", "replication_group_id": null, "num_nodes": 2,
                     "configuration_endpoint": "127.0.0.1:42000"}
                ],
                "serverless_caches": [{"name": "sc", "status": "available", "engine": "valkey",
                                       "endpoint": "127.0.0.1:43000", "reader_endpoint": "127.0.0.1:43001"}],
                "progress": [{"region": "us-east-1", "operation": "resharding", "resource": "rg1",
                              "done": 4096, "total": 16384}],
                "global_datastores": [{"id": "ldgnf-gd", "status": "primary-only",
                                       "members": [{"replication_group_id": "rg1", "region": "us-east-1",
                                                    "role": "PRIMARY"}]}]
            }, {
                "name": "us-west-2",
                "zones": [{"name": "us-west-2a", "outage": false}],
                "nodes": [], "replication_groups": [], "cache_clusters": [],
                "serverless_caches": [], "global_datastores": []
            }]
        })
    }

    #[test]
    fn every_resource_and_node_is_a_row() {
        let report = render(&sample());
        println!("{}", report.text);
        let text = &report.text;
        assert!(text.contains("Region us-east-1 (default), zones: us-east-1a, us-east-1b (outage), us-east-1c"));
        assert!(text.contains("Region us-west-2, zones: us-west-2a\n  no resources"));
        let row = |first: &str| {
            text.lines().find(|l| l.starts_with(first)).unwrap_or_else(|| panic!("no row {first}:\n{text}")).to_string()
        };
        let words = |line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            words(row("rg1 ")),
            [
                "rg1",
                "available",
                "redis",
                "7.1.0",
                "disabled",
                "1",
                "enabled",
                "127.0.0.1:41000",
                "127.0.0.1:41001",
                "-"
            ]
        );
        assert_eq!(
            words(row("broken")),
            ["broken", "create-failed", "memcached", "1.6.22", "-", "2", "127.0.0.1:42000"]
        );
        assert!(row("sc ").contains("127.0.0.1:43001"));
        assert!(row("ldgnf-gd").contains("rg1 (us-east-1, primary)"));
        // Zone order: us-east-1a's node before us-east-1b's.
        let primary = row("us-east-1a");
        let replica = row("us-east-1b");
        assert!(text.find(&primary) < text.find(&replica));
        assert_eq!(
            words(primary),
            [
                "us-east-1a",
                "rg1-001",
                "0001",
                "primary",
                "healthy",
                "available",
                "redis",
                "7.1.0",
                "127.0.0.1",
                "40001",
                "4242",
                "rg1",
                "0001"
            ]
        );
        assert_eq!(words(replica)[4], "unreachable");
        assert_eq!(words(row("resharding")), ["resharding", "rg1", "4096", "16384", "25%"]);
        assert_eq!(report.failed, ["cache cluster broken in us-east-1 is create-failed"]);
    }

    #[test]
    fn failure_statuses() {
        for status in ["create-failed", "restore-failed", "incompatible-parameters", "incompatible-network", "failed"] {
            assert!(is_failure(status), "{status}");
        }
        for status in ["available", "creating", "modifying", "primary-only", "snapshotting", "deleting"] {
            assert!(!is_failure(status), "{status}");
        }
    }
}
