//! The bridge's targets: the primaries its data goes to, which of them owns each hash slot,
//! and applying commands there in pipelines (one write and one read per node for a whole
//! batch), following `MOVED`/`ASK` while slots move.
//!
//! A command goes to the owner of its keys' slot, found from the key specs of the
//! target's command table (`COMMAND INFO`, cached per name; `COMMAND GETKEYS` for commands
//! whose keys move). Commands that change data without keys go to every primary; multi-key
//! commands whose keys a cluster keeps apart are split per key where that means the same
//! (DEL, MSET, ...); any other such command is sent as is, and the node's refusal reported.

mod empty;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use super::Stop;
use super::wire::Conn;
use crate::NodeKey;
use crate::cluster::{SLOTS, key_slot, parse_nodes};
use crate::resp::{self, Reply};
use crate::supervisor::WeakRuntime;

/// Bound on one node's replies to a pipeline (a batch of big RESTOREs included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command keeps following redirections (a slot migrating, a failover).
const REDIRECT_FOR: Duration = Duration::from_secs(10);
/// Commands that change data without naming keys: every primary gets them.
const EVERY_PRIMARY: &[&str] = &["flushall", "flushdb", "script", "function"];
/// Multi-key commands that mean the same run key by key.
const PER_KEY: &[&str] = &["del", "unlink", "touch", "exists"];
/// Multi-key commands that mean the same run pair by pair (MSETNX only reaches the stream
/// when it set every key).
const PER_PAIR: &[&str] = &["mset", "msetnx"];

/// What the bridge applies: one command, a transaction, or a database change.
pub(super) enum Unit {
    Command(Vec<Vec<u8>>),
    Transaction(Vec<Vec<Vec<u8>>>),
    Select(u32),
}

/// Where a command's keys are (`COMMAND INFO`'s legacy first/last/step).
#[derive(Clone, Copy, Debug)]
struct KeySpec {
    first: i64,
    last: i64,
    step: i64,
    /// Positions depend on the arguments: asked of a node.
    movable: bool,
    /// A container (`XGROUP`, `OBJECT`, ...): its subcommands have the key specs.
    container: bool,
}

/// What one node is sent for one unit, and can be sent again elsewhere if redirected.
struct Piece {
    node: usize,
    slot: Option<u16>,
    commands: Vec<Vec<Vec<u8>>>,
    transaction: bool,
}

