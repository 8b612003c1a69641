//! [`Runtime`]: the table of supervised engine processes and their life cycle — start
//! (waiting for readiness, with typed failures), stop, crash, freeze, thaw, probe, and live
//! parameter changes.
//!
//! Operations on one node are serialised by a per-key lock, so a reconciler restarting a
//! node and an admin call stopping it cannot interleave; different nodes never wait for
//! each other. Probes and [`Runtime::command`] take no lock: they must stay cheap and
//! answer even mid-operation.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio::sync::watch;

use crate::capabilities;
use crate::config::{self, BufferLimits};
use crate::exposure::Exposure;
use crate::probe;
use crate::ready::ReadySignal;
use crate::replication::ReplicationInfo;
use crate::resp::{self, Reply};
use crate::spawner::Spawner;
use crate::warm::{self, WarmSettings};
use crate::{Binary, EngineKind, Engines, Health, NodeError, NodeKey, NodeSpec, Pace, RunningNode};

/// How long a node may take to answer its first probe.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Engine processes booting at once, per core. A boot is a few milliseconds of CPU. A
/// thousand booting at once (the emulator's restart at a thousand nodes) starved the
/// emulator's own threads: its reads waited up to 7.8 s for a connection, the records of
/// nodes already running lagged them by 4 s, and a Describe page took up to 2.3 s. Four
/// per core: the last node runs later (10.5 s after the restart against 8.7), but the
/// records follow the nodes, every resource is available sooner (12.0 s against 13.5-15.7)
/// and a page takes at most 120 ms; eight per core let the records lag 2 s again.
const BOOTS_PER_CORE: usize = 4;
/// Further tries at a free port for a warm node whose port was taken meanwhile.
const WARM_PORT_RETRIES: usize = 3;
/// A pool that still holds a node after a hand-out starts its replacement this much later,
/// out of the way of the create that took one: its answer, the client's first poll, its
/// first commands. Booting at once cost that create 5 ms beside a thousand nodes (boto3,
/// 3 × 15 creates alternated: 18.4-19.6 ms, deferred 12.9-14.7 ms). An emptied pool starts
/// at once: the next create needs it.
const REFILL_DELAY: Duration = Duration::from_millis(100);
/// How long a node's `SHUTDOWN` may take before it is signalled instead…
const SHUTDOWN_ASK: Duration = Duration::from_millis(250);
/// …and how soon it is asked again when it refuses (its first AOF is being written).
const SHUTDOWN_RETRY: Duration = Duration::from_millis(2);
/// How long a node gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Readiness polling interval: nodes come up in a few milliseconds…
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// …but a redis-like node says when it is ready (see `ready`): asking it is only the
/// fallback for a binary that never says.
const READY_FALLBACK_POLL: Duration = Duration::from_millis(50);
/// Attempts for a node on a free port whose port was taken between choosing and binding.
const PORT_ATTEMPTS: usize = 5;
/// Bound on one live-reconfiguration session, so a wedged node cannot hang the caller.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one [`Runtime::command`]: connect, AUTH, command and reply. Failover detection
/// asks every node of a group in turn, so a frozen node must cost little; the commands
/// sent (INFO, REPLICAOF, SET, ...) answer in microseconds on a live node.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Spawns and supervises engine processes. `Send + Sync`; share it behind an `Arc`.
///
/// Dropping it kills every node it still supervises (`kill_on_drop`, and the spawner
/// thread's exit fires `PDEATHSIG`); call [`Runtime::stop_all`] first for a clean stop.
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engines: Engines,
    spawner: Spawner,
    nodes: Mutex<HashMap<NodeKey, Arc<Node>>>,
    key_locks: Mutex<HashMap<NodeKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Ports chosen for nodes that are still starting, so two concurrent starts on port 0
    /// are never handed the same one.
    reserved_ports: Mutex<HashSet<(Ipv4Addr, u16)>>,
    start_timeout: Duration,
    /// The password of the runtime's own ACL user on every redis node (random per
    /// runtime; nodes never outlive it).
    control_password: String,
    /// Nodes started ahead of need, a pool per template (see [`warm`]); none until
    /// [`Runtime::keep_warm`].
    warm: Mutex<Vec<Arc<warm::Pool<Node>>>>,
    /// Where nodes listen for clients, and the host they are advertised as.
    exposure: Exposure,
    /// Moves when a node may have changed health without anyone probing it: a process
    /// exited (SIGCHLD), or a node was started, stopped, paused, resumed or killed.
    changes: watch::Sender<u64>,
    /// The nodes the runtime started, stopped, paused, resumed or killed since the last
    /// [`Runtime::news`].
    news: Mutex<HashSet<NodeKey>>,
    /// SIGCHLDs seen, and the count [`Runtime::reap`] last looked under: a child that
    /// exited, or was stopped or continued from outside, is told by SIGCHLD.
    child_signals: AtomicU64,
    reaped_at: AtomicU64,
    /// Whether the SIGCHLD listener feeding `changes` runs (started on first need).
    listening_for_exits: std::sync::Once,
    /// Replication bridges (see [`crate::bridge`]); dropping the table stops them.
    bridges: crate::bridge::Bridges,
    /// Held by every engine process from its spawn until it answers (see [`BOOTS_PER_CORE`]).
    booting: tokio::sync::Semaphore,
}

/// A handle on the runtime that does not keep it alive: long-running tasks of the runtime
/// (replication bridges) hold one, so dropping the [`Runtime`] still ends them.
#[derive(Clone)]
pub(crate) struct WeakRuntime(Weak<Inner>);

impl WeakRuntime {
    pub(crate) fn upgrade(&self) -> Option<Runtime> {
        self.0.upgrade().map(|inner| Runtime { inner })
    }
}

struct Node {
    info: RunningNode,
    engine: EngineKind,
    binary: Binary,
    dir: PathBuf,
    /// The unix socket the runtime reaches a redis node through.
    socket: PathBuf,
    /// How the runtime reaches a memcached node that speaks TLS only.
    tls_client: Option<Arc<rustls::ClientConfig>>,
    paused: AtomicBool,
    /// Stopped by a signal not the runtime's (as of the last SIGCHLD read).
    stopped: AtomicBool,
    /// Runs its timers at [`Pace::Quiet`] (it starts at redis's default, [`Pace::Lively`]).
    quiet: AtomicBool,
    /// Counted failed by the health monitor ([`Runtime::set_failed`]).
    failed: tokio::sync::watch::Sender<bool>,
    process: Mutex<Process>,
    /// The health monitor's connection to a node, kept between probes…
    held_check: probe::HeldCheck,
    /// …and to a redis-like node, between sweeps.
    swept: probe::SweptConnection,
    /// [`Runtime::command`]'s authenticated session, kept between commands: the
    /// reconciler asks every node something on every pass.
    held_session: tokio::sync::Mutex<Option<tokio::io::BufReader<tokio::net::UnixStream>>>,
}

