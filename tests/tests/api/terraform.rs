//! Terraform round trips: each resource created with the calls the AWS provider makes, read
//! back with the calls its read makes, and every field the provider compares with its
//! configuration checked against what was sent (a difference is a perpetual diff, or a
//! replacement on every plan). `docs/terraform.md` lists the fields per resource.

use std::collections::BTreeMap;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{ParameterNameValue, Tag};
use e2e::{TestServer, wait_cluster_available, wait_group_available};

const MANAGED: &str = "Managed by Terraform";

fn tags() -> Vec<Tag> {
    vec![Tag::builder().key("env").value("ci").build(), Tag::builder().key("team").value("cache").build()]
}

/// The provider's tag read: ListTagsForResource on the ARN Describe returned.
async fn tags_of(client: &Client, arn: Option<&str>) -> BTreeMap<String, String> {
    let arn = arn.expect("Describe returns the ARN the provider lists tags with");
    let out = client.list_tags_for_resource().resource_name(arn).send().await.unwrap();
    out.tag_list().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect()
}

fn sent_tags() -> BTreeMap<String, String> {
    tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect()
}

/// The provider's `setEngineVersionRedis`: `engine_version` becomes major.minor of what
/// Describe says (for 6 and later), `engine_version_actual` the whole of it.
fn terraform_engine_version(described: &str) -> String {
    let parts: Vec<u64> = described.split('.').map(|p| p.parse().expect("a numeric version")).collect();
    assert_eq!(parts.len(), 3, "engine_version_actual is major.minor.patch: {described}");
    format!("{}.{}", parts[0], parts[1])
}

#[tokio::test]
async fn parameter_and_subnet_groups_read_back_as_configured() {
    let server = TestServer::without_engines().await;
    let client = server.client();

    // aws_elasticache_parameter_group: create, then the update path sets the parameters.
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("tf-params")
        .cache_parameter_group_family("redis7")
        .description(MANAGED)
        .set_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    let set = [("maxmemory-policy", "allkeys-lru"), ("timeout", "300")];
    let mut modify = client.modify_cache_parameter_group().cache_parameter_group_name("tf-params");
    for (name, value) in set {
        modify = modify
            .parameter_name_values(ParameterNameValue::builder().parameter_name(name).parameter_value(value).build());
    }
    modify.send().await.unwrap();
    let out = client.describe_cache_parameter_groups().cache_parameter_group_name("tf-params").send().await.unwrap();
    let group = &out.cache_parameter_groups()[0];
    assert_eq!(group.cache_parameter_group_name(), Some("tf-params"));
    assert_eq!(group.cache_parameter_group_family(), Some("redis7"));
    assert_eq!(group.description(), Some(MANAGED));
    // One unpaginated DescribeCacheParameters with Source=user: exactly what was set.
    let user =
        client.describe_cache_parameters().cache_parameter_group_name("tf-params").source("user").send().await.unwrap();
    let read: BTreeMap<&str, &str> =
        user.parameters().iter().filter_map(|p| Some((p.parameter_name()?, p.parameter_value()?))).collect();
    assert_eq!(read, set.into_iter().collect());
    assert_eq!(tags_of(&client, group.arn()).await, sent_tags());

    // aws_elasticache_subnet_group.
    let subnets = ["subnet-0a1b2c3d", "subnet-0123456789abcdef0"];
    client
        .create_cache_subnet_group()
        .cache_subnet_group_name("TF-Subnets")
        .cache_subnet_group_description(MANAGED)
        .set_subnet_ids(Some(subnets.map(str::to_string).to_vec()))
        .set_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    // The provider's id is the lowercased name.
    let out = client.describe_cache_subnet_groups().cache_subnet_group_name("tf-subnets").send().await.unwrap();
    let group = &out.cache_subnet_groups()[0];
    assert_eq!(group.cache_subnet_group_name(), Some("tf-subnets"));
    assert_eq!(group.cache_subnet_group_description(), Some(MANAGED));
    let mut read: Vec<&str> = group.subnets().iter().filter_map(|s| s.subnet_identifier()).collect();
    read.sort();
    let mut sent = subnets.to_vec();
    sent.sort();
    assert_eq!(read, sent);
    assert!(group.vpc_id().is_some_and(|v| !v.is_empty()));
    assert_eq!(tags_of(&client, group.arn()).await, sent_tags());
}

#[tokio::test]
async fn users_and_user_groups_read_back_as_configured() {
    let server = TestServer::without_engines().await;
    let client = server.client();
    // aws_elasticache_user: the provider sends the engine in capitals and always sends
    // NoPasswordRequired.
    let access = "on ~app::* -@all +@read +@hash";
    let user = client
        .create_user()
        .user_id("tf-user")
        .user_name("tf-user")
        .engine("REDIS")
        .access_string(access)
        .no_password_required(false)
        .passwords("a-password-of-20-chars")
        .set_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), Some("active"), "the provider waits creating -> active");
    let out = client.describe_users().user_id("tf-user").send().await.unwrap();
    let read = &out.users()[0];
    assert_eq!(read.access_string(), Some(access), "echoed verbatim");
    assert_eq!((read.user_id(), read.user_name()), (Some("tf-user"), Some("tf-user")));
    assert!(read.engine().is_some_and(|e| e.eq_ignore_ascii_case("redis")), "{:?}", read.engine());
    let auth = read.authentication().unwrap();
    assert_eq!(auth.r#type().map(|t| t.as_str()), Some("password"));
    assert_eq!(auth.password_count(), Some(1));
    assert_eq!(tags_of(&client, read.arn()).await, sent_tags());

    // aws_elasticache_user_group.
    client
        .create_user_group()
        .user_group_id("tf-users")
        .engine("REDIS")
        .user_ids("default")
        .user_ids("tf-user")
        .set_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    let out = client.describe_user_groups().user_group_id("tf-users").send().await.unwrap();
    let group = &out.user_groups()[0];
    assert_eq!(group.status(), Some("active"));
    let mut ids = group.user_ids().to_vec();
    ids.sort();
    assert_eq!(ids, ["default", "tf-user"]);
    assert!(group.engine().is_some_and(|e| e.eq_ignore_ascii_case("redis")));
    assert_eq!(tags_of(&client, group.arn()).await, sent_tags());
}

