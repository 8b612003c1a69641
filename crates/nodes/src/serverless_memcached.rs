//! [`MemcachedEndpoint`]: the one TLS endpoint of a Serverless Memcached cache, in front of
//! two or more memcached nodes (one per zone) that mirror each other; [`dump`] and [`load`]:
//! a snapshot of one node's items, and its restore.
//!
//! AWS documents Serverless Memcached as open-source memcached 1.6 behind TLS, text protocol
//! only, minus the commands that configure the engine or reveal its state, and a zone failure
//! is survived with no change on the client's side. So the endpoint terminates TLS, reads one
//! command at a time and forwards it over plain TCP:
//! - writes (storage commands, `incr`/`decr`, `delete`, `touch`, `flush_all`, `ms`/`md`/`ma`,
//!   `gat`, an `mg` that sets a TTL or vivifies) go to every live node, one node after the
//!   other and in one order for the whole endpoint, so the nodes stay alike. The client gets
//!   the first node's answer, or the first success when the first node did not succeed;
//! - a command holding a node's CAS value (`cas`, meta `C`) runs on the first node that knows
//!   the key, and what it stored is then copied to the others;
//! - reads go to the first live node; the keys it misses are asked of the next one (a node
//!   restarted comes back empty while the other still holds the data);
//! - `mn`, `quit`, a delayed `flush_all`, an over-long `get` line and every command AWS does
//!   not serve are answered here, as memcached answers an unknown command (`ERROR`).
//!
//! Each forwarded request is followed by `mn`, and the node's answer is all it sends before
//! `MN`: the exchange stays request/response whatever the node makes of the request (an
//! error, or a line it reads as two commands). `noreply` and the meta `q` flag are taken off
//! before forwarding, since a mirrored write needs the node's answer, and applied here.
//!
//! A node that fails a command (refuses the connection, or stays silent for two seconds, as a
//! node frozen in a zone outage does) is skipped by every connection until it answers again.
//! If a write reached other nodes but not it meanwhile, it is emptied (`flush_all`) and
//! filled again from a mirror in use ([`dump`], [`load`]) before it serves again, with the
//! writes held meanwhile: it never answers stale data, and it holds what its mirror holds,
//! so the mirror's zone can go down next. A watch asks every node for its process id a few
//! times a second: a node that restarted (a new pid, or a new address) came back empty,
//! and is filled the same way.
//!
//! # Dump format
//! ```text
//! elasticache-local memcached dump 1\r\n
//! <key> <flags> <expires_at> <bytes>\r\n    one per item; expires_at in unix seconds, 0: never
//! <data>\r\n
//! END\r\n
//! ```
//! Keys are spelled as in memcached's text protocol. The expiry is absolute, so a restore at
//! any later time gives each item what remains of its TTL, and skips the items expired by then.
//!
//! # Layout
//! - [`MemcachedEndpoint`]: the listener; `Shared`: the node list and which nodes are down.
//! - `Session`: one client connection; `Command`: one client command, parsed.
//! - `Upstream`: one connection to a node; [`dump`] and [`load`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufStream, BufWriter,
};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::serverless::{ANSWER_TIMEOUT, CONNECT_TIMEOUT, listen, serve_tls};
use crate::{EcpuLimit, NodeError};

/// The longest command line taken from a client: beyond it, the client is not speaking
/// memcached's text protocol (or not one worth buffering for), and is closed.
const MAX_LINE: usize = 64 * 1024;
/// AWS's bound on a `get`/`gets` line.
const MAX_GET_LINE: usize = 16 * 1024;
/// memcached's default item size: no larger value can be stored, so one is swallowed here,
/// with the node's own answer, instead of being buffered.
const MAX_VALUE: usize = 1024 * 1024;
/// The most of one node answer held in memory (a multi-get of many large values).
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// memcached's longest key.
const MAX_KEY: usize = 250;
/// How often a node that failed is tried again.
const HEAL_EVERY: Duration = Duration::from_millis(100);
/// How often each node is asked for its process id, to notice a restart between commands.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Bound on filling a node from its mirror (a dump and a load of every item).
const REFILL_TIMEOUT: Duration = Duration::from_secs(60);
/// Items per pipelined round trip in [`dump`] and [`load`] (at most 32 MiB of values).
const BATCH: usize = 32;
/// memcached reads a TTL longer than this as an absolute unix time.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;
const DUMP_HEADER: &[u8] = b"elasticache-local memcached dump 1\r\n";

const ERROR: &[u8] = b"ERROR\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const UNREACHABLE: &[u8] = b"SERVER_ERROR no memcached node is reachable right now\r\n";
// AWS says a delayed flush_all is rejected with CLIENT_ERROR; its wording is not on record.
const DELAYED_FLUSH: &[u8] = b"CLIENT_ERROR delayed flush_all is not supported\r\n";
// memcached's own wording for an over-long line; AWS's for its 16 KB get limit is not on record.
const GET_TOO_LONG: &[u8] = b"CLIENT_ERROR line too long\r\n";
// memcached's own answers to these.
const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
const ANSWER_TOO_LARGE: &[u8] = b"SERVER_ERROR out of memory writing get response\r\n";