/// `child` is `None` once the process has been reaped (then `exit` says how it ended) or
/// while a stop/kill owns it.
struct Process {
    child: Option<Child>,
    exit: Option<ExitStatus>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short, non-awaiting locks leaves consistent data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Runtime {
    pub fn new(engines: Engines) -> Self {
        Self {
            inner: Arc::new(Inner {
                engines,
                spawner: Spawner::new(),
                nodes: Mutex::default(),
                key_locks: Mutex::default(),
                reserved_ports: Mutex::default(),
                start_timeout: DEFAULT_START_TIMEOUT,
                control_password: random_secret(),
                warm: Mutex::default(),
                bridges: crate::bridge::Bridges::default(),
                booting: tokio::sync::Semaphore::new(BOOTS_PER_CORE * cores()),
                exposure: Exposure::default(),
                changes: watch::Sender::new(0),
                news: Mutex::default(),
                child_signals: AtomicU64::new(0),
                reaped_at: AtomicU64::new(0),
                listening_for_exits: std::sync::Once::new(),
            }),
        }
    }

    /// Moves whenever a node may have changed health on its own or at the runtime's hand
    /// (its process exited, or was stopped or continued by a signal from anywhere; it was
    /// started, stopped, paused, resumed or killed): a monitor learns of it at once, with no
    /// probe. Call from within a tokio runtime.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.listening_for_exits.call_once(|| {
            let weak = Arc::downgrade(&self.inner);
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
                Ok(mut exits) => {
                    tokio::spawn(async move {
                        while exits.recv().await.is_some() {
                            let Some(inner) = weak.upgrade() else { return };
                            inner.child_signals.fetch_add(1, Ordering::SeqCst);
                            inner.changed();
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "no SIGCHLD listener: exits are seen by probes only"),
            }
        });
        self.inner.changes.subscribe()
    }

    /// Whether the health monitor counts the node failed (past its threshold of unanswered
    /// probes). While it does, [`Runtime::command`] and [`Runtime::session`] fail at once,
    /// and those under way end, with [`NodeError::NotRunning`]: a reconcile waiting out its
    /// command's bound on a hung primary would hold its group's turn, and so the failover
    /// that follows, for that long. A node started again is not counted failed.
    pub fn set_failed(&self, key: &NodeKey, failed: bool) {
        if let Some(node) = self.inner.node(key) {
            node.failed.send_replace(failed);
        }
    }

    /// A node's health when the runtime knows it without asking the node: exited (reaped,
    /// or unknown) or paused (by the runtime, or stopped by a signal from elsewhere). None:
    /// only a probe can tell.
    pub fn known_health(&self, key: &NodeKey) -> Option<Health> {
        self.inner.node(key).map_or(Some(Health::Exited), |node| node.known_health())
    }

    /// The nodes whose health may have changed since the last call: what to look at when
    /// [`Runtime::changes`] moves. They are the nodes the runtime started, stopped, paused,
    /// resumed or killed, and, after a SIGCHLD, those whose process exited or was stopped
    /// or continued from outside (reaped here, so that [`Runtime::known_health`] reports
    /// them). So a look at the news costs what changed, not every node. Meant for one
    /// reader (the health monitor): a call takes the news it answers.
    pub fn news(&self) -> Vec<NodeKey> {
        let mut news = std::mem::take(&mut *lock(&self.inner.news));
        news.extend(self.reap());
        news.into_iter().collect()
    }

    /// Whether the node is supervised (crashed ones included, until stopped).
    pub fn supervises(&self, key: &NodeKey) -> bool {
        lock(&self.inner.nodes).contains_key(key)
    }

    /// After a SIGCHLD, reaps every node process that exited and reads which are stopped
    /// (SIGSTOP from anywhere); answers the nodes whose known health this changed. Without
    /// one since the last look there is nothing new to read: the runtime's own starts and
    /// stops move `changes` too, and asking each of a thousand nodes at every one of them
    /// cost every create a millisecond.
    fn reap(&self) -> Vec<NodeKey> {
        let signals = self.inner.child_signals.load(Ordering::SeqCst);
        if self.inner.reaped_at.swap(signals, Ordering::SeqCst) == signals {
            return Vec::new();
        }
        // One question for all children first: with no exit left to reap (the runtime's
        // own stops reap theirs) and none stopped, no node needs asking.
        let any_exited = child_reports(libc::P_ALL, 0, libc::WEXITED).is_some();
        let any_stopped = child_reports(libc::P_ALL, 0, libc::WSTOPPED) == Some(libc::CLD_STOPPED);
        let nodes: Vec<Arc<Node>> = lock(&self.inner.nodes).values().cloned().collect();
        let mut changed = Vec::new();
        for node in nodes {
            let before = node.known_health();
            let exited = if any_exited { node.has_exited() } else { node.reaped() };
            if !exited {
                let stopped =
                    any_stopped && child_reports(libc::P_PID, node.info.pid, libc::WSTOPPED) == Some(libc::CLD_STOPPED);
                node.stopped.store(stopped, Ordering::SeqCst);
            }
            if node.known_health() != before {
                changed.push(node.info.key.clone());
            }
        }
        changed
    }

