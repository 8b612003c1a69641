//! Snapshots: taking the RDB file from a serving node (BGSAVE, so the node keeps serving),
//! copying and exporting files, deleting them, and seeding new nodes from a snapshot.
//! The files of a snapshot with at-rest encryption are stored encrypted (`crate::at_rest`);
//! everything that reads a snapshot file goes through [`transfer`], which decrypts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::status::cluster as status;
use model::status::snapshot as snapshot_status;
use nodes::NodeKey;
use store::{EventRecord, NodeSnapshotRecord, Scope, SnapshotRecord, now_millis};

use crate::error::{Error, stored};
use crate::{Reconciler, scope_key};

/// How long a BGSAVE may take before the snapshot is retried.
const SAVE_DEADLINE: Duration = Duration::from_secs(300);
const SAVE_POLL: Duration = Duration::from_millis(10);

/// What a snapshot's files hold: RDB data, or a serverless Memcached cache's items
/// (`nodes::serverless_memcached::dump`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataFile {
    Rdb,
    MemcachedDump,
}

impl DataFile {
    /// The files of a snapshot of `engine`.
    fn of(engine: &str) -> Self {
        if engine == "memcached" { Self::MemcachedDump } else { Self::Rdb }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Rdb => "rdb",
            Self::MemcachedDump => "memcached",
        }
    }
}

impl Reconciler {
    fn snapshot_dir(&self, scope: &Scope, name: &str) -> PathBuf {
        self.state_dir.join("snapshots").join(&scope.region).join(&scope.account).join(name)
    }

    /// The local stand-in for S3, where exports go and SnapshotArns are read:
    /// `<state dir>/exports/<bucket>/`.
    fn export_dir(&self, bucket: &str) -> PathBuf {
        self.state_dir.join("exports").join(bucket)
    }

    /// The file of one node group of a snapshot.
    pub(crate) fn snapshot_file(&self, scope: &Scope, name: &str, kind: DataFile, node_group_id: &str) -> PathBuf {
        self.snapshot_dir(scope, name).join(format!("{node_group_id}.{}", kind.extension()))
    }
}

fn event_source(s: &SnapshotRecord) -> (&'static str, String, &'static str) {
    match (&s.replication_group_id, &s.cache_cluster_id) {
        (Some(group), _) => (model::status::source::REPLICATION_GROUP, group.clone(), "replication group"),
        (None, Some(cluster)) => (model::status::source::CACHE_CLUSTER, cluster.clone(), "cache cluster"),
        (None, None) => (model::status::source::CACHE_CLUSTER, String::new(), "cache cluster"),
    }
}

/// Brings one snapshot to its desired state. Returns when to look again.
pub async fn reconcile(r: &Arc<Reconciler>, scope: Scope, s: SnapshotRecord) -> Result<Option<Duration>, Error> {
    match s.status.as_str() {
        snapshot_status::CREATING => {
            let attempt = if s.copy_of.is_some() { copy(r, &scope, &s).await } else { take(r, &scope, &s).await };
            let failure = match &attempt {
                Err(error) => error.to_string(),
                Ok(Some(delay)) if *delay >= crate::RETRY_DELAY => "its node did not save its data".to_string(),
                Ok(_) => return attempt,
            };
            if r.failed_attempts(&crate::snapshot_key(&scope, &s.name)) + 1 < crate::MAX_ATTEMPTS {
                return attempt;
            }
            give_up(r, &scope, &s, &failure).await
        }
        snapshot_status::EXPORTING => export(r, &scope, &s).await,
        snapshot_status::DELETING => {
            let _ = tokio::fs::remove_dir_all(r.snapshot_dir(&scope, &s.name)).await;
            // A serverless cache's snapshot has its tags under its own ARN.
            let arn = match model::names::serverless_name(&s.name) {
                Some(name) => model::arn::build(&scope, model::arn::Kind::ServerlessCacheSnapshot, name),
                None => model::arn::build(&scope, model::arn::Kind::Snapshot, &s.name),
            };
            match r.store.delete_snapshot(&scope, &s.name, &arn, &[]).await {
                Ok(()) | Err(store::StoreError::NotFound) => Ok(None),
                Err(e) => Err(Error::Store(e)),
            }
        }
        _ => Ok(None),
    }
}

