//! Commands and `INFO replication` on real redis-server nodes: a replica attached with
//! `REPLICAOF` catches up, and a frozen node errors quickly instead of hanging.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nodes::resp::Reply;
use nodes::{EngineKind, Engines, NodeError, NodeSpec, ReplicationInfo, Role, Runtime};

fn node_spec(dir: &Path, group: &str, node: &str) -> NodeSpec {
    let mut spec = spec(dir, EngineKind::Redis, group);
    spec.key.node_id = node.into();
    spec.dir = dir.join(group).join(node);
    spec
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[tokio::test]
async fn replica_follows_its_primary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let mut primary_spec = node_spec(dir.path(), "group", "0001");
    // Redis waits 5 s by default before a diskless full sync, hoping for more replicas.
    primary_spec.directives = vec![("repl-diskless-sync-delay".into(), "0".into())];
    let replica_spec = node_spec(dir.path(), "group", "0002");
    let (primary, replica) = (&primary_spec.key, &replica_spec.key);
    let primary_node = runtime.start(primary_spec.clone()).await.expect("start primary");
    runtime.start(replica_spec.clone()).await.expect("start replica");

    assert_eq!(runtime.command(primary, &["SET", "k", "v1"]).await.expect("SET"), ok());
    assert_eq!(runtime.command(primary, &["GET", "k"]).await.expect("GET"), Reply::Bulk(Some(b"v1".to_vec())));
    // Error replies are the caller's to judge, not errors of the call.
    assert!(matches!(runtime.command(primary, &["NOSUCHCOMMAND"]).await, Ok(Reply::Error(_))));

    let fresh = runtime.replication(replica).await.expect("replication of a fresh node");
    assert_eq!((fresh.role, fresh.primary, fresh.link_up, fresh.connected_replicas), (Role::Primary, None, true, 0));

    let port = primary_node.port.to_string();
    assert_eq!(runtime.command(replica, &["REPLICAOF", "127.0.0.1", &port]).await.expect("REPLICAOF"), ok());
    let synced =
        wait_for_replication(&runtime, replica, "replica link up", |info| info.role == Role::Replica && info.link_up)
            .await;
    assert_eq!(synced.primary, Some((Ipv4Addr::LOCALHOST, primary_node.port)));
    wait_for_replication(&runtime, primary, "primary sees its replica", |info| {
        info.role == Role::Primary && info.connected_replicas == 1
    })
    .await;
    assert_eq!(runtime.command(replica, &["GET", "k"]).await.expect("GET"), Reply::Bulk(Some(b"v1".to_vec())));

    // Writes to the primary move the replica's offset forward.
    assert_eq!(runtime.command(primary, &["SET", "k", "v2"]).await.expect("SET"), ok());
    let before = synced.offset;
    let after = wait_for_replication(&runtime, replica, "replica offset grows", |info| info.offset > before).await;
    assert!(after.link_up);
    let primary_info = runtime.replication(primary).await.expect("replication of the primary");
    assert!(primary_info.offset >= after.offset, "{primary_info:?} vs {after:?}");
    assert_eq!(runtime.command(replica, &["GET", "k"]).await.expect("GET"), Reply::Bulk(Some(b"v2".to_vec())));

    // Promotion: REPLICAOF NO ONE turns the replica back into a primary.
    assert_eq!(runtime.command(replica, &["REPLICAOF", "NO", "ONE"]).await.expect("REPLICAOF NO ONE"), ok());
    assert_eq!(runtime.replication(replica).await.expect("replication").role, Role::Primary);
    runtime.stop_all().await;
}

#[tokio::test]
async fn command_authenticates_with_requirepass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let mut spec = node_spec(dir.path(), "secured", "0001");
    spec.directives = vec![("requirepass".into(), "s3cret".into())];
    let node = runtime.start(spec.clone()).await.expect("start");
    assert!(redis(node.port, &["GET", "k"]).await.starts_with("-NOAUTH"));
    assert_eq!(runtime.command(&spec.key, &["SET", "k", "v"]).await.expect("SET"), ok());
    assert_eq!(runtime.replication(&spec.key).await.expect("replication").role, Role::Primary);
    runtime.stop_all().await;
}

#[tokio::test]
async fn command_refuses_what_it_cannot_ask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let unknown = nodes::NodeKey::new("scope", "none", "0001");
    assert!(matches!(runtime.command(&unknown, &["PING"]).await, Err(NodeError::NotFound { .. })));
    let memcached = spec(dir.path(), EngineKind::Memcached, "mc");
    runtime.start(memcached.clone()).await.expect("start memcached");
    assert!(matches!(runtime.command(&memcached.key, &["PING"]).await, Err(NodeError::Protocol(_))));
    runtime.stop_all().await;
}

#[tokio::test]
async fn frozen_node_errors_quickly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let spec = node_spec(dir.path(), "frozen", "0001");
    let node = runtime.start(spec.clone()).await.expect("start");

    // Paused through the runtime: known to be frozen, refused at once.
    runtime.pause(&spec.key).await.expect("pause");
    let started = Instant::now();
    let result = runtime.replication(&spec.key).await;
    assert!(matches!(result, Err(NodeError::NotRunning { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    runtime.resume(&spec.key).await.expect("resume");
    runtime.replication(&spec.key).await.expect("replication after resume");

    // Frozen behind the runtime's back (as a hung process would be): the timeout answers.
    let pid = libc::pid_t::try_from(node.pid).expect("pid");
    // SAFETY: kill(2) on our own live child; SIGCONT below undoes it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    let result = runtime.replication(&spec.key).await;
    let elapsed = started.elapsed();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert!(matches!(result, Err(NodeError::TimedOut { .. })), "{result:?}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    runtime.replication(&spec.key).await.expect("replication after SIGCONT");
    runtime.stop_all().await;
}

/// Polls `replication()` until `condition` holds; panics after [`TIMEOUT`].
async fn wait_for_replication(
    runtime: &Runtime,
    key: &nodes::NodeKey,
    what: &str,
    condition: impl Fn(&ReplicationInfo) -> bool,
) -> ReplicationInfo {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let info = runtime.replication(key).await;
        if let Ok(info) = &info
            && condition(info)
        {
            return info.clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what} (last: {info:?})");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
