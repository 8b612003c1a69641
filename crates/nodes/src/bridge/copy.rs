//! A full sync's copy: the source's RDB file is loaded by a scratch node (plain, no TCP
//! port), and every key goes from there to the target primary owning its slot as
//! `RESTORE key ttl payload REPLACE`, after the targets were emptied. A cluster cannot load
//! an RDB file of keys from every slot, and DUMP payloads are the one format every engine
//! version of the family restores whatever the key's type.

use std::path::Path;

use tokio::net::UnixStream;

use super::target::{Targets, Unit};
use super::wire::Conn;
use super::{BridgeSpec, Stop};
use crate::resp::{self, Reply};
use crate::supervisor::WeakRuntime;
use crate::{NodeKey, NodeSpec};

/// Keys per SCAN, and so per pipeline of DUMP/PTTL and of RESTORE.
const SCAN_COUNT: &str = "1000";
/// Bound on one pipeline to the scratch node (DUMPs of a batch of big keys included).
const SCRATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The scratch node of bridge `id`, under a scope no cache uses (no `/`).
pub(super) fn scratch_key(id: &str) -> NodeKey {
    NodeKey::new("bridge", id, "scratch")
}

/// Empties the targets and copies into them every key of the RDB file in the scratch
/// directory. Returns the number of keys copied. The scratch node is stopped, whatever
/// happens; the caller removes the directory.
pub(super) async fn copy(
    runtime: &WeakRuntime,
    id: &str,
    spec: &BridgeSpec,
    targets: &mut Targets,
) -> Result<u64, Stop> {
    let key = scratch_key(id);
    let scratch = NodeSpec {
        key: key.clone(),
        engine: spec.engine,
        dir: spec.scratch_dir.clone(),
        // No TCP port: the runtime reaches it through its unix socket.
        directives: vec![("port".into(), "0".into())],
        ..NodeSpec::default()
    };
    let started = std::time::Instant::now();
    let session = {
        let runtime = upgrade(runtime)?;
        runtime.start(scratch).await.map_err(|e| Stop::Resync(format!("starting the scratch node: {e}")))?;
        // The runtime turns the AOF on for every node it starts; this one's data is thrown
        // away after the copy, so spare it the rewrite.
        let _ = runtime.command(&key, &["CONFIG", "SET", "appendonly", "no"]).await;
        runtime.session(&key).await
    };
    tracing::debug!(bridge = id, took = ?started.elapsed(), "bridge scratch node loaded the RDB file");
    // No hold on the runtime while copying: dropping it must end the bridge at once.
    let copied = match session {
        Ok(session) => copy_from(Conn::new(session.into_stream()), targets).await,
        Err(error) => Err(Stop::Resync(format!("scratch node: {error}"))),
    };
    if let Ok(runtime) = upgrade(runtime)
        && let Err(error) = runtime.stop(&key).await
    {
        tracing::warn!(bridge = id, %error, "stopping the scratch node failed");
    }
    copied
}

fn upgrade(runtime: &WeakRuntime) -> Result<crate::Runtime, Stop> {
    runtime.upgrade().ok_or_else(|| Stop::Retry("the runtime is shutting down".into()))
}

async fn copy_from(mut scratch: Conn<UnixStream>, targets: &mut Targets) -> Result<u64, Stop> {
    let databases = databases(&mut scratch).await?;
    targets.empty().await.map_err(Stop::into_resync)?;
    let mut copied = 0;
    for &db in &databases {
        if db != 0 && targets.is_cluster() {
            return Err(Stop::Retry(format!("source uses database {db}; the target has only database 0")));
        }
        if targets.db() != db {
            exchange(&mut scratch, &resp::encode(&["SELECT", &db.to_string()]), 1).await?;
            targets.execute(vec![Unit::Select(db)]).await.map_err(Stop::into_resync)?;
        }
        copied += copy_database(&mut scratch, targets).await?;
    }
    if targets.db() != 0 {
        targets.execute(vec![Unit::Select(0)]).await.map_err(Stop::into_resync)?;
    }
    Ok(copied)
}

/// The databases holding keys, from `INFO keyspace` (`db3:keys=1,...`).
async fn databases(scratch: &mut Conn<UnixStream>) -> Result<Vec<u32>, Stop> {
    let replies = exchange(scratch, &resp::encode(&["INFO", "keyspace"]), 1).await?;
    let text = replies.first().and_then(Reply::as_text).unwrap_or_default();
    Ok(text.lines().filter_map(|line| line.strip_prefix("db")?.split_once(':')?.0.parse().ok()).collect())
}

