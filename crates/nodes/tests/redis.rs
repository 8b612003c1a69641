//! Real redis-server nodes: data path, parameters at start and live.

mod common;

use std::time::Duration;

use common::*;
use nodes::{EngineKind, Engines, Health, NodeError, Runtime};

#[tokio::test]
async fn redis_node_serves_data_and_takes_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let mut spec = spec(dir.path(), EngineKind::Redis, "params");
    spec.parameters = params(&[
        ("maxmemory-policy", "allkeys-lru"),
        ("timeout", "300"),
        ("notify-keyspace-events", "Ex"),
        ("client-output-buffer-limit-pubsub-soft-seconds", "30"),
        // AWS-only or emulator-owned: must be skipped, not make redis refuse to start.
        ("reserved-memory-percent", "25"),
        ("close-on-replica-write", "yes"),
        ("cluster-enabled", "yes"),
        ("rename-commands", "FLUSHALL blah"),
        ("port", "1"),
    ]);
    let node = runtime.start(spec.clone()).await.expect("start redis");
    assert_ne!(node.port, 0);
    assert!(!node.engine_version.is_empty());
    assert_eq!(runtime.get(&spec.key), Some(node.clone()));

    assert_eq!(redis(node.port, &["SET", "greeting", "hello"]).await, "OK");
    assert_eq!(redis(node.port, &["GET", "greeting"]).await, "hello");
    assert_eq!(redis(node.port, &["CONFIG", "GET", "maxmemory-policy"]).await, "maxmemory-policy\nallkeys-lru");
    assert_eq!(redis(node.port, &["CONFIG", "GET", "maxmemory"]).await, format!("maxmemory\n{}", 64 * 1024 * 1024));
    assert_eq!(redis(node.port, &["CONFIG", "GET", "timeout"]).await, "timeout\n300");
    assert_eq!(redis(node.port, &["CONFIG", "GET", "cluster-enabled"]).await, "cluster-enabled\nno");
    let limits = redis(node.port, &["CONFIG", "GET", "client-output-buffer-limit"]).await;
    assert!(limits.contains("pubsub 33554432 8388608 30"), "{limits}");
    assert!(spec.dir.join("redis.log").is_file());

    // Live changes: mutable settings apply, immutable ones are reported, unknown ones ignored.
    let pending = runtime
        .apply_parameters(
            &spec.key,
            &params(&[
                ("maxmemory-policy", "volatile-ttl"),
                ("databases", "32"),
                ("reserved-memory-percent", "10"),
                ("client-output-buffer-limit-normal-hard-limit", "1048576"),
            ]),
        )
        .await
        .expect("apply");
    assert_eq!(pending, vec!["databases".to_string()]);
    assert_eq!(redis(node.port, &["CONFIG", "GET", "maxmemory-policy"]).await, "maxmemory-policy\nvolatile-ttl");
    let limits = redis(node.port, &["CONFIG", "GET", "client-output-buffer-limit"]).await;
    assert!(limits.starts_with("client-output-buffer-limit\nnormal 1048576 0 0"), "{limits}");
    assert!(limits.contains("pubsub 33554432 8388608 30"), "{limits}");

    assert_eq!(runtime.probe(&spec.key, Duration::from_secs(1)).await, Health::Healthy);
    runtime.stop(&spec.key).await.expect("stop");
}

#[tokio::test]
async fn bad_parameter_value_reports_exit_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let mut spec = spec(dir.path(), EngineKind::Redis, "badvalue");
    spec.parameters = params(&[("maxmemory-policy", "sometimes")]);
    match runtime.start(spec.clone()).await {
        Err(NodeError::Exited { status, stderr }) => {
            assert!(!status.success());
            assert!(stderr.contains("maxmemory-policy"), "stderr tail: {stderr}");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(runtime.get(&spec.key).is_none());
}

#[tokio::test]
async fn password_protected_node_is_healthy_and_reconfigurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let mut spec = spec(dir.path(), EngineKind::Redis, "auth");
    spec.directives = params(&[("requirepass", "s3cret-token-of-16+chars")]);
    let node = runtime.start(spec.clone()).await.expect("start");
    assert!(redis(node.port, &["GET", "x"]).await.starts_with("-NOAUTH"));
    assert_eq!(runtime.probe(&spec.key, Duration::from_secs(1)).await, Health::Healthy);
    let pending = runtime.apply_parameters(&spec.key, &params(&[("timeout", "42")])).await.expect("apply");
    assert!(pending.is_empty());
    runtime.stop_all().await;
    assert!(runtime.running().is_empty());
}

#[tokio::test]
async fn valkey_engine_runs_on_the_available_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engines = Engines::detect();
    let runtime = Runtime::new(engines.clone());
    let spec = spec(dir.path(), EngineKind::Valkey, "valkey");
    let node = runtime.start(spec.clone()).await.expect("start valkey");
    assert_eq!(node.engine_version, engines.binary(EngineKind::Valkey).expect("valkey binary").version);
    assert_eq!(redis(node.port, &["PING"]).await, "PONG");
    runtime.stop(&spec.key).await.expect("stop");
}

