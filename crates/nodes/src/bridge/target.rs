//! The bridge's targets: the primaries its data goes to, which of them owns each hash slot,
//! and applying commands there in pipelines (one write and one read per node for a whole
//! batch), following `MOVED`/`ASK` while slots move.
//!
//! A command goes to the owner of its keys' slot, found from the key specs of the
//! target's command table (`COMMAND INFO`, cached per name; `COMMAND GETKEYS` for commands
//! whose keys move). Commands that change data without keys go to every primary; multi-key
//! commands whose keys a cluster keeps apart are split per key where that means the same
//! (DEL, MSET, ...); any other such command is sent as is, and the node's refusal reported.
//!
//! # Layout
//! - [`Targets::execute`]: units → pieces → one pipeline per node → redirections chased.
//! - `route`: key specs and the pieces each unit becomes; `slots`: the slot map;
//!   `empty`: removing what the source holds (everything, or a shard's slots); `moves`:
//!   RENAME and the like between two slots, in steps.

mod empty;
mod moves;
mod route;
mod slots;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use self::route::KeySpec;
use super::Stop;
use super::wire::Conn;
use crate::NodeKey;
use crate::cluster::SLOTS;
use crate::resp::{self, Reply};
use crate::supervisor::WeakRuntime;

/// Bound on one node's replies to a pipeline (a batch of big RESTOREs included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command keeps following redirections (a slot migrating, a failover).
const REDIRECT_FOR: Duration = Duration::from_secs(10);

/// What the bridge applies: one command, a transaction, or a database change.
pub(super) enum Unit {
    Command(Vec<Vec<u8>>),
    Transaction(Vec<Vec<Vec<u8>>>),
    Select(u32),
}

/// What one node is sent for one unit, and can be sent again elsewhere if redirected.
struct Piece {
    node: usize,
    slot: Option<u16>,
    commands: Vec<Vec<Vec<u8>>>,
    transaction: bool,
}

impl Piece {
    fn single(node: usize, slot: Option<u16>, command: Vec<Vec<u8>>) -> Self {
        Piece { node, slot, commands: vec![command], transaction: false }
    }

    fn replies(&self) -> usize {
        self.commands.len() + if self.transaction { 2 } else { 0 }
    }

    fn encode(&self, asking: bool, out: &mut Vec<u8>) {
        if asking {
            out.extend(resp::encode(&["ASKING"]));
        }
        if self.transaction {
            out.extend(resp::encode(&["MULTI"]));
        }
        for command in &self.commands {
            out.extend(resp::encode(command));
        }
        if self.transaction {
            out.extend(resp::encode(&["EXEC"]));
        }
    }

    fn name(&self) -> String {
        match (self.transaction, self.commands.first().and_then(|c| c.first())) {
            (true, _) => "MULTI/EXEC".into(),
            (false, Some(name)) => String::from_utf8_lossy(name).to_uppercase(),
            (false, None) => String::new(),
        }
    }
}

/// Where a node sent a command instead of running it.
#[derive(Debug)]
enum Redirect {
    /// The slot is served by this node now.
    Moved(u16, SocketAddr),
    /// This once, the slot's keys are to be asked of this node (the slot is migrating).
    Ask(SocketAddr),
    /// Not now (TRYAGAIN, CLUSTERDOWN, LOADING, ...): later, to the slot's owner then.
    Wait(String),
}

impl Redirect {
    fn parse(error: &str) -> Option<Self> {
        let mut words = error.split_whitespace();
        let wait = || Redirect::Wait(error.into());
        match words.next()? {
            "MOVED" => {
                let slot = words.next().and_then(|s| s.parse().ok());
                let address = words.next().and_then(crate::exposure::internal_address);
                Some(slot.zip(address).map_or_else(wait, |(slot, address)| Redirect::Moved(slot, address)))
            }
            "ASK" => Some(words.nth(1).and_then(crate::exposure::internal_address).map_or_else(wait, Redirect::Ask)),
            "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" => Some(Redirect::Wait(error.into())),
            _ => None,
        }
    }
}

enum Outcome {
    Done,
    Failed(String),
    Redirected(Redirect),
}

fn outcome(piece: &Piece, replies: &[Reply]) -> Outcome {
    let errors = replies.iter().flat_map(|reply| match reply {
        Reply::Error(e) => vec![e.as_str()],
        // EXEC's answer holds each command's.
        Reply::Array(Some(items)) if piece.transaction => {
            items.iter().filter_map(|i| if let Reply::Error(e) = i { Some(e.as_str()) } else { None }).collect()
        }
        _ => Vec::new(),
    });
    let mut failed = None;
    for error in errors {
        if let Some(redirect) = Redirect::parse(error) {
            return Outcome::Redirected(redirect);
        }
        failed.get_or_insert_with(|| format!("{}: {error}", piece.name()));
    }
    failed.map_or(Outcome::Done, Outcome::Failed)
}

