//! Cache subnet groups.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::CacheSubnetGroup;
use e2e::{ACCOUNT, REGION, TestServer, ZONES, api_error, expect_code};

const SUBNET_A: &str = "subnet-0a1b2c3d";
const SUBNET_B: &str = "subnet-0123456789abcdef0";
const SUBNET_C: &str = "subnet-deadbeef";

async fn names(client: &Client) -> Vec<String> {
    let out = client.describe_cache_subnet_groups().send().await.unwrap();
    out.cache_subnet_groups().iter().filter_map(|g| g.cache_subnet_group_name.clone()).collect()
}

fn subnet_ids(group: &CacheSubnetGroup) -> Vec<&str> {
    let mut ids: Vec<_> = group.subnets().iter().filter_map(|s| s.subnet_identifier()).collect();
    ids.sort();
    ids
}

fn assert_well_formed(group: &CacheSubnetGroup) {
    assert!(group.vpc_id().is_some_and(|v| v.starts_with("vpc-")), "VpcId: {group:?}");
    assert!(!group.subnets().is_empty(), "{group:?}");
    for subnet in group.subnets() {
        assert!(subnet.subnet_identifier().is_some_and(|s| s.starts_with("subnet-")), "{subnet:?}");
        let zone = subnet.subnet_availability_zone().and_then(|z| z.name()).expect("SubnetAvailabilityZone.Name");
        assert!(ZONES.contains(&zone), "zone {zone} is one of the configured zones");
    }
}

