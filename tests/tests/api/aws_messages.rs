//! Errors in AWS's own words, where they are on record (sources in
//! `crates/operations/src/messages.rs`): tools such as the Terraform provider match on them.

use aws_sdk_elasticache::types::{AuthenticationMode, InputAuthenticationType};
use e2e::{TestServer, expect_code};

/// A form as botocore and the Go SDK send it, when the Rust SDK would send it otherwise.
async fn post_form(server: &TestServer, form: &'static str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn errors_read_as_aws_writes_them() {
    // No engines: nothing here needs a node to run.
    let server = TestServer::without_engines().await;
    let client = server.client();
    let group = |id: &str, members: i32, failover: bool| {
        client
            .create_replication_group()
            .replication_group_id(id)
            .replication_group_description("d")
            .cache_node_type("cache.t3.micro")
            .num_cache_clusters(members)
            .automatic_failover_enabled(failover)
            .send()
    };
    group("solo", 1, false).await.unwrap();
    group("pair", 2, true).await.unwrap();
    group("trio", 3, false).await.unwrap();
    let delete = |id: &str| client.delete_cache_cluster().cache_cluster_id(id).send();
    let message = |e: e2e::ApiError| e.message;
    assert_eq!(
        message(expect_code(delete("solo-001").await, "InvalidCacheClusterState")),
        "Cannot delete the cache cluster since it is the only member of a replication group. Delete the replication group instead."
    );
    assert_eq!(
        message(expect_code(delete("pair-001").await, "InvalidCacheClusterState")),
        "Cache cluster pair-001 is serving as primary for replication group pair and cannot be deleted. To delete the entire replication group, use DeleteReplicationGroup."
    );
    assert!(
        message(expect_code(delete("pair-002").await, "InvalidCacheClusterState")).starts_with(
            "Cannot delete the cache cluster because it is the only read replica for replication group pair"
        )
    );
    expect_code(delete("trio-003").await, "InvalidCacheClusterState");
    assert_eq!(
        message(expect_code(group("pair", 2, true).await, "ReplicationGroupAlreadyExists")),
        "Replication group with specified name already exists."
    );

    let error = expect_code(
        client.create_cache_cluster().cache_cluster_id("no-type").engine("redis").send().await,
        "InvalidParameterValue",
    );
    assert_eq!(error.message, "The parameter CacheNodeType must be provided and must not be null.");
    let error = expect_code(
        client
            .create_cache_cluster()
            .cache_cluster_id("no-subnets")
            .engine("redis")
            .cache_node_type("cache.t3.micro")
            .cache_subnet_group_name("main")
            .send()
            .await,
        "CacheSubnetGroupNotFoundFault",
    );
    assert_eq!(error.message, "Cache Subnet Group main does not exist.");
    let error = expect_code(
        client.describe_cache_subnet_groups().cache_subnet_group_name("main").send().await,
        "CacheSubnetGroupNotFoundFault",
    );
    assert_eq!(error.message, "Cache subnet group main not found.");
    // An empty list, as botocore and the Go SDK send it (`SubnetIds=`); the Rust SDK sends none.
    let form = "Action=CreateCacheSubnetGroup&Version=2015-02-02&CacheSubnetGroupName=main\
                &CacheSubnetGroupDescription=d&SubnetIds=";
    let (status, body) = post_form(&server, form).await;
    assert_eq!(status, 400);
    assert!(body.contains("<Code>InvalidParameterValue</Code>"), "{body}");
    assert!(body.contains("<Message>The parameter SubnetIds must be provided.</Message>"), "{body}");

    let parameter_group = || {
        client
            .create_cache_parameter_group()
            .cache_parameter_group_name("kong-dev")
            .cache_parameter_group_family("redis7")
            .description("d")
            .send()
    };
    parameter_group().await.unwrap();
    let error = expect_code(parameter_group().await, "CacheParameterGroupAlreadyExists");
    assert_eq!(error.message, "Parameter group kong-dev already exists");

    let tags = |arn: &str| client.list_tags_for_resource().resource_name(arn).send();
    // No engines here: the group never becomes available.
    let error = expect_code(
        tags("arn:aws:elasticache:us-east-1:000000000000:replicationgroup:solo").await,
        "InvalidReplicationGroupState",
    );
    assert_eq!(error.message, "Cluster not in available state to perform tagging operations.");
    let error = expect_code(tags("arn:aws:elasticache:us-east-1:cluster").await, "InvalidARN");
    assert_eq!(error.message, "Input ARN string does not have 7 components.");
    let error =
        expect_code(tags("arn:aws:elasticache:us-east-1:111111111111:cluster:solo-001").await, "InvalidParameterValue");
    assert_eq!(error.message, "The resource ARN does not belong to the caller's account.");

    // Both sources: refused before either is looked up (neither exists here).
    let both = client.create_snapshot().snapshot_name("s").cache_cluster_id("nope").replication_group_id("nope");
    expect_code(both.send().await, "InvalidParameterCombination");
    let both = client.describe_snapshots().cache_cluster_id("nope").replication_group_id("nope");
    expect_code(both.send().await, "InvalidParameterCombination");

    let new_user =
        |id: &str| client.create_user().user_id(id).user_name(id).engine("redis").access_string("on ~* +@all");
    let user = |id: &str, mode: AuthenticationMode| new_user(id).authentication_mode(mode).send();
    let short =
        AuthenticationMode::builder().r#type(InputAuthenticationType::Password).passwords("x".repeat(15)).build();
    let error = expect_code(user("short", short).await, "InvalidParameterValue");
    assert_eq!(error.message, "Passwords length must be between 16-128 characters.");
    let form = "Action=CreateUser&Version=2015-02-02&UserId=odd&UserName=odd&Engine=redis&AccessString=on\
                &AuthenticationMode.Type=certificate";
    let (_, body) = post_form(&server, form).await;
    assert!(
        body.contains(
            "Input Authentication type: certificate is not in the allowed list: [password,no-password-required,iam]"
        ),
        "{body}"
    );
    let untyped = AuthenticationMode::builder().passwords("x".repeat(16)).build();
    let error = expect_code(user("untyped", untyped).await, "InvalidParameterValue");
    assert_eq!(
        error.message,
        "Input Authentication type: null is not in the allowed list: [password,no-password-required,iam]"
    );

    let mode = |kind: InputAuthenticationType, passwords: &[String]| {
        let passwords = (!passwords.is_empty()).then(|| passwords.to_vec());
        AuthenticationMode::builder().r#type(kind).set_passwords(passwords).build()
    };
    let password = "p".repeat(16);
    let iam_with_password = mode(InputAuthenticationType::Iam, std::slice::from_ref(&password));
    let error = expect_code(user("iam", iam_with_password).await, "InvalidParameterCombination");
    assert_eq!(error.message, "Password field is not allowed with authentication type: iam");
    let three = vec![password.clone(); 3];
    let error =
        expect_code(user("three", mode(InputAuthenticationType::Password, &three)).await, "InvalidParameterValue");
    assert_eq!(error.message, "Maximum number of passwords allowed in this service is 2.");
    let error =
        expect_code(user("none", mode(InputAuthenticationType::Password, &[])).await, "InvalidParameterCombination");
    assert_eq!(error.message, "A user with Authentication Mode: password, must have at least one password");
    let no_password_required = |id: &str| new_user(id).no_password_required(true);
    let flag_and_type = no_password_required("flag")
        .authentication_mode(mode(InputAuthenticationType::Password, std::slice::from_ref(&password)))
        .send()
        .await;
    let error = expect_code(flag_and_type, "InvalidParameterCombination");
    assert_eq!(error.message, "No password required flag is true but provided authentication type is password");
    let no_password_with_one = no_password_required("nopass").passwords(password).send().await;
    let error = expect_code(no_password_with_one, "InvalidParameterCombination");
    assert_eq!(error.message, "Password field is not allowed with authentication type: no-password-required");
    let described = client.describe_users().send().await.expect("DescribeUsers");
    assert_eq!(described.users().len(), 1, "only the default user: every refused create changed nothing");
}