struct Target {
    key: NodeKey,
    address: Option<SocketAddr>,
    conn: Option<Conn<UnixStream>>,
}

/// The target primaries and what the bridge knows of them.
pub(super) struct Targets {
    runtime: WeakRuntime,
    /// The primaries named by the bridge's spec, then any a redirection pointed at.
    nodes: Vec<Target>,
    /// The node owning each slot; every slot is node 0's when the target is no cluster.
    owner: Vec<Option<usize>>,
    cluster: bool,
    commands: HashMap<String, Option<KeySpec>>,
    /// The database the connections are in (only a target that is no cluster has others).
    db: u32,
    refreshed: Option<Instant>,
    /// The slots a source in cluster mode serves: all its data, so all a full sync or a
    /// FLUSHALL of it replaces (other bridges may fill the rest of the target). None: every
    /// slot.
    source_slots: Option<Vec<u16>>,
}

fn lower(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

impl Targets {
    /// Reads the targets' slot map; `db` is the database the stream last selected.
    pub(super) async fn new(runtime: WeakRuntime, keys: &[NodeKey], db: u32) -> Result<Self, Stop> {
        let mut nodes = Vec::with_capacity(keys.len());
        {
            let runtime = runtime.upgrade().ok_or_else(gone)?;
            for key in keys {
                let address = runtime.get(key).map(|n| SocketAddr::from((n.address, n.port)));
                nodes.push(Target { key: key.clone(), address, conn: None });
            }
        }
        let mut targets = Self {
            runtime,
            nodes,
            owner: vec![None; usize::from(SLOTS)],
            cluster: true,
            commands: HashMap::new(),
            db,
            refreshed: None,
            source_slots: None,
        };
        targets.refresh().await?;
        Ok(targets)
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    pub(super) fn db(&self) -> u32 {
        self.db
    }

    /// Which slots the source serves (None: every one, as a source not in cluster mode).
    pub(super) fn set_source_slots(&mut self, slots: Option<Vec<u16>>) {
        self.source_slots = slots.filter(|slots| slots.len() < usize::from(SLOTS));
    }

    /// Applies `units` in order. Returns the refusals (error replies other than
    /// redirections), for the caller to judge. Nothing has been sent when it fails with
    /// [`Stop::Retry`]; with [`Stop::Resync`] part of it may have been applied.
    pub(super) async fn execute(&mut self, units: Vec<Unit>) -> Result<Vec<String>, Stop> {
        if !units.iter().any(|unit| self.stepwise(unit)) {
            return self.execute_segment(units).await;
        }
        // Done in steps, in order with the commands around it.
        let mut refused = Vec::new();
        let mut segment = Vec::new();
        let mut sent = false;
        let partial = |sent: bool| move |stop: Stop| if sent { stop.into_resync() } else { stop };
        for unit in self.unwrap_stepwise(units) {
            let Unit::Command(args) = unit else {
                segment.push(unit);
                continue;
            };
            if !self.stepwise_command(&args) {
                segment.push(Unit::Command(args));
                continue;
            }
            refused.extend(self.execute_segment(std::mem::take(&mut segment)).await.map_err(partial(sent))?);
            sent = true;
            if empty::flushes(&args) {
                self.empty().await.map_err(Stop::into_resync)?;
            } else {
                refused.extend(self.cross_slot_move(&args).await.map_err(Stop::into_resync)?);
            }
        }
        refused.extend(self.execute_segment(segment).await.map_err(partial(sent))?);
        Ok(refused)
    }

    /// Whether a command takes more than one piece, run one after the other: the FLUSHALL of
    /// a source in cluster mode (only its slots go), or a move between two slots.
    fn stepwise_command(&self, args: &[Vec<u8>]) -> bool {
        (self.source_slots.is_some() && empty::flushes(args)) || (self.cluster && moves::is_cross_slot_move(args))
    }

    fn stepwise(&self, unit: &Unit) -> bool {
        match unit {
            Unit::Command(args) => self.stepwise_command(args),
            Unit::Transaction(commands) => commands.iter().any(|c| self.stepwise_command(c)),
            Unit::Select(_) => false,
        }
    }

    /// `units` with each transaction holding a stepwise command replaced by its commands:
    /// no transaction can hold the steps.
    fn unwrap_stepwise(&self, units: Vec<Unit>) -> Vec<Unit> {
        let mut out = Vec::with_capacity(units.len());
        for unit in units {
            match unit {
                Unit::Transaction(commands) if commands.iter().any(|c| self.stepwise_command(c)) => {
                    out.extend(commands.into_iter().map(Unit::Command));
                }
                other => out.push(other),
            }
        }
        out
    }

    /// [`Targets::execute`] for units without a FLUSHALL of a source in cluster mode.
    async fn execute_segment(&mut self, units: Vec<Unit>) -> Result<Vec<String>, Stop> {
        self.learn(&units).await?;
        let mut pieces = Vec::with_capacity(units.len());
        let mut selected = None;
        for unit in units {
            self.plan(unit, &mut pieces, &mut selected).await?;
        }
        let mut nodes: Vec<usize> = pieces.iter().map(|p| p.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        // Every connection first: a node that cannot be reached fails the batch unsent.
        for &node in &nodes {
            self.connect(node).await?;
        }
        let replies = self.run(&pieces).await?;
        if let Some(db) = selected {
            self.db = db;
        }
        let mut refused = Vec::new();
        for (piece, replies) in pieces.iter().zip(replies) {
            match outcome(piece, &replies) {
                Outcome::Done => {}
                Outcome::Failed(error) => refused.push(error),
                Outcome::Redirected(redirect) => {
                    // Part of the batch is applied: whatever goes wrong now, only a full
                    // resync knows what the target holds.
                    let replies = self.chase(piece, redirect).await.map_err(Stop::into_resync)?;
                    if let Outcome::Failed(error) = outcome(piece, &replies) {
                        refused.push(error);
                    }
                }
            }
        }
        Ok(refused)
    }

    /// Sends every piece (one write per node), then reads every reply.
    async fn run(&mut self, pieces: &[Piece]) -> Result<Vec<Vec<Reply>>, Stop> {
        let mut by_node: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, piece) in pieces.iter().enumerate() {
            by_node.entry(piece.node).or_default().push(i);
        }
        for (&node, indices) in &by_node {
            let mut bytes = Vec::new();
            for &i in indices {
                pieces[i].encode(false, &mut bytes);
            }
            self.send(node, &bytes).await?;
        }
        let mut replies = vec![Vec::new(); pieces.len()];
        for (node, indices) in by_node {
            for i in indices {
                for _ in 0..pieces[i].replies() {
                    replies[i].push(self.read(node).await?);
                }
            }
        }
        Ok(replies)
    }

    /// Sends `piece` to its node and follows where it is redirected: the replies of the node
    /// that ran it (or refused it).
    async fn deliver(&mut self, piece: &Piece) -> Result<Vec<Reply>, Stop> {
        self.connect(piece.node).await?;
        let replies = self.exchange(piece.node, piece, false).await?;
        match outcome(piece, &replies) {
            Outcome::Redirected(redirect) => self.chase(piece, redirect).await,
            _ => Ok(replies),
        }
    }

    /// Sends a redirected piece where it is sent until it is run or refused; its replies.
    async fn chase(&mut self, piece: &Piece, mut redirect: Redirect) -> Result<Vec<Reply>, Stop> {
        let deadline = Instant::now() + REDIRECT_FOR;
        loop {
            if Instant::now() > deadline {
                let why = match &redirect {
                    Redirect::Moved(slot, address) => format!("MOVED slot {slot} to {address}"),
                    Redirect::Ask(address) => format!("ASK to {address}"),
                    Redirect::Wait(error) => error.clone(),
                };
                return Err(Stop::Resync(format!("the target kept redirecting {}: {why}", piece.name())));
            }
            let (node, asking) = match &redirect {
                Redirect::Moved(slot, address) => {
                    // The answer itself says who owns the slot now; the rest of the map may
                    // have changed too.
                    self.refresh_soon().await?;
                    let node = self.node_at(*address)?;
                    if let Some(owner) = self.owner.get_mut(usize::from(*slot)) {
                        *owner = Some(node);
                    }
                    (node, false)
                }
                Redirect::Ask(address) => (self.node_at(*address)?, true),
                Redirect::Wait(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.refresh_soon().await?;
                    match piece.slot {
                        Some(slot) => (self.owner_of(slot)?, false),
                        None => (piece.node, false),
                    }
                }
            };
            self.connect(node).await?;
            let replies = self.exchange(node, piece, asking).await?;
            match outcome(piece, &replies) {
                Outcome::Redirected(next) => redirect = next,
                _ => return Ok(replies),
            }
        }
    }

    /// One piece on one connected node (after ASKING when `asking`): its replies.
    async fn exchange(&mut self, node: usize, piece: &Piece, asking: bool) -> Result<Vec<Reply>, Stop> {
        let mut bytes = Vec::new();
        piece.encode(asking, &mut bytes);
        self.send(node, &bytes).await?;
        let mut replies = Vec::with_capacity(piece.replies() + 1);
        for _ in 0..piece.replies() + usize::from(asking) {
            replies.push(self.read(node).await?);
        }
        if asking {
            replies.remove(0);
        }
        Ok(replies)
    }

    async fn connect(&mut self, node: usize) -> Result<(), Stop> {
        if self.nodes[node].conn.is_some() {
            return Ok(());
        }
        let key = self.nodes[node].key.clone();
        let session = {
            let runtime = self.runtime.upgrade().ok_or_else(gone)?;
            runtime.session(&key).await.map_err(|e| Stop::Retry(format!("target {key}: {e}")))?
        };
        let mut conn = Conn::new(session.into_stream());
        if self.db != 0 {
            let select = resp::encode(&["SELECT", &self.db.to_string()]);
            conn.send(&select).await.map_err(|e| Stop::Retry(format!("target {key}: {e}")))?;
            match tokio::time::timeout(REPLY_TIMEOUT, conn.value()).await {
                Ok(Ok(Reply::Simple(_))) => {}
                other => return Err(Stop::Retry(format!("target {key} refused SELECT {}: {other:?}", self.db))),
            }
        }
        self.nodes[node].conn = Some(conn);
        Ok(())
    }

    /// One command on one node, outside any batch.
    async fn ask(&mut self, node: usize, command: &[u8]) -> Result<Reply, Stop> {
        self.connect(node).await?;
        self.send(node, command).await.map_err(Stop::into_retry)?;
        self.read(node).await.map_err(Stop::into_retry)
    }

    async fn send(&mut self, node: usize, bytes: &[u8]) -> Result<(), Stop> {
        let target = &mut self.nodes[node];
        let Some(conn) = target.conn.as_mut() else {
            return Err(Stop::Retry(format!("target {} not connected", target.key)));
        };
        if let Err(error) = conn.send(bytes).await {
            target.conn = None;
            return Err(Stop::Resync(format!("target {}: {error}", target.key)));
        }
        Ok(())
    }

    async fn read(&mut self, node: usize) -> Result<Reply, Stop> {
        let target = &mut self.nodes[node];
        let Some(conn) = target.conn.as_mut() else {
            return Err(Stop::Retry(format!("target {} not connected", target.key)));
        };
        match tokio::time::timeout(REPLY_TIMEOUT, conn.value()).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => {
                target.conn = None;
                Err(Stop::Resync(format!("target {}: {error}", target.key)))
            }
            Err(_) => {
                target.conn = None;
                Err(Stop::Resync(format!("target {} did not answer within {REPLY_TIMEOUT:?}", target.key)))
            }
        }
    }
}

fn gone() -> Stop {
    Stop::Retry("the runtime is shutting down".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_are_told_from_refusals() {
        assert!(
            matches!(Redirect::parse("MOVED 3999 127.0.0.1:6381"), Some(Redirect::Moved(3999, a)) if a.port() == 6381)
        );
        assert!(matches!(Redirect::parse("ASK 3999 127.0.0.1:6381"), Some(Redirect::Ask(_))));
        assert!(matches!(Redirect::parse("MOVED 3999 :6381"), Some(Redirect::Wait(_))));
        assert!(matches!(Redirect::parse("TRYAGAIN Multiple keys request during rehashing"), Some(Redirect::Wait(_))));
        assert!(Redirect::parse("WRONGTYPE Operation against a key").is_none());
    }

    #[test]
    fn a_transaction_is_redirected_by_any_of_its_replies() {
        let piece = Piece { node: 0, slot: Some(1), commands: vec![vec![b"SET".to_vec()]], transaction: true };
        let replies = [
            Reply::Simple("OK".into()),
            Reply::Error("MOVED 1 127.0.0.1:7000".into()),
            Reply::Error("EXECABORT".into()),
        ];
        assert!(matches!(outcome(&piece, &replies), Outcome::Redirected(Redirect::Moved(1, _))));
        let replies = [
            Reply::Simple("OK".into()),
            Reply::Simple("QUEUED".into()),
            Reply::Array(Some(vec![Reply::Error("WRONGTYPE x".into())])),
        ];
        assert!(matches!(outcome(&piece, &replies), Outcome::Failed(e) if e.contains("WRONGTYPE")));
    }
}
