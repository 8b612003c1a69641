//! Slow and silent clients cannot starve the others: timeouts on reading a request, and a
//! bound on open connections that closes the oldest idle one first.

use std::path::Path;
use std::time::Duration;

use e2e::half_open::HalfOpen;
use e2e::{TestServer, raw_get};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const HALF_OPEN: usize = 20_000;
/// Bounds a wait for the server to close or answer; the server's own timeouts are far shorter.
const PATIENCE: Duration = Duration::from_secs(15);

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Reads until the server closes the connection, and returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server kept the connection open past {PATIENCE:?}");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_the_api_answer_while_twenty_thousand_half_open_connections_are_held() {
    let server = TestServer::start().await;
    let helper = Path::new(env!("CARGO_BIN_EXE_hold_connections"));
    let half_open = HalfOpen::hold(helper, server.addr(), HALF_OPEN).await.unwrap();
    assert_eq!(half_open.held, HALF_OPEN, "every half-open connection was accepted");

    // Latency is the bench's business (`bench slow-clients`); here, that they answer at all.
    for _ in 0..20 {
        let (status, body) = raw_get(server.addr(), "/_emulator/health").await.unwrap();
        assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    }
    server.client().describe_cache_clusters().send().await.unwrap();

    let (_, metrics) = raw_get(server.addr(), "/metrics").await.unwrap();
    // Most were closed to make room, the rest by the header read timeout on a slow runner.
    let max = server::connections::Limits::default().max_connections as u64;
    assert!(metric(&metrics, "elasticache_local_http_connections") <= max);
    drop(half_open);
}

#[tokio::test]
async fn the_oldest_idle_connection_makes_room_for_a_new_one() {
    let server = TestServer::start_with(|config| config.connections.max_connections = 2).await;
    let mut oldest = TcpStream::connect(server.addr()).await.unwrap();
    oldest.write_all(b"GET /_emulator/health HTTP/1.1\r\n").await.unwrap();
    let younger = TcpStream::connect(server.addr()).await.unwrap();
    // The server accepts in the order the kernel queued the connections: the health check
    // below comes third, into a full house.

    let (status, _) = raw_get(server.addr(), "/_emulator/health").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(until_closed(&mut oldest).await, "", "the oldest idle connection was closed without an answer");
    let mut buffer = [0u8; 1];
    let still_open = younger.try_read(&mut buffer).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(still_open, "only the oldest connection makes room");
}

#[tokio::test]
async fn headers_that_never_finish_close_the_connection() {
    let server =
        TestServer::start_with(|config| config.connections.header_read_timeout = Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: elasticache\r\n").await.unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_an_aws_shaped_timeout() {
    let server =
        TestServer::start_with(|config| config.connections.body_read_timeout = Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let head = "POST / HTTP/1.1\r\nHost: elasticache\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                Content-Length: 100\r\nConnection: close\r\n\r\nAction=Describe";
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
}
