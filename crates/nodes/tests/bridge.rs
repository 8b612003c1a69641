//! Replication bridges between real valkey/redis nodes: a plain primary into a 3-shard
//! cluster with writes during the full sync, a lost link resumed with a partial resync,
//! AUTH on the source (and its refusals), and a cluster-mode source.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nodes::cluster::{SLOTS, key_slot};
use nodes::resp::{self, Reply};
use nodes::{BridgePhase, BridgeSpec, BridgeState, EngineKind, Engines, NodeKey, NodeSpec, Runtime};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Generous: debug builds on two busy cores copy 100,000 keys in seconds, not milliseconds.
const TIMEOUT: Duration = Duration::from_secs(120);
const ENGINE: EngineKind = EngineKind::Valkey;

/// A raw RESP client over TCP that pipelines.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self { stream: BufReader::new(stream) }
    }

    async fn pipeline<A: AsRef<[u8]>>(&mut self, commands: &[Vec<A>]) -> Vec<Reply> {
        let bytes: Vec<u8> = commands.iter().flat_map(|c| resp::encode(c)).collect();
        self.stream.write_all(&bytes).await.expect("write");
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(resp::read_reply(&mut self.stream).await.expect("reply"));
        }
        replies
    }

    async fn command(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&str> = args.to_vec();
        self.pipeline(&[args]).await.remove(0)
    }
}

fn node_spec(dir: &Path, cluster: &str, node: u16, directives: &[(&str, &str)]) -> NodeSpec {
    NodeSpec {
        key: NodeKey::new("us-east-1/000000000000", cluster, format!("{node:04}")),
        engine: ENGINE,
        dir: dir.join(cluster).join(format!("{node:04}")),
        max_memory_bytes: 512 * 1024 * 1024,
        // A source starts a diskless full sync at once rather than after 5 s.
        directives: [("repl-diskless-sync-delay", "0")]
            .iter()
            .chain(directives)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..NodeSpec::default()
    }
}

/// A node that is no cluster; its key and port.
async fn plain(runtime: &Runtime, dir: &Path, name: &str, passwords: &[&str]) -> (NodeKey, u16) {
    let mut spec = node_spec(dir, name, 1, &[]);
    spec.passwords = passwords.iter().map(|p| p.to_string()).collect();
    let node = runtime.start(spec.clone()).await.expect("start node");
    (spec.key, node.port)
}

/// A cluster of `shards` primaries splitting the slots evenly; their keys and ports.
async fn cluster(runtime: &Runtime, dir: &Path, name: &str, shards: u16) -> Vec<(NodeKey, u16)> {
    let mut nodes = Vec::new();
    for i in 0..shards {
        let spec = node_spec(dir, name, i + 1, &[("cluster-enabled", "yes")]);
        let node = runtime.start(spec.clone()).await.expect("start cluster node");
        nodes.push((spec.key, node.port));
    }
    let per = SLOTS / shards;
    for (i, (key, _)) in nodes.iter().enumerate() {
        let i = i as u16;
        let (from, to) = (i * per, if i + 1 == shards { SLOTS - 1 } else { (i + 1) * per - 1 });
        let added = runtime.command(key, &["CLUSTER", "ADDSLOTSRANGE", &from.to_string(), &to.to_string()]).await;
        assert_eq!(added.expect("ADDSLOTSRANGE"), Reply::Simple("OK".into()));
        runtime.command(key, &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]).await.expect("epoch");
    }
    for (_, port) in &nodes[1..] {
        let met = runtime.command(&nodes[0].0, &["CLUSTER", "MEET", "127.0.0.1", &port.to_string()]).await;
        assert_eq!(met.expect("MEET"), Reply::Simple("OK".into()));
    }
    let expected = format!("cluster_known_nodes:{shards}");
    eventually("the cluster forms", || async {
        for (key, _) in &nodes {
            let info = runtime.command(key, &["CLUSTER", "INFO"]).await.ok().and_then(|r| r.as_text());
            let info = info.unwrap_or_default();
            if !info.contains("cluster_state:ok") || !info.contains(&expected) {
                return false;
            }
        }
        true
    })
    .await;
    nodes
}

