//! Serverless caches on real nodes: one TLS endpoint (and a reader endpoint) in front of a
//! Redis Cluster, reached by cluster-aware and plain clients alike; snapshots with data,
//! restores, a user group applied live, a node killed behind the endpoint, and AWS's
//! answers to bad input.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{
    AuthenticationMode, CacheUsageLimits, DataStorage, DataStorageUnit, EcpuPerSecond, InputAuthenticationType,
    ServerlessCache,
};
use e2e::tls::{Transport, ca_pem, cluster_connection_as, connect, connect_as, install_crypto};
use e2e::{RedisClient, SETTLE, TestServer, admin_nodes, admin_post, expect_code, poll_until};
use redis::AsyncCommands;

pub(crate) async fn describe(client: &Client, name: &str) -> ServerlessCache {
    let out = client.describe_serverless_caches().serverless_cache_name(name).send().await.expect("Describe");
    out.serverless_caches().first().expect("the cache").clone()
}

pub(crate) async fn wait_available(client: &Client, name: &str) -> ServerlessCache {
    poll_until(&format!("serverless cache {name} available"), SETTLE, || async {
        let c = describe(client, name).await;
        if c.status() == Some("available") { Ok(c) } else { Err(format!("{:?}", c.status())) }
    })
    .await
}