#[tokio::test]
async fn a_cache_cluster_reads_back_as_configured() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("TF-Cluster")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .cache_parameter_group_name("default.redis7")
        .snapshot_window("05:00-09:00")
        .snapshot_retention_limit(1)
        .preferred_maintenance_window("Sun:05:00-Sun:09:00")
        .auto_minor_version_upgrade(true)
        .set_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    // The provider's id is the lowercased CacheClusterId; its read shows the node info.
    let c = wait_cluster_available(&client, "tf-cluster").await;
    assert_eq!(c.cache_cluster_id(), Some("tf-cluster"));
    assert_eq!(c.engine(), Some("redis"));
    assert_eq!(terraform_engine_version(c.engine_version().unwrap()), "7.1", "no diff on engine_version");
    assert_eq!(c.cache_node_type(), Some("cache.t3.micro"));
    assert_eq!(c.num_cache_nodes(), Some(1));
    assert_eq!(c.cache_parameter_group().and_then(|g| g.cache_parameter_group_name()), Some("default.redis7"));
    assert_eq!(c.snapshot_window(), Some("05:00-09:00"));
    assert_eq!(c.snapshot_retention_limit(), Some(1));
    assert_eq!(c.preferred_maintenance_window(), Some("sun:05:00-sun:09:00"), "the provider lowercases it too");
    assert_eq!(c.auto_minor_version_upgrade(), Some(true));
    assert_eq!(c.transit_encryption_enabled(), Some(false));
    assert_eq!(c.cache_subnet_group_name(), Some("default"));
    assert!(c.network_type().is_some() && c.ip_discovery().is_some());
    // Every node needs an id, an endpoint and a zone, or the provider's read fails.
    for node in c.cache_nodes() {
        assert!(node.cache_node_id().is_some() && node.customer_availability_zone().is_some(), "{node:?}");
        let endpoint = node.endpoint().expect("endpoint");
        assert!(endpoint.address().is_some() && endpoint.port().is_some(), "{node:?}");
    }
    assert_eq!(tags_of(&client, c.arn()).await, sent_tags());
}

#[tokio::test]
async fn a_replication_group_reads_back_as_configured() {
    let server = TestServer::start().await;
    let client = server.client();
    // The provider always sends AutomaticFailoverEnabled, CacheNodeType,
    // TransitEncryptionEnabled and Engine.
    client
        .create_replication_group()
        .replication_group_id("tf-group")
        .replication_group_description(MANAGED)
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .transit_encryption_enabled(true)
        .at_rest_encryption_enabled(true)
        .auth_token("a-token-of-20-chars!")
        .cache_parameter_group_name("default.redis7")
        .snapshot_window("05:00-09:00")
        .snapshot_retention_limit(1)
        .preferred_maintenance_window("sun:05:00-sun:09:00")
        .set_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    let g = wait_group_available(&client, "tf-group").await;
    assert_eq!(g.description(), Some(MANAGED));
    assert_eq!(g.automatic_failover().map(|a| a.as_str()), Some("enabled"));
    assert_eq!(g.multi_az().map(|m| m.as_str()), Some("enabled"));
    assert_eq!(g.member_clusters().len(), 2, "num_cache_clusters");
    let shard = &g.node_groups()[0];
    assert_eq!(g.node_groups().len(), 1);
    assert_eq!(shard.node_group_members().len() - 1, 1, "replicas per shard");
    assert_eq!(g.cluster_enabled(), Some(false));
    assert!(shard.primary_endpoint().is_some() && shard.reader_endpoint().is_some());
    assert_eq!(g.snapshot_window(), Some("05:00-09:00"));
    assert_eq!(g.snapshot_retention_limit(), Some(1));
    assert_eq!(g.at_rest_encryption_enabled(), Some(true));
    assert_eq!(g.transit_encryption_enabled(), Some(true));
    assert_eq!(g.auth_token_enabled(), Some(true));

    // Then the first member of the first shard, for what the group does not carry.
    let first = shard.node_group_members()[0].cache_cluster_id().unwrap();
    let out = client.describe_cache_clusters().cache_cluster_id(first).show_cache_node_info(true).send().await.unwrap();
    let c = &out.cache_clusters()[0];
    assert_eq!(terraform_engine_version(c.engine_version().unwrap()), "7.1");
    assert_eq!(c.cache_node_type(), Some("cache.t3.micro"));
    assert_eq!(c.cache_parameter_group().and_then(|p| p.cache_parameter_group_name()), Some("default.redis7"));
    assert_eq!(c.preferred_maintenance_window(), Some("sun:05:00-sun:09:00"));
    assert_eq!(c.auto_minor_version_upgrade(), Some(true));
    assert_eq!(c.at_rest_encryption_enabled(), Some(true));
    assert_eq!(c.transit_encryption_enabled(), Some(true));
    assert_eq!(c.transit_encryption_mode().map(|m| m.as_str()), Some("required"));
    assert_eq!(c.auth_token_enabled(), Some(true));
    assert_eq!(tags_of(&client, g.arn()).await, sent_tags());
}
