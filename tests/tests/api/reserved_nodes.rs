//! Reserved cache nodes: DescribeReservedCacheNodesOfferings, PurchaseReservedCacheNodesOffering,
//! DescribeReservedCacheNodes, tags on reservations, and the admin API's retire.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{ReservedCacheNode, ReservedCacheNodesOffering};
use e2e::{ACCOUNT, REGION, TestServer, admin_post, expect_code};

use crate::tag;

const ONE_YEAR: i32 = 31_536_000;
const THREE_YEARS: i32 = 94_608_000;
/// AWS's own offering in aws-cli's describe-reserved-cache-nodes-offerings example.
const M3_HEAVY: &str = "0443a27b-4da5-4b90-b92d-929fbd7abed2";

/// A server for API-only tests: reservations start no node.
async fn server() -> TestServer {
    TestServer::without_engines().await
}

fn api_only(config: &mut server::Config) {
    config.engines = Some(nodes::Engines::default());
    config.warm_nodes = 0;
    config.settle_timeout = Duration::ZERO;
}

/// Every offering matching the filters the builder sets, all pages of `page_size`.
async fn all_offerings(client: &Client, page_size: i32) -> Vec<ReservedCacheNodesOffering> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_reserved_cache_nodes_offerings()
            .max_records(page_size)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        assert!(out.reserved_cache_nodes_offerings().len() <= page_size as usize);
        all.extend(out.reserved_cache_nodes_offerings().iter().cloned());
        marker = out.marker;
        if marker.is_none() {
            return all;
        }
    }
}

/// The one offering matching all four of Terraform's data source filters.
async fn offering(
    client: &Client,
    node_type: &str,
    duration: &str,
    kind: &str,
    product: &str,
) -> ReservedCacheNodesOffering {
    let out = client
        .describe_reserved_cache_nodes_offerings()
        .cache_node_type(node_type)
        .duration(duration)
        .offering_type(kind)
        .product_description(product)
        .send()
        .await
        .unwrap();
    assert_eq!(out.reserved_cache_nodes_offerings().len(), 1, "{node_type} {duration} {kind} {product}: {out:?}");
    assert_eq!(out.marker, None);
    out.reserved_cache_nodes_offerings()[0].clone()
}

fn offering_id(o: &ReservedCacheNodesOffering) -> String {
    o.reserved_cache_nodes_offering_id().unwrap().to_string()
}

async fn purchase(client: &Client, offering: &str, id: Option<&str>, count: Option<i32>) -> ReservedCacheNode {
    client
        .purchase_reserved_cache_nodes_offering()
        .reserved_cache_nodes_offering_id(offering)
        .set_reserved_cache_node_id(id.map(str::to_string))
        .set_cache_node_count(count)
        .send()
        .await
        .unwrap_or_else(|e| panic!("purchasing {offering} as {id:?}: {e:?}"))
        .reserved_cache_node
        .expect("ReservedCacheNode")
}

async fn describe(client: &Client, id: &str) -> ReservedCacheNode {
    let out = client.describe_reserved_cache_nodes().reserved_cache_node_id(id).send().await.unwrap();
    assert_eq!(out.reserved_cache_nodes().len(), 1, "{out:?}");
    out.reserved_cache_nodes()[0].clone()
}

/// The ids of the reservations a Describe with these filters lists, all pages.
async fn reservation_ids(
    request: aws_sdk_elasticache::operation::describe_reserved_cache_nodes::builders::DescribeReservedCacheNodesFluentBuilder,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut marker = None;
    loop {
        let out = request.clone().max_records(20).set_marker(marker).send().await.unwrap();
        assert!(out.reserved_cache_nodes().len() <= 20);
        ids.extend(out.reserved_cache_nodes().iter().map(|r| r.reserved_cache_node_id().unwrap().to_string()));
        marker = out.marker;
        if marker.is_none() {
            return ids;
        }
    }
}

