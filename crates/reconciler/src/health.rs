//! The health monitor: watches every supervised node (see [`monitor`] for how often each
//! is probed).
//!
//! - A node whose process is gone is reported with AWS's recovery event and handed to the
//!   reconciler, which restarts it in place.
//! - The primary of a replication group with automatic failover that is gone, or has not
//!   answered `failure_threshold` probes in a row (frozen, zone outage), is failed over
//!   first; the old primary comes back as a replica.
//!
//! A crash from outside, an admin `kill`/`stop` and a zone outage all take these paths.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::status::source::CACHE_CLUSTER as SOURCE_TYPE;
use nodes::{Health, NodeKey};
use store::{EventRecord, Scope};

use crate::{Reconciler, lock};

/// What the monitor has seen of the nodes.
#[derive(Default)]
pub(crate) struct Memory {
    /// The last health of every node.
    pub(crate) observed: Mutex<HashMap<NodeKey, Health>>,
    /// Consecutive failed probes of every node.
    pub(crate) failures: Mutex<HashMap<NodeKey, u32>>,
    /// Zones in a simulated outage.
    pub(crate) zones_down: Mutex<HashSet<String>>,
    /// Moves whenever a node's health changes, for live views to read it again.
    changes: Changes,
}

struct Changes(tokio::sync::watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(0))
    }
}

impl Reconciler {
    /// Moves whenever the health monitor sees a node's health change (read
    /// [`Reconciler::health`] again each time it does).
    pub fn health_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.monitor.changes.0.subscribe()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Time between two probes of a node.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
    /// Failed probes in a row after which an unreachable primary is failed over.
    pub failure_threshold: u32,
    /// Time between two probes of a healthy node whose failure nobody fails over for: its
    /// hang shows in `status` and the dashboard within this, for a fraction of the probes
    /// (an exit or a freeze shows at once, without a probe).
    pub relaxed_interval: Duration,
}

impl Default for HealthSettings {
    /// A primary that dies or is frozen (SIGSTOP, from anywhere) is known at once through
    /// SIGCHLD and failed over after `failure_threshold` ticks: 3 × 150 = 450 ms. One that
    /// runs but answers nothing (a hung script) after its next probe ([`CRITICAL_INTERVAL`])
    /// times out and the threshold's other probes, one per max(interval, timeout), time out
    /// too: 300 + 150 + 2 × 150 = 750 ms. Both under AWS's second, with room for a loaded
    /// machine's late ticks.
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(150),
            timeout: Duration::from_millis(150),
            failure_threshold: 3,
            relaxed_interval: Duration::from_secs(5),
        }
    }
}

fn scope_of(key: &NodeKey) -> Option<Scope> {
    let (region, account) = key.scope.split_once('/')?;
    Some(Scope { region: region.to_string(), account: account.to_string() })
}

/// How often a healthy primary that fails over is probed (two ticks by default): only a
/// hang needs a probe to be seen (an exit and a freeze are known without), and this keeps
/// its failover under a second while a thousand nodes' probes stay a small share of a core.
/// At 450 ms, a hang was noticed up to 976 ms after it began on a busy machine.
const CRITICAL_INTERVAL: Duration = Duration::from_millis(300);
/// The least time between two reads of the set of failover-critical primaries (read again
/// only once the store changed).
const CRITICAL_REFRESH: Duration = Duration::from_secs(1);