/// Polls `condition` until it holds; panics after [`TIMEOUT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bridge_spec(dir: &Path, source_port: u16, target: &[(NodeKey, u16)]) -> BridgeSpec {
    BridgeSpec {
        source: SocketAddr::from((Ipv4Addr::LOCALHOST, source_port)),
        source_auth: None,
        source_tls: None,
        target: target.iter().map(|(key, _)| key.clone()).collect(),
        scratch_dir: dir.join("bridge scratch"),
        engine: ENGINE,
    }
}

async fn wait_in_sync(runtime: &Runtime, id: &str) -> BridgeState {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if runtime.in_sync(id).await {
            return runtime.bridge(id).expect("bridge state");
        }
        assert!(Instant::now() < deadline, "bridge {id} never got in sync: {:?}", runtime.bridge(id));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 100,000 keys: strings (a tenth with a TTL), hashes, lists, sets and sorted sets.
async fn fill(port: u16, count: usize) {
    let mut client = Client::connect(port).await;
    let mut batch: Vec<Vec<String>> = Vec::new();
    for i in 0..count {
        let key = format!("key:{i}");
        let command: Vec<String> = match i % 20 {
            0 => vec!["HSET".into(), key, "a".into(), i.to_string(), "b".into(), "x".repeat(i % 50)],
            1 => vec!["RPUSH".into(), key, "1".into(), "2".into(), i.to_string()],
            2 => vec!["SADD".into(), key, "x".into(), "y".into(), i.to_string()],
            3 => vec!["ZADD".into(), key, "1".into(), "one".into(), "2.5".into(), i.to_string()],
            4 | 5 => vec!["SET".into(), key, i.to_string(), "PX".into(), (600_000 + i).to_string()],
            _ => vec!["SET".into(), key, format!("value-{i}")],
        };
        batch.push(command);
        if batch.len() == 1000 {
            for reply in client.pipeline(&batch).await {
                assert!(!matches!(reply, Reply::Error(_)), "{reply:?}");
            }
            batch.clear();
        }
    }
    client.pipeline(&batch).await;
}

/// Writes until told to stop (and at least `at_least` steps): a counter, a key per step, a
/// list whose order matters, a transaction, a cross-slot MSET and DEL, RENAME, SMOVE and
/// LMOVE between slots. Returns the steps.
async fn write(port: u16, stop: Arc<AtomicBool>, at_least: usize) -> usize {
    let mut client = Client::connect(port).await;
    let mut step = 0;
    while step < at_least || !stop.load(Ordering::SeqCst) {
        let n = step.to_string();
        let mut commands: Vec<Vec<String>> = vec![
            vec!["INCR".into(), "counter".into()],
            vec!["SET".into(), format!("w:{n}"), n.clone()],
            vec!["RPUSH".into(), "order".into(), n.clone()],
            vec!["MULTI".into()],
            vec!["INCR".into(), "{tx}a".into()],
            vec!["INCRBY".into(), "{tx}b".into(), "2".into()],
            vec!["EXEC".into()],
            vec!["MSET".into(), format!("m1:{n}"), n.clone(), format!("m2:{n}"), n.clone()],
            vec!["DEL".into(), format!("m1:{}", step / 2), format!("key:{step}")],
            // Moves between keys a cluster keeps in different slots.
            vec!["SADD".into(), "set-a".into(), n.clone()],
            vec!["SMOVE".into(), "set-a".into(), "set-b".into(), n.clone()],
        ];
        // The bridge applies these in steps (it needs the value moved): not at every step.
        if step % 10 == 0 {
            commands.extend([
                vec!["SET".into(), format!("r:{n}"), n.clone()],
                vec!["RENAME".into(), format!("r:{n}"), format!("renamed:{n}")],
                vec!["RPUSH".into(), "list-a".into(), n.clone()],
                vec!["LMOVE".into(), "list-a".into(), "list-b".into(), "LEFT".into(), "RIGHT".into()],
            ]);
        }
        for reply in client.pipeline(&commands).await {
            assert!(!matches!(reply, Reply::Error(_)), "{reply:?}");
        }
        step += 1;
    }
    step
}

/// Every key of the source, with its DUMP payload and expiry.
async fn contents(client: &mut Client) -> BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let reply = client.command(&["SCAN", &cursor, "COUNT", "1000"]).await;
        let Reply::Array(Some(mut parts)) = reply else { panic!("SCAN answered {reply:?}") };
        let Some(Reply::Array(Some(keys))) = parts.pop() else { panic!("SCAN without keys") };
        cursor = parts.pop().and_then(|c| c.as_text()).expect("cursor");
        let keys: Vec<Vec<u8>> =
            keys.into_iter().filter_map(|k| if let Reply::Bulk(Some(k)) = k { Some(k) } else { None }).collect();
        for (key, value) in keys.iter().zip(values(client, &keys).await) {
            out.insert(key.clone(), value.expect("a key of the source vanished"));
        }
        if cursor == "0" {
            return out;
        }
    }
}