/// Redis and valkey are told where to say they are ready (`NOTIFY_SOCKET`, see
/// `nodes::ready`), and the socket they said it on is gone once the node has started.
#[tokio::test]
async fn redis_like_nodes_are_told_where_to_say_they_are_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    for engine in [EngineKind::Redis, EngineKind::Valkey] {
        let spec = spec(dir.path(), engine, &format!("ready-{engine}"));
        let node = runtime.start(spec.clone()).await.expect("start");
        assert_eq!(redis(node.port, &["PING"]).await, "PONG");
        let log = std::fs::read_to_string(spec.dir.join("redis.log")).expect("the node's log");
        assert!(log.contains("Supervised by systemd"), "{engine}: {log}");
        assert!(!nodes::config::ready_socket(&spec.dir).exists(), "{engine}");
        runtime.stop(&spec.key).await.expect("stop");
    }
}

/// A new node starts on its append-only file, and one restarted on that file loads its keys:
/// neither is asked to turn it on (`CONFIG SET appendonly yes` forks a rewrite). A node whose
/// data is an RDB file only loads that file, then is asked.
#[tokio::test]
async fn only_a_node_started_on_an_rdb_file_is_asked_to_turn_its_append_only_file_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let spec = spec(dir.path(), EngineKind::Redis, "aof");
    let config_sets = async |port| redis(port, &["INFO", "commandstats"]).await.contains("cmdstat_config|set:");
    let aof_dir = spec.dir.join("appendonlydir");

    let node = runtime.start(spec.clone()).await.expect("start");
    assert!(!config_sets(node.port).await, "a new node starts on its AOF");
    assert_eq!(redis(node.port, &["CONFIG", "GET", "appendonly"]).await, "appendonly\nyes");
    assert!(aof_dir.join("appendonly.aof.manifest").exists(), "written as the node started");
    assert_eq!(redis(node.port, &["SET", "kept", "yes"]).await, "OK");
    assert_eq!(redis(node.port, &["SAVE"]).await, "OK");
    runtime.stop(&spec.key).await.expect("stop");

    let node = runtime.start(spec.clone()).await.expect("restart");
    assert_eq!(redis(node.port, &["GET", "kept"]).await, "yes");
    assert!(!config_sets(node.port).await, "a node started on its AOF is not asked again");
    runtime.stop(&spec.key).await.expect("stop");

    std::fs::remove_dir_all(&aof_dir).expect("the AOF removed: the RDB file is the node's data");
    let node = runtime.start(spec.clone()).await.expect("start on the RDB file");
    assert_eq!(redis(node.port, &["GET", "kept"]).await, "yes", "the RDB file is loaded");
    assert!(config_sets(node.port).await, "a node started on its RDB file is asked to turn its AOF on");
    let manifest = &aof_dir.join("appendonly.aof.manifest");
    eventually("the AOF's first rewrite done", || async move { manifest.exists() }).await;
    runtime.stop(&spec.key).await.expect("stop");
}

/// A stopped redis-like node is asked to `SHUTDOWN` rather than signalled (redis acts on a
/// SIGTERM only at its next cron tick), and keeps what it acknowledged for its next start.
#[tokio::test]
async fn a_stopped_node_shuts_down_on_request_and_keeps_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    for engine in [EngineKind::Redis, EngineKind::Valkey] {
        let spec = spec(dir.path(), engine, &format!("shutdown-{engine}"));
        let node = runtime.start(spec.clone()).await.expect("start");
        assert_eq!(redis(node.port, &["SET", "kept", "yes"]).await, "OK");
        runtime.stop(&spec.key).await.expect("stop");
        let log = std::fs::read_to_string(spec.dir.join("redis.log")).expect("the node's log");
        assert!(log.contains("User requested shutdown"), "{engine}: {log}");
        assert!(!log.contains("Received SIGTERM"), "{engine}: {log}");

        let node = runtime.start(spec.clone()).await.expect("restart");
        assert_eq!(redis(node.port, &["GET", "kept"]).await, "yes", "{engine}");
        runtime.stop(&spec.key).await.expect("stop");
    }
}

/// Redis refuses `SHUTDOWN` while it writes its first append-only file (a replica that just
/// synced, a node whose AOF was just turned on): asked again, it exits once the file is
/// whole, keeping what it acknowledged, rather than at the tick that acts on a SIGTERM.
#[tokio::test]
async fn a_node_writing_its_first_aof_shuts_down_once_it_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let spec = spec(dir.path(), EngineKind::Redis, "first-aof");
    let node = runtime.start(spec.clone()).await.expect("start");
    for key in ["a", "b", "c"] {
        assert_eq!(redis(node.port, &["SET", key, "kept"]).await, "OK");
    }
    // 20 ms a key: the stop below lands in it.
    begin_first_aof(node.port, 20_000).await;
    runtime.stop(&spec.key).await.expect("stop");
    let log = std::fs::read_to_string(spec.dir.join("redis.log")).expect("the node's log");
    assert!(log.contains("Writing initial AOF, can't exit"), "the stop missed the rewrite: {log}");
    assert!(log.contains("User requested shutdown"), "{log}");
    assert!(!log.contains("Received SIGTERM"), "{log}");

    let node = runtime.start(spec.clone()).await.expect("restart");
    assert_eq!(redis(node.port, &["MGET", "a", "b", "c"]).await, "kept\nkept\nkept");
    runtime.stop(&spec.key).await.expect("stop");
}
