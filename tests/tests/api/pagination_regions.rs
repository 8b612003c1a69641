//! Marker/MaxRecords pagination and per-region isolation.

use std::collections::HashMap;

use e2e::{ACCOUNT, TestServer, expect_code};

use crate::{all_pg_names, create_pg};

#[tokio::test]
async fn max_records_must_be_between_20_and_100() {
    let server = TestServer::start().await;
    let client = server.client();
    for bad in [-1, 0, 19, 101, 1000] {
        expect_code(client.describe_cache_parameter_groups().max_records(bad).send().await, "InvalidParameterValue");
        expect_code(client.describe_cache_subnet_groups().max_records(bad).send().await, "InvalidParameterValue");
        expect_code(client.describe_cache_security_groups().max_records(bad).send().await, "InvalidParameterValue");
    }
    for good in [20, 100] {
        client.describe_cache_parameter_groups().max_records(good).send().await.unwrap();
        client.describe_cache_subnet_groups().max_records(good).send().await.unwrap();
    }
}

#[tokio::test]
async fn every_group_appears_exactly_once_across_pages() {
    let server = TestServer::start().await;
    let client = server.client();
    for i in 0..45 {
        create_pg(&client, &format!("page-{i:02}"), if i % 2 == 0 { "redis7" } else { "valkey8" }).await;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = client.describe_cache_parameter_groups().max_records(20).set_marker(marker).send().await.unwrap();
        assert!(out.cache_parameter_groups().len() <= 20, "page of {}", out.cache_parameter_groups().len());
        for group in out.cache_parameter_groups() {
            *counts.entry(group.cache_parameter_group_name().unwrap().to_string()).or_default() += 1;
        }
        pages += 1;
        marker = out.marker;
        if marker.is_none() {
            break;
        }
        assert!(pages < 20, "pagination does not end");
    }
    // 45 created + at least 7 defaults = at least 52 groups = at least 3 pages.
    assert!(pages >= 3, "{pages} pages");
    for i in 0..45 {
        let name = format!("page-{i:02}");
        assert_eq!(counts.get(&name), Some(&1), "{name} appears exactly once");
    }
    assert!(counts.values().all(|&c| c == 1), "no group twice: {counts:?}");
    assert_eq!(counts.get("default.redis7"), Some(&1));
    let unpaged = all_pg_names(&client).await;
    assert_eq!(unpaged.len(), counts.len(), "paged and unpaged listings agree");
}

#[tokio::test]
async fn regions_are_separate() {
    let server = TestServer::start().await;
    let east = server.client();
    let west = server.client_in("us-west-2");
    let created = create_pg(&west, "west-only", "redis7").await;
    assert_eq!(
        created.arn(),
        Some(format!("arn:aws:elasticache:us-west-2:{ACCOUNT}:parametergroup:west-only").as_str())
    );
    let described =
        west.describe_cache_parameter_groups().cache_parameter_group_name("west-only").send().await.unwrap();
    assert_eq!(described.cache_parameter_groups()[0].arn(), created.arn());

    expect_code(
        east.describe_cache_parameter_groups().cache_parameter_group_name("west-only").send().await,
        "CacheParameterGroupNotFound",
    );
    assert!(!all_pg_names(&east).await.contains(&"west-only".to_string()));
    // Every region has its own defaults, with its own ARNs.
    let defaults =
        west.describe_cache_parameter_groups().cache_parameter_group_name("default.redis7").send().await.unwrap();
    assert_eq!(
        defaults.cache_parameter_groups()[0].arn(),
        Some(format!("arn:aws:elasticache:us-west-2:{ACCOUNT}:parametergroup:default.redis7").as_str())
    );
    // The same name can exist in both regions, independently.
    create_pg(&east, "west-only", "memcached1.6").await;
    let in_west = west.describe_cache_parameter_groups().cache_parameter_group_name("west-only").send().await.unwrap();
    assert_eq!(in_west.cache_parameter_groups()[0].cache_parameter_group_family(), Some("redis7"));
    east.delete_cache_parameter_group().cache_parameter_group_name("west-only").send().await.unwrap();
    west.describe_cache_parameter_groups().cache_parameter_group_name("west-only").send().await.unwrap();

    // A region's default subnet group lies in that region's zones.
    let out = west.describe_cache_subnet_groups().cache_subnet_group_name("default").send().await.unwrap();
    for subnet in out.cache_subnet_groups()[0].subnets() {
        let zone = subnet.subnet_availability_zone().and_then(|z| z.name()).unwrap();
        assert!(zone.starts_with("us-west-2"), "zone {zone} in us-west-2");
    }
}
