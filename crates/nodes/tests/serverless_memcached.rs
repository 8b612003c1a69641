//! The Serverless Memcached endpoint in front of two real memcached nodes: the commands AWS
//! serves (through TLS only) and those it refuses, mirroring on both nodes, a killed, a
//! restarted and a frozen node, and the dump/load of a node's items.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use nodes::serverless_memcached::{dump, load};
use nodes::tls::CertificateAuthority;
use nodes::{EcpuLimit, EngineKind, Engines, MemcachedEndpoint, NodeError, NodeSpec, Runtime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type Client = tokio_rustls::client::TlsStream<TcpStream>;

/// Two memcached nodes (zones a and b) behind one endpoint.
struct Cache {
    dir: tempfile::TempDir,
    runtime: Runtime,
    specs: Vec<NodeSpec>,
    ports: Vec<u16>,
    endpoint: MemcachedEndpoint,
    client_tls: Arc<rustls::ClientConfig>,
    ecpu: Arc<EcpuLimit>,
}

impl Cache {
    async fn start(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new(Engines::detect());
        let (mut specs, mut ports) = (Vec::new(), Vec::new());
        for node in ["0001", "0002"] {
            let spec = node_spec(dir.path(), name, node);
            ports.push(runtime.start(spec.clone()).await.expect("start memcached").port);
            specs.push(spec);
        }
        let ca = CertificateAuthority::load_or_create(&dir.path().join("tls")).expect("CA");
        let server_tls = ca.server_config().expect("server TLS");
        let ecpu = Arc::new(EcpuLimit::default());
        let endpoint =
            MemcachedEndpoint::start(Ipv4Addr::LOCALHOST, 0, server_tls, ecpu.clone()).await.expect("endpoint");
        endpoint.point_at(ports.iter().map(|port| addr(*port)).collect());
        let client_tls = ca.client_config().expect("client TLS");
        Self { dir, runtime, specs, ports, endpoint, client_tls, ecpu }
    }

    async fn connect(&self) -> Client {
        let tcp = TcpStream::connect(addr(self.endpoint.port())).await.expect("connect to the endpoint");
        nodes::tls::connect(&self.client_tls, Ipv4Addr::LOCALHOST, tcp).await.expect("TLS handshake")
    }

    /// Whether node `i`, asked directly, holds `key` with `value`.
    async fn holds(&self, i: usize, key: &str, value: &str) -> bool {
        let reply = memcached(self.ports[i], format!("get {key}\r\n").as_bytes(), b"END\r\n").await;
        text(&reply).contains(&format!("\r\n{value}\r\n"))
    }

    /// Waits until a write through the endpoint reaches node `i` again (it is back in use).
    async fn until_node_serves(&self, client: &mut Client, i: usize) {
        let deadline = Instant::now() + TIMEOUT;
        for attempt in 0.. {
            let key = format!("probe{attempt}");
            let request = format!("set {key} 0 0 2\r\nok\r\n");
            assert_eq!(ask(client, request.as_bytes(), "\r\n").await, "STORED\r\n");
            if self.holds(i, &key, "ok").await {
                return;
            }
            assert!(Instant::now() < deadline, "node {i} is not back in use");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn node_spec(dir: &std::path::Path, cache: &str, node: &str) -> NodeSpec {
    let mut spec = spec(dir, EngineKind::Memcached, cache);
    spec.key.node_id = node.into();
    spec.dir = dir.join(cache).join(node);
    spec
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends `request` and reads until the answer ends with `end`.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8], end: &str) -> String {
    stream.write_all(request).await.expect("write");
    stream.flush().await.expect("flush");
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        while !answer.ends_with(end.as_bytes()) {
            let n = stream.read_buf(&mut answer).await.expect("read");
            assert!(n > 0, "connection closed after {:?}", text(&answer));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no answer ending in {end:?} in time; got {:?}", text(&answer)));
    text(&answer)
}

/// What the peer sends until it closes the connection (EOF or reset), which it must do in time.
async fn until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut received)).await.expect("closed in time");
    text(&received)
}

/// The cas unique of a `gets` answer with one value.
fn cas_of(answer: &str) -> String {
    answer.lines().next().and_then(|line| line.split(' ').nth(4)).expect("cas unique").to_string()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs()
}

#[tokio::test]
async fn classic_commands_are_served_over_tls_and_written_to_every_node() {
    let cache = Cache::start("classic").await;
    let mut c = cache.connect().await;

    assert_eq!(ask(&mut c, b"set k 7 0 5\r\nhello\r\n", "\r\n").await, "STORED\r\n");
    assert!(cache.holds(0, "k", "hello").await && cache.holds(1, "k", "hello").await, "both zones hold k");
    assert_eq!(ask(&mut c, b"get k\r\n", "END\r\n").await, "VALUE k 7 5\r\nhello\r\nEND\r\n");

    let gets = ask(&mut c, b"gets k\r\n", "END\r\n").await;
    let cas = cas_of(&gets);
    let swap = format!("cas k 7 0 5 {cas}\r\nworld\r\n");
    assert_eq!(ask(&mut c, swap.as_bytes(), "\r\n").await, "STORED\r\n");
    assert!(cache.holds(0, "k", "world").await && cache.holds(1, "k", "world").await, "cas copied to both");
    assert_eq!(ask(&mut c, swap.as_bytes(), "\r\n").await, "EXISTS\r\n");
    assert_eq!(ask(&mut c, b"cas nokey 0 0 1 1\r\nx\r\n", "\r\n").await, "NOT_FOUND\r\n");

    assert_eq!(ask(&mut c, b"set n 0 0 2\r\n10\r\n", "\r\n").await, "STORED\r\n");
    assert_eq!(ask(&mut c, b"incr n 5\r\n", "\r\n").await, "15\r\n");
    assert_eq!(ask(&mut c, b"decr n 3\r\n", "\r\n").await, "12\r\n");
    assert!(cache.holds(1, "n", "12").await);
    assert_eq!(ask(&mut c, b"append k 0 0 1\r\n!\r\n", "\r\n").await, "STORED\r\n");
    assert_eq!(ask(&mut c, b"prepend k 0 0 1\r\n<\r\n", "\r\n").await, "STORED\r\n");
    assert!(cache.holds(1, "k", "<world!").await);
    assert_eq!(ask(&mut c, b"add k 0 0 1\r\nx\r\n", "\r\n").await, "NOT_STORED\r\n");
    assert_eq!(ask(&mut c, b"touch k 100\r\n", "\r\n").await, "TOUCHED\r\n");
    assert_eq!(ask(&mut c, b"gat 100 k\r\n", "END\r\n").await, "VALUE k 7 7\r\n<world!\r\nEND\r\n");

    // One END after the values of several keys, misses left out, in the order asked.
    assert_eq!(
        ask(&mut c, b"get n missing k\r\n", "END\r\n").await,
        "VALUE n 0 2\r\n12\r\nVALUE k 7 7\r\n<world!\r\nEND\r\n"
    );

    assert_eq!(ask(&mut c, b"delete n\r\n", "\r\n").await, "DELETED\r\n");
    assert!(!cache.holds(0, "n", "12").await && !cache.holds(1, "n", "12").await, "deleted on both");
    assert_eq!(ask(&mut c, b"delete n\r\n", "\r\n").await, "NOT_FOUND\r\n");

    // noreply: nothing comes back, yet the write is done before the next command.
    let quiet = ask(&mut c, b"set q 0 0 1 noreply\r\nx\r\ndelete nothing noreply\r\nget q\r\n", "END\r\n").await;
    assert_eq!(quiet, "VALUE q 0 1\r\nx\r\nEND\r\n");
    assert!(cache.holds(1, "q", "x").await);

    assert!(ask(&mut c, b"version\r\n", "\r\n").await.starts_with("VERSION 1."));
    assert!(ask(&mut c, b"stats\r\n", "END\r\n").await.starts_with("STAT pid "));
    assert_eq!(ask(&mut c, b"stats reset\r\n", "\r\n").await, "RESET\r\n");
    assert_eq!(ask(&mut c, b"flush_all\r\n", "\r\n").await, "OK\r\n");
    assert!(!cache.holds(0, "k", "<world!").await && !cache.holds(1, "k", "<world!").await, "flushed on both");
    cache.runtime.stop_all().await;
}

#[tokio::test]
async fn meta_commands_and_quiet_mode() {
    let cache = Cache::start("meta").await;
    let mut c = cache.connect().await;

    assert_eq!(ask(&mut c, b"ms m 2 F5 T100\r\nhi\r\n", "\r\n").await, "HD\r\n");
    assert!(cache.holds(0, "m", "hi").await && cache.holds(1, "m", "hi").await);
    let got = ask(&mut c, b"mg m v f t\r\n", "hi\r\n").await;
    assert!(got.starts_with("VA 2 f5 t") && got.ends_with("\r\nhi\r\n"), "{got:?}");
    assert_eq!(ask(&mut c, b"mg nothing v\r\n", "\r\n").await, "EN\r\n");

    // Compare-and-set with the CAS value of the node answers come from.
    let got = ask(&mut c, b"mg m c\r\n", "\r\n").await;
    let cas = got.trim_end().strip_prefix("HD c").expect("cas token");
    let swap = format!("ms m 3 C{cas}\r\nnew\r\n");
    assert_eq!(ask(&mut c, swap.as_bytes(), "\r\n").await, "HD\r\n");
    assert!(cache.holds(1, "m", "new").await, "the swap is copied to the other node");
    assert_eq!(ask(&mut c, swap.as_bytes(), "\r\n").await, "EX\r\n");

    assert_eq!(ask(&mut c, b"set c 0 0 1\r\n1\r\nma c v\r\n", "VA 1\r\n2\r\n").await, "STORED\r\nVA 1\r\n2\r\n");
    assert!(cache.holds(1, "c", "2").await);
    assert_eq!(ask(&mut c, b"md m\r\n", "\r\n").await, "HD\r\n");
    assert_eq!(ask(&mut c, b"md m\r\n", "\r\n").await, "NF\r\n");

    // Quiet mode hides what memcached hides (a miss of mg, a success of ms/md/ma), and mn
    // marks the end of a pipeline.
    let pipeline = b"mg nothing v q\r\nms x 1 q\r\ny\r\nma c q\r\nmd c q\r\nmd c q\r\nmg x v q\r\nmn\r\n";
    assert_eq!(ask(&mut c, pipeline, "MN\r\n").await, "NF\r\nVA 1\r\ny\r\nMN\r\n");
    cache.runtime.stop_all().await;
}

#[tokio::test]
async fn refused_and_limited_commands_answer_as_on_aws() {
    let cache = Cache::start("limits").await;
    let mut c = cache.connect().await;
    assert!(ask(&mut c, b"flush_all 10\r\n", "\r\n").await.starts_with("CLIENT_ERROR "));
    for refused in [
        "stats slabs",
        "stats items",
        "verbosity 1",
        "lru_crawler metadump all",
        "lru mode flat",
        "watch",
        "me k",
        "slabs automove 1",
        "shutdown",
        "bogus",
    ] {
        assert_eq!(ask(&mut c, format!("{refused}\r\n").as_bytes(), "\r\n").await, "ERROR\r\n", "{refused}");
    }
    let long_get = format!("get {}\r\n", vec!["k".repeat(200); 90].join(" "));
    assert_eq!(ask(&mut c, long_get.as_bytes(), "\r\n").await, "CLIENT_ERROR line too long\r\n");

    // Values over memcached's 1 MiB item size: the node's own answer, the connection goes on.
    for size in [1024 * 1024, 3 * 1024 * 1024] {
        let big = [format!("set big 0 0 {size}\r\n").into_bytes(), vec![b'a'; size], b"\r\n".to_vec()].concat();
        assert_eq!(ask(&mut c, &big, "\r\n").await, "SERVER_ERROR object too large for cache\r\n");
    }
    // As memcached: the block ends two bytes in, so the `\n` left is an (empty) command.
    assert_eq!(ask(&mut c, b"set k 0 0 2\r\nabc\r\n", "\nERROR\r\n").await, "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
    assert_eq!(
        ask(&mut c, b"set k 0 zero 1\r\nx\r\n", "ERROR\r\n").await,
        "CLIENT_ERROR bad command line format\r\nERROR\r\n"
    );
    // A cas line short of its CAS value, with noreply: refused silently, never a panic.
    assert!(ask(&mut c, b"cas k 0 0 1 noreply\r\nversion\r\n", "\r\n").await.starts_with("VERSION "));

    // A line that never ends is not buffered forever.
    // (The endpoint may close before all of it is written.)
    let _ = c.write_all(&vec![b'x'; 70 * 1024]).await;
    let _ = c.flush().await;
    assert_eq!(until_closed(&mut c).await, "", "an endless line is cut off");
    cache.runtime.stop_all().await;
}

#[tokio::test]
async fn plaintext_and_binary_protocol_clients_are_closed() {
    let cache = Cache::start("plain").await;
    let mut plain = TcpStream::connect(addr(cache.endpoint.port())).await.expect("connect");
    plain.write_all(b"version\r\n").await.expect("write");
    // At most a TLS alert, never an answer.
    assert!(!until_closed(&mut plain).await.contains("VERSION"), "a plaintext client is refused");

    let mut binary = cache.connect().await;
    // A binary protocol "version" request: magic 0x80, opcode 0x0b, 24-byte header.
    let mut header = [0u8; 24];
    header[..2].copy_from_slice(&[0x80, 0x0b]);
    binary.write_all(&header).await.expect("write");
    binary.flush().await.expect("flush");
    assert_eq!(until_closed(&mut binary).await, "", "a binary protocol client is refused");

    // The port is the endpoint's: another one cannot take it.
    let taken = MemcachedEndpoint::start(
        Ipv4Addr::LOCALHOST,
        cache.endpoint.port(),
        {
            let ca = CertificateAuthority::load_or_create(&cache.dir.path().join("tls")).expect("CA");
            ca.server_config().expect("server TLS")
        },
        Arc::default(),
    )
    .await;
    assert!(matches!(taken, Err(NodeError::PortInUse { .. })));
    cache.runtime.stop_all().await;
}

#[tokio::test]
async fn a_killed_node_is_survived_and_comes_back_refilled_from_its_mirror() {
    let mut cache = Cache::start("killed").await;
    let mut c = cache.connect().await;
    assert_eq!(ask(&mut c, b"set k 0 0 5\r\nhello\r\n", "\r\n").await, "STORED\r\n");

    cache.runtime.kill(&cache.specs[0].key).await.expect("kill");
    assert_eq!(ask(&mut c, b"get k\r\n", "END\r\n").await, "VALUE k 0 5\r\nhello\r\nEND\r\n");
    assert_eq!(ask(&mut c, b"set during 0 0 4\r\ndown\r\n", "\r\n").await, "STORED\r\n");
    assert_eq!(
        ask(&mut c, b"get during k\r\n", "END\r\n").await,
        "VALUE during 0 4\r\ndown\r\nVALUE k 0 5\r\nhello\r\nEND\r\n"
    );

    // Restarted in place, empty: used again, and filled from the other node with what it
    // held and what it missed, so that the other node's zone can go next.
    let mut spec = cache.specs[0].clone();
    spec.port = cache.ports[0];
    cache.runtime.start(spec).await.expect("restart in place");
    cache.until_node_serves(&mut c, 0).await;
    let deadline = Instant::now() + TIMEOUT;
    while !(cache.holds(0, "k", "hello").await && cache.holds(0, "during", "down").await) {
        assert!(Instant::now() < deadline, "the restarted node was not refilled from its mirror");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        ask(&mut c, b"get k during\r\n", "END\r\n").await,
        "VALUE k 0 5\r\nhello\r\nVALUE during 0 4\r\ndown\r\nEND\r\n"
    );
    assert_eq!(ask(&mut c, b"mg k v\r\n", "\r\nhello\r\n").await, "VA 5\r\nhello\r\n");

    // A CAS value from the node that still has the key: the swap runs there, then is copied.
    let cas = cas_of(&ask(&mut c, b"gets k\r\n", "END\r\n").await);
    let swap = format!("cas k 0 0 3 {cas}\r\nnew\r\n");
    assert_eq!(ask(&mut c, swap.as_bytes(), "\r\n").await, "STORED\r\n");
    assert_eq!(ask(&mut c, b"get k\r\n", "END\r\n").await, "VALUE k 0 3\r\nnew\r\nEND\r\n");
    // Both mirrors hold it: at once, or once a mirror the watch took out for a refill is back.
    let deadline = Instant::now() + TIMEOUT;
    while !(cache.holds(0, "k", "new").await && cache.holds(1, "k", "new").await) {
        assert!(Instant::now() < deadline, "the swap did not reach both mirrors");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Replaced on another port: the endpoint follows, the client changes nothing.
    let mut spec = cache.specs[0].clone();
    spec.port = 0;
    cache.ports[0] = cache.runtime.start(spec).await.expect("restart elsewhere").port;
    cache.endpoint.point_at(vec![addr(cache.ports[0]), addr(cache.ports[1])]);
    assert_eq!(ask(&mut c, b"set moved 0 0 2\r\nok\r\n", "\r\n").await, "STORED\r\n");
    assert!(cache.holds(0, "moved", "ok").await && cache.holds(1, "moved", "ok").await);
    assert_eq!(ask(&mut c, b"get k\r\n", "END\r\n").await, "VALUE k 0 3\r\nnew\r\nEND\r\n");

    // The other zone down too: an error, not a hang.
    cache.runtime.stop_all().await;
    assert!(ask(&mut c, b"get k\r\n", "\r\n").await.starts_with("SERVER_ERROR "));
}

#[tokio::test]
async fn a_frozen_node_is_skipped_and_refilled_before_it_serves_again() {
    let cache = Cache::start("frozen").await;
    let mut c = cache.connect().await;
    assert_eq!(ask(&mut c, b"set k 0 0 2\r\nv1\r\n", "\r\n").await, "STORED\r\n");

    cache.runtime.pause(&cache.specs[0].key).await.expect("pause");
    let started = Instant::now();
    // A read finds the node silent first; the write after it skips the node, which misses it.
    assert_eq!(ask(&mut c, b"get k\r\n", "END\r\n").await, "VALUE k 0 2\r\nv1\r\nEND\r\n");
    assert_eq!(ask(&mut c, b"set k 0 0 2\r\nv2\r\n", "\r\n").await, "STORED\r\n");
    assert_eq!(ask(&mut c, b"get k\r\n", "END\r\n").await, "VALUE k 0 2\r\nv2\r\nEND\r\n");
    let mut other = cache.connect().await;
    assert_eq!(ask(&mut other, b"get k\r\n", "END\r\n").await, "VALUE k 0 2\r\nv2\r\nEND\r\n");
    assert!(started.elapsed() < Duration::from_secs(6), "answers took {:?}", started.elapsed());

    // Thawed, it missed v2: it must never answer v1 again, and holds v2 once refilled.
    cache.runtime.resume(&cache.specs[0].key).await.expect("resume");
    cache.until_node_serves(&mut c, 0).await;
    assert!(!cache.holds(0, "k", "v1").await, "the thawed node kept stale data");
    assert!(cache.holds(0, "k", "v2").await, "the thawed node was refilled from its mirror");
    assert_eq!(ask(&mut c, b"get k\r\n", "END\r\n").await, "VALUE k 0 2\r\nv2\r\nEND\r\n");
    cache.runtime.stop_all().await;
}

#[tokio::test]
async fn dump_and_load_carry_every_item_with_its_flags_and_ttl() {
    let cache = Cache::start("dump").await;
    let mut c = cache.connect().await;
    let far = unix_now() + 40 * 24 * 3600; // beyond 30 days: memcached takes it as a unix time
    let writes = format!(
        "set plain 0 0 5\r\nhello\r\nset flagged 42 1000 3\r\nabc\r\nset a:b/c%d 1 0 1\r\nx\r\nset far 0 {far} 3\r\nfar\r\nset empty 9 0 0\r\n\r\n"
    );
    assert_eq!(ask(&mut c, writes.as_bytes(), "STORED\r\n".repeat(5).as_str()).await, "STORED\r\n".repeat(5));

    let snapshot = dump(addr(cache.ports[1])).await.expect("dump");
    assert!(snapshot.starts_with(b"elasticache-local memcached dump 1\r\n") && snapshot.ends_with(b"END\r\n"));

    let fresh = cache.runtime.start(node_spec(cache.dir.path(), "dump", "0003")).await.expect("fresh node");
    assert_eq!(load(addr(fresh.port), &snapshot).await.expect("load"), 5);
    // Read up to the MN that follows, so the value is there too.
    let get = |key: &str| {
        let (port, request) = (fresh.port, format!("mg {key} v f t\r\nmn\r\n"));
        async move { text(&memcached(port, request.as_bytes(), b"MN\r\n").await) }
    };
    let ttl = |answer: &str| -> i64 {
        let token = answer.split_whitespace().find_map(|w| w.strip_prefix('t')).expect("t token");
        token.parse().expect("ttl")
    };
    let plain = get("plain").await;
    assert!(plain.starts_with("VA 5 f0 t-1\r\nhello"), "{plain:?}");
    let flagged = get("flagged").await;
    assert!(flagged.starts_with("VA 3 f42 ") && flagged.ends_with("\r\nabc\r\nMN\r\n"), "{flagged:?}");
    assert!((990..=1000).contains(&ttl(&flagged)), "{flagged:?}");
    let odd = get("a:b/c%d").await;
    assert!(odd.starts_with("VA 1 f1 t-1\r\nx"), "{odd:?}");
    let far = get("far").await;
    assert!((40 * 24 * 3600 - 10..=40 * 24 * 3600).contains(&ttl(&far)), "{far:?}");
    assert!(get("empty").await.starts_with("VA 0 f9 t-1\r\n"));

    // Items expired since the dump are skipped; a damaged dump is refused.
    let expired = b"elasticache-local memcached dump 1\r\ngone 0 1 1\r\nx\r\nkept 0 0 1\r\ny\r\nEND\r\n";
    assert_eq!(load(addr(fresh.port), expired).await.expect("load"), 1);
    assert!(text(&memcached(fresh.port, b"get gone kept\r\n", b"END\r\n").await).starts_with("VALUE kept 0 1\r\ny"));
    assert!(load(addr(fresh.port), &snapshot[..snapshot.len() - 5]).await.is_err(), "a truncated dump loads");
    cache.runtime.stop_all().await;
}

#[tokio::test]
async fn at_its_ecpu_maximum_the_endpoint_slows_commands_down_and_refuses_none() {
    let cache = Cache::start("throttled").await;
    // 1,000 ECPU/s, a second of them at once: 2,500 one-ECPU commands take 1.5 s at least.
    cache.ecpu.set(Some(1_000));
    let mut c = cache.connect().await;
    let started = Instant::now();
    for i in 0..2_500 {
        let request = format!("set k{i} 0 0 1\r\nv\r\n");
        assert_eq!(ask(&mut c, request.as_bytes(), "\r\n").await, "STORED\r\n");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1_400), "not throttled: {elapsed:?}");
    cache.runtime.stop_all().await;
}