/// Watches every node. What the runtime knows without asking (an exited or stopped
/// process, seen at once through SIGCHLD; a node it paused) costs no probe, and its news
/// costs a look at the nodes it names. Of the rest, the primaries of groups with automatic
/// failover are probed every [`CRITICAL_INTERVAL`]; every other node every
/// `relaxed_interval`, and each one not seen healthy (unhealthy, or new: started or
/// started again since its last look) every `interval` until it is. So the
/// cost grows with the primaries that fail over and with what changes, not with every
/// healthy node, and a tick looks only at the nodes it may probe ([`Lanes`]).
pub async fn monitor(r: Arc<Reconciler>) {
    let mut changes = r.runtime.changes();
    let mut tick = tokio::time::interval(r.health.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = Watch::new(&r);
    loop {
        let looked = tokio::select! {
            _ = tick.tick() => watch.tick(&r).await,
            _ = changes.changed() => watch.news(&r),
        };
        for (key, health) in looked {
            let changed = observe(&r, key.clone(), health).await;
            watch.seen(&r, &key, changed);
        }
    }
}

/// What the monitor keeps between its looks.
struct Watch {
    /// The supervised nodes, kept up to date by the runtime's news.
    nodes: HashSet<NodeKey>,
    lanes: Lanes,
    critical: Critical,
    last_probed: HashMap<NodeKey, Instant>,
}

impl Watch {
    fn new(r: &Reconciler) -> Self {
        // The news taken first, so that no change after the listing is missed.
        r.runtime.news();
        Self {
            nodes: r.runtime.keys().into_iter().collect(),
            lanes: Lanes::default(),
            critical: Critical::new(r),
            last_probed: HashMap::new(),
        }
    }

    /// A tick's look: what the runtime knows of the nodes the tick concerns (counted once
    /// a tick, as a probe would be), and a probe of each of the others due for one.
    async fn tick(&mut self, r: &Reconciler) -> Vec<(NodeKey, Health)> {
        if self.critical.refresh(r).await {
            self.lanes.sort(&self.nodes, &self.critical);
        }
        let now = Instant::now();
        let look = self.lanes.look(now, r.health.relaxed_interval);
        let (mut looked, mut due) = (Vec::new(), Vec::new());
        for key in self.lanes.keys(look, &self.nodes) {
            if let Some(health) = r.runtime.known_health(key) {
                if worth_observing(r, key, health) {
                    looked.push((key.clone(), health));
                }
                continue;
            }
            let every = if self.lanes.unsure.contains(key) {
                r.health.interval
            } else if self.critical.contains(key) {
                CRITICAL_INTERVAL
            } else {
                r.health.relaxed_interval
            };
            if self.last_probed.get(key).is_some_and(|at| now.duration_since(*at) + PROBE_SLACK < every) {
                continue;
            }
            self.last_probed.insert(key.clone(), now);
            due.push(key.clone());
        }
        looked.extend(r.runtime.probe_all(due, r.health.timeout).await);
        looked
    }

    /// The runtime's news: the nodes it names are listed or forgotten, and looked at on the
    /// next tick (started again, paused, resumed or killed); answers what the runtime knows
    /// of them that the last look did not see.
    fn news(&mut self, r: &Reconciler) -> Vec<(NodeKey, Health)> {
        let news = r.runtime.news();
        for key in &news {
            self.last_probed.remove(key);
            if r.runtime.supervises(key) {
                self.nodes.insert(key.clone());
                self.lanes.look_again(key);
            } else {
                self.nodes.remove(key);
                self.lanes.remove(key);
            }
        }
        news_of(r, &news)
    }

    /// After a look at `key`: places it again if its health `changed` or it was unsure.
    fn seen(&mut self, r: &Reconciler, key: &NodeKey, changed: bool) {
        if changed || self.lanes.unsure.contains(key) {
            self.lanes.place(r, key, &self.critical);
        }
    }
}

/// What the runtime's news says of `keys` that the monitor's last look did not see.
fn news_of(r: &Reconciler, keys: &[NodeKey]) -> Vec<(NodeKey, Health)> {
    keys.iter()
        .filter_map(|key| Some((key.clone(), r.runtime.known_health(key)?)))
        .filter(|(key, health)| worth_observing(r, key, *health) && r.health(key) != Some(*health))
        .collect()
}

/// Whether the monitor's last look at the node found it healthy (a node started since has
/// had no look yet: the reconciler forgets what was seen of its old process).
fn seen_healthy(r: &Reconciler, key: &NodeKey) -> bool {
    r.health(key) == Some(Health::Healthy)
}

/// Whether what the runtime knows of a node is worth observing: not the exit of a node
/// stopped on purpose since it was listed (no crash to recover from).
fn worth_observing(r: &Reconciler, key: &NodeKey, health: Health) -> bool {
    health != Health::Exited || r.runtime.supervises(key)
}

/// What one tick of the monitor looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Every node: once every `relaxed_interval`.
    All,
    /// The nodes not seen healthy and the failover-critical primaries: every
    /// [`CRITICAL_INTERVAL`].
    Critical,
    /// The nodes not seen healthy only: the other ticks.
    Unsure,
}

