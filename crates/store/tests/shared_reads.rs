//! Describe's shared reads never answer what a completed write changed, and the keyed
//! reads (one cluster, a page, a group's members) answer what a read of everything would.

#![allow(clippy::unwrap_used)]

use sqlx::Connection as _;
use store::{Scope, Start, Store};

const FIXTURE: &str = include_str!("fixtures/state-2026-12.sql");

fn scope() -> Scope {
    Scope { region: "us-east-1".into(), account: "000000000000".into() }
}

async fn store_with_fixture(dir: &tempfile::TempDir) -> Store {
    let path = dir.path().join("elasticache-local.sqlite");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(false);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql(FIXTURE).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    Store::open(&path).await.unwrap()
}

#[tokio::test]
async fn a_write_is_seen_by_the_next_shared_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_fixture(&dir).await;
    let id = "fx-redis";
    let before = store.cache_cluster_shared(&scope(), id).await.unwrap();
    assert_eq!(before.len(), 1);
    // Kept: the same answer, shared.
    assert!(std::sync::Arc::ptr_eq(&before, &store.cache_cluster_shared(&scope(), id).await.unwrap()));
    let page = store.cache_clusters_page(&scope(), Start::First, 100, false).await.unwrap();

    store
        .update_cache_cluster(&scope(), id, |cluster, _| {
            cluster.status = "modifying".into();
            Ok::<_, ()>(Vec::new())
        })
        .await
        .unwrap();
    let after = store.cache_cluster_shared(&scope(), id).await.unwrap();
    assert_eq!(after[0].cluster.status, "modifying");
    let page_after = store.cache_clusters_page(&scope(), Start::First, 100, false).await.unwrap();
    assert_eq!(page_after.iter().find(|c| c.cluster.id == id).unwrap().cluster.status, "modifying");
    assert_eq!(page.len(), page_after.len());

    // A change that changes nothing writes nothing: what was kept stays kept.
    store.update_cache_cluster(&scope(), id, |_, _| Ok::<_, ()>(Vec::new())).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&after, &store.cache_cluster_shared(&scope(), id).await.unwrap()));
}

#[tokio::test]
async fn keyed_reads_answer_what_reading_everything_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_fixture(&dir).await;
    let all = store.cache_clusters(&scope()).await.unwrap();
    assert!(all.len() > 2);

    // Pages of two, walked by the id after the last one.
    let mut walked = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let start = last.as_deref().map_or(Start::First, Start::After);
        let page = store.cache_clusters_page(&scope(), start, 2, false).await.unwrap();
        walked.extend(page.iter().cloned());
        if page.len() < 2 {
            break;
        }
        last = page.last().map(|c| c.cluster.id.clone());
    }
    assert_eq!(walked, all);
    let standalone = store.cache_clusters_page(&scope(), Start::First, 100, true).await.unwrap();
    let expected: Vec<_> = all.iter().filter(|c| c.cluster.replication_group_id.is_none()).cloned().collect();
    assert_eq!(*standalone, expected);
    let at = &all[1].cluster.id;
    assert_eq!(store.cache_clusters_page(&scope(), Start::At(at), 100, false).await.unwrap()[..], all[1..]);

    for group in store.replication_groups(&scope()).await.unwrap() {
        let members: Vec<_> = all
            .iter()
            .filter(|c| c.cluster.replication_group_id.as_deref() == Some(&group.group.id))
            .cloned()
            .collect();
        assert!(!members.is_empty());
        assert_eq!(group.members, members);
        assert_eq!(store.replication_group_members(&scope(), &group.group.id).await.unwrap(), members);
    }
    let groups = store.all_replication_groups().await.unwrap();
    assert!(!groups.is_empty());
    let records: Vec<_> = groups.into_iter().map(|g| (g.scope, g.group)).collect();
    assert_eq!(store.all_replication_group_records().await.unwrap(), records);
    let mut ids = store.cache_cluster_ids(&scope()).await.unwrap();
    ids.sort();
    assert_eq!(ids, all.iter().map(|c| c.cluster.id.clone()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_pass_over_changes_reads_what_was_written_since_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_fixture(&dir).await;
    // Rows of an older release are read by the reconciler's first pass, which reads all.
    let start = store.versions().await.unwrap();
    let (clusters, groups) = store.changed(start, start).await.unwrap();
    assert!(clusters.is_empty() && groups.is_empty(), "nothing written since");

    store
        .update_cache_cluster(&scope(), "fx-redis", |cluster, _| {
            cluster.status = "modifying".into();
            Ok::<_, ()>(Vec::new())
        })
        .await
        .unwrap();
    // A change that changes nothing writes nothing, so it is no change.
    store.update_cache_cluster(&scope(), "fx-memcached", |_, _| Ok::<_, ()>(Vec::new())).await.unwrap();
    let after = store.versions().await.unwrap();
    assert!(after.clusters > start.clusters);
    assert_eq!(after.groups, start.groups);
    let (clusters, groups) = store.changed(start, after).await.unwrap();
    let ids: Vec<&str> = clusters.iter().map(|c| c.cluster.id.as_str()).collect();
    assert_eq!(ids, ["fx-redis"]);
    assert_eq!(clusters[0].cluster.status, "modifying");
    assert!(groups.is_empty());

    // A group's write is a change of the group and of the members written with it.
    store
        .update_replication_group(&scope(), "fx-group", |group, _| {
            group.description = "changed".into();
            Ok::<_, ()>(Vec::new())
        })
        .await
        .unwrap();
    let (clusters, groups) = store.changed(after, store.versions().await.unwrap()).await.unwrap();
    assert_eq!(groups.iter().map(|g| g.group.id.as_str()).collect::<Vec<_>>(), ["fx-group"]);
    assert_eq!(groups[0].members.len(), clusters.len(), "its members, written with it");
    assert!(!clusters.is_empty());
}

#[tokio::test]
async fn a_write_after_the_latest_written_row_is_deleted_is_still_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_fixture(&dir).await;
    let set_status = |id: &'static str, status: &'static str| {
        let store = &store;
        async move {
            store
                .update_cache_cluster(&scope(), id, |cluster, _| {
                    cluster.status = status.into();
                    Ok::<_, ()>(Vec::new())
                })
                .await
                .unwrap();
        }
    };
    set_status("fx-redis", "modifying").await;
    set_status("fx-memcached", "deleting").await;
    let read_up_to = store.versions().await.unwrap();
    // The latest written row goes; a version taken from what is left would be handed out
    // again, below what was read, and the next write would go unseen.
    store.delete_cache_cluster(&scope(), "fx-memcached", "arn", &[]).await.unwrap();
    set_status("fx-redis", "deleting").await;
    let (clusters, _) = store.changed(read_up_to, store.versions().await.unwrap()).await.unwrap();
    assert_eq!(clusters.iter().map(|c| c.cluster.id.as_str()).collect::<Vec<_>>(), ["fx-redis"]);
}

