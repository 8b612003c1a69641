//! Transit encryption (TLS) and AUTH tokens on real redis-server processes, through
//! `aws-sdk-elasticache` and the `redis` crate over rustls: verified and unverified TLS, the
//! token and its absence (NOAUTH), plaintext refused in mode `required` and accepted in
//! `preferred`, the migration path between modes, token rotation under load, cluster mode
//! over TLS, AWS's validation, and no token anywhere in the API's or admin API's answers.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod rbac;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{AuthTokenUpdateStatus, AuthTokenUpdateStrategyType, TransitEncryptionMode};
use e2e::tls::{Transport, ca_pem, connect, install_crypto};
use e2e::{SETTLE, TestServer, admin_nodes, describe_cluster, expect_code, poll_until, wait_group_available};
use redis::AsyncCommands;

const TOKEN_A: &str = "first-token-0123456789!&#$^<>-";
const TOKEN_B: &str = "second-token-9876543210abcdef";

async fn create_group(client: &Client, id: &str, tls: Option<TransitEncryptionMode>, token: Option<&str>) {
    let mut request = client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("security")
        .cache_node_type("cache.t3.micro")
        .engine("redis")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true);
    if let Some(mode) = tls {
        request = request.transit_encryption_enabled(true).transit_encryption_mode(mode);
    }
    if let Some(token) = token {
        request = request.auth_token(token);
    }
    request.send().await.expect("CreateReplicationGroup");
}

/// The primary and reader endpoint ports of an available group.
async fn endpoints(client: &Client, id: &str) -> (u16, u16) {
    let g = wait_group_available(client, id).await;
    let shard = &g.node_groups()[0];
    let port = |e: Option<&aws_sdk_elasticache::types::Endpoint>| e.and_then(|e| e.port()).expect("endpoint") as u16;
    (port(shard.primary_endpoint()), port(shard.reader_endpoint()))
}

async fn ping(port: u16, transport: Transport<'_>, password: Option<&str>) -> Result<String, String> {
    let mut con = connect(port, transport, password).await.map_err(|e| e.to_string())?;
    redis::cmd("PING").query_async::<String>(&mut con).await.map_err(|e| e.to_string())
}

/// Nothing the API or the admin API answers about `id` may contain a token.
async fn assert_no_token_visible(server: &TestServer, client: &Client, id: &str, tokens: &[&str]) {
    let group = format!("{:?}", client.describe_replication_groups().replication_group_id(id).send().await.unwrap());
    let clusters = format!("{:?}", client.describe_cache_clusters().show_cache_node_info(true).send().await.unwrap());
    let events = format!("{:?}", client.describe_events().duration(60).send().await.unwrap());
    let nodes = format!("{:?}", admin_nodes(server).await);
    for token in tokens {
        for (what, text) in [("group", &group), ("clusters", &clusters), ("events", &events), ("nodes", &nodes)] {
            assert!(!text.contains(token), "a token appears in the {what} output");
        }
    }
}

