//! The emulator-only admin API: health and reset.

use e2e::{TestServer, ZONES, expect_code};

use crate::{all_pg_names, create_pg, tag};

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON ({e}): {text}")))
}

#[tokio::test]
async fn health_reports_ok() {
    let server = TestServer::start().await;
    let (status, body) = get_json(server.endpoint() + "/_emulator/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()), "{body}");
    assert!(body["engines"].is_object(), "{body}");
    if let Some(zones) = body["zones"].as_array() {
        assert_eq!(zones.iter().filter_map(|z| z.as_str()).collect::<Vec<_>>(), ZONES);
    }
}

#[tokio::test]
async fn reset_removes_user_resources_and_keeps_defaults() {
    let server = TestServer::start().await;
    let client = server.client();
    let west = server.client_in("us-west-2");
    let defaults_before = all_pg_names(&client).await;
    let group = create_pg(&client, "doomed", "redis7").await;
    create_pg(&west, "doomed-west", "valkey8").await;
    client
        .modify_cache_parameter_group()
        .cache_parameter_group_name("default.redis7")
        .parameter_name_values(crate::pnv("timeout", "5"))
        .send()
        .await
        .ok(); // must fail (read-only), see parameter_groups; here only reset matters
    client
        .create_cache_subnet_group()
        .cache_subnet_group_name("doomed-subnets")
        .cache_subnet_group_description("d")
        .subnet_ids("subnet-0a1b2c3d")
        .send()
        .await
        .unwrap();
    client.create_cache_security_group().cache_security_group_name("doomed-sg").description("d").send().await.unwrap();
    client.add_tags_to_resource().resource_name(group.arn().unwrap()).tags(tag("k", "v")).send().await.unwrap();

    let response = reqwest::Client::new().post(server.endpoint() + "/_emulator/reset").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    assert_eq!(all_pg_names(&client).await, defaults_before, "only the default parameter groups remain");
    expect_code(
        west.describe_cache_parameter_groups().cache_parameter_group_name("doomed-west").send().await,
        "CacheParameterGroupNotFound",
    );
    expect_code(
        client.describe_cache_subnet_groups().cache_subnet_group_name("doomed-subnets").send().await,
        "CacheSubnetGroupNotFoundFault",
    );
    client
        .describe_cache_subnet_groups()
        .cache_subnet_group_name("default")
        .send()
        .await
        .expect("default subnet group stays");
    expect_code(
        client.describe_cache_security_groups().cache_security_group_name("doomed-sg").send().await,
        "CacheSecurityGroupNotFound",
    );
    expect_code(
        client.list_tags_for_resource().resource_name(group.arn().unwrap()).send().await,
        "CacheParameterGroupNotFound",
    );
    let params = crate::all_params(&client, "default.redis7", None).await;
    assert_eq!(crate::value_of(&params, "timeout"), Some("0"));

    // The server keeps working after a reset; the name is free.
    let again = create_pg(&client, "doomed", "redis7").await;
    assert!(
        client.list_tags_for_resource().resource_name(again.arn().unwrap()).send().await.unwrap().tag_list().is_empty()
    );
}

#[tokio::test]
async fn metrics_count_requests_by_action_and_outcome() {
    let server = TestServer::start().await;
    let client = server.client();
    client.describe_cache_parameter_groups().send().await.unwrap();
    client.describe_cache_parameter_groups().send().await.unwrap();
    expect_code(
        client.delete_cache_parameter_group().cache_parameter_group_name("ghost").send().await,
        "CacheParameterGroupNotFound",
    );
    let _ = reqwest::get(server.endpoint() + "/?Action=NoSuchAction&Version=2015-02-02").await.unwrap();

    let response = reqwest::get(server.endpoint() + "/metrics").await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(text.contains("\nelasticache_local_up 1\n"), "{text}");
    assert!(
        text.contains(
            "elasticache_local_api_requests_total{action=\"DescribeCacheParameterGroups\",outcome=\"ok\"} 2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "elasticache_local_api_requests_total{action=\"DeleteCacheParameterGroup\",outcome=\"CacheParameterGroupNotFound\"} 1\n"
        ),
        "{text}"
    );
    assert!(!text.contains("NoSuchAction"), "unknown actions are not labels of their own: {text}");
    assert!(text.contains("action=\"unknown\""), "{text}");
    assert!(text.contains("# TYPE elasticache_local_cache_clusters gauge"), "{text}");
}