/// The nodes each [`Look`] concerns: placed again when a node comes, goes or changes
/// health, and sorted again when the failover-critical set changed, so that a tick looks
/// at a handful of nodes rather than a thousand.
#[derive(Default)]
struct Lanes {
    /// The nodes not seen healthy at their last look, or not looked at since they started.
    unsure: HashSet<NodeKey>,
    /// The failover-critical primaries not in `unsure`.
    critical: HashSet<NodeKey>,
    all_at: Option<Instant>,
    critical_at: Option<Instant>,
}

impl Lanes {
    fn look(&mut self, now: Instant, relaxed_interval: Duration) -> Look {
        let due = |at: Option<Instant>, every| at.is_none_or(|at| now.duration_since(at) + PROBE_SLACK >= every);
        if due(self.all_at, relaxed_interval) {
            (self.all_at, self.critical_at) = (Some(now), Some(now));
            Look::All
        } else if due(self.critical_at, CRITICAL_INTERVAL) {
            self.critical_at = Some(now);
            Look::Critical
        } else {
            Look::Unsure
        }
    }

    fn keys<'a>(&'a self, look: Look, nodes: &'a HashSet<NodeKey>) -> impl Iterator<Item = &'a NodeKey> {
        let (first, then) = match look {
            Look::All => (nodes, None),
            Look::Critical => (&self.unsure, Some(&self.critical)),
            Look::Unsure => (&self.unsure, None),
        };
        first.iter().chain(then.into_iter().flatten())
    }

    /// Puts `key` in the lane its last health and the failover-critical set say.
    fn place(&mut self, r: &Reconciler, key: &NodeKey, critical: &Critical) {
        self.remove(key);
        if !seen_healthy(r, key) {
            self.unsure.insert(key.clone());
        } else if critical.contains(key) {
            self.critical.insert(key.clone());
        }
    }

    /// Has every tick look at `key` until a look places it again.
    fn look_again(&mut self, key: &NodeKey) {
        self.unsure.insert(key.clone());
    }

    fn remove(&mut self, key: &NodeKey) {
        self.unsure.remove(key);
        self.critical.remove(key);
    }

    /// Sorts the nodes seen healthy again once the failover-critical set changed (every
    /// other node is `unsure` until a look places it).
    fn sort(&mut self, nodes: &HashSet<NodeKey>, critical: &Critical) {
        let critical = nodes.iter().filter(|key| !self.unsure.contains(*key) && critical.contains(key));
        self.critical = critical.cloned().collect();
    }
}

/// A tick comes at most this much early for a probe due on it (ticks drift by a little).
const PROBE_SLACK: Duration = Duration::from_millis(5);

/// Records one look at a node, and acts when it newly exited or stays unreachable.
/// Answers whether its health changed.
async fn observe(r: &Arc<Reconciler>, key: NodeKey, health: Health) -> bool {
    let previous = lock(&r.monitor.observed).insert(key.clone(), health);
    let changed = previous != Some(health);
    if changed {
        r.monitor.changes.0.send_modify(|generation| *generation = generation.wrapping_add(1));
    }
    let failures = {
        let mut failures = lock(&r.monitor.failures);
        let count = failures.entry(key.clone()).or_insert(0);
        *count = if health == Health::Healthy { 0 } else { *count + 1 };
        *count
    };
    // A node that answers again (a resumed primary, a zone back) may need demoting
    // or re-linking at once.
    if health == Health::Healthy && previous.is_some_and(|p| p != Health::Healthy) {
        r.runtime.set_failed(&key, false);
        r.schedule.wake.notify_one();
    }
    let newly_exited = health == Health::Exited && previous != Some(Health::Exited);
    let newly_unreachable = health != Health::Healthy && failures == r.health.failure_threshold;
    if newly_unreachable {
        // Commands to it under way end now: one holding its group's reconcile would hold
        // the failover asked for below.
        r.runtime.set_failed(&key, true);
    }
    if !newly_exited && !newly_unreachable {
        return changed;
    }
    let Some(scope) = scope_of(&key) else { return changed };
    if let Some(group) = primary_with_failover(r, &scope, &key).await {
        tracing::warn!(node = %key, %health, replication_group = group, "primary failed; failing over");
        request_failover(r, &scope, &group, &key.cluster_id).await;
    } else if newly_exited {
        recover(r, &scope, key).await;
    }
    changed
}

