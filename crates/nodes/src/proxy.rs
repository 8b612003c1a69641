//! [`EndpointProxy`]: a TCP endpoint whose address stays put while the nodes behind it
//! change — the primary and reader endpoints of a replication group.
//!
//! On AWS those endpoints are DNS names that ElastiCache repoints at failover. Local
//! clients connect to `127.0.0.1:<port>` and could not follow a DNS flip, so the endpoint
//! is a listener of its own that forwards each connection, byte for byte, to the node the
//! owner currently lists. When a node leaves the list (the old primary after a failover),
//! every connection forwarded to it is closed at once: clients see the disconnect they
//! would see on AWS, reconnect, and reach the new node. A node leaving for a planned
//! restart is *drained* instead ([`EndpointProxy::drain`]): it gets no new connections, and
//! the ones it has run on until their clients close them, so its owner can wait for
//! [`EndpointProxy::open_to`] to reach zero before the restart.
//!
//! With transit encryption the proxy looks at the first byte of each new connection (a TLS
//! ClientHello starts with 0x16; RESP never does) before choosing what to do with it, per
//! [`ProxyTls`]: in mode `required` the nodes speak TLS themselves and a TLS connection is
//! forwarded untouched (end-to-end TLS, the node's certificate), a plaintext one closed; in
//! mode `preferred` the nodes still speak plaintext, so the proxy completes a TLS handshake
//! itself (a certificate from the same CA) and forwards the decrypted bytes, and passes
//! plaintext through as it is — both on the same port, as on AWS.
//!
//! # Layout
//! - [`Balance`]: how a target is picked for a new connection.
//! - [`ProxyTls`]: what the endpoint does with TLS and plaintext connections.
//! - [`EndpointProxy`]: the listener; `serve` accepts, `forward` copies one connection.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
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

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a new connection may stay silent before the proxy gives up on it (clients of
/// RESP speak first; only the TLS decision needs the wait).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// What an endpoint does with TLS and plaintext connections (transit encryption mode).
#[derive(Clone, Default)]
pub enum ProxyTls {
    /// No transit encryption: bytes are forwarded as they come.
    #[default]
    Off,
    /// TLS only: forwarded untouched to nodes that speak TLS; plaintext is closed.
    Required,
    /// Both: TLS is terminated here with this configuration, plaintext passes through.
    Preferred(Arc<rustls::ServerConfig>),
}

impl std::fmt::Debug for ProxyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyTls::Off => "off",
            ProxyTls::Required => "required",
            ProxyTls::Preferred(_) => "preferred",
        })
    }
}

/// The connections open to each target, and the targets being drained.
#[derive(Default)]
struct Traffic {
    open: Mutex<HashMap<SocketAddr, usize>>,
    draining: Mutex<HashSet<SocketAddr>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts one forwarded connection for as long as it lives.
struct OpenConnection {
    traffic: Arc<Traffic>,
    target: SocketAddr,
}

impl OpenConnection {
    fn new(traffic: Arc<Traffic>, target: SocketAddr) -> Self {
        *lock(&traffic.open).entry(target).or_default() += 1;
        Self { traffic, target }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut open = lock(&self.traffic.open);
        if let Some(count) = open.get_mut(&self.target) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.target);
            }
        }
    }
}

/// A running endpoint proxy. It stops — listener and every forwarded connection — when
/// dropped (asynchronously; [`EndpointProxy::shutdown`] waits until the port is free).
pub struct EndpointProxy {
    address: Ipv4Addr,
    port: u16,
    tls: Arc<RwLock<ProxyTls>>,
    traffic: Arc<Traffic>,
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
        let tls = Arc::new(RwLock::new(ProxyTls::Off));
        let traffic = Arc::new(Traffic::default());
        let task = tokio::spawn(serve(listener, targets, balance, tls.clone(), traffic.clone()));
        Ok(Self { address, port, tls, traffic, task })
    }

    /// From now on `target` leaving the list keeps its connections open (until their
    /// clients close them, or the node goes away) instead of closing them.
    pub fn drain(&self, target: SocketAddr) {
        lock(&self.traffic.draining).insert(target);
    }

    /// `target` leaving the list closes its connections again (it is back, or gone for good).
    pub fn undrain(&self, target: SocketAddr) {
        lock(&self.traffic.draining).remove(&target);
    }

    /// How many connections are forwarded to `target` now.
    pub fn open_to(&self, target: SocketAddr) -> usize {
        lock(&self.traffic.open).get(&target).copied().unwrap_or(0)
    }

    /// Changes what new connections get; connections already made keep what they have.
    pub fn set_tls(&self, tls: ProxyTls) {
        let mut current = self.tls.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if std::mem::discriminant(&*current) != std::mem::discriminant(&tls) {
            tracing::info!(port = self.port, from = ?*current, to = ?tls, "endpoint transit encryption");
            *current = tls;
        }
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

async fn serve(
    listener: TcpListener,
    targets: watch::Receiver<Vec<SocketAddr>>,
    balance: Balance,
    tls: Arc<RwLock<ProxyTls>>,
    traffic: Arc<Traffic>,
) {
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
                            let mode = tls.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                            let open = OpenConnection::new(traffic.clone(), target);
                            connections.spawn(accept(client, open, targets.clone(), mode));
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

/// Decides, per `mode`, what to do with a new connection, then forwards it.
async fn accept(client: TcpStream, target: OpenConnection, targets: watch::Receiver<Vec<SocketAddr>>, mode: ProxyTls) {
    let _ = client.set_nodelay(true);
    if matches!(mode, ProxyTls::Off) {
        return forward(client, target, targets).await;
    }
    let mut first = [0u8; 1];
    let is_tls = match tokio::time::timeout(FIRST_BYTE_TIMEOUT, client.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == TLS_HANDSHAKE,
        _ => return,
    };
    match mode {
        ProxyTls::Off => forward(client, target, targets).await,
        ProxyTls::Required if is_tls => forward(client, target, targets).await,
        ProxyTls::Required => {
            // What a TLS-only server does with plaintext: nothing but closing.
            tracing::debug!(target = %target.target, "plaintext connection to a TLS-only endpoint; closing it");
        }
        ProxyTls::Preferred(config) if is_tls => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(FIRST_BYTE_TIMEOUT, acceptor.accept(client)).await {
                Ok(Ok(stream)) => forward(stream, target, targets).await,
                Ok(Err(error)) => tracing::debug!(target = %target.target, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(target = %target.target, "TLS handshake timed out"),
            }
        }
        ProxyTls::Preferred(_) => forward(client, target, targets).await,
    }
}

/// Copies bytes both ways between `client` and `target` until either side closes or
/// `target` leaves the list undrained; then both sockets are dropped, which closes them.
async fn forward<C>(mut client: C, open: OpenConnection, mut targets: watch::Receiver<Vec<SocketAddr>>)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let target = open.target;
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
    // Requests are small and latency-bound: don't let Nagle batch them on either hop
    // (the client's side was set at accept).
    let _ = upstream.set_nodelay(true);
    let removed = async {
        // `wait_for` checks the current list first, so a removal during connect counts.
        // A dropped sender freezes the list: then the target is never removed.
        if targets.wait_for(|list| !list.contains(&target)).await.is_err()
            || lock(&open.traffic.draining).contains(&target)
        {
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