/// A running Serverless Memcached endpoint; it stops (listener and connections) when dropped.
pub struct MemcachedEndpoint {
    port: u16,
    nodes: watch::Sender<Vec<SocketAddr>>,
    task: JoinHandle<()>,
}

impl MemcachedEndpoint {
    /// Listens on `address:port` (0: a free port), TLS only, in front of the nodes that
    /// [`MemcachedEndpoint::point_at`] names.
    /// `ecpu` is the cache's ECPU/second maximum.
    pub async fn start(
        address: Ipv4Addr,
        port: u16,
        tls: Arc<rustls::ServerConfig>,
        ecpu: Arc<EcpuLimit>,
    ) -> Result<Self, NodeError> {
        let listener = listen(address, port).await?;
        let port = listener.local_addr()?.port();
        let (nodes, watched) = watch::channel(Vec::new());
        let shared = Arc::new(Shared {
            nodes: watched,
            down: Mutex::default(),
            pids: Mutex::default(),
            order: tokio::sync::Mutex::new(()),
            ecpu,
        });
        tracing::info!(%address, port, "serverless memcached endpoint listening");
        tokio::spawn(watch(shared.clone()));
        let task = tokio::spawn(serve_tls(listener, tls, move |stream, _| Session::new(shared.clone()).run(stream)));
        Ok(Self { port, nodes, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The nodes behind the endpoint, in preference order (the first is the one answers come
    /// from). Connections use the new list from their next command on.
    pub fn point_at(&self, nodes: Vec<SocketAddr>) {
        self.nodes.send_replace(nodes);
    }
}

impl Drop for MemcachedEndpoint {
    fn drop(&mut self) {
        // The accept loop owns every connection; the nodes' healers see the sender gone.
        self.task.abort();
    }
}

/// What the connections of one endpoint share.
struct Shared {
    nodes: watch::Receiver<Vec<SocketAddr>>,
    /// Nodes that failed a command, skipped until [`heal`] sees them answer again.
    down: Mutex<HashMap<SocketAddr, Down>>,
    /// The process id each node answered [`watch`] with last.
    pids: Mutex<HashMap<SocketAddr, u64>>,
    /// Held through each write, so that every node applies the writes of all connections in
    /// the same order and the mirrors do not drift apart.
    order: tokio::sync::Mutex<()>,
    /// The cache's ECPU/second maximum.
    ecpu: Arc<EcpuLimit>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Down {
    /// Other nodes took a write this one did not: it must be emptied before it serves again.
    missed_write: bool,
    /// Bumped at every failure and missed write: a heal counts only if none came meanwhile.
    changes: u64,
}

impl Shared {
    fn down(&self) -> MutexGuard<'_, HashMap<SocketAddr, Down>> {
        self.down.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_down(self: &Arc<Self>, node: SocketAddr) {
        let mut down = self.down();
        let first = !down.contains_key(&node);
        down.entry(node).or_default().changes += 1;
        if first {
            tracing::warn!(%node, from = "up", to = "down", "serverless memcached: node skipped until it answers");
            tokio::spawn(heal(self.clone(), node));
        }
    }

    /// A node that restarted: it lost every item, as if it had missed every write.
    fn mark_emptied(self: &Arc<Self>, node: SocketAddr) {
        self.mark_down(node);
        if let Some(state) = self.down().get_mut(&node) {
            state.missed_write = true;
            state.changes += 1;
        }
    }

    fn pids(&self) -> MutexGuard<'_, HashMap<SocketAddr, u64>> {
        self.pids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the process id `node` answers with; true when it restarted since it was
    /// last seen, or is new beside nodes the watch asked before (`seen`): it starts empty.
    /// (Nodes asked together the first time are a new cache, all empty alike.)
    fn restarted(&self, node: SocketAddr, pid: u64, seen: &[SocketAddr]) -> bool {
        match self.pids().insert(node, pid) {
            Some(previous) => previous != pid,
            None => seen.iter().any(|other| *other != node),
        }
    }

    /// The first node in use other than `node`: where a refill copies from.
    fn mirror_of(&self, node: SocketAddr) -> Option<SocketAddr> {
        let nodes = self.nodes.borrow().clone();
        let down = self.down();
        nodes.into_iter().find(|other| *other != node && !down.contains_key(other))
    }

    /// A write was done while the nodes down were skipped: each of them missed it.
    fn missed_write(&self) {
        for state in self.down().values_mut() {
            state.missed_write = true;
            state.changes += 1;
        }
    }

    /// Puts `node` back in use, unless something happened to it since `changes` was read.
    fn back_up(&self, node: SocketAddr, changes: u64) -> bool {
        let mut down = self.down();
        let unchanged = down.get(&node).is_some_and(|state| state.changes == changes);
        if unchanged {
            down.remove(&node);
        }
        unchanged
    }
}

/// Tries a node that failed until it answers, refilling it first if it missed a write, then
/// puts it back in use. Ends early when the node leaves the list or the endpoint stops.
async fn heal(shared: Arc<Shared>, node: SocketAddr) {
    loop {
        tokio::time::sleep(HEAL_EVERY).await;
        // An error: the endpoint (the sender) is gone.
        if shared.nodes.has_changed().is_err() || !shared.nodes.borrow().contains(&node) {
            shared.down().remove(&node);
            return;
        }
        let Some(state) = shared.down().get(&node).copied() else { return };
        let answer = bounded(async { Upstream::connect(node).await?.exchange(b"version\r\n").await }).await;
        if !answer.is_ok_and(|answer| succeeded(&answer.concat())) {
            continue;
        }
        // Between writes: one going on now either skips the node and counts as missed by it
        // (the state changed: refilled again next time), or comes after and reaches it. No
        // write runs during a refill, so none can land between the copy and its source.
        let _order = shared.order.lock().await;
        if state.missed_write {
            match refill(&shared, node).await {
                Ok(items) => tracing::info!(%node, items, "serverless memcached: node refilled from its mirror"),
                Err(error) => {
                    tracing::warn!(%node, %error, "serverless memcached: refilling the node failed; retrying");
                    continue;
                }
            }
        }
        if shared.back_up(node, state.changes) {
            tracing::info!(%node, refilled = state.missed_write, from = "down", to = "up", "serverless memcached: node back in use");
            return;
        }
    }
}

/// Empties `node`, then copies every item of a mirror in use into it; how many. Its process
/// is recorded as the one [`watch`] knows: refilled, it is no restarted node any more.
async fn refill(shared: &Shared, node: SocketAddr) -> io::Result<usize> {
    let pid = bounded(pid_of(node)).await?;
    shared.pids().insert(node, pid);
    let flushed = bounded(async { Upstream::connect(node).await?.exchange(b"flush_all\r\n").await }).await?;
    if !succeeded(&flushed.concat()) {
        return Err(invalid("flush_all refused"));
    }
    // No other node in use (its zone is down too): nothing to copy, and nothing stale kept.
    let Some(mirror) = shared.mirror_of(node) else { return Ok(0) };
    let copy = async { load(node, &dump(mirror).await?).await };
    tokio::time::timeout(REFILL_TIMEOUT, copy).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Asks every node in use for its process id, a few times a second, until the endpoint
/// stops: a node that no longer answers is skipped, one that restarted is refilled.
async fn watch(shared: Arc<Shared>) {
    // The nodes this watch asked in an earlier pass: a node it never saw is new beside them
    // (empty). Its own memory, not the pids recorded: a refill records one too, and the
    // mirror it copied from, not asked yet, is no new node for that.
    let mut seen: Vec<SocketAddr> = Vec::new();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if shared.nodes.has_changed().is_err() {
            return;
        }
        let nodes = shared.nodes.borrow().clone();
        shared.pids().retain(|known, _| nodes.contains(known));
        seen.retain(|known| nodes.contains(known));
        let asked_before = seen.clone();
        for &node in &nodes {
            if shared.down().contains_key(&node) {
                continue; // its healer has it
            }
            match bounded(pid_of(node)).await {
                Err(_) => shared.mark_down(node),
                Ok(pid) => {
                    if shared.restarted(node, pid, &asked_before) {
                        tracing::info!(%node, pid, "serverless memcached: node restarted empty");
                        shared.mark_emptied(node);
                    }
                    if !seen.contains(&node) {
                        seen.push(node);
                    }
                }
            }
        }
    }
}

/// The process id a node reports (`STAT pid`).
async fn pid_of(node: SocketAddr) -> io::Result<u64> {
    let lines = Upstream::connect(node).await?.exchange(b"stats\r\n").await?;
    lines
        .iter()
        .find_map(|line| line.strip_prefix(b"STAT pid ").and_then(|pid| number(pid.trim_ascii())))
        .ok_or_else(|| invalid("no pid in stats"))
}

/// `work` bounded by [`ANSWER_TIMEOUT`]: a frozen node accepts bytes and never answers.
async fn bounded<T>(work: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(ANSWER_TIMEOUT, work).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// One client connection, with its own connections to the nodes.
struct Session {
    shared: Arc<Shared>,
    upstreams: HashMap<SocketAddr, Upstream>,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Self {
        Self { shared, upstreams: HashMap::new() }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(mut self, stream: S) {
        // Reads buffered (`buffer` tells whether a pipeline goes on), writes buffered too.
        let mut client = BufReader::new(BufWriter::new(stream));
        // The binary protocol (its requests start with the magic byte 0x80) is not served.
        match client.fill_buf().await {
            Ok([first, ..]) if *first != 0x80 => {}
            _ => return,
        }
        loop {
            let Ok(Some(line)) = read_line(&mut client).await else { return };
            let mut command = Command::parse(&line);
            if command.verb() == b"quit" {
                return;
            }
            let answer = match command.read_data(&mut client).await {
                Ok(Some(refused)) => refused.to_vec(),
                Ok(None) => self.handle(&command).await,
                Err(_) => return,
            };
            let shown = command.shown(answer);
            if client.get_mut().write_all(&shown).await.is_err() {
                return;
            }
            // Answers to a pipeline go out together.
            if client.buffer().is_empty() && client.get_mut().flush().await.is_err() {
                return;
            }
            // At the cache's ECPU maximum, the next command waits (throttled).
            let moved = command.line_len + command.data.len() + shown.len();
            self.shared.ecpu.spend(EcpuLimit::cost(moved)).await;
        }
    }

    async fn handle(&mut self, command: &Command) -> Vec<u8> {
        let words = &command.words;
        match command.verb() {
            b"get" | b"gets" | b"gat" | b"gats" if command.line_len > MAX_GET_LINE => GET_TOO_LONG.to_vec(),
            b"get" | b"gets" => self.retrieve(command, 1, false).await,
            b"gat" | b"gats" => self.retrieve(command, 2, true).await,
            b"mg" if command.touches() => self.mirror(&command.request()).await,
            b"mg" | b"version" => self.read(&command.request()).await,
            b"stats" if words.len() == 1 => self.read(&command.request()).await,
            b"stats" if words.len() == 2 && words[1] == b"reset" => self.mirror(&command.request()).await,
            b"flush_all" if command.delayed() => DELAYED_FLUSH.to_vec(),
            b"cas" => self.compare(&command.request(), &command.as_set()).await,
            b"ms" | b"md" | b"ma" if command.compares() => {
                self.compare(&command.request(), &command.without_compare()).await
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"incr" | b"decr" | b"delete" | b"touch"
            | b"flush_all" | b"ms" | b"md" | b"ma" => self.mirror(&command.request()).await,
            b"mn" => b"MN\r\n".to_vec(),
            // Unknown, or not served by AWS: stats variants, lru, lru_crawler, watch,
            // verbosity, me, slabs, shutdown, cache_memlimit ...
            _ => ERROR.to_vec(),
        }
    }

    /// The nodes to use now, in preference order: the latest list, less the nodes down.
    fn live(&mut self) -> Vec<SocketAddr> {
        let nodes = self.shared.nodes.borrow().clone();
        self.upstreams.retain(|node, _| nodes.contains(node));
        let down = self.shared.down();
        nodes.into_iter().filter(|node| !down.contains_key(node)).collect()
    }

    /// After a command: the nodes that failed it are skipped until they answer again. After
    /// a write some node took (`written`), every node skipped, or failing it, missed it.
    fn mark(&self, failed: Vec<SocketAddr>, written: bool) {
        for node in failed {
            self.shared.mark_down(node);
        }
        if written {
            self.shared.missed_write();
        }
    }

    /// A read: asked of each live node in turn until one succeeds.
    async fn read(&mut self, request: &[u8]) -> Vec<u8> {
        self.forward(request, false).await
    }

    /// A write: done on every live node, in the endpoint's one order of writes.
    async fn mirror(&mut self, request: &[u8]) -> Vec<u8> {
        let shared = self.shared.clone();
        let _order = shared.order.lock().await;
        self.forward(request, true).await
    }

    /// `request` on the live nodes in turn (every one for a write, else until one succeeds):
    /// the first success, else the first answer.
    async fn forward(&mut self, request: &[u8], write: bool) -> Vec<u8> {
        let (mut answers, mut failed) = (Vec::new(), Vec::new());
        for node in self.live() {
            let Some(answer) = self.exchange(node, request).await else {
                failed.push(node);
                continue;
            };
            let answer = answer.concat();
            let done = !write && succeeded(&answer);
            answers.push(answer);
            if done {
                break;
            }
        }
        self.mark(failed, write && !answers.is_empty());
        let chosen = answers.iter().position(|answer| succeeded(answer)).unwrap_or(0);
        answers.into_iter().nth(chosen).unwrap_or_else(|| UNREACHABLE.to_vec())
    }

    /// `get`/`gets`/`gat`/`gats`: each key from the first node that has it, one `END` at the
    /// end. Touching (`gat`) also sets the TTL, so it is a write: every key to every node.
    async fn retrieve(&mut self, command: &Command, first_key: usize, touching: bool) -> Vec<u8> {
        let (head, keys) = command.words.split_at(first_key.min(command.words.len()));
        if keys.is_empty() {
            // The node's own answer to a malformed line.
            return self.read(&command.request()).await;
        }
        let shared = self.shared.clone();
        let _order = if touching { Some(shared.order.lock().await) } else { None };
        let mut found: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let (mut answered, mut refused, mut failed) = (false, None::<Vec<u8>>, Vec::new());
        for node in self.live() {
            let wanted: Vec<_> =
                keys.iter().zip(&found).filter(|(_, value)| touching || value.is_none()).map(|(key, _)| key).collect();
            if wanted.is_empty() {
                break;
            }
            let request = line(head.iter().chain(wanted));
            let Some(answer) = self.exchange(node, &request).await else {
                failed.push(node);
                continue;
            };
            if answer.iter().any(|reply| !reply.starts_with(b"VALUE ") && reply != b"END\r\n") {
                // A key the node refuses (too long ...): every node would, the same way.
                refused = Some(answer.concat());
                break;
            }
            answered = true;
            for value in answer.into_iter().filter(|reply| reply.starts_with(b"VALUE ")) {
                let key = words(&value).get(1).copied().unwrap_or_default();
                let slot = keys.iter().zip(&found).position(|(k, v)| v.is_none() && k.as_slice() == key);
                if let Some(slot) = slot {
                    found[slot] = Some(value);
                }
            }
        }
        self.mark(failed, touching && answered);
        match (refused, answered) {
            (Some(refusal), _) => refusal,
            (None, false) => UNREACHABLE.to_vec(),
            (None, true) => [found.into_iter().flatten().collect::<Vec<_>>().concat(), b"END\r\n".to_vec()].concat(),
        }
    }

    /// A command holding a node's CAS value (`cas`, meta `C`). The nodes' CAS values differ,
    /// so it runs on the first node that knows the key; what it stored there is then copied
    /// to the other nodes with `copy` (the same write without the comparison).
    async fn compare(&mut self, request: &[u8], copy: &[u8]) -> Vec<u8> {
        let shared = self.shared.clone();
        let _order = shared.order.lock().await;
        let nodes = self.live();
        let (mut last, mut stored_on, mut failed) = (None, None, Vec::new());
        for &node in &nodes {
            let Some(answer) = self.exchange(node, request).await else {
                failed.push(node);
                continue;
            };
            let answer = answer.concat();
            let unknown = answer.starts_with(b"NOT_FOUND") || answer.starts_with(b"NF");
            if succeeded(&answer) {
                stored_on = Some(node);
            }
            last = Some(answer);
            if !unknown {
                break;
            }
        }
        if let Some(stored_on) = stored_on {
            let others: Vec<_> =
                nodes.into_iter().filter(|node| *node != stored_on && !failed.contains(node)).collect();
            for node in others {
                if self.exchange(node, copy).await.is_none() {
                    failed.push(node);
                }
            }
        }
        self.mark(failed, stored_on.is_some());
        last.unwrap_or_else(|| UNREACHABLE.to_vec())
    }

    /// `request` on `node`, over this client's connection to it (opened on first use).
    /// `None`: the node failed (refused, closed, or silent for [`ANSWER_TIMEOUT`]).
    async fn exchange(&mut self, node: SocketAddr, request: &[u8]) -> Option<Vec<Vec<u8>>> {
        // A kept connection may have been closed meanwhile (a node restarted in place, an
        // idle timeout): one more try on a fresh one.
        let attempts = if self.upstreams.contains_key(&node) { 2 } else { 1 };
        for _ in 0..attempts {
            let result = bounded(async {
                let upstream = match self.upstreams.entry(node) {
                    Entry::Occupied(kept) => kept.into_mut(),
                    Entry::Vacant(slot) => slot.insert(Upstream::connect(node).await?),
                };
                upstream.exchange(request).await
            })
            .await;
            match result {
                Ok(answer) => return Some(answer),
                Err(error) => {
                    self.upstreams.remove(&node);
                    match error.kind() {
                        io::ErrorKind::OutOfMemory => return Some(vec![ANSWER_TOO_LARGE.to_vec()]),
                        io::ErrorKind::TimedOut => break,
                        _ => {}
                    }
                }
            }
        }
        None
    }
}

/// The next command line, without its line end. `None`: the client is gone, or sent more
/// than [`MAX_LINE`] bytes without a line end.
async fn read_line<R: AsyncBufRead + Unpin>(client: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    client.take(MAX_LINE as u64 + 2).read_until(b'\n', &mut line).await?;
    if !line.ends_with(b"\n") {
        return Ok(None);
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(Some(line))
}

/// What the client is told of a command's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Silence {
    None,
    /// `noreply`: nothing, not even an error (memcached 1.6 keeps those too).
    Noreply,
    /// The meta `q` flag: all but a miss of `mg` and a success of `ms`, `md`, `ma`.
    Quiet,
}

/// One client command.
struct Command {
    /// The words of its line, without `noreply` and the meta `q` flag.
    words: Vec<Vec<u8>>,
    /// The data block of a storage command, with its `\r\n`.
    data: Vec<u8>,
    silence: Silence,
    line_len: usize,
}

impl Command {
    fn parse(line: &[u8]) -> Self {
        let mut words: Vec<Vec<u8>> = words(line).into_iter().map(<[u8]>::to_vec).collect();
        let mut silence = Silence::None;
        let verb = words.first().map(Vec::as_slice).unwrap_or_default();
        let classic = [&b"set"[..], b"add", b"replace", b"append", b"prepend", b"cas", b"incr", b"decr", b"delete"];
        if (classic.contains(&verb) || verb == b"touch" || verb == b"flush_all")
            && words.len() > 1
            && words.last().is_some_and(|last| last == b"noreply")
        {
            words.pop();
            silence = Silence::Noreply;
        } else if [&b"mg"[..], b"ms", b"md", b"ma"].contains(&verb) {
            let before = words.len();
            let mut position = 0;
            // Flags come after the verb and the key.
            words.retain(|word| {
                position += 1;
                position <= 2 || word != b"q"
            });
            if words.len() != before {
                silence = Silence::Quiet;
            }
        }
        Self { words, data: Vec::new(), silence, line_len: line.len() }
    }

    fn verb(&self) -> &[u8] {
        self.words.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// The line and data block to forward.
    fn request(&self) -> Vec<u8> {
        [line(&self.words), self.data.clone()].concat()
    }

    /// The meta flags: the words after the verb, the key, and `ms`'s data length.
    fn flags(&self) -> &[Vec<u8>] {
        let first = if self.verb() == b"ms" { 3 } else { 2 };
        self.words.get(first..).unwrap_or_default()
    }

    /// An `mg` that changes the item: sets its TTL (`T`) or creates it on a miss (`N`).
    fn touches(&self) -> bool {
        self.flags().iter().any(|flag| flag.starts_with(b"T") || flag.starts_with(b"N"))
    }

    /// A meta command that compares a CAS value (`C`).
    fn compares(&self) -> bool {
        self.flags().iter().any(|flag| flag.starts_with(b"C"))
    }

    fn without_compare(&self) -> Vec<u8> {
        let first_flag = self.words.len() - self.flags().len();
        let words = self.words.iter().enumerate().filter(|(i, word)| *i < first_flag || !word.starts_with(b"C"));
        [line(words.map(|(_, word)| word)), self.data.clone()].concat()
    }

    /// `cas <key> <flags> <exptime> <bytes> <cas>` as the `set` that copies what it stored.
    fn as_set(&self) -> Vec<u8> {
        let words = std::iter::once(&b"set"[..]).chain(self.words.iter().skip(1).take(4).map(Vec::as_slice));
        [line(words), self.data.clone()].concat()
    }

    /// `flush_all <delay>` with a delay, which AWS refuses.
    fn delayed(&self) -> bool {
        self.words.get(1).and_then(|delay| number::<i64>(delay)).is_some_and(|delay| delay > 0)
    }

    /// Reads the data block of a storage command. `Some`: the answer to give at once instead
    /// of forwarding, as memcached answers a malformed line, a value too large to store, or a
    /// block that does not end where announced.
    async fn read_data<R: AsyncBufRead + Unpin>(&mut self, client: &mut R) -> io::Result<Option<&'static [u8]>> {
        let len = match self.data_length() {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(answer) => return Ok(Some(answer)),
        };
        let block = len as u64 + 2;
        if len > MAX_VALUE {
            // Swallowed, as memcached does, rather than buffered.
            if tokio::io::copy(&mut (&mut *client).take(block), &mut tokio::io::sink()).await? < block {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            return Ok(Some(TOO_LARGE));
        }
        let mut data = vec![0; len + 2];
        client.read_exact(&mut data).await?;
        if !data.ends_with(b"\r\n") {
            return Ok(Some(BAD_CHUNK));
        }
        self.data = data;
        Ok(None)
    }

    /// The data length a storage line announces, its line checked as memcached checks it
    /// before it reads a data block (it does not, after these answers).
    fn data_length(&self) -> Result<Option<usize>, &'static [u8]> {
        let word = |i: usize| self.words.get(i).map(Vec::as_slice).unwrap_or_default();
        let count = self.words.len() + usize::from(self.silence == Silence::Noreply);
        let (valid, len_at) = match self.verb() {
            verb @ (b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas") => {
                let arity = if verb == b"cas" { 6 } else { 5 };
                if count != arity && count != arity + 1 {
                    return Err(ERROR);
                }
                let cas_ok = verb != b"cas" || number::<u64>(word(5)).is_some();
                (number::<u32>(word(2)).is_some() && number::<i32>(word(3)).is_some() && cas_ok, 4)
            }
            b"ms" if count < 2 => return Err(ERROR),
            b"ms" => (true, 2),
            _ => return Ok(None),
        };
        let len = number::<i32>(word(len_at)).and_then(|len| usize::try_from(len).ok());
        match len {
            Some(len) if valid && word(1).len() <= MAX_KEY => Ok(Some(len)),
            _ => Err(BAD_FORMAT),
        }
    }

    /// What the client sees of `answer`.
    fn shown(&self, answer: Vec<u8>) -> Vec<u8> {
        let hidden = match self.silence {
            Silence::None => false,
            Silence::Noreply => true,
            Silence::Quiet => match self.verb() {
                b"mg" => answer == b"EN\r\n",
                b"ms" | b"md" => answer.starts_with(b"HD"),
                b"ma" => answer.starts_with(b"HD") || answer.starts_with(b"VA "),
                _ => false,
            },
        };
        if hidden { Vec::new() } else { answer }
    }
}

/// Whether a node's answer is a success (a hit, a value, something stored, deleted ...).
fn succeeded(answer: &[u8]) -> bool {
    const SUCCESSES: [&[u8]; 10] =
        [b"STORED", b"DELETED", b"TOUCHED", b"OK", b"RESET", b"VALUE ", b"STAT ", b"VERSION ", b"VA ", b"HD"];
    answer.first().is_some_and(u8::is_ascii_digit) || SUCCESSES.iter().any(|success| answer.starts_with(success))
}

/// The words of a line (with or without its line end), as memcached splits them.
fn words(line: &[u8]) -> Vec<&[u8]> {
    let end = line.iter().rposition(|b| !matches!(b, b'\r' | b'\n')).map_or(0, |i| i + 1);
    line[..end].split(|b| *b == b' ').filter(|word| !word.is_empty()).collect()
}

/// `words` joined into one command line.
fn line<W: AsRef<[u8]>>(words: impl IntoIterator<Item = W>) -> Vec<u8> {
    let mut line = Vec::new();
    for word in words {
        if !line.is_empty() {
            line.push(b' ');
        }
        line.extend_from_slice(word.as_ref());
    }
    line.extend_from_slice(b"\r\n");
    line
}

fn number<T: FromStr>(word: &[u8]) -> Option<T> {
    std::str::from_utf8(word).ok()?.parse().ok()
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A plain TCP connection to one node.
struct Upstream(BufStream<TcpStream>);

impl Upstream {
    async fn connect(node: SocketAddr) -> io::Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(node))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        Ok(Self(BufStream::new(stream)))
    }

    /// Sends `request` then `mn`, and reads the replies up to the `MN`: the node's whole
    /// answer to `request`, however many replies (none, one, more) it made of it.
    async fn exchange(&mut self, request: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        self.0.write_all(request).await?;
        self.0.write_all(b"mn\r\n").await?;
        self.0.flush().await?;
        let (mut answer, mut size) = (Vec::new(), 0);
        loop {
            let reply = self.reply().await?;
            if reply == b"MN\r\n" {
                return Ok(answer);
            }
            size += reply.len();
            if size > MAX_ANSWER {
                return Err(io::ErrorKind::OutOfMemory.into());
            }
            answer.push(reply);
        }
    }

    /// One reply: a line, with the data block that follows `VALUE` and `VA`.
    async fn reply(&mut self) -> io::Result<Vec<u8>> {
        let mut reply = Vec::new();
        (&mut self.0).take(MAX_LINE as u64).read_until(b'\n', &mut reply).await?;
        if !reply.ends_with(b"\n") {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let len_at = match words(&reply).first().copied() {
            Some(b"VALUE") => 3,
            Some(b"VA") => 1,
            _ => return Ok(reply),
        };
        let len =
            words(&reply).get(len_at).and_then(|len| number::<usize>(len)).ok_or_else(|| invalid("bad length"))?;
        if len > MAX_ANSWER {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let start = reply.len();
        reply.resize(start + len + 2, 0);
        self.0.read_exact(&mut reply[start..]).await?;
        Ok(reply)
    }

    /// Every key the node holds, from `lru_crawler metadump all` (which URL-encodes them).
    async fn keys(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut line = self.metadump().await?;
        let mut keys = Vec::new();
        while line != b"END\r\n" {
            let encoded = words(&line).first().and_then(|word| word.strip_prefix(b"key=")).map(url_decode);
            match encoded {
                Some(Some(key)) if addressable(&key) => keys.push(key),
                // A key the text protocol cannot name (set through the binary protocol).
                Some(_) => tracing::debug!(key = %String::from_utf8_lossy(&line), "memcached dump: key skipped"),
                None => return Err(invalid(format!("unexpected metadump line {:?}", String::from_utf8_lossy(&line)))),
            }
            line = bounded(self.reply()).await?;
        }
        Ok(keys)
    }

    /// Starts the metadump (waiting while another crawl runs): its first line.
    async fn metadump(&mut self) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            // Alone on the line: memcached refuses a metadump pipelined with anything else.
            self.0.write_all(b"lru_crawler metadump all\r\n").await?;
            self.0.flush().await?;
            let first = bounded(self.reply()).await?;
            if !first.starts_with(b"BUSY") || Instant::now() >= deadline {
                return Ok(first);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `%XX` escapes decoded; `None` if one is malformed.
fn url_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'%' {
            let hex = [*bytes.next()?, *bytes.next()?];
            decoded.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            decoded.push(byte);
        }
    }
    Some(decoded)
}

/// A key the text protocol can name: no whitespace or control characters, 250 bytes at most.
fn addressable(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && key.iter().all(|b| *b > b' ' && *b != 0x7f)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// A snapshot of the items of the memcached node at `node`: every key (from `lru_crawler
/// metadump all`) with its value, client flags and expiry (from `mg <key> v f t`), in the
/// format the module documentation describes.
pub async fn dump(node: SocketAddr) -> io::Result<Vec<u8>> {
    let mut upstream = Upstream::connect(node).await?;
    // The metadump needs the crawler, which a parameter group may have turned off
    // (`lru_crawler 0`); an error answer means it runs already.
    bounded(upstream.exchange(b"lru_crawler enable\r\n")).await?;
    let keys = upstream.keys().await?;
    let now = unix_now();
    let mut dump = DUMP_HEADER.to_vec();
    for batch in keys.chunks(BATCH) {
        let request: Vec<u8> = batch.iter().flat_map(|key| line([&b"mg"[..], key, b"v", b"f", b"t"])).collect();
        let answer = bounded(upstream.exchange(&request)).await?;
        if answer.len() != batch.len() {
            return Err(invalid("memcached answered a different number of mg than asked"));
        }
        for (key, reply) in batch.iter().zip(&answer) {
            // A miss: the item expired or was evicted since the metadump.
            if let Some(item) = Item::of_reply(key, reply, now) {
                dump.extend(item.record());
            }
        }
    }
    dump.extend_from_slice(b"END\r\n");
    Ok(dump)
}

/// Writes every item of a [`dump`] into the node at `node` (meta set with its flags and what
/// remains of its TTL), skipping those expired since; returns how many were stored.
pub async fn load(node: SocketAddr, dump: &[u8]) -> io::Result<usize> {
    let items = Item::parse_dump(dump)?;
    let now = unix_now();
    let live: Vec<&Item> = items.iter().filter(|item| item.expires_at == 0 || item.expires_at > now).collect();
    let mut upstream = Upstream::connect(node).await?;
    let mut stored = 0;
    for batch in live.chunks(BATCH) {
        let request: Vec<u8> = batch.iter().flat_map(|item| item.meta_set(now)).collect();
        let answer = bounded(upstream.exchange(&request)).await?;
        stored += answer.iter().filter(|reply| reply.starts_with(b"HD")).count();
    }
    Ok(stored)
}

/// One item of a dump.
struct Item<'a> {
    key: &'a [u8],
    flags: u32,
    /// Unix seconds; 0: never.
    expires_at: u64,
    data: &'a [u8],
}

impl<'a> Item<'a> {
    /// From an `mg <key> v f t` reply at `now` (`VA <len> f<flags> t<ttl>`, `t-1`: no TTL).
    fn of_reply(key: &'a [u8], reply: &'a [u8], now: u64) -> Option<Self> {
        let line_end = reply.iter().position(|b| *b == b'\n')? + 1;
        let words = words(&reply[..line_end]);
        if words.first() != Some(&&b"VA"[..]) {
            return None;
        }
        let len: usize = number(words.get(1)?)?;
        let flag = |name: u8| words.iter().find_map(|word| word.strip_prefix(&[name][..]));
        let flags = flag(b'f').and_then(number).unwrap_or(0);
        let ttl = flag(b't').and_then(number::<i64>).unwrap_or(-1);
        let data = reply.get(line_end..line_end.checked_add(len)?)?;
        Some(Self { key, flags, expires_at: u64::try_from(ttl).map_or(0, |ttl| now.saturating_add(ttl)), data })
    }

    fn record(&self) -> Vec<u8> {
        let head = format!(" {} {} {}\r\n", self.flags, self.expires_at, self.data.len());
        [self.key, head.as_bytes(), self.data, b"\r\n"].concat()
    }

    /// The items of a dump, checked whole (header, every record, the end mark).
    fn parse_dump(dump: &'a [u8]) -> io::Result<Vec<Self>> {
        let mut rest = dump.strip_prefix(DUMP_HEADER).ok_or_else(|| invalid("not a memcached dump"))?;
        let mut items = Vec::new();
        loop {
            let end = rest.iter().position(|b| *b == b'\n').ok_or_else(|| invalid("truncated memcached dump"))?;
            let (head, tail) = rest.split_at(end + 1);
            if head == b"END\r\n" {
                return Ok(items);
            }
            let fields = words(head);
            let [key, flags, expires_at, len] = fields.as_slice() else { return Err(invalid("bad dump record")) };
            let (Some(flags), Some(expires_at), Some(len)) = (number(flags), number(expires_at), number::<usize>(len))
            else {
                return Err(invalid("bad dump record"));
            };
            let block = len.checked_add(2).and_then(|end| tail.get(..end)).filter(|block| block.ends_with(b"\r\n"));
            let block = block.ok_or_else(|| invalid("truncated memcached dump"))?;
            items.push(Self { key, flags, expires_at, data: &block[..len] });
            rest = &tail[block.len()..];
        }
    }

    /// The meta set that restores the item at `now`.
    fn meta_set(&self, now: u64) -> Vec<u8> {
        let ttl = match self.expires_at {
            0 => 0,
            // At least 1: `T0` would mean never.
            at if at.saturating_sub(now) <= MAX_RELATIVE_TTL => at.saturating_sub(now).max(1),
            // Further away than memcached takes a relative TTL: given as the unix time itself.
            at => at,
        };
        let (len, flags, ttl) = (self.data.len().to_string(), format!("F{}", self.flags), format!("T{ttl}"));
        let head = line([&b"ms"[..], self.key, len.as_bytes(), flags.as_bytes(), ttl.as_bytes()]);
        [&head[..], self.data, b"\r\n"].concat()
    }
}