    /// Where nodes listen for clients and the host they are advertised as (default: this
    /// machine's loopback only).
    pub fn with_exposure(mut self, exposure: Exposure) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.exposure = exposure;
        }
        self
    }

    pub fn exposure(&self) -> &Exposure {
        &self.inner.exposure
    }

    /// How long [`Runtime::start`] waits for a node to answer (default 20 s).
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.start_timeout = timeout;
        }
        self
    }

    pub fn engines(&self) -> &Engines {
        &self.inner.engines
    }

    pub(crate) fn downgrade(&self) -> WeakRuntime {
        WeakRuntime(Arc::downgrade(&self.inner))
    }

    pub(crate) fn bridges(&self) -> &crate::bridge::Bridges {
        &self.inner.bridges
    }

    /// Starts the node described by `spec` and returns once it answers its engine's probe.
    /// A node already running under the same key is stopped first (restart in place: keep
    /// `spec.port` to keep the endpoint).
    pub async fn start(&self, spec: NodeSpec) -> Result<RunningNode, NodeError> {
        let _guard = self.inner.key_lock(&spec.key).lock_owned().await;
        if let Some(old) = self.inner.remove(&spec.key) {
            tracing::info!(node = %spec.key, pid = old.info.pid, "replacing running node");
            old.terminate(self.inner.control()).await;
        }
        if let Some(node) = self.inner.claim_warm(&spec).await {
            let info = node.info.clone();
            tracing::info!(node = %spec.key, pid = info.pid, port = info.port, from = "warm", to = "running", "node started");
            self.inner.insert(spec.key.clone(), node);
            self.keep_every_write(&spec).await;
            return Ok(info);
        }
        let binary =
            self.inner.engines.binary(spec.engine).cloned().ok_or(NodeError::BinaryMissing { engine: spec.engine })?;
        let spec = with_own_dir(spec).await?;

        let attempts = if spec.port == 0 { PORT_ATTEMPTS } else { 1 };
        for attempt in 1..=attempts {
            let port = if spec.port == 0 { self.inner.reserve_port(spec.address)? } else { spec.port };
            let launched = self.inner.launch(&spec, &binary, port).await;
            if spec.port == 0 {
                lock(&self.inner.reserved_ports).remove(&(spec.address, port));
            }
            match launched {
                Ok(node) => {
                    let info = node.info.clone();
                    tracing::info!(node = %spec.key, engine = %spec.engine, pid = info.pid,
                        address = %info.address, port, from = "stopped", to = "running", "node started");
                    self.inner.insert(spec.key.clone(), node);
                    self.keep_every_write(&spec).await;
                    return Ok(info);
                }
                Err(Launch::PortTaken) if attempt < attempts => {
                    tracing::debug!(node = %spec.key, port, "free port was taken before the node bound it; retrying");
                }
                Err(Launch::PortTaken) => {
                    return Err(NodeError::PortInUse { address: spec.address, port });
                }
                Err(Launch::Failed(error)) => {
                    tracing::warn!(node = %spec.key, %error, "node failed to start");
                    return Err(error);
                }
            }
        }
        Err(NodeError::PortInUse { address: spec.address, port: spec.port })
    }

    /// Turns a redis node's append-only file on if it started without one (see
    /// `config::render_redis`): from here on every write it acknowledges survives a crash of
    /// the emulator.
    async fn keep_every_write(&self, spec: &NodeSpec) {
        // Started on its AOF, it is on: asking again cost each of a thousand nodes restarted
        // together a round trip, and 401 of them the command's 500 ms timeout.
        if !spec.engine.is_redis_like() || config::has_aof(&spec.dir) {
            return;
        }
        match self.command(&spec.key, &["CONFIG", "SET", "appendonly", "yes"]).await {
            Ok(Reply::Error(error)) => tracing::warn!(node = %spec.key, error, "turning the AOF on was refused"),
            Err(error) => tracing::warn!(node = %spec.key, %error, "turning the AOF on failed"),
            Ok(_) => {}
        }
    }

    /// Keeps, for each of `pools`, `size` nodes of its `template` idle and warm from now
    /// on, replacing those handed out (see [`warm`]). Replaces earlier pools.
    pub async fn keep_warm(&self, pools: Vec<WarmSettings>) {
        self.stop_warm().await;
        for settings in &pools {
            let _ = tokio::fs::remove_dir_all(&settings.root).await;
        }
        let pools = pools.into_iter().filter(|s| s.size > 0).map(|s| Arc::new(warm::Pool::new(s)));
        *lock(&self.inner.warm) = pools.collect();
        self.inner.refill();
    }

    /// Stops every idle warm node and keeps none from now on.
    pub async fn stop_warm(&self) {
        let pools = std::mem::take(&mut *lock(&self.inner.warm));
        for pool in pools {
            for node in pool.drain() {
                node.terminate(self.inner.control()).await;
            }
            let _ = tokio::fs::remove_dir_all(&pool.settings.root).await;
        }
    }

    /// How many idle warm nodes the pools keep when full.
    pub fn warm_nodes_wanted(&self) -> usize {
        lock(&self.inner.warm).iter().map(|pool| pool.settings.size).sum()
    }

    /// The idle warm nodes.
    pub fn warm_nodes(&self) -> Vec<warm::WarmNode> {
        let pools = lock(&self.inner.warm).clone();
        pools
            .iter()
            .flat_map(|pool| {
                let cluster_mode = pool.cluster_mode();
                pool.list(|node: &Node, ready| warm::WarmNode {
                    engine: node.engine,
                    pid: node.info.pid,
                    port: node.info.port,
                    cluster_mode,
                    ready,
                })
            })
            .collect()
    }

    /// Stops a node gracefully, keeping its data (see `Node::terminate`: `SHUTDOWN`, then
    /// SIGTERM, up to 2 s to exit, then SIGKILL); returns once the process is reaped and its
    /// port free. An unknown key is already stopped.
    pub async fn stop(&self, key: &NodeKey) -> Result<(), NodeError> {
        let _guard = self.inner.key_lock(key).lock_owned().await;
        if let Some(node) = self.inner.remove(key) {
            node.terminate(self.inner.control()).await;
            tracing::info!(node = %key, from = "running", to = "stopped", "node stopped");
        }
        Ok(())
    }

    /// Stops a node whose data goes with it (its cluster is deleted): SIGKILL, with nothing
    /// to save, rather than a shutdown that may first wait for its AOF to be written (a
    /// replica that just synced: 50 ms of every group deleted right after its creation).
    /// Returns once the process is reaped and its port free. An unknown key is already gone.
    pub async fn discard(&self, key: &NodeKey) -> Result<(), NodeError> {
        let _guard = self.inner.key_lock(key).lock_owned().await;
        if let Some(node) = self.inner.remove(key) {
            node.kill_tree().await;
            node.remove_socket_link();
            tracing::info!(node = %key, from = "running", to = "discarded", "node stopped");
        }
        Ok(())
    }

    /// SIGKILLs a node as a crash would: no shutdown, and it stays supervised so probes
    /// report [`Health::Exited`] until it is started again or stopped.
    pub async fn kill(&self, key: &NodeKey) -> Result<(), NodeError> {
        let _guard = self.inner.key_lock(key).lock_owned().await;
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        if node.kill_tree().await.is_some() {
            tracing::info!(node = %key, pid = node.info.pid, from = "running", to = "exited", "node killed");
        }
        self.inner.changed_node(key);
        Ok(())
    }

    /// Freezes a node with SIGSTOP: alive, holding its port, answering nothing.
    pub async fn pause(&self, key: &NodeKey) -> Result<(), NodeError> {
        let _guard = self.inner.key_lock(key).lock_owned().await;
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        node.paused.store(true, Ordering::SeqCst);
        if !node.signal(libc::SIGSTOP) {
            node.paused.store(false, Ordering::SeqCst);
            return Err(NodeError::NotRunning { key: key.clone(), health: Health::Exited });
        }
        tracing::info!(node = %key, from = "running", to = "paused", "node paused");
        self.inner.changed_node(key);
        Ok(())
    }

    /// Thaws a node frozen by [`Runtime::pause`] (SIGCONT).
    pub async fn resume(&self, key: &NodeKey) -> Result<(), NodeError> {
        let _guard = self.inner.key_lock(key).lock_owned().await;
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        if !node.signal(libc::SIGCONT) {
            return Err(NodeError::NotRunning { key: key.clone(), health: Health::Exited });
        }
        node.paused.store(false, Ordering::SeqCst);
        node.stopped.store(false, Ordering::SeqCst);
        tracing::info!(node = %key, from = "paused", to = "running", "node resumed");
        self.inner.changed_node(key);
        Ok(())
    }

    /// Health checks of `keys`, all at once, each bounded by `timeout` (see
    /// [`Runtime::probe`]). Redis-like nodes are checked in one [`probe::sweep`] on a
    /// blocking thread, so that hundreds of answers wake the async runtime once, not once
    /// each; the others as [`Runtime::probe`] does. A node stopped or replaced while its
    /// check was under way (or before it began) gets no answer: its failed check tells of
    /// a deliberate stop, not a crash, and taken for one it would be recovered.
    pub async fn probe_all(&self, keys: Vec<NodeKey>, timeout: Duration) -> Vec<(NodeKey, Health)> {
        let (mut swept, mut others) = (Vec::new(), Vec::new());
        for key in keys {
            match self.inner.node(&key) {
                Some(node) if node.engine.is_redis_like() && node.known_health().is_none() => swept.push((key, node)),
                Some(node) => others.push((key, node)),
                None => {}
            }
        }
        let others = futures::future::join_all(others.into_iter().map(|(key, node)| async move {
            let health = match node.known_health() {
                Some(known) => known,
                None => node.checked(node.held_check.check(node.probe_target(), timeout).await.is_ok()),
            };
            (key, health, node)
        }));
        let sweep = async move {
            if swept.is_empty() {
                return Vec::new();
            }
            let sweep = tokio::task::spawn_blocking(move || {
                let targets: Vec<_> = swept.iter().map(|(_, node)| (&node.swept, node.socket.as_path())).collect();
                let passed = probe::sweep(&targets, timeout);
                swept.into_iter().zip(passed).map(|((key, node), passed)| (key, node.checked(passed), node)).collect()
            });
            // The sweep panics only on a bug; its nodes are looked at again on the next tick.
            sweep.await.unwrap_or_default()
        };
        let (others, swept) = tokio::join!(others, sweep);
        others
            .into_iter()
            .chain(swept)
            .filter(|(key, _, node)| self.inner.node(key).is_some_and(|now| Arc::ptr_eq(&now, node)))
            .map(|(key, health, _)| (key, health))
            .collect()
    }

    /// One health check, bounded by `timeout`. An unknown key reports [`Health::Exited`].
    pub async fn probe(&self, key: &NodeKey, timeout: Duration) -> Health {
        let Some(node) = self.inner.node(key) else { return Health::Exited };
        // An exit is known from SIGCHLD ([`Runtime::reap`]); one since shows below.
        if let Some(known) = node.known_health() {
            return known;
        }
        node.checked(node.held_check.check(node.probe_target(), timeout).await.is_ok())
    }

    /// Applies changed parameter values to a running node without a restart. Returns the
    /// names that could not be applied live and need a restart: for redis, those the node
    /// refused with `CONFIG SET` (immutable ones such as `databases`); for memcached, all
    /// of them. Names that are no setting of the engine binary at all (AWS-only ones such
    /// as `reserved-memory-percent`) are neither applied nor returned: a restart would not
    /// apply them either.
    pub async fn apply_parameters(
        &self,
        key: &NodeKey,
        changes: &[(String, String)],
    ) -> Result<Vec<String>, NodeError> {
        let _guard = self.inner.key_lock(key).lock_owned().await;
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        if node.engine == EngineKind::Memcached {
            return Ok(changes.iter().map(|(name, _)| name.clone()).collect());
        }
        if node.has_exited() {
            return Err(NodeError::NotRunning { key: key.clone(), health: Health::Exited });
        }
        if node.paused.load(Ordering::SeqCst) {
            return Err(NodeError::NotRunning { key: key.clone(), health: Health::Paused });
        }
        let settings = capabilities::redis_settings(&self.inner.spawner, &node.binary).await;
        tokio::time::timeout(APPLY_TIMEOUT, apply_redis(&node, self.control_credentials(), &settings, changes))
            .await
            .map_err(|_| NodeError::TimedOut { after: APPLY_TIMEOUT })?
    }

    /// Runs one command on a redis/valkey node (authenticating with the node's
    /// `requirepass` directive if it has one) and returns the reply; an error reply is
    /// `Ok(Reply::Error(..))`, for the caller to judge. A fresh connection per call, bounded
    /// by 500 ms so a frozen node yields [`NodeError::TimedOut`] rather than a hang (ended
    /// at once when the node is counted failed, see [`Runtime::set_failed`]). Like
    /// probes it takes no per-node lock: failover detection must get its quick answer even
    /// while a slow operation on the same node (a start waiting for readiness) holds it.
    pub async fn command(&self, key: &NodeKey, args: &[&str]) -> Result<Reply, NodeError> {
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        if !node.engine.is_redis_like() {
            return Err(NodeError::Protocol(format!("node {key} is {}, which does not speak RESP", node.engine)));
        }
        if node.has_exited() {
            return Err(NodeError::NotRunning { key: key.clone(), health: Health::Exited });
        }
        if node.paused.load(Ordering::SeqCst) {
            return Err(NodeError::NotRunning { key: key.clone(), health: Health::Paused });
        }
        // The node's kept session, when no other command holds it; else one of its own. A
        // failed or timed-out exchange drops the kept one (its reply may still come).
        let result = match node.held_session.try_lock() {
            Ok(mut held) => {
                let result = node
                    .bounded(async {
                        if held.is_none() {
                            *held = Some(probe::redis_session(&node.socket, self.control_credentials()).await?);
                        }
                        match held.as_mut() {
                            Some(session) => resp::command(session, args).await,
                            None => Err(NodeError::Protocol("no session".to_string())),
                        }
                    })
                    .await;
                if result.is_err() {
                    *held = None;
                }
                result
            }
            Err(_) => {
                node.bounded(async {
                    let mut session = probe::redis_session(&node.socket, self.control_credentials()).await?;
                    resp::command(&mut session, args).await
                })
                .await
            }
        };
        match result {
            // The failure may be the process dying meanwhile; say so rather than "refused".
            Err(_) if node.has_exited() => Err(NodeError::NotRunning { key: key.clone(), health: Health::Exited }),
            other => other,
        }
    }

    /// Sets how often a redis node runs its timers (`hz`); nothing when it already runs at
    /// `pace`, and nothing for memcached. A node (re)started runs at [`Pace::Lively`].
    pub async fn pace(&self, key: &NodeKey, pace: Pace) -> Result<(), NodeError> {
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        let quiet = pace == Pace::Quiet;
        if !node.engine.is_redis_like() || node.quiet.load(Ordering::SeqCst) == quiet {
            return Ok(());
        }
        let hz = if quiet { "1" } else { "10" };
        match self.command(key, &["CONFIG", "SET", "hz", hz]).await? {
            Reply::Error(error) => Err(NodeError::Protocol(format!("CONFIG SET hz {hz}: {error}"))),
            _ => {
                node.quiet.store(quiet, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// Runs one memcached command with a one-line answer on a memcached node, within the
    /// same bound as [`Runtime::command`].
    pub async fn memcached_command(&self, key: &NodeKey, command: &str) -> Result<String, NodeError> {
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        if node.engine != EngineKind::Memcached {
            return Err(NodeError::Protocol(format!("node {key} is {}, not memcached", node.engine)));
        }
        let exchange = probe::memcached_command(node.info.address, node.info.port, node.tls_client.as_ref(), command);
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| NodeError::TimedOut { after: COMMAND_TIMEOUT })?
    }

    /// A connection to a redis/valkey node for a run of commands (a slot migration), made
    /// within the same bound as [`Runtime::command`].
    pub async fn session(&self, key: &NodeKey) -> Result<crate::cluster::Session, NodeError> {
        let node = self.inner.node(key).ok_or_else(|| NodeError::NotFound { key: key.clone() })?;
        if node.has_exited() || node.paused.load(Ordering::SeqCst) {
            let health = if node.has_exited() { Health::Exited } else { Health::Paused };
            return Err(NodeError::NotRunning { key: key.clone(), health });
        }
        let stream = node.bounded(probe::redis_session(&node.socket, self.control_credentials())).await?;
        Ok(crate::cluster::Session::new(stream))
    }

    /// The runtime's own ACL user and its password on every redis node, whatever the
    /// node's users (AUTH token, user groups) are: for commands that pass them on to
    /// another node (MIGRATE), and that replicas use to reach their primary.
    pub fn control_credentials(&self) -> (&str, &str) {
        self.inner.control()
    }

    /// Changes a running redis node's passwords live (an AUTH token rotation): the
    /// `default` user accepts exactly `passwords` (none: no password). Connections already
    /// authenticated stay so, as on AWS. Errors never quote a password.
    pub async fn set_passwords(&self, key: &NodeKey, passwords: &[String]) -> Result<(), NodeError> {
        let mut session = self.session(key).await?;
        let mut rule: Vec<String> = ["ACL", "SETUSER", "default", "on", "resetpass"].map(String::from).to_vec();
        match passwords {
            [] => rule.push("nopass".to_string()),
            _ => rule.extend(passwords.iter().map(|p| format!(">{p}"))),
        }
        rule.extend(["~*", "&*", "+@all"].map(String::from));
        if session.command(&rule).await.is_err() {
            return Err(NodeError::Protocol(format!("ACL SETUSER refused by node {key}")));
        }
        tracing::info!(node = %key, passwords = passwords.len(), "node passwords changed");
        Ok(())
    }

    /// The node's `INFO replication`, parsed; bounded like [`Runtime::command`].
    pub async fn replication(&self, key: &NodeKey) -> Result<ReplicationInfo, NodeError> {
        match self.command(key, &["INFO", "replication"]).await? {
            Reply::Bulk(Some(text)) => ReplicationInfo::parse(&String::from_utf8_lossy(&text)),
            other => Err(NodeError::Protocol(format!("INFO replication answered {other:?}"))),
        }
    }

    /// Every supervised node (crashed ones included, until stopped or restarted).
    pub fn running(&self) -> Vec<RunningNode> {
        let mut nodes: Vec<RunningNode> = lock(&self.inner.nodes).values().map(|n| n.info.clone()).collect();
        nodes.sort_by(|a, b| a.key.cmp(&b.key));
        nodes
    }

    /// How many nodes are supervised.
    pub fn count(&self) -> usize {
        lock(&self.inner.nodes).len()
    }

    /// The keys of the supervised nodes, in no order.
    pub fn keys(&self) -> Vec<NodeKey> {
        lock(&self.inner.nodes).keys().cloned().collect()
    }

    pub fn get(&self, key: &NodeKey) -> Option<RunningNode> {
        self.inner.node(key).map(|n| n.info.clone())
    }

    /// Stops every node, concurrently; returns when all are gone.
    pub async fn stop_all(&self) {
        let keys: Vec<NodeKey> = lock(&self.inner.nodes).keys().cloned().collect();
        let mut tasks = tokio::task::JoinSet::new();
        for key in keys {
            let inner = self.inner.clone();
            tasks.spawn(async move {
                let _guard = inner.key_lock(&key).lock_owned().await;
                if let Some(node) = inner.remove(&key) {
                    node.terminate(inner.control()).await;
                    tracing::info!(node = %key, from = "running", to = "stopped", "node stopped");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn apply_redis(
    node: &Node,
    control: (&str, &str),
    settings: &capabilities::RedisSettings,
    changes: &[(String, String)],
) -> Result<Vec<String>, NodeError> {
    let mut session = probe::redis_session(&node.socket, control).await?;
    let mut not_applied = Vec::new();
    let mut limits: Option<(BufferLimits, Vec<String>)> = None;
    for (name, value) in changes {
        if name.to_ascii_lowercase().starts_with("client-output-buffer-limit-") {
            if limits.is_none() {
                let current =
                    match resp::command(&mut session, &["CONFIG", "GET", "client-output-buffer-limit"]).await? {
                        Reply::Array(Some(items)) => items.get(1).and_then(Reply::as_text).unwrap_or_default(),
                        _ => String::new(),
                    };
                limits = Some((BufferLimits::parse(&current), Vec::new()));
            }
            if let Some((limits, names)) = limits.as_mut()
                && limits.set_from_aws(name, value)
            {
                names.push(name.clone());
            }
            continue;
        }
        if !config::redis_parameter_allowed(name, settings) {
            tracing::debug!(node = %node.info.key, parameter = %name, "not a setting of this redis binary; skipped");
            continue;
        }
        let value = config::redis_value(name, value);
        match resp::command(&mut session, &["CONFIG", "SET", name.as_str(), &value]).await? {
            Reply::Simple(_) => {
                tracing::info!(node = %node.info.key, parameter = %name, value = %value, "parameter applied live")
            }
            other => {
                tracing::info!(node = %node.info.key, parameter = %name, reply = ?other, "parameter needs a restart");
                not_applied.push(name.clone());
            }
        }
    }
    if let Some((limits, names)) = limits
        && let Some(value) = limits.render_changed()
    {
        match resp::command(&mut session, &["CONFIG", "SET", "client-output-buffer-limit", value.as_str()]).await? {
            Reply::Simple(_) => {}
            _ => not_applied.extend(names),
        }
    }
    Ok(not_applied)
}

enum Launch {
    /// The chosen port was bound by someone else first.
    PortTaken,
    Failed(NodeError),
}

impl From<std::io::Error> for Launch {
    fn from(error: std::io::Error) -> Self {
        Launch::Failed(NodeError::Io(error))
    }
}

impl Inner {
    fn changed(&self) {
        self.changes.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Tells the news of `key` (see [`Runtime::news`]).
    fn changed_node(&self, key: &NodeKey) {
        lock(&self.news).insert(key.clone());
        self.changed();
    }

    fn key_lock(&self, key: &NodeKey) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.key_locks).entry(key.clone()).or_default().clone()
    }

    fn node(&self, key: &NodeKey) -> Option<Arc<Node>> {
        lock(&self.nodes).get(key).cloned()
    }

    fn insert(&self, key: NodeKey, node: Node) {
        lock(&self.nodes).insert(key.clone(), Arc::new(node));
        self.changed_node(&key);
    }

    fn remove(&self, key: &NodeKey) -> Option<Arc<Node>> {
        let removed = lock(&self.nodes).remove(key);
        if removed.is_some() {
            self.changed_node(key);
        }
        removed
    }

    /// A port that is free on `address` right now and not promised to another node (see
    /// [`crate::ports`]).
    fn reserve_port(&self, address: Ipv4Addr) -> Result<u16, NodeError> {
        for _ in 0..64 {
            let port = crate::ports::free_port(address)?;
            let in_use_by_node = lock(&self.nodes).values().any(|n| n.info.address == address && n.info.port == port);
            if !in_use_by_node && lock(&self.reserved_ports).insert((address, port)) {
                return Ok(port);
            }
        }
        Err(NodeError::Io(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port found")))
    }

    /// Starts nodes for the warm pools in the background until they are full.
    fn refill(self: &Arc<Self>) {
        let pools = lock(&self.warm).clone();
        for pool in pools {
            self.refill_pool(&pool);
        }
    }

    fn refill_pool(self: &Arc<Self>, pool: &Arc<warm::Pool<Node>>) {
        let Some(binary) = self.engines.binary(pool.settings.template.engine).cloned() else { return };
        for _ in 0..pool.missing() {
            pool.starting.fetch_add(1, Ordering::SeqCst);
            let (inner, pool, binary) = (self.clone(), pool.clone(), binary.clone());
            tokio::spawn(async move {
                let started_at = Instant::now();
                // A port taken between the check and the bind (anything on the machine may
                // bind one) is no reason to leave the pool short until the next hand-out.
                let mut started = inner.launch_warm(&pool, &binary).await;
                for _ in 0..WARM_PORT_RETRIES {
                    if !matches!(started, Err(Launch::PortTaken)) {
                        break;
                    }
                    started = inner.launch_warm(&pool, &binary).await;
                }
                pool.starting.fetch_sub(1, Ordering::SeqCst);
                let still_ours = inner.keeps(&pool);
                match started {
                    Ok(node) if still_ours => {
                        tracing::debug!(node = %node.info.key, pid = node.info.pid, "warm node ready");
                        pool.put(started_at, node);
                    }
                    Ok(node) => node.terminate(inner.control()).await,
                    // Not retried here: the next hand-out tries again.
                    Err(Launch::Failed(error)) => tracing::warn!(%error, "starting a warm node failed"),
                    Err(Launch::PortTaken) => {
                        tracing::warn!("a warm node's port was taken at every try; the next hand-out retries")
                    }
                }
            });
        }
    }

    /// Whether `pool` is still one the runtime keeps (not stopped or replaced since).
    fn keeps(&self, pool: &Arc<warm::Pool<Node>>) -> bool {
        lock(&self.warm).iter().any(|p| Arc::ptr_eq(p, pool))
    }

    /// Refills `pool` after a hand-out: at once when it is empty, else after
    /// [`REFILL_DELAY`] (unless the pool was replaced meanwhile).
    fn refill_after_hand_out(self: &Arc<Self>, pool: &Arc<warm::Pool<Node>>) {
        if pool.is_empty() {
            self.refill_pool(pool);
            return;
        }
        let (inner, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            tokio::time::sleep(REFILL_DELAY).await;
            if inner.keeps(&pool) {
                inner.refill_pool(&pool);
            }
        });
    }

    /// Starts one node for the warm pool, on a free port, and runs the pool's `prepare`
    /// commands on it.
    async fn launch_warm(&self, pool: &warm::Pool<Node>, binary: &Binary) -> Result<Node, Launch> {
        let spec = with_own_dir(pool.next_spec()).await?;
        let port = self.reserve_port(spec.address).map_err(Launch::Failed)?;
        let launched = self.launch(&spec, binary, port).await;
        lock(&self.reserved_ports).remove(&(spec.address, port));
        let node = launched?;
        for command in &pool.settings.prepare {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            let run = async {
                let mut session = probe::redis_session(&node.socket, self.control()).await?;
                resp::command(&mut session, &args).await
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
                Ok(Ok(Reply::Simple(_))) => {}
                outcome => {
                    node.terminate(self.control()).await;
                    let error = NodeError::Protocol(format!("warm node refused {args:?}: {outcome:?}"));
                    return Err(Launch::Failed(error));
                }
            }
        }
        Ok(node)
    }

    /// A warm node for `spec` when the pool has one that fits, moved to the spec's
    /// directory and key with the spec's memory limit; None to start one as usual.
    async fn claim_warm(self: &Arc<Self>, spec: &NodeSpec) -> Option<Node> {
        let pool = lock(&self.warm).iter().find(|p| p.fits(spec)).cloned()?;
        while let Some(mut node) = pool.take() {
            self.refill_after_hand_out(&pool);
            if node.has_exited() {
                continue;
            }
            let moved = warm::move_dir(&node.dir, &spec.dir, &node.socket);
            let (dir, socket) = match moved {
                Ok(paths) => paths,
                Err(error) => {
                    tracing::warn!(node = %spec.key, %error, "handing over a warm node failed");
                    node.terminate(self.control()).await;
                    return None;
                }
            };
            node.info.key = spec.key.clone();
            node.dir = dir;
            node.socket = socket;
            if spec.max_memory_bytes != pool.settings.template.max_memory_bytes {
                let bytes = spec.max_memory_bytes.to_string();
                let set = async {
                    let mut session = probe::redis_session(&node.socket, self.control()).await?;
                    resp::command(&mut session, &["CONFIG", "SET", "maxmemory", &bytes]).await
                };
                let outcome = tokio::time::timeout(COMMAND_TIMEOUT, set).await;
                if !matches!(outcome, Ok(Ok(Reply::Simple(_)))) {
                    tracing::warn!(node = %spec.key, ?outcome, "a warm node refused its memory limit; starting one instead");
                    node.terminate(self.control()).await;
                    let _ = tokio::fs::remove_dir_all(&node.dir).await;
                    return None;
                }
            }
            return Some(node);
        }
        None
    }

    fn control(&self) -> (&str, &str) {
        (crate::CONTROL_USER, &self.control_password)
    }

    async fn launch(&self, spec: &NodeSpec, binary: &Binary, port: u16) -> Result<Node, Launch> {
        // Never closed: an error cannot happen, and would only mean booting unbounded.
        let _booting = self.booting.acquire().await.ok();
        let began = Instant::now();
        let console_path = spec.dir.join(config::CONSOLE_LOG_FILE);
        let console = std::fs::File::create(&console_path)?;
        let redis_log = spec.dir.join(config::REDIS_LOG_FILE);
        // Only what this start writes to the (appended) redis log explains its failure.
        let log_offset = std::fs::metadata(&redis_log).map(|m| m.len()).unwrap_or(0);

        let mut command = self.spawner.command(&binary.path);
        let socket = config::control_socket(&spec.dir);
        let mut ready = None;
        if spec.engine.is_redis_like() {
            if let Some(parent) = socket.parent()
                && !parent.starts_with(&spec.dir)
            {
                // The fallback directory for sockets whose path would be too long.
                use std::os::unix::fs::DirBuilderExt as _;
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
            }
            let signal = ReadySignal::bind(config::ready_socket(&spec.dir))?;
            command.env("NOTIFY_SOCKET", signal.path());
            ready = Some(signal);
            let settings = capabilities::redis_settings(&self.spawner, binary).await;
            let conf = spec.dir.join(config::REDIS_CONFIG_FILE);
            // The config may hold passwords (masterauth, the default user's).
            let tls = match &spec.tls {
                Some(ca) => Some(ca.write_node_files(&spec.dir, spec.address).map_err(Launch::Failed)?),
                None => None,
            };
            let rendered =
                config::render_redis(spec, port, &self.exposure, &settings, tls.as_ref(), &self.control_password);
            crate::tls::write_private(&conf, rendered.as_bytes())?;
            command.arg(&conf);
        } else {
            let options = capabilities::memcached_options(binary).await;
            // SAFETY: geteuid(2) cannot fail and has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let tls = match &spec.tls {
                Some(ca) => Some(ca.write_node_files(&spec.dir, spec.address).map_err(Launch::Failed)?),
                None => None,
            };
            command.args(config::memcached_args(spec, port, &self.exposure, &options, root, tls.as_ref()));
        }
        let tls_client = match &spec.tls {
            Some(ca) if !spec.engine.is_redis_like() => Some(ca.client_config().map_err(Launch::Failed)?),
            _ => None,
        };
        command.current_dir(&spec.dir).stdout(Stdio::from(console.try_clone()?)).stderr(Stdio::from(console));

        let mut child = self.spawner.spawn(command).await?;
        let Some(pid) = child.id() else {
            return Err(Launch::Failed(NodeError::Io(std::io::Error::other("engine process vanished at spawn"))));
        };
        let spawned = began.elapsed();

        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                let mut output = config::tail(&console_path, 2048);
                let log = tail_from(&redis_log, log_offset, 2048);
                if !log.is_empty() {
                    output = if output.is_empty() { log } else { format!("{output}\n{log}") };
                }
                if output.contains("Address already in use") {
                    return Err(Launch::PortTaken);
                }
                // Redis quotes a bad config line back; that line may hold a password.
                let output = redact(&output, spec);
                return Err(Launch::Failed(NodeError::Exited { status, stderr: output }));
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(Launch::Failed(NodeError::TimedOut { after: self.start_timeout }));
            }
            let budget = (deadline - now).min(Duration::from_millis(250));
            let target = probe::Target {
                engine: spec.engine,
                address: spec.address,
                port,
                socket: &socket,
                tls: tls_client.as_ref(),
            };
            if let Ok(Ok(())) = tokio::time::timeout(budget, probe::check(target)).await {
                break;
            }
            match &ready {
                Some(signal) => {
                    let _ = tokio::time::timeout(READY_FALLBACK_POLL, signal.ready()).await;
                }
                None => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
        tracing::debug!(node = %spec.key, ?spawned, answered = ?began.elapsed(), "node launched");

        Ok(Node {
            info: RunningNode {
                key: spec.key.clone(),
                engine: spec.engine,
                address: spec.address,
                port,
                pid,
                engine_version: binary.version.clone(),
            },
            engine: spec.engine,
            binary: binary.clone(),
            dir: spec.dir.clone(),
            socket,
            tls_client,
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            failed: tokio::sync::watch::Sender::new(false),
            process: Mutex::new(Process { child: Some(child), exit: None }),
            held_check: probe::HeldCheck::default(),
            swept: probe::SweptConnection::default(),
            held_session: tokio::sync::Mutex::default(),
        })
    }
}

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What `waitid` has to report of our child `id` (`P_PID`), or of any of our children
/// (`P_ALL`), among `events` (`WEXITED`, `WSTOPPED`): its `si_code` (`CLD_EXITED`,
/// `CLD_STOPPED`, ...). `WNOWAIT` leaves the report to be read again, and an exit to be
/// reaped by the child's owner. Reading `/proc/<pid>/stat` instead cost 10 ms at a thousand
/// nodes, on a runtime thread, at every SIGCHLD (every delete).
fn child_reports(which: libc::idtype_t, id: libc::id_t, events: libc::c_int) -> Option<libc::c_int> {
    // SAFETY: an all-zero siginfo_t is a valid value, and waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid siginfo_t to write to; WNOHANG keeps the call from blocking.
    let read = unsafe { libc::waitid(which, id, &mut info, events | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: waitid succeeded, so `info` holds a SIGCHLD's fields (si_pid 0: nothing to report).
    (read == 0 && unsafe { info.si_pid() } != 0).then_some(info.si_code)
}

/// `spec` with its directory created and made absolute, so that the config, the process's
/// working directory and the orphan check (`orphans`) all agree.
async fn with_own_dir(spec: NodeSpec) -> std::io::Result<NodeSpec> {
    tokio::fs::create_dir_all(&spec.dir).await?;
    let dir = tokio::fs::canonicalize(&spec.dir).await?;
    Ok(NodeSpec { dir, ..spec })
}

/// `text` with every secret of `spec` (passwords, secret directive values) blanked out.
fn redact(text: &str, spec: &NodeSpec) -> String {
    let secrets = spec.passwords.iter().map(String::as_str).chain(
        spec.directives
            .iter()
            .filter(|(name, _)| ["requirepass", "masterauth"].iter().any(|s| name.eq_ignore_ascii_case(s)))
            .map(|(_, value)| value.as_str()),
    );
    let mut text = text.to_string();
    for secret in secrets.filter(|s| !s.is_empty()) {
        text = text.replace(secret, "<redacted>");
    }
    text
}

fn tail_from(path: &std::path::Path, offset: u64, max_bytes: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::new() };
    let from = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let bytes = &bytes[from..];
    let start = bytes.len().saturating_sub(max_bytes);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

impl Node {
    /// Where its health check goes.
    fn probe_target(&self) -> probe::Target<'_> {
        probe::Target {
            engine: self.engine,
            address: self.info.address,
            port: self.info.port,
            socket: &self.socket,
            tls: self.tls_client.as_ref(),
        }
    }

    /// Its health after a check that `passed` or not.
    fn checked(&self, passed: bool) -> Health {
        match passed {
            true => Health::Healthy,
            // The check may have failed because the process died meanwhile.
            false if self.has_exited() => Health::Exited,
            false => Health::Unreachable,
        }
    }

    /// `exchange` with the node, given up after [`COMMAND_TIMEOUT`], or at once while the
    /// node is counted failed ([`Runtime::set_failed`]).
    async fn bounded<T>(
        &self,
        exchange: impl std::future::Future<Output = Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        let mut failed = self.failed.subscribe();
        tokio::select! {
            biased;
            _ = failed.wait_for(|failed| *failed) => {
                Err(NodeError::NotRunning { key: self.info.key.clone(), health: Health::Unreachable })
            }
            answer = tokio::time::timeout(COMMAND_TIMEOUT, exchange) => {
                answer.unwrap_or(Err(NodeError::TimedOut { after: COMMAND_TIMEOUT }))
            }
        }
    }

    /// See [`Runtime::known_health`].
    fn known_health(&self) -> Option<Health> {
        if self.reaped() {
            Some(Health::Exited)
        } else if self.paused.load(Ordering::SeqCst) || self.stopped.load(Ordering::SeqCst) {
            Some(Health::Paused)
        } else {
            None
        }
    }

    /// Whether the process is known gone (reaped), without asking whether it just exited.
    fn reaped(&self) -> bool {
        lock(&self.process).child.is_none()
    }

    /// Whether the process is gone; reaps it if it just exited.
    fn has_exited(&self) -> bool {
        let mut process = lock(&self.process);
        let Some(child) = process.child.as_mut() else { return true };
        match child.try_wait() {
            Ok(Some(status)) => {
                tracing::warn!(node = %self.info.key, pid = self.info.pid, %status, from = "running", to = "exited", "node process exited");
                process.exit = Some(status);
                process.child = None;
                true
            }
            Ok(None) => false,
            Err(_) => false,
        }
    }

    /// Sends `signal` if the process is still ours and alive. Holding the lock while
    /// signalling means it cannot be reaped meanwhile, so the pid cannot have been reused.
    fn signal(&self, signal: libc::c_int) -> bool {
        signal_unreaped(&mut lock(&self.process), self.info.pid, Recipient::Node, signal)
    }

    /// A redis-like node that answers is asked to `SHUTDOWN`; then SIGTERM (and SIGCONT, in
    /// case it is paused), a grace period, then SIGKILL; reaps. Redis acts on a SIGTERM only
    /// in its next cron tick: up to 100 ms later at its default pace, a second at a quiet
    /// one, in every delete and every reboot. `SHUTDOWN` does the same (the AOF flushed, no
    /// RDB saved) at once. Memcached gets SIGKILL at once: it has nothing to flush, and its
    /// SIGTERM path waits up to a second for background threads, which would slow every
    /// stop and reset.
    async fn terminate(&self, control: (&str, &str)) {
        let child = lock(&self.process).child.take();
        if let Some(mut child) = child {
            let status = if self.engine == EngineKind::Memcached {
                let _ = child.start_kill();
                child.wait().await.ok()
            } else {
                if !self.paused.load(Ordering::SeqCst) && !self.stopped.load(Ordering::SeqCst) {
                    // Answered by the connection closing as the node exits; a hung node is
                    // left to the signals below. Refused while the node writes its first
                    // AOF (a replica that just synced): it may exit once that is whole,
                    // which asking again learns sooner than SIGTERM's tick would.
                    let ask = async {
                        let mut session = probe::redis_session(&self.socket, control).await?;
                        while let Reply::Error(_) = resp::command(&mut session, &["SHUTDOWN"]).await? {
                            tokio::time::sleep(SHUTDOWN_RETRY).await;
                        }
                        Ok::<(), NodeError>(())
                    };
                    let _ = tokio::time::timeout(SHUTDOWN_ASK, ask).await;
                }
                if let Ok(pid) = libc::pid_t::try_from(self.info.pid) {
                    // SAFETY: as in `signal`; the child is unreaped because we own it.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                        libc::kill(pid, libc::SIGCONT);
                    }
                }
                match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        tracing::warn!(node = %self.info.key, pid = self.info.pid, "node ignored SIGTERM; killing it");
                        let _ = child.start_kill();
                        child.wait().await.ok()
                    }
                }
            };
            lock(&self.process).exit = status;
        }
        self.paused.store(false, Ordering::SeqCst);
        self.remove_socket_link();
    }

    /// SIGKILLs the node and whatever it forked (an AOF rewrite, a snapshot), as when the
    /// machine kills a process tree, and reaps it: its exit status, if it was running.
    async fn kill_tree(&self) -> Option<ExitStatus> {
        let child = {
            let mut process = lock(&self.process);
            signal_unreaped(&mut process, self.info.pid, Recipient::Group, libc::SIGKILL);
            process.child.take()
        };
        self.paused.store(false, Ordering::SeqCst);
        let mut child = child?;
        let _ = child.start_kill();
        let status = child.wait().await.ok();
        lock(&self.process).exit = status;
        status
    }

    /// A handed-over warm node is reached through a link (see `warm::move_dir`).
    fn remove_socket_link(&self) {
        if std::fs::symlink_metadata(&self.socket).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut process = lock(&self.process);
        if process.child.is_some() {
            // kill_on_drop kills the node itself; its process group (its own, see
            // `spawner`) also holds any child it forked (an AOF rewrite, a snapshot), which
            // would otherwise outlive it holding a copy of its listening socket.
            signal_unreaped(&mut process, self.info.pid, Recipient::Group, libc::SIGKILL);
        }
    }
}

/// Who a signal goes to: the node's process, or its process group (the node and what it forked).
enum Recipient {
    Node,
    Group,
}

/// Sends `signal` to `pid`, the process's child, or its group, if that child is unreaped.
fn signal_unreaped(process: &mut Process, pid: u32, recipient: Recipient, signal: libc::c_int) -> bool {
    let Some(child) = process.child.as_mut() else { return false };
    if !matches!(child.try_wait(), Ok(None)) {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    let target = match recipient {
        Recipient::Node => pid,
        Recipient::Group => -pid,
    };
    // SAFETY: kill(2) has no memory-safety preconditions; an unreaped child's pid (and so
    // its process group, which it leads) cannot have been reused.
    unsafe { libc::kill(target, signal) == 0 }
}

/// 32 random hex characters from the kernel's generator, for the control user's password.
fn random_secret() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Never expected on Linux; still unguessable enough for a loopback-only node.
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = (seed.as_nanos() ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
