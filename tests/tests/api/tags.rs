//! AddTagsToResource / RemoveTagsFromResource / ListTagsForResource.

use std::collections::BTreeMap;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::Tag;
use e2e::{ACCOUNT, REGION, TestServer, api_error, expect_code};

use crate::tag;

fn as_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

async fn tags_of(client: &Client, arn: &str) -> BTreeMap<String, String> {
    let out = client.list_tags_for_resource().resource_name(arn).send().await.unwrap();
    as_map(out.tag_list())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// ARNs of one parameter group, subnet group and security group, each created with tags.
async fn tagged_resources(client: &Client) -> Vec<String> {
    let pg = client
        .create_cache_parameter_group()
        .cache_parameter_group_name("tagged-pg")
        .cache_parameter_group_family("redis7")
        .description("d")
        .tags(tag("env", "dev"))
        .tags(tag("owner", "e2e"))
        .send()
        .await
        .unwrap();
    let sng = client
        .create_cache_subnet_group()
        .cache_subnet_group_name("tagged-sng")
        .cache_subnet_group_description("d")
        .subnet_ids("subnet-0a1b2c3d")
        .tags(tag("env", "dev"))
        .tags(tag("owner", "e2e"))
        .send()
        .await
        .unwrap();
    let sg = client
        .create_cache_security_group()
        .cache_security_group_name("tagged-sg")
        .description("d")
        .tags(tag("env", "dev"))
        .tags(tag("owner", "e2e"))
        .send()
        .await
        .unwrap();
    let arns = vec![
        pg.cache_parameter_group.unwrap().arn.expect("parameter group ARN"),
        sng.cache_subnet_group.unwrap().arn.expect("subnet group ARN"),
        sg.cache_security_group.unwrap().arn.expect("security group ARN"),
    ];
    assert_eq!(
        arns,
        [
            format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:parametergroup:tagged-pg"),
            format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:subnetgroup:tagged-sng"),
            format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:securitygroup:tagged-sg"),
        ]
    );
    arns
}

#[tokio::test]
async fn tags_from_create_add_overwrite_remove() {
    let server = TestServer::start().await;
    let client = server.client();
    for arn in tagged_resources(&client).await {
        assert_eq!(tags_of(&client, &arn).await, map(&[("env", "dev"), ("owner", "e2e")]), "{arn}");

        let added = client
            .add_tags_to_resource()
            .resource_name(&arn)
            .tags(tag("env", "prod"))
            .tags(tag("team", "cache"))
            .send()
            .await
            .unwrap();
        let expected = map(&[("env", "prod"), ("owner", "e2e"), ("team", "cache")]);
        assert_eq!(as_map(added.tag_list()), expected, "AddTagsToResource returns the resulting tags");
        assert_eq!(tags_of(&client, &arn).await, expected);

        let removed = client
            .remove_tags_from_resource()
            .resource_name(&arn)
            .tag_keys("owner")
            .tag_keys("team")
            .send()
            .await
            .unwrap();
        assert_eq!(as_map(removed.tag_list()), map(&[("env", "prod")]));
        assert_eq!(tags_of(&client, &arn).await, map(&[("env", "prod")]));

        // An empty value is a value.
        client.add_tags_to_resource().resource_name(&arn).tags(tag("flag", "")).send().await.unwrap();
        assert_eq!(tags_of(&client, &arn).await, map(&[("env", "prod"), ("flag", "")]));
    }
}

#[tokio::test]
async fn describe_arn_can_be_tagged_and_tags_go_with_the_resource() {
    let server = TestServer::start().await;
    let client = server.client();
    let out =
        client.describe_cache_parameter_groups().cache_parameter_group_name("default.redis7").send().await.unwrap();
    let arn = out.cache_parameter_groups()[0].arn().expect("ARN in Describe").to_string();
    // Tagging works on the ARN Describe returns (Terraform's read path).
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("short-lived")
        .cache_parameter_group_family("redis7")
        .description("d")
        .tags(tag("k", "v"))
        .send()
        .await
        .unwrap();
    let described =
        client.describe_cache_parameter_groups().cache_parameter_group_name("short-lived").send().await.unwrap();
    let short_lived = described.cache_parameter_groups()[0].arn().unwrap().to_string();
    assert_eq!(tags_of(&client, &short_lived).await, map(&[("k", "v")]));
    assert!(tags_of(&client, &arn).await.is_empty());

    // A resource recreated under the same name does not inherit the old tags.
    client.delete_cache_parameter_group().cache_parameter_group_name("short-lived").send().await.unwrap();
    expect_code(
        client.list_tags_for_resource().resource_name(&short_lived).send().await,
        "CacheParameterGroupNotFound",
    );
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("short-lived")
        .cache_parameter_group_family("redis7")
        .description("d")
        .send()
        .await
        .unwrap();
    assert!(tags_of(&client, &short_lived).await.is_empty());
}

#[tokio::test]
async fn at_most_50_tags_per_resource() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = tagged_resources(&client).await.remove(0);
    // Two from creation, 48 more: 50.
    let mut request = client.add_tags_to_resource().resource_name(&arn);
    for i in 0..48 {
        request = request.tags(tag(&format!("k{i:02}"), "v"));
    }
    request.send().await.unwrap();
    assert_eq!(tags_of(&client, &arn).await.len(), 50);

    let e = expect_code(
        client.add_tags_to_resource().resource_name(&arn).tags(tag("one-too-many", "v")).send().await,
        "TagQuotaPerResourceExceeded",
    );
    assert_eq!(e.status, 400);
    let tags = tags_of(&client, &arn).await;
    assert_eq!(tags.len(), 50);
    assert!(!tags.contains_key("one-too-many"));

    // Overwriting an existing key at the limit adds nothing, so it is allowed.
    client.add_tags_to_resource().resource_name(&arn).tags(tag("env", "staging")).send().await.unwrap();
    assert_eq!(tags_of(&client, &arn).await.get("env").map(String::as_str), Some("staging"));

    // The limit also applies at creation.
    let mut create = client
        .create_cache_parameter_group()
        .cache_parameter_group_name("too-many-tags")
        .cache_parameter_group_family("redis7")
        .description("d");
    for i in 0..51 {
        create = create.tags(tag(&format!("k{i:02}"), "v"));
    }
    expect_code(create.send().await, "TagQuotaPerResourceExceeded");
    expect_code(
        client.describe_cache_parameter_groups().cache_parameter_group_name("too-many-tags").send().await,
        "CacheParameterGroupNotFound",
    );
}