/// What a node's `INFO persistence` says of its saves.
struct Persistence {
    saves: u64,
    saving: bool,
    last_ok: bool,
    /// Keys the running save wrote, of how many (redis 7 and later; zeros before).
    keys_saved: u64,
    keys_total: u64,
}

async fn persistence(r: &Reconciler, key: &NodeKey) -> Result<Persistence, Error> {
    let reply = r.runtime.command(key, &["INFO", "persistence"]).await.map_err(Error::Node)?;
    let text = reply.as_text().unwrap_or_default();
    let field = |name: &str| nodes::resp::info_field(&text, name).unwrap_or_default();
    Ok(Persistence {
        saves: field("rdb_saves").parse().unwrap_or(0),
        saving: field("rdb_bgsave_in_progress") == "1",
        last_ok: field("rdb_last_bgsave_status") == "ok",
        keys_saved: field("current_save_keys_processed").parse().unwrap_or(0),
        keys_total: field("current_save_keys_total").parse().unwrap_or(0),
    })
}

/// The name of a snapshot being taken in [`crate::progress`].
const SNAPSHOT: &str = "snapshot";
/// A cluster-mode restore: keys spread over the shards.
const RESTORE: &str = "restore";

/// BGSAVE on one node, then its RDB file copied into the snapshot as `node_group_id`'s
/// file; returns the file's size, or None when the save must be retried.
async fn save_node(
    r: &Reconciler,
    scope: &Scope,
    s: &SnapshotRecord,
    node: &NodeSnapshotRecord,
) -> Result<Option<u64>, Error> {
    if DataFile::of(&s.engine) == DataFile::MemcachedDump {
        return dump_mirrors(r, scope, s, node).await;
    }
    let key = NodeKey::new(scope_key(scope), node.cache_cluster_id.clone(), node.node_id.clone());
    if r.runtime.get(&key).is_none() {
        return Ok(None);
    }
    // The node notices its save's end at its pace.
    crate::pace::set(r, [key.clone()], nodes::Pace::Lively).await;
    let before = persistence(r, &key).await?.saves;
    // SCHEDULE: while the node rewrites its append-only file (it does once after it starts),
    // the save waits for the rewrite instead of being refused. An error reply means a save
    // is already running; the wait below covers it.
    let _ = r.runtime.command(&key, &["BGSAVE", "SCHEDULE"]).await.map_err(Error::Node)?;
    let started = Instant::now();
    let saved = loop {
        let now = persistence(r, &key).await?;
        if now.saves > before && !now.saving {
            break now.last_ok;
        }
        if started.elapsed() > SAVE_DEADLINE {
            r.progress.finish(scope, SNAPSHOT, &s.name);
            return Ok(None);
        }
        if now.saving && now.keys_total > 0 {
            r.progress.report(scope, SNAPSHOT, &s.name, now.keys_saved, now.keys_total);
        }
        tokio::time::sleep(SAVE_POLL).await;
    };
    r.progress.finish(scope, SNAPSHOT, &s.name);
    if !saved {
        tracing::warn!(snapshot = s.name, "BGSAVE failed; retrying");
        return Ok(None);
    }
    let source = r.node_dir(scope, &node.cache_cluster_id, &node.node_id).join("dump.rdb");
    let target = r.snapshot_file(scope, &s.name, DataFile::of(&s.engine), &node.node_group_id);
    // Encrypted while it is copied: the plaintext never lands in the snapshot directory.
    transfer(r, &source, &target, s.at_rest_encryption).await.map(Some).map_err(|e| Error::Node(e.into()))
}

