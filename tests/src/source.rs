//! [`SourceRedis`]: a plain redis-server the test starts on loopback, standing for a
//! customer's self-hosted server (the source of an online migration).

use std::process::{Child, Command, Stdio};

use crate::{SETTLE, poll_until};

/// A redis-server process on 127.0.0.1, stopped when dropped.
pub struct SourceRedis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SourceRedis {
    /// Starts one with `extra` arguments (`--requirepass …`, say) and waits until it answers.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = nodes::ports::free_port(std::net::Ipv4Addr::LOCALHOST).expect("a free port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &dir.path().display().to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        poll_until(&format!("the source redis-server on {port}"), SETTLE, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(drop).map_err(|e| e.to_string())
        })
        .await;
        Self { port, child, _dir: dir }
    }

    /// A connection through the `redis` crate.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).expect("client");
        client.get_multiplexed_async_connection().await.expect("connection to the source")
    }
}

impl SourceRedis {
    /// Writes `key:<i>` = `<i>` for every i below `keys`, a thousand per round trip.
    pub async fn seed(&self, keys: usize) -> redis::RedisResult<()> {
        let mut con = self.connection().await;
        for batch in (0..keys).step_by(1_000) {
            let mut pipe = redis::pipe();
            for i in batch..(batch + 1_000).min(keys) {
                pipe.set(format!("key:{i}"), i).ignore();
            }
            let () = pipe.query_async(&mut con).await?;
        }
        Ok(())
    }
}

impl Drop for SourceRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
