//! Users and user groups enforced on the nodes (RBAC): a user group attached to a
//! replication group makes its users the ACL of every node, kept in step as users change,
//! and detaching it restores what was there before.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{AuthenticationMode, InputAuthenticationType, TransitEncryptionMode};
use e2e::tls::{Transport, ca_pem, connect_as, install_crypto};
use e2e::{SETTLE, TestServer, expect_code, poll_until, wait_group_available};

use crate::endpoints;

const APP_PASSWORD: &str = "app-password-0123456789";
const OPS_PASSWORD: &str = "ops-password-9876543210";

async fn create_user(client: &Client, id: &str, name: &str, access: &str, password: Option<&str>) {
    let mut request = client.create_user().user_id(id).user_name(name).engine("redis").access_string(access);
    request = match password {
        Some(p) => request.authentication_mode(
            AuthenticationMode::builder().r#type(InputAuthenticationType::Password).passwords(p).build(),
        ),
        None => request.no_password_required(true),
    };
    request.send().await.unwrap_or_else(|e| panic!("CreateUser {id}: {e:?}"));
}

/// A user group `id` with a default user that lets nobody in and an application user
/// `app` limited to `app:*`.
async fn create_team(client: &Client, id: &str) {
    create_user(client, "locked-default", "default", "off -@all", Some(OPS_PASSWORD)).await;
    create_user(client, "app", "app", "on ~app:* +@all", Some(APP_PASSWORD)).await;
    client
        .create_user_group()
        .user_group_id(id)
        .engine("redis")
        .user_ids("locked-default")
        .user_ids("app")
        .send()
        .await
        .expect("CreateUserGroup");
}

/// Polls until `SET key` as `user` answers as `expected` says (Ok, or an error containing it).
async fn wait_set(port: u16, ca: &[u8], user: &str, password: &str, key: &str, expected: Result<(), &str>) {
    poll_until(&format!("SET {key} as {user} -> {expected:?}"), SETTLE, || async {
        let outcome = async {
            let mut con = connect_as(port, Transport::Verified(ca), Some(user), Some(password))
                .await
                .map_err(|e| e.to_string())?;
            redis::cmd("SET").arg(key).arg("v").query_async::<()>(&mut con).await.map_err(|e| e.to_string())
        }
        .await;
        match (&outcome, expected) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Err(want)) if e.contains(want) => Ok(()),
            _ => Err(format!("{outcome:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn a_user_group_is_the_acl_of_every_node() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    create_team(&client, "team").await;
    expect_code(
        client
            .create_replication_group()
            .replication_group_id("guarded")
            .replication_group_description("rbac")
            .cache_node_type("cache.t3.micro")
            .transit_encryption_enabled(true)
            .auth_token("a-token-that-is-long-enough")
            .user_group_ids("team")
            .send()
            .await,
        "InvalidParameterCombination",
    );
    client
        .create_replication_group()
        .replication_group_id("guarded")
        .replication_group_description("rbac")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .transit_encryption_enabled(true)
        .transit_encryption_mode(TransitEncryptionMode::Required)
        .user_group_ids("team")
        .send()
        .await
        .expect("CreateReplicationGroup with UserGroupIds");
    let g = wait_group_available(&client, "guarded").await;
    assert_eq!(g.user_group_ids(), ["team"]);
    let attached = client.describe_user_groups().user_group_id("team").send().await.unwrap();
    assert_eq!(attached.user_groups()[0].replication_groups(), ["guarded"]);
    expect_code(client.delete_user_group().user_group_id("team").send().await, "InvalidUserGroupState");

    let (primary, reader) = endpoints(&client, "guarded").await;
    let ca = ca_pem(&server).await.expect("CA");
    wait_set(primary, &ca, "app", APP_PASSWORD, "app:1", Ok(())).await;
    wait_set(primary, &ca, "app", APP_PASSWORD, "other:1", Err("NOPERM")).await;
    wait_set(primary, &ca, "app", "not-the-password-123", "app:2", Err("authentication failed")).await;
    // The default user is off: without a user nothing gets in.
    let anonymous = connect_as(primary, Transport::Verified(&ca), None, None).await;
    let refused = match anonymous {
        Ok(mut con) => redis::cmd("PING").query_async::<String>(&mut con).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(refused.is_err(), "an anonymous client was let in: {refused:?}");
    // The replicas have the same users.
    poll_until("the app user on the replica", SETTLE, || async {
        let mut con = connect_as(reader, Transport::Verified(&ca), Some("app"), Some(APP_PASSWORD))
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("GET").arg("app:1").query_async::<Option<String>>(&mut con).await.map_err(|e| e.to_string())
    })
    .await;

    // A changed access string reaches the nodes.
    client.modify_user().user_id("app").access_string("on ~other:* +@all").send().await.expect("ModifyUser");
    wait_set(primary, &ca, "app", APP_PASSWORD, "other:1", Ok(())).await;
    wait_set(primary, &ca, "app", APP_PASSWORD, "app:3", Err("NOPERM")).await;

    // Detached: the users are gone and the default user is back (no token: open).
    client
        .modify_replication_group()
        .replication_group_id("guarded")
        .user_group_ids_to_remove("team")
        .apply_immediately(true)
        .send()
        .await
        .expect("UserGroupIdsToRemove");
    wait_set(primary, &ca, "app", APP_PASSWORD, "app:4", Err("authentication failed")).await;
    poll_until("the default user open again", SETTLE, || async {
        let mut con = connect_as(primary, Transport::Verified(&ca), None, None).await.map_err(|e| e.to_string())?;
        redis::cmd("PING").query_async::<String>(&mut con).await.map_err(|e| e.to_string())
    })
    .await;
    let detached = client.describe_user_groups().user_group_id("team").send().await.unwrap();
    assert!(detached.user_groups()[0].replication_groups().is_empty());
    assert!(wait_group_available(&client, "guarded").await.user_group_ids().is_empty());
    client.delete_user_group().user_group_id("team").send().await.expect("deletable once detached");
}

#[tokio::test]
async fn a_user_group_guards_every_shard_of_a_cluster_mode_group() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    create_team(&client, "shards-team").await;
    client
        .create_replication_group()
        .replication_group_id("sharded-guarded")
        .replication_group_description("rbac")
        .cache_node_type("cache.t3.micro")
        .num_node_groups(2)
        .replicas_per_node_group(1)
        .transit_encryption_enabled(true)
        .user_group_ids("shards-team")
        .send()
        .await
        .expect("CreateReplicationGroup");
    let g = wait_group_available(&client, "sharded-guarded").await;
    let port = g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16;
    let ca = ca_pem(&server).await.expect("CA");
    let mut con =
        e2e::tls::cluster_connection_as(port, &ca, Some("app"), Some(APP_PASSWORD)).await.expect("cluster client");
    // Keys of both shards: `app:` keys are allowed wherever their slot lives.
    for i in 0..100 {
        let () = redis::AsyncCommands::set(&mut con, format!("app:{i}"), "v").await.expect("SET app:*");
    }
    let refused: Result<(), _> = redis::AsyncCommands::set(&mut con, "other:1", "v").await;
    assert!(refused.is_err_and(|e| e.to_string().contains("NOPERM")), "other:1 must be refused");
}
