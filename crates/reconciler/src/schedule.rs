//! What runs when: passes over the desired state, one reconcile per resource at a time,
//! and the back-off of reconciles that fail.
//!
//! Three things start a pass: a write to the store, a wake-up, and the period. A write's
//! pass reconciles only the clusters and groups written since the last pass (a group's
//! members with it), and reads only those, by the store's versions: a steady resource
//! reconciled again costs a store read and a command per node for nothing, and reading
//! every record for every write made each create at a thousand nodes ten times slower
//! than the first. A full pass reconciles everything: at start-up and on a wake-up, which
//! is only for what no record holds (a parameter group's values, a user, a user group, a
//! node answering again, a zone's outage). A record's writer does not wake the reconciler:
//! its write does, and a wake-up after it made a second, full, pass that found the write
//! already reconciled (650 ms before the 1,000th create). The period's pass, which catches
//! drift, looks at every group (replication links) but only at the clusters that changed
//! or whose nodes do not all run healthy; its period grows with the number of resources so
//! its cost stays bounded. Snapshots, update actions, serverless caches and global datastores
//! are few and looked at in every pass.
//!
//! Passes run one at a time. Passes over changes may take a fifth of the time in the long
//! run ([`Pacing`]): under a stream of writes each waits about four times the length of
//! the passes before it (at most [`MAX_SPACING`]), so that a burst costs a bounded share
//! of the CPU; a few close together (a client's create right after its delete) run at once.
//! A reconcile that asks to look again runs again in its own slot after its delay.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{CacheCluster, ReplicationGroup, Scope, Versions};
use tokio::sync::Notify;

use crate::{ClusterKey, Reconciler, error, global, lock, scope_key, serverless, service_updates};

/// How often everything is looked at with few resources…
const PERIOD: Duration = Duration::from_secs(2);
/// …and how much longer the period is per resource past 200 (each look costs a few store
/// reads and a node command or two, about half a millisecond of CPU; what is asked for is
/// reconciled at once, so the period only catches drift): 34 s at a thousand clusters and
/// groups, about 1% of a core for the 1,000-node mix of `bench thousand`.
const PERIOD_PER_RESOURCE: Duration = Duration::from_millis(40);
/// Under a stream of writes, a pass over changes waits this many times the length of the
/// passes before it…
const SPACING: u32 = 4;
/// …but no longer than this: a pass's length is mostly its wait for a store connection
/// while a thousand reconciles read (median 50 ms, up to 1.2 s during `bench thousand`'s
/// creates), not CPU, and the create that waits behind it waited up to 2.9 s.
const MAX_SPACING: Duration = Duration::from_millis(50);
/// What passes may run ahead of their share before any waits (see [`Pacing`]): a few
/// passes of a few milliseconds at a thousand nodes. Without it, a create right after a
/// delete waited out four times the delete's last pass (up to 20 ms of a 40 ms create).
const BURST: Duration = Duration::from_millis(50);
/// Wait before retrying a reconcile that failed.
pub(crate) const RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between retries of a resource that keeps failing.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15);

/// What runs when.
pub(crate) struct Schedule {
    /// Asks for a full pass: what changed is in no record (see the module doc).
    pub(crate) wake: Arc<Notify>,
    /// Resources being reconciled right now: never two reconciles of one at once.
    pub(crate) in_flight: Mutex<HashSet<ClusterKey>>,
    /// Set when the emulator shuts down: nothing new is reconciled.
    pub(crate) stopping: AtomicBool,
    /// Failed reconciles in a row, per resource, for the back-off.
    pub(crate) retries: Mutex<HashMap<ClusterKey, u32>>,
    /// Resources a pass found in flight: the pass that follows when their reconcile ends
    /// reconciles them again.
    missed: Mutex<HashSet<ClusterKey>>,
    recheck: Notify,
    /// The store's versions the last pass read up to: a pass over changes reads what was
    /// written since.
    read_up_to: Mutex<Versions>,
}

impl Schedule {
    pub(crate) fn new(wake: Arc<Notify>) -> Self {
        Self {
            wake,
            in_flight: Mutex::default(),
            stopping: AtomicBool::new(false),
            retries: Mutex::default(),
            missed: Mutex::default(),
            recheck: Notify::new(),
            read_up_to: Mutex::default(),
        }
    }

    /// Forgets what passes read (after a reset), so the next pass reconciles everything.
    pub(crate) fn forget(&self) {
        lock(&self.retries).clear();
        *lock(&self.read_up_to) = Versions::default();
    }
}

