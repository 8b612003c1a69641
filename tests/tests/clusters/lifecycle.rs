//! A cross-az memcached cluster from creation to deletion: real nodes, the Auto Discovery
//! configuration endpoint, scaling out and in.

use std::collections::BTreeSet;

use e2e::{MemcachedClient, TestServer, ZONES, port_refuses};

use crate::*;

#[tokio::test]
async fn memcached_cross_az_cluster_lifecycle() {
    let server = TestServer::start().await;
    let client = server.client();

    let created = create_memcached(&client, "Mc-Life", 3, true).await;
    assert_eq!(created.cache_cluster_id(), Some("mc-life"), "ids are stored lowercase");
    assert_eq!(created.cache_cluster_status(), Some("creating"));
    assert_eq!(created.engine(), Some("memcached"));
    assert_eq!(created.num_cache_nodes(), Some(3));

    let c = wait_cluster_available(&client, "mc-life").await;
    assert_eq!(c.num_cache_nodes(), Some(3));
    assert_eq!(c.engine_version(), Some("1.6.22"), "AWS's newest Memcached, whatever binary serves it");
    assert_eq!(c.preferred_availability_zone(), Some("Multiple"), "cross-az nodes");
    let view = nodes(&c);
    assert_eq!(view.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["0001", "0002", "0003"]);
    let zones: BTreeSet<&str> = view.iter().map(|n| n.zone.as_str()).collect();
    assert_eq!(zones, ZONES.into_iter().collect::<BTreeSet<_>>(), "3 nodes spread over 3 zones: {view:?}");
    let ports: BTreeSet<u16> = view.iter().map(|n| n.port).collect();
    assert_eq!(ports.len(), 3, "one port per node: {view:?}");
    for n in c.cache_nodes() {
        assert!(n.cache_node_create_time().is_some(), "{n:?}");
        assert_eq!(n.parameter_group_status(), Some("in-sync"), "{n:?}");
    }
    for n in &view {
        assert_eq!(n.address, "127.0.0.1");
        assert_eq!(n.status, "available");
    }

    // Every node is its own memcached: what one stores, the others do not see.
    for (i, n) in view.iter().enumerate() {
        let mut mc = MemcachedClient::connect(&n.address, n.port).await.expect("connect to node");
        mc.set(&format!("key-{i}"), &format!("value-{i}")).await.expect("set");
        assert_eq!(mc.get(&format!("key-{i}")).await.expect("get"), Some(format!("value-{i}")));
        let version = mc.version().await.expect("version");
        let binary = admin_node(&server, "mc-life", &n.id).await["binary"]["version"].clone();
        assert_eq!(Some(version.as_str()), binary.as_str().map(|b| format!("VERSION {b}")).as_deref(), "{binary}");
    }
    let mut second = MemcachedClient::connect("127.0.0.1", view[1].port).await.unwrap();
    assert_eq!(second.get("key-0").await.unwrap(), None, "nodes do not share data");

    // Auto Discovery.
    let cfg = c.configuration_endpoint().expect("memcached clusters have a ConfigurationEndpoint");
    assert_eq!(cfg.address(), Some("127.0.0.1"));
    let cfg_port = u16::try_from(cfg.port().expect("configuration endpoint port")).unwrap();
    assert!(!ports.contains(&cfg_port), "the configuration endpoint has its own port");
    let v1 = wait_config(cfg_port, &view).await;
    let mut discovery = MemcachedClient::connect("127.0.0.1", cfg_port).await.unwrap();
    let reply = discovery.config_get_cluster().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(&config_reply(v1, &view)),
        "config get cluster, byte for byte"
    );
    assert_eq!(discovery.config_get_cluster().await.unwrap(), reply, "asked twice on one connection");

    // Anything else sent to the configuration endpoint reaches node 0001.
    let mut proxied = MemcachedClient::connect("127.0.0.1", cfg_port).await.unwrap();
    proxied.set("via-cfg", "proxied").await.expect("set through the configuration endpoint");
    assert_eq!(proxied.get("via-cfg").await.unwrap(), Some("proxied".into()));
    assert_eq!(proxied.get("key-0").await.unwrap(), Some("value-0".into()), "node 0001's data");
    let mut first = MemcachedClient::connect("127.0.0.1", view[0].port).await.unwrap();
    assert_eq!(first.get("via-cfg").await.unwrap(), Some("proxied".into()), "stored on node 0001");

    // Scale out to 4.
    let out = client
        .modify_cache_cluster()
        .cache_cluster_id("mc-life")
        .num_cache_nodes(4)
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyCacheCluster NumCacheNodes=4")
        .cache_cluster
        .unwrap();
    assert_eq!(out.cache_cluster_status(), Some("modifying"));
    let c = wait_cluster_available(&client, "mc-life").await;
    assert_eq!(c.num_cache_nodes(), Some(4));
    let view4 = nodes(&c);
    assert_eq!(view4.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["0001", "0002", "0003", "0004"]);
    assert_eq!(&view4[..3], &view[..], "existing nodes keep their endpoints");
    let mut fourth = MemcachedClient::connect("127.0.0.1", view4[3].port).await.expect("node 0004 answers");
    fourth.set("k4", "v4").await.unwrap();
    assert_eq!(fourth.get("k4").await.unwrap(), Some("v4".into()));
    let v2 = wait_config(cfg_port, &view4).await;
    assert!(v2 > v1, "config version grows when a node is added: {v1} -> {v2}");
    assert_eq!(
        u16::try_from(c.configuration_endpoint().and_then(|e| e.port()).unwrap()).unwrap(),
        cfg_port,
        "the configuration endpoint stays"
    );

    // Scale in: remove 0002.
    client
        .modify_cache_cluster()
        .cache_cluster_id("mc-life")
        .num_cache_nodes(3)
        .cache_node_ids_to_remove("0002")
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyCacheCluster NumCacheNodes=3 removing 0002");
    let c = wait_cluster_available(&client, "mc-life").await;
    assert_eq!(c.num_cache_nodes(), Some(3));
    let view3 = nodes(&c);
    assert_eq!(view3.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["0001", "0003", "0004"]);
    assert!(port_refuses(view4[1].port).await, "removed node 0002 (port {}) still accepts connections", view4[1].port);
    let v3 = wait_config(cfg_port, &view3).await;
    assert!(v3 > v2, "config version grows when a node is removed: {v2} -> {v3}");

    let events = wait_events(
        &client,
        SourceType::CacheCluster,
        "mc-life",
        &["Cache cluster created", "Removed cache nodes 0002"],
    )
    .await;
    for n in &view4 {
        let added = format!("Added cache node {} in availability zone {}", n.id, n.zone);
        assert!(events.contains(&added), "{added:?} in {events:?}");
    }
    assert!(events.iter().any(|e| e == "Removed cache nodes 0002"), "{events:?}");

    // Delete.
    delete(&client, "mc-life").await;
    for n in &view4 {
        assert!(port_refuses(n.port).await, "node {} (port {}) still listening after delete", n.id, n.port);
    }
    assert!(port_refuses(cfg_port).await, "configuration endpoint still listening after delete");
    assert!(
        admin_nodes(&server).await.iter().all(|n| n["cache_cluster_id"] != "mc-life"),
        "admin API still lists nodes of a deleted cluster"
    );
    let left = paths_named(&server.state_path().join("nodes"), "mc-life");
    assert!(left.is_empty(), "node directories of a deleted cluster remain: {left:?}");
    let events = wait_events(&client, SourceType::CacheCluster, "mc-life", &["Cache cluster deleted"]).await;
    assert_eq!(events.last().map(String::as_str), Some("Cache cluster deleted"), "{events:?}");
    e2e::expect_code(client.describe_cache_clusters().cache_cluster_id("mc-life").send().await, "CacheClusterNotFound");
    server.stop().await;
}
