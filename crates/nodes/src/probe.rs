//! Readiness and health checks over the engines' own protocols: redis `PING` → `+PONG`,
//! memcached `version` → `VERSION ...`. A fresh TCP connection per check: on loopback it
//! costs tens of microseconds, and it proves the listener itself still accepts.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

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

/// One check of the node at `address:port`. Time limits are the caller's job.
pub async fn check(engine: EngineKind, address: Ipv4Addr, port: u16) -> Result<(), ProbeFailure> {
    let stream = TcpStream::connect(SocketAddr::from((address, port))).await.map_err(ProbeFailure::Refused)?;
    // Probes are one small request each: don't let Nagle hold it back.
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    if engine.is_redis_like() {
        match resp::command(&mut stream, &["PING"]).await {
            Ok(Reply::Simple(pong)) if pong == "PONG" => Ok(()),
            // A password-protected node still answers; that is all health means here.
            Ok(Reply::Error(e)) if e.starts_with("NOAUTH") => Ok(()),
            Ok(other) => Err(ProbeFailure::BadReply(format!("{other:?}"))),
            Err(e) => Err(ProbeFailure::BadReply(e.to_string())),
        }
    } else {
        let mut line = String::new();
        let result = async {
            stream.write_all(b"version\r\n").await?;
            stream.flush().await?;
            stream.read_line(&mut line).await
        }
        .await;
        match result {
            Ok(_) if line.starts_with("VERSION ") => Ok(()),
            Ok(_) => Err(ProbeFailure::BadReply(line)),
            Err(e) => Err(ProbeFailure::BadReply(e.to_string())),
        }
    }
}

/// A RESP connection to a redis-like node, authenticated when the node has a password.
pub(crate) async fn redis_session(
    address: Ipv4Addr,
    port: u16,
    password: Option<&str>,
) -> Result<BufReader<TcpStream>, NodeError> {
    let stream = TcpStream::connect(SocketAddr::from((address, port))).await?;
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    if let Some(password) = password {
        match resp::command(&mut stream, &["AUTH", password]).await? {
            Reply::Simple(_) => {}
            other => return Err(NodeError::Protocol(format!("AUTH failed: {other:?}"))),
        }
    }
    Ok(stream)
}
