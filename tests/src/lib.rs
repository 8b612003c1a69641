//! End-to-end test harness: a real `elasticache-local` server, in process, on a free port.
//!
//! Each test starts its own [`TestServer`] (own port, own temporary state directory), so tests
//! run in parallel without seeing each other's resources. The server stops when the handle is
//! dropped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticache::config::{Credentials, SharedCredentialsProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const REGION: &str = "us-east-1";
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
pub const ACCOUNT: &str = "000000000000";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    // Dropped after the server is told to stop; taken by [`TestServer::stop`].
    state_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server and returns once `/_emulator/health` answers ok.
    pub async fn start() -> Self {
        Self::try_start().await.expect("test server failed to start")
    }

    pub async fn try_start() -> anyhow::Result<Self> {
        Self::try_start_in(tempfile::tempdir().context("creating a temporary state dir")?).await
    }

    /// Starts a server on an existing state directory (e.g. the one a stopped server left).
    pub async fn start_in(state_dir: tempfile::TempDir) -> Self {
        Self::try_start_in(state_dir).await.expect("test server failed to start")
    }

    pub async fn try_start_in(state_dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = server::Config {
            state_dir: state_dir.path().to_path_buf(),
            region: REGION.to_string(),
            account: ACCOUNT.to_string(),
            zones: ZONES.iter().map(|z| z.to_string()).collect(),
            health: Default::default(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, config, async move {
            let _ = rx.await;
        }));
        let mut server = TestServer { addr, shutdown: Some(tx), task, state_dir: Some(state_dir) };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.task.is_finished() {
                let result = (&mut self.task).await;
                bail!("server exited before becoming ready: {result:?}");
            }
            if let Ok((200, body)) = raw_get(self.addr, "/_emulator/health").await
                && body.contains("\"ok\"")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("server not ready after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully (the way `serve` stops on a signal: every node is stopped
    /// before `run` returns) and hands back its state directory, so that a new server can
    /// start on it. Panics if `run` fails or does not return within [`STOP_TIMEOUT`].
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("server run() failed while stopping: {e:?}"),
            Ok(Err(e)) => panic!("server task failed while stopping: {e:?}"),
            Err(_) => panic!("server did not stop within {STOP_TIMEOUT:?}"),
        }
        self.state_dir.take().expect("state dir is only taken by stop")
    }

    pub fn state_path(&self) -> &std::path::Path {
        self.state_dir.as_ref().expect("state dir is only taken by stop").path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An SDK client for [`REGION`].
    pub fn client(&self) -> aws_sdk_elasticache::Client {
        self.client_in(REGION)
    }

    /// An SDK client signing for `region`; the server keeps resources per region.
    pub fn client_in(&self, region: &str) -> aws_sdk_elasticache::Client {
        aws_sdk_elasticache::Client::new(&sdk_config(&self.endpoint(), region))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Open connections (SDK keep-alive) would delay graceful shutdown; don't wait for it.
        self.task.abort();
    }
}

/// Config built only from what is passed here, so nothing in the environment (profiles,
/// `AWS_ENDPOINT_URL`, `AWS_MAX_ATTEMPTS`) changes what the tests see.
pub fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDE2ETEST",
            "e2e-test-secret",
            None,
            None,
            "e2e",
        )))
        .endpoint_url(endpoint)
        // A client error must surface at once; a retried 5xx would hide a server bug.
        .retry_config(RetryConfig::disabled())
        .build()
}

/// Minimal HTTP/1.1 GET, so that readiness needs no HTTP client dependency.
pub async fn raw_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("malformed status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// What a failed SDK call told the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub status: u16,
}

/// The error of a call that must fail; panics (showing the output) if it succeeded.
pub fn api_error<T, E>(
    result: Result<T, aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>>,
) -> ApiError
where
    T: std::fmt::Debug,
    E: aws_sdk_elasticache::error::ProvideErrorMetadata + std::fmt::Debug,
{
    use aws_sdk_elasticache::error::ProvideErrorMetadata;
    match result {
        Ok(output) => panic!("expected an error, got {output:?}"),
        Err(error) => ApiError {
            code: error.code().unwrap_or_default().to_string(),
            message: error.message().unwrap_or_default().to_string(),
            status: error.raw_response().map_or(0, |r| r.status().as_u16()),
        },
    }
}

