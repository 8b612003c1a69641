//! DescribeEvents for cache clusters (filters, time windows, pagination) and
//! DescribeCacheClusters pagination.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::primitives::DateTime;
use aws_sdk_elasticache::types::{Event, SourceType};
use e2e::{TestServer, expect_code};

use crate::*;

fn key(e: &Event) -> (i64, u32, String, String) {
    let date = e.date().expect("event Date");
    (
        date.secs(),
        date.subsec_nanos(),
        e.source_identifier().unwrap_or_default().to_string(),
        e.message().unwrap_or_default().to_string(),
    )
}

/// Every event of a query, page by page with MaxRecords=20; checks each page's size.
async fn paged(client: &Client, source_type: Option<SourceType>, id: Option<&str>) -> (Vec<Event>, usize) {
    let mut all = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let out = client
            .describe_events()
            .set_source_type(source_type.clone())
            .set_source_identifier(id.map(str::to_string))
            .max_records(20)
            .set_marker(marker.clone())
            .send()
            .await
            .expect("DescribeEvents");
        pages += 1;
        assert!(out.events().len() <= 20, "page of {} events", out.events().len());
        if out.marker.is_some() {
            assert_eq!(out.events().len(), 20, "only the last page is short");
        }
        all.extend(out.events().iter().cloned());
        assert_ne!(out.marker, marker, "the marker moves");
        marker = out.marker;
        if marker.is_none() {
            return (all, pages);
        }
        assert!(pages < 50, "pagination does not end");
    }
}

async fn messages(
    client: &Client,
    build: impl Fn(&Client) -> aws_sdk_elasticache::operation::describe_events::builders::DescribeEventsFluentBuilder,
) -> Vec<Event> {
    build(client).send().await.expect("DescribeEvents").events().to_vec()
}

