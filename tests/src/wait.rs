//! Polling ([`poll_until`] bounded by [`SETTLE`]) and probes of the node processes the server
//! starts: is a port refused, is a process alive, SIGKILL it, does redis answer.

use std::time::{Duration, Instant};

use crate::RedisClient;

/// How long anything may take to settle; node starts, failovers and BGSAVEs take milliseconds
/// to a few seconds, so this only bounds a broken run.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Polls `check` every 50 ms until it returns `Ok`, failing after `timeout`. The last
/// `Err` (a description of what was seen) is part of the panic message.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether connecting to `127.0.0.1:port` is refused (nothing listens there).
pub async fn port_refuses(port: u16) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// Polls until connecting to `127.0.0.1:port` is refused.
pub async fn wait_refuses(port: u16) {
    poll_until(&format!("port {port} refusing connections"), SETTLE, || async {
        if port_refuses(port).await { Ok(()) } else { Err("still accepting".to_string()) }
    })
    .await
}

/// Whether a process is alive (not a zombie).
pub fn process_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A real SIGKILL from outside (`kill -9 pid`); panics if `kill` fails.
pub fn kill_9(pid: u64) {
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("running kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

/// Polls until a redis node (or proxy) on `port` answers PING; returns that connection.
pub async fn wait_redis(port: u16) -> RedisClient {
    poll_until(&format!("redis on port {port} answering PING"), SETTLE, || async {
        let mut client = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
        client.ping().await.map_err(|e| e.to_string())?;
        Ok(client)
    })
    .await
}
