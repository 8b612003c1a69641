//! Rows written by an earlier release still load, and migrations can be applied again.
//!
//! `fixtures/state-2026-12.sql` is the SQLite database of a state dir written by the
//! release of December 2026 (commit 8e43f74), dumped as SQL: a parameter group with a value,
//! a subnet group, a security group, a Redis and a Memcached cluster, a replication group
//! with TLS and a user group, a cluster-mode group of two shards, a snapshot, users, tags
//! and events, all made through aws-cli. Records are JSON documents evolved with
//! `#[serde(default)]`: a field added later must not make these rows unreadable.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use sqlx::Connection as _;
use store::{EventFilter, Scope, Store};

const FIXTURE: &str = include_str!("fixtures/state-2026-12.sql");

fn scope() -> Scope {
    Scope { region: "us-east-1".into(), account: "000000000000".into() }
}

/// A database file holding the fixture's rows, as the old release left it.
async fn restore_fixture(path: &Path) {
    // The dump lists tables by name, so rows may come before the tables they refer to.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true).foreign_keys(false);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql(FIXTURE).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_state_dir_written_by_an_older_release_loads_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("elasticache-local.sqlite");
    restore_fixture(&path).await;
    let store = Store::open(&path).await.unwrap();
    let scope = scope();

    let clusters = store.all_cache_clusters().await.unwrap();
    assert_eq!(clusters.len(), 8);
    let redis = store.cache_cluster(&scope, "fx-redis").await.unwrap().unwrap();
    assert_eq!(redis.cluster.parameter_group, "fx-params");
    assert_eq!(redis.cluster.snapshot_retention_limit, 3);
    assert_eq!(redis.nodes.len(), 1);
    let memcached = store.cache_cluster(&scope, "fx-memcached").await.unwrap().unwrap();
    assert_eq!((memcached.cluster.engine.as_str(), memcached.nodes.len()), ("memcached", 2));

    let group = store.replication_group(&scope, "fx-group").await.unwrap().unwrap();
    assert_eq!(group.members.len(), 2);
    assert_eq!(group.group.user_group_ids, ["fx-users"]);
    assert!(group.group.multi_az && group.group.automatic_failover);
    assert_eq!(group.group.security.mode(), Some("required"));
    let sharded = store.replication_group(&scope, "fx-sharded").await.unwrap().unwrap();
    assert!(sharded.group.cluster_enabled());
    assert_eq!(sharded.group.node_groups.len(), 2);
    assert_eq!(sharded.members.len(), 4);

    let snapshot = store.snapshot(&scope, "fx-snap").await.unwrap().unwrap();
    assert_eq!(snapshot.cache_cluster_id.as_deref(), Some("fx-redis"));
    assert_eq!(snapshot.status, "available");

    let users = store.users(&scope).await.unwrap();
    assert_eq!(users.iter().map(|u| u.user.id.as_str()).collect::<Vec<_>>(), ["default", "fx-user"]);
    let user_groups = store.user_groups(&scope).await.unwrap();
    assert_eq!(user_groups[0].group.replication_groups, ["fx-group"]);
    assert_eq!(user_groups[0].user_ids, ["default", "fx-user"]);

    assert_eq!(
        store.parameter_values(&scope, "fx-params").await.unwrap(),
        [("maxmemory-policy".to_string(), "allkeys-lru".to_string())]
    );
    let subnets = store.subnet_group(&scope, "fx-subnets").await.unwrap().unwrap();
    assert_eq!(subnets.subnets.len(), 2);
    assert!(store.security_groups(&scope).await.unwrap().iter().any(|g| g.name == "fx-sec"));
    let tags = store.list_tags("arn:aws:elasticache:us-east-1:000000000000:cluster:fx-redis").await.unwrap();
    assert_eq!((tags[0].key.as_str(), tags[0].value.as_str()), ("env", "fixture"));
    assert_eq!(store.events(&scope, &EventFilter::default()).await.unwrap().len(), 20);

    // And they can be written back as today's records.
    let rewritten = store.update_cache_cluster(&scope, "fx-redis", |_, _| Ok::<_, ()>(Vec::new())).await.unwrap();
    assert_eq!(rewritten, Some(redis));
}

#[tokio::test]
async fn migrations_applied_twice_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("elasticache-local.sqlite");
    restore_fixture(&path).await;
    // Every open applies the migrations; the second and third find them all applied.
    let before = Store::open(&path).await.unwrap().all_cache_clusters().await.unwrap();
    let after = Store::open(&path).await.unwrap().all_cache_clusters().await.unwrap();
    assert_eq!(before, after);

    let fresh = dir.path().join("fresh.sqlite");
    drop(Store::open(&fresh).await.unwrap());
    let reopened = Store::open(&fresh).await.unwrap();
    assert!(reopened.all_cache_clusters().await.unwrap().is_empty());
}
