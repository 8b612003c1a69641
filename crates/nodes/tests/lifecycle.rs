//! Supervision of real processes: crash, restart in place, freeze, stop, ports, drop.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use nodes::{EngineKind, Engines, Health, NodeError, Runtime};

const PROBE: Duration = Duration::from_millis(500);

#[tokio::test]
async fn kill_is_seen_as_exited_and_restart_keeps_the_port() {
    for engine in [EngineKind::Redis, EngineKind::Memcached] {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new(Engines::detect());
        let mut spec = spec(dir.path(), engine, "crash");
        let first = runtime.start(spec.clone()).await.expect("start");
        assert_eq!(runtime.probe(&spec.key, PROBE).await, Health::Healthy);

        runtime.kill(&spec.key).await.expect("kill");
        assert_eq!(runtime.probe(&spec.key, PROBE).await, Health::Exited, "{engine}");
        assert!(!process_alive(first.pid));
        // Still supervised, so the reconciler can see the crash and restart it.
        assert_eq!(runtime.get(&spec.key).map(|n| n.pid), Some(first.pid));

        spec.port = first.port;
        let second = runtime.start(spec.clone()).await.expect("restart in place");
        assert_eq!(second.port, first.port);
        assert_ne!(second.pid, first.pid);
        assert_eq!(runtime.probe(&spec.key, PROBE).await, Health::Healthy);
        runtime.stop(&spec.key).await.expect("stop");
    }
}

#[tokio::test]
async fn pause_freezes_and_resume_thaws() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let spec = spec(dir.path(), EngineKind::Redis, "freeze");
    let node = runtime.start(spec.clone()).await.expect("start");

    runtime.pause(&spec.key).await.expect("pause");
    assert_eq!(runtime.probe(&spec.key, PROBE).await, Health::Paused);
    // Really frozen: the kernel accepts the connection but nobody answers.
    let ping = tokio::time::timeout(Duration::from_millis(200), redis(node.port, &["PING"])).await;
    assert!(ping.is_err(), "a paused node answered: {ping:?}");
    assert!(process_alive(node.pid));

    runtime.resume(&spec.key).await.expect("resume");
    eventually("resumed node is healthy", || runtime.probe_is(&spec.key, Health::Healthy)).await;
    assert_eq!(redis(node.port, &["PING"]).await, "PONG");

    // Stopping a paused node still works (SIGTERM alone would stay pending).
    runtime.pause(&spec.key).await.expect("pause again");
    runtime.stop(&spec.key).await.expect("stop paused");
    assert!(!process_alive(node.pid));
}

/// `probe_all` checks redis-like nodes in one sweep over kept connections, the others one
/// by one: a node that runs but answers nothing fails its check, a frozen one is known
/// without one, and all answer again once they run freely.
#[tokio::test]
async fn probe_all_tells_a_hung_node_from_a_frozen_one_and_healthy_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let specs = [(EngineKind::Redis, "hung"), (EngineKind::Redis, "frozen"), (EngineKind::Memcached, "cache")]
        .map(|(engine, name)| spec(dir.path(), engine, name));
    let mut ports = Vec::new();
    for spec in &specs {
        ports.push(runtime.start(spec.clone()).await.expect("start").port);
    }
    let keys = || specs.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
    let health = |answers: Vec<(nodes::NodeKey, Health)>| -> Vec<Health> {
        specs.iter().map(|s| answers.iter().find(|(k, _)| *k == s.key).expect("an answer for every key").1).collect()
    };
    for _ in 0..2 {
        // The second sweep runs over the connections the first kept.
        assert_eq!(health(runtime.probe_all(keys(), PROBE).await), [Health::Healthy; 3]);
    }

    // Every client of `hung` paused for longer than a check may take.
    assert_eq!(redis(ports[0], &["CLIENT", "PAUSE", "1500", "ALL"]).await, "OK");
    runtime.pause(&specs[1].key).await.expect("pause");
    let answers = health(runtime.probe_all(keys(), PROBE).await);
    assert_eq!(answers, [Health::Unreachable, Health::Paused, Health::Healthy]);

    runtime.resume(&specs[1].key).await.expect("resume");
    eventually("every node answers again", || async {
        health(runtime.probe_all(keys(), PROBE).await) == [Health::Healthy; 3]
    })
    .await;
    for spec in &specs {
        runtime.stop(&spec.key).await.expect("stop");
    }
}

