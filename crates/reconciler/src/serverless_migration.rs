//! Online migration into a serverless cache, as AWS runs it ("Online migration to
//! ElastiCache Serverless", user guide): PrepareMigration checks the source and the cache,
//! and from then on the cache's own endpoint sends clients' commands to the source;
//! StartMigration copies the source's data into the cache and keeps following it (a
//! [`nodes::bridge`], a real replica of the source writing into the cache's shards);
//! CompleteMigration (or AutoCutover) cuts over "at the next fully synced window": the
//! endpoint holds new commands once those under way are answered, waits until the bridge
//! has applied all the source had acknowledged, switches to the cache's shards and lets
//! the held commands go on. Clients see a pause, never an error. Each outcome is an event
//! of the cache.
//!
//! The requirements checked at preparation, from the prerequisites page: the source runs
//! Valkey 7.2–8.1 or Redis OSS 4.0–7.2, no newer than the cache; the cache is empty (its
//! data sync "fails if your target contains data" unless ClearTargetCacheData). The source
//! must run with cluster mode disabled and keep its keys in database 0 (the cache has no
//! other): the emulator's reading, its bridge follows one node. A failed preparation
//! removes the migration and leaves the cache `available` ("the migration is rolled
//! back, so the Migration object is removed and your cache returns to available").
//!
//! Source credentials: AWS reads them from a Secrets Manager secret. The emulator has none;
//! it reads the secret's SecretString from `<state dir>/secretsmanager/<region>/<account>/
//! <secret id>.json` (`{"username": …, "password": …}`, the user name optional), and says so
//! in the failure event when the file is not there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::status::cluster as status;
use nodes::resp::{Reply, info_field};
use nodes::serverless::Upstream;
use nodes::{BridgePhase, NodeKey};
use store::{EventRecord, MigrationStage, ReplicationGroup, Scope, ServerlessCacheRecord, ServerlessMigration};
use tokio::io::BufStream;

use crate::error::{Error, stored};
use crate::{Reconciler, scope_key};

/// Bound on reaching the source and on each of its answers.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a running data sync is looked at (its progress, AutoCutover, a cutover).
const WATCH: Duration = Duration::from_millis(100);
/// How long a cutover waits for the commands under way to be answered before holding the
/// next ones; past it, it tries again later (a blocking command may be under way).
const DRAIN_WITHIN: Duration = Duration::from_secs(1);
/// How long after such an attempt the next one comes (longer after each, as the reconciler
/// backs off): every attempt holds clients' commands while it waits.
const DRAIN_RETRY: Duration = Duration::from_secs(1);
/// How long clients' commands may be held while the cache catches up with the source;
/// past it, they go on to the source and the cutover is tried again later.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(2);
/// The `SourceType` of a serverless cache's events.
const SOURCE_TYPE: &str = "serverless-cache";

/// What the cache's reconcile does after the migration step: the status to record, and
/// when to look again.
pub(crate) struct Outcome {
    pub status: String,
    pub again: Option<Duration>,
}

impl Outcome {
    fn stay(cache: &ServerlessCacheRecord, again: Option<Duration>) -> Self {
        Self { status: cache.status.clone(), again }
    }
}

/// The runtime's name for the bridge of the cache `name`.
fn bridge_id(scope: &Scope, name: &str) -> String {
    format!("serverless/{}/{name}", scope_key(scope))
}

/// The source of a migration as the emulator reaches it.
struct Source {
    address: SocketAddr,
    /// SourceTlsMode `verify-ca`: TLS, verified with the given certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// From the migration's secret: AUTH user and password.
    credentials: Option<(String, String)>,
}

impl Source {
    /// Where the endpoint sends clients' commands.
    fn upstream(&self) -> Upstream {
        Upstream { address: self.address, tls: self.tls.clone() }
    }

    /// The address, the TLS configuration and the credentials of `m`'s source.
    async fn of(r: &Reconciler, scope: &Scope, m: &ServerlessMigration) -> Result<Self, String> {
        let address = resolve(&m.address, m.port).await?;
        let tls = m.tls_ca.as_deref().map(tls_config).transpose()?;
        let credentials = secret(r, scope, m.secret_arn.as_deref())?;
        Ok(Self { address, tls, credentials })
    }
}