/// Which resources a pass reconciles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Those whose record changed, and those a pass found in flight.
    Changed,
    /// The period's: every group (a replication link may drift, a user's `REPLICAOF`),
    /// and the clusters that changed or whose nodes do not all run healthy. A steady
    /// cluster's look compares its record and its nodes' settings, both unchanged, so at
    /// a thousand nodes it was most of an idle emulator's CPU for nothing.
    Drift,
    All,
}

/// A resource's place in the in-flight set, given back when its reconcile ends, however
/// it ends. A pass that found it taken follows; so does a full pass after a panic.
struct Slot {
    reconciler: Arc<Reconciler>,
    key: ClusterKey,
    finished: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let schedule = &self.reconciler.schedule;
        lock(&schedule.in_flight).remove(&self.key);
        if !self.finished {
            schedule.wake.notify_one();
        } else if lock(&schedule.missed).contains(&self.key) {
            schedule.recheck.notify_one();
        }
    }
}

/// The clusters and groups a pass reconciles, and how many there are when it read them all.
type Chosen = (Vec<CacheCluster>, Vec<ReplicationGroup>, Option<usize>);

/// Group ids and cluster ids share a namespace in the in-flight set.
const GROUP_KEY_PREFIX: &str = "replication-group/";

fn group_key(scope: &Scope, id: &str) -> ClusterKey {
    (scope.clone(), format!("{GROUP_KEY_PREFIX}{id}"))
}

fn cluster_key(c: &CacheCluster) -> ClusterKey {
    (c.scope.clone(), c.cluster.id.clone())
}

/// `items` without repeats (by `key`), in their first order.
fn unique<T>(items: Vec<T>, key: impl Fn(&T) -> ClusterKey) -> Vec<T> {
    let mut keys = HashSet::new();
    items.into_iter().filter(|item| keys.insert(key(item))).collect()
}

/// A snapshot's place among the resources being reconciled.
pub(crate) fn snapshot_key(scope: &Scope, name: &str) -> ClusterKey {
    (scope.clone(), format!("snapshot/{name}"))
}

impl Reconciler {
    /// Runs passes until `shutdown` resolves (see the module doc).
    pub(crate) async fn schedule_passes(self: &Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut writes = self.store.changes();
        let mut pass = Pass::All;
        let (mut last_full, mut period) = (Instant::now(), PERIOD);
        let mut pacing = Pacing::new(Instant::now());
        loop {
            let started = Instant::now();
            let outcome = self.pass(pass).await;
            let ended = Instant::now();
            match outcome {
                Some(Some(resources)) => {
                    last_full = started;
                    let beyond = u32::try_from(resources.saturating_sub(200)).unwrap_or(u32::MAX);
                    period = PERIOD + PERIOD_PER_RESOURCE * beyond;
                }
                // Only a pass over changes is paced: a full one, rarer and longer, would hold
                // back the change that follows it (a create waited 1.4 s after the drift
                // pass at a thousand nodes).
                _ => pacing.ran(started, ended),
            }
            tracing::debug!(?pass, took = ?ended - started, "pass");
            pass = tokio::select! {
                _ = &mut shutdown => break,
                _ = self.schedule.wake.notified() => Pass::All,
                _ = writes.changed() => Pass::Changed,
                _ = self.schedule.recheck.notified() => Pass::Changed,
                _ = tokio::time::sleep_until((last_full + period).into()) => Pass::Drift,
            };
            if pass == Pass::Changed {
                tokio::time::sleep(pacing.wait(Instant::now())).await;
            }
            writes.borrow_and_update();
        }
    }

    /// Starts the reconciles `pass` asks for. Answers, for a pass that looked at every
    /// resource (or at all that can drift), how many clusters and groups there are; None
    /// if reading them failed.
    async fn pass(self: &Arc<Self>, pass: Pass) -> Option<Option<usize>> {
        let (clusters, groups, count) = match self.to_reconcile(pass).await {
            Ok(chosen) => chosen,
            Err(error) => {
                tracing::error!(%error, "reading desired state failed");
                return None;
            }
        };
        if let Err(error) = self.stop_unknown_nodes(pass).await {
            tracing::error!(%error, "reading the nodes' keys failed");
        }
        if pass == Pass::Drift {
            self.forget_old_events().await;
        }
        // Each reconcile reads its resource again once it holds the resource's slot: the
        // lists above may predate the last reconcile's writes.
        for cluster in clusters {
            let (scope, id) = (cluster.scope.clone(), cluster.cluster.id.clone());
            let key = (scope.clone(), id.clone());
            self.spawn_once(key, move |r| {
                let (scope, id) = (scope.clone(), id.clone());
                async move {
                    match r.store.cache_cluster(&scope, &id).await.map_err(error::Error::Store)? {
                        Some(fresh) => crate::cache_clusters::reconcile(&r, fresh).await,
                        None => Ok(None),
                    }
                }
            });
        }
        for group in groups {
            let (scope, id) = (group.scope.clone(), group.group.id.clone());
            let key = group_key(&scope, &id);
            self.spawn_once(key, move |r| {
                let (scope, id) = (scope.clone(), id.clone());
                async move {
                    match r.store.replication_group(&scope, &id).await.map_err(error::Error::Store)? {
                        Some(fresh) => crate::replication_groups::reconcile(&r, fresh).await,
                        None => Ok(None),
                    }
                }
            });
        }
        self.spawn_the_few().await;
        Some(count)
    }