#[tokio::test]
async fn default_group_exists() {
    let server = TestServer::start().await;
    let client = server.client();
    let out = client.describe_cache_subnet_groups().cache_subnet_group_name("default").send().await.unwrap();
    assert_eq!(out.cache_subnet_groups().len(), 1);
    let group = &out.cache_subnet_groups()[0];
    assert_eq!(group.cache_subnet_group_name(), Some("default"));
    assert_well_formed(group);
    assert_eq!(group.arn(), Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:subnetgroup:default").as_str()));
}

#[tokio::test]
async fn create_describe_modify_delete() {
    let server = TestServer::start().await;
    let client = server.client();
    let created = client
        .create_cache_subnet_group()
        .cache_subnet_group_name("app-subnets")
        .cache_subnet_group_description("app")
        .subnet_ids(SUBNET_A)
        .subnet_ids(SUBNET_B)
        .send()
        .await
        .unwrap()
        .cache_subnet_group
        .expect("CacheSubnetGroup");
    assert_eq!(created.cache_subnet_group_name(), Some("app-subnets"));
    assert_eq!(created.cache_subnet_group_description(), Some("app"));
    assert_eq!(subnet_ids(&created), [SUBNET_B, SUBNET_A], "sorted");
    assert_well_formed(&created);
    assert_eq!(created.arn(), Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:subnetgroup:app-subnets").as_str()));

    let described = client.describe_cache_subnet_groups().cache_subnet_group_name("app-subnets").send().await.unwrap();
    assert_eq!(described.cache_subnet_groups(), std::slice::from_ref(&created));
    assert!(names(&client).await.contains(&"app-subnets".to_string()));

    let modified = client
        .modify_cache_subnet_group()
        .cache_subnet_group_name("app-subnets")
        .cache_subnet_group_description("app v2")
        .subnet_ids(SUBNET_C)
        .send()
        .await
        .unwrap()
        .cache_subnet_group
        .expect("CacheSubnetGroup");
    assert_eq!(modified.cache_subnet_group_description(), Some("app v2"));
    assert_eq!(subnet_ids(&modified), [SUBNET_C]);
    assert_well_formed(&modified);
    let described = client.describe_cache_subnet_groups().cache_subnet_group_name("app-subnets").send().await.unwrap();
    assert_eq!(described.cache_subnet_groups(), std::slice::from_ref(&modified));

    // Description only: subnets stay.
    let modified = client
        .modify_cache_subnet_group()
        .cache_subnet_group_name("app-subnets")
        .cache_subnet_group_description("app v3")
        .send()
        .await
        .unwrap()
        .cache_subnet_group
        .unwrap();
    assert_eq!(subnet_ids(&modified), [SUBNET_C]);

    client.delete_cache_subnet_group().cache_subnet_group_name("app-subnets").send().await.unwrap();
    let error = client.describe_cache_subnet_groups().cache_subnet_group_name("app-subnets").send().await.unwrap_err();
    assert!(error.as_service_error().is_some_and(|e| e.is_cache_subnet_group_not_found_fault()), "{error:?}");
    assert!(!names(&client).await.contains(&"app-subnets".to_string()));
}

#[tokio::test]
async fn names_are_lowercased() {
    let server = TestServer::start().await;
    let client = server.client();
    let created = client
        .create_cache_subnet_group()
        .cache_subnet_group_name("Mixed-Case")
        .cache_subnet_group_description("x")
        .subnet_ids(SUBNET_A)
        .send()
        .await
        .unwrap()
        .cache_subnet_group
        .unwrap();
    assert_eq!(created.cache_subnet_group_name(), Some("mixed-case"));
    let out = client.describe_cache_subnet_groups().cache_subnet_group_name("mixed-case").send().await.unwrap();
    assert_eq!(out.cache_subnet_groups().len(), 1);
}

#[tokio::test]
async fn duplicates_unknown_names_and_bad_subnets_fail() {
    let server = TestServer::start().await;
    let client = server.client();
    let create = |name: &'static str, subnets: Vec<&'static str>| {
        client
            .create_cache_subnet_group()
            .cache_subnet_group_name(name)
            .cache_subnet_group_description("d")
            .set_subnet_ids(Some(subnets.into_iter().map(str::to_string).collect()))
            .send()
    };
    create("taken", vec![SUBNET_A]).await.unwrap();
    let before = names(&client).await;

    expect_code(create("taken", vec![SUBNET_B]).await, "CacheSubnetGroupAlreadyExists");
    expect_code(create("default", vec![SUBNET_B]).await, "CacheSubnetGroupAlreadyExists");
    for bad in ["sn-12345678", "subnet-", "subnet-xyz!", "subnet- a", "12345678"] {
        let e = api_error(create("bad-subnets", vec![SUBNET_A, bad]).await);
        assert_eq!(e.code, "InvalidSubnet", "subnet id {bad:?}: {e:?}");
    }
    let e = api_error(create("no-subnets", vec![]).await);
    assert_eq!(e.status, 400, "a subnet group needs subnets: {e:?}");
    assert_eq!(names(&client).await, before, "failed creates change nothing");
    let taken = client.describe_cache_subnet_groups().cache_subnet_group_name("taken").send().await.unwrap();
    assert_eq!(subnet_ids(&taken.cache_subnet_groups()[0]), [SUBNET_A]);
    // Made-up ids, or ones another local emulator issued, are taken: there is no VPC to ask.
    let made_up = create("made-up", vec!["subnet-1", "subnet-Private_A"]).await.unwrap().cache_subnet_group.unwrap();
    assert_eq!(subnet_ids(&made_up), ["subnet-1", "subnet-Private_A"]);

    let e = expect_code(
        client.describe_cache_subnet_groups().cache_subnet_group_name("nope").send().await,
        "CacheSubnetGroupNotFoundFault",
    );
    assert_eq!(e.status, 400, "CacheSubnetGroupNotFoundFault is a 400 in the model");
    expect_code(
        client.delete_cache_subnet_group().cache_subnet_group_name("nope").send().await,
        "CacheSubnetGroupNotFoundFault",
    );
    expect_code(
        client
            .modify_cache_subnet_group()
            .cache_subnet_group_name("nope")
            .cache_subnet_group_description("x")
            .send()
            .await,
        "CacheSubnetGroupNotFoundFault",
    );
    expect_code(
        client.modify_cache_subnet_group().cache_subnet_group_name("taken").subnet_ids("not-a-subnet").send().await,
        "InvalidSubnet",
    );
    let taken = client.describe_cache_subnet_groups().cache_subnet_group_name("taken").send().await.unwrap();
    assert_eq!(subnet_ids(&taken.cache_subnet_groups()[0]), [SUBNET_A], "a rejected modify changes nothing");
}