#[tokio::test]
async fn tls_required_with_token() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    create_group(&client, "sec", Some(TransitEncryptionMode::Required), Some(TOKEN_A)).await;
    let (primary, reader) = endpoints(&client, "sec").await;
    let ca = ca_pem(&server).await.expect("CA");
    assert!(String::from_utf8_lossy(&ca).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(std::fs::read(server.state_path().join("tls/ca.pem")).unwrap(), ca);

    let g = wait_group_available(&client, "sec").await;
    assert_eq!(g.transit_encryption_enabled(), Some(true));
    assert_eq!(g.transit_encryption_mode(), Some(&TransitEncryptionMode::Required));
    assert_eq!(g.auth_token_enabled(), Some(true));
    assert!(g.auth_token_last_modified_date().is_some());
    let member = describe_cluster(&client, "sec-001").await;
    assert_eq!(member.transit_encryption_enabled(), Some(true));
    assert_eq!(member.auth_token_enabled(), Some(true));

    // With the token, verified against the CA and without verification.
    let mut con = connect(primary, Transport::Verified(&ca), Some(TOKEN_A)).await.expect("verified TLS + token");
    let _: () = con.set("k", "v").await.expect("SET");
    assert_eq!(ping(primary, Transport::Insecure, Some(TOKEN_A)).await.as_deref(), Ok("PONG"));
    // The replica got it over TLS replication, authenticated with masterauth.
    poll_until("the replica has k", SETTLE, || async {
        let mut r = connect(reader, Transport::Verified(&ca), Some(TOKEN_A)).await.map_err(|e| e.to_string())?;
        let value: Option<String> = r.get("k").await.map_err(|e| e.to_string())?;
        if value.as_deref() == Some("v") { Ok(()) } else { Err(format!("{value:?}")) }
    })
    .await;
    // Without the token: NOAUTH. With a wrong one: refused at AUTH.
    let refused = ping(primary, Transport::Verified(&ca), None).await.unwrap_err();
    assert!(refused.contains("NOAUTH"), "{refused}");
    assert!(ping(primary, Transport::Verified(&ca), Some("wrong-token-0123456789")).await.is_err());
    // Plaintext to a TLS-only endpoint, and to a node: refused.
    assert!(ping(primary, Transport::Plain, Some(TOKEN_A)).await.is_err());
    let node_port = member.cache_nodes()[0].endpoint().and_then(|e| e.port()).unwrap() as u16;
    assert!(ping(node_port, Transport::Plain, Some(TOKEN_A)).await.is_err());
    assert_eq!(ping(node_port, Transport::Verified(&ca), Some(TOKEN_A)).await.as_deref(), Ok("PONG"));

    assert_no_token_visible(&server, &client, "sec", &[TOKEN_A]).await;
    // Node configs hold the token: owner-only.
    let conf = server.state_path().join("nodes/us-east-1/000000000000/sec-001/0001/redis.conf");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&conf).expect("redis.conf").permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn another_emulators_ca_is_not_trusted() {
    install_crypto();
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let client = server.client();
    create_group(&client, "ca", Some(TransitEncryptionMode::Required), None).await;
    let (primary, _) = endpoints(&client, "ca").await;
    let ours = ca_pem(&server).await.unwrap();
    let theirs = ca_pem(&other).await.unwrap();
    assert_ne!(ours, theirs);
    assert_eq!(ping(primary, Transport::Verified(&ours), None).await.as_deref(), Ok("PONG"));
    let refused = ping(primary, Transport::Verified(&theirs), None).await.unwrap_err();
    assert!(!refused.is_empty());
    // The CA survives a restart of the emulator on the same state dir.
    let dir = server.stop().await;
    let again = TestServer::start_in(dir).await;
    assert_eq!(ca_pem(&again).await.unwrap(), ours);
}

#[tokio::test]
async fn preferred_mode_and_the_migration_path() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.unwrap();
    create_group(&client, "mig", None, None).await;
    let (primary, reader) = endpoints(&client, "mig").await;
    let mut plain = connect(primary, Transport::Plain, None).await.unwrap();
    let _: () = plain.set("before", "1").await.unwrap();

    // Straight to `required` is refused: AWS's two steps go through `preferred`.
    let modify = || client.modify_replication_group().replication_group_id("mig").apply_immediately(true);
    expect_code(
        modify().transit_encryption_enabled(true).transit_encryption_mode(TransitEncryptionMode::Required).send().await,
        "InvalidParameterCombination",
    );
    let out = modify()
        .transit_encryption_enabled(true)
        .transit_encryption_mode(TransitEncryptionMode::Preferred)
        .send()
        .await
        .expect("enable TLS, preferred");
    assert_eq!(out.replication_group().unwrap().transit_encryption_mode(), Some(&TransitEncryptionMode::Preferred));
    wait_group_available(&client, "mig").await;
    // Both on the same endpoints.
    for port in [primary, reader] {
        assert_eq!(ping(port, Transport::Plain, None).await.as_deref(), Ok("PONG"));
        assert_eq!(ping(port, Transport::Verified(&ca), None).await.as_deref(), Ok("PONG"));
    }
    let _: () = plain.set("during", "1").await.expect("a plaintext connection made before keeps working");

    modify().transit_encryption_mode(TransitEncryptionMode::Required).send().await.expect("required");
    let g = wait_group_available(&client, "mig").await;
    assert_eq!(g.transit_encryption_mode(), Some(&TransitEncryptionMode::Required));
    poll_until("plaintext refused on the primary endpoint", SETTLE, || async {
        match ping(primary, Transport::Plain, None).await {
            Err(_) => Ok(()),
            Ok(pong) => Err(pong),
        }
    })
    .await;
    let mut tls = connect(primary, Transport::Verified(&ca), None).await.unwrap();
    let kept: Option<String> = tls.get("before").await.unwrap();
    assert_eq!(kept.as_deref(), Some("1"), "the data survives the switch to TLS");

    // And back: disabling goes through `preferred` too.
    expect_code(modify().transit_encryption_enabled(false).send().await, "InvalidParameterCombination");
    modify().transit_encryption_mode(TransitEncryptionMode::Preferred).send().await.expect("preferred");
    wait_group_available(&client, "mig").await;
    assert_eq!(ping(primary, Transport::Plain, None).await.as_deref(), Ok("PONG"));
    modify().transit_encryption_enabled(false).send().await.expect("disable");
    let g = wait_group_available(&client, "mig").await;
    assert_eq!(g.transit_encryption_enabled(), Some(false));
    assert_eq!(g.transit_encryption_mode(), None);
    assert_eq!(ping(primary, Transport::Plain, None).await.as_deref(), Ok("PONG"));
    poll_until("TLS refused once encryption is off", SETTLE, || async {
        match ping(primary, Transport::Insecure, None).await {
            Err(_) => Ok(()),
            Ok(pong) => Err(pong),
        }
    })
    .await;
}

