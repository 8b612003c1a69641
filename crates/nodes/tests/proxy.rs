//! The endpoint proxy in front of real redis-server nodes: target choice, failover
//! (closing connections to a removed target), no target, and release of its port.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use common::*;
use nodes::resp::{self, Reply};
use nodes::{Balance, EndpointProxy, EngineKind, Engines, NodeError, Runtime};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

type Conn = BufReader<TcpStream>;

/// Two redis nodes; returns their ports.
async fn two_nodes(runtime: &Runtime, dir: &Path, group: &str) -> (u16, u16) {
    let mut ports = Vec::new();
    for node in ["0001", "0002"] {
        let mut spec = spec(dir, EngineKind::Redis, group);
        spec.key.node_id = node.into();
        spec.dir = dir.join(group).join(node);
        ports.push(runtime.start(spec).await.expect("start redis").port);
    }
    (ports[0], ports[1])
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn connect(proxy: &EndpointProxy) -> Conn {
    BufReader::new(TcpStream::connect(addr(proxy.port())).await.expect("connect to proxy"))
}

async fn ask(conn: &mut Conn, args: &[&str]) -> Reply {
    tokio::time::timeout(TIMEOUT, resp::command(conn, args)).await.expect("reply in time").expect("reply")
}

/// The port of the redis node behind a proxied connection.
async fn node_port(conn: &mut Conn) -> u16 {
    match ask(conn, &["CONFIG", "GET", "port"]).await {
        Reply::Array(Some(items)) => {
            items.get(1).and_then(Reply::as_text).and_then(|p| p.parse().ok()).expect("port in CONFIG GET reply")
        }
        other => panic!("unexpected CONFIG GET reply {other:?}"),
    }
}

/// Whether the proxy closed the connection (EOF or reset), waiting up to [`TIMEOUT`].
async fn closed(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(TIMEOUT, conn.get_mut().read(&mut buf)).await.expect("closed in time");
    matches!(read, Ok(0) | Err(_))
}

#[tokio::test]
async fn first_balance_reaches_the_first_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (a, b) = two_nodes(&runtime, dir.path(), "first").await;
    let (_tx, rx) = watch::channel(vec![addr(a), addr(b)]);
    let proxy = EndpointProxy::start(Ipv4Addr::LOCALHOST, 0, rx, Balance::First).await.expect("proxy");
    assert_ne!(proxy.port(), 0);
    for _ in 0..3 {
        let mut conn = connect(&proxy).await;
        assert_eq!(node_port(&mut conn).await, a);
    }
    let mut conn = connect(&proxy).await;
    assert_eq!(ask(&mut conn, &["SET", "through", "proxy"]).await, Reply::Simple("OK".into()));
    assert_eq!(redis(a, &["GET", "through"]).await, "proxy");
    runtime.stop_all().await;
}

#[tokio::test]
async fn round_robin_spreads_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (a, b) = two_nodes(&runtime, dir.path(), "rr").await;
    let (_tx, rx) = watch::channel(vec![addr(a), addr(b)]);
    let proxy = EndpointProxy::start(Ipv4Addr::LOCALHOST, 0, rx, Balance::RoundRobin).await.expect("proxy");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut conn = connect(&proxy).await;
        seen.push(node_port(&mut conn).await);
    }
    seen.sort_unstable();
    let mut expected = vec![a, b];
    expected.sort_unstable();
    assert_eq!(seen, expected);
    runtime.stop_all().await;
}

