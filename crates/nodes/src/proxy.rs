//! [`EndpointProxy`]: a TCP endpoint whose address stays put while the nodes behind it
//! change — the primary and reader endpoints of a replication group.
//!
//! On AWS those endpoints are DNS names that ElastiCache repoints at failover. Local
//! clients connect to `127.0.0.1:<port>` and could not follow a DNS flip, so the endpoint
//! is a listener of its own that forwards each connection, byte for byte, to the node the
//! owner currently lists. When a node leaves the list (the old primary after a failover),
//! every connection forwarded to it is closed at once: clients see the disconnect they
//! would see on AWS, reconnect, and reach the new node.
//!
//! # Layout
//! - [`Balance`]: how a target is picked for a new connection.
//! - [`EndpointProxy`]: the listener; `serve` accepts, `forward` copies one connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::NodeError;

/// Bound on reaching a target, so a client of an address nothing answers on is closed
/// instead of held (loopback targets refuse or accept at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How a new connection's target is chosen from the current list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Balance {
    /// Always the first target: the primary endpoint, whose list holds just the primary.
    #[default]
    First,
    /// The targets in turn, one connection each: the reader endpoint.
    RoundRobin,
}

/// A running endpoint proxy. It stops — listener and every forwarded connection — when
/// dropped (asynchronously; [`EndpointProxy::shutdown`] waits until the port is free).
pub struct EndpointProxy {
    address: Ipv4Addr,
    port: u16,
    task: JoinHandle<()>,
}

impl EndpointProxy {
    /// Listens on `address:port` (`0` picks a free port; any other port must be used as
    /// is, else [`NodeError::PortInUse`]) and forwards each accepted connection to a
    /// target picked from `targets` by `balance` at accept time. `targets` is read at every
    /// accept and watched by every connection: a connection whose target leaves the list
    /// is closed. If the sender is dropped, the last list stays in force.
    pub async fn start(
        address: Ipv4Addr,
        port: u16,
        targets: watch::Receiver<Vec<SocketAddr>>,
        balance: Balance,
    ) -> Result<Self, NodeError> {
        let listener = TcpListener::bind(SocketAddr::from((address, port))).await.map_err(|error| {
            if error.kind() == std::io::ErrorKind::AddrInUse {
                NodeError::PortInUse { address, port }
            } else {
                NodeError::Io(error)
            }
        })?;
        let port = listener.local_addr()?.port();
        tracing::info!(%address, port, ?balance, "endpoint proxy listening");
        let task = tokio::spawn(serve(listener, targets, balance));
        Ok(Self { address, port, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Stops listening and closes every connection; returns once the port is free.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for EndpointProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops the listener and its JoinSet, which aborts every
        // connection task and so closes both sides of each connection.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, targets: watch::Receiver<Vec<SocketAddr>>, balance: Balance) {
    let mut connections = JoinSet::new();
    let mut next: usize = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let target = {
                        let list = targets.borrow();
                        match balance {
                            Balance::First => list.first().copied(),
                            Balance::RoundRobin if list.is_empty() => None,
                            Balance::RoundRobin => {
                                let target = list[next % list.len()];
                                next = next.wrapping_add(1);
                                Some(target)
                            }
                        }
                    };
                    match target {
                        Some(target) => {
                            connections.spawn(forward(client, target, targets.clone()));
                        }
                        None => {
                            // Nothing to reach: closing is what a client of a node that is
                            // down would see too.
                            tracing::debug!(%peer, "endpoint proxy has no target; closing the connection");
                            drop(client);
                        }
                    }
                }
                Err(error) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(%error, "endpoint proxy cannot accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Copies bytes both ways between `client` and `target` until either side closes or
/// `target` leaves the list; then both sockets are dropped, which closes them.
async fn forward(mut client: TcpStream, target: SocketAddr, mut targets: watch::Receiver<Vec<SocketAddr>>) {
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%target, %error, "endpoint proxy cannot reach its target; closing the client");
            return;
        }
        Err(_) => {
            tracing::debug!(%target, "endpoint proxy timed out reaching its target; closing the client");
            return;
        }
    };
    // Requests are small and latency-bound: don't let Nagle batch them on either hop.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let removed = async {
        // `wait_for` checks the current list first, so a removal during connect counts.
        // A dropped sender freezes the list: then the target is never removed.
        if targets.wait_for(|list| !list.contains(&target)).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = removed => {
            tracing::debug!(%target, "endpoint proxy target removed; closing its connection");
        }
    }
}