/// DUMP payload and expiry (PEXPIRETIME: absolute, so reading later changes nothing; -1
/// for none) of each key; None for a missing key.
async fn values(client: &mut Client, keys: &[Vec<u8>]) -> Vec<Option<(Vec<u8>, i64)>> {
    let commands: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .flat_map(|k| [vec![b"DUMP".to_vec(), k.clone()], vec![b"PEXPIRETIME".to_vec(), k.clone()]])
        .collect();
    let mut out = Vec::new();
    for chunk in commands.chunks(2000) {
        let replies = client.pipeline(chunk).await;
        for pair in replies.chunks(2) {
            out.push(match pair {
                [Reply::Bulk(Some(dump)), Reply::Integer(ttl)] => Some((dump.clone(), *ttl)),
                _ => None,
            });
        }
    }
    out
}

/// Asserts the target holds exactly the source's keys, values and expiries (within 5 s: the
/// copy restores a TTL read a moment before).
async fn assert_same(source_port: u16, target: &[(NodeKey, u16)], runtime: &Runtime) {
    let mut source_client = Client::connect(source_port).await;
    let source = contents(&mut source_client).await;
    // Which target node owns each slot: ask the first (or the only) node.
    let owner = slot_owners(runtime, target).await;
    let mut clients = Vec::new();
    for (_, port) in target {
        clients.push(Client::connect(*port).await);
    }
    let mut by_node: Vec<Vec<Vec<u8>>> = vec![Vec::new(); target.len()];
    for key in source.keys() {
        by_node[owner[usize::from(key_slot(key))]].push(key.clone());
    }
    let mut total = 0;
    for (node, keys) in by_node.iter().enumerate() {
        let found = values(&mut clients[node], keys).await;
        for (key, value) in keys.iter().zip(found) {
            let (dump, ttl) = value.unwrap_or_else(|| panic!("{} missing on the target", String::from_utf8_lossy(key)));
            let (source_dump, source_ttl) = &source[key];
            if &dump != source_dump {
                // Built by other commands (SMOVE here, SADD there), a value may be encoded
                // otherwise: compare what it holds.
                let (there, here) = (content(&mut source_client, key).await, content(&mut clients[node], key).await);
                assert_eq!(there, here, "value of {}", String::from_utf8_lossy(key));
            }
            assert_eq!(ttl < 0, *source_ttl < 0, "TTL of {}", String::from_utf8_lossy(key));
            assert!((ttl - source_ttl).abs() < 5_000, "TTL of {}: {ttl} vs {source_ttl}", String::from_utf8_lossy(key));
        }
        let Reply::Integer(size) = clients[node].command(&["DBSIZE"]).await else { panic!("DBSIZE") };
        total += size as usize;
    }
    assert_eq!(total, source.len(), "the target holds keys the source does not");
}

