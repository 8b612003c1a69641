//! The Auto Discovery configuration endpoint against a real memcached node.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::*;
use nodes::{ClusterConfig, ConfigEndpoint, EngineKind, Engines, Runtime};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

#[tokio::test]
async fn answers_config_get_cluster_and_proxies_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Engines::detect());
    let node = runtime.start(spec(dir.path(), EngineKind::Memcached, "disco")).await.expect("start");
    let other = (String::from("disco.0002.use1.cache.amazonaws.com"), Some(Ipv4Addr::new(127, 0, 0, 9)), 11211);
    let (tx, rx) = watch::channel(ClusterConfig {
        version: 1,
        nodes: vec![
            ("disco.0001.use1.cache.amazonaws.com".into(), Some(Ipv4Addr::LOCALHOST), node.port),
            other.clone(),
        ],
    });
    let endpoint = ConfigEndpoint::start(Ipv4Addr::LOCALHOST, 0, rx, None).await.expect("endpoint");

    let body = format!(
        "1\ndisco.0001.use1.cache.amazonaws.com|127.0.0.1|{} disco.0002.use1.cache.amazonaws.com|127.0.0.9|11211\n",
        node.port
    );
    let expected = format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len());
    let mut conn = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, endpoint.port()))).await.expect("connect");
    assert_eq!(exchange(&mut conn, b"config get cluster\r\n", b"END\r\n").await, expected.as_bytes());

    // A membership change shows on the same connection at the next request.
    tx.send_modify(|config| {
        config.version = 2;
        config.nodes.pop();
    });
    let body = format!("2\ndisco.0001.use1.cache.amazonaws.com|127.0.0.1|{}\n", node.port);
    let expected = format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len());
    assert_eq!(exchange(&mut conn, b"config get cluster\r\n", b"END\r\n").await, expected.as_bytes());

    // From the first other command on, the connection is the node's.
    assert_eq!(exchange(&mut conn, b"set k 0 0 2\r\nhi\r\n", b"\r\n").await, b"STORED\r\n");
    assert_eq!(exchange(&mut conn, b"get k\r\n", b"END\r\n").await, b"VALUE k 0 2\r\nhi\r\nEND\r\n");
    assert_eq!(memcached(node.port, b"get k\r\n", b"END\r\n").await, b"VALUE k 0 2\r\nhi\r\nEND\r\n");

    // A command pipelined behind the config request is proxied too, in order.
    let mut conn2 =
        TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, endpoint.port()))).await.expect("connect");
    let reply = exchange(&mut conn2, b"config get cluster\r\nget k\r\n", b"hi\r\nEND\r\n").await;
    assert!(reply.starts_with(b"CONFIG cluster 0 "));

    // Dropping the endpoint closes its connections and its listener.
    let port = endpoint.port();
    drop(endpoint);
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(TIMEOUT, conn.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    eventually("listener is closed", || async move { !accepts(port).await }).await;
    runtime.stop_all().await;
}