/// Asserts that `result` failed with `code`, and returns the error.
#[track_caller]
pub fn expect_code<T, E>(
    result: Result<T, aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>>,
    code: &str,
) -> ApiError
where
    T: std::fmt::Debug,
    E: aws_sdk_elasticache::error::ProvideErrorMetadata + std::fmt::Debug,
{
    let error = api_error(result);
    assert_eq!(error.code, code, "unexpected error: {error:?}");
    assert!((400..500).contains(&error.status), "client error with status {}: {error:?}", error.status);
    error
}

/// Minimal HTTP/1.1 POST without a body (the admin API's actions), like [`raw_get`].
pub async fn raw_post(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("malformed status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `timeout`. The last
/// `Err` (a description of what was seen) is part of the panic message.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether connecting to `127.0.0.1:port` is refused (nothing listens there).
pub async fn port_refuses(port: u16) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A RESP value as Redis answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// A tiny Redis client over one TCP connection: enough for PING/SET/GET/CONFIG.
pub struct RedisClient {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl RedisClient {
    pub async fn connect(address: &str, port: u16) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(CLIENT_TIMEOUT, tokio::net::TcpStream::connect((address, port)))
            .await
            .context("connect timed out")??;
        Ok(Self { stream: tokio::io::BufReader::new(stream) })
    }

    /// Sends one command (as a RESP array of bulk strings) and reads its reply.
    pub async fn command(&mut self, args: &[&str]) -> anyhow::Result<Resp> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        let stream = &mut self.stream;
        tokio::time::timeout(CLIENT_TIMEOUT, async move {
            stream.get_mut().write_all(&request).await?;
            read_resp(stream).await
        })
        .await
        .context("redis command timed out")?
    }

    pub async fn ping(&mut self) -> anyhow::Result<()> {
        match self.command(&["PING"]).await? {
            Resp::Simple(s) if s == "PONG" => Ok(()),
            other => bail!("PING answered {other:?}"),
        }
    }

    pub async fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match self.command(&["SET", key, value]).await? {
            Resp::Simple(s) if s == "OK" => Ok(()),
            other => bail!("SET answered {other:?}"),
        }
    }

    pub async fn get(&mut self, key: &str) -> anyhow::Result<Option<String>> {
        match self.command(&["GET", key]).await? {
            Resp::Bulk(value) => Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned())),
            other => bail!("GET answered {other:?}"),
        }
    }

    /// `CONFIG GET name` → the value, if the server knows the parameter.
    pub async fn config_get(&mut self, name: &str) -> anyhow::Result<Option<String>> {
        let reply = self.command(&["CONFIG", "GET", name]).await?;
        let Resp::Array(Some(items)) = reply else { bail!("CONFIG GET answered {reply:?}") };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let (Resp::Bulk(Some(k)), Resp::Bulk(Some(v))) = (k, v)
                && k.eq_ignore_ascii_case(name.as_bytes())
            {
                return Ok(Some(String::from_utf8_lossy(&v).into_owned()));
            }
        }
        Ok(None)
    }
}

fn read_resp<'a>(
    stream: &'a mut tokio::io::BufReader<tokio::net::TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Resp>> + Send + 'a>> {
    use tokio::io::AsyncBufReadExt;
    Box::pin(async move {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Resp::Simple(rest.to_string()),
            "-" => Resp::Error(rest.to_string()),
            ":" => Resp::Integer(rest.parse()?),
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut buf = vec![0; len as usize + 2];
                    stream.read_exact(&mut buf).await?;
                    buf.truncate(len as usize);
                    Resp::Bulk(Some(buf))
                }
            }
            "*" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    Resp::Array(None)
                } else {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(read_resp(stream).await?);
                    }
                    Resp::Array(Some(items))
                }
            }
            _ => bail!("not RESP: {line:?}"),
        })
    })
}

/// A tiny memcached text-protocol client over one TCP connection.
pub struct MemcachedClient {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl MemcachedClient {
    pub async fn connect(address: &str, port: u16) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(CLIENT_TIMEOUT, tokio::net::TcpStream::connect((address, port)))
            .await
            .context("connect timed out")??;
        Ok(Self { stream: tokio::io::BufReader::new(stream) })
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