#[tokio::test]
async fn offerings_are_the_catalog_every_node_type_both_terms() {
    let server = server().await;
    let client = server.client();
    let all = all_offerings(&client, 100).await;
    let ids: Vec<String> = all.iter().map(offering_id).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "each offering once across pages");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order, as AWS lists them");
    let mut node_types = HashSet::new();
    for o in &all {
        assert!([ONE_YEAR, THREE_YEARS].contains(&o.duration().unwrap()), "{o:?}");
        assert!(["redis", "memcached", "valkey"].contains(&o.product_description().unwrap()), "{o:?}");
        assert!(o.fixed_price().is_some() && o.usage_price().is_some(), "{o:?}");
        assert!(o.recurring_charges().iter().all(|c| c.recurring_charge_frequency() == Some("Hourly")), "{o:?}");
        node_types.insert(o.cache_node_type().unwrap().to_string());
    }
    // Every node type the emulator runs can be reserved.
    for node_type in ["cache.t3.micro", "cache.t4g.small", "cache.r7g.large", "cache.m8g.large", "cache.m1.small"] {
        assert!(node_types.contains(node_type), "{node_type}");
    }
    // The same catalog with pages of 20 (AWS's minimum).
    let small: Vec<String> = all_offerings(&client, 20).await.iter().map(offering_id).collect();
    assert_eq!(small, ids);

    // Current generations: the three standard offering types, priced as AWS prices them.
    let no_upfront = offering(&client, "cache.t3.small", "1", "No Upfront", "redis").await;
    assert_eq!((no_upfront.fixed_price(), no_upfront.usage_price()), (Some(0.0), Some(0.0)));
    assert_eq!(no_upfront.recurring_charges()[0].recurring_charge_amount(), Some(0.023));
    let partial = offering(&client, "cache.c7gn.large", "31536000", "Partial Upfront", "redis").await;
    assert_eq!(partial.fixed_price(), Some(725.985));
    assert_eq!(partial.recurring_charges()[0].recurring_charge_amount(), Some(0.083));
    let valkey = offering(&client, "cache.c7gn.large", "3", "All Upfront", "valkey").await;
    assert_eq!((valkey.duration(), valkey.fixed_price()), (Some(THREE_YEARS), Some(2412.504)));
    // Terraform's aws_elasticache_reserved_cache_node_offering example finds exactly one.
    offering(&client, "cache.t4g.small", "31536000", "No Upfront", "redis").await;
    // Previous generations: the legacy utilization types; Medium and Light charge per hour used.
    let medium = offering(&client, "cache.r4.large", "94608000", "Medium Utilization", "memcached").await;
    assert!(medium.usage_price().unwrap() > 0.0 && medium.recurring_charges().is_empty(), "{medium:?}");
    let heavy = offering(&client, "cache.r4.large", "3", "Heavy Utilization", "memcached").await;
    assert_eq!(heavy.usage_price(), Some(0.0));
    assert_eq!(heavy.recurring_charges().len(), 1);
    let none = client
        .describe_reserved_cache_nodes_offerings()
        .cache_node_type("cache.r7g.large")
        .offering_type("Heavy Utilization")
        .send()
        .await
        .unwrap();
    assert!(none.reserved_cache_nodes_offerings().is_empty(), "{none:?}");
}

