//! Service updates and update actions through the SDK: the catalog, an update published
//! through the admin API, every DescribeUpdateActions filter, and the refusals of
//! BatchApplyUpdateAction / BatchStopUpdateAction. The rolling apply itself, on real nodes,
//! is in `tests/replication/service_updates.rs`.

use aws_sdk_elasticache::primitives::DateTime;
use aws_sdk_elasticache::types::{ServiceUpdateStatus, TimeRangeFilter, UpdateActionStatus};
use e2e::{TestServer, admin_post_json, expect_code, poll_until};
use serde_json::json;

const CATALOG: &str = "elasticache-20231114-001";

#[tokio::test]
async fn service_updates_and_update_actions() {
    let server = TestServer::start().await;
    let client = server.client();

    // The catalog, filtered and paged.
    let all = client.describe_service_updates().send().await.unwrap();
    let names: Vec<&str> = all.service_updates().iter().filter_map(|u| u.service_update_name()).collect();
    assert!(names.contains(&CATALOG) && names.contains(&"elc-20191007-001"), "{names:?}");
    let one = client.describe_service_updates().service_update_name(CATALOG).send().await.unwrap();
    let u = &one.service_updates()[0];
    assert_eq!(u.service_update_severity().map(|s| s.as_str()), Some("important"));
    assert_eq!(u.service_update_type().map(|s| s.as_str()), Some("security-update"));
    assert_eq!(u.estimated_update_time(), Some("30 minutes per node"));
    assert!(u.service_update_release_date().is_some() && u.service_update_recommended_apply_by_date().is_some());
    let expired =
        client.describe_service_updates().service_update_status(ServiceUpdateStatus::Expired).send().await.unwrap();
    assert!(expired.service_updates().iter().all(|u| u.service_update_status() == Some(&ServiceUpdateStatus::Expired)));
    assert!(!expired.service_updates().is_empty());
    expect_code(
        client.describe_service_updates().service_update_name("nope").send().await,
        "ServiceUpdateNotFoundFault",
    );
    expect_code(client.describe_service_updates().max_records(5).send().await, "InvalidParameterValue");

    // Published through the admin API.
    let (status, body) = admin_post_json(
        &server,
        "/_emulator/service-updates",
        &json!({"ServiceUpdateName": "elasticache-20250101-001", "ServiceUpdateSeverity": "critical",
                "ServiceUpdateReleaseDate": "2025-01-01T00:00:00Z", "Engine": "redis"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        admin_post_json(&server, "/_emulator/service-updates", &json!({"ServiceUpdateSeverity": "urgent"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = admin_post_json(&server, "/_emulator/service-updates", &json!({})).await;
    assert_eq!(status, 200, "defaults: {body}");
    let published =
        client.describe_service_updates().service_update_name("elasticache-20250101-001").send().await.unwrap();
    let p = &published.service_updates()[0];
    assert_eq!(p.service_update_severity().map(|s| s.as_str()), Some("critical"));
    assert_eq!(p.engine(), Some("redis"));

    // One action per update and cluster (memcached) of a matching engine.
    client
        .create_cache_cluster()
        .cache_cluster_id("mc")
        .engine("memcached")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap();
    let actions = client.describe_update_actions().cache_cluster_ids("mc").send().await.unwrap();
    let for_mc: Vec<&str> = actions.update_actions().iter().filter_map(|a| a.service_update_name()).collect();
    assert!(for_mc.contains(&CATALOG), "{for_mc:?}");
    assert!(!for_mc.contains(&"elasticache-20250101-001"), "a redis-only update has no memcached action");
    let a = actions.update_actions().iter().find(|a| a.service_update_name() == Some(CATALOG)).unwrap();
    assert_eq!(a.update_action_status(), Some(&UpdateActionStatus::NotApplied));
    assert_eq!(a.nodes_updated(), Some("0/1"));
    assert_eq!(a.engine(), Some("memcached"));
    assert!(a.cache_node_update_status().is_empty(), "node level only when asked");
    let detailed = client
        .describe_update_actions()
        .cache_cluster_ids("mc")
        .service_update_name(CATALOG)
        .show_node_level_update_status(true)
        .send()
        .await
        .unwrap();
    let nodes = detailed.update_actions()[0].cache_node_update_status();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].cache_node_id(), Some("0001"));
    let none = client.describe_update_actions().engine("redis").cache_cluster_ids("mc").send().await.unwrap();
    assert!(none.update_actions().is_empty());
    let future = TimeRangeFilter::builder()
        .start_time(DateTime::from_secs(4_000_000_000))
        .end_time(DateTime::from_secs(4_100_000_000))
        .build();
    let ranged = client.describe_update_actions().service_update_time_range(future).send().await.unwrap();
    assert!(ranged.update_actions().is_empty());
    expect_code(client.describe_update_actions().engine("mongodb").send().await, "InvalidParameterValue");

    // Apply and its refusals.
    expect_code(
        client.batch_apply_update_action().service_update_name("nope").cache_cluster_ids("mc").send().await,
        "ServiceUpdateNotFoundFault",
    );
    expect_code(client.batch_apply_update_action().service_update_name(CATALOG).send().await, "InvalidParameterValue");
    let out = client
        .batch_apply_update_action()
        .service_update_name(CATALOG)
        .cache_cluster_ids("mc")
        .cache_cluster_ids("ghost")
        .replication_group_ids("nogroup")
        .send()
        .await
        .unwrap();
    assert_eq!(out.processed_update_actions().len(), 1);
    assert_eq!(out.processed_update_actions()[0].update_action_status(), Some(&UpdateActionStatus::WaitingToStart));
    let errors: Vec<&str> = out.unprocessed_update_actions().iter().filter_map(|u| u.error_type()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.contains(&"CacheClusterNotFoundFault") && errors.contains(&"ReplicationGroupNotFoundFault"));
    let expired = client
        .batch_apply_update_action()
        .service_update_name("elc-20191007-001")
        .cache_cluster_ids("mc")
        .send()
        .await
        .unwrap();
    assert_eq!(expired.unprocessed_update_actions().len(), 1);

    poll_until("the update complete on mc", e2e::SETTLE, || async {
        let out = client.describe_update_actions().cache_cluster_ids("mc").service_update_name(CATALOG).send().await;
        let a = out.map_err(|e| e.to_string())?;
        let a = &a.update_actions()[0];
        match a.update_action_status() {
            Some(UpdateActionStatus::Complete) if a.nodes_updated() == Some("1/1") => Ok(()),
            other => Err(format!("{other:?} {:?}", a.nodes_updated())),
        }
    })
    .await;
    let again = client.batch_apply_update_action().service_update_name(CATALOG).cache_cluster_ids("mc").send().await;
    assert_eq!(again.unwrap().unprocessed_update_actions().len(), 1, "already complete");
    let stop = client.batch_stop_update_action().service_update_name(CATALOG).cache_cluster_ids("mc").send().await;
    assert_eq!(stop.unwrap().unprocessed_update_actions().len(), 1, "nothing to stop");
    let complete =
        client.describe_update_actions().update_action_status(UpdateActionStatus::Complete).send().await.unwrap();
    assert_eq!(complete.update_actions().len(), 1);
    let events = e2e::events_of(&client, aws_sdk_elasticache::types::SourceType::CacheCluster, "mc").await;
    assert!(events.iter().any(|e| e == "Cache node 0001 restarted"), "{events:?}");
}
