//! Warm nodes: redis nodes started ahead of need.
//!
//! Starting a redis node takes 15 ms on an idle machine, and more beside a thousand busy
//! ones; a pool hands over a node that is already up, so a create waits for neither. Each
//! pool keeps a few nodes idle, started from a template the reconciler gives: what a new
//! node with the default parameter group runs, standalone or cluster-enabled.
//!
//! A cluster-enabled pool matters most. A freshly started cluster-enabled redis primary
//! reports `cluster_state:fail` for its first two seconds, whatever happens meanwhile
//! (`CLUSTER_WRITABLE_DELAY` in redis's `cluster.c`: a rebooted primary gives the cluster a
//! chance to reconfigure it before it takes writes). A cluster-mode replication group is
//! therefore only usable two seconds after its primaries start; from the pool, a new
//! primary is a node whose two seconds are already over.
//!
//! A primary also waits (redis's rejoin delay, the node timeout, at least 500 ms) after
//! it last counted itself in a minority, which a master without slots always does. So the
//! reconciler has each cluster-enabled warm node run commands once started
//! ([`WarmSettings::prepare`]: it takes every slot), and gives up the slots that are not its
//! shard's once handed over, before it meets the others: it never serves without slots, so
//! never waits.
//!
//! Handing a warm node over moves its directory to the node's own (the process works in
//! that directory, and every file it writes is relative to it, so it follows), applies the
//! node type's memory live, and supervises it under its new key; a later restart renders
//! its configuration from its own spec, as for any node. Only specs that ask for it
//! ([`NodeSpec::warm_start`]) and equal the template in everything a running node cannot
//! change get one; everything else starts as usual. Used nodes are replaced in the
//! background, once the create that took one is done unless that emptied the pool.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{EngineKind, NodeKey, NodeSpec, config};

/// How long a new cluster-enabled primary reports `cluster_state:fail` (redis's
/// `CLUSTER_WRITABLE_DELAY`; its rejoin delay after the slots of `prepare` is no longer).
pub const WRITABLE_DELAY: Duration = Duration::from_secs(2);

/// An idle warm node, as `/_emulator/health` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmNode {
    pub engine: EngineKind,
    pub pid: u32,
    pub port: u16,
    /// Cluster-enabled: for a new primary of a cluster-mode shard.
    pub cluster_mode: bool,
    /// Usable at once when handed over: a cluster-enabled node only once past
    /// [`WRITABLE_DELAY`].
    pub ready: bool,
}

/// What the pool keeps warm, and how many.
#[derive(Clone, Debug)]
pub struct WarmSettings {
    /// Where idle nodes live (emptied when the pool starts).
    pub root: PathBuf,
    /// The spec every warm node starts from (`key`, `dir` and `port` are the pool's).
    pub template: NodeSpec,
    /// Idle nodes to keep; 0 keeps none.
    pub size: usize,
    /// Commands every warm node runs once it answers (e.g. `CLUSTER ADDSLOTSRANGE 0 16383`).
    pub prepare: Vec<Vec<String>>,
}

/// The idle nodes and the settings they were started from.
pub(crate) struct Pool<N> {
    pub(crate) settings: WarmSettings,
    /// Oldest first, with when each was started.
    pub(crate) idle: Mutex<VecDeque<(Instant, N)>>,
    /// Nodes being started for the pool right now.
    pub(crate) starting: AtomicUsize,
    next_id: AtomicU64,
}

impl<N> Pool<N> {
    pub(crate) fn new(settings: WarmSettings) -> Self {
        Self { settings, idle: Mutex::default(), starting: AtomicUsize::new(0), next_id: AtomicU64::new(1) }
    }

    /// Whether `spec` may be handed a warm node: it asks for one, and differs from the
    /// template only in what can change live (the key, the directory, the memory limit).
    pub(crate) fn fits(&self, spec: &NodeSpec) -> bool {
        let template = &self.settings.template;
        spec.warm_start
            && spec.engine == template.engine
            && spec.address == template.address
            && spec.port == 0
            && spec.tls.is_none()
            && template.tls.is_none()
            && spec.passwords == template.passwords
            && spec.directives == template.directives
            && spec.parameters == template.parameters
            && is_empty_or_missing(&spec.dir)
    }

    /// The spec of the next node to start for the pool.
    pub(crate) fn next_spec(&self) -> NodeSpec {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        NodeSpec {
            key: NodeKey::new("warm", "pool", format!("{id:04}")),
            dir: self.settings.root.join(format!("{id:04}")),
            port: 0,
            ..self.settings.template.clone()
        }
    }

    /// How many more nodes to start to be full again.
    pub(crate) fn missing(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).len();
        self.settings.size.saturating_sub(idle + self.starting.load(Ordering::SeqCst))
    }

    /// Whether no node is idle.
    pub(crate) fn is_empty(&self) -> bool {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// The oldest idle node: the likeliest to be past the delay.
    pub(crate) fn take(&self) -> Option<N> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop_front().map(|(_, node)| node)
    }

    pub(crate) fn put(&self, started: Instant, node: N) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push_back((started, node));
    }

    pub(crate) fn drain(&self) -> Vec<N> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).drain(..).map(|(_, node)| node).collect()
    }

    /// Whether the pool's nodes are cluster-enabled.
    pub(crate) fn cluster_mode(&self) -> bool {
        config::cluster_enabled(&self.settings.template)
    }

    /// Every idle node, described by `describe(node, ready)`.
    pub(crate) fn list<T>(&self, describe: impl Fn(&N, bool) -> T) -> Vec<T> {
        let delay = if self.cluster_mode() { WRITABLE_DELAY } else { Duration::ZERO };
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter().map(|(started, node)| describe(node, started.elapsed() >= delay)).collect()
    }
}