pub(crate) async fn wait_snapshot(client: &Client, name: &str) {
    poll_until(&format!("serverless snapshot {name} available"), SETTLE, || async {
        let out = client.describe_serverless_cache_snapshots().serverless_cache_snapshot_name(name).send().await;
        let status = out
            .map_err(|e| format!("{e:?}"))?
            .serverless_cache_snapshots()
            .first()
            .and_then(|s| s.status().map(str::to_string));
        if status.as_deref() == Some("available") { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await
}

async fn create(client: &Client, name: &str) -> ServerlessCache {
    let out = client.create_serverless_cache().serverless_cache_name(name).engine("valkey").send().await;
    let created = out.expect("CreateServerlessCache").serverless_cache().expect("cache").clone();
    assert_eq!(created.status(), Some("creating"));
    assert!(created.endpoint().is_none(), "AWS's Create answer has no endpoint yet");
    wait_available(client, name).await
}

pub(crate) fn port(endpoint: Option<&aws_sdk_elasticache::types::Endpoint>) -> u16 {
    let endpoint = endpoint.expect("endpoint");
    assert_eq!(endpoint.address(), Some("127.0.0.1"));
    endpoint.port().expect("port") as u16
}

fn key(i: usize) -> String {
    format!("key:{i}")
}

#[tokio::test]
async fn a_serverless_cache_serves_cluster_and_plain_clients_over_tls_and_snapshots_its_data() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let cache = create(&client, "sessions").await;
    assert_eq!(cache.engine(), Some("valkey"));
    assert_eq!(cache.major_engine_version(), Some("8"));
    assert_eq!(cache.full_engine_version(), Some("8.0"));
    assert_eq!(cache.description(), Some(" "));
    assert_eq!(cache.daily_snapshot_time(), Some("05:00"));
    assert_eq!(cache.subnet_ids().len(), 3);
    assert_eq!(cache.arn(), Some("arn:aws:elasticache:us-east-1:000000000000:serverlesscache:sessions"));
    let (writer, reader) = (port(cache.endpoint()), port(cache.reader_endpoint()));
    assert_ne!(writer, reader);

    // Its nodes are its own: no group or cluster of the user's shows them.
    let groups = client.describe_replication_groups().send().await.expect("DescribeReplicationGroups");
    assert!(groups.replication_groups().is_empty(), "{groups:?}");
    let clusters = client.describe_cache_clusters().send().await.expect("DescribeCacheClusters");
    assert!(clusters.cache_clusters().is_empty(), "{clusters:?}");
    let nodes: Vec<_> =
        admin_nodes(&server).await.into_iter().filter(|n| n["serverless_cache"] == "sessions").collect();
    assert_eq!(nodes.len(), 2, "a primary and a replica: {nodes:?}");
    assert_ne!(nodes[0]["availability_zone"], nodes[1]["availability_zone"], "in different zones");

    // TLS only.
    assert!(connect(writer, Transport::Plain, None).await.is_err(), "plaintext is refused");
    // A client that does not speak the cluster protocol: keys of every slot through one address.
    let mut plain = connect(writer, Transport::Verified(&ca), None).await.expect("TLS connection");
    for i in 0..300 {
        let () = plain.set(key(i), i).await.expect("SET");
    }
    let size: usize = redis::cmd("DBSIZE").query_async(&mut plain).await.expect("DBSIZE");
    assert_eq!(size, 300);
    let crossed: redis::RedisResult<()> =
        redis::cmd("MSET").arg("a").arg(1).arg("b").arg(2).query_async(&mut plain).await;
    assert_eq!(crossed.unwrap_err().code(), Some("CROSSSLOT"));
    let () = redis::cmd("MSET").arg("{u}a").arg(1).arg("{u}b").arg(2).query_async(&mut plain).await.expect("MSET");
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut plain).await.expect("CLUSTER SLOTS");
    assert_eq!(format!("{slots:?}").matches("127.0.0.1").count(), 1, "one virtual shard at the endpoint: {slots:?}");

    // A cluster client bootstraps from the endpoint and sees every key.
    let mut cluster = cluster_connection_as(writer, &ca, None, None).await.expect("cluster client");
    for i in 0..300 {
        let v: Option<usize> = cluster.get(key(i)).await.expect("GET");
        assert_eq!(v, Some(i), "{}", key(i));
    }
    // The reader endpoint serves reads (from replicas, once they have the write).
    let read = connect(reader, Transport::Verified(&ca), None).await.expect("reader");
    poll_until("the last key on a replica", SETTLE, || async {
        let v: Option<usize> = read.clone().get(key(299)).await.map_err(|e| e.to_string())?;
        if v == Some(299) { Ok(()) } else { Err(format!("{v:?}")) }
    })
    .await;

    // A snapshot holds the data; a new cache restored from it has every key.
    let snap = client
        .create_serverless_cache_snapshot()
        .serverless_cache_name("sessions")
        .serverless_cache_snapshot_name("nightly")
        .send()
        .await
        .expect("CreateServerlessCacheSnapshot");
    let snap = snap.serverless_cache_snapshot().expect("snapshot").clone();
    assert_eq!(snap.serverless_cache_configuration().and_then(|c| c.serverless_cache_name()), Some("sessions"));
    wait_snapshot(&client, "nightly").await;
    let plain_snapshots = client.describe_snapshots().send().await.expect("DescribeSnapshots");
    assert!(plain_snapshots.snapshots().is_empty(), "{plain_snapshots:?}");
    client
        .create_serverless_cache()
        .serverless_cache_name("restored")
        .engine("valkey")
        .snapshot_arns_to_restore(snap.arn().expect("arn"))
        .send()
        .await
        .expect("restore");
    let restored = wait_available(&client, "restored").await;
    let mut con = connect(port(restored.endpoint()), Transport::Verified(&ca), None).await.expect("restored");
    for i in 0..300 {
        let v: Option<usize> = con.get(key(i)).await.expect("GET restored");
        assert_eq!(v, Some(i), "{} restored", key(i));
    }

    // A deleted cache leaves its final snapshot, and its nodes go.
    let out = client
        .delete_serverless_cache()
        .serverless_cache_name("sessions")
        .final_snapshot_name("last")
        .send()
        .await
        .expect("DeleteServerlessCache");
    assert_eq!(out.serverless_cache().and_then(|c| c.status()), Some("deleting"));
    poll_until("sessions gone", SETTLE, || async {
        match client.describe_serverless_caches().serverless_cache_name("sessions").send().await {
            Err(e) if format!("{e:?}").contains("ServerlessCacheNotFoundFault") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    wait_snapshot(&client, "last").await;
    assert!(admin_nodes(&server).await.iter().all(|n| n["serverless_cache"] != "sessions"));
}

#[tokio::test]
async fn the_endpoint_keeps_serving_through_a_dead_primary_and_a_zone_outage_and_a_user_group_applies_live() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let cache = create(&client, "live").await;
    let writer = port(cache.endpoint());
    let mut con = connect(writer, Transport::Verified(&ca), None).await.expect("TLS connection");
    for i in 0..100 {
        let () = con.set(key(i), i).await.expect("SET");
    }

    // The primary dies: the same connection keeps working once the replica took over.
    let primary = admin_nodes(&server)
        .await
        .into_iter()
        .find(|n| n["serverless_cache"] == "live" && n["role"] == "primary")
        .expect("primary");
    let path = format!(
        "/_emulator/nodes/{}/{}/kill",
        primary["cache_cluster_id"].as_str().expect("id"),
        primary["cache_node_id"].as_str().expect("node")
    );
    let (status, _) = admin_post(&server, &path).await;
    assert_eq!(status, 200);
    for i in 100..200 {
        let () = con.set(key(i), i).await.expect("SET through a failover");
    }
    // The zone of the (new) primary goes dark: the endpoint keeps serving from the other.
    let primary = poll_until("a primary again", SETTLE, || async {
        let nodes = admin_nodes(&server).await;
        let primary = nodes.into_iter().find(|n| n["serverless_cache"] == "live" && n["role"] == "primary");
        primary.filter(|p| p["health"] == "healthy").ok_or("no healthy primary".to_string())
    })
    .await;
    // A second failover keeps every write only once the replaced node has it: replication is
    // asynchronous, so the client asks the endpoint to WAIT for one replica, as a client that
    // needs durability across a zone outage does.
    // (Clones of a multiplexed connection share it, and so the endpoint's link to the node.)
    poll_until("the writes on the replaced node", SETTLE, || {
        let mut con = con.clone();
        async move {
            let acked: i64 =
                redis::cmd("WAIT").arg(1).arg(500).query_async(&mut con).await.map_err(|e| e.to_string())?;
            if acked >= 1 { Ok(()) } else { Err(format!("WAIT 1 answered {acked}")) }
        }
    })
    .await;
    let zone = primary["availability_zone"].as_str().expect("zone").to_string();
    let (status, _) = admin_post(&server, &format!("/_emulator/zones/{zone}/outage")).await;
    assert_eq!(status, 200);
    for i in 200..300 {
        let () = con.set(key(i), i).await.expect("SET during a zone outage");
    }
    let (status, _) = e2e::admin(&server, "DELETE", &format!("/_emulator/zones/{zone}/outage")).await;
    assert_eq!(status, 200);
    for i in 0..300 {
        let v: Option<usize> = con.get(key(i)).await.expect("GET");
        assert_eq!(v, Some(i), "{}", key(i));
    }

    // A user group: its users are the ACL behind the endpoint, applied live.
    let create_user = |id: &'static str, name: &'static str, access: &'static str| {
        client
            .create_user()
            .user_id(id)
            .user_name(name)
            .engine("redis")
            .access_string(access)
            .authentication_mode(
                AuthenticationMode::builder()
                    .r#type(InputAuthenticationType::Password)
                    .passwords(format!("{id}-password-0123456789"))
                    .build(),
            )
            .send()
    };
    create_user("locked", "default", "off -@all").await.expect("CreateUser");
    create_user("app", "app", "on ~app:* +@all").await.expect("CreateUser");
    client
        .create_user_group()
        .user_group_id("team")
        .engine("redis")
        .user_ids("locked")
        .user_ids("app")
        .send()
        .await
        .expect("CreateUserGroup");
    client.modify_serverless_cache().serverless_cache_name("live").user_group_id("team").send().await.expect("Modify");
    let cache = wait_available(&client, "live").await;
    assert_eq!(cache.user_group_id(), Some("team"));
    let groups = client.describe_user_groups().user_group_id("team").send().await.expect("DescribeUserGroups");
    assert_eq!(groups.user_groups()[0].serverless_caches(), ["live"]);
    poll_until("app limited to app:*", SETTLE, || async {
        let mut app = connect_as(writer, Transport::Verified(&ca), Some("app"), Some("app-password-0123456789"))
            .await
            .map_err(|e| e.to_string())?;
        let () = app.set("app:1", "v").await.map_err(|e| e.to_string())?;
        match app.set::<_, _, ()>("other:1", "v").await {
            Err(e) if e.to_string().contains("NOPERM") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    client
        .modify_serverless_cache()
        .serverless_cache_name("live")
        .remove_user_group(true)
        .send()
        .await
        .expect("Modify");
    wait_available(&client, "live").await;
    poll_until("no password again", SETTLE, || async {
        let mut open = connect(writer, Transport::Verified(&ca), None).await.map_err(|e| e.to_string())?;
        open.set::<_, _, ()>("other:1", "v").await.map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_aws_errors_and_changes_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let create = || client.create_serverless_cache().serverless_cache_name("c").engine("valkey");
    expect_code(
        client.create_serverless_cache().serverless_cache_name("c").engine("mysql").send().await,
        "InvalidParameterValue",
    );
    expect_code(create().major_engine_version("6").send().await, "InvalidParameterValue");
    expect_code(create().serverless_cache_name("-bad").send().await, "InvalidParameterValue");
    expect_code(create().snapshot_retention_limit(36).send().await, "InvalidParameterValue");
    expect_code(create().daily_snapshot_time("25:00").send().await, "InvalidParameterValue");
    expect_code(create().user_group_id("nobody").send().await, "UserGroupNotFound");
    let ecpu = CacheUsageLimits::builder().ecpu_per_second(EcpuPerSecond::builder().maximum(5).build()).build();
    let error = expect_code(create().cache_usage_limits(ecpu).send().await, "InvalidParameterValue");
    assert_eq!(
        error.message,
        "Invalid value for ECPUPerSecond limit. Must be between 1000 and 15000000. You can set the value to zero to remove the limit."
    );
    let storage = DataStorage::builder().maximum(6000).unit(DataStorageUnit::Gb).build();
    let big = CacheUsageLimits::builder().data_storage(storage).build();
    expect_code(create().cache_usage_limits(big).send().await, "InvalidParameterValue");
    let listed = client.describe_serverless_caches().send().await.expect("Describe");
    assert!(listed.serverless_caches().is_empty(), "nothing was created: {listed:?}");
    let error = expect_code(
        client.describe_serverless_caches().serverless_cache_name("c").send().await,
        "ServerlessCacheNotFoundFault",
    );
    assert_eq!(error.status, 404);

    let storage = DataStorage::builder().maximum(10).unit(DataStorageUnit::Gb).build();
    let limits = CacheUsageLimits::builder().data_storage(storage).build();
    create().cache_usage_limits(limits).send().await.expect("Create");
    expect_code(create().send().await, "ServerlessCacheAlreadyExistsFault");
    let modify = || client.modify_serverless_cache().serverless_cache_name("c");
    let error = expect_code(modify().send().await, "InvalidParameterCombination");
    assert_eq!(error.message, "No modifications were requested");
    let error =
        expect_code(modify().description("d").snapshot_retention_limit(1).send().await, "InvalidParameterCombination");
    assert_eq!(error.message, "Serverless Cache modifications only support modifying one field per request.");
    let error = expect_code(modify().engine("redis").send().await, "InvalidParameterValue");
    assert_eq!(error.message, "This API supports only cross-engine upgrades to Valkey engine currently");
    let c = describe(&client, "c").await;
    let limits = c.cache_usage_limits().and_then(|l| l.data_storage()).expect("data storage");
    assert_eq!((limits.maximum(), limits.minimum()), (Some(10), None), "kept as given");
    assert_eq!(c.snapshot_retention_limit(), Some(0));
}

#[tokio::test]
async fn writes_beyond_the_data_storage_limit_are_refused_and_reads_go_on() {
    install_crypto();
    // One "GB" is 4 MiB here, so the limit is reached with little data.
    let server = TestServer::start_with(|c| c.serverless_gb_bytes = 4 << 20).await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let storage = DataStorage::builder().maximum(1).unit(DataStorageUnit::Gb).build();
    let limits = CacheUsageLimits::builder().data_storage(storage).build();
    client
        .create_serverless_cache()
        .serverless_cache_name("small")
        .engine("redis")
        .cache_usage_limits(limits)
        .send()
        .await
        .expect("Create");
    let cache = wait_available(&client, "small").await;
    assert_eq!((cache.major_engine_version(), cache.full_engine_version()), (Some("7"), Some("7.1")));
    let mut con = connect(port(cache.endpoint()), Transport::Verified(&ca), None).await.expect("TLS connection");
    let value = "x".repeat(64 * 1024);
    let mut written = 0;
    let refusal = loop {
        match con.set::<_, _, ()>(key(written), &value).await {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "64 MiB written under a 4 MiB limit");
    };
    assert_eq!(refusal.code(), Some("OOM"), "{refusal}");
    assert!(written > 0);
    let first: Option<String> = con.get(key(0)).await.expect("reads go on");
    assert_eq!(first.as_deref(), Some(value.as_str()));

    // Lifting the limit lets writes in again.
    let lifted = DataStorage::builder().maximum(0).unit(DataStorageUnit::Gb).build();
    client
        .modify_serverless_cache()
        .serverless_cache_name("small")
        .cache_usage_limits(CacheUsageLimits::builder().data_storage(lifted).build())
        .send()
        .await
        .expect("Modify");
    let cache = wait_available(&client, "small").await;
    assert!(cache.cache_usage_limits().is_none(), "a bound of 0 removes it: {cache:?}");
    poll_until("writes accepted again", SETTLE, || async {
        con.clone().set::<_, _, ()>(key(written), &value).await.map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn serverless_caches_and_their_snapshots_carry_tags() {
    let server = TestServer::start().await;
    let client = server.client();
    let tag = |k: &str, v: &str| aws_sdk_elasticache::types::Tag::builder().key(k).value(v).build();
    let out = client
        .create_serverless_cache()
        .serverless_cache_name("tagged")
        .engine("valkey")
        .tags(tag("team", "a"))
        .send()
        .await
        .expect("Create");
    let arn = out.serverless_cache().and_then(|c| c.arn()).expect("arn").to_string();
    wait_available(&client, "tagged").await;
    let listed = client.list_tags_for_resource().resource_name(&arn).send().await.expect("ListTagsForResource");
    assert_eq!(listed.tag_list().len(), 1, "{listed:?}");
    let snap = client
        .create_serverless_cache_snapshot()
        .serverless_cache_name("tagged")
        .serverless_cache_snapshot_name("s1")
        .tags(tag("kind", "nightly"))
        .send()
        .await
        .expect("snapshot");
    let snap_arn = snap.serverless_cache_snapshot().and_then(|s| s.arn()).expect("arn").to_string();
    let listed = client.list_tags_for_resource().resource_name(&snap_arn).send().await.expect("ListTagsForResource");
    assert_eq!(listed.tag_list().first().and_then(|t| t.value()), Some("nightly"));
    let unknown = snap_arn.replace(":s1", ":nope");
    expect_code(
        client.list_tags_for_resource().resource_name(unknown).send().await,
        "ServerlessCacheSnapshotNotFoundFault",
    );
}

/// Daily snapshots (on the emulator's sped-up clock) of a cache with a retention limit:
/// automated, AWS-named, pruned to the limit, and never among the replication-group
/// snapshots.
#[tokio::test]
async fn daily_snapshots_keep_to_the_retention_limit() {
    let server = TestServer::start().await;
    let client = server.client();
    let create = client.create_serverless_cache().serverless_cache_name("daily").engine("valkey");
    create.snapshot_retention_limit(1).send().await.expect("CreateServerlessCache");
    wait_available(&client, "daily").await;
    let automated = || async {
        let out = client
            .describe_serverless_cache_snapshots()
            .serverless_cache_name("daily")
            .snapshot_type("automated")
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let listed = out.serverless_cache_snapshots().iter();
        Ok::<_, String>(
            listed
                .map(|s| {
                    (s.serverless_cache_snapshot_name().unwrap_or_default().to_string(), s.status().map(str::to_string))
                })
                .collect::<Vec<_>>(),
        )
    };
    let mut taken = Vec::new();
    for day in 0..2 {
        let (status, body) = admin_post(&server, "/_emulator/snapshots/automated").await;
        assert_eq!(status, 200, "{body}");
        let name = body["snapshots"].as_array().and_then(|s| s.first()).and_then(|s| s.as_str()).map(str::to_string);
        let name = name.unwrap_or_else(|| panic!("day {day}: no snapshot started: {body}"));
        assert!(name.starts_with("automatic.daily-"), "{name}");
        poll_until(&format!("day {day}: only {name}, available"), SETTLE, || async {
            let listed = automated().await?;
            if listed == [(name.clone(), Some("available".to_string()))] { Ok(()) } else { Err(format!("{listed:?}")) }
        })
        .await;
        wait_available(&client, "daily").await;
        taken.push(name);
    }
    assert_ne!(taken[0], taken[1]);
    let snapshots = client.describe_snapshots().send().await.expect("DescribeSnapshots");
    assert!(snapshots.snapshots().is_empty(), "{snapshots:?}");
}

/// More data than a shard holds adds a shard behind the endpoint while a writer and a
/// reader go on through it, with no error and no key lost; once most of it is deleted,
/// the shard goes again. (The test makes a shard hold 2 MiB; values are 15,000 bytes.)
#[tokio::test]
async fn the_cache_scales_out_and_in_behind_its_endpoint_without_an_error_or_a_lost_key() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    crate::logs();
    install_crypto();
    let server = TestServer::start_with(|c| c.serverless_shard_bytes = 2 << 20).await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let cache = create(&client, "grows").await;
    let endpoint = port(cache.endpoint());
    let value = |i: usize| format!("{i}:{}", "v".repeat(15_000));
    let primaries = || async {
        let nodes = admin_nodes(&server).await;
        let mine = nodes.into_iter().filter(|n| n["serverless_cache"] == "grows" && n["role"] == "primary");
        mine.map(|n| (n["node_group_id"].as_str().map(str::to_string), n["port"].as_u64())).collect::<Vec<_>>()
    };

    // The reader reads back, over and over, every key written so far.
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = connect(endpoint, Transport::Verified(&ca), None).await.expect("reader");
    let reading = tokio::spawn({
        let (written, stop) = (written.clone(), stop.clone());
        async move {
            let (mut reads, mut next) = (0usize, 0usize);
            while !stop.load(Ordering::SeqCst) {
                let n = written.load(Ordering::SeqCst);
                if n == 0 {
                    tokio::task::yield_now().await;
                    continue;
                }
                let i = next % n;
                let got: Option<String> = reader.get(key(i)).await.map_err(|e| format!("GET {}: {e}", key(i)))?;
                if got.as_deref() != Some(value(i).as_str()) {
                    return Err(format!("GET {} answered {:?}", key(i), got.map(|v| v.len())));
                }
                (reads, next) = (reads + 1, next + 7);
            }
            Ok::<usize, String>(reads)
        }
    });
    let mut writer = connect(endpoint, Transport::Verified(&ca), None).await.expect("writer");
    let mut keys = 0;
    let mut write = async |count: usize| {
        for _ in 0..count {
            let () = writer.set(key(keys), value(keys)).await.unwrap_or_else(|e| panic!("SET {}: {e}", key(keys)));
            keys += 1;
            written.store(keys, Ordering::SeqCst);
        }
    };

    // About 3 MiB: a second shard comes; the writer goes on while it takes half the slots.
    write(200).await;
    poll_until("a second shard", SETTLE, || async {
        let found = primaries().await;
        if found.len() == 2 { Ok(()) } else { Err(format!("{found:?}")) }
    })
    .await;
    write(20).await;
    poll_until("the new shard owning half of the slots", SETTLE, || async {
        let found = primaries().await.into_iter().find(|(shard, _)| shard.as_deref() == Some("0002"));
        let port = found.and_then(|(_, p)| u16::try_from(p?).ok()).ok_or("no primary of shard 0002 yet")?;
        let mut node = connect(port, Transport::Plain, None).await.map_err(|e| e.to_string())?;
        let nodes: String =
            redis::cmd("CLUSTER").arg("NODES").query_async(&mut node).await.map_err(|e| e.to_string())?;
        let owned = e2e::cluster::owned_slots(&nodes);
        if owned == 8192 { Ok(()) } else { Err(format!("{owned} slots")) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let reads = reading.await.expect("reader task").expect("every read answered right");
    assert!(reads > 0);
    let keys = written.load(Ordering::SeqCst);
    for k in 0..keys {
        let got: Option<String> = writer.get(key(k)).await.expect("GET");
        assert_eq!(got, Some(value(k)), "{}", key(k));
    }

    // Most of it deleted: back to one shard, the rest of the keys still there.
    for k in 10..keys {
        let _: usize = writer.del(key(k)).await.expect("DEL");
    }
    poll_until("one shard again", SETTLE, || async {
        let found = primaries().await;
        if found.len() == 1 { Ok(()) } else { Err(format!("{found:?}")) }
    })
    .await;
    for k in 0..10 {
        let got: Option<String> = writer.get(key(k)).await.expect("GET after scaling in");
        assert_eq!(got, Some(value(k)), "{}", key(k));
    }
    assert_eq!(describe(&client, "grows").await.status(), Some("available"));
}

/// A scale-out that the machine has no room for is put off, changing nothing: the cache
/// stays available on its one shard with all its data, and scales out once room is made.
/// (The machine holds 4 nodes: the cache's shard takes 2, a Memcached cluster the other 2.)
#[tokio::test]
async fn a_scale_out_past_what_the_machine_holds_waits_for_room_and_changes_nothing() {
    crate::logs();
    let server = TestServer::start_with(|c| {
        c.serverless_shard_bytes = 2 << 20;
        c.node_capacity = nodes::capacity::Capacity::configured(4);
    })
    .await;
    let client = server.client();
    create(&client, "full").await;
    client
        .create_cache_cluster()
        .cache_cluster_id("room")
        .engine("memcached")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(2)
        .send()
        .await
        .expect("a cluster taking the rest of the machine");
    e2e::wait_cluster_available(&client, "room").await;
    let primaries = || async {
        let nodes = admin_nodes(&server).await;
        let primaries = nodes.into_iter().filter(|n| n["serverless_cache"] == "full" && n["role"] == "primary");
        primaries.filter_map(|n| u16::try_from(n["port"].as_u64()?).ok()).collect::<Vec<_>>()
    };
    let [primary] = primaries().await[..] else { panic!("one shard to begin with") };

    // About 3 MiB on the one shard: more than it holds, so the cache wants a second one.
    let mut writer = RedisClient::connect("127.0.0.1", primary).await.expect("the primary");
    for i in 0..200 {
        writer.set(&key(i), &"v".repeat(15_000)).await.expect("SET");
    }
    // The scaler weighs the data with `INFO memory`: seen twice from here on, it has
    // weighed all of it at least once and asked for the shard it could not have.
    let mut monitor = RedisClient::connect("127.0.0.1", primary).await.expect("the primary");
    monitor.command(&["MONITOR"]).await.expect("MONITOR");
    let mut weighed = 0;
    while weighed < 2 {
        let line = monitor.next_reply().await.expect("a monitored command").text().unwrap_or_default();
        weighed += usize::from(line.contains(r#""INFO" "memory""#));
    }
    assert_eq!(primaries().await, [primary], "still one shard");
    assert_eq!(writer.dbsize().await.expect("DBSIZE"), 200);
    assert_eq!(describe(&client, "full").await.status(), Some("available"));

    client.delete_cache_cluster().cache_cluster_id("room").send().await.expect("DeleteCacheCluster");
    poll_until("a second shard once there is room", SETTLE, || async {
        let found = primaries().await;
        if found.len() == 2 { Ok(found) } else { Err(format!("{found:?}")) }
    })
    .await;
    assert_eq!(wait_available(&client, "full").await.status(), Some("available"));
}

#[tokio::test]
async fn a_redis_cache_moves_to_valkey_and_up_a_major_version_with_its_data() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    client.create_serverless_cache().serverless_cache_name("up").engine("redis").send().await.expect("Create");
    let cache = wait_available(&client, "up").await;
    assert_eq!((cache.major_engine_version(), cache.full_engine_version()), (Some("7"), Some("7.1")));
    let endpoint = port(cache.endpoint());
    let mut con = connect(endpoint, Transport::Verified(&ca), None).await.expect("TLS connection");
    for i in 0..100 {
        let () = con.set(key(i), i).await.expect("SET");
    }

    let modify = || client.modify_serverless_cache().serverless_cache_name("up");
    let out = modify().engine("valkey").major_engine_version("8").send().await.expect("Modify");
    assert_eq!(out.serverless_cache().and_then(|c| c.status()), Some("modifying"));
    let cache = poll_until("up on valkey 8", SETTLE, || async {
        let c = describe(&client, "up").await;
        let nodes = admin_nodes(&server).await;
        let on_valkey = nodes.iter().filter(|n| n["serverless_cache"] == "up").all(|n| n["engine"] == "valkey");
        if c.status() == Some("available") && on_valkey { Ok(c) } else { Err(format!("{:?}", c.status())) }
    })
    .await;
    assert_eq!(
        (cache.engine(), cache.major_engine_version(), cache.full_engine_version()),
        (Some("valkey"), Some("8"), Some("8.0"))
    );
    assert_eq!(port(cache.endpoint()), endpoint, "the same endpoint");
    let mut con = connect(endpoint, Transport::Verified(&ca), None).await.expect("TLS connection");
    for i in 0..100 {
        let v: Option<usize> = con.get(key(i)).await.expect("GET");
        assert_eq!(v, Some(i), "{} after the upgrade", key(i));
    }

    // Versions only go up, and Valkey is the only engine to move to.
    expect_code(modify().major_engine_version("7").send().await, "InvalidParameterCombination");
    let error = expect_code(modify().engine("redis").send().await, "InvalidParameterValue");
    assert_eq!(error.message, "This API supports only cross-engine upgrades to Valkey engine currently");
    assert_eq!(describe(&client, "up").await.major_engine_version(), Some("8"));
}

#[tokio::test]
async fn at_its_ecpu_maximum_the_cache_is_throttled_and_no_command_fails() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let ecpu = CacheUsageLimits::builder().ecpu_per_second(EcpuPerSecond::builder().maximum(1_000).build()).build();
    let out = client.create_serverless_cache().serverless_cache_name("slow").engine("valkey").cache_usage_limits(ecpu);
    out.send().await.expect("Create");
    let cache = wait_available(&client, "slow").await;
    let mut con = connect(port(cache.endpoint()), Transport::Verified(&ca), None).await.expect("TLS connection");
    // 1,000 ECPU/s with a second of them at once: 2,500 small SETs (one ECPU each) take
    // 1.5 s at least, and none of them fails.
    let started = std::time::Instant::now();
    for i in 0..2_500 {
        let () = con.set(key(i), i).await.expect("SET at the ECPU maximum");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= std::time::Duration::from_millis(1_400), "not throttled: {elapsed:?}");
    let v: Option<usize> = con.get(key(2_499)).await.expect("GET");
    assert_eq!(v, Some(2_499));
}
