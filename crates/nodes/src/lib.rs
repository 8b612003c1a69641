//! The node runtime: spawns, supervises and probes the real engine processes
//! (`redis-server`, `valkey-server`, `memcached`) behind every emulated cache node.
//!
//! The reconciler decides *what* should run; this crate only knows *how* to run it: render
//! the engine's configuration from AWS parameter values, start the process on a free (or
//! the requested) port, wait until it answers, and later stop, discard, crash, freeze or probe it.
//! It never touches the store.
//!
//! # Layout
//! - [`engines`]: which engine binaries exist on this machine and their versions.
//! - [`exposure`]: where nodes listen for clients and the host name clients are told.
//! - [`capacity`]: how many nodes this machine can hold.
//! - [`capabilities`]: which settings a given binary accepts (asked once, cached).
//! - [`config`]: AWS parameter values → `redis.conf` lines / `memcached` arguments.
//! - [`spawner`]: the long-lived thread every engine process is forked from.
//! - [`supervisor`]: [`Runtime`], the table of supervised nodes and their life cycle.
//! - [`probe`]: readiness and health checks over the engines' own protocols.
//! - `ready`: a starting redis-like node saying it is ready (systemd's notify protocol).
//! - [`resp`]: the few bytes of RESP the probes, `CONFIG SET` and [`Runtime::command`] need.
//! - [`orphans`]: [`reap_orphans`], for nodes left over by a killed emulator.
//! - [`discovery`]: the Memcached Auto Discovery configuration endpoint.
//! - [`ecpu`]: [`EcpuLimit`], a serverless cache's ECPU/second maximum, as its endpoints apply it.
//! - [`replication`]: [`ReplicationInfo`], a redis node's parsed `INFO replication`.
//! - [`cluster`]: hash slots, `CLUSTER NODES`, sessions and slot migration (cluster mode).
//! - [`proxy`]: [`EndpointProxy`], the stable primary/reader endpoints of a replication group.
//! - [`serverless_memcached`]: [`MemcachedEndpoint`], the TLS endpoint of a Serverless
//!   Memcached cache in front of mirrored nodes, and the dump/load of a node's items.
//! - [`tls`]: the emulator's certificate authority and the certificates of TLS nodes.
//! - [`warm`]: redis nodes started ahead of need (cluster-enabled ones past redis's
//!   two-second delay).
//! - [`bridge`]: replication from one primary into a cluster (or a node) through the
//!   replication protocol, for what `REPLICAOF` cannot do in cluster mode.
//!
//! The runtime's own connections to a redis node (probes, `CONFIG SET`, `INFO`, `CLUSTER`
//! commands, slot migrations) go through a unix socket in the node's directory (mode 700),
//! authenticated with the node's password: they keep working when the node's TCP port
//! speaks TLS only, and need no certificate.

pub mod bridge;
pub mod capabilities;
pub mod capacity;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod ecpu;
pub mod engines;
pub mod exposure;
pub mod orphans;
pub mod ports;
pub mod probe;
pub mod proxy;
mod ready;
pub mod replication;
pub mod resp;
pub mod serverless;
pub mod serverless_memcached;
pub mod spawner;
pub mod supervisor;
pub mod tls;
pub mod warm;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub use bridge::{BridgePhase, BridgeSpec, BridgeState};
pub use discovery::{ClusterConfig, ConfigEndpoint};
pub use ecpu::EcpuLimit;
pub use engines::{Binary, EngineKind, Engines};
pub use orphans::reap_orphans;
pub use proxy::{Balance, EndpointProxy, ProxyTls};
pub use replication::{ReplicationInfo, Role};
pub use serverless::ServerlessEndpoint;
pub use serverless_memcached::MemcachedEndpoint;
pub use supervisor::Runtime;

/// How often a redis node runs its timers (`hz`). A node notices that a fork it made has
/// ended (a snapshot's BGSAVE, the RDB of a replica's full sync, an append-only rewrite) only
/// on its timer; idle, the timer is all a node costs: at redis's default of 10 a second about
/// 0.1–0.15% of a core per node, a core and a half at a thousand nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// 10 a second, redis's default: a finished fork is noticed within 100 ms.
    Lively,
    /// Once a second: for steady nodes, which fork nothing.
    Quiet,
}
pub use warm::WarmSettings;

/// The ACL user the runtime authenticates as on every redis node (and replicas with, to
/// their primary), so AUTH tokens and user groups never lock the emulator out.
pub const CONTROL_USER: &str = "elasticache-local";

/// Identifies one node across the whole emulator.
///
/// `scope` comes first so that two regions (or accounts) may each have a cluster with the
/// same id without their nodes colliding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// An opaque "region/account" string chosen by the caller.
    pub scope: String,
    pub cluster_id: String,
    pub node_id: String,
}

impl NodeKey {
    pub fn new(scope: impl Into<String>, cluster_id: impl Into<String>, node_id: impl Into<String>) -> Self {
        Self { scope: scope.into(), cluster_id: cluster_id.into(), node_id: node_id.into() }
    }
}

impl std::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.scope, self.cluster_id, self.node_id)
    }
}