/// The nodes whose failure triggers a failover: the primaries (of each shard, in cluster
/// mode) of groups with automatic failover, read again from the store after it changed
/// (at most once every [`CRITICAL_REFRESH`]), so an idle emulator reads nothing.
struct Critical {
    /// Cluster ids by scope key.
    clusters: HashMap<String, HashSet<String>>,
    store_changes: tokio::sync::watch::Receiver<u64>,
    read_at: Option<Instant>,
}

impl Critical {
    fn new(r: &Reconciler) -> Self {
        Self { clusters: HashMap::new(), store_changes: r.store.changes(), read_at: None }
    }

    fn contains(&self, key: &NodeKey) -> bool {
        self.clusters.get(&key.scope).is_some_and(|clusters| clusters.contains(&key.cluster_id))
    }

    /// Reads the set again if it may have changed; answers whether it did read.
    async fn refresh(&mut self, r: &Reconciler) -> bool {
        if let Some(at) = self.read_at
            && (at.elapsed() < CRITICAL_REFRESH || !self.store_changes.has_changed().unwrap_or(false))
        {
            return false;
        }
        self.store_changes.mark_unchanged();
        let Ok(groups) = r.store.all_replication_group_records().await else {
            // Read again on the next tick.
            self.store_changes.mark_changed();
            return false;
        };
        self.clusters.clear();
        for (scope, group) in groups.into_iter().filter(|(_, g)| g.automatic_failover) {
            let primaries = group.node_groups.into_iter().map(|s| s.primary_cluster_id);
            let clusters = self.clusters.entry(crate::scope_key(&scope)).or_default();
            clusters.extend(std::iter::once(group.primary_cluster_id).chain(primaries));
        }
        self.read_at = Some(Instant::now());
        true
    }
}

/// The replication group whose primary (or, in cluster mode, one of whose shard primaries)
/// `key` is, when the group fails over automatically.
async fn primary_with_failover(r: &Reconciler, scope: &Scope, key: &NodeKey) -> Option<String> {
    let cluster = r.store.cache_cluster(scope, &key.cluster_id).await.ok()??;
    let group_id = cluster.cluster.replication_group_id?;
    let group = r.store.replication_group(scope, &group_id).await.ok()??.group;
    let leads = if group.cluster_enabled() {
        group.node_group_led_by(&key.cluster_id).is_some()
    } else {
        group.primary_cluster_id == key.cluster_id
    };
    (group.automatic_failover && leads).then_some(group_id)
}

/// Asks for a failover away from `primary` (of the group, or of its shard in cluster mode),
/// unless the primary changed or a failover is already asked for: the group's reconcile
/// carries it out.
async fn request_failover(r: &Reconciler, scope: &Scope, group: &str, primary: &str) {
    let result = r
        .store
        .update_replication_group(scope, group, |g, _| {
            if let Some(shard) = g.node_groups.iter_mut().find(|s| s.primary_cluster_id == primary) {
                shard.failover_to.get_or_insert(store::FailoverRequest::BestReplica);
            } else if g.primary_cluster_id == primary && g.failover_to.is_none() {
                g.failover_to = Some(store::FailoverRequest::BestReplica);
            }
            Ok::<_, ()>(Vec::new())
        })
        .await;
    if let Err(store::UpdateError::Store(error)) = result {
        tracing::error!(%error, replication_group = group, "asking for a failover failed");
    }
}

/// Hands a dead node to the reconciler, which restarts it in place.
async fn recover(r: &Reconciler, scope: &Scope, key: NodeKey) {
    tracing::warn!(node = %key, "node process is gone; recovering");
    let event = EventRecord::new(SOURCE_TYPE, &key.cluster_id, format!("Recovering cache nodes {}", key.node_id));
    if let Err(error) = r.store.record_events(scope, &[event]).await {
        tracing::error!(%error, "recording a recovery event failed");
    }
    r.request_recovery(scope, &key).await;
}
