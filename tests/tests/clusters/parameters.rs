//! A redis node running a custom parameter group: values reach the real process at start,
//! live when the group changes, and survive a reboot.

use aws_sdk_elasticache::types::ParameterNameValue;
use e2e::{Resp, TestServer, poll_until};

use crate::*;

fn pnv(name: &str, value: &str) -> ParameterNameValue {
    ParameterNameValue::builder().parameter_name(name).parameter_value(value).build()
}

/// Creates the redis7 parameter group `lfu`, whose `maxmemory-policy` is `allkeys-lfu`.
pub(crate) async fn create_lfu_group(client: &Client) {
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("lfu")
        .cache_parameter_group_family("redis7")
        .description("lfu")
        .send()
        .await
        .unwrap();
    client
        .modify_cache_parameter_group()
        .cache_parameter_group_name("lfu")
        .parameter_name_values(pnv("maxmemory-policy", "allkeys-lfu"))
        .send()
        .await
        .unwrap();
}

/// Polls until `CONFIG GET name` on the node shows `value`.
async fn wait_config_value(port: u16, name: &str, value: &str) {
    poll_until(&format!("CONFIG GET {name} = {value} on port {port}"), SETTLE, || async {
        let mut redis = e2e::RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        let seen = redis.config_get(name).await.map_err(|e| e.to_string())?;
        if seen.as_deref() == Some(value) { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await
}

#[tokio::test]
async fn redis_node_follows_its_parameter_group() {
    let server = TestServer::start().await;
    let client = server.client();
    create_lfu_group(&client).await;

    let created = create_redis(&client, "params", "cache.t3.micro", Some("lfu")).await;
    assert_eq!(created.cache_cluster_status(), Some("creating"));
    let c = wait_cluster_available(&client, "params").await;
    assert_eq!(c.cache_parameter_group().and_then(|g| g.cache_parameter_group_name()), Some("lfu"));
    assert_eq!(c.cache_parameter_group().and_then(|g| g.parameter_apply_status()), Some("in-sync"));
    assert_eq!(c.preferred_availability_zone(), nodes(&c).first().map(|n| n.zone.as_str()));
    assert!(c.configuration_endpoint().is_none(), "redis clusters have no configuration endpoint");
    let node = nodes(&c).remove(0);
    assert_eq!(node.id, "0001");

    let mut redis = wait_redis(node.port).await;
    assert_eq!(redis.config_get("maxmemory-policy").await.unwrap().as_deref(), Some("allkeys-lfu"));
    assert_eq!(
        redis.config_get("maxmemory").await.unwrap().as_deref(),
        Some("536870912"),
        "AWS's maxmemory for cache.t3.micro"
    );
    let Resp::Bulk(Some(info)) = redis.command(&["INFO", "server"]).await.unwrap() else { panic!("INFO") };
    let info = String::from_utf8_lossy(&info).into_owned();
    let running = info.lines().find_map(|l| l.strip_prefix("redis_version:")).expect("redis_version in INFO");
    assert_eq!(c.engine_version(), Some("7.1.0"), "EngineVersion is AWS's for the version asked for");
    let binary = admin_node(&server, c.cache_cluster_id().unwrap(), "0001").await["binary"]["version"].clone();
    assert_eq!(binary.as_str(), Some(running.trim()), "/_emulator/nodes names the binary that runs");
    redis.set("before-reboot", "1").await.unwrap();
    assert_eq!(redis.get("before-reboot").await.unwrap().as_deref(), Some("1"));

    // Changing the group changes the running node, without a restart.
    let pid_before = admin_node(&server, "params", "0001").await["pid"].as_u64().expect("pid");
    client
        .modify_cache_parameter_group()
        .cache_parameter_group_name("lfu")
        .parameter_name_values(pnv("maxmemory-policy", "volatile-ttl"))
        .send()
        .await
        .unwrap();
    wait_config_value(node.port, "maxmemory-policy", "volatile-ttl").await;
    assert_eq!(
        admin_node(&server, "params", "0001").await["pid"].as_u64(),
        Some(pid_before),
        "a dynamic parameter is applied without restarting the node"
    );
    poll_until("parameter apply status in-sync", SETTLE, || async {
        let c = describe_cluster(&client, "params").await;
        let status = c.cache_parameter_group().and_then(|g| g.parameter_apply_status()).map(str::to_string);
        if status.as_deref() == Some("in-sync") { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;

    // Switching the cluster to another group applies that group's values.
    client
        .modify_cache_cluster()
        .cache_cluster_id("params")
        .cache_parameter_group_name("default.redis7")
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyCacheCluster CacheParameterGroupName");
    let c = wait_cluster_available(&client, "params").await;
    assert_eq!(c.cache_parameter_group().and_then(|g| g.cache_parameter_group_name()), Some("default.redis7"));
    wait_config_value(node.port, "maxmemory-policy", "volatile-lru").await;
    client
        .modify_cache_cluster()
        .cache_cluster_id("params")
        .cache_parameter_group_name("lfu")
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyCacheCluster back to lfu");
    wait_cluster_available(&client, "params").await;
    wait_config_value(node.port, "maxmemory-policy", "volatile-ttl").await;

    // Reboot: same port, a new process, the group still applied.
    let out = client
        .reboot_cache_cluster()
        .cache_cluster_id("params")
        .cache_node_ids_to_reboot("0001")
        .send()
        .await
        .expect("RebootCacheCluster")
        .cache_cluster
        .unwrap();
    assert_eq!(out.cache_cluster_status(), Some("rebooting cache cluster nodes"));
    let c = wait_cluster_available(&client, "params").await;
    let after = nodes(&c).remove(0);
    assert_eq!(after.port, node.port, "same port after reboot");
    let mut redis = wait_redis(after.port).await;
    let pid_after = admin_node(&server, "params", "0001").await["pid"].as_u64().expect("pid after reboot");
    assert_ne!(pid_after, pid_before, "a reboot restarts the node process");
    assert!(!process_alive(pid_before), "the old process is gone");
    assert_eq!(redis.config_get("maxmemory-policy").await.unwrap().as_deref(), Some("volatile-ttl"));
    assert_eq!(redis.config_get("maxmemory").await.unwrap().as_deref(), Some("536870912"));
    // Whether the key survived depends on persistence; only that GET works is required.
    redis.get("before-reboot").await.expect("GET after reboot");
    wait_events(
        &client,
        SourceType::CacheCluster,
        "params",
        &["Cache node 0001 shutdown", "Cache node 0001 restarted"],
    )
    .await;

    delete(&client, "params").await;
    assert!(e2e::port_refuses(node.port).await);
    server.stop().await;
}