impl Piece {
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
                let address = words.next().and_then(|a| a.parse().ok());
                Some(slot.zip(address).map_or_else(wait, |(slot, address)| Redirect::Moved(slot, address)))
            }
            "ASK" => Some(words.nth(1).and_then(|a| a.parse().ok()).map_or_else(wait, Redirect::Ask)),
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
        if self.source_slots.is_none() || !units.iter().any(empty::is_flush) {
            return self.execute_segment(units).await;
        }
        // The source's FLUSHALL empties only its slots: applied between the commands
        // around it, in order.
        let mut refused = Vec::new();
        let mut segment = Vec::new();
        let mut sent = false;
        let partial = |sent: bool| move |stop: Stop| if sent { stop.into_resync() } else { stop };
        for unit in empty::unwrap_flushing_transactions(units) {
            if !empty::is_flush(&unit) {
                segment.push(unit);
                continue;
            }
            refused.extend(self.execute_segment(std::mem::take(&mut segment)).await.map_err(partial(sent))?);
            sent = true;
            self.empty().await.map_err(Stop::into_resync)?;
        }
        refused.extend(self.execute_segment(segment).await.map_err(partial(sent))?);
        Ok(refused)
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
                    if let Some(error) = self.chase(piece, redirect).await.map_err(Stop::into_resync)? {
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

    /// Sends a redirected piece where it is sent until it is run or refused.
    async fn chase(&mut self, piece: &Piece, mut redirect: Redirect) -> Result<Option<String>, Stop> {
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
            let mut bytes = Vec::new();
            piece.encode(asking, &mut bytes);
            self.send(node, &bytes).await?;
            let mut replies = Vec::with_capacity(piece.replies() + 1);
            for _ in 0..piece.replies() + usize::from(asking) {
                replies.push(self.read(node).await?);
            }
            let replies = if asking { &replies[1..] } else { &replies[..] };
            match outcome(piece, replies) {
                Outcome::Done => return Ok(None),
                Outcome::Failed(error) => return Ok(Some(error)),
                Outcome::Redirected(next) => redirect = next,
            }
        }
    }

    async fn plan(&mut self, unit: Unit, pieces: &mut Vec<Piece>, selected: &mut Option<u32>) -> Result<(), Stop> {
        match unit {
            Unit::Select(0) if self.cluster => Ok(()),
            Unit::Select(db) if self.cluster => {
                Err(Stop::Retry(format!("source uses database {db}; the target has only database 0")))
            }
            Unit::Select(db) => {
                *selected = Some(db);
                let args = vec![b"SELECT".to_vec(), db.to_string().into_bytes()];
                pieces.push(Piece { node: 0, slot: None, commands: vec![args], transaction: false });
                Ok(())
            }
            Unit::Command(args) => self.plan_command(args, pieces).await,
            Unit::Transaction(commands) => self.plan_transaction(commands, pieces).await,
        }
    }

    async fn plan_command(&mut self, args: Vec<Vec<u8>>, pieces: &mut Vec<Piece>) -> Result<(), Stop> {
        let single = |node, slot, args| Piece { node, slot, commands: vec![args], transaction: false };
        if !self.cluster {
            pieces.push(single(0, None, args));
            return Ok(());
        }
        let name = args.first().map(|n| lower(n)).unwrap_or_default();
        if EVERY_PRIMARY.contains(&name.as_str()) {
            for node in self.primaries() {
                pieces.push(single(node, None, args.clone()));
            }
            return Ok(());
        }
        let slots = self.slots(&args).await?;
        let Some(&slot) = slots.first() else {
            pieces.push(single(self.owner[0].unwrap_or(0), None, args));
            return Ok(());
        };
        if slots.iter().all(|&s| s == slot) {
            pieces.push(single(self.owner_of(slot)?, Some(slot), args));
        } else if PER_KEY.contains(&name.as_str()) {
            for key in &args[1..] {
                let slot = key_slot(key);
                pieces.push(single(self.owner_of(slot)?, Some(slot), vec![args[0].clone(), key.clone()]));
            }
        } else if PER_PAIR.contains(&name.as_str()) {
            for pair in args[1..].chunks_exact(2) {
                let slot = key_slot(&pair[0]);
                let command = vec![b"MSET".to_vec(), pair[0].clone(), pair[1].clone()];
                pieces.push(single(self.owner_of(slot)?, Some(slot), command));
            }
        } else {
            // The node refuses it (CROSSSLOT), and the refusal is reported.
            pieces.push(single(self.owner_of(slot)?, Some(slot), args));
        }
        Ok(())
    }

    /// A transaction stays one when a cluster can run it (all its keys in one slot), and is
    /// applied command by command otherwise.
    async fn plan_transaction(&mut self, commands: Vec<Vec<Vec<u8>>>, pieces: &mut Vec<Piece>) -> Result<(), Stop> {
        if !self.cluster {
            pieces.push(Piece { node: 0, slot: None, commands, transaction: true });
            return Ok(());
        }
        let mut slots = Vec::new();
        let mut everywhere = false;
        for command in &commands {
            everywhere |= command.first().is_some_and(|n| EVERY_PRIMARY.contains(&lower(n).as_str()));
            slots.extend(self.slots(command).await?);
        }
        let one_slot = slots.first().filter(|&&s| slots.iter().all(|&t| t == s)).copied();
        match one_slot {
            Some(slot) if !everywhere => {
                pieces.push(Piece { node: self.owner_of(slot)?, slot: Some(slot), commands, transaction: true })
            }
            None if slots.is_empty() && !everywhere => {
                pieces.push(Piece { node: self.owner[0].unwrap_or(0), slot: None, commands, transaction: true })
            }
            _ => {
                for command in commands {
                    Box::pin(self.plan_command(command, pieces)).await?;
                }
            }
        }
        Ok(())
    }

    /// The slots of a command's keys.
    async fn slots(&mut self, args: &[Vec<u8>]) -> Result<Vec<u16>, Stop> {
        let Some(name) = args.first().map(|n| lower(n)) else { return Ok(Vec::new()) };
        let Some(Some(mut spec)) = self.commands.get(&name).copied() else { return Ok(Vec::new()) };
        if spec.container {
            let sub = args.get(1).map(|s| format!("{name}|{}", lower(s))).unwrap_or_default();
            let Some(Some(sub)) = self.commands.get(&sub).copied() else { return Ok(Vec::new()) };
            spec = sub;
        }
        if spec.movable {
            return self.movable_keys(args).await;
        }
        let len = i64::try_from(args.len()).unwrap_or(i64::MAX);
        let last = if spec.last < 0 { len + spec.last } else { spec.last.min(len - 1) };
        let mut slots = Vec::new();
        let mut at = spec.first;
        while at > 0 && at <= last {
            if let Some(key) = usize::try_from(at).ok().and_then(|i| args.get(i)) {
                slots.push(key_slot(key));
            }
            at += spec.step.max(1);
        }
        Ok(slots)
    }

    async fn movable_keys(&mut self, args: &[Vec<u8>]) -> Result<Vec<u16>, Stop> {
        let mut command = vec![b"COMMAND".to_vec(), b"GETKEYS".to_vec()];
        command.extend(args.iter().cloned());
        let reply = self.ask(0, &resp::encode(&command)).await?;
        let Reply::Array(Some(keys)) = reply else { return Ok(Vec::new()) };
        Ok(keys.iter().filter_map(|k| if let Reply::Bulk(Some(k)) = k { Some(key_slot(k)) } else { None }).collect())
    }

    /// Loads the key specs of the commands in `units` the table does not know yet.
    async fn learn(&mut self, units: &[Unit]) -> Result<(), Stop> {
        if !self.cluster {
            return Ok(());
        }
        let mut names: Vec<String> = Vec::new();
        let mut note = |args: &Vec<Vec<u8>>| {
            let name = args.first().map(|n| lower(n)).unwrap_or_default();
            if !self.commands.contains_key(&name) && !names.contains(&name) {
                names.push(name);
            }
        };
        for unit in units {
            match unit {
                Unit::Command(args) => note(args),
                Unit::Transaction(commands) => commands.iter().for_each(&mut note),
                Unit::Select(_) => {}
            }
        }
        if names.is_empty() {
            return Ok(());
        }
        let mut command = vec!["COMMAND", "INFO"];
        command.extend(names.iter().map(String::as_str));
        let reply = self.ask(0, &resp::encode(&command)).await?;
        let entries = match reply {
            Reply::Array(Some(entries)) => entries,
            other => return Err(Stop::Retry(format!("COMMAND INFO answered {other:?}"))),
        };
        for (name, entry) in names.iter().zip(&entries) {
            self.commands.insert(name.clone(), None);
            learn_entry(entry, &mut self.commands);
        }
        Ok(())
    }

    /// Reads which primary owns which slot again, unless that was just done.
    async fn refresh_soon(&mut self) -> Result<(), Stop> {
        if self.refreshed.is_some_and(|at| at.elapsed() < Duration::from_millis(20)) {
            return Ok(());
        }
        self.refresh().await
    }

    /// Reads the slot map: each known primary's own slots (`myself` in CLUSTER NODES),
    /// then, for slots none of them has, whoever their views say owns them.
    async fn refresh(&mut self) -> Result<(), Stop> {
        self.refreshed = Some(Instant::now());
        let mut owner = vec![None; usize::from(SLOTS)];
        let mut views = Vec::new();
        let known = self.nodes.len();
        for i in 0..known {
            let reply = match self.ask(i, &resp::encode(&["CLUSTER", "NODES"])).await {
                Ok(reply) => reply,
                Err(stop) => {
                    tracing::debug!(node = %self.nodes[i].key, reason = stop.reason(), "bridge target did not answer");
                    continue;
                }
            };
            let text = match reply {
                Reply::Error(error) if error.contains("cluster support disabled") => return self.single_node(),
                Reply::Error(error) => return Err(Stop::Retry(format!("target {}: {error}", self.nodes[i].key))),
                other => other.as_text().unwrap_or_default(),
            };
            let view = parse_nodes(&text);
            if let Some(me) = view.iter().find(|n| n.myself && n.primary) {
                for slot in me.slots.iter().flat_map(|&(a, b)| a..=b) {
                    owner[usize::from(slot)] = Some(i);
                }
            }
            views.push(view);
        }
        if views.is_empty() {
            return Err(Stop::Retry("no target node answered".into()));
        }
        for node in views.iter().flatten().filter(|n| n.primary && !n.failing && !n.myself) {
            let Some(address) = node.address else { continue };
            for &(from, to) in &node.slots {
                let range = usize::from(from)..=usize::from(to).min(owner.len() - 1);
                if owner[range.clone()].iter().any(Option::is_none)
                    && let Ok(index) = self.node_at(address)
                {
                    owner[range].iter_mut().for_each(|o| _ = o.get_or_insert(index));
                }
            }
        }
        self.owner = owner;
        self.cluster = true;
        Ok(())
    }

    /// A target that is no cluster: one node, owning everything.
    fn single_node(&mut self) -> Result<(), Stop> {
        if self.nodes.len() != 1 {
            return Err(Stop::Retry("a target node is not in cluster mode, yet there are several".into()));
        }
        self.cluster = false;
        self.owner = vec![Some(0); usize::from(SLOTS)];
        Ok(())
    }

    fn owner_of(&self, slot: u16) -> Result<usize, Stop> {
        self.owner
            .get(usize::from(slot))
            .copied()
            .flatten()
            .ok_or_else(|| Stop::Retry(format!("no target primary owns slot {slot}")))
    }

    /// The nodes owning slots (all known ones if none does).
    fn primaries(&self) -> Vec<usize> {
        let mut nodes: Vec<usize> = self.owner.iter().flatten().copied().collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.is_empty() { (0..self.nodes.len()).collect() } else { nodes }
    }

    /// The node at `address`: a known one, or one the runtime supervises (a primary
    /// the target's slots moved to).
    fn node_at(&mut self, address: SocketAddr) -> Result<usize, Stop> {
        if let Some(i) = self.nodes.iter().position(|n| n.address == Some(address)) {
            return Ok(i);
        }
        let runtime = self.runtime.upgrade().ok_or_else(gone)?;
        let node = runtime.running().into_iter().find(|n| SocketAddr::from((n.address, n.port)) == address);
        let node = node.ok_or_else(|| Stop::Retry(format!("the target sent the bridge to {address}, no node here")))?;
        self.nodes.push(Target { key: node.key, address: Some(address), conn: None });
        Ok(self.nodes.len() - 1)
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

/// Records one `COMMAND INFO` entry (and its subcommands) in `table`.
fn learn_entry(entry: &Reply, table: &mut HashMap<String, Option<KeySpec>>) {
    let Reply::Array(Some(fields)) = entry else { return };
    let Some(name) = fields.first().and_then(Reply::as_text) else { return };
    let int = |i: usize| if let Some(Reply::Integer(n)) = fields.get(i) { *n } else { 0 };
    let movable = match fields.get(2) {
        Some(Reply::Array(Some(flags))) => flags.iter().filter_map(Reply::as_text).any(|f| f == "movablekeys"),
        _ => false,
    };
    let subcommands = match fields.get(9) {
        Some(Reply::Array(Some(subcommands))) => subcommands.as_slice(),
        _ => &[],
    };
    let spec = KeySpec { first: int(3), last: int(4), step: int(5), movable, container: !subcommands.is_empty() };
    table.insert(name.to_ascii_lowercase(), Some(spec));
    for sub in subcommands {
        learn_entry(sub, table);
    }
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