#[tokio::test]
async fn describe_events_filters_and_pages() {
    let server = TestServer::start().await;
    let client = server.client();
    let t0 = SystemTime::now() - Duration::from_secs(1);
    create_redis(&client, "ev-redis", "cache.t3.micro", None).await;
    create_memcached(&client, "ev-mc", 20, true).await;
    let redis = wait_cluster_available(&client, "ev-redis").await;
    let mc = wait_cluster_available(&client, "ev-mc").await;
    let t1 = SystemTime::now() + Duration::from_secs(1);

    // One SourceIdentifier: only its events, the ones AWS emits for a new cluster.
    let redis_zone = &nodes(&redis)[0].zone;
    let redis_events = wait_events(&client, SourceType::CacheCluster, "ev-redis", &["Cache cluster created"]).await;
    assert_eq!(
        redis_events,
        [format!("Added cache node 0001 in availability zone {redis_zone}"), "Cache cluster created".to_string()],
    );
    let mc_events = wait_events(&client, SourceType::CacheCluster, "ev-mc", &["Cache cluster created"]).await;
    let expected: BTreeSet<String> = nodes(&mc)
        .iter()
        .map(|n| format!("Added cache node {} in availability zone {}", n.id, n.zone))
        .chain(["Cache cluster created".to_string()])
        .collect();
    assert_eq!(mc_events.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(mc_events.len(), 21);
    assert_eq!(mc_events.last().map(String::as_str), Some("Cache cluster created"), "created after its nodes");

    // Pagination: MaxRecords=20 pages add up to the unpaginated answer, nothing twice.
    let whole = client.describe_events().source_type(SourceType::CacheCluster).send().await.unwrap();
    assert!(whole.marker().is_none());
    let whole: Vec<_> = whole.events().iter().map(key).collect();
    assert_eq!(whole.len(), 23, "21 + 2 events: {whole:?}");
    let (paged_events, pages) = paged(&client, Some(SourceType::CacheCluster), None).await;
    assert_eq!(pages, 2);
    let paged_keys: Vec<_> = paged_events.iter().map(key).collect();
    assert_eq!(paged_keys, whole, "pages in the same order as one answer");
    let (no_type, _) = paged(&client, None, None).await;
    assert!(no_type.len() >= 23);
    let (mc_only, pages) = paged(&client, Some(SourceType::CacheCluster), Some("ev-mc")).await;
    assert_eq!((mc_only.len(), pages), (21, 2));
    for e in &paged_events {
        assert_eq!(e.source_type(), Some(&SourceType::CacheCluster));
        let date = SystemTime::try_from(*e.date().unwrap()).unwrap();
        assert!(date >= t0 && date <= t1, "event date {date:?} outside [{t0:?}, {t1:?}]");
    }

    // Time windows.
    let start = DateTime::from(t0);
    let end = DateTime::from(t1);
    let before = DateTime::from(t0 - Duration::from_secs(600));
    let later = DateTime::from(SystemTime::now() + Duration::from_secs(60));
    let within = messages(&client, |c| {
        c.describe_events().source_type(SourceType::CacheCluster).start_time(start).end_time(end)
    })
    .await;
    assert_eq!(within.len(), 23);
    let earlier = messages(&client, |c| c.describe_events().start_time(before).end_time(start)).await;
    assert!(earlier.is_empty(), "{earlier:?}");
    let much_later = DateTime::from(SystemTime::now() + Duration::from_secs(120));
    let future = messages(&client, |c| c.describe_events().start_time(later).end_time(much_later)).await;
    assert!(future.is_empty(), "{future:?}");
    let recent = messages(&client, |c| c.describe_events().source_type(SourceType::CacheCluster).duration(5)).await;
    assert_eq!(recent.len(), 23);
    let other_type =
        messages(&client, |c| c.describe_events().source_type(SourceType::ReplicationGroup).source_identifier("ev-mc"))
            .await;
    assert!(other_type.is_empty(), "{other_type:?}");
    let unknown =
        messages(&client, |c| c.describe_events().source_type(SourceType::CacheCluster).source_identifier("nope"))
            .await;
    assert!(unknown.is_empty());

    expect_code(client.describe_events().max_records(19).send().await, "InvalidParameterValue");
    expect_code(client.describe_events().max_records(101).send().await, "InvalidParameterValue");

    let (status, _) = admin_post(&server, "/_emulator/reset").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn describe_cache_clusters_pages() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut expected = BTreeSet::new();
    for i in 0..21 {
        let id = format!("page-{i:02}");
        create_memcached(&client, &id, 1, false).await;
        expected.insert(id);
    }
    let mut seen = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let out = client
            .describe_cache_clusters()
            .max_records(20)
            .show_cache_clusters_not_in_replication_groups(true)
            .set_marker(marker)
            .send()
            .await
            .expect("DescribeCacheClusters page");
        pages += 1;
        seen.extend(out.cache_clusters().iter().filter_map(|c| c.cache_cluster_id().map(str::to_string)));
        assert!(out.cache_clusters().iter().all(|c| c.cache_nodes().is_empty()), "no nodes without ShowCacheNodeInfo");
        marker = out.marker;
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 21, "nothing twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
    expect_code(client.describe_cache_clusters().max_records(10).send().await, "InvalidParameterValue");

    let (status, _) = admin_post(&server, "/_emulator/reset").await;
    assert_eq!(status, 200);
    assert!(client.describe_cache_clusters().send().await.unwrap().cache_clusters().is_empty());
    assert!(admin_nodes(&server).await.is_empty());
    server.stop().await;
}

/// Events past the 14 days DescribeEvents can show are deleted while the emulator runs
/// (its periodic pass), so its store does not grow with the time it has run; younger ones
/// stay. Seeded in the store of a stopped emulator, then asked for with a StartTime 30
/// days back.
#[tokio::test]
async fn events_older_than_14_days_are_forgotten_while_younger_ones_stay() {
    let state_dir = tempfile::tempdir().unwrap();
    let day = 24 * 60 * 60 * 1000;
    let now = store::now_millis();
    let aged = |message: &str, age: i64| store::EventRecord {
        date_millis: now - age,
        ..store::EventRecord::new("cache-cluster", "ev-aged", message)
    };
    {
        let (seeded, scope) = e2e::store_in(state_dir.path()).await;
        seeded.record_events(&scope, &[aged("15 days old", 15 * day), aged("13 days old", 13 * day)]).await.unwrap();
    }
    let server = TestServer::start_in(state_dir).await;
    let client = server.client();
    let month_ago = DateTime::from(SystemTime::now() - Duration::from_secs(30 * 24 * 60 * 60));
    let kept = e2e::poll_until("the 15-day-old event forgotten", e2e::SETTLE, || async {
        let events =
            messages(&client, |c| c.describe_events().source_identifier("ev-aged").start_time(month_ago)).await;
        let messages: Vec<String> = events.iter().map(|e| e.message().unwrap_or_default().to_string()).collect();
        if messages.iter().any(|m| m == "15 days old") { Err(format!("{messages:?}")) } else { Ok(messages) }
    })
    .await;
    assert_eq!(kept, ["13 days old"]);
    server.stop().await;
}
