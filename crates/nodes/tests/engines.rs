//! Engine detection on this machine.

use std::time::Instant;

use nodes::{EngineKind, Engines};

#[test]
fn detects_installed_engines_quickly() {
    let started = Instant::now();
    let engines = Engines::detect();
    // A figure, not an assertion: timing belongs to benchmarks.
    println!("Engines::detect took {:?}", started.elapsed());

    let redis = engines.binary(EngineKind::Redis).expect("redis-server installed");
    assert!(redis.path.ends_with("redis-server"));
    assert!(redis.version.split('.').count() >= 3, "{}", redis.version);
    let memcached = engines.binary(EngineKind::Memcached).expect("memcached installed");
    assert!(memcached.version.starts_with("1."), "{}", memcached.version);
    let valkey = engines.binary(EngineKind::Valkey).expect("valkey falls back to redis-server");

    let json = engines.to_json();
    assert_eq!(json["redis"]["available"], true);
    assert_eq!(json["redis"]["binary"], redis.path.display().to_string());
    assert_eq!(json["redis"]["version"], redis.version.as_str());
    assert_eq!(json["valkey"]["binary"], valkey.path.display().to_string());
    assert_eq!(json["memcached"]["version"], memcached.version.as_str());
}
