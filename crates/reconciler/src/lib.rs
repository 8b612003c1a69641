//! The reconciler: compares the desired state in the store with what the node runtime
//! observes, and acts — starts, reconfigures, restarts and stops real nodes — then writes
//! the observed state and AWS's events back to the store.
//!
//! # Layout
//! - [`Reconciler`]: activation (periodic and on demand), one reconcile per cluster at a
//!   time, start-up recovery and reset.
//! - `cache_clusters`: one cluster's reconcile: creation, scaling, reboots, parameter
//!   changes, deletion, self-healing — all one code path.
//! - `replication_groups`: replication links, the group's status and failover.
//! - `migration`: online migration into a group from a customer's server.
//! - `global`: global datastores: secondary regions replicating from the primary region,
//!   failover between regions, members' and datastores' statuses.
//! - `endpoints`: the primary, reader and configuration endpoints the emulator serves.
//! - `cluster_mode`: cluster-mode groups on Redis Cluster: meeting, slots, resharding,
//!   per-shard failover and the configuration endpoint.
//! - `serverless`: a serverless cache's TLS endpoints and status over what holds its data.
//! - `serverless_migration`: online migration into a serverless cache through its endpoint.
//! - `snapshots`: taking, copying, exporting and deleting RDB files (and serverless
//!   Memcached dumps); seeding restores.
//! - `s3`: uploads of exported snapshots to an S3-compatible endpoint.
//! - `at_rest`: the encrypted snapshot file format and the state dir's key.
//! - `bridges`: the replication bridges into cluster-mode groups, shared by `global` and
//!   `migration`.
//! - `acl`: the users of a group's user group as every member node's ACL.
//! - `health`: the monitor that probes every node and asks for repairs or failovers.
//! - `service_updates`: update actions rolling through a cluster's or group's nodes.
//! - `failover`: which replica a failover promotes (a pure decision).
//! - [`progress`]: how far reshards and snapshots are, for people watching.
//! - `error`: what can stop one reconcile.
//!
//! It reads and writes the store, and takes its vocabulary (statuses, names, ARNs,
//! parameter values) from `model`; it never calls the API layer.
//!
//! An activation takes no input and reads current state, so creation, repair after a crash
//! and recovery after an emulator restart are the same code: the monitor and failovers ask
//! for a node's replacement in the store (`recover_requested`), as the API asks for a
//! reboot. The [`Reconciler`]'s own state is grouped by concern: `Schedule` (what runs
//! when), `health::Memory` (what the monitor saw), `endpoints::Served`, `Secrets`.

mod acl;
mod at_rest;
mod bridges;
mod cache_clusters;
mod cluster_mode;
mod endpoints;
mod error;
mod failover;
mod global;
mod health;
mod migration;
pub mod progress;
mod replication_groups;
mod s3;
mod serverless;
mod serverless_migration;
mod service_updates;
mod snapshots;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::Catalog;
use nodes::{EngineKind, Health, NodeKey, Runtime};
use store::{Scope, Store};
use tokio::sync::Notify;

pub use health::HealthSettings;
pub use s3::S3Target;

/// How often every cluster is looked at even when nothing asked for it.
const PERIOD: Duration = Duration::from_secs(2);
/// Wait before retrying a reconcile that failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between retries of a resource that keeps failing.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15);
/// Failed reconciles in a row after which a creation or a snapshot ends in its terminal
/// status (`create-failed`, `restore-failed`, a snapshot's `failed`); with the back-off
/// about 8 s.
const MAX_ATTEMPTS: u32 = 5;
/// Wait before looking again at something that is progressing (a replication link coming
/// up, a member becoming available).
const SOON: Duration = Duration::from_millis(10);

type ClusterKey = (Scope, String);

