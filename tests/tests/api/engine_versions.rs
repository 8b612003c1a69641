//! DescribeCacheEngineVersions and its filters.

use std::collections::HashSet;

use aws_sdk_elasticache::types::CacheEngineVersion;
use e2e::{TestServer, expect_code};

fn key(v: &CacheEngineVersion) -> (String, String) {
    (v.engine().unwrap_or_default().to_string(), v.engine_version().unwrap_or_default().to_string())
}

#[tokio::test]
async fn lists_every_engine_with_its_family() {
    let server = TestServer::start().await;
    let client = server.client();
    let out = client.describe_cache_engine_versions().send().await.unwrap();
    let versions = out.cache_engine_versions();
    let engines: HashSet<_> = versions.iter().filter_map(|v| v.engine()).collect();
    for engine in ["redis", "valkey", "memcached"] {
        assert!(engines.contains(engine), "{engine} listed in {engines:?}");
    }
    for v in versions {
        assert!(v.engine_version().is_some_and(|s| !s.is_empty()), "{v:?}");
        assert!(v.cache_parameter_group_family().is_some_and(|s| !s.is_empty()), "{v:?}");
    }
    let families: HashSet<_> = versions.iter().filter_map(|v| v.cache_parameter_group_family()).collect();
    for family in ["redis7", "valkey7", "valkey8", "memcached1.6"] {
        assert!(families.contains(family), "{family} in {families:?}");
    }
    let unique: HashSet<_> = versions.iter().map(key).collect();
    assert_eq!(unique.len(), versions.len(), "no version listed twice");
}

#[tokio::test]
async fn filters_by_engine_version_family_and_default() {
    let server = TestServer::start().await;
    let client = server.client();

    let redis = client.describe_cache_engine_versions().engine("redis").send().await.unwrap();
    assert!(!redis.cache_engine_versions().is_empty());
    assert!(redis.cache_engine_versions().iter().all(|v| v.engine() == Some("redis")));

    let one = client.describe_cache_engine_versions().engine("redis").engine_version("7.1").send().await.unwrap();
    assert_eq!(one.cache_engine_versions().len(), 1, "{one:?}");
    assert_eq!(one.cache_engine_versions()[0].engine_version(), Some("7.1"));
    assert_eq!(one.cache_engine_versions()[0].cache_parameter_group_family(), Some("redis7"));

    let valkey8 = client.describe_cache_engine_versions().cache_parameter_group_family("valkey8").send().await.unwrap();
    assert!(!valkey8.cache_engine_versions().is_empty());
    for v in valkey8.cache_engine_versions() {
        assert_eq!(v.cache_parameter_group_family(), Some("valkey8"));
        assert_eq!(v.engine(), Some("valkey"));
    }

    for engine in ["redis", "valkey", "memcached"] {
        let all = client.describe_cache_engine_versions().engine(engine).send().await.unwrap();
        let default = client.describe_cache_engine_versions().engine(engine).default_only(true).send().await.unwrap();
        assert_eq!(default.cache_engine_versions().len(), 1, "one default for {engine}: {default:?}");
        let chosen = key(&default.cache_engine_versions()[0]);
        assert_eq!(chosen.0, engine);
        assert!(all.cache_engine_versions().iter().any(|v| key(v) == chosen));
    }

    let none = client.describe_cache_engine_versions().engine("redis").engine_version("1.0.0").send().await.unwrap();
    assert!(none.cache_engine_versions().is_empty());
    let none = client
        .describe_cache_engine_versions()
        .engine("redis")
        .cache_parameter_group_family("memcached1.6")
        .send()
        .await
        .unwrap();
    assert!(none.cache_engine_versions().is_empty(), "filters combine");
}

#[tokio::test]
async fn pages_with_max_records() {
    let server = TestServer::start().await;
    let client = server.client();
    let all = client.describe_cache_engine_versions().send().await.unwrap();
    let expected: HashSet<_> = all.cache_engine_versions().iter().map(key).collect();
    let mut seen = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let out = client.describe_cache_engine_versions().max_records(20).set_marker(marker).send().await.unwrap();
        assert!(out.cache_engine_versions().len() <= 20);
        seen.extend(out.cache_engine_versions().iter().map(key));
        pages += 1;
        marker = out.marker;
        if marker.is_none() {
            break;
        }
        assert!(pages < 50, "pagination does not end");
    }
    assert_eq!(seen.len(), expected.len(), "no version twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
    for bad in [1, 19, 101] {
        expect_code(client.describe_cache_engine_versions().max_records(bad).send().await, "InvalidParameterValue");
    }
}