/// Copies one database, reading the next batch from the scratch node while the last one
/// is restored: the two sides are different processes, so they work at once.
async fn copy_database(scratch: &mut Conn<UnixStream>, targets: &mut Targets) -> Result<u64, Stop> {
    let mut cursor = Some(b"0".to_vec());
    let mut ready: Vec<Unit> = Vec::new();
    let mut copied = 0;
    while cursor.is_some() || !ready.is_empty() {
        let fetch = async {
            match &cursor {
                Some(cursor) => fetch(scratch, cursor).await.map(Some),
                None => Ok(None),
            }
        };
        let (fetched, restored) = tokio::join!(fetch, restore(targets, std::mem::take(&mut ready)));
        copied += restored?;
        if let Some((next, units)) = fetched? {
            cursor = (next != b"0").then_some(next);
            ready = units;
        }
    }
    Ok(copied)
}

/// One SCAN step from `cursor`: the next cursor, and a RESTORE for each key found, from
/// its DUMP and PTTL (one pipeline for all the keys).
async fn fetch(scratch: &mut Conn<UnixStream>, cursor: &[u8]) -> Result<(Vec<u8>, Vec<Unit>), Stop> {
    let scan = resp::encode(&[b"SCAN".as_slice(), cursor, b"COUNT", SCAN_COUNT.as_bytes()]);
    let reply = exchange(scratch, &scan, 1).await?.pop();
    let Some(Reply::Array(Some(mut parts))) = reply else {
        return Err(Stop::Resync(format!("the scratch node answered SCAN with {reply:?}")));
    };
    let keys = match parts.pop() {
        Some(Reply::Array(Some(keys))) => keys,
        other => return Err(Stop::Resync(format!("SCAN without keys: {other:?}"))),
    };
    let next = match parts.pop() {
        Some(Reply::Bulk(Some(cursor))) => cursor,
        other => return Err(Stop::Resync(format!("SCAN without a cursor: {other:?}"))),
    };
    let keys: Vec<Vec<u8>> =
        keys.into_iter().filter_map(|k| if let Reply::Bulk(Some(k)) = k { Some(k) } else { None }).collect();
    if keys.is_empty() {
        return Ok((next, Vec::new()));
    }
    let mut request = Vec::new();
    for key in &keys {
        request.extend(resp::encode(&[b"DUMP".as_slice(), key]));
        request.extend(resp::encode(&[b"PTTL".as_slice(), key]));
    }
    let mut replies = exchange(scratch, &request, keys.len() * 2).await?.into_iter();
    let mut restores = Vec::with_capacity(keys.len());
    for key in keys {
        let (Some(dump), Some(ttl)) = (replies.next(), replies.next()) else { break };
        // A key that expired meanwhile answers nil and -2.
        let (Reply::Bulk(Some(payload)), Reply::Integer(ttl)) = (dump, ttl) else { continue };
        let ttl = match ttl {
            -2 => continue,
            ..0 => 0,
            // 0 would mean "no expiry" to RESTORE.
            ttl => ttl.max(1),
        };
        let restore = vec![b"RESTORE".to_vec(), key, ttl.to_string().into_bytes(), payload, b"REPLACE".to_vec()];
        restores.push(Unit::Command(restore));
    }
    Ok((next, restores))
}

/// Runs the RESTOREs of one batch (one pipeline per target node); any refusal fails the copy.
async fn restore(targets: &mut Targets, restores: Vec<Unit>) -> Result<u64, Stop> {
    if restores.is_empty() {
        return Ok(0);
    }
    let count = restores.len() as u64;
    let refused = targets.execute(restores).await.map_err(Stop::into_resync)?;
    match refused.first() {
        Some(error) => Err(Stop::Resync(format!("copying keys: {error}"))),
        None => Ok(count),
    }
}

/// Sends `request` to the scratch node and reads `replies` replies.
async fn exchange(scratch: &mut Conn<UnixStream>, request: &[u8], replies: usize) -> Result<Vec<Reply>, Stop> {
    let failed = |e: String| Stop::Resync(format!("scratch node: {e}"));
    let run = async {
        scratch.send(request).await.map_err(|e| failed(e.to_string()))?;
        let mut out = Vec::with_capacity(replies);
        for _ in 0..replies {
            out.push(scratch.value().await.map_err(|e| failed(e.to_string()))?);
        }
        Ok(out)
    };
    tokio::time::timeout(SCRATCH_TIMEOUT, run).await.map_err(|_| failed("no answer".into()))?
}

/// Empties the scratch directory for a new RDB file (nothing of an earlier node may stay:
/// its append-only file would be loaded instead).
pub(super) async fn prepare_dir(dir: &Path) -> Result<(), Stop> {
    let failed = |e: std::io::Error| Stop::Retry(format!("scratch directory {}: {e}", dir.display()));
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    tokio::fs::create_dir_all(dir).await.map_err(failed)
}