    /// Deletes the events DescribeEvents can no longer show, so that the store does not
    /// grow with the time the emulator runs.
    async fn forget_old_events(&self) {
        match self.store.forget_old_events(store::now_millis()).await {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "forgot events older than DescribeEvents shows"),
            Err(error) => tracing::error!(%error, "forgetting old events failed"),
        }
    }

    /// The clusters and groups `pass` reconciles, and how many there are when it reads them
    /// all. A pass over changes reads what was written since the last pass (a changed
    /// group's members with it) and what a pass found in flight.
    async fn to_reconcile(&self, pass: Pass) -> Result<Chosen, store::StoreError> {
        let until = self.store.versions().await?;
        let since = *lock(&self.schedule.read_up_to);
        let due = std::mem::take(&mut *lock(&self.schedule.missed));
        match self.choose(pass, since, until, &due).await {
            Ok(chosen) => {
                *lock(&self.schedule.read_up_to) = until;
                Ok(chosen)
            }
            Err(error) => {
                // Nothing is forgotten: the next pass reads the same changes again.
                lock(&self.schedule.missed).extend(due);
                Err(error)
            }
        }
    }

    /// [`Reconciler::to_reconcile`] over the changes between `since` and `until`, and `due`.
    async fn choose(
        &self,
        pass: Pass,
        since: Versions,
        until: Versions,
        due: &HashSet<ClusterKey>,
    ) -> Result<Chosen, store::StoreError> {
        let store = &self.store;
        if pass == Pass::All {
            return self.read_all().await;
        }
        let (mut clusters, mut groups) = store.changed(since, until).await?;
        for key in due {
            if let Some(id) = key.1.strip_prefix(GROUP_KEY_PREFIX) {
                groups.extend(store.replication_group(&key.0, id).await?);
            } else if !key.1.contains('/') {
                clusters.extend(store.cache_cluster(&key.0, &key.1).await?);
            }
        }
        // A changed group's members are looked at with it…
        clusters.extend(groups.iter().flat_map(|g| g.members.iter().cloned()));
        if pass == Pass::Drift {
            let (all_clusters, all_groups, count) = self.read_all().await?;
            clusters.extend(all_clusters.into_iter().filter(|c| !self.runs_healthy(c)));
            return Ok((unique(clusters, cluster_key), all_groups, count));
        }
        // …and a changed member's group with it (the period's pass looks at every group):
        // the group wires a member that started again as a replica and decides its
        // members' pace.
        let mut seen: HashSet<ClusterKey> = groups.iter().map(|g| group_key(&g.scope, &g.group.id)).collect();
        let member_groups: Vec<(Scope, String)> = clusters
            .iter()
            .filter_map(|c| Some((c.scope.clone(), c.cluster.replication_group_id.clone()?)))
            .filter(|(scope, id)| seen.insert(group_key(scope, id)))
            .collect();
        for (scope, id) in member_groups {
            groups.extend(store.replication_group(&scope, &id).await?);
        }
        Ok((unique(clusters, cluster_key), unique(groups, |g| group_key(&g.scope, &g.group.id)), None))
    }

    /// Every cluster and group, and how many there are.
    async fn read_all(&self) -> Result<Chosen, store::StoreError> {
        let (clusters, groups) = (self.store.all_cache_clusters().await?, self.store.all_replication_groups().await?);
        let count = clusters.len() + groups.len();
        Ok((clusters, groups, Some(count)))
    }

    /// Whether every node of `c` runs and its last look found it healthy.
    fn runs_healthy(&self, c: &CacheCluster) -> bool {
        let scope = scope_key(&c.scope);
        c.nodes.iter().all(|n| {
            let key = nodes::NodeKey::new(scope.clone(), c.cluster.id.clone(), n.node_id.clone());
            self.runtime.known_health(&key).is_none() && !self.unhealthy(&key)
        })
    }

    /// Reconciles snapshots under way, update actions, serverless caches and global
    /// datastores: few, looked at in every pass.
    async fn spawn_the_few(self: &Arc<Self>) {
        let store = &self.store;
        match store.all_snapshots().await {
            Ok(snapshots) => {
                for (scope, snapshot) in snapshots
                    .into_iter()
                    .filter(|(_, s)| model::status::snapshot::TRANSITIONAL.contains(&s.status.as_str()))
                {
                    let name = snapshot.name;
                    self.spawn_once(snapshot_key(&scope, &name), move |r| {
                        let (scope, name) = (scope.clone(), name.clone());
                        async move {
                            match r.store.snapshot(&scope, &name).await.map_err(error::Error::Store)? {
                                Some(fresh) => crate::snapshots::reconcile(&r, scope, fresh).await,
                                None => Ok(None),
                            }
                        }
                    });
                }
            }
            Err(error) => tracing::error!(%error, "reading snapshots failed"),
        }
        match store.active_update_actions().await {
            Ok(actions) => {
                for (scope, action) in actions {
                    let name = action.key();
                    self.spawn_once(service_updates::key(&scope, &action), move |r| {
                        let (scope, name) = (scope.clone(), name.clone());
                        async move { service_updates::reconcile(&r, scope, name).await }
                    });
                }
            }
            Err(error) => tracing::error!(%error, "reading update actions failed"),
        }
        match store.all_serverless_caches().await {
            Ok(caches) => {
                for (scope, cache) in caches {
                    let name = cache.name;
                    self.spawn_once(serverless::key(&scope, &name), move |r| {
                        let (scope, name) = (scope.clone(), name.clone());
                        async move {
                            match r.store.serverless_cache(&scope, &name).await.map_err(error::Error::Store)? {
                                Some(fresh) => serverless::reconcile(&r, scope, fresh).await,
                                None => Ok(None),
                            }
                        }
                    });
                }
            }
            Err(error) => tracing::error!(%error, "reading serverless caches failed"),
        }
        match store.all_global_replication_groups().await {
            Ok(globals) => {
                for (account, global) in globals {
                    let id = global.id;
                    self.spawn_once(global::key(&account, &id), move |r| {
                        let (account, id) = (account.clone(), id.clone());
                        async move { global::reconcile(&r, account, id).await }
                    });
                }
            }
            Err(error) => tracing::error!(%error, "reading global datastores failed"),
        }
    }

    /// Stops nodes the store no longer knows (a reconcile that raced with a reset or a
    /// delete); a cluster being reconciled right now is left alone. Looking costs a read of
    /// every node's key (3 ms at a thousand nodes, in every create's pass), so a pass over
    /// changes looks only when more nodes run than the store knows; an unknown node hidden
    /// by a known one not running yet waits for the next full or drift pass.
    async fn stop_unknown_nodes(&self, pass: Pass) -> Result<(), store::StoreError> {
        if pass == Pass::Changed && self.runtime.count() <= self.store.cache_node_count().await? {
            return Ok(());
        }
        let known: HashSet<(String, String, String)> = self
            .store
            .cache_node_keys()
            .await?
            .into_iter()
            .map(|(scope, cluster, node)| (scope_key(&scope), cluster, node))
            .collect();
        let busy: HashSet<(String, String)> =
            lock(&self.schedule.in_flight).iter().map(|(scope, id)| (scope_key(scope), id.clone())).collect();
        for key in &self.runtime.keys() {
            let (scope, cluster) = (key.scope.clone(), key.cluster_id.clone());
            if known.contains(&(scope.clone(), cluster.clone(), key.node_id.clone()))
                || busy.contains(&(scope, cluster))
            {
                continue;
            }
            // Read again: the list may predate the cluster's creation.
            let Some((region, account)) = key.scope.split_once('/') else { continue };
            let scope = Scope { region: region.to_string(), account: account.to_string() };
            if let Ok(Some(c)) = self.store.cache_cluster(&scope, &key.cluster_id).await
                && c.nodes.iter().any(|n| n.node_id == key.node_id)
            {
                continue;
            }
            tracing::warn!(node = %key, "stopping a node the store does not know");
            if let Err(error) = self.runtime.stop(key).await {
                tracing::warn!(node = %key, %error, "stopping an unknown node failed");
            }
        }
        Ok(())
    }

    /// Runs `reconcile` unless one for `key` is running (then the pass is noted as missed,
    /// and another follows when that one ends); answers whether it started. A reconcile
    /// answers when to look again (`None`: when something changes), and runs again in its
    /// slot after that; a failed one is retried after RETRY_DELAY, backing off.
    fn spawn_once<F, Fut>(self: &Arc<Self>, key: ClusterKey, reconcile: F) -> bool
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Option<Duration>, error::Error>> + Send,
    {
        {
            let mut in_flight = lock(&self.schedule.in_flight);
            // Refused while paused, or taken: looked at again by a later pass.
            if self.schedule.stopping.load(Ordering::SeqCst) || !in_flight.insert(key.clone()) {
                lock(&self.schedule.missed).insert(key);
                return false;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Frees the slot even if the reconcile panics, so the resource is not forgotten.
            let mut slot = Slot { reconciler: this.clone(), key: key.clone(), finished: false };
            loop {
                let again = match reconcile(this.clone()).await {
                    Ok(again) => again,
                    Err(error) => {
                        tracing::warn!(resource = key.1, %error, "reconcile failed; will retry");
                        Some(RETRY_DELAY)
                    }
                };
                let Some(delay) = this.back_off(&key, again) else { break };
                tokio::time::sleep(delay).await;
                if this.schedule.stopping.load(Ordering::SeqCst) {
                    break;
                }
            }
            slot.finished = true;
        });
        true
    }

    /// How long to wait before `key` is reconciled again: what the reconcile asked, doubled
    /// with each failure in a row (up to MAX_RETRY_DELAY), so a node that cannot start does
    /// not spin the machine.
    fn back_off(&self, key: &ClusterKey, again: Option<Duration>) -> Option<Duration> {
        let mut failures = lock(&self.schedule.retries);
        match again {
            Some(delay) if delay >= RETRY_DELAY => {
                let count = failures.entry(key.clone()).or_insert(0);
                *count = (*count + 1).min(16);
                Some((delay * 2u32.pow(*count - 1)).min(MAX_RETRY_DELAY))
            }
            other => {
                failures.remove(key);
                other
            }
        }
    }
}

