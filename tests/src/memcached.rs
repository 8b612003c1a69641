//! A tiny memcached text-protocol client ([`MemcachedClient`]) over one TCP connection,
//! plaintext or TLS, for memcached nodes and the configuration endpoint (`config get cluster`).

use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::CLIENT_TIMEOUT;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// A tiny memcached text-protocol client over one TCP connection.
pub struct MemcachedClient {
    stream: tokio::io::BufReader<Box<dyn Stream>>,
}

impl MemcachedClient {
    pub async fn connect(address: &str, port: u16) -> anyhow::Result<Self> {
        let stream = Self::tcp(address, port).await?;
        Ok(Self { stream: tokio::io::BufReader::new(Box::new(stream)) })
    }

    /// Through TLS, verifying the server's certificate against `ca_pem` and `address`.
    pub async fn connect_tls(address: &str, port: u16, ca_pem: &[u8]) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem).context("CA certificate")?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(address.to_string())?;
        let tcp = Self::tcp(address, port).await?;
        let tls =
            tokio::time::timeout(CLIENT_TIMEOUT, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp))
                .await
                .context("TLS handshake timed out")??;
        Ok(Self { stream: tokio::io::BufReader::new(Box::new(tls)) })
    }

    async fn tcp(address: &str, port: u16) -> anyhow::Result<tokio::net::TcpStream> {
        tokio::time::timeout(CLIENT_TIMEOUT, tokio::net::TcpStream::connect((address, port)))
            .await
            .context("connect timed out")?
            .map_err(Into::into)
    }

    /// Sends `request` as is and reads until the reply ends with one of `terminators`.
    pub async fn raw(&mut self, request: &[u8], terminators: &[&[u8]]) -> anyhow::Result<Vec<u8>> {
        let stream = &mut self.stream;
        tokio::time::timeout(CLIENT_TIMEOUT, async move {
            use tokio::io::AsyncBufReadExt;
            stream.get_mut().write_all(request).await?;
            let mut reply = Vec::new();
            loop {
                if stream.read_until(b'\n', &mut reply).await? == 0 {
                    bail!("connection closed after {:?}", String::from_utf8_lossy(&reply));
                }
                if terminators.iter().any(|t| reply.ends_with(t)) {
                    return Ok(reply);
                }
            }
        })
        .await
        .context("memcached command timed out")?
    }

    pub async fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let request = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
        let reply = self.raw(request.as_bytes(), &[b"\r\n"]).await?;
        if reply != b"STORED\r\n" {
            bail!("set answered {:?}", String::from_utf8_lossy(&reply));
        }
        Ok(())
    }

    pub async fn get(&mut self, key: &str) -> anyhow::Result<Option<String>> {
        let reply = self.raw(format!("get {key}\r\n").as_bytes(), &[b"END\r\n"]).await?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        if text == "END\r\n" {
            return Ok(None);
        }
        let mut lines = text.split("\r\n");
        let header = lines.next().unwrap_or_default();
        if !header.starts_with(&format!("VALUE {key} ")) {
            bail!("get answered {text:?}");
        }
        Ok(lines.next().map(str::to_string))
    }

    /// `config get cluster`, the whole reply byte for byte (through `END\r\n`).
    pub async fn config_get_cluster(&mut self) -> anyhow::Result<Vec<u8>> {
        self.raw(b"config get cluster\r\n", &[b"END\r\n", b"ERROR\r\n"]).await
    }

    pub async fn version(&mut self) -> anyhow::Result<String> {
        let reply = self.raw(b"version\r\n", &[b"\r\n"]).await?;
        Ok(String::from_utf8_lossy(&reply).trim_end().to_string())
    }
}
