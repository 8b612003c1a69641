//! The reconciler: compares the desired state in the store with what the node runtime
//! observes, and acts — starts, reconfigures, restarts and stops real nodes — then writes
//! the observed state and AWS's events back to the store.
//!
//! # Layout
//! - [`Reconciler`]: start-up recovery, zone outages and reset.
//! - `schedule`: when what is reconciled: passes over what changed (and, less often,
//!   over everything), one reconcile per resource at a time, back-off.
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
//! - `restart`: the statuses an emulator restart shows until its nodes are back.
//! - `health`: the monitor that probes every node and asks for repairs or failovers.
//! - `service_updates`: update actions rolling through a cluster's or group's nodes.
//! - `failover`: which replica a failover promotes (a pure decision).
//! - `warm`: the nodes the runtime keeps started ahead of need.
//! - [`progress`]: how far reshards and snapshots are, for people watching.
//! - `error`: what can stop one reconcile.
//!
//! It reads and writes the store, and takes its vocabulary (statuses, names, ARNs,
//! parameter values) from `model`; it never calls the API layer.
//!
//! A reconcile takes no input but its key and reads current state, so creation, repair after a crash
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
mod pace;
pub mod progress;
mod replication_groups;
mod restart;
mod s3;
mod schedule;
mod serverless;
mod serverless_migration;
mod service_updates;
mod snapshots;
mod warm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::Catalog;
use nodes::{Health, NodeKey, Runtime};
use store::{Scope, Store};
use tokio::sync::Notify;

pub use health::HealthSettings;
pub use s3::S3Target;
use schedule::Schedule;
pub(crate) use schedule::{RETRY_DELAY, snapshot_key};

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
    /// Cluster-enabled redis nodes to keep warm for new cluster-mode primaries; 0 keeps no
    /// warm node of any kind (see `warm::pools`).
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
            schedule: Schedule::new(wake),
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

    /// Marks the nodes recorded as available as rebooting, since none runs yet after a
    /// start (see `restart`). Call it before the API answers, and before [`Reconciler::run`].
    pub async fn mark_nodes_restarting(&self) -> Result<(), store::StoreError> {
        let count = restart::mark_nodes_restarting(&self.store).await?;
        if count > 0 {
            tracing::info!(nodes = count, "nodes recorded as available are rebooting until they run again");
        }
        Ok(())
    }

    /// Runs until `shutdown` resolves: reconciles (see `schedule` for when), and
    /// runs the health monitor. Nodes left by an emulator that was killed are reaped first.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let reaped = nodes::reap_orphans(&self.state_dir);
        if !reaped.is_empty() {
            tracing::warn!(count = reaped.len(), "killed node processes left over by a previous run");
        }
        self.runtime.keep_warm(warm::pools(&self, self.warm_nodes)).await;
        let monitor = tokio::spawn(health::monitor(self.clone()));
        self.schedule_passes(shutdown).await;
        monitor.abort();
        // No reconcile may start a node once the nodes are being stopped.
        self.pause().await;
        self.runtime.stop_warm().await;
        self.runtime.stop_all().await;
        self.endpoints.clear().await;
    }

    /// Asks for the node `key` to be replaced in place (recorded on the node, so the
    /// cluster's reconcile sees it like any other desired change).
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
        self.schedule.forget();
        lock(&self.acl_applied).clear();
        self.bridges.stop_all(&self.runtime).await;
        let _ = tokio::fs::remove_dir_all(self.state_dir.join("nodes")).await;
    }

    /// The health the monitor last saw for a node.
    pub fn health(&self, key: &NodeKey) -> Option<Health> {
        lock(&self.monitor.observed).get(key).copied()
    }

    /// Whether the monitor's last look at the node found it anything but healthy.
    pub(crate) fn unhealthy(&self, key: &NodeKey) -> bool {
        self.health(key).is_some_and(|h| h != Health::Healthy)
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
