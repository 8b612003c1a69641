//! `hold_connections <server addr> <source ip> <count>`: opens `count` connections to the
//! server from `source ip` (any port), sends each the first half of a request's headers, and
//! holds them until its stdin closes. Prints `held <n>` once, `n` being how many connected.
//!
//! The slow-client tests and the bench start several of these, so that 20,000 half-open
//! connections do not count against the file descriptors of the process serving them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTING_AT_ONCE: usize = 64;
const HALF_A_REQUEST: &[u8] = b"POST / HTTP/1.1\r\nHost: elasticache\r\nContent-Type: application/x-www-form";

/// `IP_BIND_ADDRESS_NO_PORT`: without it, binding to port 0 searches for a port free on
/// every address, which slows to a millisecond a socket once thousands are bound.
fn defer_port_choice_to_connect(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` for the length given, on a socket we own.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Connects from `source` and sends half of a request.
async fn half_open(server: SocketAddr, source: IpAddr) -> anyhow::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    defer_port_choice_to_connect(&socket)?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(server)).await??;
    // The server may already have closed an early one to make room; that is its right.
    let _ = stream.write_all(HALF_A_REQUEST).await;
    Ok(stream)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, source, count] = args.as_slice() else {
        anyhow::bail!("usage: hold_connections <server addr> <source ip> <count>");
    };
    let server: SocketAddr = server.parse().context("server address")?;
    let source: IpAddr = source.parse().context("source ip")?;
    let count: usize = count.parse().context("count")?;
    // Many at once: a connect that loses its SYN waits a second for the retry, and a
    // thousand of those in a row would take as many seconds.
    let held: Vec<TcpStream> = futures::stream::iter(0..count)
        .map(|_| half_open(server, source))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .filter_map(|stream| async move { stream.ok() })
        .collect()
        .await;
    println!("held {}", held.len());
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    Ok(())
}