/// The items of a serverless Memcached cache, from the mirror that holds the most (a node
/// back from a crash holds fewer until the endpoint writes to it again), written into the
/// snapshot as its one file; None when no node answers.
async fn dump_mirrors(
    r: &Reconciler,
    scope: &Scope,
    s: &SnapshotRecord,
    node: &NodeSnapshotRecord,
) -> Result<Option<u64>, Error> {
    let Some(cluster) = r.store.cache_cluster(scope, &node.cache_cluster_id).await? else { return Ok(None) };
    let mut fullest: Option<(String, Vec<u8>)> = None;
    for mirror in &cluster.nodes {
        let Ok(address) = mirror.address.parse::<std::net::Ipv4Addr>() else { continue };
        let dump = nodes::serverless_memcached::dump(std::net::SocketAddr::from((address, mirror.port))).await;
        match dump {
            Ok(dump) if fullest.as_ref().is_none_or(|(_, f)| f.len() < dump.len()) => {
                fullest = Some((mirror.node_id.clone(), dump));
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(snapshot = s.name, node = mirror.node_id, %error, "no dump from this mirror"),
        }
    }
    let Some((node_id, dump)) = fullest else { return Ok(None) };
    let source = r.node_dir(scope, &node.cache_cluster_id, &node_id).join("dump.memcached");
    tokio::fs::write(&source, &dump).await.map_err(|e| Error::Node(e.into()))?;
    let target = r.snapshot_file(scope, &s.name, DataFile::of(&s.engine), &node.node_group_id);
    let copied = transfer(r, &source, &target, s.at_rest_encryption).await;
    let _ = tokio::fs::remove_file(&source).await;
    copied.map(Some).map_err(|e| Error::Node(e.into()))
}

/// Writes the items of the serverless Memcached snapshot `snapshot` into every node at
/// `mirrors` (a new cache restoring it); returns how many items each took.
pub(crate) async fn load_mirrors(
    r: &Reconciler,
    scope: &Scope,
    snapshot: &str,
    mirrors: &[std::net::SocketAddr],
) -> std::io::Result<usize> {
    let file = r.snapshot_file(scope, snapshot, DataFile::MemcachedDump, model::names::NODE_GROUP_ID);
    let dump = read_plain(r, &file).await?;
    let mut loaded = 0;
    for mirror in mirrors {
        loaded = nodes::serverless_memcached::load(*mirror, &dump).await?;
    }
    Ok(loaded)
}

/// Saves every shard of the snapshot (all at once, the nodes keep serving), then marks it
/// available.
async fn take(r: &Arc<Reconciler>, scope: &Scope, s: &SnapshotRecord) -> Result<Option<Duration>, Error> {
    let saves = futures::future::join_all(s.nodes.iter().map(|node| save_node(r, scope, s, node))).await;
    let mut sizes = Vec::with_capacity(saves.len());
    for save in saves {
        match save? {
            Some(size) => sizes.push(size),
            None => return Ok(Some(crate::RETRY_DELAY)),
        }
    }
    let (source_type, source_id, what) = event_source(s);
    let message = format!("Snapshot succeeded for snapshot with ID '{}' of {what} with ID '{source_id}'", s.name);
    // One write: whoever sees the snapshot available sees its source available too.
    let result = r
        .store
        .write(async |tx| {
            tx.update_snapshot(scope, &s.name, |s| {
                s.status = snapshot_status::AVAILABLE.to_string();
                for (n, size) in s.nodes.iter_mut().zip(&sizes) {
                    n.size_bytes = Some(*size);
                    n.snapshot_millis = Some(now_millis());
                }
                Ok::<_, ()>(vec![EventRecord::new(source_type, &source_id, message.clone())])
            })
            .await?;
            Ok(tx.mark_snapshot_source(scope, s, status::SNAPSHOTTING, status::AVAILABLE).await?)
        })
        .await;
    stored(result)?;
    tracing::info!(snapshot = s.name, bytes = sizes.iter().sum::<u64>(), "snapshot: creating -> available");
    // A final snapshot lets its cluster or group be deleted now.
    Ok(Some(Duration::ZERO))
}

/// Ends a snapshot that keeps failing as `failed`, with an event saying why; its source
/// is available again.
async fn give_up(r: &Reconciler, scope: &Scope, s: &SnapshotRecord, reason: &str) -> Result<Option<Duration>, Error> {
    let (source_type, source_id, what) = event_source(s);
    let message =
        format!("Snapshot failed for snapshot with ID '{}' of {what} with ID '{source_id}': {reason}", s.name);
    tracing::warn!(snapshot = s.name, reason, "snapshot: creating -> failed");
    stored(
        r.store
            .update_snapshot(scope, &s.name, |s| {
                s.status = snapshot_status::FAILED.to_string();
                Ok::<_, ()>(vec![EventRecord::new(source_type, &source_id, message.clone())])
            })
            .await,
    )?;
    r.store.mark_snapshot_source(scope, s, status::SNAPSHOTTING, status::AVAILABLE).await?;
    Ok(None)
}

async fn copy(r: &Arc<Reconciler>, scope: &Scope, s: &SnapshotRecord) -> Result<Option<Duration>, Error> {
    let Some(source) = &s.copy_of else { return Ok(None) };
    for node in &s.nodes {
        let from = r.snapshot_file(scope, source, DataFile::of(&s.engine), &node.node_group_id);
        let to = r.snapshot_file(scope, &s.name, DataFile::of(&s.engine), &node.node_group_id);
        // The copy is encrypted when the source was (or a KmsKeyId asked for it).
        transfer(r, &from, &to, s.at_rest_encryption).await.map_err(|e| Error::Node(e.into()))?;
    }
    let result = r
        .store
        .update_snapshot(scope, &s.name, |s| {
            s.status = snapshot_status::AVAILABLE.to_string();
            Ok::<_, ()>(Vec::new())
        })
        .await;
    stored(result)?;
    Ok(None)
}

/// Writes the snapshot's files as `<name>-<node group>.rdb` into the bucket — on the
/// configured S3 endpoint, or under `<state dir>/exports/<bucket>/` — and says where in an
/// event. An upload the store refuses (no such bucket, no access) ends the export with an
/// event saying why, as AWS reports a failed export.
async fn export(r: &Arc<Reconciler>, scope: &Scope, s: &SnapshotRecord) -> Result<Option<Duration>, Error> {
    let Some((bucket, name)) = s.export_to.as_deref().and_then(|t| t.split_once('/')) else { return Ok(None) };
    let mut written = Vec::new();
    let mut refused = None;
    for node in &s.nodes {
        let file = format!("{name}-{}.rdb", node.node_group_id);
        let from = r.snapshot_file(scope, &s.name, DataFile::of(&s.engine), &node.node_group_id);
        // A usable RDB file, as AWS exports: decrypted when the snapshot is encrypted.
        match &r.s3 {
            Some(s3) => {
                let body = read_plain(r, &from).await.map_err(|e| Error::Node(e.into()))?;
                if let Err(error) = s3.put(bucket, &file, body).await {
                    tracing::warn!(snapshot = s.name, bucket, %error, "export failed");
                    refused = Some(error);
                    break;
                }
                written.push(s3.describe(bucket, &file));
            }
            None => {
                let to = r.export_dir(bucket).join(&file);
                transfer(r, &from, &to, false).await.map_err(|e| Error::Node(e.into()))?;
                written.push(to.display().to_string());
            }
        }
    }
    let (source_type, source_id, _) = event_source(s);
    let message = match &refused {
        None => format!("Snapshot {} exported to bucket {bucket} as {}", s.name, written.join(", ")),
        Some(error) => format!("Snapshot {} could not be exported to bucket {bucket}: {error}", s.name),
    };
    let result = r
        .store
        .update_snapshot(scope, &s.name, |s| {
            s.status = snapshot_status::AVAILABLE.to_string();
            s.export_to = None;
            Ok::<_, ()>(vec![EventRecord::new(source_type, &source_id, message.clone())])
        })
        .await;
    stored(result)?;
    Ok(None)
}

/// Copies a snapshot or RDB file, creating the target's directory: decrypted when `from` is
/// encrypted, encrypted when `encrypt` says so; returns the size of the RDB data. RDB files
/// can be large: the copy runs off the async workers, a chunk at a time.
async fn transfer(r: &Reconciler, from: &Path, to: &Path, encrypt: bool) -> std::io::Result<u64> {
    let (keys, from, to) = (r.secrets.keys.clone(), from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || crate::at_rest::transfer(&keys, &from, &to, encrypt))
        .await
        .map_err(std::io::Error::other)?
}

/// A snapshot or RDB file's RDB data in memory, decrypted when the file is encrypted.
async fn read_plain(r: &Reconciler, from: &Path) -> std::io::Result<Vec<u8>> {
    let (keys, from) = (r.secrets.keys.clone(), from.to_path_buf());
    tokio::task::spawn_blocking(move || crate::at_rest::read_plain(&keys, &from))
        .await
        .map_err(std::io::Error::other)?
}

/// Seeds a new node's directory with the snapshot (or the SnapshotArns file) it restores,
/// so the engine loads it.
pub(crate) async fn seed_node(r: &Reconciler, scope: &Scope, snapshot: &str, node_dir: &Path) -> std::io::Result<()> {
    let target = node_dir.join("dump.rdb");
    if target.exists() {
        return Ok(());
    }
    let source = match snapshot.strip_prefix(model::names::S3_ARN_PREFIX) {
        Some(object) => r.state_dir.join("exports").join(object),
        None => r.snapshot_file(scope, snapshot, DataFile::Rdb, model::names::NODE_GROUP_ID),
    };
    transfer(r, &source, &target, false).await.map(|_| ())
}

/// Whether a final snapshot of this cluster is still being taken (its deletion waits).
pub(crate) async fn final_snapshot_pending(r: &Reconciler, scope: &Scope, cluster_id: &str) -> bool {
    r.store.snapshots(scope).await.is_ok_and(|snapshots| {
        snapshots.iter().any(|s| {
            s.status == snapshot_status::CREATING
                && s.delete_source_after
                && s.nodes.iter().any(|n| n.cache_cluster_id == cluster_id)
        })
    })
}

/// Spreads a snapshot's keys over a cluster-mode group whose slots are assigned: each RDB
/// file (one per shard of the source, or the one SnapshotArns names) is loaded by a
/// throwaway node, and every key goes to the primary that owns its slot (MIGRATE), so a
/// snapshot restores into any number of shards. `nodes`: the group's nodes as they see
/// themselves, with their keys.
pub(crate) async fn seed_cluster(
    r: &Reconciler,
    g: &store::ReplicationGroup,
    snapshot: &str,
    nodes: &[(nodes::cluster::ClusterNode, NodeKey)],
) -> Result<(), Error> {
    let scope = &g.scope;
    let files: Vec<PathBuf> = match snapshot.strip_prefix(model::names::S3_ARN_PREFIX) {
        Some(_) => {
            let arns =
                if g.group.restore_arns.is_empty() { vec![snapshot.to_string()] } else { g.group.restore_arns.clone() };
            arns.iter()
                .filter_map(|arn| arn.strip_prefix(model::names::S3_ARN_PREFIX))
                .map(|object| r.state_dir.join("exports").join(object))
                .collect()
        }
        None => {
            let record = r.store.snapshot(scope, snapshot).await.map_err(Error::Store)?;
            let groups: Vec<String> =
                record.map(|s| s.nodes.into_iter().map(|n| n.node_group_id).collect()).unwrap_or_default();
            groups.iter().map(|ng| r.snapshot_file(scope, snapshot, DataFile::Rdb, ng)).collect()
        }
    };
    let mut owner: Vec<Option<std::net::SocketAddr>> = vec![None; usize::from(nodes::cluster::SLOTS)];
    for (node, _) in nodes.iter().filter(|(n, _)| n.primary) {
        for slot in node.slots.iter().flat_map(|&(a, b)| a..=b) {
            owner[usize::from(slot)] = node.address;
        }
    }
    let started = Instant::now();
    let mut moved = 0usize;
    for (index, file) in files.iter().enumerate() {
        let dir = r
            .state_dir
            .join("nodes")
            .join(&scope.region)
            .join(&scope.account)
            .join("_restore")
            .join(&g.group.id)
            .join(index.to_string());
        let _ = tokio::fs::remove_dir_all(&dir).await;
        transfer(r, file, &dir.join("dump.rdb"), false).await.map_err(|e| Error::Node(e.into()))?;
        // Keyed like the group's reconcile, which is running: never taken for a stray node.
        let key =
            NodeKey::new(scope_key(scope), format!("replication-group/{}", g.group.id), format!("restore-{index}"));
        let spec = nodes::NodeSpec {
            key: key.clone(),
            engine: if g.group.engine == "valkey" { nodes::EngineKind::Valkey } else { nodes::EngineKind::Redis },
            dir: dir.clone(),
            // MIGRATE to TLS-only nodes must speak TLS too.
            tls: match g.group.security.mode() {
                Some(model::status::transit::REQUIRED) => Some(r.certificate_authority().map_err(Error::Node)?),
                _ => None,
            },
            ..Default::default()
        };
        r.runtime.start(spec).await.map_err(Error::Node)?;
        // The keys of the files loaded so far: the next file's are not known before it is.
        let report = |moved_here: usize, in_file: usize| {
            let (done, total) = ((moved + moved_here) as u64, (moved + in_file) as u64);
            r.progress.report(scope, RESTORE, &g.group.id, done, total);
        };
        let result = spread_keys(r, &key, &owner, &report).await;
        let _ = r.runtime.discard(&key).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        if result.is_err() {
            r.progress.finish(scope, RESTORE, &g.group.id);
        }
        moved += result?;
    }
    r.progress.finish(scope, RESTORE, &g.group.id);
    tracing::info!(
        replication_group = g.group.id,
        snapshot,
        keys = moved,
        ms = started.elapsed().as_millis() as u64,
        "restored into the shards"
    );
    Ok(())
}

/// Moves every key of the node `from` to the address owning its slot, telling `progress`
/// the keys moved so far and the keys there were.
async fn spread_keys(
    r: &Reconciler,
    from: &NodeKey,
    owner: &[Option<std::net::SocketAddr>],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<usize, Error> {
    use nodes::resp::Reply;
    let mut session = r.runtime.session(from).await.map_err(Error::Node)?;
    let total = match session.command(&["DBSIZE"]).await.map_err(Error::Node)? {
        Reply::Integer(n) => usize::try_from(n).unwrap_or(0),
        _ => 0,
    };
    let mut moved = 0;
    let mut cursor = "0".to_string();
    loop {
        let reply = session.command(&["SCAN", &cursor, "COUNT", "1000"]).await.map_err(Error::Node)?;
        let (next, keys) = match reply {
            Reply::Array(Some(parts)) if parts.len() == 2 => {
                let next = parts[0].as_text().unwrap_or_else(|| "0".to_string());
                let keys: Vec<Vec<u8>> = match &parts[1] {
                    Reply::Array(Some(keys)) => keys
                        .iter()
                        .filter_map(|k| match k {
                            Reply::Bulk(Some(key)) => Some(key.clone()),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                (next, keys)
            }
            other => return Err(Error::Node(nodes::NodeError::Protocol(format!("SCAN answered {other:?}")))),
        };
        cursor = next;
        let mut by_target: std::collections::HashMap<std::net::SocketAddr, Vec<Vec<u8>>> = Default::default();
        for key in keys {
            let slot = nodes::cluster::key_slot(&key);
            let target = owner[usize::from(slot)].ok_or_else(|| {
                Error::Node(nodes::NodeError::Protocol(format!("slot {slot} has no owner to restore into")))
            })?;
            by_target.entry(target).or_default().push(key);
        }
        for (target, keys) in by_target {
            let mut args: Vec<Vec<u8>> =
                ["MIGRATE", &target.ip().to_string(), &target.port().to_string(), "", "0", "5000", "REPLACE"]
                    .iter()
                    .map(|a| a.as_bytes().to_vec())
                    .collect();
            let (user, password) = r.runtime.control_credentials();
            args.extend([b"AUTH2".to_vec(), user.as_bytes().to_vec(), password.as_bytes().to_vec()]);
            args.push(b"KEYS".to_vec());
            moved += keys.len();
            args.extend(keys);
            session.command(&args).await.map_err(Error::Node)?;
            progress(moved, total.max(moved));
        }
        // A full pass is done; keys a rehash hid from it are caught by another pass.
        if cursor == "0" && session.command(&["DBSIZE"]).await.map_err(Error::Node)? == Reply::Integer(0) {
            return Ok(moved);
        }
    }
}