#[tokio::test]
async fn deleting_a_member_is_a_change_of_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_fixture(&dir).await;
    let read_up_to = store.versions().await.unwrap();
    // Its row goes, so only its group's can say so: a deleting group whose last member
    // went waited for the period's pass (2 s) to be deleted in turn.
    store.delete_cache_cluster(&scope(), "fx-group-002", "arn", &[]).await.unwrap();
    let (clusters, groups) = store.changed(read_up_to, store.versions().await.unwrap()).await.unwrap();
    assert_eq!(groups.iter().map(|g| g.group.id.as_str()).collect::<Vec<_>>(), ["fx-group"]);
    let members: Vec<&str> = groups[0].members.iter().map(|m| m.cluster.id.as_str()).collect();
    assert_eq!(members, ["fx-group-001"]);
    assert!(clusters.is_empty(), "the member that is left was not written");

    // A cluster of no group changes no group.
    let read_up_to = store.versions().await.unwrap();
    store.delete_cache_cluster(&scope(), "fx-redis", "arn", &[]).await.unwrap();
    let (_, groups) = store.changed(read_up_to, store.versions().await.unwrap()).await.unwrap();
    assert!(groups.is_empty());
}

/// The API's store reads through connections of its own, but what it keeps is what the
/// reconciler's store writes: a write through one is seen at once by a kept read of the other.
#[tokio::test]
async fn a_store_with_its_own_reads_never_answers_what_the_other_changed() {
    let dir = tempfile::tempdir().unwrap();
    let reconciler = store_with_fixture(&dir).await;
    let api = reconciler.with_own_reads().await.unwrap();
    let id = "fx-redis";
    let before = api.cache_cluster_shared(&scope(), id).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&before, &api.cache_cluster_shared(&scope(), id).await.unwrap()));
    let changes = api.changes();
    reconciler
        .update_cache_cluster(&scope(), id, |cluster, _| {
            cluster.status = "modifying".into();
            Ok::<_, ()>(Vec::new())
        })
        .await
        .unwrap();
    assert!(changes.has_changed().unwrap(), "the API hears of the reconciler's writes");
    assert_eq!(api.cache_cluster_shared(&scope(), id).await.unwrap()[0].cluster.status, "modifying");
}