#[tokio::test]
async fn switching_targets_closes_connections_to_the_removed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (a, b) = two_nodes(&runtime, dir.path(), "switch").await;

    // Primary endpoint: a failover from a to b.
    let (tx, rx) = watch::channel(vec![addr(a)]);
    let primary = EndpointProxy::start(Ipv4Addr::LOCALHOST, 0, rx, Balance::First).await.expect("proxy");
    let mut old = connect(&primary).await;
    assert_eq!(node_port(&mut old).await, a);
    tx.send_replace(vec![addr(b)]);
    assert!(closed(&mut old).await, "connection to the old primary stays open");
    let mut new = connect(&primary).await;
    assert_eq!(node_port(&mut new).await, b);

    // Reader endpoint: connections to a target that stays listed are left alone.
    let (tx, rx) = watch::channel(vec![addr(a), addr(b)]);
    let reader = EndpointProxy::start(Ipv4Addr::LOCALHOST, 0, rx, Balance::RoundRobin).await.expect("proxy");
    let mut to_a = connect(&reader).await;
    let mut to_b = connect(&reader).await;
    let (port_1, port_2) = (node_port(&mut to_a).await, node_port(&mut to_b).await);
    let (to_a, to_b) = if port_1 == a {
        assert_eq!(port_2, b);
        (&mut to_a, &mut to_b)
    } else {
        assert_eq!((port_1, port_2), (b, a));
        (&mut to_b, &mut to_a)
    };
    tx.send_replace(vec![addr(b)]);
    assert!(closed(to_a).await, "connection to the removed reader stays open");
    assert_eq!(ask(to_b, &["PING"]).await, Reply::Simple("PONG".into()));
    for _ in 0..2 {
        let mut conn = connect(&reader).await;
        assert_eq!(node_port(&mut conn).await, b);
    }
    runtime.stop_all().await;
}

#[tokio::test]
async fn no_reachable_target_closes_the_client() {
    let (tx, rx) = watch::channel(Vec::new());
    let proxy = EndpointProxy::start(Ipv4Addr::LOCALHOST, 0, rx, Balance::First).await.expect("proxy");
    let mut conn = connect(&proxy).await;
    assert!(closed(&mut conn).await, "connection without a target stays open");

    // A listed target nothing listens on: the connect fails, the client is closed too.
    let vacant = std::net::TcpListener::bind(addr(0)).expect("bind");
    let vacant_port = vacant.local_addr().expect("local addr").port();
    drop(vacant);
    tx.send_replace(vec![addr(vacant_port)]);
    let mut conn = connect(&proxy).await;
    assert!(closed(&mut conn).await, "connection to an unreachable target stays open");
}

#[tokio::test]
async fn dropping_the_proxy_frees_its_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let (a, _) = two_nodes(&runtime, dir.path(), "drop").await;
    let (_tx, rx) = watch::channel(vec![addr(a)]);
    let proxy = EndpointProxy::start(Ipv4Addr::LOCALHOST, 0, rx.clone(), Balance::First).await.expect("proxy");
    let port = proxy.port();

    // A given port must be used as is, and one already taken is refused.
    let taken = EndpointProxy::start(Ipv4Addr::LOCALHOST, port, rx.clone(), Balance::First).await;
    assert!(matches!(taken, Err(NodeError::PortInUse { port: p, .. }) if p == port), "{:?}", taken.err());

    let mut conn = connect(&proxy).await;
    assert_eq!(node_port(&mut conn).await, a);
    drop(proxy);
    assert!(closed(&mut conn).await, "proxied connection outlives the proxy");
    eventually("port is free again", || async move { std::net::TcpListener::bind(addr(port)).is_ok() }).await;

    // Recreated on the same port (a restarted emulator keeps its endpoints); shutdown()
    // returns only once the port is free.
    let again = EndpointProxy::start(Ipv4Addr::LOCALHOST, port, rx, Balance::First).await.expect("same port");
    assert_eq!(again.port(), port);
    let mut conn = connect(&again).await;
    assert_eq!(node_port(&mut conn).await, a);
    again.shutdown().await;
    assert!(std::net::TcpListener::bind(addr(port)).is_ok(), "port still bound after shutdown");
    assert!(closed(&mut conn).await, "proxied connection outlives shutdown");
    runtime.stop_all().await;
}