#[tokio::test]
async fn invalid_tags_and_missing_keys_fail_without_effect() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = tagged_resources(&client).await.remove(1);
    let before = tags_of(&client, &arn).await;

    expect_code(
        client
            .add_tags_to_resource()
            .resource_name(&arn)
            .tags(tag("aws:reserved", "x"))
            .tags(tag("fine", "y"))
            .send()
            .await,
        "InvalidParameterValue",
    );
    assert_eq!(tags_of(&client, &arn).await, before, "a rejected AddTags adds nothing");

    let e = expect_code(
        client.remove_tags_from_resource().resource_name(&arn).tag_keys("never-set").send().await,
        "TagNotFound",
    );
    assert_eq!(e.status, 404);
    expect_code(
        client.remove_tags_from_resource().resource_name(&arn).tag_keys("env").tag_keys("never-set").send().await,
        "TagNotFound",
    );
    assert_eq!(tags_of(&client, &arn).await, before, "a rejected RemoveTags removes nothing");
}

#[tokio::test]
async fn malformed_and_missing_arns() {
    let server = TestServer::start().await;
    let client = server.client();
    for bad in [
        "not-an-arn",
        "arn:aws:s3:::bucket",
        "arn:aws:elasticache:us-east-1:000000000000",
        "arn:aws:elasticache:us-east-1:000000000000:nosuchtype:x",
    ] {
        let e = api_error(client.list_tags_for_resource().resource_name(bad).send().await);
        assert_eq!(e.code, "InvalidARN", "{bad}: {e:?}");
        let e = api_error(client.add_tags_to_resource().resource_name(bad).tags(tag("k", "v")).send().await);
        assert_eq!(e.code, "InvalidARN", "{bad}: {e:?}");
    }
    let base = format!("arn:aws:elasticache:{REGION}:{ACCOUNT}");
    for (kind, code) in [
        ("cluster", "CacheClusterNotFound"),
        ("replicationgroup", "ReplicationGroupNotFoundFault"),
        ("parametergroup", "CacheParameterGroupNotFound"),
        ("subnetgroup", "CacheSubnetGroupNotFoundFault"),
        ("securitygroup", "CacheSecurityGroupNotFound"),
        ("snapshot", "SnapshotNotFoundFault"),
        ("user", "UserNotFound"),
        ("usergroup", "UserGroupNotFound"),
    ] {
        let arn = format!("{base}:{kind}:nope");
        let e = api_error(client.list_tags_for_resource().resource_name(&arn).send().await);
        assert_eq!(e.code, code, "ListTags {arn}: {e:?}");
        let e = api_error(client.add_tags_to_resource().resource_name(&arn).tags(tag("k", "v")).send().await);
        assert_eq!(e.code, code, "AddTags {arn}: {e:?}");
        let e = api_error(client.remove_tags_from_resource().resource_name(&arn).tag_keys("k").send().await);
        assert_eq!(e.code, code, "RemoveTags {arn}: {e:?}");
    }
    // A resource of another region is not this region's resource.
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("east-only")
        .cache_parameter_group_family("redis7")
        .description("d")
        .send()
        .await
        .unwrap();
    let west = server.client_in("us-west-2");
    let arn = format!("{base}:parametergroup:east-only");
    assert!(client.list_tags_for_resource().resource_name(&arn).send().await.is_ok());
    let e = api_error(west.list_tags_for_resource().resource_name(&arn).send().await);
    assert!(["InvalidARN", "CacheParameterGroupNotFound"].contains(&e.code.as_str()), "{e:?}");
}
