//! Serverless Memcached on real nodes: one TLS endpoint in front of two memcached nodes in
//! different zones that mirror each other; snapshots with data and restores; a node and a
//! zone lost behind the endpoint; and AWS's answers to what Memcached does not offer.

use aws_sdk_elasticache::types::ServerlessCache;
use e2e::tls::{ca_pem, install_crypto};
use e2e::{MemcachedClient, SETTLE, TestServer, admin, admin_nodes, admin_post, expect_code, poll_until};

use crate::serverless::{describe, port, wait_available, wait_snapshot};

const ADDRESS: &str = "127.0.0.1";

async fn create_memcached(client: &aws_sdk_elasticache::Client, name: &str) -> ServerlessCache {
    let out = client.create_serverless_cache().serverless_cache_name(name).engine("memcached").send().await;
    assert_eq!(out.expect("CreateServerlessCache").serverless_cache().and_then(|c| c.status()), Some("creating"));
    wait_available(client, name).await
}

/// The cache's nodes as the admin API lists them.
async fn mirrors(server: &TestServer, cache: &str) -> Vec<serde_json::Value> {
    admin_nodes(server).await.into_iter().filter(|n| n["serverless_cache"] == cache).collect()
}

async fn set_all(client: &mut MemcachedClient, keys: std::ops::Range<usize>) {
    for i in keys {
        client.set(&format!("key:{i}"), &i.to_string()).await.expect("set");
    }
}

async fn missing(client: &mut MemcachedClient, keys: std::ops::Range<usize>) -> Vec<usize> {
    let mut missing = Vec::new();
    for i in keys {
        if client.get(&format!("key:{i}")).await.expect("get") != Some(i.to_string()) {
            missing.push(i);
        }
    }
    missing
}