pub struct Reconciler {
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    runtime: Arc<Runtime>,
    state_dir: PathBuf,
    health: HealthSettings,
    /// Where snapshot exports go: an S3-compatible endpoint, or (None) `<state dir>/exports`.
    s3: Option<S3Target>,
    /// Cluster-enabled nodes to keep warm for new cluster-mode primaries (see `nodes::warm`).
    warm_nodes: usize,
    /// What runs when: wake-ups, reconciles in flight, back-off.
    schedule: Schedule,
    /// What the health monitor has seen of the nodes, and the zones in an outage.
    monitor: health::Memory,
    /// The endpoints the emulator serves in front of nodes.
    endpoints: endpoints::Served,
    /// The state dir's TLS certificate authority and at-rest key.
    secrets: Secrets,
    /// The ACL each node process was given (its pid, and a digest of the users).
    acl_applied: Mutex<HashMap<NodeKey, (u32, String)>>,
    /// The replication bridges into cluster-mode groups: global datastores' secondaries,
    /// online migrations from a Redis Cluster.
    bridges: bridges::Bridges,
    /// How far the reshards and snapshots running now are.
    progress: progress::Progress,
}

/// What runs when.
struct Schedule {
    wake: Arc<Notify>,
    /// Resources being reconciled right now: never two reconciles of one at once.
    in_flight: Mutex<HashSet<ClusterKey>>,
    /// Set when the emulator shuts down: nothing new is reconciled.
    stopping: std::sync::atomic::AtomicBool,
    /// Failed reconciles in a row, per resource, for the back-off.
    retries: Mutex<HashMap<ClusterKey, u32>>,
}

/// Key material of the state dir, each made or loaded on first need.
struct Secrets {
    /// The at-rest encryption key of snapshot files.
    keys: Arc<at_rest::KeyStore>,
    /// The TLS certificate authority.
    ca: Mutex<Option<Arc<nodes::tls::CertificateAuthority>>>,
    /// The certificate endpoints terminating TLS themselves (mode `preferred`) present.
    proxy_tls: Mutex<Option<Arc<rustls::ServerConfig>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A resource's place in the in-flight set, given back when its reconcile ends, however
/// it ends; the reconciler is woken again unless the reconcile said nothing is left to do
/// (a panic counts as something left).
struct Slot {
    reconciler: Arc<Reconciler>,
    key: ClusterKey,
    again: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.reconciler.schedule.in_flight).remove(&self.key);
        if self.again {
            self.reconciler.schedule.wake.notify_one();
        }
    }
}

/// A snapshot's place among the resources being reconciled.
fn snapshot_key(scope: &Scope, name: &str) -> ClusterKey {
    (scope.clone(), format!("snapshot/{name}"))
}

/// The runtime's name for a scope.
pub fn scope_key(scope: &Scope) -> String {
    format!("{}/{}", scope.region, scope.account)
}

