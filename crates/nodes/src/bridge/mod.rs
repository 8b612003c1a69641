//! Replication bridges: one primary replicated into a cluster (or a node) that cannot
//! replicate from it itself — nodes in cluster mode refuse `REPLICAOF`. Global Datastores in
//! cluster mode (a secondary region's shard primaries follow the primary region's) and
//! online migration into a serverless cache both need one.
//!
//! A bridge speaks the replication protocol to its source as a replica would (PSYNC, the
//! RDB payload, the command stream, `REPLCONF ACK`) and applies what it receives to the
//! target primaries through the runtime's own connections. A full sync loads the RDB file
//! into a scratch node and copies every key from there (see `copy`); afterwards every
//! command of the stream goes to the primary owning its keys (see `target`). A lost link
//! resumes with a partial resync where the source's backlog allows.
//!
//! # Layout
//! - [`BridgeSpec`], [`BridgeState`], [`BridgePhase`]; [`Runtime::start_bridge`],
//!   [`Runtime::stop_bridge`], [`Runtime::bridge`], [`Runtime::in_sync`].
//! - `source`: the handshake, the RDB transfer, and the link task reading the stream.
//! - `copy`: the scratch node and the key-by-key copy of a full sync.
//! - `stream`: the stream's commands, batched and applied in order.
//! - `target`: slot map, command routing and pipelines towards the target primaries.
//! - `state`: what the tasks share with [`Runtime::bridge`].
//! - `wire`: RESP framing with exact byte counts.

mod copy;
mod source;
mod state;
mod stream;
mod target;
mod wire;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::source::{Event, Sync};
use self::state::{Shared, lock};
use self::target::Targets;
use crate::supervisor::WeakRuntime;
use crate::{EngineKind, NodeError, NodeKey, Runtime};

/// The first pause before reconnecting; it doubles up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// How recently the source must have been heard from for the link to count as up: it
/// sends a PING every 10 s (`repl-ping-replica-period`) when it has nothing else to send.
const LINK_FRESHNESS: Duration = Duration::from_secs(15);
/// Commands applied per batch at most (one pipeline per target node).
const MAX_BATCH: usize = 10_000;

/// What a bridge replicates, and where to.
#[derive(Clone)]
pub struct BridgeSpec {
    /// The primary to replicate from.
    pub source: SocketAddr,
    /// AUTH user and password for the source; None: no AUTH.
    pub source_auth: Option<(String, String)>,
    /// TLS towards the source (None: plaintext), verified with this configuration.
    pub source_tls: Option<Arc<rustls::ClientConfig>>,
    /// The target's primaries (a single node that is no cluster owns everything), reached
    /// through the runtime's control connection, so ACLs put on clients do not apply.
    pub target: Vec<NodeKey>,
    /// Scratch space for the RDB file and the scratch node; the bridge owns (and deletes)
    /// this directory.
    pub scratch_dir: PathBuf,
    /// The engine of the scratch node: the target's, so its DUMP payloads restore there.
    pub engine: EngineKind,
}

impl std::fmt::Debug for BridgeSpec {
    // Hand-written so that a logged spec never shows the source's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeSpec")
            .field("source", &self.source)
            .field("source_user", &self.source_auth.as_ref().map(|(user, _)| user))
            .field("source_tls", &self.source_tls.is_some())
            .field("target", &self.target)
            .field("scratch_dir", &self.scratch_dir)
            .field("engine", &self.engine)
            .finish()
    }
}

/// Where a bridge is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgePhase {
    /// Reaching the source the first time, or again after the link was lost.
    Connecting,
    /// Receiving the source's data and copying it into the target.
    FullSync,
    /// Applying the source's command stream.
    Streaming,
    /// The last attempt failed, for this reason; the bridge keeps retrying.
    Failed(String),
}

/// A snapshot of a bridge's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeState {
    pub phase: BridgePhase,
    /// Streaming, and the source was heard from within the last 15 s.
    pub link_up: bool,
    /// The source's replication offset, as last received or asked ([`Runtime::in_sync`]).
    pub source_offset: u64,
    /// The replication offset applied to the target.
    pub applied_offset: u64,
    pub last_applied: Option<Instant>,
    /// Full syncs since the bridge started (each one empties the target and copies all).
    pub full_syncs: u32,
}