#[tokio::test]
async fn a_serverless_memcached_cache_mirrors_its_data_over_two_zones_behind_one_tls_endpoint() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let cache = create_memcached(&client, "mc").await;
    assert_eq!(cache.engine(), Some("memcached"));
    assert_eq!(cache.major_engine_version(), Some("1.6"));
    assert_eq!(cache.full_engine_version(), Some("1.6.22"));
    assert!(cache.reader_endpoint().is_none(), "a serverless Memcached cache has no reader endpoint");
    let endpoint = port(cache.endpoint());
    let clusters = client.describe_cache_clusters().send().await.expect("DescribeCacheClusters");
    assert!(clusters.cache_clusters().is_empty(), "its nodes are its own: {clusters:?}");
    let nodes = mirrors(&server, "mc").await;
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert_ne!(nodes[0]["availability_zone"], nodes[1]["availability_zone"], "in different zones");

    // TLS only; AWS's limits on commands.
    let mut plain = MemcachedClient::connect(ADDRESS, endpoint).await.expect("TCP");
    assert!(plain.version().await.is_err(), "plaintext is refused");
    let mut con = MemcachedClient::connect_tls(ADDRESS, endpoint, &ca).await.expect("TLS");
    assert!(con.version().await.expect("version").starts_with("VERSION 1.6"));
    let delayed = con.raw(b"flush_all 10\r\n", &[b"\r\n"]).await.expect("flush_all 10");
    assert!(delayed.starts_with(b"CLIENT_ERROR"), "{}", String::from_utf8_lossy(&delayed));
    assert_eq!(con.raw(b"stats slabs\r\n", &[b"\r\n"]).await.expect("stats slabs"), b"ERROR\r\n");
    set_all(&mut con, 0..200).await;
    assert_eq!(missing(&mut con, 0..200).await, Vec::<usize>::new());
    // Every write reached both mirrors.
    for node in &nodes {
        let node_port = u16::try_from(node["port"].as_u64().expect("port")).expect("port");
        let mut direct = MemcachedClient::connect(ADDRESS, node_port).await.expect("node");
        assert_eq!(missing(&mut direct, 0..200).await, Vec::<usize>::new(), "on {}", node["cache_node_id"]);
    }

    // A snapshot holds the data; Memcached snapshots are not exported (AWS: Valkey and Redis OSS only).
    let snapshot = client
        .create_serverless_cache_snapshot()
        .serverless_cache_name("mc")
        .serverless_cache_snapshot_name("mc-snap")
        .send()
        .await
        .expect("CreateServerlessCacheSnapshot");
    let snapshot_arn = snapshot.serverless_cache_snapshot().and_then(|s| s.arn()).expect("arn").to_string();
    wait_snapshot(&client, "mc-snap").await;
    let described = client.describe_serverless_cache_snapshots().serverless_cache_name("mc").send().await;
    let described = described.expect("DescribeServerlessCacheSnapshots");
    let configuration = described.serverless_cache_snapshots()[0].serverless_cache_configuration().expect("config");
    assert_eq!(
        (configuration.engine(), configuration.major_engine_version(), configuration.serverless_cache_name()),
        (Some("memcached"), Some("1.6"), Some("mc"))
    );
    expect_code(
        client
            .export_serverless_cache_snapshot()
            .serverless_cache_snapshot_name("mc-snap")
            .s3_bucket_name("b")
            .send()
            .await,
        "InvalidParameterValue",
    );

    // A node dies: the endpoint keeps serving from its mirror.
    let first = &nodes[0];
    let kill = format!(
        "/_emulator/nodes/{}/{}/kill",
        first["cache_cluster_id"].as_str().expect("cluster"),
        first["cache_node_id"].as_str().expect("node")
    );
    assert_eq!(admin_post(&server, &kill).await.0, 200);
    let mut con = MemcachedClient::connect_tls(ADDRESS, endpoint, &ca).await.expect("TLS");
    assert_eq!(missing(&mut con, 0..200).await, Vec::<usize>::new(), "served by the mirror");
    set_all(&mut con, 200..300).await;
    // Back (empty), the killed node is filled from its mirror: it holds every key again.
    poll_until("the killed node refilled from its mirror", SETTLE, || async {
        let restarted = mirrors(&server, "mc").await.into_iter().find(|n| n["cache_node_id"] == "0001");
        let node_port = restarted.and_then(|n| n["port"].as_u64()).ok_or("no port")?;
        let node_port = u16::try_from(node_port).map_err(|e| e.to_string())?;
        let mut direct = MemcachedClient::connect(ADDRESS, node_port).await.map_err(|e| e.to_string())?;
        let lost = missing(&mut direct, 0..300).await;
        if lost.is_empty() { Ok(()) } else { Err(format!("{} keys missing", lost.len())) }
    })
    .await;
    // The other zone goes dark: the node back from its crash serves everything alone.
    let zone = nodes[1]["availability_zone"].as_str().expect("zone").to_string();
    assert_eq!(admin_post(&server, &format!("/_emulator/zones/{zone}/outage")).await.0, 200);
    let mut con = MemcachedClient::connect_tls(ADDRESS, endpoint, &ca).await.expect("TLS");
    assert_eq!(missing(&mut con, 0..300).await, Vec::<usize>::new(), "served by the restarted node alone");
    assert_eq!(admin(&server, "DELETE", &format!("/_emulator/zones/{zone}/outage")).await.0, 200);

    // A new cache restored from the snapshot has the snapshot's keys.
    client
        .create_serverless_cache()
        .serverless_cache_name("mc-restored")
        .engine("memcached")
        .snapshot_arns_to_restore(snapshot_arn)
        .send()
        .await
        .expect("restore");
    let restored = wait_available(&client, "mc-restored").await;
    let mut con = MemcachedClient::connect_tls(ADDRESS, port(restored.endpoint()), &ca).await.expect("TLS");
    assert_eq!(missing(&mut con, 0..200).await, Vec::<usize>::new(), "restored");

    // Deleted with a final snapshot: the snapshot stays, the nodes go.
    client
        .delete_serverless_cache()
        .serverless_cache_name("mc")
        .final_snapshot_name("mc-last")
        .send()
        .await
        .expect("DeleteServerlessCache");
    wait_snapshot(&client, "mc-last").await;
    poll_until("mc's nodes gone", SETTLE, || async {
        let left = mirrors(&server, "mc").await.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} nodes")) }
    })
    .await;
}

#[tokio::test]
async fn what_memcached_does_not_offer_gets_aws_errors_and_changes_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let create = || client.create_serverless_cache().serverless_cache_name("m").engine("memcached");
    expect_code(create().major_engine_version("7").send().await, "InvalidParameterValue");
    expect_code(create().user_group_id("any").send().await, "InvalidParameterCombination");
    let listed = client.describe_serverless_caches().send().await.expect("Describe");
    assert!(listed.serverless_caches().is_empty(), "nothing was created: {listed:?}");

    create_memcached(&client, "m").await;
    let modify = || client.modify_serverless_cache().serverless_cache_name("m");
    expect_code(modify().engine("valkey").send().await, "InvalidParameterCombination");
    expect_code(modify().major_engine_version("1.6").send().await, "InvalidParameterCombination");
    expect_code(modify().remove_user_group(true).send().await, "InvalidParameterCombination");
    let cache = describe(&client, "m").await;
    assert_eq!((cache.engine(), cache.status()), (Some("memcached"), Some("available")));
}