impl Reconciler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        catalog: Arc<Catalog>,
        runtime: Arc<Runtime>,
        wake: Arc<Notify>,
        state_dir: &Path,
        health: HealthSettings,
        s3: Option<S3Target>,
        warm_nodes: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            catalog,
            runtime,
            state_dir: state_dir.to_path_buf(),
            health,
            s3,
            warm_nodes,
            schedule: Schedule {
                wake,
                in_flight: Mutex::default(),
                stopping: std::sync::atomic::AtomicBool::new(false),
                retries: Mutex::default(),
            },
            monitor: health::Memory::default(),
            endpoints: endpoints::Served::default(),
            secrets: Secrets {
                keys: Arc::new(at_rest::KeyStore::new(state_dir)),
                ca: Mutex::default(),
                proxy_tls: Mutex::default(),
            },
            acl_applied: Mutex::default(),
            bridges: bridges::Bridges::default(),
            progress: progress::Progress::default(),
        })
    }

    /// The long operations running now and how far each is.
    pub fn progress(&self) -> Vec<progress::Step> {
        self.progress.running()
    }

    /// The certificate authority kept in `<state dir>/tls/`, created the first time it is
    /// needed and then reused for as long as the state dir lives.
    pub fn certificate_authority(&self) -> Result<Arc<nodes::tls::CertificateAuthority>, nodes::NodeError> {
        let mut ca = lock(&self.secrets.ca);
        if let Some(ca) = ca.as_ref() {
            return Ok(ca.clone());
        }
        let mut loaded = nodes::tls::CertificateAuthority::load_or_create(&self.state_dir.join("tls"))?;
        let exposure = self.runtime.exposure();
        if exposure.is_advertised() {
            loaded = loaded.naming(&exposure.host);
        }
        let loaded = Arc::new(loaded);
        *ca = Some(loaded.clone());
        Ok(loaded)
    }

    /// What an endpoint of a group in transit encryption mode `mode` does with TLS.
    pub(crate) fn proxy_tls(&self, mode: Option<&str>) -> Result<nodes::ProxyTls, nodes::NodeError> {
        Ok(match mode {
            None => nodes::ProxyTls::Off,
            Some(model::status::transit::PREFERRED) => nodes::ProxyTls::Preferred(self.endpoint_tls_config()?),
            Some(_) => nodes::ProxyTls::Required,
        })
    }

    /// The certificate (from the state dir's CA) of endpoints that terminate TLS themselves.
    pub(crate) fn endpoint_tls_config(&self) -> Result<Arc<rustls::ServerConfig>, nodes::NodeError> {
        // Bound first: a guard in a match scrutinee would live through the arms.
        let cached = lock(&self.secrets.proxy_tls).clone();
        match cached {
            Some(config) => Ok(config),
            None => {
                let config = self.certificate_authority()?.server_config()?;
                *lock(&self.secrets.proxy_tls) = Some(config.clone());
                Ok(config)
            }
        }
    }

    /// Where a node keeps its config, logs and data.
    fn node_dir(&self, scope: &Scope, cluster_id: &str, node_id: &str) -> PathBuf {
        self.cluster_dir(scope, cluster_id).join(node_id)
    }

    fn cluster_dir(&self, scope: &Scope, cluster_id: &str) -> PathBuf {
        self.state_dir.join("nodes").join(&scope.region).join(&scope.account).join(cluster_id)
    }

    /// Runs until `shutdown` resolves: reconciles on every wake-up and every PERIOD, and
    /// runs the health monitor. Nodes left by an emulator that was killed are reaped first.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let reaped = nodes::reap_orphans(&self.state_dir);
        if !reaped.is_empty() {
            tracing::warn!(count = reaped.len(), "killed node processes left over by a previous run");
        }
        // Redis gets the pool asked for; valkey one node, which a serverless cache (one
        // valkey shard to begin with) starts its primary on.
        let pools = [(EngineKind::Redis, self.warm_nodes), (EngineKind::Valkey, self.warm_nodes.min(1))];
        let pools = pools.into_iter().filter_map(|(engine, size)| {
            let template = cluster_mode::warm_template(&self, engine)?;
            let root = self.state_dir.join("nodes").join("warm").join(engine.name());
            Some(nodes::WarmSettings { root, template, size, prepare: cluster_mode::warm_preparation() })
        });
        self.runtime.keep_warm(pools.collect()).await;
        let monitor = tokio::spawn(health::monitor(self.clone()));
        tokio::pin!(shutdown);
        loop {
            self.activate();
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.schedule.wake.notified() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
        monitor.abort();
        // No reconcile may start a node once the nodes are being stopped.
        self.pause().await;
        self.runtime.stop_warm().await;
        self.runtime.stop_all().await;
        self.endpoints.clear().await;
    }

    /// Starts a reconcile for every cluster and replication group not being reconciled
    /// already.
    fn activate(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let store = &this.store;
            let (clusters, groups) = match (store.all_cache_clusters().await, store.all_replication_groups().await) {
                (Ok(clusters), Ok(groups)) => (clusters, groups),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "reading desired state failed");
                    return;
                }
            };
            this.stop_unknown_nodes(&clusters).await;
            // Each reconcile reads its resource again once it holds the resource's slot:
            // the list above may predate the last reconcile's writes.
            for cluster in clusters {
                let (scope, id) = (cluster.scope.clone(), cluster.cluster.id.clone());
                this.spawn_once((scope.clone(), id.clone()), move |r| async move {
                    match r.store.cache_cluster(&scope, &id).await.map_err(error::Error::Store)? {
                        Some(fresh) => cache_clusters::reconcile(&r, fresh).await,
                        None => Ok(None),
                    }
                });
            }
            match store.all_snapshots().await {
                Ok(snapshots) => {
                    for (scope, snapshot) in snapshots
                        .into_iter()
                        .filter(|(_, s)| model::status::snapshot::TRANSITIONAL.contains(&s.status.as_str()))
                    {
                        let name = snapshot.name.clone();
                        this.spawn_once(snapshot_key(&scope, &name), move |r| async move {
                            match r.store.snapshot(&scope, &name).await.map_err(error::Error::Store)? {
                                Some(fresh) => snapshots::reconcile(&r, scope, fresh).await,
                                None => Ok(None),
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
                        this.spawn_once(service_updates::key(&scope, &action), move |r| async move {
                            service_updates::reconcile(&r, scope, name).await
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "reading update actions failed"),
            }
            match store.all_serverless_caches().await {
                Ok(caches) => {
                    for (scope, cache) in caches {
                        let name = cache.name.clone();
                        this.spawn_once(serverless::key(&scope, &name), move |r| async move {
                            match r.store.serverless_cache(&scope, &name).await.map_err(error::Error::Store)? {
                                Some(fresh) => serverless::reconcile(&r, scope, fresh).await,
                                None => Ok(None),
                            }
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "reading serverless caches failed"),
            }
            match store.all_global_replication_groups().await {
                Ok(globals) => {
                    for (account, global) in globals {
                        let id = global.id.clone();
                        this.spawn_once(global::key(&account, &id), move |r| async move {
                            global::reconcile(&r, account, id).await
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "reading global datastores failed"),
            }
            for group in groups {
                let (scope, id) = (group.scope.clone(), group.group.id.clone());
                // Group ids and cluster ids share a namespace in the in-flight set.
                this.spawn_once((scope.clone(), format!("replication-group/{id}")), move |r| async move {
                    match r.store.replication_group(&scope, &id).await.map_err(error::Error::Store)? {
                        Some(fresh) => replication_groups::reconcile(&r, fresh).await,
                        None => Ok(None),
                    }
                });
            }
        });
    }

    /// Stops nodes the store no longer knows (a reconcile that raced with a reset or a
    /// delete); a cluster being reconciled right now is left alone.
    async fn stop_unknown_nodes(&self, clusters: &[store::CacheCluster]) {
        for node in self.runtime.running() {
            let known = clusters.iter().any(|c| {
                scope_key(&c.scope) == node.key.scope
                    && c.cluster.id == node.key.cluster_id
                    && c.nodes.iter().any(|n| n.node_id == node.key.node_id)
            });
            let busy = lock(&self.schedule.in_flight)
                .iter()
                .any(|(s, id)| scope_key(s) == node.key.scope && *id == node.key.cluster_id);
            if known || busy {
                continue;
            }
            // Read again: the snapshot may predate the cluster's creation.
            let Some((region, account)) = node.key.scope.split_once('/') else { continue };
            let scope = Scope { region: region.to_string(), account: account.to_string() };
            if let Ok(Some(c)) = self.store.cache_cluster(&scope, &node.key.cluster_id).await
                && c.nodes.iter().any(|n| n.node_id == node.key.node_id)
            {
                continue;
            }
            tracing::warn!(node = %node.key, "stopping a node the store does not know");
            if let Err(error) = self.runtime.stop(&node.key).await {
                tracing::warn!(node = %node.key, %error, "stopping an unknown node failed");
            }
        }
    }

    /// Runs `reconcile` unless one for `key` is running. A reconcile answers when to look
    /// again (`None`: when something changes); a failed one is retried after RETRY_DELAY.
    fn spawn_once<F, Fut>(self: &Arc<Self>, key: ClusterKey, reconcile: F)
    where
        F: FnOnce(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Option<Duration>, error::Error>> + Send,
    {
        {
            let mut in_flight = lock(&self.schedule.in_flight);
            if self.schedule.stopping.load(std::sync::atomic::Ordering::SeqCst) || !in_flight.insert(key.clone()) {
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Frees the slot even if the reconcile panics, so the resource is not forgotten.
            let mut slot = Slot { reconciler: this.clone(), key: key.clone(), again: true };
            let again = match reconcile(this.clone()).await {
                Ok(again) => again,
                Err(error) => {
                    tracing::warn!(resource = key.1, %error, "reconcile failed; will retry");
                    Some(RETRY_DELAY)
                }
            };
            // Back off, doubling with each failure in a row (up to MAX_RETRY_DELAY), so a node
            // that cannot start does not spin the machine.
            let delay = match again {
                Some(delay) if delay >= RETRY_DELAY => {
                    let mut failures = lock(&this.schedule.retries);
                    let count = failures.entry(key.clone()).or_insert(0);
                    *count = (*count + 1).min(16);
                    Some((delay * 2u32.pow(*count - 1)).min(MAX_RETRY_DELAY))
                }
                other => {
                    lock(&this.schedule.retries).remove(&key);
                    other
                }
            };
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            slot.again = again.is_some();
        });
    }

    /// Asks for the node `key` to be replaced in place (recorded on the node, so the
    /// cluster's reconcile sees it like any other desired change) and wakes the reconciler.
    pub(crate) async fn request_recovery(&self, scope: &Scope, key: &NodeKey) {
        let result = self
            .store
            .update_cache_cluster(scope, &key.cluster_id, |_, nodes| {
                if let Some(node) = nodes.iter_mut().find(|n| n.node_id == key.node_id) {
                    node.recover_requested = true;
                }
                Ok::<_, ()>(Vec::new())
            })
            .await;
        if let Err(store::UpdateError::Store(error)) = result {
            tracing::error!(node = %key, %error, "asking for a node's recovery failed");
        }
        self.schedule.wake.notify_one();
    }

    /// Failed reconciles of `key` in a row so far (the one running now not counted).
    fn failed_attempts(&self, key: &ClusterKey) -> u32 {
        lock(&self.schedule.retries).get(key).copied().unwrap_or(0)
    }

    /// Holds off new reconciles and waits (up to 10 s) for the running ones to finish, so
    /// that nothing starts a node while everything is being stopped.
    pub async fn pause(&self) {
        self.schedule.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !lock(&self.schedule.in_flight).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Reconciles again after [`Reconciler::pause`].
    pub fn resume(&self) {
        self.schedule.stopping.store(false, std::sync::atomic::Ordering::SeqCst);
        self.schedule.wake.notify_one();
    }

    /// Stops every node and endpoint and forgets them (after the store was reset; call
    /// [`Reconciler::pause`] first).
    pub async fn reset(&self) {
        self.runtime.stop_all().await;
        self.endpoints.clear().await;
        lock(&self.monitor.observed).clear();
        lock(&self.monitor.failures).clear();
        lock(&self.monitor.zones_down).clear();
        lock(&self.schedule.retries).clear();
        lock(&self.acl_applied).clear();
        self.bridges.stop_all(&self.runtime).await;
        let _ = tokio::fs::remove_dir_all(self.state_dir.join("nodes")).await;
    }

    /// The health the monitor last saw for a node.
    pub fn health(&self, key: &NodeKey) -> Option<Health> {
        lock(&self.monitor.observed).get(key).copied()
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A serverless cache's shard count and the data its primaries hold, for scaling it;
    /// None while its backing group is changing or a primary does not answer.
    pub async fn serverless_data_size(
        &self,
        scope: &Scope,
        name: &str,
    ) -> Result<Option<(usize, u64)>, store::StoreError> {
        serverless::data_size(self, scope, name).await
    }

    /// Starts or ends a simulated outage of a zone: every node placed there is frozen
    /// (unreachable, not dead) until it ends, and the monitor reacts as to a real outage.
    /// Returns the nodes affected.
    pub async fn zone_outage(&self, zone: &str, down: bool) -> Result<Vec<NodeKey>, store::StoreError> {
        let mut affected = Vec::new();
        for c in self.store.all_cache_clusters().await? {
            for node in c.nodes.iter().filter(|n| n.zone == zone) {
                let key = NodeKey::new(scope_key(&c.scope), c.cluster.id.clone(), node.node_id.clone());
                let result = if down { self.runtime.pause(&key).await } else { self.runtime.resume(&key).await };
                match result {
                    Ok(()) => affected.push(key),
                    Err(error) => tracing::warn!(node = %key, %error, "zone outage: node not changed"),
                }
            }
        }
        if down {
            lock(&self.monitor.zones_down).insert(zone.to_string());
        } else {
            lock(&self.monitor.zones_down).remove(zone);
        }
        self.schedule.wake.notify_one();
        Ok(affected)
    }

    /// Whether a zone is in a simulated outage (nodes started there start frozen too).
    pub fn zone_is_down(&self, zone: &str) -> bool {
        lock(&self.monitor.zones_down).contains(zone)
    }
}