#[tokio::test]
async fn offering_filters_and_errors() {
    let server = server().await;
    let client = server.client();
    // By id: AWS's own answer, verbatim.
    let out = client
        .describe_reserved_cache_nodes_offerings()
        .reserved_cache_nodes_offering_id(M3_HEAVY)
        .send()
        .await
        .unwrap();
    let [o] = out.reserved_cache_nodes_offerings() else { panic!("{out:?}") };
    assert_eq!(o.cache_node_type(), Some("cache.m3.2xlarge"));
    assert_eq!((o.duration(), o.fixed_price(), o.usage_price()), (Some(ONE_YEAR), Some(1772.0), Some(0.0)));
    assert_eq!((o.product_description(), o.offering_type()), (Some("redis"), Some("Heavy Utilization")));
    assert_eq!(o.recurring_charges()[0].recurring_charge_amount(), Some(0.25));
    // An id with filters that exclude it: nothing, not an error.
    let out = client
        .describe_reserved_cache_nodes_offerings()
        .reserved_cache_nodes_offering_id(M3_HEAVY)
        .product_description("memcached")
        .send()
        .await
        .unwrap();
    assert!(out.reserved_cache_nodes_offerings().is_empty());

    // Each filter narrows the list to what it names; years and seconds are the same filter.
    let by_type =
        client.describe_reserved_cache_nodes_offerings().cache_node_type("cache.m6g.large").send().await.unwrap();
    let by_type = by_type.reserved_cache_nodes_offerings();
    assert_eq!(by_type.len(), 18, "3 products x 2 terms x 3 offering types: {by_type:?}");
    assert!(by_type.iter().all(|o| o.cache_node_type() == Some("cache.m6g.large")));
    for (years, seconds) in [("1", ONE_YEAR), ("3", THREE_YEARS)] {
        let in_years = client
            .describe_reserved_cache_nodes_offerings()
            .cache_node_type("cache.m6g.large")
            .duration(years)
            .send()
            .await
            .unwrap();
        let in_seconds = client
            .describe_reserved_cache_nodes_offerings()
            .cache_node_type("cache.m6g.large")
            .duration(seconds.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(in_years.reserved_cache_nodes_offerings(), in_seconds.reserved_cache_nodes_offerings());
        assert_eq!(in_years.reserved_cache_nodes_offerings().len(), 9);
        assert!(in_years.reserved_cache_nodes_offerings().iter().all(|o| o.duration() == Some(seconds)));
    }
    let valkey = client
        .describe_reserved_cache_nodes_offerings()
        .product_description("valkey")
        .offering_type("All Upfront")
        .max_records(100)
        .send()
        .await
        .unwrap();
    assert_eq!(valkey.reserved_cache_nodes_offerings().len(), 100);
    assert!(valkey.marker.is_some());
    assert!(
        valkey
            .reserved_cache_nodes_offerings()
            .iter()
            .all(|o| o.product_description() == Some("valkey") && o.offering_type() == Some("All Upfront"))
    );

    let error = expect_code(
        client
            .describe_reserved_cache_nodes_offerings()
            .reserved_cache_nodes_offering_id("no-such-offering")
            .send()
            .await,
        "ReservedCacheNodesOfferingNotFound",
    );
    assert_eq!(error.status, 404);
    assert!(error.message.contains("no-such-offering"), "{error:?}");
    for bad in ["2", "0", "P1Y", "one"] {
        expect_code(
            client.describe_reserved_cache_nodes_offerings().duration(bad).send().await,
            "InvalidParameterValue",
        );
        expect_code(client.describe_reserved_cache_nodes().duration(bad).send().await, "InvalidParameterValue");
    }
    for bad in ["Cheap", "no upfront", "Heavy"] {
        expect_code(
            client.describe_reserved_cache_nodes_offerings().offering_type(bad).send().await,
            "InvalidParameterValue",
        );
        expect_code(client.describe_reserved_cache_nodes().offering_type(bad).send().await, "InvalidParameterValue");
    }
    for bad in [0, 19, 101] {
        expect_code(
            client.describe_reserved_cache_nodes_offerings().max_records(bad).send().await,
            "InvalidParameterValue",
        );
        expect_code(client.describe_reserved_cache_nodes().max_records(bad).send().await, "InvalidParameterValue");
    }
}

#[tokio::test]
async fn purchase_then_describe() {
    let server = server().await;
    let client = server.client();
    let o = offering(&client, "cache.r7g.large", "1", "Partial Upfront", "redis").await;
    let before = std::time::SystemTime::now();
    let bought = client
        .purchase_reserved_cache_nodes_offering()
        .reserved_cache_nodes_offering_id(offering_id(&o))
        .reserved_cache_node_id("MyReservationID")
        .cache_node_count(3)
        .tags(tag("team", "cache"))
        .send()
        .await
        .unwrap()
        .reserved_cache_node
        .expect("ReservedCacheNode");
    // AWS's answer at the call: payment pending; the id as AWS keeps it, lowercase.
    assert_eq!(bought.state(), Some("payment-pending"));
    assert_eq!(bought.reserved_cache_node_id(), Some("myreservationid"));
    assert_eq!(bought.reserved_cache_nodes_offering_id(), o.reserved_cache_nodes_offering_id());
    assert_eq!(bought.cache_node_count(), Some(3));
    assert_eq!(bought.cache_node_type(), Some("cache.r7g.large"));
    assert_eq!(bought.duration(), Some(ONE_YEAR));
    assert_eq!((bought.fixed_price(), bought.usage_price()), (o.fixed_price(), o.usage_price()));
    assert_eq!(bought.recurring_charges(), o.recurring_charges());
    assert_eq!((bought.product_description(), bought.offering_type()), (Some("redis"), Some("Partial Upfront")));
    let arn = format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:reserved-instance:myreservationid");
    assert_eq!(bought.reservation_arn(), Some(arn.as_str()));
    let start = bought.start_time().expect("StartTime");
    let since_epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((start.secs() - since_epoch(before)).abs() <= 5, "StartTime {start:?} is the purchase time");

    // The next read already sees it paid for; any case of the id finds it.
    let described = describe(&client, "MYRESERVATIONID").await;
    assert_eq!(described.state(), Some("active"));
    let mut paid = bought.clone();
    paid.state = Some("active".to_string());
    assert_eq!(described, paid);

    // Without an id AWS makes one from the purchase time; CacheNodeCount defaults to 1.
    let generated = purchase(&client, M3_HEAVY, None, None).await;
    let id = generated.reserved_cache_node_id().unwrap();
    let shape: Vec<&str> = id.split('-').collect();
    assert!(
        shape.len() == 8
            && shape[0] == "ri"
            && shape[1].len() == 4
            && shape[7].len() == 3
            && shape[1..].iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "ri-YYYY-MM-DD-HH-MM-SS-mmm: {id}"
    );
    assert_eq!(generated.cache_node_count(), Some(1));
    assert_eq!(generated.fixed_price(), Some(1772.0));
    assert_eq!(describe(&client, id).await.state(), Some("active"));
    let another = purchase(&client, M3_HEAVY, None, None).await;
    assert_ne!(another.reserved_cache_node_id(), generated.reserved_cache_node_id(), "each purchase its own id");

    // Tags: given at purchase, and managed through the ReservationARN like any resource's.
    let tags = client.list_tags_for_resource().resource_name(&arn).send().await.unwrap();
    assert_eq!(tags.tag_list(), [tag("team", "cache")]);
    client.add_tags_to_resource().resource_name(&arn).tags(tag("env", "dev")).send().await.unwrap();
    client.remove_tags_from_resource().resource_name(&arn).tag_keys("team").send().await.unwrap();
    let tags = client.list_tags_for_resource().resource_name(&arn).send().await.unwrap();
    assert_eq!(tags.tag_list(), [tag("env", "dev")]);
    let unknown = format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:reserved-instance:nobody");
    expect_code(client.list_tags_for_resource().resource_name(unknown).send().await, "ReservedCacheNodeNotFound");
}

#[tokio::test]
async fn purchase_errors() {
    let server = server().await;
    let client = server.client();
    purchase(&client, M3_HEAVY, Some("taken"), None).await;
    let purchase_as = |offering: &str, id: &str| {
        client
            .purchase_reserved_cache_nodes_offering()
            .reserved_cache_nodes_offering_id(offering)
            .reserved_cache_node_id(id)
    };
    let error = expect_code(purchase_as(M3_HEAVY, "TAKEN").send().await, "ReservedCacheNodeAlreadyExists");
    assert_eq!(error.status, 404, "the model's status for this fault");
    let error =
        expect_code(purchase_as("no-such-offering", "fresh").send().await, "ReservedCacheNodesOfferingNotFound");
    assert_eq!(error.status, 404);
    for count in [0, -1] {
        expect_code(purchase_as(M3_HEAVY, "fresh").cache_node_count(count).send().await, "InvalidParameterValue");
    }
    for id in ["-starts-with-hyphen", "two--hyphens", "under_score", "ends-"] {
        expect_code(purchase_as(M3_HEAVY, id).send().await, "InvalidParameterValue");
    }
    let mut too_many = purchase_as(M3_HEAVY, "fresh");
    for i in 0..51 {
        too_many = too_many.tags(tag(&format!("k{i}"), "v"));
    }
    expect_code(too_many.send().await, "TagQuotaPerResourceExceeded");
    expect_code(purchase_as(M3_HEAVY, "fresh").tags(tag("aws:owner", "me")).send().await, "InvalidParameterValue");
    // Nothing a refused purchase asked for was recorded.
    let ids = reservation_ids(client.describe_reserved_cache_nodes()).await;
    assert_eq!(ids, ["taken"]);
    let error = expect_code(
        client.describe_reserved_cache_nodes().reserved_cache_node_id("fresh").send().await,
        "ReservedCacheNodeNotFound",
    );
    assert_eq!(error.status, 404);
    assert!(error.message.contains("fresh"), "{error:?}");
}

#[tokio::test]
async fn describe_filters_and_pages() {
    let server = server().await;
    let client = server.client();
    let redis_1y = offering_id(&offering(&client, "cache.t4g.small", "1", "No Upfront", "redis").await);
    let valkey_3y = offering_id(&offering(&client, "cache.r7g.large", "3", "All Upfront", "valkey").await);
    let memcached_heavy =
        offering_id(&offering(&client, "cache.m4.large", "1", "Heavy Utilization", "memcached").await);
    let mut expected = Vec::new();
    for i in 0..25 {
        let (offering, id) = match i % 3 {
            0 => (&redis_1y, format!("redis-{i:02}")),
            1 => (&valkey_3y, format!("valkey-{i:02}")),
            _ => (&memcached_heavy, format!("memcached-{i:02}")),
        };
        purchase(&client, offering, Some(&id), Some(2)).await;
        expected.push(id);
    }
    expected.sort();
    // Two pages of 20, every reservation once, in id order.
    assert_eq!(reservation_ids(client.describe_reserved_cache_nodes()).await, expected);
    let first = client.describe_reserved_cache_nodes().max_records(20).send().await.unwrap();
    assert_eq!(first.reserved_cache_nodes().len(), 20);
    assert_eq!(first.marker.as_deref(), Some(expected[20].as_str()));

    let of = |prefix: &str| expected.iter().filter(|id| id.starts_with(prefix)).cloned().collect::<Vec<_>>();
    let all = client.describe_reserved_cache_nodes();
    assert_eq!(reservation_ids(all.clone().reserved_cache_nodes_offering_id(&valkey_3y)).await, of("valkey"));
    assert_eq!(reservation_ids(all.clone().cache_node_type("cache.m4.large")).await, of("memcached"));
    assert_eq!(reservation_ids(all.clone().duration("3")).await, of("valkey"));
    assert_eq!(
        reservation_ids(all.clone().duration("31536000")).await.len(),
        of("redis").len() + of("memcached").len()
    );
    assert_eq!(reservation_ids(all.clone().product_description("redis")).await, of("redis"));
    assert_eq!(reservation_ids(all.clone().offering_type("Heavy Utilization")).await, of("memcached"));
    assert_eq!(
        reservation_ids(all.clone().reserved_cache_node_id("valkey-01").product_description("valkey")).await,
        ["valkey-01"]
    );
    assert!(
        reservation_ids(all.clone().reserved_cache_node_id("valkey-01").product_description("redis")).await.is_empty()
    );
    assert!(reservation_ids(all.clone().reserved_cache_nodes_offering_id("no-such-offering")).await.is_empty());
    assert!(
        reservation_ids(all.clone().cache_node_type("cache.r7g.large").product_description("redis")).await.is_empty()
    );
}

#[tokio::test]
async fn retire_ends_a_reservation_and_frees_the_quota() {
    let server = server().await;
    let client = server.client();
    let offering = offering_id(&offering(&client, "cache.t3.micro", "1", "No Upfront", "redis").await);
    // AWS's quota: the nodes of the reservations not yet retired, up to the region's 300.
    purchase(&client, &offering, Some("big"), Some(290)).await;
    let over = client
        .purchase_reserved_cache_nodes_offering()
        .reserved_cache_nodes_offering_id(&offering)
        .cache_node_count(11);
    expect_code(over.clone().send().await, "ReservedCacheNodeQuotaExceeded");
    purchase(&client, &offering, Some("small"), Some(10)).await;
    expect_code(over.clone().cache_node_count(1).send().await, "ReservedCacheNodeQuotaExceeded");

    let (status, body) = admin_post(&server, "/_emulator/reserved-cache-nodes/BIG/retire").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "retired");
    assert_eq!(body["region"], REGION);
    assert_eq!(body["reserved_cache_node_id"], "big");
    let retired = describe(&client, "big").await;
    assert_eq!(retired.state(), Some("retired"));
    assert_eq!(retired.cache_node_count(), Some(290), "a retired reservation stays listed");
    assert_eq!(describe(&client, "small").await.state(), Some("active"));
    // Retiring again changes nothing; an unknown id is a 404.
    let (status, body) = admin_post(&server, "/_emulator/reserved-cache-nodes/big/retire").await;
    assert_eq!((status, &body["state"]), (200, &serde_json::json!("retired")));
    let (status, body) = admin_post(&server, "/_emulator/reserved-cache-nodes/nobody/retire").await;
    assert_eq!(status, 404, "{body}");

    // Retired nodes no longer count against the quota.
    purchase(&client, &offering, Some("after"), Some(290)).await;
}

