//! The bridge's side of the replication protocol towards its source: the handshake a
//! replica makes (AUTH, REPLCONF, PSYNC), receiving the RDB payload of a full sync, and the
//! link task that reads the stream afterwards, counts its bytes and acknowledges them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::wire::{self, Conn, Io};
use super::{BridgeSpec, Shared, Stop};
use crate::resp::{self, Reply};

/// Bound on reaching the source.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Silence after which the source counts as gone (redis's default `repl-timeout`); it
/// sends a PING every 10 s even when idle, and newlines while it prepares a full sync.
pub(super) const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How often the bridge acknowledges its offset, as a replica does.
const ACK_INTERVAL: Duration = Duration::from_secs(1);
/// The 40-byte end marker of a diskless RDB transfer.
const EOF_MARK_LEN: usize = 40;

pub(super) type SourceConn = Conn<Box<dyn Io>>;

/// How the source answered PSYNC.
pub(super) enum Sync {
    Full { replid: String, offset: u64 },
    Partial { replid: String },
}

/// What the link task hands the applier, in stream order.
pub(super) enum Event {
    /// One command and the stream offset just past it.
    Frame { args: Vec<Vec<u8>>, end: u64 },
    /// The link is gone, and why; nothing follows.
    Closed(String),
}

/// Connects to the source (through TLS when asked).
pub(super) async fn connect(spec: &BridgeSpec) -> Result<SourceConn, Stop> {
    let refused = |e: std::io::Error| Stop::Retry(format!("connecting to the source {}: {e}", spec.source));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(spec.source))
        .await
        .map_err(|_| Stop::Retry(format!("connecting to the source {}: timed out", spec.source)))?
        .map_err(refused)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = match &spec.source_tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(spec.source.ip().into());
            let handshake = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp);
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                .await
                .map_err(|_| Stop::Retry("TLS handshake with the source timed out".into()))?
                .map_err(|e| Stop::Retry(format!("TLS handshake with the source: {e}")))?;
            Box::new(tls)
        }
    };
    Ok(Conn::new(stream))
}

/// Sends one command during the handshake and reads its reply, bounded.
async fn exchange(conn: &mut SourceConn, args: &[&str]) -> Result<Reply, Stop> {
    let io = |e: std::io::Error| Stop::Retry(format!("source connection: {e}"));
    conn.send(&resp::encode(args)).await.map_err(io)?;
    tokio::time::timeout(SILENCE_LIMIT, conn.value())
        .await
        .map_err(|_| Stop::Retry(format!("the source did not answer {}", args[0])))?
        .map_err(|e| Stop::Retry(format!("source connection: {e}")))
}

/// Expects `+OK`-like answers; an error reply becomes the reason the bridge fails.
async fn expect_ok(conn: &mut SourceConn, args: &[&str]) -> Result<(), Stop> {
    match exchange(conn, args).await? {
        Reply::Error(error) => Err(Stop::Retry(format!("the source refused {}: {error}", args[..2].join(" ")))),
        _ => Ok(()),
    }
}

/// AUTH, REPLCONF and PSYNC: a partial resync from `resume` (replication id, offset
/// applied) when given, else a full one. Also answers which slots the source serves when
/// it is in cluster mode (None otherwise).
pub(super) async fn handshake(
    conn: &mut SourceConn,
    spec: &BridgeSpec,
    resume: Option<(&str, u64)>,
) -> Result<(Sync, Option<Vec<u16>>), Stop> {
    if let Some((user, password)) = &spec.source_auth
        && let Reply::Error(error) = exchange(conn, &["AUTH", user, password]).await?
    {
        return Err(Stop::Retry(format!("the source refused AUTH: {error}")));
    }
    let slots = served_slots(exchange(conn, &["CLUSTER", "NODES"]).await?);
    expect_ok(conn, &["REPLCONF", "listening-port", "0"]).await?;
    expect_ok(conn, &["REPLCONF", "capa", "eof", "capa", "psync2"]).await?;
    let (replid, offset) = match resume {
        Some((replid, applied)) => (replid.to_string(), (applied + 1).to_string()),
        None => ("?".to_string(), "-1".to_string()),
    };
    let sent = conn.send(&resp::encode(&["PSYNC", &replid, &offset])).await;
    sent.map_err(|e| Stop::Retry(format!("source connection: {e}")))?;
    let line = nonempty_line(conn).await?;
    let line = String::from_utf8_lossy(&line).into_owned();
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["+FULLRESYNC", replid, offset] => {
            let offset = offset.parse().map_err(|_| Stop::Retry(format!("bad PSYNC answer {line:?}")))?;
            Ok((Sync::Full { replid: replid.to_string(), offset }, slots))
        }
        ["+CONTINUE", replid] => Ok((Sync::Partial { replid: replid.to_string() }, slots)),
        ["+CONTINUE"] => Ok((Sync::Partial { replid }, slots)),
        _ => Err(Stop::Retry(format!("the source refused PSYNC: {}", line.trim_start_matches(['-', '+'])))),
    }
}