#[tokio::test]
async fn token_rotation_under_load() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    create_group(&client, "rot", Some(TransitEncryptionMode::Required), Some(TOKEN_A)).await;
    let (primary, _) = endpoints(&client, "rot").await;
    let ca = ca_pem(&server).await.unwrap();
    let before = wait_group_available(&client, "rot").await.auth_token_last_modified_date().cloned();

    // A writer on the old token, through the primary endpoint, for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut writer = connect(primary, Transport::Verified(&ca), Some(TOKEN_A)).await.unwrap();
    let task = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match writer.incr::<_, _, i64>("counter", 1).await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        eprintln!("write failed during rotation: {e}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let out = client
        .modify_replication_group()
        .replication_group_id("rot")
        .auth_token(TOKEN_B)
        .auth_token_update_strategy(AuthTokenUpdateStrategyType::Rotate)
        .apply_immediately(true)
        .send()
        .await
        .expect("ROTATE");
    let g = out.replication_group().unwrap();
    assert_eq!(g.status(), Some("modifying"));
    assert_eq!(g.pending_modified_values().and_then(|p| p.auth_token_status()), Some(&AuthTokenUpdateStatus::Rotating));
    let g = wait_group_available(&client, "rot").await;
    assert!(g.pending_modified_values().and_then(|p| p.auth_token_status()).is_none());
    assert!(g.auth_token_last_modified_date().cloned() > before);
    // Both tokens work on new connections, on every node.
    assert_eq!(ping(primary, Transport::Verified(&ca), Some(TOKEN_B)).await.as_deref(), Ok("PONG"));
    assert_eq!(ping(primary, Transport::Verified(&ca), Some(TOKEN_A)).await.as_deref(), Ok("PONG"));
    tokio::time::sleep(Duration::from_millis(100)).await;

    client
        .modify_replication_group()
        .replication_group_id("rot")
        .auth_token(TOKEN_B)
        .auth_token_update_strategy(AuthTokenUpdateStrategyType::Set)
        .apply_immediately(true)
        .send()
        .await
        .expect("SET");
    wait_group_available(&client, "rot").await;
    assert_eq!(ping(primary, Transport::Verified(&ca), Some(TOKEN_B)).await.as_deref(), Ok("PONG"));
    let refused = ping(primary, Transport::Verified(&ca), Some(TOKEN_A)).await.unwrap_err();
    assert!(refused.to_uppercase().contains("WRONGPASS") || refused.contains("AuthenticationFailed"), "{refused}");
    tokio::time::sleep(Duration::from_millis(100)).await;

    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok > 100, "the writer made progress ({ok} writes)");
    assert_eq!(failed, 0, "no write failed during the rotation");
    // Replication still authenticates (masterauth follows the token).
    let mut con = connect(primary, Transport::Verified(&ca), Some(TOKEN_B)).await.unwrap();
    let _: () = con.set("after", "1").await.unwrap();
    let replica = describe_cluster(&client, "rot-002").await;
    let replica_port = replica.cache_nodes()[0].endpoint().and_then(|e| e.port()).unwrap() as u16;
    poll_until("the replica follows after SET", SETTLE, || async {
        let mut r = connect(replica_port, Transport::Verified(&ca), Some(TOKEN_B)).await.map_err(|e| e.to_string())?;
        let value: Option<String> = r.get("after").await.map_err(|e| e.to_string())?;
        if value.as_deref() == Some("1") { Ok(()) } else { Err(format!("{value:?}")) }
    })
    .await;
    assert_no_token_visible(&server, &client, "rot", &[TOKEN_A, TOKEN_B]).await;
}

