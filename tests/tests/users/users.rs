//! User lifecycle: the built-in default user, create / describe / modify / delete, the
//! authentication modes, filters, pagination, tags, and survival across a restart.

use aws_sdk_elasticache::types::{AuthenticationMode, AuthenticationType, Filter, InputAuthenticationType, Tag};
use e2e::{ACCOUNT, REGION, TestServer, expect_code};

use crate::{PASSWORD, PASSWORD_2, all_user_ids, create_group, create_user, create_user_with, describe_user};

#[tokio::test]
async fn the_default_user_exists_and_cannot_be_changed() {
    let server = TestServer::start().await;
    let client = server.client();
    let user = describe_user(&client, "default").await;
    assert_eq!(user.user_id(), Some("default"));
    assert_eq!(user.user_name(), Some("default"));
    assert_eq!(user.engine(), Some("redis"));
    assert_eq!(user.access_string(), Some("on ~* +@all"));
    assert_eq!(user.status(), Some("active"));
    let auth = user.authentication().expect("Authentication");
    assert_eq!(auth.r#type(), Some(&AuthenticationType::NoPassword));
    assert_eq!(auth.password_count(), None, "AWS counts passwords of password users only");
    assert_eq!(user.arn(), Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:user:default").as_str()));
    assert_eq!(user.minimum_engine_version(), Some("6.0"));

    expect_code(client.delete_user().user_id("default").send().await, "InvalidParameterValue");
    expect_code(client.modify_user().user_id("default").access_string("off").send().await, "InvalidParameterValue");
    expect_code(
        client
            .create_user()
            .user_id("default")
            .user_name("x")
            .engine("redis")
            .access_string("on")
            .no_password_required(true)
            .send()
            .await,
        "UserAlreadyExists",
    );
    assert_eq!(describe_user(&client, "default").await, user, "unchanged");

    // Every region has its own.
    let other = server.client_in("eu-west-1");
    let there = other.describe_users().user_id("default").send().await.expect("DescribeUsers in eu-west-1");
    assert_eq!(there.users()[0].arn(), Some(format!("arn:aws:elasticache:eu-west-1:{ACCOUNT}:user:default").as_str()));
}

#[tokio::test]
async fn create_describe_modify_delete() {
    let server = TestServer::start().await;
    let client = server.client();
    // Terraform sends the engine in upper case and NoPasswordRequired always.
    let created = client
        .create_user()
        .user_id("App-User")
        .user_name("app")
        .engine("REDIS")
        .access_string("on ~app:* -@all +@read")
        .passwords(PASSWORD)
        .no_password_required(false)
        .send()
        .await
        .expect("CreateUser");
    assert_eq!(created.user_id(), Some("app-user"), "ids are stored lowercase");
    assert_eq!(created.user_name(), Some("app"));
    assert_eq!(created.engine(), Some("redis"));
    assert_eq!(created.status(), Some("active"));
    assert_eq!(created.access_string(), Some("on ~app:* -@all +@read"));
    assert_eq!(created.arn(), Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:user:app-user").as_str()));
    assert_eq!(created.minimum_engine_version(), Some("6.0"));
    assert_eq!(created.user_group_ids(), &[] as &[String]);
    let auth = created.authentication().expect("Authentication");
    assert_eq!(auth.r#type(), Some(&AuthenticationType::Password));
    assert_eq!(auth.password_count(), Some(1));
    let described = describe_user(&client, "APP-USER").await;
    assert_eq!(described.user_id(), created.user_id(), "any case finds it");
    assert_eq!(described.status(), created.status());
    assert_eq!(described.access_string(), created.access_string());
    assert_eq!(described.authentication(), created.authentication());
    assert_eq!(described.arn(), created.arn());
    assert_eq!(described.minimum_engine_version(), created.minimum_engine_version());

    let modified = client
        .modify_user()
        .user_id("app-user")
        .access_string("on ~other:* +get")
        .send()
        .await
        .expect("ModifyUser access string");
    assert_eq!(modified.status(), Some("modifying"));
    assert_eq!(modified.access_string(), Some("on ~other:* +get"));
    let described = describe_user(&client, "app-user").await;
    assert_eq!(described.status(), Some("active"));
    assert_eq!(described.access_string(), Some("on ~other:* +get"));

    let appended = client.modify_user().user_id("app-user").append_access_string("+set").send().await.expect("append");
    assert_eq!(appended.access_string(), Some("on ~other:* +get +set"));

    let two = client
        .modify_user()
        .user_id("app-user")
        .passwords(PASSWORD)
        .passwords(PASSWORD_2)
        .send()
        .await
        .expect("two passwords");
    assert_eq!(two.authentication().and_then(|a| a.password_count()), Some(2));
    assert_eq!(describe_user(&client, "app-user").await.authentication().and_then(|a| a.password_count()), Some(2));

    let open = client.modify_user().user_id("app-user").no_password_required(true).send().await.expect("no pw");
    let auth = open.authentication().expect("Authentication");
    assert_eq!(auth.r#type(), Some(&AuthenticationType::NoPassword));
    assert_eq!(auth.password_count(), None, "AWS counts passwords of password users only");

    let engine = client.modify_user().user_id("app-user").engine("VALKEY").send().await.expect("engine");
    assert_eq!(engine.engine(), Some("valkey"));
    assert_eq!(engine.minimum_engine_version(), Some("7.2"));

    let deleted = client.delete_user().user_id("app-user").send().await.expect("DeleteUser");
    assert_eq!(deleted.status(), Some("deleting"));
    assert_eq!(deleted.user_id(), Some("app-user"));
    let error = expect_code(client.describe_users().user_id("app-user").send().await, "UserNotFound");
    assert_eq!(error.status, 404);
    expect_code(client.delete_user().user_id("app-user").send().await, "UserNotFound");
    expect_code(client.modify_user().user_id("app-user").access_string("on").send().await, "UserNotFound");
    assert_eq!(all_user_ids(&client, None).await, ["default"]);
}

#[tokio::test]
async fn authentication_modes() {
    let server = TestServer::start().await;
    let client = server.client();
    let iam = client
        .create_user()
        .user_id("iam-user")
        .user_name("iam-user")
        .engine("redis")
        .access_string("on ~* +@all")
        .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::Iam).build())
        .send()
        .await
        .expect("IAM user");
    let auth = iam.authentication().expect("Authentication");
    assert_eq!(auth.r#type(), Some(&AuthenticationType::Iam));
    assert_eq!(auth.password_count(), None, "AWS counts passwords of password users only");
    assert_eq!(iam.minimum_engine_version(), Some("7.0"));

    let error = expect_code(
        client
            .create_user()
            .user_id("iam-other")
            .user_name("someone")
            .engine("redis")
            .access_string("on ~* +@all")
            .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::Iam).build())
            .send()
            .await,
        "InvalidParameterCombination",
    );
    assert!(error.message.contains("User Id and User name must be same"), "{error:?}");

    let by_mode = client
        .create_user()
        .user_id("mode-user")
        .user_name("mode-user")
        .engine("valkey")
        .access_string("on ~* +@all")
        .authentication_mode(
            AuthenticationMode::builder()
                .r#type(InputAuthenticationType::Password)
                .passwords(PASSWORD)
                .passwords(PASSWORD_2)
                .build(),
        )
        .send()
        .await
        .expect("password by AuthenticationMode");
    assert_eq!(by_mode.authentication().and_then(|a| a.password_count()), Some(2));
    assert_eq!(by_mode.authentication().and_then(|a| a.r#type()), Some(&AuthenticationType::Password));

    let open = client
        .create_user()
        .user_id("open-user")
        .user_name("open-user")
        .engine("redis")
        .access_string("on ~* +@all")
        .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::NoPassword).build())
        .send()
        .await
        .expect("no-password-required");
    assert_eq!(open.authentication().and_then(|a| a.r#type()), Some(&AuthenticationType::NoPassword));

    // Switching an IAM user to passwords and back.
    let switched = client
        .modify_user()
        .user_id("iam-user")
        .authentication_mode(
            AuthenticationMode::builder().r#type(InputAuthenticationType::Password).passwords(PASSWORD).build(),
        )
        .send()
        .await
        .expect("IAM to password");
    assert_eq!(switched.authentication().and_then(|a| a.r#type()), Some(&AuthenticationType::Password));
    // NoPasswordRequired=false alone keeps the passwords a user has...
    let kept = client.modify_user().user_id("iam-user").no_password_required(false).send().await.expect("keep");
    assert_eq!(kept.authentication().and_then(|a| a.password_count()), Some(1));
    // ...and is refused for a user without any.
    expect_code(
        client.modify_user().user_id("open-user").no_password_required(false).send().await,
        "InvalidParameterValue",
    );
}

#[tokio::test]
async fn duplicate_ids_are_refused_case_insensitively() {
    let server = TestServer::start().await;
    let client = server.client();
    create_user(&client, "app", "app").await;
    let error = expect_code(
        client
            .create_user()
            .user_id("APP")
            .user_name("other")
            .engine("redis")
            .access_string("on")
            .passwords(PASSWORD)
            .send()
            .await,
        "UserAlreadyExists",
    );
    assert_eq!(error.status, 400);
    // User names may repeat across users (a second "default" is how AWS swaps the default user).
    create_user(&client, "app-2", "app").await;
    assert_eq!(describe_user(&client, "app").await.access_string(), Some("on ~app:* +@all"), "first one unchanged");
}

#[tokio::test]
async fn describe_filters_and_pagination() {
    let server = TestServer::start().await;
    let client = server.client();
    for i in 0..24 {
        create_user(&client, &format!("user-{i:02}"), &format!("name-{i:02}")).await;
    }
    for i in 0..3 {
        create_user_with(&client, &format!("vk-{i}"), "vk", "valkey").await;
    }
    let all = all_user_ids(&client, Some(20)).await;
    assert_eq!(all.len(), 24 + 3 + 1, "every user once, the default user included: {all:?}");
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), all.len(), "no user on two pages");
    let first = client.describe_users().max_records(20).send().await.expect("first page");
    assert_eq!(first.users().len(), 20);
    assert!(first.marker().is_some(), "a marker when there is more");
    assert_eq!(all_user_ids(&client, None).await, all, "default page size holds them all");

    let valkey = client.describe_users().engine("VALKEY").send().await.expect("Engine filter");
    let ids: Vec<_> = valkey.users().iter().filter_map(|u| u.user_id()).collect();
    assert_eq!(ids, ["vk-0", "vk-1", "vk-2"]);
    let redis = client.describe_users().engine("redis").send().await.expect("Engine filter");
    assert_eq!(redis.users().len(), 25);

    let by_name = client
        .describe_users()
        .filters(Filter::builder().name("user-name").values("name-03").values("name-07").build())
        .send()
        .await
        .expect("user-name filter");
    let ids: Vec<_> = by_name.users().iter().filter_map(|u| u.user_id()).collect();
    assert_eq!(ids, ["user-03", "user-07"]);
    let by_id = client
        .describe_users()
        .filters(Filter::builder().name("user-id").values("vk-1").build())
        .send()
        .await
        .expect("user-id filter");
    assert_eq!(by_id.users().len(), 1);

    expect_code(
        client.describe_users().filters(Filter::builder().name("colour").values("red").build()).send().await,
        "InvalidParameterValue",
    );
    expect_code(client.describe_users().max_records(19).send().await, "InvalidParameterValue");
    expect_code(client.describe_users().max_records(101).send().await, "InvalidParameterValue");
}

#[tokio::test]
async fn tags_on_users_and_groups() {
    let server = TestServer::start().await;
    let client = server.client();
    let user = client
        .create_user()
        .user_id("tagged")
        .user_name("tagged")
        .engine("redis")
        .access_string("on ~* +@all")
        .passwords(PASSWORD)
        .tags(Tag::builder().key("team").value("cache").build())
        .send()
        .await
        .expect("CreateUser with tags");
    let arn = user.arn().expect("ARN").to_string();
    let tags = client.list_tags_for_resource().resource_name(&arn).send().await.expect("ListTags");
    assert_eq!(tags.tag_list().len(), 1);
    assert_eq!(tags.tag_list()[0].key(), Some("team"));
    client
        .add_tags_to_resource()
        .resource_name(&arn)
        .tags(Tag::builder().key("env").value("test").build())
        .send()
        .await
        .expect("AddTags");
    let tags = client.list_tags_for_resource().resource_name(&arn).send().await.expect("ListTags");
    assert_eq!(tags.tag_list().len(), 2);

    let group = create_group(&client, "tagged-group", &["default", "tagged"]).await;
    let group_arn = group.arn().expect("ARN").to_string();
    assert_eq!(group_arn, format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:usergroup:tagged-group"));
    client
        .add_tags_to_resource()
        .resource_name(&group_arn)
        .tags(Tag::builder().key("env").value("test").build())
        .send()
        .await
        .expect("AddTags on group");
    assert_eq!(client.list_tags_for_resource().resource_name(&group_arn).send().await.unwrap().tag_list().len(), 1);

    client.delete_user_group().user_group_id("tagged-group").send().await.expect("DeleteUserGroup");
    expect_code(client.list_tags_for_resource().resource_name(&group_arn).send().await, "UserGroupNotFound");
    client.delete_user().user_id("tagged").send().await.expect("DeleteUser");
    expect_code(client.list_tags_for_resource().resource_name(&arn).send().await, "UserNotFound");
    // A new user of the same id starts without the old one's tags.
    create_user(&client, "tagged", "tagged").await;
    assert!(client.list_tags_for_resource().resource_name(&arn).send().await.unwrap().tag_list().is_empty());
}

#[tokio::test]
async fn users_and_groups_survive_a_restart() {
    let server = TestServer::start().await;
    let client = server.client();
    let user = create_user(&client, "keeper", "keeper").await;
    let group = create_group(&client, "keepers", &["default", "keeper"]).await;
    let state = server.stop().await;

    let server = TestServer::start_in(state).await;
    let client = server.client();
    assert_eq!(describe_user(&client, "keeper").await.user_group_ids(), ["keepers"]);
    let again = crate::describe_group(&client, "keepers").await;
    assert_eq!(again.user_ids(), group.user_ids());
    assert_eq!(again.status(), Some("active"));
    assert_eq!(describe_user(&client, "keeper").await.arn(), user.arn());
    assert_eq!(all_user_ids(&client, None).await, ["default", "keeper"], "the default user is not seeded twice");
}

#[tokio::test]
async fn reset_leaves_only_the_default_user() {
    let server = TestServer::start().await;
    let client = server.client();
    create_user(&client, "app", "app").await;
    create_group(&client, "g", &["default", "app"]).await;
    let (status, body) = e2e::admin_post(&server, "/_emulator/reset").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(all_user_ids(&client, None).await, ["default"]);
    assert!(describe_user(&client, "default").await.user_group_ids().is_empty());
    expect_code(client.describe_user_groups().user_group_id("g").send().await, "UserGroupNotFound");
}
