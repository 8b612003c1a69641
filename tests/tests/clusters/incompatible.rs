//! A node that will not start again with its settings puts its cluster in AWS's
//! `incompatible-parameters`, with an event saying why; once the engine accepts them again
//! the cluster is available, without a new request.

use std::path::Path;

use e2e::TestServer;
use nodes::{EngineKind, Engines};

use super::*;

/// redis-server, refusing to start (as it refuses a configuration) while `refuse` exists.
fn refusing_redis(dir: &Path, refuse: &Path) -> Engines {
    let refusal = format!(
        "if [ -e '{}' ]; then echo '*** FATAL CONFIG FILE ERROR (injected by the test) ***' >&2; exit 1; fi",
        refuse.display()
    );
    let wrapped = redis_behind(dir, &refusal);
    Engines::new(Some(wrapped.clone()), Some(wrapped), Engines::detect().binary(EngineKind::Memcached).cloned())
}

#[tokio::test]
async fn a_node_that_will_not_restart_is_incompatible_parameters_until_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let refuse = dir.path().join("refuse");
    let engines = refusing_redis(dir.path(), &refuse);
    let server = TestServer::start_with(|c| {
        c.engines = Some(engines);
        c.warm_nodes = 0;
    })
    .await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("picky")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap();
    wait_cluster_available(&client, "picky").await;

    std::fs::write(&refuse, b"").unwrap();
    client.reboot_cache_cluster().cache_cluster_id("picky").cache_node_ids_to_reboot("0001").send().await.unwrap();
    poll_until("the cluster is incompatible-parameters", SETTLE, || async {
        let status = describe_cluster(&client, "picky").await.cache_cluster_status().map(str::to_string);
        if status.as_deref() == Some("incompatible-parameters") { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;
    // Written with the status change.
    let events = e2e::events_of(&client, SourceType::CacheCluster, "picky").await;
    let why = events.iter().find(|e| e.contains("cannot start its nodes with the parameters of parameter group"));
    assert!(why.is_some_and(|e| e.contains("injected by the test")), "an event says why: {events:?}");

    std::fs::remove_file(&refuse).unwrap();
    let cluster = wait_cluster_available(&client, "picky").await;
    assert_eq!(cluster.cache_nodes()[0].cache_node_status(), Some("available"));
}