/// The slots a source in cluster mode serves (its primary's, if it is a replica), from its
/// CLUSTER NODES answer; None from a source not in cluster mode (an error answer).
fn served_slots(reply: Reply) -> Option<Vec<u16>> {
    let text = match reply {
        Reply::Error(_) => return None,
        other => other.as_text()?,
    };
    let nodes = crate::cluster::parse_nodes(&text);
    let me = nodes.iter().find(|n| n.myself)?;
    let primary = match (&me.primary_id, me.primary) {
        (Some(id), false) => nodes.iter().find(|n| &n.id == id)?,
        _ => me,
    };
    Some(primary.slots.iter().flat_map(|&(from, to)| from..=to).collect())
}

/// The next line that is not empty: a source preparing a full sync keeps the link alive
/// with bare newlines, before and after its PSYNC answer.
async fn nonempty_line(conn: &mut SourceConn) -> Result<Vec<u8>, Stop> {
    loop {
        let line = tokio::time::timeout(SILENCE_LIMIT, conn.line())
            .await
            .map_err(|_| Stop::Retry("the source went silent during the handshake".into()))?
            .map_err(|e| Stop::Retry(format!("source connection: {e}")))?;
        if !line.is_empty() {
            return Ok(line);
        }
    }
}

/// Receives the RDB payload of a full sync into `path`, in either form: `$<length>` or the
/// diskless `$EOF:<40-byte mark>`, which ends with the mark. Returns its size.
pub(super) async fn receive_rdb(conn: &mut SourceConn, path: &std::path::Path) -> Result<u64, Stop> {
    let header = nonempty_line(conn).await?;
    let header = header
        .strip_prefix(b"$")
        .ok_or_else(|| Stop::Retry(format!("expected an RDB payload, got {:?}", String::from_utf8_lossy(&header))))?;
    let disk = |e: std::io::Error| Stop::Retry(format!("writing {}: {e}", path.display()));
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(path).await.map_err(disk)?);
    let written = match header.strip_prefix(b"EOF:") {
        Some(mark) if mark.len() == EOF_MARK_LEN => receive_until_mark(conn, &mut file, mark).await?,
        Some(_) => return Err(Stop::Retry("bad EOF mark in the RDB header".into())),
        None => {
            let len = std::str::from_utf8(header).ok().and_then(|s| s.parse::<u64>().ok());
            let len = len.ok_or_else(|| Stop::Retry("bad RDB payload length".into()))?;
            receive_exact(conn, &mut file, len).await?
        }
    };
    file.flush().await.map_err(disk)?;
    file.into_inner().sync_all().await.map_err(disk)?;
    Ok(written)
}

async fn read_payload(conn: &mut SourceConn) -> Result<(), Stop> {
    match tokio::time::timeout(SILENCE_LIMIT, conn.read_more()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Stop::Retry(format!("source connection during the RDB transfer: {e}"))),
        Err(_) => Err(Stop::Retry("the source went silent during the RDB transfer".into())),
    }
}

async fn receive_exact(
    conn: &mut SourceConn,
    file: &mut tokio::io::BufWriter<tokio::fs::File>,
    len: u64,
) -> Result<u64, Stop> {
    let mut left = len;
    while left > 0 {
        if conn.buffered().is_empty() {
            read_payload(conn).await?;
        }
        let n = conn.buffered().len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.write_all(&conn.buffered()[..n]).await.map_err(|e| Stop::Retry(format!("writing the RDB: {e}")))?;
        conn.consume(n);
        left -= n as u64;
    }
    Ok(len)
}

