//! RBAC users and user groups through `aws-sdk-elasticache` (and raw HTTP where the test is
//! about every byte of a response), each test against its own in-process server.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod groups;
mod secrets;
mod users;
mod validation;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{User, UserGroup};

/// A password AWS accepts (16–128 printable characters, no space, `"`, `/` or `@`).
pub const PASSWORD: &str = "correct-horse-battery-1";
pub const PASSWORD_2: &str = "Second+Password!2024";

/// Creates a redis user authenticating with [`PASSWORD`].
pub async fn create_user(client: &Client, id: &str, name: &str) -> User {
    create_user_with(client, id, name, "redis").await
}

/// Creates a user and returns it as DescribeUsers shows it.
pub async fn create_user_with(client: &Client, id: &str, name: &str, engine: &str) -> User {
    client
        .create_user()
        .user_id(id)
        .user_name(name)
        .engine(engine)
        .access_string("on ~app:* +@all")
        .passwords(PASSWORD)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating user {id}: {e:?}"));
    describe_user(client, id).await
}

/// Creates a redis user group and returns it as DescribeUserGroups shows it.
pub async fn create_group(client: &Client, id: &str, users: &[&str]) -> UserGroup {
    client
        .create_user_group()
        .user_group_id(id)
        .engine("redis")
        .set_user_ids(Some(users.iter().map(|u| u.to_string()).collect()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating user group {id}: {e:?}"));
    describe_group(client, id).await
}

pub async fn describe_user(client: &Client, id: &str) -> User {
    let out = client.describe_users().user_id(id).send().await.unwrap_or_else(|e| panic!("DescribeUsers {id}: {e:?}"));
    assert_eq!(out.users().len(), 1, "{out:?}");
    out.users()[0].clone()
}

pub async fn describe_group(client: &Client, id: &str) -> UserGroup {
    let out = client
        .describe_user_groups()
        .user_group_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeUserGroups {id}: {e:?}"));
    assert_eq!(out.user_groups().len(), 1, "{out:?}");
    out.user_groups()[0].clone()
}

/// Every user id, all pages, `max_records` per page.
pub async fn all_user_ids(client: &Client, max_records: Option<i32>) -> Vec<String> {
    let mut ids = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_users()
            .set_max_records(max_records)
            .set_marker(marker)
            .send()
            .await
            .expect("DescribeUsers");
        if let Some(max) = max_records {
            assert!(out.users().len() <= max as usize, "page larger than MaxRecords");
        }
        ids.extend(out.users().iter().filter_map(|u| u.user_id.clone()));
        marker = out.marker;
        if marker.is_none() {
            return ids;
        }
    }
}
