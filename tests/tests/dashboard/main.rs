//! The dashboard's data and page: `GET /_emulator/topology` against Describe, and the live
//! event stream. Each test starts its own server with real redis-server nodes.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod events;
mod page;
mod topology;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::ReplicationGroup;
use e2e::{TestServer, admin};
use serde_json::Value;

/// CreateReplicationGroup: one shard of `members` redis 7.1 nodes, Multi-AZ with automatic
/// failover, so its members spread over the zones.
pub async fn create_group(client: &Client, id: &str, members: i32) -> ReplicationGroup {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description(format!("dashboard {id}"))
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(members)
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id}: {e:?}"))
        .replication_group
        .expect("CreateReplicationGroup returned no ReplicationGroup")
}

/// `GET /_emulator/topology`.
pub async fn topology(server: &TestServer) -> Value {
    let (status, body) = admin(server, "GET", "/_emulator/topology").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The topology's entry for `region`.
pub fn region<'a>(topology: &'a Value, region: &str) -> &'a Value {
    topology["regions"]
        .as_array()
        .and_then(|regions| regions.iter().find(|r| r["name"] == region))
        .unwrap_or_else(|| panic!("no region {region} in {topology}"))
}

/// `host:port` of a Describe endpoint.
pub fn host_port(endpoint: Option<&aws_sdk_elasticache::types::Endpoint>) -> Value {
    match endpoint {
        Some(e) => Value::String(format!("{}:{}", e.address().unwrap(), e.port().unwrap())),
        None => Value::Null,
    }
}
