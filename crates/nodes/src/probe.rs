//! Readiness and health checks over the engines' own protocols: redis `PING` → `+PONG`,
//! memcached `version` → `VERSION ...`. A fresh connection per check: on loopback it costs
//! tens of microseconds, and it proves the listener itself still accepts. Redis-like nodes
//! are checked through their unix socket (their TCP port may speak TLS only), memcached
//! over TCP (through TLS when the node speaks only that).

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

/// One check of the node at `address:port` (through TLS with `tls`), or of a redis node
/// through its unix `socket`. Time limits are the caller's job.
pub async fn check(
    engine: EngineKind,
    address: Ipv4Addr,
    port: u16,
    socket: &Path,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), ProbeFailure> {
    if engine.is_redis_like() {
        let stream = UnixStream::connect(socket).await.map_err(ProbeFailure::Refused)?;
        return check_stream(engine, BufReader::new(stream)).await;
    }
    let stream = TcpStream::connect(SocketAddr::from((address, port))).await.map_err(ProbeFailure::Refused)?;
    // Probes are one small request each: don't let Nagle hold it back.
    let _ = stream.set_nodelay(true);
    match tls {
        None => check_stream(engine, BufReader::new(stream)).await,
        Some(config) => {
            let stream = crate::tls::connect(config, address, stream)
                .await
                .map_err(|e| ProbeFailure::BadReply(format!("TLS: {e}")))?;
            check_stream(engine, BufReader::new(stream)).await
        }
    }
}

async fn check_stream<S>(engine: EngineKind, mut stream: BufReader<S>) -> Result<(), ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if engine.is_redis_like() {
        match resp::command(&mut stream, &["PING"]).await {
            Ok(Reply::Simple(pong)) if pong == "PONG" => Ok(()),
            // A password-protected node still answers; that is all health means here.
            Ok(Reply::Error(e)) if e.starts_with("NOAUTH") => Ok(()),
            Ok(other) => Err(ProbeFailure::BadReply(format!("{other:?}"))),
            Err(e) => Err(ProbeFailure::BadReply(e.to_string())),
        }
    } else {
        match memcached_exchange(&mut stream, "version").await {
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
