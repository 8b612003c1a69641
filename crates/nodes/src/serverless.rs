//! [`ServerlessEndpoint`]: the one TLS endpoint of a serverless cache, in front of the Redis
//! Cluster that holds its data.
//!
//! On AWS a serverless cache is one address: clients in cluster mode see a single "virtual
//! shard" owning every slot at that address, clients that do not speak the cluster protocol
//! just send commands, and shards come and go behind it. So the endpoint speaks RESP itself:
//! it terminates TLS (serverless is TLS only), reads each command, routes it by the slot of
//! its keys to the shard that owns it (a replica of it for reads on the reader endpoint),
//! follows `MOVED`/`ASK` while slots migrate and retries across a failover, and answers
//! `CLUSTER SLOTS`/`SHARDS`/`NODES` with itself alone. Multi-key commands need their keys
//! in one slot (`CROSSSLOT` otherwise, as on AWS); keyless commands go to one primary, or
//! to every one where the answer spans the data (`DBSIZE`, `KEYS`, `SCAN`, `FLUSHALL`).
//!
//! Each client connection has its own connections to the nodes, opened on first use and
//! given the client's `AUTH`/`HELLO`/`CLIENT SETNAME` first, so the nodes' ACLs (a user
//! group) apply to it as they would on AWS. A client that subscribes is handed over to
//! one node for the rest of its connection.
//!
//! During an online migration into the cache, the endpoint sends every command to the
//! migration's source instead ([`ServerlessEndpoint::route_to`]), with the same face; at
//! the cutover its owner holds new commands once those under way are answered
//! ([`ServerlessEndpoint::hold`]), switches the route back, and lets them go: clients wait
//! a moment, and get no error. Subscribers, handed over to one node, are disconnected when
//! the route changes, to subscribe again where messages are now published.
//!
//! # Layout
//! - [`ServerlessEndpoint`]: the listener; [`Router`]: the slot map and command table,
//!   read from the nodes with the runtime's own credentials.
//! - `Session`: one client connection; `frame`: reading RESP requests and replies.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufStream, BufWriter,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::cluster::{SLOTS, key_slot};
use crate::resp::{self, Reply};
use crate::{EcpuLimit, NodeError};

/// Bound on reaching a node.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command keeps being retried while its shard fails over or its slot moves.
const RETRY_FOR: Duration = Duration::from_secs(10);
/// How long a node may take to answer a command that does not block: one that is frozen
/// (a zone outage) accepts the bytes and never answers.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request argument accepted (Redis's own `proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;
const MAX_ARGS: usize = 1024 * 1024;
/// The node id the endpoint gives itself in CLUSTER answers.
const ENDPOINT_ID: &str = "5e7e71e55e7e71e55e7e71e55e7e71e55e7e71e5";

/// Which endpoint: the primary one, or the reader one that serves reads from replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Writer,
    Reader,
}

/// A running serverless endpoint; it stops (listener and connections) when dropped.
pub struct ServerlessEndpoint {
    port: u16,
    seeds: watch::Sender<Vec<SocketAddr>>,
    router: Arc<Router>,
    task: JoinHandle<()>,
}

/// New commands wait while this lives ([`ServerlessEndpoint::hold`]); none is under way.
pub struct Hold(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>);

/// A server the endpoint sends commands to instead of its cluster: an online migration's
/// source, in plaintext or (`tls`) over TLS verified with that configuration.
#[derive(Clone)]
pub struct Upstream {
    pub address: SocketAddr,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.address, if self.tls.is_some() { " (TLS)" } else { "" })
    }
}

