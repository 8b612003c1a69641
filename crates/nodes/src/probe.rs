//! Readiness and health checks over the engines' own protocols: redis `PING` → `+PONG`,
//! memcached `version` → `VERSION ...`. Redis-like nodes are checked through their unix
//! socket (their TCP port may speak TLS only), memcached over TCP (through TLS when the node
//! speaks only that). [`check`] opens a fresh connection, which proves the listener itself
//! accepts (readiness); the health monitor keeps one per node instead, so that a thousand
//! nodes cost a request each, not a connection each: redis-like nodes are checked together
//! in a [`sweep`], memcached nodes one by one ([`HeldCheck`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use crate::resp::{self, Reply};
use crate::{EngineKind, NodeError};

/// Why a check did not pass.
#[derive(Debug)]
pub enum ProbeFailure {
    /// Nothing accepted the connection (not listening yet, or gone).
    Refused(std::io::Error),
    /// Connected, but the answer was missing or wrong (e.g. `-LOADING`).
    BadReply(String),
}

/// Where a node is checked: redis-like nodes through their unix `socket`, memcached at
/// `address:port` (through TLS with `tls`).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub engine: EngineKind,
    pub address: Ipv4Addr,
    pub port: u16,
    pub socket: &'a Path,
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
}

/// Any connection a check runs over.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}
type Held = BufReader<Box<dyn Connection>>;

async fn connect(target: Target<'_>) -> Result<Held, ProbeFailure> {
    if target.engine.is_redis_like() {
        let stream = UnixStream::connect(target.socket).await.map_err(ProbeFailure::Refused)?;
        return Ok(BufReader::new(Box::new(stream)));
    }
    let stream =
        TcpStream::connect(SocketAddr::from((target.address, target.port))).await.map_err(ProbeFailure::Refused)?;
    // Probes are one small request each: don't let Nagle hold it back.
    let _ = stream.set_nodelay(true);
    match target.tls {
        None => Ok(BufReader::new(Box::new(stream))),
        Some(config) => {
            let stream = crate::tls::connect(config, target.address, stream)
                .await
                .map_err(|e| ProbeFailure::BadReply(format!("TLS: {e}")))?;
            Ok(BufReader::new(Box::new(stream)))
        }
    }
}

/// One check over a fresh connection, which proves the listener itself accepts. Time
/// limits are the caller's job.
pub async fn check(target: Target<'_>) -> Result<(), ProbeFailure> {
    check_on(target.engine, &mut connect(target).await?).await
}

/// A node's check over a connection kept from one check to the next; a failed or timed-out
/// check drops it (its reply may still come), the next one connects again.
#[derive(Default)]
pub struct HeldCheck(tokio::sync::Mutex<Option<Held>>);

impl HeldCheck {
    pub async fn check(&self, target: Target<'_>, timeout: std::time::Duration) -> Result<(), ProbeFailure> {
        let mut held = self.0.lock().await;
        let exchange = async {
            let stream = match held.take() {
                Some(stream) => stream,
                None => connect(target).await?,
            };
            check_on(target.engine, held.insert(stream)).await
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(ProbeFailure::BadReply("timed out".to_string())));
        if result.is_err() {
            *held = None;
        }
        result
    }
}

