//! Events are kept as long as DescribeEvents can show them (14 days), and no longer.

#![allow(clippy::unwrap_used)]

use store::{EVENT_RETENTION_MILLIS, EventFilter, EventRecord, Scope, Store, now_millis};

const DAY: i64 = 24 * 60 * 60 * 1000;

#[tokio::test]
async fn events_older_than_describe_events_shows_are_forgotten_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("elasticache-local.sqlite")).await.unwrap();
    let scope = Scope { region: "us-east-1".into(), account: "000000000000".into() };
    let now = now_millis();
    let aged = |message: &str, age: i64| EventRecord {
        date_millis: now - age,
        ..EventRecord::new("cache-cluster", "aged", message)
    };
    let events = [aged("past 14 days", EVENT_RETENTION_MILLIS + 1), aged("13 days old", 13 * DAY), aged("new", 0)];
    store.record_events(&scope, &events).await.unwrap();

    let mut changes = store.changes();
    assert_eq!(store.forget_old_events(now).await.unwrap(), 1);
    assert!(changes.has_changed().unwrap());
    let kept = store.events(&scope, &EventFilter::default()).await.unwrap();
    let kept: Vec<&str> = kept.iter().map(|(_, event)| event.message.as_str()).collect();
    assert_eq!(kept, ["13 days old", "new"]);

    changes.borrow_and_update();
    assert_eq!(store.forget_old_events(now).await.unwrap(), 0);
    assert!(!changes.has_changed().unwrap(), "nothing to forget: nothing written, no one woken");
}