fn is_empty_or_missing(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Moves a warm node's directory to `to` (whose parent is created; `to` itself must be
/// missing or empty). Answers the absolute new directory, and a path that reaches the
/// node's unix socket `socket` afterwards: where the node's own spec would put it
/// ([`config::control_socket`]), a symlink to the moved socket when that is outside the
/// directory (a path too long for a socket; the link's target may be long).
pub(crate) fn move_dir(from: &Path, to: &Path, socket: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Renaming onto an empty directory replaces it; onto a missing one creates it.
    std::fs::rename(from, to)?;
    let to = to.canonicalize()?;
    let Ok(relative) = socket.strip_prefix(from) else { return Ok((to, socket.to_path_buf())) };
    let moved = to.join(relative);
    let reachable = config::control_socket(&to);
    if reachable != moved {
        if let Some(parent) = reachable.parent() {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        }
        let _ = std::fs::remove_file(&reachable);
        std::os::unix::fs::symlink(&moved, &reachable)?;
    }
    Ok((to, reachable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(template: NodeSpec) -> Pool<()> {
        Pool::new(WarmSettings { root: PathBuf::from("/nonexistent/warm"), template, size: 2, prepare: Vec::new() })
    }

    #[test]
    fn only_specs_that_ask_and_match_the_template_fit() {
        let template = NodeSpec {
            directives: vec![("cluster-enabled".into(), "yes".into())],
            parameters: vec![("maxmemory-policy".into(), "volatile-lru".into())],
            max_memory_bytes: 64 << 20,
            ..NodeSpec::default()
        };
        let pool = pool(template.clone());
        let spec = NodeSpec {
            key: NodeKey::new("us-east-1/000000000000", "g-0001-001", "0001"),
            dir: PathBuf::from("/nonexistent/nodes/g-0001-001/0001"),
            max_memory_bytes: 512 << 20,
            warm_start: true,
            ..template.clone()
        };
        assert!(pool.fits(&spec), "key, dir and memory may differ");
        assert!(!pool.fits(&NodeSpec { warm_start: false, ..spec.clone() }));
        assert!(!pool.fits(&NodeSpec { port: 6379, ..spec.clone() }), "a node keeping its port restarts in place");
        assert!(!pool.fits(&NodeSpec { passwords: vec!["secret".into()], ..spec.clone() }));
        assert!(!pool.fits(&NodeSpec { parameters: Vec::new(), ..spec.clone() }), "static parameters cannot change");
        assert!(!pool.fits(&NodeSpec { directives: Vec::new(), ..spec.clone() }));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dump.rdb"), b"seeded").unwrap();
        assert!(!pool.fits(&NodeSpec { dir: dir.path().to_path_buf(), ..spec }), "a seeded node starts on its data");
    }

    #[test]
    fn next_specs_live_under_the_root_on_free_ports() {
        let pool = pool(NodeSpec { port: 7000, ..NodeSpec::default() });
        let (a, b) = (pool.next_spec(), pool.next_spec());
        assert_ne!(a.dir, b.dir);
        assert!(a.dir.starts_with("/nonexistent/warm"));
        assert_eq!((a.port, b.port), (0, 0));
        assert_eq!(pool.missing(), 2);
    }

    #[test]
    fn a_moved_directory_keeps_what_is_inside_it() {
        let root = tempfile::tempdir().unwrap();
        let from = root.path().join("warm/0001");
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("nodes.conf"), b"x").unwrap();
        let to = root.path().join("nodes/r/a/c/0001");
        let (dir, socket) = move_dir(&from, &to, &from.join("redis.sock")).unwrap();
        assert_eq!(dir, to.canonicalize().unwrap());
        assert_eq!(socket, dir.join("redis.sock"));
        assert!(dir.join("nodes.conf").exists() && !from.exists());
        let outside = PathBuf::from("/tmp/elsewhere.sock");
        std::fs::create_dir_all(&from).unwrap();
        let to = root.path().join("nodes/r/a/c/0002");
        assert_eq!(move_dir(&from, &to, &outside).unwrap().1, outside);
    }

    #[test]
    fn a_socket_moved_too_deep_is_reached_through_a_short_link() {
        let root = tempfile::tempdir().unwrap();
        let from = root.path().join("warm/0001");
        std::fs::create_dir_all(&from).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(from.join("redis.sock")).unwrap();
        let to = root.path().join("nodes").join("a-long-directory-name".repeat(5)).join("0001");
        let (dir, socket) = move_dir(&from, &to, &from.join("redis.sock")).unwrap();
        assert!(!socket.starts_with(&dir), "the socket path stays short: {}", socket.display());
        std::os::unix::net::UnixStream::connect(&socket).expect("connects through the link");
        drop(listener);
        let _ = std::fs::remove_file(socket);
    }
}