/// Copies bytes to `file` until what was received ends with `mark`, holding back the
/// last 40 bytes (they may be the mark). Nothing follows the mark until the bridge
/// acknowledges, so the end of what was read is the end of the payload.
async fn receive_until_mark(
    conn: &mut SourceConn,
    file: &mut tokio::io::BufWriter<tokio::fs::File>,
    mark: &[u8],
) -> Result<u64, Stop> {
    let mut tail: Vec<u8> = Vec::with_capacity(EOF_MARK_LEN * 2);
    let mut written = 0u64;
    loop {
        // The header's read may have brought the whole payload already.
        if conn.buffered().is_empty() {
            read_payload(conn).await?;
        }
        let chunk = conn.buffered();
        let n = chunk.len();
        if chunk.len() >= EOF_MARK_LEN {
            // Everything before the last 40 bytes of (tail + chunk) is payload.
            file.write_all(&tail).await.map_err(|e| Stop::Retry(format!("writing the RDB: {e}")))?;
            written += tail.len() as u64;
            let keep = chunk.len() - EOF_MARK_LEN;
            file.write_all(&chunk[..keep]).await.map_err(|e| Stop::Retry(format!("writing the RDB: {e}")))?;
            written += keep as u64;
            tail.clear();
            tail.extend_from_slice(&chunk[keep..]);
        } else {
            tail.extend_from_slice(chunk);
            let spill = tail.len().saturating_sub(EOF_MARK_LEN);
            file.write_all(&tail[..spill]).await.map_err(|e| Stop::Retry(format!("writing the RDB: {e}")))?;
            written += spill as u64;
            tail.drain(..spill);
        }
        conn.consume(n);
        if tail == mark {
            return Ok(written);
        }
    }
}

/// `REPLCONF ACK <offset>`.
pub(super) fn ack(offset: u64) -> Vec<u8> {
    resp::encode(&["REPLCONF", "ACK", &offset.to_string()])
}

/// Reads the stream from `conn`, whose next byte is at `offset` + 1, and hands each command
/// to the returned receiver; acknowledges the applied offset every second and whenever
/// the applier asks (`Shared::ack_now`). Ends when the receiver is dropped or the link
/// fails; the task is aborted when the returned handle is dropped.
pub(super) fn spawn_link(
    conn: SourceConn,
    offset: u64,
    shared: Arc<Shared>,
) -> (super::AbortOnDrop, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let reason = link(conn, offset, &shared, &tx).await;
        shared.link_lost();
        let _ = tx.send(Event::Closed(reason));
    });
    (super::AbortOnDrop(task), rx)
}

async fn link(mut conn: SourceConn, mut offset: u64, shared: &Shared, tx: &mpsc::UnboundedSender<Event>) -> String {
    let mut tick = tokio::time::interval(ACK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        match drain_frames(&mut conn, &mut offset, tx) {
            Ok(true) => {}
            Ok(false) => return "the bridge stopped reading".into(),
            Err(error) => return format!("bad replication stream: {error}"),
        }
        shared.heard(offset);
        let ack = tokio::select! {
            read = conn.read_more() => match read {
                Ok(_) => { heard = Instant::now(); false }
                Err(error) => return format!("source connection lost: {error}"),
            },
            _ = tick.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    return format!("nothing from the source for {}s", SILENCE_LIMIT.as_secs());
                }
                true
            }
            () = shared.ack_now.notified() => true,
        };
        if ack && let Err(error) = conn.send(&self::ack(shared.applied())).await {
            return format!("source connection lost: {error}");
        }
    }
}

/// Hands every whole command in the buffer on; false once nobody listens.
fn drain_frames(
    conn: &mut SourceConn,
    offset: &mut u64,
    tx: &mpsc::UnboundedSender<Event>,
) -> Result<bool, crate::NodeError> {
    loop {
        // Bare newlines are keepalives; a replica counts them as it counts every byte.
        let blanks = conn.buffered().iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
        conn.consume(blanks);
        *offset += blanks as u64;
        let Some((value, n)) = conn.try_value()? else { return Ok(true) };
        *offset += n as u64;
        let args = wire::into_args(value)
            .filter(|args| !args.is_empty())
            .ok_or_else(|| crate::NodeError::Protocol("a stream entry that is no command".into()))?;
        if tx.send(Event::Frame { args, end: *offset }).is_err() {
            return Ok(false);
        }
    }
}

/// The source's `master_repl_offset`, asked over a connection of its own.
pub(super) async fn master_offset(spec: &BridgeSpec) -> Result<u64, Stop> {
    let ask = async {
        let mut conn = connect(spec).await?;
        if let Some((user, password)) = &spec.source_auth
            && let Reply::Error(error) = exchange(&mut conn, &["AUTH", user, password]).await?
        {
            return Err(Stop::Retry(error));
        }
        let text = exchange(&mut conn, &["INFO", "replication"]).await?.as_text().unwrap_or_default();
        resp::info_field(&text, "master_repl_offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Stop::Retry("INFO replication without master_repl_offset".into()))
    };
    tokio::time::timeout(Duration::from_secs(2), ask).await.map_err(|_| Stop::Retry("INFO timed out".into()))?
}
