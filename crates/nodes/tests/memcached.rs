//! Real memcached nodes: data path and AWS parameters mapped to flags.

mod common;

use std::time::Duration;

use common::*;
use nodes::{EngineKind, Engines, Health, Runtime};

#[tokio::test]
async fn memcached_node_serves_data_and_takes_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let mut spec = spec(dir.path(), EngineKind::Memcached, "mc");
    spec.max_memory_bytes = 10 * 1024 * 1024 + 1; // rounds up to 11 MiB
    spec.parameters = params(&[
        ("max_simultaneous_connections", "200"),
        ("max_item_size", "2097152"),
        ("chunk_size", "96"),
        ("chunk_size_growth_factor", "1.5"),
        ("cas_disabled", "1"),
        ("maxconns_fast", "1"),
        ("idle_timeout", "600"),
        ("memcached_connections_overhead", "100"), // AWS-only
        ("expirezero_does_not_evict", "1"),        // not in this memcached
    ]);
    let node = runtime.start(spec.clone()).await.expect("start memcached");
    assert!(node.engine_version.starts_with("1."));

    assert_eq!(memcached(node.port, b"set k 0 0 5\r\nhello\r\n", b"\r\n").await, b"STORED\r\n");
    assert_eq!(memcached(node.port, b"get k\r\n", b"END\r\n").await, b"VALUE k 0 5\r\nhello\r\nEND\r\n");

    let settings = String::from_utf8(memcached(node.port, b"stats settings\r\n", b"END\r\n").await).expect("utf8");
    for expected in [
        "STAT maxbytes 11534336",
        "STAT maxconns 200",
        "STAT item_size_max 2097152",
        "STAT chunk_size 96",
        "STAT growth_factor 1.50",
        "STAT cas_enabled no",
        "STAT idle_timeout 600",
        "STAT udpport 0",
    ] {
        assert!(settings.contains(expected), "missing {expected:?} in:\n{settings}");
    }

    // memcached has no runtime configuration: everything needs a restart.
    let pending = runtime.apply_parameters(&spec.key, &params(&[("chunk_size", "48")])).await.expect("apply");
    assert_eq!(pending, vec!["chunk_size".to_string()]);

    assert_eq!(runtime.probe(&spec.key, Duration::from_secs(1)).await, Health::Healthy);
    runtime.stop(&spec.key).await.expect("stop");
}