#[tokio::test]
async fn validation_of_tokens_and_combinations() {
    let server = TestServer::start().await;
    let client = server.client();
    let create = |token: &str| {
        client
            .create_replication_group()
            .replication_group_id("bad")
            .replication_group_description("d")
            .cache_node_type("cache.t3.micro")
            .engine("redis")
            .transit_encryption_enabled(true)
            .auth_token(token)
    };
    for bad in ["too-short-token", "has-an-at-sign-@-0123456", "has a space in it 0123456", "slash/0123456789abcdef"] {
        let error = expect_code(create(bad).send().await, "InvalidParameterValue");
        assert!(!error.message.contains(bad), "the error repeats the token: {}", error.message);
    }
    expect_code(create(&"x".repeat(129)).send().await, "InvalidParameterValue");
    expect_code(
        client
            .create_replication_group()
            .replication_group_id("bad")
            .replication_group_description("d")
            .cache_node_type("cache.t3.micro")
            .auth_token(TOKEN_A)
            .send()
            .await,
        "InvalidParameterCombination",
    );
    expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("bad")
            .cache_node_type("cache.t3.micro")
            .engine("redis")
            .auth_token(TOKEN_A)
            .send()
            .await,
        "InvalidParameterCombination",
    );

    // Modify: SET needs a token to replace, DELETE a move to RBAC, a token needs TLS.
    create_group(&client, "plain", None, None).await;
    wait_group_available(&client, "plain").await;
    let modify = || client.modify_replication_group().replication_group_id("plain").apply_immediately(true);
    expect_code(modify().auth_token(TOKEN_A).send().await, "InvalidParameterCombination");
    create_group(&client, "tok", Some(TransitEncryptionMode::Required), Some(TOKEN_A)).await;
    wait_group_available(&client, "tok").await;
    let modify = || client.modify_replication_group().replication_group_id("tok").apply_immediately(true);
    expect_code(
        modify().auth_token_update_strategy(AuthTokenUpdateStrategyType::Delete).send().await,
        "InvalidParameterCombination",
    );
    expect_code(modify().auth_token("bad@token-0123456789").send().await, "InvalidParameterValue");
}

