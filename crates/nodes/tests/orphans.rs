//! Nodes leaked by an emulator that died without cleaning up are found and killed.

mod common;

use common::*;
use nodes::{EngineKind, Engines, Runtime, reap_orphans};

#[tokio::test]
async fn reap_orphans_kills_nodes_of_a_leaked_runtime() {
    let state = tempfile::tempdir().expect("tempdir");
    let leaked = Runtime::new(Engines::detect());
    let redis = leaked.start(spec(state.path(), EngineKind::Redis, "orphan-r")).await.expect("start redis");
    let memcached = leaked.start(spec(state.path(), EngineKind::Memcached, "orphan-m")).await.expect("start memcached");
    // As if the emulator had been kill -9'd: no Drop, no stop.
    std::mem::forget(leaked);
    assert!(process_alive(redis.pid) && process_alive(memcached.pid));

    // A process working in the state directory that is no engine must be left alone.
    let decoy = state.path().join("decoy");
    std::fs::create_dir_all(&decoy).expect("mkdir");
    let mut bystander = std::process::Command::new("sleep").arg("60").current_dir(&decoy).spawn().expect("sleep");

    let mut killed = reap_orphans(state.path());
    killed.sort_unstable();
    let mut expected = vec![redis.pid, memcached.pid];
    expected.sort_unstable();
    assert_eq!(killed, expected);
    assert!(!process_alive(redis.pid) && !process_alive(memcached.pid));
    assert!(!accepts(redis.port).await && !accepts(memcached.port).await);
    assert!(process_alive(bystander.id()));
    assert!(reap_orphans(state.path()).is_empty());
    bystander.kill().expect("kill sleep");
    bystander.wait().expect("reap sleep");
}

/// Set for the child copy of this test binary that plays a doomed emulator.
const HELPER_ENV: &str = "NODES_TEST_DOOMED_EMULATOR_DIR";

/// In the child: start a node, report it, then wait to be `kill -9`'d. A no-op otherwise.
#[tokio::test]
async fn doomed_emulator_helper() {
    let Ok(dir) = std::env::var(HELPER_ENV) else { return };
    let runtime = Runtime::new(Engines::detect());
    let node = runtime.start(spec(std::path::Path::new(&dir), EngineKind::Redis, "doomed")).await.expect("start");
    // On a line of its own: libtest prints the test name without a newline before it.
    println!("\nNODE {} {}", node.pid, node.port);
    // Nodes are forked from the spawner thread, not this one: parking here proves
    // nothing by itself, the kill below is what matters.
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn nodes_die_with_a_kill_9d_emulator() {
    use std::io::BufRead;
    let state = tempfile::tempdir().expect("tempdir");
    let mut emulator = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "doomed_emulator_helper", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, state.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn helper");
    let stdout = emulator.stdout.take().expect("stdout");
    let reader = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split_once("NODE ").map(|(_, rest)| rest.to_owned()))
    });
    let Ok(line) = tokio::time::timeout(TIMEOUT, reader).await else {
        let _ = emulator.kill();
        panic!("the helper emulator did not report its node in time");
    };
    let line = line.expect("reader").expect("helper reported its node");
    let mut words = line.split_whitespace();
    let pid: u32 = words.next().and_then(|w| w.parse().ok()).expect("pid");
    assert!(process_alive(pid));

    emulator.kill().expect("kill -9 the emulator");
    let _ = emulator.wait();
    eventually("node dies with its emulator (PDEATHSIG)", || async move { !process_alive(pid) }).await;
    // Its port is not checked: the other tests of this binary start nodes on free ports at
    // the same time and may take it the moment it is free (seen in a full run).
}
