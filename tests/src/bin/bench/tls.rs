//! Transit encryption figure: a new connection through a replication group's primary
//! endpoint up to the answer of its first command (`PING`), with TLS (TCP connect, TLS
//! handshake verifying the emulator's CA, then PING; mode `required`, so TLS runs end to
//! end to the node) and in plaintext (TCP connect, then PING), median over CONNECTIONS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::TransitEncryptionMode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{median, ms};

const CONNECTIONS: usize = 200;
const DEADLINE: Duration = Duration::from_secs(60);

pub async fn create(client: &Client, id: &str, nodes: i32, tls: bool) -> anyhow::Result<()> {
    let mut request = client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("bench")
        .num_cache_clusters(nodes)
        .cache_node_type("cache.t3.micro");
    if tls {
        request = request.transit_encryption_enabled(true).transit_encryption_mode(TransitEncryptionMode::Required);
    }
    request.send().await.context("CreateReplicationGroup")?;
    Ok(())
}

pub async fn primary_endpoint(client: &Client, id: &str) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let described = client.describe_replication_groups().replication_group_id(id).send().await?;
        let group = described.replication_groups().first().context("described")?;
        if group.status() == Some("available")
            && let Some(endpoint) = group.node_groups().first().and_then(|g| g.primary_endpoint())
        {
            return Ok(format!("127.0.0.1:{}", endpoint.port().unwrap_or_default()).parse()?);
        }
        if Instant::now() > deadline {
            bail!("{id} not available in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> anyhow::Result<()> {
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await?;
    anyhow::ensure!(&reply == b"+PONG\r\n", "unexpected reply {:?}", String::from_utf8_lossy(&reply));
    Ok(())
}

async fn plaintext(endpoint: SocketAddr) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(endpoint).await?;
    stream.set_nodelay(true)?;
    ping(&mut stream).await?;
    Ok(started.elapsed())
}

pub async fn tls(endpoint: SocketAddr, connector: &tokio_rustls::TlsConnector) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect(endpoint).await?;
    stream.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let mut stream = connector.connect(name, stream).await?;
    ping(&mut stream).await?;
    Ok(started.elapsed())
}

/// A TLS connector trusting the emulator's CA (from its admin API at `admin`).
pub async fn connector(admin: SocketAddr) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (status, ca) = e2e::raw_get(admin, "/_emulator/ca.pem").await?;
    anyhow::ensure!(status == 200, "GET /_emulator/ca.pem answered {status}");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

pub async fn run(client: &Client, admin: SocketAddr) -> anyhow::Result<()> {
    let connector = connector(admin).await?;
    create(client, "bench-plain", 1, false).await?;
    create(client, "bench-tls", 1, true).await?;
    let plain_endpoint = primary_endpoint(client, "bench-plain").await?;
    let tls_endpoint = primary_endpoint(client, "bench-tls").await?;
    let (mut plain, mut encrypted) = (Vec::new(), Vec::new());
    // Interleaved, so both see the same machine load.
    for _ in 0..CONNECTIONS {
        plain.push(plaintext(plain_endpoint).await?);
        encrypted.push(tls(tls_endpoint, &connector).await?);
    }
    println!(
        "new connection through the primary endpoint -> first command answered: TLS (handshake + PING) median {:.2} ms, plaintext (PING) median {:.2} ms ({CONNECTIONS} connections each)",
        ms(median(&mut encrypted)),
        ms(median(&mut plain)),
    );
    for id in ["bench-plain", "bench-tls"] {
        client.delete_replication_group().replication_group_id(id).send().await?;
    }
    Ok(())
}