#[tokio::test]
async fn single_node_cache_cluster_with_tls_and_token() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("solo")
        .cache_node_type("cache.t3.micro")
        .engine("redis")
        .transit_encryption_enabled(true)
        .auth_token(TOKEN_A)
        .send()
        .await
        .expect("CreateCacheCluster");
    let c = e2e::wait_cluster_available(&client, "solo").await;
    assert_eq!(c.transit_encryption_enabled(), Some(true));
    assert_eq!(c.transit_encryption_mode(), Some(&TransitEncryptionMode::Required));
    assert_eq!(c.auth_token_enabled(), Some(true));
    let c = describe_cluster(&client, "solo").await;
    let port = c.cache_nodes()[0].endpoint().and_then(|e| e.port()).unwrap() as u16;
    let ca = ca_pem(&server).await.unwrap();
    assert_eq!(ping(port, Transport::Verified(&ca), Some(TOKEN_A)).await.as_deref(), Ok("PONG"));
    assert!(ping(port, Transport::Verified(&ca), None).await.unwrap_err().contains("NOAUTH"));
    assert!(ping(port, Transport::Plain, Some(TOKEN_A)).await.is_err());
    let nodes = format!("{:?}", admin_nodes(&server).await);
    assert!(!nodes.contains(TOKEN_A));

    // ModifyCacheCluster rotates, then sets, the token live.
    let modify = || client.modify_cache_cluster().cache_cluster_id("solo").apply_immediately(true);
    let out = modify()
        .auth_token(TOKEN_B)
        .auth_token_update_strategy(AuthTokenUpdateStrategyType::Rotate)
        .send()
        .await
        .expect("rotate");
    assert_eq!(out.cache_cluster().and_then(|c| c.cache_cluster_status()), Some("modifying"));
    e2e::wait_cluster_available(&client, "solo").await;
    assert_eq!(ping(port, Transport::Verified(&ca), Some(TOKEN_A)).await.as_deref(), Ok("PONG"));
    assert_eq!(ping(port, Transport::Verified(&ca), Some(TOKEN_B)).await.as_deref(), Ok("PONG"));
    modify()
        .auth_token(TOKEN_B)
        .auth_token_update_strategy(AuthTokenUpdateStrategyType::Set)
        .send()
        .await
        .expect("set");
    e2e::wait_cluster_available(&client, "solo").await;
    assert!(ping(port, Transport::Verified(&ca), Some(TOKEN_A)).await.is_err(), "the old token is refused after SET");
    assert_eq!(ping(port, Transport::Verified(&ca), Some(TOKEN_B)).await.as_deref(), Ok("PONG"));
    expect_code(modify().auth_token("short").send().await, "InvalidParameterValue");
}

#[tokio::test]
async fn cluster_mode_over_tls_with_token() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_replication_group()
        .replication_group_id("cme")
        .replication_group_description("cluster mode over TLS")
        .cache_node_type("cache.t3.micro")
        .engine("redis")
        .num_node_groups(2)
        .replicas_per_node_group(1)
        .transit_encryption_enabled(true)
        .auth_token(TOKEN_A)
        .send()
        .await
        .expect("CreateReplicationGroup");
    let g = wait_group_available(&client, "cme").await;
    assert_eq!(g.transit_encryption_enabled(), Some(true));
    let port = g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16;
    let ca = ca_pem(&server).await.unwrap();
    let mut con = e2e::tls::cluster_connection(port, &ca, TOKEN_A).await.expect("cluster client over TLS");
    e2e::cluster::write_keys(&mut con, 0..300).await.expect("writes to every shard");
    assert!(e2e::cluster::missing_keys(&mut con, 0..300).await.is_empty());
    assert!(ping(port, Transport::Plain, Some(TOKEN_A)).await.is_err());
    let refused = ping(port, Transport::Verified(&ca), None).await.unwrap_err();
    assert!(refused.contains("NOAUTH"), "{refused}");
    assert_no_token_visible(&server, &client, "cme", &[TOKEN_A]).await;

    // Snapshot and restore into TLS-only shards: the keys are moved over TLS.
    client.create_snapshot().replication_group_id("cme").snapshot_name("cme-snap").send().await.expect("snapshot");
    poll_until("the snapshot available", SETTLE, || async {
        let out = client.describe_snapshots().snapshot_name("cme-snap").send().await.map_err(|e| format!("{e:?}"))?;
        let status = out.snapshots().first().and_then(|s| s.snapshot_status()).map(str::to_string);
        if status.as_deref() == Some("available") { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;
    client
        .create_replication_group()
        .replication_group_id("cme-copy")
        .replication_group_description("restored over TLS")
        .cache_node_type("cache.t3.micro")
        .num_node_groups(3)
        .transit_encryption_enabled(true)
        .auth_token(TOKEN_B)
        .snapshot_name("cme-snap")
        .send()
        .await
        .expect("restore into a TLS cluster");
    let copy = wait_group_available(&client, "cme-copy").await;
    let port = copy.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16;
    let mut con = e2e::tls::cluster_connection(port, &ca, TOKEN_B).await.expect("cluster client over TLS");
    assert_eq!(e2e::cluster::missing_keys(&mut con, 0..300).await, Vec::<String>::new());
}