/// A node stopped while its check is under way gets no answer from that check: the
/// health monitor would take its failure for a crash and recover a node stopped on
/// purpose. The others are answered as ever.
#[tokio::test]
async fn probe_all_answers_nothing_for_a_node_stopped_during_its_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let specs = ["going", "staying"].map(|name| spec(dir.path(), EngineKind::Redis, name));
    let mut ports = Vec::new();
    for spec in &specs {
        ports.push(runtime.start(spec.clone()).await.expect("start").port);
    }
    // `going` answers nothing until it is stopped, so its check is under way throughout.
    assert_eq!(redis(ports[0], &["CLIENT", "PAUSE", "10000", "ALL"]).await, "OK");
    let keys = specs.iter().map(|s| s.key.clone()).collect();
    let (answers, stopped) = tokio::join!(runtime.probe_all(keys, Duration::from_secs(5)), async {
        tokio::task::yield_now().await;
        runtime.stop(&specs[0].key).await
    });
    stopped.expect("stop");
    assert_eq!(answers, [(specs[1].key.clone(), Health::Healthy)]);
    runtime.stop(&specs[1].key).await.expect("stop");
}

#[tokio::test]
async fn stop_frees_the_port_and_forgets_the_node() {
    for engine in [EngineKind::Redis, EngineKind::Memcached] {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new(Engines::detect());
        let spec = spec(dir.path(), engine, "stopme");
        let node = runtime.start(spec.clone()).await.expect("start");
        runtime.stop(&spec.key).await.expect("stop");
        assert!(!process_alive(node.pid));
        assert!(runtime.get(&spec.key).is_none());
        assert_eq!(runtime.probe(&spec.key, PROBE).await, Health::Exited);
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, node.port)).expect("port is free after stop");
        // Stopping again, or something never started, is fine.
        runtime.stop(&spec.key).await.expect("stop twice");
    }
}

/// A node whose data goes with it is killed, with whatever it forked, not asked to save:
/// one writing its first AOF (20 ms a key here, for minutes) is gone at once.
#[tokio::test]
async fn discard_kills_the_node_and_its_rewrite_at_once_and_forgets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let spec = spec(dir.path(), EngineKind::Redis, "discard");
    let node = runtime.start(spec.clone()).await.expect("start");
    for i in 0..10_000 {
        assert_eq!(redis(node.port, &["SET", &format!("key-{i}"), "x"]).await, "OK");
    }
    begin_first_aof(node.port, 20_000).await;
    let rewriting = redis(node.port, &["INFO", "persistence"]).await;
    assert!(rewriting.contains("aof_rewrite_in_progress:1"), "{rewriting}");

    runtime.discard(&spec.key).await.expect("discard");
    assert!(!process_alive(node.pid));
    assert!(runtime.get(&spec.key).is_none());
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, node.port)).expect("port is free after discard");
    let log = std::fs::read_to_string(spec.dir.join("redis.log")).expect("the node's log");
    assert!(!log.contains("User requested shutdown") && !log.contains("Received SIGTERM"), "{log}");
    // The rewrite's fork was killed with it (the group's signal is delivered as the node
    // dies, the orphan reaped by init soon after).
    eventually("the node's process group is gone", || async { !group_alive(node.pid) }).await;
    runtime.discard(&spec.key).await.expect("discard twice");
}

#[tokio::test]
async fn starting_a_running_key_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let mut spec = spec(dir.path(), EngineKind::Redis, "replace");
    let first = runtime.start(spec.clone()).await.expect("start");
    spec.port = first.port;
    spec.parameters = params(&[("maxmemory-policy", "noeviction")]);
    let second = runtime.start(spec.clone()).await.expect("replace");
    assert!(!process_alive(first.pid));
    assert_eq!(second.port, first.port);
    assert_eq!(redis(second.port, &["CONFIG", "GET", "maxmemory-policy"]).await, "maxmemory-policy\nnoeviction");
    assert_eq!(runtime.running().len(), 1);
    runtime.stop_all().await;
}

#[tokio::test]
async fn concurrent_starts_get_distinct_free_ports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = std::sync::Arc::new(Runtime::new(Engines::detect()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let engine = if i % 2 == 0 { EngineKind::Redis } else { EngineKind::Memcached };
        let spec = spec(dir.path(), engine, &format!("many{i}"));
        let runtime = runtime.clone();
        tasks.spawn(async move { runtime.start(spec).await });
    }
    let mut ports = std::collections::HashSet::new();
    while let Some(started) = tasks.join_next().await {
        let node = started.expect("task").expect("start");
        assert!(ports.insert(node.port));
    }
    assert_eq!(runtime.running().len(), 4);
    runtime.stop_all().await;
    assert!(runtime.running().is_empty());
    for port in ports {
        assert!(!accepts(port).await);
    }
}