/// Why a sync attempt ended.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Retry; the target holds exactly what was applied, so a partial resync may follow.
    Retry(String),
    /// Retry with a full resync: what the target holds is unknown (a batch failed midway).
    Resync(String),
}

impl Stop {
    fn reason(&self) -> &str {
        match self {
            Stop::Retry(reason) | Stop::Resync(reason) => reason,
        }
    }

    fn into_resync(self) -> Self {
        Stop::Resync(match self {
            Stop::Retry(reason) | Stop::Resync(reason) => reason,
        })
    }

    fn into_retry(self) -> Self {
        Stop::Retry(match self {
            Stop::Retry(reason) | Stop::Resync(reason) => reason,
        })
    }
}

/// A task aborted when this is dropped.
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime's bridges; dropping the table (with the runtime) stops them all.
#[derive(Default)]
pub(crate) struct Bridges {
    table: Mutex<HashMap<String, Running>>,
}

struct Running {
    task: AbortOnDrop,
    shared: Arc<Shared>,
    spec: BridgeSpec,
}

impl Runtime {
    /// Starts replicating `spec.source` into `spec.target` under `id`, replacing a bridge of
    /// the same id. Returns at once; [`Runtime::bridge`] tells how it goes.
    pub async fn start_bridge(&self, id: &str, spec: BridgeSpec) -> Result<(), NodeError> {
        if spec.target.is_empty() {
            return Err(NodeError::Protocol(format!("bridge {id} has no target")));
        }
        if !spec.engine.is_redis_like() || self.engines().binary(spec.engine).is_none() {
            return Err(NodeError::BinaryMissing { engine: spec.engine });
        }
        self.stop_bridge(id).await;
        let shared = Arc::new(Shared::new(id));
        let task = tokio::spawn(run(self.downgrade(), spec.clone(), shared.clone()));
        tracing::info!(bridge = id, source = %spec.source, target = ?spec.target, from = "stopped", to = "connecting", "bridge started");
        let replaced =
            lock(&self.bridges().table).insert(id.to_string(), Running { task: AbortOnDrop(task), shared, spec });
        drop(replaced);
        Ok(())
    }

    /// Stops bridge `id` (its tasks, its scratch node) and deletes its scratch directory.
    /// The target keeps what it was given. An unknown id is already stopped.
    pub async fn stop_bridge(&self, id: &str) {
        let Some(running) = lock(&self.bridges().table).remove(id) else { return };
        let Running { mut task, spec, .. } = running;
        task.0.abort();
        let _ = (&mut task.0).await;
        if let Err(error) = self.stop(&copy::scratch_key(id)).await {
            tracing::warn!(bridge = id, %error, "stopping the scratch node failed");
        }
        let _ = tokio::fs::remove_dir_all(&spec.scratch_dir).await;
        tracing::info!(bridge = id, to = "stopped", "bridge stopped");
    }

    /// A snapshot of bridge `id`'s state.
    pub fn bridge(&self, id: &str) -> Option<BridgeState> {
        lock(&self.bridges().table).get(id).map(|running| running.shared.snapshot())
    }

    /// Whether bridge `id` has applied everything its source has now: asks the source for
    /// its `master_repl_offset` and compares. False when the source cannot be asked.
    pub async fn in_sync(&self, id: &str) -> bool {
        let Some((spec, shared)) = lock(&self.bridges().table).get(id).map(|r| (r.spec.clone(), r.shared.clone()))
        else {
            return false;
        };
        let Ok(offset) = source::master_offset(&spec).await else { return false };
        shared.saw_source_offset(offset);
        let state = shared.snapshot();
        state.link_up && state.applied_offset >= offset
    }
}

/// Where a partial resync would continue: the source's history and what was applied of it.
struct Resume {
    replid: String,
    /// The offset applied to the target.
    offset: u64,
    /// The database the stream last selected.
    db: u32,
}