/// Everything needed to (re)start one node.
#[derive(Clone)]
pub struct NodeSpec {
    pub key: NodeKey,
    pub engine: EngineKind,
    /// Where the node listens; `127.0.0.1` unless the node has an address of its own.
    pub address: Ipv4Addr,
    /// `0` picks a free port; anything else must be used as is (a restart in place keeps
    /// the endpoint the user already knows).
    pub port: u16,
    /// The node's own directory (created if missing): config, logs, pidfile and RDB live here.
    pub dir: PathBuf,
    /// Redis `maxmemory`; memcached `-m` in MiB (rounded up, at least 1).
    pub max_memory_bytes: u64,
    /// Effective cache parameter group values, named as AWS names them. Names the engine
    /// binary does not know (AWS-only ones included) are skipped, never passed on.
    pub parameters: Vec<(String, String)>,
    /// Settings owned by the emulator rather than the user (`cluster-enabled`, `requirepass`,
    /// `replicaof`, TLS files, ...), written verbatim: redis config directives, or for
    /// memcached extra command-line arguments (`("-S", "")` passes the flag alone). Not
    /// filtered, so a bad one makes the start fail with [`NodeError::Exited`].
    pub directives: Vec<(String, String)>,
    /// Redis: the passwords of the `default` user (AWS's AUTH token; two while a token
    /// rotates). The first is the one the runtime authenticates its own connections with.
    /// Empty: no password (unless a `requirepass` directive sets one).
    pub passwords: Vec<String>,
    /// Redis: TLS only on the node's port (transit encryption mode `required`), with a
    /// certificate this CA issues at every start. Replication and the cluster bus speak TLS
    /// too; the runtime itself keeps using the node's unix socket.
    pub tls: Option<std::sync::Arc<tls::CertificateAuthority>>,
    /// A new node that may be handed a warm node (see [`warm`]) when one fits: not one
    /// that must start on data, nor a cluster-mode replica (a warm node holds every slot).
    pub warm_start: bool,
}

/// Directive names whose values are secrets, never logged.
pub const SECRET_DIRECTIVES: &[&str] = &["requirepass", "masterauth", "user"];

impl std::fmt::Debug for NodeSpec {
    // Hand-written so that a logged spec never shows a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let directives: Vec<(&str, &str)> = self
            .directives
            .iter()
            .map(|(name, value)| {
                let secret = SECRET_DIRECTIVES.iter().any(|s| name.eq_ignore_ascii_case(s));
                (name.as_str(), if secret { "<redacted>" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("NodeSpec")
            .field("key", &self.key)
            .field("engine", &self.engine)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("max_memory_bytes", &self.max_memory_bytes)
            .field("parameters", &self.parameters)
            .field("directives", &directives)
            .field("passwords", &self.passwords.len())
            .field("tls", &self.tls.is_some())
            .field("warm_start", &self.warm_start)
            .finish()
    }
}

impl Default for NodeSpec {
    fn default() -> Self {
        Self {
            key: NodeKey::default(),
            engine: EngineKind::Redis,
            address: Ipv4Addr::LOCALHOST,
            port: 0,
            dir: PathBuf::new(),
            max_memory_bytes: 0,
            parameters: Vec::new(),
            directives: Vec::new(),
            passwords: Vec::new(),
            tls: None,
            warm_start: false,
        }
    }
}

/// A node the runtime supervises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningNode {
    pub key: NodeKey,
    /// The engine the node runs (a binary of its own per engine).
    pub engine: EngineKind,
    pub address: Ipv4Addr,
    pub port: u16,
    pub pid: u32,
    pub engine_version: String,
}

/// The outcome of one health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    Healthy,
    /// The process exists but did not answer (connect or probe failed or timed out).
    Unreachable,
    /// The process is gone (crashed, killed, or never supervised).
    Exited,
    /// Frozen by [`Runtime::pause`].
    Paused,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unreachable => "unreachable",
            Health::Exited => "exited",
            Health::Paused => "paused",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the node runtime.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no binary for engine {engine} on this machine")]
    BinaryMissing { engine: EngineKind },
    #[error("engine process exited during start-up ({status}): {stderr}")]
    Exited {
        status: ExitStatus,
        /// The tail of what the process wrote to stderr and its log file.
        stderr: String,
    },
    #[error("engine process did not answer within {after:?}")]
    TimedOut { after: Duration },
    #[error("port {port} on {address} is already in use")]
    PortInUse { address: Ipv4Addr, port: u16 },
    #[error("node {key} is not supervised")]
    NotFound { key: NodeKey },
    #[error("node {key} cannot do that while {health}")]
    NotRunning { key: NodeKey, health: Health },
    #[error("unexpected reply from the engine: {0}")]
    Protocol(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: T) {}

    /// The runtime is shared behind `Arc` and driven from `tokio::spawn`ed tasks.
    #[allow(dead_code)]
    fn runtime_and_its_futures_are_shareable(runtime: &'static Runtime, key: &'static NodeKey) {
        send_sync::<Runtime>();
        send_sync::<ConfigEndpoint>();
        send_sync::<EndpointProxy>();
        send(runtime.start(NodeSpec::default()));
        send(runtime.stop(key));
        send(runtime.discard(key));
        send(runtime.kill(key));
        send(runtime.pause(key));
        send(runtime.resume(key));
        send(runtime.probe(key, Duration::ZERO));
        send(runtime.apply_parameters(key, &[]));
        send(runtime.command(key, &[]));
        send(runtime.replication(key));
        send(runtime.stop_all());
    }
}
