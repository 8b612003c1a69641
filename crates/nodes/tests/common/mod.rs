//! Helpers shared by the integration tests: specs on temporary directories, raw TCP
//! clients for both engines, and polling without fixed sleeps.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use nodes::{EngineKind, NodeKey, NodeSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn spec(dir: &Path, engine: EngineKind, cluster: &str) -> NodeSpec {
    NodeSpec {
        key: NodeKey::new("us-east-1/000000000000", cluster, "0001"),
        engine,
        address: Ipv4Addr::LOCALHOST,
        port: 0,
        // A space in the path: config rendering must quote it.
        dir: dir.join("state dir").join(cluster).join("0001"),
        max_memory_bytes: 64 * 1024 * 1024,
        parameters: Vec::new(),
        directives: Vec::new(),
        ..NodeSpec::default()
    }
}

pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// One redis command over a fresh raw TCP connection; the reply rendered as text
/// (`+OK` → `OK`, bulk → its content, `-ERR x` → `-ERR x`, arrays → items joined by `\n`).
pub async fn redis(port: u16, args: &[&str]) -> String {
    let stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await.expect("connect to redis");
    let mut stream = BufReader::new(stream);
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).await.expect("write");
    let reply = nodes::resp::read_reply(&mut stream).await.expect("redis reply");
    render(&reply)
}

fn render(reply: &nodes::resp::Reply) -> String {
    use nodes::resp::Reply;
    match reply {
        Reply::Simple(s) => s.clone(),
        Reply::Error(e) => format!("-{e}"),
        Reply::Integer(i) => i.to_string(),
        Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        Reply::Bulk(None) | Reply::Array(None) => "(nil)".into(),
        Reply::Array(Some(items)) => items.iter().map(render).collect::<Vec<_>>().join("\n"),
    }
}

/// Sends raw bytes to a memcached-speaking port and reads until the reply ends with `end`.
pub async fn memcached(port: u16, request: &[u8], end: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await.expect("connect");
    exchange(&mut stream, request, end).await
}

pub async fn exchange(stream: &mut TcpStream, request: &[u8], end: &[u8]) -> Vec<u8> {
    stream.write_all(request).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        while !reply.ends_with(end) {
            let n = stream.read_buf(&mut reply).await.expect("read");
            assert!(n > 0, "connection closed after {:?}", String::from_utf8_lossy(&reply));
        }
    })
    .await
    .expect("reply in time");
    reply
}

/// Has the redis node on `port` write its AOF afresh, as when the AOF is turned on: it is
/// then "writing its first AOF" (and refuses `SHUTDOWN`) for `micros_per_key` a key.
pub async fn begin_first_aof(port: u16, micros_per_key: u32) {
    let delay = micros_per_key.to_string();
    assert_eq!(redis(port, &["CONFIG", "SET", "rdb-key-save-delay", &delay]).await, "OK");
    assert_eq!(redis(port, &["CONFIG", "SET", "appendonly", "no"]).await, "OK");
    assert_eq!(redis(port, &["CONFIG", "SET", "appendonly", "yes"]).await, "OK");
}

/// Polls `condition` every few milliseconds until it holds; panics after [`TIMEOUT`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn accepts(port: u16) -> bool {
    TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await.is_ok()
}

/// Whether any process of the process group `pgid` still runs (a node and what it forked).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok()).any(|pid| {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        // After the command's closing parenthesis: state, parent pid, process group.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        fields.get(2).is_some_and(|group| group.parse() == Ok(pgid)) && process_alive(pid)
    })
}

/// Whether any thread of the process still runs (a zombie leader may have live siblings).
pub fn process_alive(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X")
        })
    })
}
