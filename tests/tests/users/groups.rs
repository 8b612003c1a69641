//! User groups: lifecycle, the default-user rule, user names, engines, and quotas.

use e2e::{ACCOUNT, REGION, TestServer, expect_code};

use crate::{PASSWORD, create_group, create_user, create_user_with, describe_group, describe_user};

#[tokio::test]
async fn create_describe_modify_delete() {
    let server = TestServer::start().await;
    let client = server.client();
    create_user(&client, "app", "app").await;
    create_user(&client, "ops", "ops").await;
    let created = client
        .create_user_group()
        .user_group_id("App-Group")
        .engine("REDIS")
        .user_ids("default")
        .user_ids("APP")
        .send()
        .await
        .expect("CreateUserGroup");
    assert_eq!(created.user_group_id(), Some("app-group"));
    assert_eq!(created.status(), Some("creating"));
    assert_eq!(created.engine(), Some("redis"));
    assert_eq!(created.user_ids(), ["default", "app"]);
    assert_eq!(created.replication_groups(), &[] as &[String]);
    assert_eq!(created.minimum_engine_version(), Some("6.0"));
    assert_eq!(created.arn(), Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:usergroup:app-group").as_str()));

    let described = describe_group(&client, "app-group").await;
    assert_eq!(described.status(), Some("active"));
    assert_eq!(described.user_ids(), ["default", "app"]);
    assert!(described.pending_changes().is_some(), "PendingChanges is always there");
    assert!(described.pending_changes().is_some_and(|p| p.user_ids_to_add().is_empty()));
    assert_eq!(describe_user(&client, "app").await.user_group_ids(), ["app-group"]);
    assert_eq!(describe_user(&client, "default").await.user_group_ids(), ["app-group"]);

    let modified = client
        .modify_user_group()
        .user_group_id("app-group")
        .user_ids_to_add("ops")
        .user_ids_to_remove("app")
        .send()
        .await
        .expect("ModifyUserGroup");
    assert_eq!(modified.status(), Some("modifying"));
    let pending = modified.pending_changes().expect("PendingChanges");
    assert_eq!(pending.user_ids_to_add(), ["ops"]);
    assert_eq!(pending.user_ids_to_remove(), ["app"]);
    let described = describe_group(&client, "app-group").await;
    assert_eq!(described.status(), Some("active"));
    assert_eq!(described.user_ids(), ["default", "ops"]);
    assert!(describe_user(&client, "app").await.user_group_ids().is_empty());
    assert_eq!(describe_user(&client, "ops").await.user_group_ids(), ["app-group"]);

    let deleted = client.delete_user_group().user_group_id("app-group").send().await.expect("DeleteUserGroup");
    assert_eq!(deleted.status(), Some("deleting"));
    let error = expect_code(client.describe_user_groups().user_group_id("app-group").send().await, "UserGroupNotFound");
    assert_eq!(error.status, 404);
    expect_code(client.delete_user_group().user_group_id("app-group").send().await, "UserGroupNotFound");
    expect_code(
        client.modify_user_group().user_group_id("app-group").user_ids_to_add("app").send().await,
        "UserGroupNotFound",
    );
    assert!(describe_user(&client, "ops").await.user_group_ids().is_empty(), "users outlive their group");
}

#[tokio::test]
async fn every_group_needs_a_user_named_default() {
    let server = TestServer::start().await;
    let client = server.client();
    create_user(&client, "app", "app").await;
    // A user of another id named "default": how AWS replaces the built-in default user.
    create_user(&client, "locked-default", "default").await;

    let error = expect_code(
        client.create_user_group().user_group_id("empty").engine("redis").send().await,
        "DefaultUserRequired",
    );
    assert_eq!(error.message, "User group needs to contain a user with the user name default.");
    expect_code(
        client.create_user_group().user_group_id("no-default").engine("redis").user_ids("app").send().await,
        "DefaultUserRequired",
    );
    expect_code(client.describe_user_groups().user_group_id("empty").send().await, "UserGroupNotFound");

    create_group(&client, "swap", &["default", "app"]).await;
    expect_code(
        client.modify_user_group().user_group_id("swap").user_ids_to_remove("default").send().await,
        "DefaultUserRequired",
    );
    // Both "default" users at once: two users with one name.
    expect_code(
        client.modify_user_group().user_group_id("swap").user_ids_to_add("locked-default").send().await,
        "DuplicateUserName",
    );
    // The swap: in one call.
    client
        .modify_user_group()
        .user_group_id("swap")
        .user_ids_to_add("locked-default")
        .user_ids_to_remove("default")
        .send()
        .await
        .expect("swapping the default user");
    assert_eq!(describe_group(&client, "swap").await.user_ids(), ["app", "locked-default"]);

    // The group's default user cannot go; an ordinary member can, and leaves the group.
    let error =
        expect_code(client.delete_user().user_id("locked-default").send().await, "DefaultUserAssociatedToUserGroup");
    assert_eq!(error.status, 400);
    let deleted = client.delete_user().user_id("app").send().await.expect("DeleteUser of a member");
    assert_eq!(deleted.user_group_ids(), ["swap"]);
    assert_eq!(describe_group(&client, "swap").await.user_ids(), ["locked-default"]);
    expect_code(client.modify_user_group().user_group_id("swap").user_ids_to_add("app").send().await, "UserNotFound");

    // Out of every group, it can be deleted.
    client.delete_user_group().user_group_id("swap").send().await.expect("DeleteUserGroup");
    client.delete_user().user_id("locked-default").send().await.expect("DeleteUser once out of groups");
}

#[tokio::test]
async fn member_rules() {
    let server = TestServer::start().await;
    let client = server.client();
    create_user(&client, "app", "app").await;
    create_user(&client, "app-twin", "app").await;
    create_user(&client, "ops", "ops").await;

    expect_code(
        client
            .create_user_group()
            .user_group_id("twins")
            .engine("redis")
            .user_ids("default")
            .user_ids("app")
            .user_ids("app-twin")
            .send()
            .await,
        "DuplicateUserName",
    );
    let error = expect_code(
        client
            .create_user_group()
            .user_group_id("ghosts")
            .engine("redis")
            .user_ids("default")
            .user_ids("nobody")
            .send()
            .await,
        "UserNotFound",
    );
    assert_eq!(error.status, 404);

    create_group(&client, "g", &["default", "app"]).await;
    expect_code(
        client.create_user_group().user_group_id("G").engine("redis").user_ids("default").send().await,
        "UserGroupAlreadyExists",
    );
    expect_code(
        client.modify_user_group().user_group_id("g").user_ids_to_add("app").send().await,
        "InvalidParameterValue",
    );
    expect_code(
        client.modify_user_group().user_group_id("g").user_ids_to_remove("ops").send().await,
        "InvalidParameterValue",
    );
    expect_code(
        client.modify_user_group().user_group_id("g").user_ids_to_add("ops").user_ids_to_remove("ops").send().await,
        "InvalidParameterCombination",
    );
    expect_code(client.modify_user_group().user_group_id("g").send().await, "InvalidParameterCombination");
    expect_code(
        client.modify_user_group().user_group_id("g").user_ids_to_add("app-twin").send().await,
        "DuplicateUserName",
    );
    assert_eq!(describe_group(&client, "g").await.user_ids(), ["default", "app"], "failed calls change nothing");
}

#[tokio::test]
async fn engines_must_match() {
    let server = TestServer::start().await;
    let client = server.client();
    create_user(&client, "app", "app").await;
    create_user_with(&client, "vk-app", "vk-app", "valkey").await;
    create_user_with(&client, "vk-default", "default", "valkey").await;
    client
        .create_user()
        .user_id("open-redis")
        .user_name("open-redis")
        .engine("redis")
        .access_string("on ~* +@all")
        .no_password_required(true)
        .send()
        .await
        .expect("user without password");

    // A redis group holds redis users only.
    expect_code(
        client
            .create_user_group()
            .user_group_id("r")
            .engine("redis")
            .user_ids("default")
            .user_ids("vk-app")
            .send()
            .await,
        "InvalidParameterValue",
    );
    // A valkey group: valkey users, and redis users that authenticate; not the built-in
    // default user (no password).
    expect_code(
        client.create_user_group().user_group_id("v").engine("valkey").user_ids("default").send().await,
        "InvalidParameterValue",
    );
    expect_code(
        client
            .create_user_group()
            .user_group_id("v")
            .engine("valkey")
            .user_ids("vk-default")
            .user_ids("open-redis")
            .send()
            .await,
        "InvalidParameterValue",
    );
    let valkey = client
        .create_user_group()
        .user_group_id("v")
        .engine("valkey")
        .user_ids("vk-default")
        .user_ids("vk-app")
        .user_ids("app")
        .send()
        .await
        .expect("valkey group");
    assert_eq!(valkey.engine(), Some("valkey"));
    assert_eq!(valkey.minimum_engine_version(), Some("7.2"));
    expect_code(
        client.create_user_group().user_group_id("bad-engine").engine("memcached").user_ids("default").send().await,
        "InvalidParameterValue",
    );

    // A member's change must keep it fitting its groups.
    create_group(&client, "r", &["default", "app"]).await;
    expect_code(client.modify_user().user_id("app").engine("valkey").send().await, "InvalidParameterValue");
    expect_code(client.modify_user().user_id("app").no_password_required(true).send().await, "InvalidParameterValue");
    let user = describe_user(&client, "app").await;
    assert_eq!(user.engine(), Some("redis"), "unchanged");
    assert_eq!(user.authentication().and_then(|a| a.password_count()), Some(1), "unchanged");

    // And a group's engine change must keep its members fitting.
    expect_code(client.modify_user_group().user_group_id("v").engine("redis").send().await, "InvalidParameterValue");
    let changed = client
        .modify_user_group()
        .user_group_id("r")
        .engine("valkey")
        .user_ids_to_add("vk-default")
        .user_ids_to_remove("default")
        .send()
        .await
        .expect("redis group to valkey");
    assert_eq!(changed.engine(), Some("valkey"));
}

#[tokio::test]
async fn group_ids_quota_and_pagination() {
    let server = TestServer::start().await;
    let client = server.client();
    for bad in ["1group", "a--b", "ends-", "under_score", &"g".repeat(41)] {
        expect_code(
            client.create_user_group().user_group_id(bad).engine("redis").user_ids("default").send().await,
            "InvalidParameterValue",
        );
    }
    for i in 0..100 {
        create_group(&client, &format!("group-{i:03}"), &["default"]).await;
    }
    let error = expect_code(
        client.create_user_group().user_group_id("one-too-many").engine("redis").user_ids("default").send().await,
        "UserGroupQuotaExceeded",
    );
    assert_eq!(error.status, 400);

    let mut ids = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_user_groups()
            .max_records(30)
            .set_marker(marker)
            .send()
            .await
            .expect("DescribeUserGroups page");
        assert!(out.user_groups().len() <= 30);
        ids.extend(out.user_groups().iter().filter_map(|g| g.user_group_id().map(str::to_string)));
        marker = out.marker;
        if marker.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..100).map(|i| format!("group-{i:03}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(describe_user(&client, "default").await.user_group_ids().len(), 100);
    expect_code(client.describe_user_groups().max_records(5).send().await, "InvalidParameterValue");

    // Deleting one makes room again.
    client.delete_user_group().user_group_id("group-000").send().await.expect("DeleteUserGroup");
    create_group(&client, "one-more", &["default"]).await;
}

#[tokio::test]
async fn user_quota() {
    let server = TestServer::start().await;
    let client = server.client();
    // The default user counts: 999 more fill the quota of 1,000.
    let ids: Vec<String> = (0..999).map(|i| format!("u{i:04}")).collect();
    for chunk in ids.chunks(50) {
        let calls = chunk.iter().map(|id| {
            client
                .create_user()
                .user_id(id)
                .user_name(id)
                .engine("redis")
                .access_string("on ~* +@all")
                .passwords(PASSWORD)
                .send()
        });
        for result in futures::future::join_all(calls).await {
            result.expect("CreateUser under the quota");
        }
    }
    let error = expect_code(
        client
            .create_user()
            .user_id("u-too-many")
            .user_name("x")
            .engine("redis")
            .access_string("on")
            .passwords(PASSWORD)
            .send()
            .await,
        "UserQuotaExceeded",
    );
    assert_eq!(error.status, 400);
}