/// What a key holds, whatever its encoding: its type and its elements in a fixed order.
async fn content(client: &mut Client, key: &[u8]) -> Vec<Vec<u8>> {
    let kind = client.pipeline(&[vec![b"TYPE".as_slice(), key]]).await.remove(0).as_text().unwrap_or_default();
    let read: Vec<&[u8]> = match kind.as_str() {
        "string" => vec![b"GET", key],
        "list" => vec![b"LRANGE", key, b"0", b"-1"],
        "set" => vec![b"SMEMBERS", key],
        "hash" => vec![b"HGETALL", key],
        "zset" => vec![b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"],
        other => panic!("no comparison for a {other}"),
    };
    let mut items = match client.pipeline(&[read]).await.remove(0) {
        Reply::Bulk(Some(value)) => vec![value],
        Reply::Array(Some(items)) => {
            items.into_iter().filter_map(|i| if let Reply::Bulk(Some(b)) = i { Some(b) } else { None }).collect()
        }
        other => panic!("{kind} answered {other:?}"),
    };
    match kind.as_str() {
        "set" => items.sort(),
        "hash" => {
            let mut pairs: Vec<Vec<Vec<u8>>> = items.chunks(2).map(<[Vec<u8>]>::to_vec).collect();
            pairs.sort();
            items = pairs.concat();
        }
        _ => {}
    }
    items.insert(0, kind.into_bytes());
    items
}

/// The index in `target` of the node owning each slot.
async fn slot_owners(runtime: &Runtime, target: &[(NodeKey, u16)]) -> Vec<usize> {
    if target.len() == 1 {
        return vec![0; usize::from(SLOTS)];
    }
    let mut owner = vec![usize::MAX; usize::from(SLOTS)];
    for (i, (key, _)) in target.iter().enumerate() {
        let text =
            runtime.command(key, &["CLUSTER", "NODES"]).await.expect("CLUSTER NODES").as_text().unwrap_or_default();
        let me = nodes::cluster::parse_nodes(&text).into_iter().find(|n| n.myself).expect("myself");
        for slot in me.slots.iter().flat_map(|&(a, b)| a..=b) {
            owner[usize::from(slot)] = i;
        }
    }
    assert!(owner.iter().all(|&o| o != usize::MAX), "every slot has an owner");
    owner
}

/// Asserts the writer's `steps` all arrived on the target (beyond the whole-data check).
async fn assert_writes(runtime: &Runtime, target: &[(NodeKey, u16)], steps: usize) {
    let owner = slot_owners(runtime, target).await;
    let port = |key: &[u8]| target[owner[usize::from(key_slot(key))]].1;
    let mut client = Client::connect(port(b"counter")).await;
    assert_eq!(client.command(&["GET", "counter"]).await, Reply::Bulk(Some(steps.to_string().into_bytes())));
    let mut client = Client::connect(port(b"order")).await;
    let order = client.command(&["LRANGE", "order", "0", "-1"]).await;
    let expected: Vec<Reply> = (0..steps).map(|i| Reply::Bulk(Some(i.to_string().into_bytes()))).collect();
    assert_eq!(order, Reply::Array(Some(expected)), "the list's order");
    let mut client = Client::connect(port(b"{tx}a")).await;
    assert_eq!(client.command(&["GET", "{tx}b"]).await, Reply::Bulk(Some((2 * steps).to_string().into_bytes())));
}

fn spawn_writer(port: u16, at_least: usize) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write(port, stop.clone(), at_least));
    (stop, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_primary_into_a_three_shard_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (_, source) = plain(&runtime, dir.path(), "source", &[]).await;
    let target = cluster(&runtime, dir.path(), "target", 3).await;
    fill(source, 100_000).await;

    let (stop, writer) = spawn_writer(source, 200);
    runtime.start_bridge("b1", bridge_spec(dir.path(), source, &target)).await.expect("start bridge");
    eventually("the bridge streams", || async {
        runtime.bridge("b1").is_some_and(|s| s.phase == BridgePhase::Streaming)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let steps = writer.await.expect("writer");

    let state = wait_in_sync(&runtime, "b1").await;
    assert_eq!(state.full_syncs, 1, "{state:?}");
    assert!(state.link_up && state.last_applied.is_some(), "{state:?}");
    assert_writes(&runtime, &target, steps).await;
    assert_same(source, &target, &runtime).await;

    runtime.stop_bridge("b1").await;
    assert!(runtime.bridge("b1").is_none());
    assert!(!dir.path().join("bridge scratch").exists(), "the scratch directory is gone");
    runtime.stop_bridge("b1").await;
    runtime.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_resumes_without_a_full_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (source_key, source) = plain(&runtime, dir.path(), "source", &[]).await;
    let target = cluster(&runtime, dir.path(), "target", 3).await;
    fill(source, 1_000).await;
    runtime.start_bridge("b2", bridge_spec(dir.path(), source, &target)).await.expect("start bridge");
    wait_in_sync(&runtime, "b2").await;

    let (stop, writer) = spawn_writer(source, 300);
    for _ in 0..3 {
        // Wait until the bridge has applied something new, then cut its link.
        let before = runtime.bridge("b2").expect("state").applied_offset;
        eventually("the bridge applies writes over a new link", || async {
            let info = runtime.command(&source_key, &["INFO", "replication"]).await;
            let text = info.ok().and_then(|i| i.as_text()).unwrap_or_default();
            resp::info_field(&text, "connected_slaves") == Some("1")
                && runtime.bridge("b2").is_some_and(|s| s.applied_offset > before && s.link_up)
        })
        .await;
        let killed = runtime.command(&source_key, &["CLIENT", "KILL", "TYPE", "replica"]).await.expect("CLIENT KILL");
        assert_eq!(killed, Reply::Integer(1));
    }
    stop.store(true, Ordering::SeqCst);
    let steps = writer.await.expect("writer");

    let state = wait_in_sync(&runtime, "b2").await;
    assert_eq!(state.full_syncs, 1, "the link resumed with partial resyncs: {state:?}");
    let info = runtime.command(&source_key, &["INFO", "stats"]).await.expect("INFO").as_text().unwrap_or_default();
    let partial: u64 = resp::info_field(&info, "sync_partial_ok").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert_eq!(partial, 3, "{info}");
    assert_writes(&runtime, &target, steps).await;
    assert_same(source, &target, &runtime).await;
    runtime.stop_bridge("b2").await;
    runtime.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (_, source) = plain(&runtime, dir.path(), "source", &["s3cret-token"]).await;
    let target = vec![plain(&runtime, dir.path(), "target", &[]).await];
    let mut client = Client::connect(source).await;
    client.command(&["AUTH", "s3cret-token"]).await;
    client.command(&["SET", "before", "1"]).await;

    let mut spec = bridge_spec(dir.path(), source, &target);
    runtime.start_bridge("nopass", spec.clone()).await.expect("start bridge");
    spec.source_auth = Some(("default".into(), "wrong".into()));
    spec.scratch_dir = dir.path().join("scratch wrong");
    runtime.start_bridge("wrong", spec.clone()).await.expect("start bridge");
    for (id, expected) in [("nopass", "NOAUTH"), ("wrong", "WRONGPASS")] {
        eventually(&format!("bridge {id} fails with {expected}"), || async {
            matches!(runtime.bridge(id).map(|s| s.phase), Some(BridgePhase::Failed(reason)) if reason.contains(expected))
        })
        .await;
        runtime.stop_bridge(id).await;
    }

    spec.source_auth = Some(("default".into(), "s3cret-token".into()));
    runtime.start_bridge("auth", spec).await.expect("start bridge");
    wait_in_sync(&runtime, "auth").await;
    client.command(&["SET", "after", "2"]).await;
    wait_in_sync(&runtime, "auth").await;
    let mut target_client = Client::connect(target[0].1).await;
    assert_eq!(target_client.command(&["GET", "before"]).await, Reply::Bulk(Some(b"1".to_vec())));
    assert_eq!(target_client.command(&["GET", "after"]).await, Reply::Bulk(Some(b"2".to_vec())));
    runtime.stop_bridge("auth").await;
    runtime.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_mode_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let source = cluster(&runtime, dir.path(), "source", 1).await;
    let target = cluster(&runtime, dir.path(), "target", 3).await;
    let source_port = source[0].1;
    let mut client = Client::connect(source_port).await;
    let before: Vec<Vec<String>> = (0..2000).map(|i| vec!["SET".into(), format!("k{i}"), i.to_string()]).collect();
    client.pipeline(&before).await;

    runtime.start_bridge("shard", bridge_spec(dir.path(), source_port, &target)).await.expect("start bridge");
    wait_in_sync(&runtime, "shard").await;
    let after: Vec<Vec<String>> = (0..2000).map(|i| vec!["INCR".into(), format!("k{i}")]).collect();
    client.pipeline(&after).await;
    wait_in_sync(&runtime, "shard").await;
    assert_same(source_port, &target, &runtime).await;
    let owner = slot_owners(&runtime, &target).await;
    let mut check = Client::connect(target[owner[usize::from(key_slot(b"k7"))]].1).await;
    assert_eq!(check.command(&["GET", "k7"]).await, Reply::Bulk(Some(b"8".to_vec())));
    runtime.stop_bridge("shard").await;
    runtime.stop_all().await;
}

/// Moves the slot of each of `keys` to the next primary of `target`, as a resharding does.
async fn reshard(runtime: &Runtime, target: &[(NodeKey, u16)], keys: &[&[u8]]) {
    let owner = slot_owners(runtime, target).await;
    for key in keys {
        let slot = key_slot(key);
        let (from, to) = (owner[usize::from(slot)], (owner[usize::from(slot)] + 1) % target.len());
        let mut sessions = Vec::new();
        let mut ids = Vec::new();
        for i in [from, to] {
            let mut session = runtime.session(&target[i].0).await.expect("session");
            let me = session.nodes().await.expect("CLUSTER NODES").into_iter().find(|n| n.myself).expect("myself");
            ids.push(me.id);
            sessions.push(session);
        }
        let (mut to_session, mut from_session) = (sessions.pop().expect("to"), sessions.pop().expect("from"));
        let address = |i: usize| SocketAddr::from((Ipv4Addr::LOCALHOST, target[i].1));
        let from_end = nodes::cluster::Primary { session: &mut from_session, id: &ids[0], address: address(from) };
        let to_end = nodes::cluster::Primary { session: &mut to_session, id: &ids[1], address: address(to) };
        nodes::cluster::migrate_slots(&[slot], from_end, to_end, runtime.control_credentials())
            .await
            .expect("migrate slot");
        // As an operator would, move on once every node agrees: moves racing gossip can
        // leave two nodes each naming the other the owner (an epoch collision).
        let owner_id = ids[1].clone();
        eventually("every node sees the slot's new owner", || async {
            for (key, _) in target {
                let Ok(mut session) = runtime.session(key).await else { return false };
                let Ok(view) = session.nodes().await else { return false };
                let owns = |n: &nodes::cluster::ClusterNode| n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot));
                if !view.iter().filter(|n| owns(n)).all(|n| n.id == owner_id) || !view.iter().any(owns) {
                    return false;
                }
            }
            true
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharded_target_keeps_receiving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (_, source) = plain(&runtime, dir.path(), "source", &[]).await;
    let target = cluster(&runtime, dir.path(), "target", 3).await;
    fill(source, 1_000).await;
    runtime.start_bridge("moving", bridge_spec(dir.path(), source, &target)).await.expect("start bridge");
    wait_in_sync(&runtime, "moving").await;

    let (stop, writer) = spawn_writer(source, 300);
    // The writer's keys change owner under the bridge (MOVED), twice for good measure.
    for _ in 0..2 {
        reshard(&runtime, &target, &[b"counter", b"order", b"{tx}a", b"key:500"]).await;
    }
    stop.store(true, Ordering::SeqCst);
    let steps = writer.await.expect("writer");
    let state = wait_in_sync(&runtime, "moving").await;
    assert_eq!(state.full_syncs, 1, "{state:?}");
    assert_writes(&runtime, &target, steps).await;
    assert_same(source, &target, &runtime).await;
    runtime.stop_bridge("moving").await;
    runtime.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_on_another_database_fails_a_cluster_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (source_key, source) = plain(&runtime, dir.path(), "source", &[]).await;
    let target = cluster(&runtime, dir.path(), "target", 1).await;
    runtime.start_bridge("dbs", bridge_spec(dir.path(), source, &target)).await.expect("start bridge");
    wait_in_sync(&runtime, "dbs").await;

    // WAIT counts the bridge once it acknowledges (REPLCONF GETACK).
    let mut client = Client::connect(source).await;
    client.command(&["SET", "zero", "0"]).await;
    assert_eq!(client.command(&["WAIT", "1", "5000"]).await, Reply::Integer(1));

    client.command(&["SELECT", "3"]).await;
    client.command(&["SET", "three", "3"]).await;
    eventually("the bridge refuses database 3", || async {
        matches!(runtime.bridge("dbs").map(|s| s.phase),
            Some(BridgePhase::Failed(reason)) if reason == "source uses database 3; the target has only database 0")
    })
    .await;
    assert!(!runtime.in_sync("dbs").await);
    let _ = source_key;
    runtime.stop_bridge("dbs").await;
    runtime.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_runtime_ends_its_bridges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sources = Runtime::new(Engines::detect());
    let (source_key, source) = plain(&sources, dir.path(), "source", &[]).await;
    let replicas = || async {
        let info = sources.command(&source_key, &["INFO", "replication"]).await.expect("INFO");
        resp::info_field(&info.as_text().unwrap_or_default(), "connected_slaves").map(str::to_string)
    };
    let runtime = Runtime::new(Engines::detect());
    let target = vec![plain(&runtime, dir.path(), "target", &[]).await];
    runtime.start_bridge("dropped", bridge_spec(dir.path(), source, &target)).await.expect("start bridge");
    wait_in_sync(&runtime, "dropped").await;
    assert_eq!(replicas().await.as_deref(), Some("1"));
    drop(runtime);
    eventually("the bridge's link is closed", || async { replicas().await.as_deref() == Some("0") }).await;
    sources.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_forces_a_full_resync_that_recopies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (source_key, source) = plain(&runtime, dir.path(), "source", &[]).await;
    let target = cluster(&runtime, dir.path(), "target", 2).await;
    fill(source, 1_000).await;
    runtime.start_bridge("restart", bridge_spec(dir.path(), source, &target)).await.expect("start bridge");
    assert_eq!(wait_in_sync(&runtime, "restart").await.full_syncs, 1);

    // Something only the target has: a full resync must not keep it.
    let owner = slot_owners(&runtime, &target).await;
    let junk_node = &target[owner[usize::from(key_slot(b"junk"))]].0;
    runtime.command(junk_node, &["SET", "junk", "1"]).await.expect("SET junk");
    // Restarted in place, the source comes back with a new replication history.
    let mut spec = node_spec(dir.path(), "source", 1, &[]);
    spec.port = source;
    runtime.start(spec).await.expect("restart the source");
    runtime.command(&source_key, &["SET", "after-restart", "1"]).await.expect("SET");
    eventually("the bridge syncs again", || async {
        runtime.bridge("restart").is_some_and(|s| s.full_syncs == 2) && runtime.in_sync("restart").await
    })
    .await;
    assert_eq!(runtime.command(junk_node, &["EXISTS", "junk"]).await.expect("EXISTS"), Reply::Integer(0));
    assert_same(source, &target, &runtime).await;
    runtime.stop_bridge("restart").await;
    runtime.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let ca = Arc::new(nodes::tls::CertificateAuthority::load_or_create(&dir.path().join("ca")).expect("CA"));
    let mut spec = node_spec(dir.path(), "source", 1, &[]);
    spec.tls = Some(ca.clone());
    spec.passwords = vec!["tls-token".into()];
    let source = runtime.start(spec.clone()).await.expect("start TLS source");
    runtime.command(&spec.key, &["SET", "before", "1"]).await.expect("SET");
    let target = vec![plain(&runtime, dir.path(), "target", &[]).await];

    let mut bridge = bridge_spec(dir.path(), source.port, &target);
    bridge.source_auth = Some(("default".into(), "tls-token".into()));
    bridge.source_tls = Some(ca.client_config().expect("client config"));
    runtime.start_bridge("tls", bridge).await.expect("start bridge");
    wait_in_sync(&runtime, "tls").await;
    runtime.command(&spec.key, &["SET", "after", "2"]).await.expect("SET");
    wait_in_sync(&runtime, "tls").await;
    for (key, value) in [("before", "1"), ("after", "2")] {
        let got = runtime.command(&target[0].0, &["GET", key]).await.expect("GET");
        assert_eq!(got, Reply::Bulk(Some(value.as_bytes().to_vec())));
    }
    runtime.stop_bridge("tls").await;
    runtime.stop_all().await;
}

/// Whether `target` holds each of `keys` with its own name as value (a GET at its owner).
async fn present(runtime: &Runtime, target: &[(NodeKey, u16)], keys: &[String]) -> Vec<bool> {
    let owner = slot_owners(runtime, target).await;
    let mut out = Vec::new();
    for key in keys {
        let node = &target[owner[usize::from(key_slot(key.as_bytes()))]].0;
        let got = runtime.command(node, &["GET", key]).await.expect("GET");
        out.push(got == Reply::Bulk(Some(key.as_bytes().to_vec())));
    }
    out
}

/// A Global Datastore in cluster mode: a bridge per source shard, all into one target
/// cluster. Each replaces only its shard's slots, at its full sync and at its FLUSHALL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_per_source_shard_into_one_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let source = cluster(&runtime, dir.path(), "source", 2).await;
    let target = cluster(&runtime, dir.path(), "target", 3).await;
    let owner = slot_owners(&runtime, &source).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("g{i}")).collect();
    let shard_of = |key: &String| owner[usize::from(key_slot(key.as_bytes()))];
    for (shard, (_, port)) in source.iter().enumerate() {
        let sets: Vec<Vec<&str>> =
            keys.iter().filter(|k| shard_of(k) == shard).map(|k| vec!["SET", k.as_str(), k.as_str()]).collect();
        Client::connect(*port).await.pipeline(&sets).await;
    }
    for (shard, (_, port)) in source.iter().enumerate() {
        let mut spec = bridge_spec(dir.path(), *port, &target);
        spec.scratch_dir = dir.path().join(format!("scratch {shard}"));
        runtime.start_bridge(&format!("shard-{shard}"), spec).await.expect("start bridge");
    }
    for shard in 0..source.len() {
        wait_in_sync(&runtime, &format!("shard-{shard}")).await;
    }
    assert!(present(&runtime, &target, &keys).await.iter().all(|&p| p), "every key of both shards arrived");

    // Shard 0's FLUSHALL empties its slots only.
    runtime.command(&source[0].0, &["FLUSHALL"]).await.expect("FLUSHALL");
    for shard in 0..source.len() {
        wait_in_sync(&runtime, &format!("shard-{shard}")).await;
    }
    for (key, present) in keys.iter().zip(present(&runtime, &target, &keys).await) {
        assert_eq!(present, shard_of(key) == 1, "{key} of shard {}", shard_of(key));
    }
    for shard in 0..source.len() {
        runtime.stop_bridge(&format!("shard-{shard}")).await;
    }
    runtime.stop_all().await;
}

/// A target that is no cluster keeps the source's databases, at the full sync and after,
/// and runs its transactions as transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_target_keeps_databases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (_, source) = plain(&runtime, dir.path(), "source", &[]).await;
    let target = vec![plain(&runtime, dir.path(), "target", &[]).await];
    let mut client = Client::connect(source).await;
    let setup: Vec<Vec<&str>> = vec![vec!["SET", "k", "db0"], vec!["SELECT", "2"], vec!["SET", "k", "db2"]];
    client.pipeline(&setup).await;
    runtime.start_bridge("dbs", bridge_spec(dir.path(), source, &target)).await.expect("start bridge");
    wait_in_sync(&runtime, "dbs").await;
    let writes: Vec<Vec<&str>> = vec![
        vec!["MULTI"],
        vec!["INCR", "n"],
        vec!["SET", "k", "db2-again"],
        vec!["EXEC"],
        vec!["SELECT", "5"],
        vec!["SET", "k", "db5"],
        vec!["SELECT", "0"],
        vec!["SET", "k", "db0-again"],
    ];
    client.pipeline(&writes).await;
    wait_in_sync(&runtime, "dbs").await;
    let mut check = Client::connect(target[0].1).await;
    for (db, expected) in [("0", "db0-again"), ("2", "db2-again"), ("5", "db5")] {
        check.command(&["SELECT", db]).await;
        assert_eq!(check.command(&["GET", "k"]).await, Reply::Bulk(Some(expected.as_bytes().to_vec())), "db {db}");
    }
    check.command(&["SELECT", "2"]).await;
    assert_eq!(check.command(&["GET", "n"]).await, Reply::Bulk(Some(b"1".to_vec())));
    runtime.stop_bridge("dbs").await;
    runtime.stop_all().await;
}
