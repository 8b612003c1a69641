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

/// A create names a version as AWS lists it (or `6.x`); Describe then shows the version AWS
/// runs for it, never the local binary's. Sources in `crates/model/data/README.md`.
#[tokio::test]
async fn requested_versions_resolve_and_describe_as_aws_shows_them() {
    let server = TestServer::without_engines().await;
    let client = server.client();
    let cases = [
        ("redis", "6.x", "6.2.6", "redis6.x"),
        ("redis", "6.2", "6.2.6", "redis6.x"),
        ("redis", "6.0", "6.0.5", "redis6.x"),
        ("redis", "7.0", "7.0.7", "redis7"),
        ("redis", "7.1", "7.1.0", "redis7"),
        ("redis", "5.0.6", "5.0.6", "redis5.0"),
        ("redis", "4.0.10", "4.0.10", "redis4.0"),
        ("memcached", "1.4.34", "1.4.34", "memcached1.4"),
        ("memcached", "1.5.16", "1.5.16", "memcached1.5"),
    ];
    for (i, (engine, requested, shown, family)) in cases.into_iter().enumerate() {
        let id = format!("v{i}");
        let created = client
            .create_cache_cluster()
            .cache_cluster_id(&id)
            .engine(engine)
            .engine_version(requested)
            .cache_node_type("cache.t3.micro")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{engine} {requested}: {e:?}"))
            .cache_cluster
            .unwrap();
        assert_eq!(created.engine_version(), Some(shown), "{engine} {requested}");
        let group = created.cache_parameter_group().and_then(|g| g.cache_parameter_group_name());
        assert_eq!(group, Some(format!("default.{family}").as_str()), "{engine} {requested}");
        let described = client.describe_cache_clusters().cache_cluster_id(&id).send().await.unwrap();
        assert_eq!(described.cache_clusters()[0].engine_version(), Some(shown));
    }
    let group = client
        .create_replication_group()
        .replication_group_id("vk")
        .replication_group_description("valkey")
        .engine("valkey")
        .engine_version("8.0")
        .cache_node_type("cache.t3.micro")
        .send()
        .await
        .unwrap();
    assert_eq!(group.replication_group.and_then(|g| g.member_clusters).unwrap_or_default(), ["vk-001"]);
    let member = client.describe_cache_clusters().cache_cluster_id("vk-001").send().await.unwrap();
    assert_eq!(member.cache_clusters()[0].engine_version(), Some("8.0.1"));

    let create = |engine: &str, version: &str| {
        client
            .create_cache_cluster()
            .cache_cluster_id("refused")
            .engine(engine)
            .engine_version(version)
            .cache_node_type("cache.t3.micro")
            .send()
    };
    for (engine, version) in
        [("redis", "7"), ("redis", "7.x"), ("redis", "6"), ("memcached", "1.6"), ("redis", "3.2.10")]
    {
        let error = expect_code(create(engine, version).await, "InvalidParameterCombination");
        assert_eq!(error.message, format!("Cannot find version {version} for {engine}"));
    }
    let error = expect_code(create("redis", "6.2.6").await, "InvalidParameterValue");
    assert_eq!(error.message, "Specific version selection is not allowed for '6.2.6', please use '6.2'");
    let error = expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("refused")
            .engine("redis")
            .engine_version("6.2")
            .cache_parameter_group_name("default.redis7")
            .cache_node_type("cache.t3.micro")
            .send()
            .await,
        "InvalidParameterCombination",
    );
    assert_eq!(error.message, "Expected a parameter group of family redis6.x but found one of family redis7");
    let clusters = client.describe_cache_clusters().send().await.unwrap();
    assert!(clusters.cache_clusters().iter().all(|c| c.cache_cluster_id() != Some("refused")));
}

#[tokio::test]
async fn every_version_aws_lists_is_offered_with_its_actual_version_in_the_description() {
    let server = TestServer::start().await;
    let out = server.client().describe_cache_engine_versions().max_records(100).send().await.unwrap();
    let listed: Vec<(String, String)> = out.cache_engine_versions().iter().map(key).collect();
    let expected = [
        (
            "memcached",
            &[
                "1.4.5", "1.4.14", "1.4.24", "1.4.33", "1.4.34", "1.5.10", "1.5.16", "1.6.6", "1.6.12", "1.6.17",
                "1.6.22",
            ][..],
        ),
        ("redis", &["4.0.10", "5.0.6", "6.0", "6.2", "7.0", "7.1"][..]),
        ("valkey", &["7.2", "8.0", "8.1", "8.2", "9.0", "9.1"][..]),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .flat_map(|(engine, versions)| versions.iter().map(|v| (engine.to_string(), v.to_string())))
        .collect();
    assert_eq!(listed, expected);
    let six_two = out.cache_engine_versions().iter().find(|v| v.engine_version() == Some("6.2")).unwrap();
    assert_eq!(six_two.cache_parameter_group_family(), Some("redis6.x"));
    assert_eq!(six_two.cache_engine_version_description(), Some("redis version 6.2.6"));
    assert_eq!(six_two.cache_engine_description(), Some("Redis"));
}

/// ModifyCacheCluster's version rules: no downgrade; a new family needs a parameter group
/// of that family; a refused change changes nothing; an accepted one shows AWS's version.
#[tokio::test]
async fn version_upgrades_follow_aws_rules() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("up")
        .engine("redis")
        .engine_version("6.2")
        .cache_node_type("cache.t3.micro")
        .send()
        .await
        .expect("CreateCacheCluster");
    e2e::wait_cluster_available(&client, "up").await;
    let modify = |version: &str| {
        client.modify_cache_cluster().cache_cluster_id("up").engine_version(version).apply_immediately(true)
    };
    let error = expect_code(modify("6.0").send().await, "InvalidParameterCombination");
    assert!(error.message.contains("downgrade"), "{}", error.message);
    expect_code(modify("7.1").send().await, "InvalidParameterCombination");
    let error = expect_code(
        modify("7.1").cache_parameter_group_name("default.redis6.x").send().await,
        "InvalidParameterCombination",
    );
    assert_eq!(error.message, "Expected a parameter group of family redis7 but found one of family redis6.x");
    let error = expect_code(modify("7.4").send().await, "InvalidParameterCombination");
    assert_eq!(error.message, "Cannot find version 7.4 for redis");
    let unchanged = e2e::wait_cluster_available(&client, "up").await;
    assert_eq!(unchanged.engine_version(), Some("6.2.6"));

    modify("7.1").cache_parameter_group_name("default.redis7").send().await.expect("upgrade to 7.1");
    let upgraded = e2e::wait_cluster_available(&client, "up").await;
    assert_eq!(upgraded.engine_version(), Some("7.1.0"));
    let group = upgraded.cache_parameter_group().and_then(|g| g.cache_parameter_group_name());
    assert_eq!(group, Some("default.redis7"));
}
