//! `GET /_emulator/topology`: what Describe says, arranged by region and zone.

use e2e::{REGION, SETTLE, TestServer, ZONES, admin, poll_until, wait_group_available};
use serde_json::Value;

use crate::{create_group, host_port, region, topology};

#[tokio::test]
async fn topology_shows_a_group_as_describe_does_with_its_nodes_in_their_zones() {
    let server = TestServer::start().await;
    let client = server.client();

    // An empty server still lists its own region and zones.
    let empty = topology(&server).await;
    assert_eq!(empty["default_region"], REGION);
    let own = region(&empty, REGION);
    let zones: Vec<&str> = own["zones"].as_array().unwrap().iter().map(|z| z["name"].as_str().unwrap()).collect();
    assert_eq!(zones, ZONES);
    assert!(own["zones"].as_array().unwrap().iter().all(|z| z["outage"] == false), "{own}");
    assert_eq!(own["replication_groups"], Value::Array(vec![]));

    create_group(&client, "topo", 3).await;
    let described = wait_group_available(&client, "topo").await;
    let shard = &described.node_groups()[0];
    let members = shard.node_group_members();
    let primary = members.iter().find(|m| m.current_role() == Some("primary")).unwrap();
    let primary_id = primary.cache_cluster_id().unwrap();
    // The health monitor's first verdict lands after "available"; wait for it so the two
    // snapshots compared below cannot straddle it.
    poll_until("three healthy nodes", SETTLE, || async {
        let nodes = e2e::admin_nodes(&server).await;
        let healthy = nodes.len() == 3 && nodes.iter().all(|n| n["health"] == "healthy");
        if healthy { Ok(()) } else { Err(format!("{nodes:?}")) }
    })
    .await;

    let t = topology(&server).await;
    let own = region(&t, REGION);
    let group = own["replication_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "topo")
        .unwrap_or_else(|| panic!("no group topo in {own}"));
    assert_eq!(group["status"], "available");
    assert_eq!(group["engine"], "redis");
    assert_eq!(group["engine_version"], members_version(own, "topo"));
    assert_eq!(group["cluster_mode"], false);
    assert_eq!(group["automatic_failover"], "enabled");
    assert_eq!(group["multi_az"], "enabled");
    // The endpoints are Describe's, to the letter.
    assert_eq!(group["primary_endpoint"], host_port(shard.primary_endpoint()), "{group}");
    assert_eq!(group["reader_endpoint"], host_port(shard.reader_endpoint()), "{group}");
    assert_eq!(group["configuration_endpoint"], Value::Null);
    assert!(group["primary_endpoint"].is_string());
    let shards = group["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "{group}");
    assert_eq!(shards[0]["id"], "0001");
    assert_eq!(shards[0]["primary"], primary_id);
    let mut listed: Vec<&str> = shards[0]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = members.iter().map(|m| m.cache_cluster_id().unwrap()).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);

    // Every member is a node in the zone Describe names, the primary the one primary.
    let nodes = own["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{own}");
    for m in members {
        let id = m.cache_cluster_id().unwrap();
        let node = nodes.iter().find(|n| n["cache_cluster_id"] == id).unwrap_or_else(|| panic!("no node {id}"));
        assert_eq!(node["availability_zone"], m.preferred_availability_zone().unwrap(), "{node}");
        assert_eq!(node["role"], if id == primary_id { "primary" } else { "replica" }, "{node}");
        assert_eq!(node["replication_group_id"], "topo");
        assert_eq!(node["node_group_id"], "0001");
        assert!(zones.contains(&node["availability_zone"].as_str().unwrap()));
        let endpoint = format!("{}:{}", node["address"].as_str().unwrap(), node["port"]);
        assert_eq!(Value::String(endpoint), host_port(m.read_endpoint()), "{node}");
        let cluster = own["cache_clusters"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap();
        assert_eq!(cluster["replication_group_id"], "topo");
        assert_eq!(cluster["num_nodes"], 1);
    }
    let zones_used: std::collections::BTreeSet<&str> =
        nodes.iter().map(|n| n["availability_zone"].as_str().unwrap()).collect();
    assert_eq!(zones_used.len(), 3, "Multi-AZ spreads the members: {nodes:?}");
    // The nodes are exactly `/_emulator/nodes`'s objects.
    assert_eq!(Value::Array(e2e::admin_nodes(&server).await), own["nodes"]);

    // A zone outage shows on its zone (a replica's zone: the primary stays where it is).
    let replica_zone = members.iter().find(|m| m.current_role() == Some("replica")).unwrap();
    let zone = replica_zone.preferred_availability_zone().unwrap();
    let path = format!("/_emulator/zones/{zone}/outage");
    assert_eq!(admin(&server, "POST", &path).await.0, 200);
    let t = topology(&server).await;
    let down: Vec<&Value> =
        region(&t, REGION)["zones"].as_array().unwrap().iter().filter(|z| z["outage"] == true).collect();
    assert_eq!(down.len(), 1, "{t}");
    assert_eq!(down[0]["name"], zone);
    assert_eq!(admin(&server, "DELETE", &path).await.0, 200);
    let t = topology(&server).await;
    assert!(region(&t, REGION)["zones"].as_array().unwrap().iter().all(|z| z["outage"] == false), "{t}");
}

/// The version the group's member clusters show.
fn members_version(region: &Value, group: &str) -> Value {
    region["cache_clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["replication_group_id"] == group)
        .map(|c| c["engine_version"].clone())
        .unwrap()
}
