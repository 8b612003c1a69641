//! [`SourceRedis`]: a plain redis-server (or valkey-server) the test starts on loopback,
//! standing for a customer's self-hosted server (the source of an online migration);
//! [`SourceCluster`]: a self-hosted Redis Cluster of such servers.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
        Self::start_binary("redis-server", extra).await
    }

    /// Like [`SourceRedis::start`], with a self-managed valkey-server instead.
    pub async fn start_valkey(extra: &[&str]) -> Self {
        Self::start_binary("valkey-server", extra).await
    }

    async fn start_binary(binary: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = nodes::ports::free_port(std::net::Ipv4Addr::LOCALHOST).expect("a free port");
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &dir.path().display().to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} starts: {e}"));
        // Owned before the wait: a source that never answers is killed with the test.
        let source = Self { port, child, _dir: dir };
        poll_until(&format!("the source {binary} on {port}"), SETTLE, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(drop).map_err(|e| e.to_string())
        })
        .await;
        source
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

impl SourceRedis {
    /// A client writing `live:<n>` = `<n>` (n = 0, 1, …) to the source, one acknowledged
    /// write after the other, until [`SourceWriter::stop`].
    pub async fn writer(&self) -> SourceWriter {
        SourceWriter::spawn(self.connection().await)
    }
}

/// A writer on the source ([`SourceRedis::writer`]).
pub struct SourceWriter {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<redis::RedisResult<usize>>,
}

impl SourceWriter {
    /// Writes `live:<n>` = `<n>` through `con`, one acknowledged write after the other.
    fn spawn<C: redis::aio::ConnectionLike + Send + 'static>(mut con: C) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut written = 0;
                while !stop.load(Ordering::SeqCst) {
                    let () =
                        redis::cmd("SET").arg(format!("live:{written}")).arg(written).query_async(&mut con).await?;
                    written += 1;
                }
                Ok(written)
            }
        });
        Self { stop, task }
    }

    /// Stops it; how many writes the source acknowledged (`live:0` … `live:<n-1>`), or the
    /// error that ended it.
    pub async fn stop(self) -> redis::RedisResult<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?
    }
}

/// A Redis Cluster of plain redis-server primaries on 127.0.0.1 (no replicas), the slots
/// spread evenly over them; stopped when dropped.
pub struct SourceCluster {
    pub nodes: Vec<SourceRedis>,
}

impl SourceCluster {
    /// Starts `shards` cluster-enabled servers, has them meet, gives each its share of the
    /// slots and waits until every one reports `cluster_state:ok`.
    pub async fn start(shards: usize) -> Self {
        let mut nodes = Vec::new();
        for _ in 0..shards {
            // A bus port of its own: port + 10000 may be taken or past 65535.
            let bus = nodes::ports::free_port(std::net::Ipv4Addr::LOCALHOST).expect("a free port");
            let bus = bus.to_string();
            let cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", &bus];
            // A full sync at once: redis-server otherwise waits 5 s for more replicas.
            let args = [&cluster[..], &["--repl-diskless-sync-delay", "0"]].concat();
            nodes.push((SourceRedis::start(&args).await, bus));
        }
        let mut first = nodes[0].0.connection().await;
        for (node, bus) in &nodes[1..] {
            let () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port)
                .arg(bus)
                .query_async(&mut first)
                .await
                .expect("CLUSTER MEET");
        }
        for (i, (node, _)) in nodes.iter().enumerate() {
            let (from, to) = (i * 16384 / shards, (i + 1) * 16384 / shards - 1);
            let mut con = node.connection().await;
            let () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(from)
                .arg(to)
                .query_async(&mut con)
                .await
                .expect("ADDSLOTSRANGE");
        }
        let cluster = Self { nodes: nodes.into_iter().map(|(node, _)| node).collect() };
        for node in &cluster.nodes {
            poll_until(&format!("the source cluster seen from {}", node.port), SETTLE, || async {
                let mut con = node.connection().await;
                let info: String =
                    redis::cmd("CLUSTER").arg("INFO").query_async(&mut con).await.map_err(|e| e.to_string())?;
                let known = format!("cluster_known_nodes:{shards}");
                if info.contains("cluster_state:ok") && info.contains(&known) { Ok(()) } else { Err(info) }
            })
            .await;
        }
        cluster
    }

    /// The port of its first node: the one endpoint a migration is given.
    pub fn port(&self) -> u16 {
        self.nodes[0].port
    }

    /// A cluster-aware connection, as the customer's applications have.
    pub async fn connection(&self) -> redis::cluster_async::ClusterConnection {
        crate::cluster::cluster_connection(self.port()).await.expect("cluster connection to the source")
    }

    /// A client writing `live:<n>` = `<n>` (n = 0, 1, …) through a cluster connection, one
    /// acknowledged write after the other (over every shard), until [`SourceWriter::stop`].
    pub async fn writer(&self) -> SourceWriter {
        SourceWriter::spawn(self.connection().await)
    }
}

impl Drop for SourceRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
