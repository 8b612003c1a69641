//! Cache security groups and their EC2 ingress authorizations.

use aws_sdk_elasticache::Client;
use e2e::{ACCOUNT, REGION, TestServer, api_error, expect_code};

async fn names(client: &Client) -> Vec<String> {
    let out = client.describe_cache_security_groups().send().await.unwrap();
    out.cache_security_groups().iter().filter_map(|g| g.cache_security_group_name.clone()).collect()
}

async fn ingress(client: &Client, name: &str) -> Vec<(String, String)> {
    let out = client.describe_cache_security_groups().cache_security_group_name(name).send().await.unwrap();
    assert_eq!(out.cache_security_groups().len(), 1);
    out.cache_security_groups()[0]
        .ec2_security_groups()
        .iter()
        .map(|g| {
            (
                g.ec2_security_group_name().unwrap_or_default().to_string(),
                g.ec2_security_group_owner_id().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_describe_authorize_revoke_delete() {
    let server = TestServer::start().await;
    let client = server.client();
    let created = client
        .create_cache_security_group()
        .cache_security_group_name("web-cache")
        .description("web tier")
        .send()
        .await
        .unwrap()
        .cache_security_group
        .expect("CacheSecurityGroup");
    assert_eq!(created.cache_security_group_name(), Some("web-cache"));
    assert_eq!(created.description(), Some("web tier"));
    assert_eq!(created.owner_id(), Some(ACCOUNT));
    assert!(created.ec2_security_groups().is_empty());
    assert_eq!(created.arn(), Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:securitygroup:web-cache").as_str()));

    let described =
        client.describe_cache_security_groups().cache_security_group_name("web-cache").send().await.unwrap();
    assert_eq!(described.cache_security_groups(), std::slice::from_ref(&created));

    let authorized = client
        .authorize_cache_security_group_ingress()
        .cache_security_group_name("web-cache")
        .ec2_security_group_name("web-servers")
        .ec2_security_group_owner_id("123456789012")
        .send()
        .await
        .unwrap()
        .cache_security_group
        .expect("CacheSecurityGroup");
    assert_eq!(authorized.ec2_security_groups().len(), 1);
    let ec2 = &authorized.ec2_security_groups()[0];
    assert_eq!(ec2.ec2_security_group_name(), Some("web-servers"));
    assert_eq!(ec2.ec2_security_group_owner_id(), Some("123456789012"));
    assert!(ec2.status().is_some_and(|s| s == "authorized" || s == "authorizing"), "{ec2:?}");
    assert_eq!(ingress(&client, "web-cache").await, [("web-servers".to_string(), "123456789012".to_string())]);

    let error = client
        .authorize_cache_security_group_ingress()
        .cache_security_group_name("web-cache")
        .ec2_security_group_name("web-servers")
        .ec2_security_group_owner_id("123456789012")
        .send()
        .await
        .unwrap_err();
    assert!(error.as_service_error().is_some_and(|e| e.is_authorization_already_exists_fault()), "{error:?}");
    assert_eq!(ingress(&client, "web-cache").await.len(), 1, "no second authorization");

    // Same EC2 group name, other owner: a different authorization.
    client
        .authorize_cache_security_group_ingress()
        .cache_security_group_name("web-cache")
        .ec2_security_group_name("web-servers")
        .ec2_security_group_owner_id("210987654321")
        .send()
        .await
        .unwrap();
    assert_eq!(ingress(&client, "web-cache").await.len(), 2);

    let revoked = client
        .revoke_cache_security_group_ingress()
        .cache_security_group_name("web-cache")
        .ec2_security_group_name("web-servers")
        .ec2_security_group_owner_id("123456789012")
        .send()
        .await
        .unwrap()
        .cache_security_group
        .expect("CacheSecurityGroup");
    // AWS may report the revoked entry as "revoking" for a while; it must not stay authorized.
    assert!(
        revoked
            .ec2_security_groups()
            .iter()
            .filter(|g| g.ec2_security_group_owner_id() == Some("123456789012"))
            .all(|g| g.status() == Some("revoking")),
        "{revoked:?}"
    );
    assert_eq!(ingress(&client, "web-cache").await, [("web-servers".to_string(), "210987654321".to_string())]);

    let e = expect_code(
        client
            .revoke_cache_security_group_ingress()
            .cache_security_group_name("web-cache")
            .ec2_security_group_name("web-servers")
            .ec2_security_group_owner_id("123456789012")
            .send()
            .await,
        "AuthorizationNotFound",
    );
    assert_eq!(e.status, 404);
    assert_eq!(ingress(&client, "web-cache").await.len(), 1);

    client.delete_cache_security_group().cache_security_group_name("web-cache").send().await.unwrap();
    let e = expect_code(
        client.describe_cache_security_groups().cache_security_group_name("web-cache").send().await,
        "CacheSecurityGroupNotFound",
    );
    assert_eq!(e.status, 404);
    assert!(!names(&client).await.contains(&"web-cache".to_string()));
}

#[tokio::test]
async fn duplicates_and_unknown_groups_fail() {
    let server = TestServer::start().await;
    let client = server.client();
    client.create_cache_security_group().cache_security_group_name("sg-one").description("first").send().await.unwrap();
    let before = names(&client).await;

    let error = client
        .create_cache_security_group()
        .cache_security_group_name("sg-one")
        .description("second")
        .send()
        .await
        .unwrap_err();
    assert!(error.as_service_error().is_some_and(|e| e.is_cache_security_group_already_exists_fault()), "{error:?}");
    let described = client.describe_cache_security_groups().cache_security_group_name("sg-one").send().await.unwrap();
    assert_eq!(described.cache_security_groups()[0].description(), Some("first"));

    // The API reference: the name "Cannot be the word 'Default'".
    let e = api_error(
        client.create_cache_security_group().cache_security_group_name("Default").description("x").send().await,
    );
    assert_eq!(e.code, "InvalidParameterValue", "{e:?}");
    assert_eq!(names(&client).await, before);

    expect_code(
        client.describe_cache_security_groups().cache_security_group_name("nope").send().await,
        "CacheSecurityGroupNotFound",
    );
    expect_code(
        client.delete_cache_security_group().cache_security_group_name("nope").send().await,
        "CacheSecurityGroupNotFound",
    );
    expect_code(
        client
            .authorize_cache_security_group_ingress()
            .cache_security_group_name("nope")
            .ec2_security_group_name("web")
            .ec2_security_group_owner_id("123456789012")
            .send()
            .await,
        "CacheSecurityGroupNotFound",
    );
    expect_code(
        client
            .revoke_cache_security_group_ingress()
            .cache_security_group_name("nope")
            .ec2_security_group_name("web")
            .ec2_security_group_owner_id("123456789012")
            .send()
            .await,
        "CacheSecurityGroupNotFound",
    );
    assert_eq!(names(&client).await, before);
}

const OUTPOST: &str = "arn:aws:outposts:us-east-1:000000000000:outpost/op-0123456789abcdef0";

#[tokio::test]
async fn malformed_security_group_ids_topic_arns_and_overlong_descriptions_are_refused_and_change_nothing() {
    let server = TestServer::without_engines().await;
    let client = server.client();
    let memcached =
        || client.create_cache_cluster().cache_cluster_id("c").engine("memcached").cache_node_type("cache.t3.micro");
    for bad in ["sg-%01", "sg-", "web", "sg-a b", ""] {
        let error = expect_code(
            memcached().security_group_ids("sg-0123abcd").security_group_ids(bad).send().await,
            "InvalidParameterValue",
        );
        assert!(error.message.contains("SecurityGroupIds"), "{bad}: {}", error.message);
        expect_code(
            client
                .create_replication_group()
                .replication_group_id("g")
                .replication_group_description("d")
                .cache_node_type("cache.t3.micro")
                .security_group_ids(bad)
                .send()
                .await,
            "InvalidParameterValue",
        );
    }
    for bad in [
        "topic",
        "arn:aws:sqs:us-east-1:000000000000:q",
        &format!("arn:aws:sns:us-east-1:000000000000:{}", "t".repeat(257)),
    ] {
        let error = expect_code(memcached().notification_topic_arn(bad).send().await, "InvalidParameterValue");
        assert!(error.message.contains("NotificationTopicArn"), "{}", error.message);
    }
    let error = expect_code(
        memcached().preferred_outpost_arn("arn:aws:ec2:us-east-1:000000000000:outpost/op-1").send().await,
        "InvalidParameterValue",
    );
    assert!(error.message.contains("PreferredOutpostArn"), "{}", error.message);
    let long = "d".repeat(256);
    let error = expect_code(
        client
            .create_replication_group()
            .replication_group_id("g")
            .replication_group_description(&long)
            .cache_node_type("cache.t3.micro")
            .send()
            .await,
        "InvalidParameterValue",
    );
    assert!(error.message.contains("ReplicationGroupDescription"), "{}", error.message);
    expect_code(
        client
            .create_cache_parameter_group()
            .cache_parameter_group_name("p")
            .cache_parameter_group_family("redis7")
            .description(&long)
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(
        client.create_cache_security_group().cache_security_group_name("s").description(&long).send().await,
        "InvalidParameterValue",
    );
    assert!(client.describe_cache_clusters().send().await.unwrap().cache_clusters().is_empty());
    assert!(client.describe_replication_groups().send().await.unwrap().replication_groups().is_empty());
    assert!(!names(&client).await.contains(&"s".to_string()));

    // Ids of both lengths EC2 hands out, made-up ones, and a description of exactly 255
    // characters are taken.
    let created = memcached()
        .security_group_ids("sg-0123abcd")
        .security_group_ids("sg-0123456789abcdef0")
        .security_group_ids("sg-1")
        .notification_topic_arn("arn:aws:sns:us-east-1:000000000000:cache-events")
        .preferred_outpost_arn(OUTPOST)
        .send()
        .await
        .unwrap()
        .cache_cluster
        .unwrap();
    let ids: Vec<_> = created.security_groups().iter().filter_map(|g| g.security_group_id()).collect();
    assert_eq!(ids, ["sg-0123abcd", "sg-0123456789abcdef0", "sg-1"]);
    assert_eq!(created.preferred_outpost_arn(), Some(OUTPOST), "kept and shown as given");
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("p")
        .cache_parameter_group_family("redis7")
        .description("d".repeat(255))
        .send()
        .await
        .unwrap();
}