/// A TLS client configuration trusting the PEM certificate(s) `ca` only.
fn tls_config(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let invalid = |e: &dyn std::fmt::Display| format!("the SourceTlsCertificate cannot be used: {e}");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(certificate.map_err(|e| invalid(&e))?).map_err(|e| invalid(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where the endpoints of `cache` send commands when they start: the source of a
/// migration that has been prepared and not cut over (None if it cannot be reached: the
/// migration's step says why).
pub(crate) async fn route_of(r: &Reconciler, scope: &Scope, cache: &ServerlessCacheRecord) -> Option<Upstream> {
    let m = cache.migration.as_ref().filter(|m| m.phase.serves_source())?;
    Source::of(r, scope, m).await.ok().map(|s| s.upstream())
}

/// Stops the data sync of the cache `name`, if any (the cache is being deleted, say).
pub(crate) async fn stop(r: &Reconciler, scope: &Scope, name: &str) {
    r.runtime.stop_bridge(&bridge_id(scope, name)).await;
}

/// Carries out the cache's migration as far as it can go now.
pub(crate) async fn step(
    r: &Arc<Reconciler>,
    scope: &Scope,
    cache: &ServerlessCacheRecord,
    group: &ReplicationGroup,
    m: &ServerlessMigration,
) -> Result<Outcome, Error> {
    let name = &cache.name;
    let id = bridge_id(scope, name);
    let source = match Source::of(r, scope, m).await {
        Ok(source) => source,
        Err(reason) if m.phase == MigrationStage::Preparing => return rolled_back(r, scope, cache, reason).await,
        Err(reason) if m.phase.syncing() => return failed(r, scope, cache, &id, reason).await,
        Err(reason) => {
            // No data flows now: the next StartMigration says why, if it still holds.
            tracing::warn!(serverless_cache = name, reason, "migration: the source cannot be reached");
            return Ok(Outcome::stay(cache, None));
        }
    };
    match m.phase {
        MigrationStage::Preparing => {
            if let Err(reason) = check_source(&source, &cache.full_engine_version).await {
                return rolled_back(r, scope, cache, reason).await;
            }
            if let Err(reason) = check_empty(r, scope, group).await {
                return rolled_back(r, scope, cache, reason).await;
            }
            crate::serverless::route(r, scope, name, Some(source.upstream())).await;
            let message = format!("Migration prepared for serverless cache {name} from {}:{}", m.address, m.port);
            record(r, scope, name, Some(MigrationStage::Prepared), Some(status::AVAILABLE), message).await?;
            Ok(Outcome { status: status::AVAILABLE.to_string(), again: None })
        }
        MigrationStage::Prepared | MigrationStage::Stopped | MigrationStage::Failed => {
            if r.runtime.bridge(&id).is_some() {
                r.runtime.stop_bridge(&id).await;
                if m.phase == MigrationStage::Stopped {
                    record(r, scope, name, None, None, format!("Data sync stopped for serverless cache {name}"))
                        .await?;
                }
            }
            crate::serverless::route(r, scope, name, Some(source.upstream())).await;
            Ok(Outcome::stay(cache, None))
        }
        MigrationStage::Syncing { clear, started } => {
            crate::serverless::route(r, scope, name, Some(source.upstream())).await;
            if r.runtime.bridge(&id).is_none() {
                if !shards_ready(r, scope, group).await {
                    // Starting (an emulator restart, say): the copy waits for its shards.
                    return Ok(Outcome::stay(cache, Some(WATCH)));
                }
                // Some requirements are checked again when the data sync starts.
                let checked = match check_source(&source, &cache.full_engine_version).await {
                    Ok(()) if clear || started => clear_cache(r, scope, group).await,
                    Ok(()) => check_empty(r, scope, group).await.map_err(|reason| {
                        format!("{reason}; start the data sync with ClearTargetCacheData to delete it")
                    }),
                    Err(reason) => Err(reason),
                };
                if let Err(reason) = checked {
                    return failed(r, scope, cache, &id, reason).await;
                }
                if let Err(error) = begin_sync(r, scope, name, group, &source).await {
                    return failed(r, scope, cache, &id, error).await;
                }
                let stage = MigrationStage::Syncing { clear: false, started: true };
                record(r, scope, name, Some(stage), None, format!("Data sync started for serverless cache {name}"))
                    .await?;
                return Ok(Outcome::stay(cache, Some(WATCH)));
            }
            watch_sync(r, scope, cache, &id, m).await
        }
        MigrationStage::InSync => watch_sync(r, scope, cache, &id, m).await,
        MigrationStage::CuttingOver { force } => cut_over(r, scope, cache, group, &id, &source, force).await,
    }
}

/// Follows a running data sync: once the copy is done and the changes flow, the data sync
/// is established (and AutoCutover cuts over). A bridge that lost its source keeps trying
/// (the migration stays open, clients stay on the source).
async fn watch_sync(
    r: &Reconciler,
    scope: &Scope,
    cache: &ServerlessCacheRecord,
    id: &str,
    m: &ServerlessMigration,
) -> Result<Outcome, Error> {
    let name = &cache.name;
    let Some(state) = r.runtime.bridge(id) else {
        // Gone (an emulator restart): the next step starts it again on a cleared cache.
        let stage = MigrationStage::Syncing { clear: true, started: true };
        record_quietly(r, scope, name, stage).await?;
        return Ok(Outcome::stay(cache, Some(WATCH)));
    };
    let established = state.phase == BridgePhase::Streaming && state.link_up;
    match (established, m.phase) {
        (true, MigrationStage::InSync) => {}
        (true, _) => {
            let mut message = format!("Data sync established for serverless cache {name}");
            let (stage, status) = if m.auto_cutover {
                message.push_str("; cutting over (AutoCutover)");
                (MigrationStage::CuttingOver { force: false }, Some(status::MODIFYING))
            } else {
                (MigrationStage::InSync, None)
            };
            record(r, scope, name, Some(stage), status, message).await?;
            return Ok(Outcome { status: status.unwrap_or(&cache.status).to_string(), again: Some(WATCH) });
        }
        (false, MigrationStage::InSync) => {
            if let BridgePhase::Failed(reason) = &state.phase {
                tracing::warn!(serverless_cache = name, reason, "migration: the data sync is interrupted");
            }
            record_quietly(r, scope, name, MigrationStage::Syncing { clear: false, started: true }).await?;
        }
        (false, _) => {}
    }
    Ok(Outcome::stay(cache, Some(WATCH)))
}

/// The cutover: clients' commands held, the cache caught up with the source, the endpoint
/// switched to the cache, the commands let go; tried again at the next look if the cache
/// could not catch up in time. With `force`, at once.
async fn cut_over(
    r: &Reconciler,
    scope: &Scope,
    cache: &ServerlessCacheRecord,
    group: &ReplicationGroup,
    id: &str,
    source: &Source,
    force: bool,
) -> Result<Outcome, Error> {
    let name = &cache.name;
    if !force {
        match r.runtime.bridge(id).map(|s| s.phase) {
            None => {
                // No data sync (an emulator restart): start it again, then cut over.
                crate::serverless::route(r, scope, name, Some(source.upstream())).await;
                if !shards_ready(r, scope, group).await {
                    return Ok(Outcome::stay(cache, Some(WATCH)));
                }
                let cleared = clear_cache(r, scope, group).await;
                let started = match cleared {
                    Ok(()) => begin_sync(r, scope, name, group, source).await,
                    Err(reason) => Err(reason),
                };
                return match started {
                    Ok(()) => Ok(Outcome::stay(cache, Some(WATCH))),
                    Err(reason) => failed(r, scope, cache, id, reason).await,
                };
            }
            // The next fully synced window: none while the link is down or the copy runs.
            Some(BridgePhase::Streaming) => {}
            Some(_) => return Ok(Outcome::stay(cache, Some(WATCH))),
        }
    }
    let Some(holds) = crate::serverless::hold(r, scope, name, DRAIN_WITHIN).await else {
        tracing::info!(serverless_cache = name, "cutover: commands still under way; trying again");
        return Ok(Outcome::stay(cache, Some(DRAIN_RETRY)));
    };
    let held = Instant::now();
    if !force {
        // Nothing more reaches the source through the endpoint: what it has acknowledged
        // up to its offset now is what the cache must hold.
        let caught_up = match source_offset(source).await {
            Ok(offset) => catch_up(r, id, offset).await,
            Err(reason) => {
                tracing::warn!(serverless_cache = name, reason, "cutover: the source's offset is unknown");
                false
            }
        };
        if !caught_up {
            drop(holds);
            tracing::info!(serverless_cache = name, "cutover: the cache is not in sync yet; trying again");
            return Ok(Outcome::stay(cache, Some(WATCH)));
        }
    }
    // Recorded before the switch: should the write fail, clients stay on the source and
    // nothing written to the cache alone is lost.
    let paused = held.elapsed();
    let message = format!("Migration completed for serverless cache {name}: the endpoint serves the cache");
    close(r, scope, name, &message).await?;
    crate::serverless::route(r, scope, name, None).await;
    drop(holds);
    r.runtime.stop_bridge(id).await;
    tracing::info!(serverless_cache = name, force, paused_ms = paused.as_millis() as u64, "migration cut over");
    Ok(Outcome { status: status::AVAILABLE.to_string(), again: None })
}

/// Waits (up to CATCH_UP_WITHIN) until the bridge has applied the source's stream up to
/// `offset`.
async fn catch_up(r: &Reconciler, id: &str, offset: u64) -> bool {
    let deadline = Instant::now() + CATCH_UP_WITHIN;
    loop {
        match r.runtime.bridge(id) {
            Some(state) if state.applied_offset >= offset => return true,
            Some(state) if state.phase == BridgePhase::Streaming => {}
            _ => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Starts the bridge from `source` into the cache's shards.
async fn begin_sync(
    r: &Reconciler,
    scope: &Scope,
    name: &str,
    group: &ReplicationGroup,
    source: &Source,
) -> Result<(), String> {
    let target = primaries(scope, group);
    if target.is_empty() {
        return Err("the cache has no shard to copy into yet".to_string());
    }
    let spec = nodes::bridge::BridgeSpec {
        source: source.address,
        source_auth: source.credentials.clone(),
        source_tls: source.tls.clone(),
        target,
        scratch_dir: r.state_dir.join("migrations").join(&scope.region).join(&scope.account).join(name),
        // Online migration is for ElastiCache Serverless for Valkey only.
        engine: nodes::EngineKind::Valkey,
    };
    r.runtime.start_bridge(&bridge_id(scope, name), spec).await.map_err(|e| format!("the data sync cannot start: {e}"))
}

/// The node keys of the cache's shard primaries.
fn primaries(scope: &Scope, group: &ReplicationGroup) -> Vec<NodeKey> {
    let leads = |id: &str| group.group.node_groups.iter().any(|s| s.primary_cluster_id == id);
    group
        .members
        .iter()
        .filter(|m| leads(&m.cluster.id))
        .filter_map(|m| crate::replication_groups::node_key(scope, m))
        .collect()
}

/// Whether every shard primary of the cache answers with its cluster in order (after an
/// emulator restart they take a moment).
async fn shards_ready(r: &Reconciler, scope: &Scope, group: &ReplicationGroup) -> bool {
    let keys = primaries(scope, group);
    if group.group.status != status::AVAILABLE || keys.is_empty() {
        return false;
    }
    for key in keys {
        let info = r.runtime.command(&key, &["CLUSTER", "INFO"]).await.ok().and_then(|i| i.as_text());
        if info.is_none_or(|i| info_field(&i, "cluster_state") != Some("ok")) {
            return false;
        }
    }
    true
}

/// Whether the cache holds no key (every shard primary's DBSIZE is 0).
async fn check_empty(r: &Reconciler, scope: &Scope, group: &ReplicationGroup) -> Result<(), String> {
    let mut keys = 0;
    for key in primaries(scope, group) {
        match r.runtime.command(&key, &["DBSIZE"]).await {
            Ok(Reply::Integer(n)) => keys += n,
            other => return Err(format!("the cache's data cannot be counted: {other:?}")),
        }
    }
    if keys > 0 { Err(format!("the target cache is not empty: it holds {keys} keys")) } else { Ok(()) }
}

/// Deletes every key of the cache (ClearTargetCacheData).
async fn clear_cache(r: &Reconciler, scope: &Scope, group: &ReplicationGroup) -> Result<(), String> {
    for key in primaries(scope, group) {
        match r.runtime.command(&key, &["FLUSHALL", "ASYNC"]).await {
            Ok(Reply::Error(e)) => return Err(format!("the cache's data cannot be deleted: {e}")),
            Err(e) => return Err(format!("the cache's data cannot be deleted: {e}")),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The source's IPv4 address and port.
async fn resolve(address: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::time::timeout(SOURCE_TIMEOUT, tokio::net::lookup_host((address, port)))
        .await
        .map_err(|_| format!("the source {address} could not be resolved in time"))?
        .map_err(|e| format!("the source {address} could not be resolved: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("the source {address} has no IPv4 address"))
}

/// Runs `commands` on the source, as the secret's user if there is one; their replies.
async fn ask_source(from: &Source, commands: &[&[&str]]) -> Result<Vec<Reply>, String> {
    let source = from.address;
    let exchange = async {
        let stream = nodes::serverless::connect(source, from.tls.as_ref())
            .await
            .map_err(|e| format!("cannot connect to the source {source}: {e}"))?;
        let mut stream = BufStream::new(stream);
        if let Some((user, password)) = &from.credentials {
            match nodes::resp::command(&mut stream, &["AUTH", user, password]).await {
                Ok(Reply::Error(e)) => {
                    return Err(format!("the source {source} refused the secret's credentials: {e}"));
                }
                Err(e) => return Err(format!("the source {source} did not answer AUTH: {e}")),
                Ok(_) => {}
            }
        }
        let mut replies = Vec::new();
        for command in commands {
            match nodes::resp::command(&mut stream, command).await {
                Ok(Reply::Error(e)) if e.starts_with("NOAUTH") => {
                    return Err(format!(
                        "the source {source} requires authentication: give PrepareMigration a SourceAuthenticationConfiguration"
                    ));
                }
                Ok(Reply::Error(e)) => return Err(format!("the source {source} answered {e}")),
                Ok(reply) => replies.push(reply),
                Err(e) => return Err(format!("the source {source} did not answer: {e}")),
            }
        }
        Ok(replies)
    };
    tokio::time::timeout(SOURCE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("the source {source} did not answer in time"))?
}

/// The source's replication offset: how far its stream of changes has gone.
async fn source_offset(source: &Source) -> Result<u64, String> {
    let replies = ask_source(source, &[&["INFO", "replication"]]).await?;
    let text = replies.first().and_then(Reply::as_text).unwrap_or_default();
    info_field(&text, "master_repl_offset")
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| format!("the source {} reports no replication offset", source.address))
}

/// Whether the source meets the requirements (engine and version, not newer than the
/// cache's `target_version`, cluster mode disabled, keys in database 0 only); which one it
/// misses, otherwise.
async fn check_source(source: &Source, target_version: &str) -> Result<(), String> {
    let replies = ask_source(source, &[&["INFO", "server"], &["INFO", "cluster"], &["INFO", "keyspace"]]).await?;
    let text = |i: usize| replies.get(i).and_then(Reply::as_text).unwrap_or_default();
    let (server, cluster, keyspace) = (text(0), text(1), text(2));
    let (engine, version) = match info_field(&server, "valkey_version") {
        Some(v) => ("Valkey", v.to_string()),
        None => ("Redis OSS", info_field(&server, "redis_version").unwrap_or_default().to_string()),
    };
    let at = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    };
    let supported = match engine {
        "Valkey" => (7, 2)..=(8, 1),
        _ => (4, 0)..=(7, 2),
    };
    if !supported.contains(&at(&version)) {
        return Err(format!(
            "the source runs {engine} {version}; the supported sources are Valkey 7.2 through 8.1 and Redis OSS 4.0 through 7.2"
        ));
    }
    if at(&version) > at(target_version) {
        return Err(format!(
            "the source runs {engine} {version}, a higher version than the serverless cache's {target_version}"
        ));
    }
    if info_field(&cluster, "cluster_enabled") == Some("1") {
        return Err(
            "the source runs in cluster mode; online migration to a serverless cache needs cluster mode disabled"
                .into(),
        );
    }
    if let Some(db) = keyspace.lines().filter_map(|l| l.split_once(':')).map(|(db, _)| db).find(|db| *db != "db0") {
        return Err(format!("the source has keys in {db}; a serverless cache has database 0 only"));
    }
    Ok(())
}

/// The source's credentials from the migration's secret (see the module doc).
fn secret(r: &Reconciler, scope: &Scope, arn: Option<&str>) -> Result<Option<(String, String)>, String> {
    let Some(arn) = arn else { return Ok(None) };
    let id = arn.rsplit_once(":secret:").map(|(_, id)| id).unwrap_or(arn);
    let path: PathBuf =
        r.state_dir.join("secretsmanager").join(&scope.region).join(&scope.account).join(format!("{id}.json"));
    let missing = || {
        format!(
            "the secret {arn} cannot be read: ElastiCache Local has no Secrets Manager; it reads the secret's SecretString from {}",
            path.display()
        )
    };
    let text = std::fs::read_to_string(&path).map_err(|_| missing())?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| missing())?;
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str).map(str::to_string);
    let password = field("password").ok_or_else(|| format!("the secret {arn} has no password"))?;
    Ok(Some((field("username").unwrap_or_else(|| "default".to_string()), password)))
}

/// A failed preparation: the migration is removed and the cache is `available` again.
async fn rolled_back(
    r: &Reconciler,
    scope: &Scope,
    cache: &ServerlessCacheRecord,
    reason: String,
) -> Result<Outcome, Error> {
    let name = &cache.name;
    let message = format!("Migration preparation failed for serverless cache {name}: {reason}");
    tracing::info!(serverless_cache = name, message, "migration rolled back");
    crate::serverless::route(r, scope, name, None).await;
    close(r, scope, name, &message).await?;
    Ok(Outcome { status: status::AVAILABLE.to_string(), again: None })
}

/// A data sync that could not start or broke: the migration stays open (the endpoint
/// still serves the source) and can be started again.
async fn failed(
    r: &Reconciler,
    scope: &Scope,
    cache: &ServerlessCacheRecord,
    id: &str,
    reason: String,
) -> Result<Outcome, Error> {
    let name = &cache.name;
    r.runtime.stop_bridge(id).await;
    let message = format!("Data sync failed for serverless cache {name}: {reason}");
    tracing::warn!(serverless_cache = name, message, "migration");
    record(r, scope, name, Some(MigrationStage::Failed), Some(status::AVAILABLE), message).await?;
    Ok(Outcome { status: status::AVAILABLE.to_string(), again: None })
}

/// Records `message` and moves the migration to `stage` (and the cache to `to`).
async fn record(
    r: &Reconciler,
    scope: &Scope,
    name: &str,
    stage: Option<MigrationStage>,
    to: Option<&str>,
    message: String,
) -> Result<(), Error> {
    tracing::info!(serverless_cache = name, message, "migration");
    let result = r
        .store
        .update_serverless_cache(scope, name, |c| {
            if let (Some(m), Some(stage)) = (c.migration.as_mut(), stage) {
                m.phase = stage;
            }
            if let Some(to) = to {
                set_status(c, to);
            }
            Ok::<_, ()>(vec![event(name, &message)])
        })
        .await;
    stored(result)
}

/// Moves the migration to `stage`, with no event.
async fn record_quietly(r: &Reconciler, scope: &Scope, name: &str, stage: MigrationStage) -> Result<(), Error> {
    let result = r
        .store
        .update_serverless_cache(scope, name, |c| {
            if let Some(m) = c.migration.as_mut() {
                m.phase = stage;
            }
            Ok::<_, ()>(Vec::new())
        })
        .await;
    stored(result)
}

/// Moves the cache to `to` from `available` or `modifying`: a DeleteServerlessCache that
/// came meanwhile wins.
fn set_status(c: &mut ServerlessCacheRecord, to: &str) {
    if c.status != to && [status::AVAILABLE, status::MODIFYING].contains(&c.status.as_str()) {
        tracing::info!(serverless_cache = c.name, from = c.status, to, "serverless cache status");
        c.status = to.to_string();
    }
}

fn event(name: &str, message: &str) -> EventRecord {
    EventRecord::new(SOURCE_TYPE, name, message)
}

/// The migration is over (done, or rolled back): the cache is `available` again, with
/// `message` as its event.
async fn close(r: &Reconciler, scope: &Scope, name: &str, message: &str) -> Result<(), Error> {
    let result = r
        .store
        .update_serverless_cache(scope, name, |c| {
            c.migration = None;
            set_status(c, status::AVAILABLE);
            Ok::<_, ()>(vec![event(name, message)])
        })
        .await;
    stored(result)
}
