//! The Memcached Auto Discovery configuration endpoint of a memcached cluster.
//!
//! ElastiCache clients (the AWS ElastiCache Cluster Client, pymemcache/php-memcached with
//! auto discovery) connect to the configuration endpoint and send `config get cluster`;
//! the answer lists every node and a version that grows with each membership change.
//! Anything else sent to that endpoint reaches a node, as on AWS where the configuration
//! endpoint resolves to a node. Here the endpoint answers `config get cluster` itself and,
//! at the first other command, turns the connection into a byte-for-byte proxy to the
//! first node. For a cluster with encryption in transit, the endpoint speaks TLS only (with
//! a certificate from the emulator's CA) and reaches the node through TLS too.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::NodeError;

/// A line longer than this cannot be `config get cluster`; stop buffering and proxy.
const MAX_LINE: usize = 4096;

/// What `config get cluster` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Grows by one with every change of membership.
    pub version: u64,
    /// Host name, address (if the host has one), port — as clients should see them, in
    /// their order.
    pub nodes: Vec<(String, Option<Ipv4Addr>, u16)>,
}

impl ClusterConfig {
    /// The full reply, byte for byte as ElastiCache sends it:
    /// `CONFIG cluster 0 <len>\r\n<version>\n<host|ip|port ...>\n\r\nEND\r\n`.
    pub fn render(&self) -> Vec<u8> {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(host, ip, port)| format!("{host}|{}|{port}", ip.map(|ip| ip.to_string()).unwrap_or_default()))
            .collect();
        let body = format!("{}\n{}\n", self.version, nodes.join(" "));
        format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len()).into_bytes()
    }
}

/// TLS for the endpoint of a cluster with encryption in transit: what it serves clients
/// with, and how it reaches the nodes.
#[derive(Clone)]
pub struct EndpointTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

/// Plaintext or TLS, on either side of the endpoint.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// A running configuration endpoint; it and all its connections stop when it is dropped.
pub struct ConfigEndpoint {
    address: Ipv4Addr,
    port: u16,
    task: JoinHandle<()>,
}

impl ConfigEndpoint {
    /// Listens on `address:port` (`0` picks a free port), through TLS with `tls`, and
    /// answers from `config`, which is read at every request, so updates show at once.
    pub async fn start(
        address: Ipv4Addr,
        port: u16,
        config: watch::Receiver<ClusterConfig>,
        tls: Option<EndpointTls>,
    ) -> Result<Self, NodeError> {
        let listener = TcpListener::bind(SocketAddr::from((address, port))).await?;
        let port = listener.local_addr()?.port();
        tracing::info!(%address, port, tls = tls.is_some(), "memcached configuration endpoint listening");
        let task = tokio::spawn(serve(listener, config, tls));
        Ok(Self { address, port, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Stops listening and closes every connection; returns once they are closed.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for ConfigEndpoint {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, config: watch::Receiver<ClusterConfig>, tls: Option<EndpointTls>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(accept(stream, config.clone(), tls.clone()));
                }
                Err(error) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(%error, "configuration endpoint cannot accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Completes the TLS handshake, if the endpoint speaks TLS, and serves the connection.
async fn accept(stream: TcpStream, config: watch::Receiver<ClusterConfig>, tls: Option<EndpointTls>) {
    match tls {
        None => connection(stream, config, None).await,
        Some(tls) => {
            let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls.server).accept(stream).await else { return };
            connection(stream, config, Some(tls.client)).await;
        }
    }
}

async fn connection(
    mut client: impl Stream,
    config: watch::Receiver<ClusterConfig>,
    upstream_tls: Option<Arc<rustls::ClientConfig>>,
) {
    let mut pending: Vec<u8> = Vec::with_capacity(256);
    loop {
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            if !is_config_get_cluster(&pending[..end]) {
                proxy(client, pending, &config, upstream_tls.as_ref()).await;
                return;
            }
            let reply = config.borrow().render();
            if client.write_all(&reply).await.is_err() {
                return;
            }
            pending.drain(..=end);
        }
        if pending.len() > MAX_LINE {
            proxy(client, pending, &config, upstream_tls.as_ref()).await;
            return;
        }
        match client.read_buf(&mut pending).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn upstream(
    ip: Ipv4Addr,
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Box<dyn Stream>> {
    let stream = TcpStream::connect(SocketAddr::from((ip, port))).await?;
    let _ = stream.set_nodelay(true);
    Ok(match tls {
        None => Box::new(stream),
        Some(config) => Box::new(crate::tls::connect(config, ip, stream).await?),
    })
}

fn is_config_get_cluster(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line);
    let words: Vec<&str> = line.split_whitespace().collect();
    matches!(words.as_slice(), [a, b, c]
        if a.eq_ignore_ascii_case("config") && b.eq_ignore_ascii_case("get") && c.eq_ignore_ascii_case("cluster"))
}

/// Forwards what was already read, then everything else both ways, to the first node
/// (through TLS with `tls`), on loopback where every node listens whatever it is advertised as.
async fn proxy(
    mut client: impl Stream,
    already_read: Vec<u8>,
    config: &watch::Receiver<ClusterConfig>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) {
    let target = config.borrow().nodes.first().map(|(_, _, port)| (Ipv4Addr::LOCALHOST, *port));
    let Some((ip, port)) = target else {
        let _ = client.write_all(b"SERVER_ERROR no nodes in cluster\r\n").await;
        return;
    };
    let mut upstream = match upstream(ip, port, tls).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%ip, port, %error, "configuration endpoint cannot reach the first node");
            let _ = client.write_all(b"SERVER_ERROR node unreachable\r\n").await;
            return;
        }
    };
    if upstream.write_all(&already_read).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_elasticache() {
        let config = ClusterConfig {
            version: 12,
            nodes: vec![("a.cache".into(), Some(Ipv4Addr::new(10, 0, 0, 1)), 11211), ("b.cache".into(), None, 11212)],
        };
        let body = "12\na.cache|10.0.0.1|11211 b.cache||11212\n";
        let expected = format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len());
        assert_eq!(config.render(), expected.into_bytes());
    }

    #[test]
    fn recognises_the_command() {
        assert!(is_config_get_cluster(b"config get cluster\r"));
        assert!(is_config_get_cluster(b"CONFIG GET cluster"));
        assert!(!is_config_get_cluster(b"config get clusters"));
        assert!(!is_config_get_cluster(b"get cluster"));
    }
}