/// A redis-like node's connection for [`sweep`], kept from one sweep to the next.
#[derive(Default)]
pub(crate) struct SweptConnection(std::sync::Mutex<Option<std::os::unix::net::UnixStream>>);

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
/// The first wait for answers not in yet; it doubles up to [`SWEEP_LONGEST_WAIT`].
const SWEEP_FIRST_WAIT: std::time::Duration = std::time::Duration::from_micros(500);
const SWEEP_LONGEST_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Checks redis-like nodes all at once, on the calling thread (a blocking one): a `PING`
/// to each through its unix socket (over the connection kept in its [`SweptConnection`]),
/// then the answers read without blocking, again after short waits, until all are in or
/// `timeout` has passed. The sockets are not the async runtime's, so each answer does not
/// wake it: a sweep of hundreds of nodes wakes its thread a few times. Answers, in the
/// order of `nodes`, whether each answered `PONG` (or `NOAUTH`: it answers). A connection
/// whose answer is missing or wrong is dropped, so that a late answer is never read as
/// the next sweep's.
pub(crate) fn sweep(nodes: &[(&SweptConnection, &Path)], timeout: std::time::Duration) -> Vec<bool> {
    use std::io::{ErrorKind, Read, Write};
    use std::os::unix::net::UnixStream as StdUnixStream;

    let deadline = std::time::Instant::now() + timeout;
    let send = |(held, socket): &(&SweptConnection, &Path)| -> Option<StdUnixStream> {
        let kept = held.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut stream = match kept {
            Some(stream) => stream,
            None => StdUnixStream::connect(socket).ok()?,
        };
        stream.set_nonblocking(true).ok()?;
        stream.write_all(PING).ok()?;
        Some(stream)
    };
    let mut streams: Vec<Option<StdUnixStream>> = nodes.iter().map(send).collect();
    let mut replies = vec![Vec::new(); nodes.len()];
    let mut wait = SWEEP_FIRST_WAIT;
    loop {
        let mut waiting = false;
        for (i, slot) in streams.iter_mut().enumerate() {
            let Some(stream) = slot.as_mut() else { continue };
            if replies[i].ends_with(b"\r\n") {
                continue;
            }
            let mut chunk = [0u8; 64];
            match stream.read(&mut chunk) {
                Ok(0) => *slot = None,
                Ok(n) => {
                    replies[i].extend_from_slice(&chunk[..n]);
                    waiting |= !replies[i].ends_with(b"\r\n");
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => waiting = true,
                Err(_) => *slot = None,
            }
        }
        let now = std::time::Instant::now();
        if !waiting || now >= deadline {
            break;
        }
        std::thread::sleep(wait.min(deadline - now));
        wait = (wait * 2).min(SWEEP_LONGEST_WAIT);
    }
    let answers = nodes.iter().zip(streams).zip(replies);
    answers
        .map(|(((held, _), stream), reply)| {
            let passed = reply.ends_with(b"\r\n") && (reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"));
            if passed {
                *held.0.lock().unwrap_or_else(|e| e.into_inner()) = stream;
            }
            passed
        })
        .collect()
}

async fn check_on<S>(engine: EngineKind, stream: &mut BufReader<S>) -> Result<(), ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if engine.is_redis_like() {
        match resp::command(stream, &["PING"]).await {
            Ok(Reply::Simple(pong)) if pong == "PONG" => Ok(()),
            // A password-protected node still answers; that is all health means here.
            Ok(Reply::Error(e)) if e.starts_with("NOAUTH") => Ok(()),
            Ok(other) => Err(ProbeFailure::BadReply(format!("{other:?}"))),
            Err(e) => Err(ProbeFailure::BadReply(e.to_string())),
        }
    } else {
        match memcached_exchange(stream, "version").await {
            Ok(line) if line.starts_with("VERSION ") => Ok(()),
            Ok(line) => Err(ProbeFailure::BadReply(line)),
            Err(e) => Err(ProbeFailure::BadReply(e.to_string())),
        }
    }
}

/// Sends one memcached command line and reads its one-line answer.
async fn memcached_exchange<S>(stream: &mut BufReader<S>, command: &str) -> std::io::Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    stream.write_all(format!("{command}\r\n").as_bytes()).await?;
    stream.flush().await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    Ok(line)
}

/// One memcached command with a one-line answer (`cache_memlimit`, say) on the node at
/// `address:port`, through TLS with `tls`. Time limits are the caller's job.
pub(crate) async fn memcached_command(
    address: Ipv4Addr,
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    command: &str,
) -> Result<String, NodeError> {
    let stream = TcpStream::connect(SocketAddr::from((address, port))).await?;
    let line = match tls {
        None => memcached_exchange(&mut BufReader::new(stream), command).await?,
        Some(config) => {
            let stream = crate::tls::connect(config, address, stream).await?;
            memcached_exchange(&mut BufReader::new(stream), command).await?
        }
    };
    Ok(line.trim_end().to_string())
}

/// A RESP connection to a redis-like node through its unix socket, authenticated when the
/// node has a password.
pub(crate) async fn redis_session(
    socket: &Path,
    (user, password): (&str, &str),
) -> Result<BufReader<UnixStream>, NodeError> {
    let stream = UnixStream::connect(socket).await?;
    let mut stream = BufReader::new(stream);
    match resp::command(&mut stream, &["AUTH", user, password]).await? {
        Reply::Simple(_) => {}
        // The reply names no secret, but keep it short: it ends up in logs.
        other => return Err(NodeError::Protocol(format!("AUTH refused: {other:?}"))),
    }
    Ok(stream)
}