/// A connection to a node or an upstream, plaintext or TLS.
pub trait Io: tokio::io::AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connects to `address` (within CONNECT_TIMEOUT, TLS included), through TLS verified with
/// `tls` when given.
pub async fn connect(address: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> io::Result<Box<dyn Io>> {
    let connect = async {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let Some(config) = tls else { return Ok(Box::new(stream) as Box<dyn Io>) };
        let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
        let stream = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await?;
        Ok(Box::new(stream) as Box<dyn Io>)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

impl ServerlessEndpoint {
    /// Listens on `address:port` (0: a free port) and serves TLS with `tls`, routing to the
    /// cluster whose nodes [`ServerlessEndpoint::point_at`] names. `control` is the
    /// runtime's own ACL user on the nodes, used for the slot map and the command table.
    /// CLUSTER answers name `advertised` as the endpoint's host, or else the address the
    /// client reached.
    pub async fn start(
        address: Ipv4Addr,
        advertised: Option<String>,
        port: u16,
        tls: Arc<rustls::ServerConfig>,
        role: Role,
        control: (String, String),
        ecpu: Arc<EcpuLimit>,
    ) -> Result<Self, NodeError> {
        let listener = listen(address, port).await?;
        let port = listener.local_addr()?.port();
        let (seeds, watched) = watch::channel(Vec::new());
        let router = Arc::new(Router::new(watched, control, role, ecpu));
        tracing::info!(%address, port, ?role, "serverless endpoint listening");
        let serving = router.clone();
        let advertised: Option<Arc<str>> = advertised.map(Arc::from);
        let task = tokio::spawn(serve_tls(listener, tls, move |stream, local| {
            Session::new(serving.clone(), local, advertised.clone()).run(stream)
        }));
        Ok(Self { port, seeds, router, task })
    }

    /// Sends every client command to `source` instead of the cluster (an online migration's
    /// source, served through the cache's own endpoint until the cutover), or to the
    /// cluster again (None). The endpoint's face stays the same: CLUSTER answers still name
    /// the endpoint alone, and commands are checked as before (CROSSSLOT), so what a client
    /// may send does not change at the cutover.
    pub fn route_to(&self, source: Option<Upstream>) {
        let mut route = self.router.source.write().unwrap_or_else(|e| e.into_inner());
        let same = match (&*route, &source) {
            (Some(a), Some(b)) => a.address == b.address && a.tls.is_some() == b.tls.is_some(),
            (None, None) => true,
            _ => false,
        };
        if !same {
            tracing::info!(port = self.port, from = ?*route, to = ?source, "serverless endpoint: route");
            *route = source;
            self.router.routes.send_modify(|n| *n += 1);
        }
    }

    /// Where commands go now: a migration's source, or (None) the cluster.
    pub fn route(&self) -> Option<SocketAddr> {
        self.router.source()
    }

    /// Holds new commands (they wait, unanswered, not refused) once the commands under way
    /// have been answered, until the returned [`Hold`] is dropped: a cutover switches the
    /// route meanwhile. None if commands were still under way after `within` (a blocking
    /// command, say); nothing is held then.
    pub async fn hold(&self, within: Duration) -> Option<Hold> {
        let gate = self.router.gate.clone();
        tokio::time::timeout(within, gate.write_owned()).await.ok().map(Hold)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The primaries the owner vouches for: the slot map is read from them, and writes go
    /// to no other node. A node back from a crash or an outage still claims its old slots
    /// until gossip demotes it; what it accepted meanwhile would be lost when it resyncs.
    pub fn point_at(&self, nodes: Vec<SocketAddr>) {
        self.seeds.send_if_modified(|current| {
            let changed = *current != nodes;
            *current = nodes;
            changed
        });
    }
}

impl Drop for ServerlessEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds an endpoint's listener; a port already taken is [`NodeError::PortInUse`].
pub(crate) async fn listen(address: Ipv4Addr, port: u16) -> Result<TcpListener, NodeError> {
    TcpListener::bind(SocketAddr::from((address, port))).await.map_err(|error| {
        if error.kind() == io::ErrorKind::AddrInUse { NodeError::PortInUse { address, port } } else { error.into() }
    })
}

/// The accept loop of a serverless endpoint (of either engine): each client completes a TLS
/// handshake and is then served by `session`, given the endpoint address it reached.
pub(crate) async fn serve_tls<F, Fut>(listener: TcpListener, tls: Arc<rustls::ServerConfig>, session: F)
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let session = Arc::new(session);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let (session, acceptor) = (session.clone(), acceptor.clone());
                    connections.spawn(async move {
                        let _ = client.set_nodelay(true);
                        let Ok(local) = client.local_addr() else { return };
                        // TLS only, as on AWS: plaintext fails the handshake and is closed.
                        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(client)).await {
                            Ok(Ok(stream)) => session(stream, local).await,
                            _ => tracing::debug!("serverless endpoint: TLS handshake failed"),
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "serverless endpoint cannot accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Where a command's keys are, from the command table (`COMMAND`).
#[derive(Clone, Copy, Debug)]
struct KeySpec {
    first: i64,
    last: i64,
    step: i64,
    /// Keys whose position depends on the arguments: asked of a node (`COMMAND GETKEYS`).
    movable: bool,
    readonly: bool,
    /// May wait for data (BLPOP, XREAD BLOCK …): no answer timeout.
    blocking: bool,
}

/// One shard as the cluster reports it.
#[derive(Clone, Debug, Default)]
struct Shard {
    primary: Option<SocketAddr>,
    replicas: Vec<SocketAddr>,
}

#[derive(Default)]
struct Topology {
    shards: Vec<Shard>,
    /// The shard owning each slot (index into `shards`), if any.
    owner: Vec<Option<usize>>,
}

/// What the endpoint knows of the cluster behind it, shared by its connections.
pub struct Router {
    seeds: watch::Receiver<Vec<SocketAddr>>,
    control: (String, String),
    role: Role,
    topology: RwLock<Topology>,
    commands: RwLock<HashMap<String, KeySpec>>,
    /// Serialises refreshes; holds when the last one finished.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
    next_replica: std::sync::atomic::AtomicUsize,
    /// The cache's ECPU/second maximum, shared with its other endpoint.
    ecpu: Arc<EcpuLimit>,
    /// An online migration's source: every command goes there instead of the cluster.
    source: RwLock<Option<Upstream>>,
    /// Each command is handled under a read guard; a cutover's [`Hold`] is the write guard.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Counts the route's changes (subscribers handed over to a node close on one).
    routes: watch::Sender<u64>,
}

impl Router {
    fn new(
        seeds: watch::Receiver<Vec<SocketAddr>>,
        control: (String, String),
        role: Role,
        ecpu: Arc<EcpuLimit>,
    ) -> Self {
        Self {
            seeds,
            control,
            role,
            topology: RwLock::default(),
            commands: RwLock::default(),
            refreshed: tokio::sync::Mutex::new(None),
            next_replica: std::sync::atomic::AtomicUsize::new(0),
            ecpu,
            source: RwLock::new(None),
            routes: watch::channel(0).0,
            gate: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// A migration's source, while the endpoint serves it.
    fn source(&self) -> Option<SocketAddr> {
        self.source.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|u| u.address)
    }

    /// The TLS configuration towards `node`, if it is a source reached over TLS.
    fn tls_towards(&self, node: SocketAddr) -> Option<Arc<rustls::ClientConfig>> {
        let source = self.source.read().unwrap_or_else(|e| e.into_inner());
        source.as_ref().filter(|u| u.address == node).and_then(|u| u.tls.clone())
    }

    /// Runs one command on the first seed that answers, as the runtime's own user.
    async fn control(&self, args: &[&str]) -> Result<Reply, NodeError> {
        let seeds = self.seeds.borrow().clone();
        let mut last = NodeError::Protocol("no nodes behind the endpoint yet".into());
        for seed in seeds {
            let attempt = async {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(seed))
                    .await
                    .map_err(|_| NodeError::TimedOut { after: CONNECT_TIMEOUT })??;
                let mut stream = BufStream::new(stream);
                let (user, password) = (&self.control.0, &self.control.1);
                if let Reply::Error(e) = resp::command(&mut stream, &["AUTH", user, password]).await? {
                    return Err(NodeError::Protocol(e));
                }
                resp::command(&mut stream, args).await
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, attempt).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(error)) => last = error,
                Err(_) => last = NodeError::TimedOut { after: ANSWER_TIMEOUT },
            }
        }
        Err(last)
    }

    /// Reads the slot map again (at most every 50 ms, however many connections ask).
    async fn refresh(&self) {
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_some_and(|at| at.elapsed() < Duration::from_millis(50)) {
            return;
        }
        match self.control(&["CLUSTER", "SLOTS"]).await {
            Ok(reply) => {
                *self.topology.write().unwrap_or_else(|e| e.into_inner()) = topology(&reply);
            }
            Err(error) => tracing::debug!(%error, "serverless endpoint: reading the slot map failed"),
        }
        *refreshed = Some(Instant::now());
    }

    /// The key spec of `name` (lowercase), loading the command table on first need.
    async fn spec(&self, name: &str) -> Option<KeySpec> {
        if self.commands.read().unwrap_or_else(|e| e.into_inner()).is_empty()
            && let Ok(reply) = self.control(&["COMMAND"]).await
        {
            *self.commands.write().unwrap_or_else(|e| e.into_inner()) = command_table(&reply);
        }
        self.commands.read().unwrap_or_else(|e| e.into_inner()).get(name).copied()
    }

    /// Where a command for `slot` goes: its shard's primary, or (reads on the reader
    /// endpoint) one of its replicas in turn. Without a slot: the first primary.
    fn target(&self, slot: Option<u16>, read: bool) -> Option<SocketAddr> {
        if let Some(source) = self.source() {
            return Some(source);
        }
        let topology = self.topology.read().unwrap_or_else(|e| e.into_inner());
        let trusted = self.seeds.borrow();
        let vouched = |s: &&Shard| s.primary.is_some_and(|p| trusted.contains(&p));
        let shard = match slot {
            Some(slot) => topology.owner.get(usize::from(slot)).copied().flatten().and_then(|i| topology.shards.get(i)),
            None => topology.shards.iter().find(vouched),
        }
        .filter(vouched)?;
        if read && self.role == Role::Reader && !shard.replicas.is_empty() {
            let turn = self.next_replica.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Some(shard.replicas[turn % shard.replicas.len()]);
        }
        shard.primary
    }

    fn vouches_for(&self, node: SocketAddr) -> bool {
        self.source() == Some(node) || self.seeds.borrow().contains(&node)
    }

    fn primaries(&self) -> Vec<SocketAddr> {
        if let Some(source) = self.source() {
            return vec![source];
        }
        let topology = self.topology.read().unwrap_or_else(|e| e.into_inner());
        let trusted = self.seeds.borrow();
        topology.shards.iter().filter_map(|s| s.primary).filter(|p| trusted.contains(p)).collect()
    }
}

/// The slot map from a `CLUSTER SLOTS` reply.
fn topology(reply: &Reply) -> Topology {
    let mut topology = Topology { shards: Vec::new(), owner: vec![None; usize::from(SLOTS)] };
    let Reply::Array(Some(ranges)) = reply else { return topology };
    for range in ranges {
        let Reply::Array(Some(parts)) = range else { continue };
        let (Some(Reply::Integer(start)), Some(Reply::Integer(end))) = (parts.first(), parts.get(1)) else { continue };
        let nodes: Vec<SocketAddr> = parts.iter().skip(2).filter_map(node_address).collect();
        let Some((&primary, replicas)) = nodes.split_first() else { continue };
        let index = match topology.shards.iter().position(|s| s.primary == Some(primary)) {
            Some(index) => index,
            None => {
                topology.shards.push(Shard { primary: Some(primary), replicas: replicas.to_vec() });
                topology.shards.len() - 1
            }
        };
        let (start, end) = (usize::try_from(*start).unwrap_or(0), usize::try_from(*end).unwrap_or(0));
        for slot in start..=end.min(usize::from(SLOTS) - 1) {
            topology.owner[slot] = Some(index);
        }
    }
    topology
}

fn node_address(node: &Reply) -> Option<SocketAddr> {
    let Reply::Array(Some(fields)) = node else { return None };
    let ip = fields.first()?.as_text()?;
    let Reply::Integer(port) = fields.get(1)? else { return None };
    crate::exposure::internal_address(&format!("{ip}:{port}"))
}

/// Key specs by command name from a `COMMAND` reply.
fn command_table(reply: &Reply) -> HashMap<String, KeySpec> {
    let Reply::Array(Some(commands)) = reply else { return HashMap::new() };
    commands
        .iter()
        .filter_map(|command| {
            let Reply::Array(Some(fields)) = command else { return None };
            let name = fields.first()?.as_text()?.to_ascii_lowercase();
            let flags: Vec<String> = match fields.get(2)? {
                Reply::Array(Some(flags)) => flags.iter().filter_map(Reply::as_text).collect(),
                _ => Vec::new(),
            };
            let int = |i: usize| match fields.get(i) {
                Some(Reply::Integer(n)) => *n,
                _ => 0,
            };
            let spec = KeySpec {
                first: int(3),
                last: int(4),
                step: int(5),
                movable: flags.iter().any(|f| f == "movablekeys"),
                readonly: flags.iter().any(|f| f == "readonly"),
                blocking: flags.iter().any(|f| f == "blocking"),
            };
            Some((name, spec))
        })
        .collect()
}

/// What a session does after a command.
enum Next {
    Reply(Vec<u8>),
    /// Answer, then close the connection.
    Close(Vec<u8>),
    /// Hand the connection over to this node: the command went there and its reply (and
    /// all that follows) is copied through as it comes.
    HandOver(Box<dyn Io>),
}

/// A transaction being queued (MULTI … EXEC), run on the shard of its keys at EXEC.
#[derive(Default)]
struct Multi {
    queued: Vec<Vec<u8>>,
    slot: Option<u16>,
    failed: bool,
}

/// One client connection.
struct Session {
    router: Arc<Router>,
    /// The endpoint address the client reached.
    local: SocketAddr,
    /// The host CLUSTER answers name (`--advertise-host`); else the address reached.
    advertised: Option<Arc<str>>,
    upstreams: HashMap<SocketAddr, BufStream<Box<dyn Io>>>,
    /// AUTH, HELLO and CLIENT SETNAME as the client sent them: every new node connection
    /// gets them first.
    replay: Vec<(String, Vec<u8>)>,
    multi: Option<Multi>,
    /// The node a WATCH went to: the transaction must run there.
    watched: Option<SocketAddr>,
    /// The command being handled may block (no answer timeout).
    blocking: bool,
}

impl Session {
    fn new(router: Arc<Router>, local: SocketAddr, advertised: Option<Arc<str>>) -> Self {
        Self {
            router,
            local,
            advertised,
            upstreams: HashMap::new(),
            replay: Vec::new(),
            multi: None,
            watched: None,
            blocking: false,
        }
    }

    async fn run<S>(mut self, stream: S)
    where
        S: tokio::io::AsyncRead + AsyncWrite + Unpin,
    {
        // Reads buffered (`buffer` tells whether a pipeline goes on), writes buffered too.
        let mut stream = BufReader::new(BufWriter::new(stream));
        loop {
            let args = match frame::request(&mut stream).await {
                Ok(Some(args)) if !args.is_empty() => args,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            };
            let request_bytes: usize = args.iter().map(Vec::len).sum();
            // A cutover waits for this command to be answered, and holds the next ones.
            let pass = self.router.gate.clone().read_owned().await;
            let next = self.handle(args).await;
            drop(pass);
            let written = match &next {
                Next::Reply(bytes) | Next::Close(bytes) => stream.get_mut().write_all(bytes).await,
                Next::HandOver(_) => Ok(()),
            };
            if written.is_err() {
                return;
            }
            match next {
                Next::Reply(reply) => {
                    // Replies to a pipeline go out together.
                    if stream.buffer().is_empty() && stream.get_mut().flush().await.is_err() {
                        return;
                    }
                    // At the cache's ECPU maximum, the next command waits (throttled).
                    self.router.ecpu.spend(EcpuLimit::cost(request_bytes + reply.len())).await;
                }
                Next::Close(_) => {
                    let _ = stream.get_mut().flush().await;
                    return;
                }
                Next::HandOver(mut node) => {
                    let _ = stream.get_mut().flush().await;
                    // What the client pipelined after the command goes on to the node.
                    if node.write_all(stream.buffer()).await.is_err() {
                        return;
                    }
                    let mut client = stream.into_inner().into_inner();
                    // A subscriber stays with its node until the route changes (a migration's
                    // cutover): then its connection closes, and the client subscribes again
                    // where messages are published now.
                    let mut routes = self.router.routes.subscribe();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut node) => {}
                        _ = routes.changed() => {}
                    }
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, args: Vec<Vec<u8>>) -> Next {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let spec = self.router.spec(&name).await;
        if self.multi.is_some() && !["exec", "discard", "multi", "watch"].contains(&name.as_str()) {
            return Next::Reply(self.queue(spec, args).await);
        }
        let sub = args.get(1).map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).unwrap_or_default();
        self.blocking = spec.is_some_and(|s| s.blocking);
        let reply = match name.as_str() {
            "ping" if args.len() == 1 => b"+PONG\r\n".to_vec(),
            "quit" => return Next::Close(b"+OK\r\n".to_vec()),
            "select" if sub == "0" => b"+OK\r\n".to_vec(),
            "select" => b"-ERR SELECT is not allowed in cluster mode\r\n".to_vec(),
            "readonly" | "readwrite" | "asking" => b"+OK\r\n".to_vec(),
            "auth" | "hello" => self.authenticate(name, args).await,
            "client" if sub == "setname" => {
                let reply = self.forward(None, &args, false).await;
                if !reply.starts_with(b"-") {
                    self.replay.push((name.clone(), resp::encode(&args)));
                }
                reply
            }
            "cluster" => self.cluster(&sub, &args).await,
            "dbsize" => self.sum(&args).await,
            "keys" => self.concatenate(&args).await,
            "scan" => self.scan(args).await,
            "flushall" | "flushdb" | "script" => self.everywhere(&args).await,
            "multi" => {
                self.multi = Some(Multi::default());
                b"+OK\r\n".to_vec()
            }
            "exec" => self.exec().await,
            "discard" if self.multi.take().is_some() => {
                self.watched = None;
                b"+OK\r\n".to_vec()
            }
            "discard" => b"-ERR DISCARD without MULTI\r\n".to_vec(),
            "subscribe" | "psubscribe" | "ssubscribe" | "monitor" => return self.hand_over(&name, args).await,
            _ => match self.slot(spec, &args).await {
                Err(error) => error,
                Ok(slot) => {
                    let read = spec.is_some_and(|s| s.readonly);
                    if name == "watch" {
                        let target = self.router.target(slot, false);
                        self.watched = target;
                    }
                    match (name.as_str(), self.watched) {
                        ("unwatch", Some(node)) => self.exchange_with_retry(Some(node), None, &args).await,
                        _ => self.forward(slot, &args, read).await,
                    }
                }
            },
        };
        Next::Reply(reply)
    }

    /// The one slot a command's keys hash to (None: keyless, or unknown to the nodes), or
    /// the error to answer.
    async fn slot(&mut self, spec: Option<KeySpec>, args: &[Vec<u8>]) -> Result<Option<u16>, Vec<u8>> {
        let Some(spec) = spec else { return Ok(None) };
        let keys: Vec<Vec<u8>> = if spec.movable {
            let mut getkeys = vec![b"COMMAND".to_vec(), b"GETKEYS".to_vec()];
            getkeys.extend(args.iter().cloned());
            let reply = self.forward(None, &getkeys, false).await;
            frame::bulk_items(&reply).await
        } else {
            positional_keys(spec, args)
        };
        let mut slots = keys.iter().map(|k| key_slot(k));
        let Some(first) = slots.next() else { return Ok(None) };
        if slots.any(|s| s != first) {
            return Err(b"-CROSSSLOT Keys in request don't hash to the same slot\r\n".to_vec());
        }
        Ok(Some(first))
    }

    /// Sends a command to the node for `slot`, following MOVED/ASK and retrying while a
    /// shard fails over or the slot map changes.
    async fn forward(&mut self, slot: Option<u16>, args: &[Vec<u8>], read: bool) -> Vec<u8> {
        let target = self.router.target(slot, read);
        self.exchange_with_retry(target, slot, args).await
    }

    async fn exchange_with_retry(
        &mut self,
        mut target: Option<SocketAddr>,
        slot: Option<u16>,
        args: &[Vec<u8>],
    ) -> Vec<u8> {
        let request = resp::encode(args);
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(10);
        let mut asking = false;
        loop {
            if let Some(node) = target {
                let sent = if asking { [resp::encode(&["ASKING"]), request.clone()].concat() } else { request.clone() };
                match self.exchange(node, &sent, if asking { 2 } else { 1 }).await {
                    Ok(reply) => match redirection(&reply) {
                        Some(Redirect::Moved(to)) => {
                            self.router.refresh().await;
                            if self.router.vouches_for(to) {
                                (target, asking) = (Some(to), false);
                                continue;
                            }
                        }
                        Some(Redirect::Ask(to)) => {
                            (target, asking) = (Some(to), true);
                            continue;
                        }
                        Some(Redirect::Wait) if Instant::now() < deadline => {}
                        _ => return reply,
                    },
                    Err(_) => {
                        self.upstreams.remove(&node);
                    }
                }
            }
            if Instant::now() >= deadline {
                return b"-CLUSTERDOWN The cache is not reachable right now; try again\r\n".to_vec();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
            self.router.refresh().await;
            (target, asking) = (self.router.target(slot, false), false);
        }
    }

    /// Sends `request` to `node` and reads `replies` replies, answering the last; a node
    /// that does not answer in time (unless the command may block) counts as unreachable.
    async fn exchange(&mut self, node: SocketAddr, request: &[u8], replies: usize) -> io::Result<Vec<u8>> {
        let patient = self.blocking;
        let upstream = self.upstream(node).await?;
        let exchange = async {
            upstream.write_all(request).await?;
            upstream.flush().await?;
            let mut reply = Vec::new();
            for _ in 0..replies {
                reply = frame::reply(upstream).await?;
            }
            Ok(reply)
        };
        if patient {
            return exchange.await;
        }
        tokio::time::timeout(ANSWER_TIMEOUT, exchange).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// This client's connection to `node`, opened (and given the client's AUTH, HELLO and
    /// name) on first use.
    async fn upstream(&mut self, node: SocketAddr) -> io::Result<&mut BufStream<Box<dyn Io>>> {
        if !self.upstreams.contains_key(&node) {
            let stream = connect(node, self.router.tls_towards(node).as_ref()).await?;
            let mut stream = BufStream::new(stream);
            let mut setup: Vec<Vec<u8>> = self.replay.iter().map(|(_, c)| c.clone()).collect();
            if self.router.role == Role::Reader {
                setup.push(resp::encode(&["READONLY"]));
            }
            for command in &setup {
                stream.write_all(command).await?;
            }
            stream.flush().await?;
            for _ in &setup {
                frame::reply(&mut stream).await?;
            }
            self.upstreams.insert(node, stream);
        }
        self.upstreams.get_mut(&node).ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// AUTH and HELLO: tried on a fresh connection to a primary, then given to every node
    /// connection from now on (the ones open so far are dropped and reopened).
    async fn authenticate(&mut self, name: String, args: Vec<Vec<u8>>) -> Vec<u8> {
        self.upstreams.clear();
        let reply = self.forward(None, &args, false).await;
        if !reply.starts_with(b"-") {
            // The latest AUTH or HELLO stands for every earlier one of its kind.
            self.replay.retain(|(earlier, _)| *earlier != name);
            self.replay.push((name, resp::encode(&args)));
            self.upstreams.clear();
        }
        reply
    }

    async fn cluster(&mut self, sub: &str, args: &[Vec<u8>]) -> Vec<u8> {
        let (ip, port) = (self.local.ip().to_string(), self.local.port());
        let host = self.advertised.as_deref().unwrap_or(&ip);
        match sub {
            "slots" => frame::array(&[frame::array(&[
                frame::integer(0),
                frame::integer(i64::from(SLOTS) - 1),
                frame::array(&[frame::bulk(host.as_bytes()), frame::integer(i64::from(port)), frame::bulk(ENDPOINT_ID.as_bytes())]),
            ])]),
            "shards" => {
                let node = frame::array(&[
                    frame::bulk(b"id"),
                    frame::bulk(ENDPOINT_ID.as_bytes()),
                    frame::bulk(b"port"),
                    frame::integer(i64::from(port)),
                    frame::bulk(b"ip"),
                    frame::bulk(ip.as_bytes()),
                    frame::bulk(b"endpoint"),
                    frame::bulk(host.as_bytes()),
                    frame::bulk(b"role"),
                    frame::bulk(b"master"),
                    frame::bulk(b"replication-offset"),
                    frame::integer(0),
                    frame::bulk(b"health"),
                    frame::bulk(b"online"),
                ]);
                let shard = frame::array(&[
                    frame::bulk(b"slots"),
                    frame::array(&[frame::integer(0), frame::integer(i64::from(SLOTS) - 1)]),
                    frame::bulk(b"nodes"),
                    frame::array(&[node]),
                ]);
                frame::array(&[shard])
            }
            "nodes" => {
                // As redis shows an announced host name: after the bus port.
                let hostname = self.advertised.as_deref().map(|h| format!(",{h}")).unwrap_or_default();
                let line = format!("{ENDPOINT_ID} {ip}:{port}@{port}{hostname} myself,master - 0 0 1 connected 0-{}\n", SLOTS - 1);
                frame::bulk(line.as_bytes())
            }
            "myid" => frame::bulk(ENDPOINT_ID.as_bytes()),
            "info" => frame::bulk(
                format!(
                    "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:{SLOTS}\r\ncluster_slots_ok:{SLOTS}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n"
                )
                .as_bytes(),
            ),
            "keyslot" => match args.get(2) {
                Some(key) => frame::integer(i64::from(key_slot(key))),
                None => b"-ERR wrong number of arguments for 'cluster|keyslot' command\r\n".to_vec(),
            },
            "countkeysinslot" | "getkeysinslot" => {
                let slot = args.get(2).and_then(|s| std::str::from_utf8(s).ok()?.parse::<u16>().ok()).filter(|s| *s < SLOTS);
                match slot {
                    Some(slot) => self.forward(Some(slot), args, false).await,
                    None => b"-ERR Invalid slot\r\n".to_vec(),
                }
            }
            _ => format!("-ERR CLUSTER {} is not available on a serverless cache\r\n", sub.to_ascii_uppercase()).into_bytes(),
        }
    }

    /// A keyless command on every primary, each answer kept.
    async fn on_every_primary(&mut self, args: &[Vec<u8>]) -> Vec<Vec<u8>> {
        if self.router.primaries().is_empty() {
            self.router.refresh().await;
        }
        let mut replies = Vec::new();
        for node in self.router.primaries() {
            replies.push(self.exchange_with_retry(Some(node), None, args).await);
        }
        replies
    }

    /// FLUSHALL, FLUSHDB, SCRIPT …: done everywhere; the first error, else the first answer.
    async fn everywhere(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let replies = self.on_every_primary(args).await;
        let error = replies.iter().find(|r| r.starts_with(b"-")).cloned();
        error.or_else(|| replies.into_iter().next()).unwrap_or_else(|| b"+OK\r\n".to_vec())
    }

    /// DBSIZE over every shard.
    async fn sum(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let mut total = 0;
        for reply in self.on_every_primary(args).await {
            match frame::integer_of(&reply).await {
                Some(n) => total += n,
                None => return reply,
            }
        }
        frame::integer(total)
    }

    /// KEYS over every shard.
    async fn concatenate(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let mut keys = Vec::new();
        for reply in self.on_every_primary(args).await {
            if reply.starts_with(b"-") {
                return reply;
            }
            keys.extend(frame::bulk_items(&reply).await.iter().map(|k| frame::bulk(k)));
        }
        frame::array(&keys)
    }

    /// SCAN over every shard in turn: the cursor carries the shard in its low byte and the
    /// shard's own cursor above it.
    async fn scan(&mut self, mut args: Vec<Vec<u8>>) -> Vec<u8> {
        let Some(cursor) = args.get(1).and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok()) else {
            return b"-ERR invalid cursor\r\n".to_vec();
        };
        if self.router.primaries().is_empty() {
            self.router.refresh().await;
        }
        let primaries = self.router.primaries();
        let (mut shard, mut inner) = ((cursor & 0xff) as usize, cursor >> 8);
        while let Some(&node) = primaries.get(shard) {
            args[1] = inner.to_string().into_bytes();
            let reply = self.exchange_with_retry(Some(node), None, &args).await;
            let Some((next, keys)) = frame::scan_reply(&reply).await else { return reply };
            let next_cursor = if next != 0 {
                (next << 8) | shard as u64
            } else if shard + 1 < primaries.len() {
                (shard + 1) as u64
            } else {
                0
            };
            if !keys.is_empty() || next_cursor == 0 {
                let keys: Vec<Vec<u8>> = keys.iter().map(|k| frame::bulk(k)).collect();
                return frame::array(&[frame::bulk(next_cursor.to_string().as_bytes()), frame::array(&keys)]);
            }
            (shard, inner) = ((next_cursor & 0xff) as usize, next_cursor >> 8);
        }
        frame::array(&[frame::bulk(b"0"), frame::array(&[])])
    }

    /// Queues a command of a transaction, checking its keys share the transaction's slot.
    async fn queue(&mut self, spec: Option<KeySpec>, args: Vec<Vec<u8>>) -> Vec<u8> {
        let slot = self.slot(spec, &args).await;
        let Some(multi) = self.multi.as_mut() else { return b"-ERR not in a transaction\r\n".to_vec() };
        match slot {
            Err(error) => {
                multi.failed = true;
                error
            }
            Ok(Some(slot)) if multi.slot.is_some_and(|s| s != slot) => {
                multi.failed = true;
                b"-CROSSSLOT Keys in request don't hash to the same slot\r\n".to_vec()
            }
            Ok(slot) => {
                multi.slot = multi.slot.or(slot);
                multi.queued.push(resp::encode(&args));
                b"+QUEUED\r\n".to_vec()
            }
        }
    }

    async fn exec(&mut self) -> Vec<u8> {
        let Some(multi) = self.multi.take() else { return b"-ERR EXEC without MULTI\r\n".to_vec() };
        let watched = self.watched.take();
        if multi.failed {
            return b"-EXECABORT Transaction discarded because of previous errors.\r\n".to_vec();
        }
        let Some(node) = watched.or_else(|| self.router.target(multi.slot, false)) else {
            return b"-CLUSTERDOWN The cache is not reachable right now; try again\r\n".to_vec();
        };
        let mut request = resp::encode(&["MULTI"]);
        multi.queued.iter().for_each(|c| request.extend_from_slice(c));
        request.extend(resp::encode(&["EXEC"]));
        match self.exchange(node, &request, multi.queued.len() + 2).await {
            Ok(reply) => reply,
            Err(_) => {
                self.upstreams.remove(&node);
                b"-CLUSTERDOWN The cache is not reachable right now; try again\r\n".to_vec()
            }
        }
    }

    /// SUBSCRIBE and the like: the rest of the connection belongs to one node (the shard of
    /// the channel for SSUBSCRIBE; published messages reach every node of the cluster).
    async fn hand_over(&mut self, name: &str, args: Vec<Vec<u8>>) -> Next {
        let slot = if name == "ssubscribe" { args.get(1).map(|c| key_slot(c)) } else { None };
        if self.router.target(slot, false).is_none() {
            self.router.refresh().await;
        }
        let Some(node) = self.router.target(slot, false) else {
            return Next::Reply(b"-CLUSTERDOWN The cache is not reachable right now; try again\r\n".to_vec());
        };
        let Ok(upstream) = self.upstream(node).await else {
            return Next::Reply(b"-CLUSTERDOWN The cache is not reachable right now; try again\r\n".to_vec());
        };
        if upstream.write_all(&resp::encode(&args)).await.is_err() || upstream.flush().await.is_err() {
            return Next::Reply(b"-CLUSTERDOWN The cache is not reachable right now; try again\r\n".to_vec());
        }
        match self.upstreams.remove(&node) {
            Some(stream) => Next::HandOver(stream.into_inner()),
            None => Next::Reply(b"-CLUSTERDOWN The cache is not reachable right now; try again\r\n".to_vec()),
        }
    }
}

/// A command's keys by position, from its key spec.
fn positional_keys(spec: KeySpec, args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let count = i64::try_from(args.len()).unwrap_or(i64::MAX);
    if spec.first <= 0 || spec.first >= count {
        return Vec::new();
    }
    let last = if spec.last < 0 { count + spec.last } else { spec.last.min(count - 1) };
    let step = spec.step.max(1);
    (spec.first..=last)
        .step_by(usize::try_from(step).unwrap_or(1))
        .filter_map(|i| args.get(i as usize).cloned())
        .collect()
}

enum Redirect {
    Moved(SocketAddr),
    Ask(SocketAddr),
    /// The cluster is settling (a failover, a slot being moved): try again shortly.
    Wait,
}

fn redirection(reply: &[u8]) -> Option<Redirect> {
    let text = std::str::from_utf8(reply.get(..reply.len().min(128))?).ok()?;
    let address = || crate::exposure::internal_address(text.split_whitespace().nth(2)?);
    if text.starts_with("-MOVED ") {
        address().map(Redirect::Moved)
    } else if text.starts_with("-ASK ") {
        address().map(Redirect::Ask)
    } else if ["-TRYAGAIN", "-CLUSTERDOWN", "-LOADING", "-MASTERDOWN"].iter().any(|p| text.starts_with(p)) {
        Some(Redirect::Wait)
    } else {
        None
    }
}

/// RESP framing: requests in, replies through (RESP2 and RESP3), built replies out.
mod frame {
    use super::*;

    /// The next request: an array of bulk strings, or an inline command. None at the end.
    pub async fn request<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<Vec<u8>>>> {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        let text = trim(&line);
        if !text.starts_with(b"*") {
            return Ok(Some(
                text.split(|b| b.is_ascii_whitespace()).filter(|a| !a.is_empty()).map(<[u8]>::to_vec).collect(),
            ));
        }
        let count = length(&text[1..], MAX_ARGS)?;
        let mut args = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let mut header = Vec::new();
            reader.read_until(b'\n', &mut header).await?;
            let header = trim(&header);
            if !header.starts_with(b"$") {
                return Err(invalid("expected a bulk string"));
            }
            let len = length(&header[1..], MAX_BULK)?;
            let mut arg = vec![0; len + 2];
            reader.read_exact(&mut arg).await?;
            arg.truncate(len);
            args.push(arg);
        }
        Ok(Some(args))
    }

    /// One whole reply, as its bytes.
    pub fn reply<'a, R>(
        reader: &'a mut R,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Vec<u8>>> + Send + 'a>>
    where
        R: AsyncBufRead + Unpin + Send,
    {
        Box::pin(async move {
            let mut out = Vec::new();
            if reader.read_until(b'\n', &mut out).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let line = trim(&out).to_vec();
            let (kind, rest) = line.split_first().ok_or_else(|| invalid("empty reply line"))?;
            match kind {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
                b'$' | b'!' | b'=' => {
                    if rest != b"-1" {
                        let len = length(rest, MAX_BULK)?;
                        let mut data = vec![0; len + 2];
                        reader.read_exact(&mut data).await?;
                        out.extend(data);
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    if rest != b"-1" {
                        let items = length(rest, MAX_ARGS)? * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                        for _ in 0..items {
                            out.extend(reply(reader).await?);
                        }
                    }
                    if *kind == b'|' {
                        // Attributes come before the reply they describe.
                        out.extend(reply(reader).await?);
                    }
                }
                _ => return Err(invalid("unknown reply type")),
            }
            Ok(out)
        })
    }

    fn trim(line: &[u8]) -> &[u8] {
        let end = line.iter().rposition(|b| !matches!(b, b'\r' | b'\n')).map_or(0, |i| i + 1);
        &line[..end]
    }

    fn length(text: &[u8], max: usize) -> io::Result<usize> {
        let n: i64 =
            std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or_else(|| invalid("bad length"))?;
        usize::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| invalid("length out of range"))
    }

    fn invalid(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.to_string())
    }

    pub fn bulk(bytes: &[u8]) -> Vec<u8> {
        [format!("${}\r\n", bytes.len()).into_bytes(), bytes.to_vec(), b"\r\n".to_vec()].concat()
    }

    pub fn integer(n: i64) -> Vec<u8> {
        format!(":{n}\r\n").into_bytes()
    }

    pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", items.len()).into_bytes();
        items.iter().for_each(|i| out.extend_from_slice(i));
        out
    }

    async fn parse(reply: &[u8]) -> Option<Reply> {
        let mut input = reply;
        resp::read_reply(&mut input).await.ok()
    }

    pub async fn integer_of(reply: &[u8]) -> Option<i64> {
        match parse(reply).await? {
            Reply::Integer(n) => Some(n),
            _ => None,
        }
    }

    /// The bulk strings of an array reply (KEYS, COMMAND GETKEYS).
    pub async fn bulk_items(reply: &[u8]) -> Vec<Vec<u8>> {
        match parse(reply).await {
            Some(Reply::Array(Some(items))) => {
                items.into_iter().filter_map(|i| if let Reply::Bulk(Some(b)) = i { Some(b) } else { None }).collect()
            }
            _ => Vec::new(),
        }
    }

    /// A SCAN reply: the next cursor and the keys.
    pub async fn scan_reply(reply: &[u8]) -> Option<(u64, Vec<Vec<u8>>)> {
        let Reply::Array(Some(parts)) = parse(reply).await? else { return None };
        let cursor = parts.first()?.as_text()?.parse().ok()?;
        let keys = match parts.get(1)? {
            Reply::Array(Some(keys)) => {
                keys.iter().filter_map(|k| if let Reply::Bulk(Some(b)) = k { Some(b.clone()) } else { None }).collect()
            }
            _ => Vec::new(),
        };
        Some((cursor, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_and_replies_are_framed_whole() {
        let mut input: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
        assert_eq!(frame::request(&mut input).await.expect("request"), Some(vec![b"GET".to_vec(), b"k".to_vec()]));
        assert_eq!(frame::request(&mut input).await.expect("inline"), Some(vec![b"PING".to_vec()]));
        let mut replies: &[u8] = b"*2\r\n$1\r\na\r\n%1\r\n+k\r\n:1\r\n-ERR x\r\n";
        assert_eq!(frame::reply(&mut replies).await.expect("array"), b"*2\r\n$1\r\na\r\n%1\r\n+k\r\n:1\r\n");
        assert_eq!(frame::reply(&mut replies).await.expect("error"), b"-ERR x\r\n");
    }

    #[test]
    fn keys_by_position_and_redirections() {
        let spec = KeySpec { first: 1, last: -1, step: 2, movable: false, readonly: false, blocking: false };
        let args: Vec<Vec<u8>> = ["MSET", "a", "1", "b", "2"].iter().map(|a| a.as_bytes().to_vec()).collect();
        assert_eq!(positional_keys(spec, &args), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(matches!(redirection(b"-MOVED 12 127.0.0.1:7000\r\n"), Some(Redirect::Moved(_))));
        assert!(matches!(redirection(b"-ASK 12 127.0.0.1:7000\r\n"), Some(Redirect::Ask(_))));
        assert!(redirection(b"-ERR nope\r\n").is_none());
    }
}