#[tokio::test]
async fn regions_are_separate_and_state_survives_a_restart() {
    let server = server().await;
    let east = server.client();
    let west = server.client_in("us-west-2");
    purchase(&east, M3_HEAVY, Some("shared-id"), Some(2)).await;
    assert!(west.describe_reserved_cache_nodes().send().await.unwrap().reserved_cache_nodes().is_empty());
    expect_code(
        west.describe_reserved_cache_nodes().reserved_cache_node_id("shared-id").send().await,
        "ReservedCacheNodeNotFound",
    );
    let in_west = purchase(&west, M3_HEAVY, Some("shared-id"), Some(5)).await;
    assert_eq!(
        in_west.reservation_arn(),
        Some(format!("arn:aws:elasticache:us-west-2:{ACCOUNT}:reserved-instance:shared-id").as_str())
    );
    let offerings_before: Vec<String> = all_offerings(&east, 100).await.iter().map(offering_id).collect();
    let east_before = describe(&east, "shared-id").await;

    let dir = server.stop().await;
    let server = TestServer::try_start_with(dir, api_only).await.unwrap();
    let east = server.client();
    let west = server.client_in("us-west-2");
    // Offering ids are derived from what the offering is: the same after a restart.
    let offerings_after: Vec<String> = all_offerings(&east, 100).await.iter().map(offering_id).collect();
    assert_eq!(offerings_after, offerings_before);
    assert_eq!(describe(&east, "shared-id").await, east_before);
    assert_eq!(describe(&west, "shared-id").await.cache_node_count(), Some(5));
    // The admin API retires the server's own region's reservation of a shared id.
    let (status, body) = admin_post(&server, "/_emulator/reserved-cache-nodes/shared-id/retire").await;
    assert_eq!((status, &body["region"]), (200, &serde_json::json!(REGION)), "{body}");
    assert_eq!(describe(&east, "shared-id").await.state(), Some("retired"));
    assert_eq!(describe(&west, "shared-id").await.state(), Some("active"));
}