/// The share of the time passes over changes take: each pass adds [`SPACING`] + 1 times
/// its length to what is owed, time pays it back, and a pass waits only for what is owed
/// past [`BURST`] (never more than [`MAX_SPACING`]). Under a stream of writes that is the
/// old rule, four times the last pass's length after it; a pass after a quiet spell, or a
/// few close together, waits for nothing.
struct Pacing {
    owed: Duration,
    at: Instant,
}

impl Pacing {
    fn new(now: Instant) -> Self {
        Self { owed: Duration::ZERO, at: now }
    }

    /// A pass over changes ran from `started` to `ended`.
    fn ran(&mut self, started: Instant, ended: Instant) {
        self.pay_back(ended);
        self.owed = (self.owed + (ended - started) * (SPACING + 1)).min(BURST + MAX_SPACING);
    }

    /// How long the next pass over changes waits.
    fn wait(&mut self, now: Instant) -> Duration {
        self.pay_back(now);
        self.owed.saturating_sub(BURST)
    }

    fn pay_back(&mut self, now: Instant) {
        self.owed = self.owed.saturating_sub(now.saturating_duration_since(self.at));
        self.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_few_passes_close_together_wait_for_nothing() {
        let start = Instant::now();
        let mut pacing = Pacing::new(start);
        // A delete's last pass (5 ms), and a create written 2 ms after it.
        pacing.ran(start, start + 5 * MS);
        assert_eq!(pacing.wait(start + 7 * MS), Duration::ZERO);
    }

    #[test]
    fn a_stream_of_passes_waits_four_times_their_length() {
        let start = Instant::now();
        let mut pacing = Pacing::new(start);
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..20 {
            pacing.ran(now, now + 5 * MS);
            now += 5 * MS;
            let wait = pacing.wait(now);
            waits.push(wait);
            now += wait;
        }
        assert_eq!(waits[0], Duration::ZERO, "within the burst");
        assert_eq!(waits[19], 20 * MS, "four times 5 ms: passes take a fifth of the time");
    }

    #[test]
    fn no_wait_is_longer_than_the_cap_and_a_quiet_spell_pays_everything_back() {
        let start = Instant::now();
        let mut pacing = Pacing::new(start);
        pacing.ran(start, start + Duration::from_secs(1));
        let end = start + Duration::from_secs(1);
        assert_eq!(pacing.wait(end), MAX_SPACING);
        assert_eq!(pacing.wait(end + BURST + MAX_SPACING), Duration::ZERO);
    }
}