#[tokio::test]
async fn a_taken_fixed_port_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let mut spec = spec(dir.path(), EngineKind::Memcached, "taken");
    spec.port = squatter.local_addr().expect("addr").port();
    match runtime.start(spec.clone()).await {
        Err(NodeError::PortInUse { port, .. }) => assert_eq!(port, spec.port),
        other => panic!("expected PortInUse, got {other:?}"),
    }
    spec.engine = EngineKind::Redis;
    assert!(matches!(runtime.start(spec).await, Err(NodeError::PortInUse { .. })));
}

#[tokio::test]
async fn a_missing_binary_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::default());
    let spec = spec(dir.path(), EngineKind::Redis, "nobinary");
    assert!(matches!(runtime.start(spec).await, Err(NodeError::BinaryMissing { engine: EngineKind::Redis })));
}

#[tokio::test]
async fn dropping_the_runtime_kills_its_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let node = runtime.start(spec(dir.path(), EngineKind::Redis, "dropped")).await.expect("start");
    drop(runtime);
    // The node leads its own process group; an AOF rewrite it forked at start holds a copy
    // of its listening socket, and must die with it.
    eventually("node and what it forked are gone", || async { !group_alive(node.pid) }).await;
    assert!(!accepts(node.port).await);
}

trait ProbeIs {
    async fn probe_is(&self, key: &nodes::NodeKey, health: Health) -> bool;
}

impl ProbeIs for Runtime {
    async fn probe_is(&self, key: &nodes::NodeKey, health: Health) -> bool {
        self.probe(key, PROBE).await == health
    }
}

/// What a SIGCHLD tells, read by `news`: a node stopped, continued or killed from outside
/// the runtime (a debugger, an operator's `kill`) is named in the news and shows in its
/// known health.
#[tokio::test]
async fn news_tells_of_a_stop_a_continue_and_an_exit_from_outside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let _listening = runtime.changes();
    let spec = spec(dir.path(), EngineKind::Redis, "outside");
    let node = runtime.start(spec.clone()).await.expect("start");
    assert_eq!(runtime.news(), vec![spec.key.clone()], "a start is news");
    let pid = libc::pid_t::try_from(node.pid).expect("pid");
    let known_in_news = |health: Option<Health>| {
        let runtime = &runtime;
        let key = spec.key.clone();
        move || {
            let told = runtime.news() == [key.clone()];
            let known = runtime.known_health(&key);
            async move { told && known == health }
        }
    };
    assert_eq!(runtime.known_health(&spec.key), None);

    // SAFETY: kill(2) on our own live child; SIGCONT below undoes it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    eventually("a stop from outside is news", known_in_news(Some(Health::Paused))).await;
    // Read, not consumed: a look without a new SIGCHLD keeps what the last one read.
    assert_eq!(runtime.news(), Vec::new());
    assert_eq!(runtime.known_health(&spec.key), Some(Health::Paused));

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    eventually("a continue from outside is news", known_in_news(None)).await;

    // SAFETY: as above; the runtime reaps it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    eventually("an exit is news", known_in_news(Some(Health::Exited))).await;
    runtime.stop(&spec.key).await.expect("stop");
    assert_eq!(runtime.news(), vec![spec.key.clone()], "a stop is news");
    assert!(!process_alive(node.pid));
}

/// A node the health monitor counts failed refuses commands, and those under way end at
/// once rather than at their bound; once it is counted well again, commands reach it.
#[tokio::test]
async fn commands_to_a_node_counted_failed_end_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let spec = spec(dir.path(), EngineKind::Redis, "hung");
    let node = runtime.start(spec.clone()).await.expect("start");
    assert!(runtime.command(&spec.key, &["PING"]).await.is_ok());

    // Hung for longer than a command may take: without the mark, the command under way
    // would end with its own time-out.
    assert_eq!(redis(node.port, &["CLIENT", "PAUSE", "3000", "ALL"]).await, "OK");
    let (under_way, ()) = tokio::join!(runtime.command(&spec.key, &["INFO", "replication"]), async {
        tokio::task::yield_now().await;
        runtime.set_failed(&spec.key, true);
    });
    let unreachable = |error: &NodeError| matches!(error, NodeError::NotRunning { health: Health::Unreachable, .. });
    let error = under_way.expect_err("the command under way fails");
    assert!(unreachable(&error), "{error:?}");
    let error = runtime.command(&spec.key, &["PING"]).await.expect_err("a new command is refused");
    assert!(unreachable(&error), "{error:?}");
    let error = runtime.session(&spec.key).await.map(|_| ()).expect_err("a session is refused");
    assert!(unreachable(&error), "{error:?}");

    assert_eq!(redis(node.port, &["CLIENT", "UNPAUSE"]).await, "OK");
    runtime.set_failed(&spec.key, false);
    assert!(runtime.command(&spec.key, &["PING"]).await.is_ok());
    runtime.stop(&spec.key).await.expect("stop");
}