/// A bridge's life: sync, stream, and after any failure, again after a pause.
async fn run(runtime: WeakRuntime, spec: BridgeSpec, shared: Arc<Shared>) {
    let mut resume: Option<Resume> = None;
    let mut delay = BACKOFF_START;
    loop {
        let before = resume.as_ref().map(|r| r.offset);
        let mut copied = false;
        let Err(stop) = sync_and_stream(&runtime, &spec, &shared, &mut resume, &mut copied).await;
        if runtime.upgrade().is_none() {
            return;
        }
        let progressed = copied || resume.as_ref().map(|r| r.offset) != before;
        if matches!(stop, Stop::Resync(_)) {
            resume = None;
        }
        if progressed {
            delay = BACKOFF_START;
            tracing::warn!(bridge = %shared.id, reason = stop.reason(), "bridge link lost; reconnecting");
            shared.set_phase(BridgePhase::Connecting);
        } else {
            shared.set_phase(BridgePhase::Failed(stop.reason().to_string()));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_CAP);
    }
}

/// One attempt: handshake, a full sync when the source asks for one, then streaming until
/// something fails.
async fn sync_and_stream(
    runtime: &WeakRuntime,
    spec: &BridgeSpec,
    shared: &Arc<Shared>,
    resume: &mut Option<Resume>,
    copied: &mut bool,
) -> Result<Infallible, Stop> {
    let mut conn = source::connect(spec).await?;
    let (sync, slots) =
        source::handshake(&mut conn, spec, resume.as_ref().map(|r| (r.replid.as_str(), r.offset))).await?;
    let (_link, events, targets, resume) = match sync {
        Sync::Partial { replid } => {
            let Some(resume) = resume.as_mut() else {
                return Err(Stop::Resync("the source continued a sync that was never asked for".into()));
            };
            tracing::info!(bridge = %shared.id, offset = resume.offset, "bridge resumed with a partial resync");
            resume.replid = replid;
            let mut targets = Targets::new(runtime.clone(), &spec.target, resume.db).await?;
            targets.set_source_slots(slots);
            let (link, events) = source::spawn_link(conn, resume.offset, shared.clone());
            (link, events, targets, resume)
        }
        Sync::Full { replid, offset } => {
            *resume = None;
            shared.begin_full_sync(offset);
            let (link, events, targets) = full_sync(runtime, spec, shared, conn, (offset, slots)).await?;
            *copied = true;
            (link, events, targets, resume.insert(Resume { replid, offset, db: 0 }))
        }
    };
    stream::stream(events, targets, resume, shared).await
}

/// Receives the RDB payload, starts streaming into a buffer, and copies the data into the
/// emptied target meanwhile.
async fn full_sync(
    runtime: &WeakRuntime,
    spec: &BridgeSpec,
    shared: &Arc<Shared>,
    mut conn: source::SourceConn,
    (offset, slots): (u64, Option<Vec<u16>>),
) -> Result<(AbortOnDrop, mpsc::UnboundedReceiver<Event>, Targets), Stop> {
    copy::prepare_dir(&spec.scratch_dir).await?;
    let started = Instant::now();
    let size = source::receive_rdb(&mut conn, &spec.scratch_dir.join(crate::config::RDB_FILE)).await?;
    // The first ACK puts the bridge online: the source streams from here on, and the link
    // task keeps what arrives while the copy runs.
    conn.send(&source::ack(offset)).await.map_err(|e| Stop::Retry(format!("source connection: {e}")))?;
    let (link, events) = source::spawn_link(conn, offset, shared.clone());
    let received = started.elapsed();
    let mut targets = Targets::new(runtime.clone(), &spec.target, 0).await?;
    targets.set_source_slots(slots);
    let copied = copy::copy(runtime, &shared.id, spec, &mut targets).await;
    let _ = tokio::fs::remove_dir_all(&spec.scratch_dir).await;
    let keys = copied?;
    shared.set_applied(offset);
    tracing::info!(bridge = %shared.id, rdb_bytes = size, keys, ?received, took = ?started.elapsed(), "bridge full sync copied");
    Ok((link, events, targets))
}
