//! Connections with transit encryption and AUTH tokens, as applications make them: the
//! `redis` crate over rustls, verifying the emulator's CA (`GET /_emulator/ca.pem`) or not.

use std::time::Duration;

use anyhow::Context;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo, TlsCertificates};

use crate::TestServer;

/// rustls needs one process-wide crypto provider; the emulator's is ring.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The emulator's CA certificate (PEM), from the admin API.
pub async fn ca_pem(server: &TestServer) -> anyhow::Result<Vec<u8>> {
    let (status, body) = crate::raw_get(server.addr(), "/_emulator/ca.pem").await?;
    anyhow::ensure!(status == 200, "GET /_emulator/ca.pem answered {status}: {body}");
    Ok(body.into_bytes())
}

/// How a connection reaches the node or endpoint.
#[derive(Clone, Copy, Debug)]
pub enum Transport<'a> {
    Plain,
    /// TLS, verifying the certificate against this CA (PEM) and the address.
    Verified(&'a [u8]),
    /// TLS without any verification.
    Insecure,
}

fn info(port: u16, transport: Transport, user: Option<&str>, password: Option<&str>) -> ConnectionInfo {
    let host = "127.0.0.1".to_string();
    let addr = match transport {
        Transport::Plain => ConnectionAddr::Tcp(host, port),
        Transport::Verified(_) => ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None },
        Transport::Insecure => ConnectionAddr::TcpTls { host, port, insecure: true, tls_params: None },
    };
    let redis = RedisConnectionInfo {
        username: user.map(str::to_string),
        password: password.map(str::to_string),
        ..Default::default()
    };
    ConnectionInfo { addr, redis }
}

/// One multiplexed connection to `127.0.0.1:port`, authenticated when `password` is given.
pub async fn connect(
    port: u16,
    transport: Transport<'_>,
    password: Option<&str>,
) -> anyhow::Result<MultiplexedConnection> {
    connect_as(port, transport, None, password).await
}

/// Like [`connect`], as the ACL user `user` (RBAC) when one is given.
pub async fn connect_as(
    port: u16,
    transport: Transport<'_>,
    user: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<MultiplexedConnection> {
    let info = info(port, transport, user, password);
    let client = match transport {
        Transport::Verified(ca) => {
            redis::Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) })?
        }
        _ => redis::Client::open(info)?,
    };
    let connect = client.get_multiplexed_async_connection();
    let connection = tokio::time::timeout(Duration::from_secs(5), connect).await.context("connect timed out")??;
    Ok(connection)
}

/// A cluster client bootstrapped from the configuration endpoint on `port`, over TLS
/// verified against `ca`, with `password`.
pub async fn cluster_connection(port: u16, ca: &[u8], password: &str) -> anyhow::Result<ClusterConnection> {
    cluster_connection_as(port, ca, None, Some(password)).await
}

/// Like [`cluster_connection`], as the ACL user `user` (RBAC) when one is given, and
/// without AUTH when no password is.
pub async fn cluster_connection_as(
    port: u16,
    ca: &[u8],
    user: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<ClusterConnection> {
    let mut builder = ClusterClient::builder(vec![info(port, Transport::Verified(ca), None, None)]);
    if let Some(user) = user {
        builder = builder.username(user.to_string());
    }
    if let Some(password) = password {
        builder = builder.password(password.to_string());
    }
    let client = builder
        .tls(redis::TlsMode::Secure)
        .certs(TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) })
        .retries(20)
        .min_retry_wait(20)
        .max_retry_wait(500)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .build()
        .context("cluster client")?;
    client.get_async_connection().await.context("connecting to the configuration endpoint")
}
