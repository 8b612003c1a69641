//! What the replication tests share: a tiny RESP client, the admin API over raw HTTP, polling,
//! and replication-group helpers over the SDK. Kept here (not in the harness) so this binary
//! depends only on `TestServer`, the SDK client and the error helpers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::error::ProvideErrorMetadata;
use aws_sdk_elasticache::types::{NodeGroupMember, ReplicationGroup, SourceType};
use e2e::TestServer;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bounds a broken run; everything here settles in milliseconds to a few seconds.
pub const SETTLE: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Polling

/// Polls `check` every 50 ms until it returns `Ok`, panicking after `timeout` with the last
/// thing `check` saw.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
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

// ---------------------------------------------------------------------------------------------
// RESP

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// One connection to a redis node or an endpoint proxy.
pub struct Redis {
    stream: BufReader<TcpStream>,
}

impl Redis {
    pub async fn connect(port: u16) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .context("connect timed out")??;
        Ok(Self { stream: BufReader::new(stream) })
    }

    pub async fn cmd(&mut self, args: &[&str]) -> anyhow::Result<Resp> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        let stream = &mut self.stream;
        tokio::time::timeout(IO_TIMEOUT, async move {
            stream.get_mut().write_all(&request).await?;
            read_resp(stream).await
        })
        .await
        .context("redis command timed out")?
    }

    pub async fn ping(&mut self) -> anyhow::Result<()> {
        match self.cmd(&["PING"]).await? {
            Resp::Simple(s) if s == "PONG" => Ok(()),
            other => bail!("PING answered {other:?}"),
        }
    }

    pub async fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match self.cmd(&["SET", key, value]).await? {
            Resp::Simple(s) if s == "OK" => Ok(()),
            other => bail!("SET answered {other:?}"),
        }
    }

    pub async fn get(&mut self, key: &str) -> anyhow::Result<Option<String>> {
        match self.cmd(&["GET", key]).await? {
            Resp::Bulk(v) => Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned())),
            other => bail!("GET answered {other:?}"),
        }
    }

    /// `WAIT numreplicas timeout` → how many replicas acknowledged.
    pub async fn wait(&mut self, replicas: u32, timeout_ms: u32) -> anyhow::Result<i64> {
        match self.cmd(&["WAIT", &replicas.to_string(), &timeout_ms.to_string()]).await? {
            Resp::Integer(n) => Ok(n),
            other => bail!("WAIT answered {other:?}"),
        }
    }

    /// First element of `ROLE`: "master" or "slave".
    pub async fn role(&mut self) -> anyhow::Result<String> {
        match self.cmd(&["ROLE"]).await? {
            Resp::Array(Some(items)) if !items.is_empty() => items[0].text().context("ROLE kind not text"),
            other => bail!("ROLE answered {other:?}"),
        }
    }

    /// `INFO section` as key → value.
    pub async fn info(&mut self, section: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let reply = self.cmd(&["INFO", section]).await?;
        let text = reply.text().with_context(|| format!("INFO answered {reply:?}"))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect())
    }

    /// The port of the redis-server process behind this connection (through a proxy too).
    pub async fn server_port(&mut self) -> anyhow::Result<u16> {
        let info = self.info("server").await?;
        info.get("tcp_port").context("no tcp_port in INFO server")?.parse().context("tcp_port")
    }
}

fn read_resp<'a>(
    stream: &'a mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Resp>> + Send + 'a>> {
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

/// Polls until `SET key value` through `port` (a fresh connection each try) succeeds.
pub async fn wait_write(port: u16, key: &str, value: &str) {
    poll(&format!("SET {key} through port {port}"), SETTLE, || async {
        let mut r = Redis::connect(port).await.map_err(|e| e.to_string())?;
        r.set(key, value).await.map_err(|e| e.to_string())
    })
    .await
}

/// Polls until `GET key` through `port` answers `value`.
pub async fn wait_read(port: u16, key: &str, value: &str) {
    poll(&format!("GET {key} = {value:?} through port {port}"), SETTLE, || async {
        let mut r = Redis::connect(port).await.map_err(|e| e.to_string())?;
        match r.get(key).await.map_err(|e| e.to_string())? {
            Some(v) if v == value => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Polls until `ROLE` on `port` answers `role` ("master" / "slave").
pub async fn wait_role(port: u16, role: &str) {
    poll(&format!("ROLE {role} on port {port}"), SETTLE, || async {
        let mut r = Redis::connect(port).await.map_err(|e| e.to_string())?;
        let seen = r.role().await.map_err(|e| e.to_string())?;
        if seen == role { Ok(()) } else { Err(seen) }
    })
    .await
}

/// Polls until a replica on `port` has its link to the primary up.
pub async fn wait_link_up(port: u16) {
    poll(&format!("replica on {port} with master_link_status:up"), SETTLE, || async {
        let mut r = Redis::connect(port).await.map_err(|e| e.to_string())?;
        let info = r.info("replication").await.map_err(|e| e.to_string())?;
        if info.get("role").map(String::as_str) == Some("slave")
            && info.get("master_link_status").map(String::as_str) == Some("up")
        {
            Ok(())
        } else {
            Err(format!("{info:?}"))
        }
    })
    .await
}

/// Whether connecting to `127.0.0.1:port` is refused (nothing listens there).
pub async fn port_refuses(port: u16) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

pub async fn wait_refuses(port: u16) {
    poll(&format!("port {port} refusing connections"), SETTLE, || async {
        if port_refuses(port).await { Ok(()) } else { Err("still accepting".to_string()) }
    })
    .await
}

/// Whether a process is alive (not a zombie).
pub fn process_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn kill_9(pid: u64) {
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("running kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

// ---------------------------------------------------------------------------------------------
// Admin API

/// One HTTP/1.1 request without a body; `(status, body)`.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(SETTLE, stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("malformed status line")?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Small JSON answers may still come chunked.
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub async fn admin(server: &TestServer, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = http(server.addr(), method, path).await.unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

/// `GET /_emulator/nodes`.
pub async fn admin_nodes(server: &TestServer) -> Vec<Value> {
    let (status, body) = admin(server, "GET", "/_emulator/nodes").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap_or_else(|| panic!("array expected: {body}")).clone()
}

pub async fn admin_node(server: &TestServer, cluster: &str) -> Value {
    admin_nodes(server)
        .await
        .into_iter()
        .find(|n| n["cache_cluster_id"] == cluster && n["cache_node_id"] == "0001")
        .unwrap_or_else(|| panic!("no admin entry for {cluster}/0001"))
}

pub fn pid_of(entry: &Value) -> u64 {
    entry["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {entry}"))
}

pub async fn admin_action(server: &TestServer, cluster: &str, action: &str) {
    let path = format!("/_emulator/nodes/{cluster}/0001/{action}");
    let (status, body) = admin(server, "POST", &path).await;
    assert_eq!(status, 200, "POST {path}: {body}");
}

pub async fn outage(server: &TestServer, zone: &str, start: bool) {
    let method = if start { "POST" } else { "DELETE" };
    let path = format!("/_emulator/zones/{zone}/outage");
    let (status, body) = admin(server, method, &path).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
}

/// Polls until the admin API shows `cluster` healthy with role `role`.
pub async fn wait_admin(server: &TestServer, cluster: &str, role: &str) -> Value {
    poll(&format!("{cluster} healthy as {role} in /_emulator/nodes"), SETTLE, || async {
        let entry = admin_node(server, cluster).await;
        if entry["health"] == "healthy" && entry["role"] == role && entry["pid"].as_u64().is_some_and(process_alive) {
            Ok(entry)
        } else {
            Err(entry.to_string())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Replication groups

pub fn code_of<E: ProvideErrorMetadata>(
    e: &aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>,
) -> (String, u16) {
    (e.code().unwrap_or_default().to_string(), e.raw_response().map_or(0, |r| r.status().as_u16()))
}

/// CreateReplicationGroup (redis 7.1, cache.t3.micro) with `members` clusters.
pub async fn create(client: &Client, id: &str, members: i32, failover: bool, multi_az: bool) -> ReplicationGroup {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description(format!("group {id}"))
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(members)
        .automatic_failover_enabled(failover)
        .multi_az_enabled(multi_az)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id}: {e:?}"))
        .replication_group
        .expect("CreateReplicationGroup returned no ReplicationGroup")
}

pub async fn describe(client: &Client, id: &str) -> ReplicationGroup {
    let out = client
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeReplicationGroups {id}: {e:?}"));
    assert_eq!(out.replication_groups().len(), 1, "one group for {id}: {out:?}");
    out.replication_groups()[0].clone()
}

/// Polls until the group is `available`.
pub async fn wait_available(client: &Client, id: &str) -> ReplicationGroup {
    poll(&format!("replication group {id} available"), SETTLE, || async {
        let g = describe(client, id).await;
        if g.status() == Some("available") { Ok(g) } else { Err(format!("{:?}", g.status())) }
    })
    .await
}

/// Polls until DescribeReplicationGroups(id) answers ReplicationGroupNotFoundFault (404).
pub async fn wait_group_gone(client: &Client, id: &str) {
    poll(&format!("replication group {id} gone"), SETTLE, || async {
        match client.describe_replication_groups().replication_group_id(id).send().await {
            Ok(out) => Err(format!("{:?}", out.replication_groups().first().and_then(|g| g.status()))),
            Err(e) => match code_of(&e) {
                (code, 404) if code == "ReplicationGroupNotFoundFault" => Ok(()),
                other => panic!("describing a deleted group: {other:?} {e:?}"),
            },
        }
    })
    .await
}

/// Polls until DescribeCacheClusters(id) answers CacheClusterNotFound (404).
pub async fn wait_cluster_gone(client: &Client, id: &str) {
    poll(&format!("cache cluster {id} gone"), SETTLE, || async {
        match client.describe_cache_clusters().cache_cluster_id(id).send().await {
            Ok(out) => Err(format!("{:?}", out.cache_clusters().first().and_then(|c| c.cache_cluster_status()))),
            Err(e) => match code_of(&e) {
                (code, 404) if code == "CacheClusterNotFound" => Ok(()),
                other => panic!("describing a deleted cluster: {other:?} {e:?}"),
            },
        }
    })
    .await
}

pub fn members(g: &ReplicationGroup) -> &[NodeGroupMember] {
    assert_eq!(g.node_groups().len(), 1, "one node group: {g:?}");
    g.node_groups()[0].node_group_members()
}

/// The primary's cache cluster id as Describe lists it (first member, role primary).
pub fn primary_id(g: &ReplicationGroup) -> String {
    let first = &members(g)[0];
    assert_eq!(first.current_role(), Some("primary"), "primary listed first: {g:?}");
    let primaries = members(g).iter().filter(|m| m.current_role() == Some("primary")).count();
    assert_eq!(primaries, 1, "exactly one primary: {g:?}");
    first.cache_cluster_id().unwrap_or_default().to_string()
}

pub fn member<'a>(g: &'a ReplicationGroup, cluster: &str) -> &'a NodeGroupMember {
    members(g)
        .iter()
        .find(|m| m.cache_cluster_id() == Some(cluster))
        .unwrap_or_else(|| panic!("no member {cluster} in {g:?}"))
}

pub fn member_port(m: &NodeGroupMember) -> u16 {
    let port = m.read_endpoint().and_then(|e| e.port()).unwrap_or_else(|| panic!("no ReadEndpoint port: {m:?}"));
    u16::try_from(port).expect("port in range")
}

pub fn primary_port(g: &ReplicationGroup) -> u16 {
    let e = g.node_groups()[0].primary_endpoint().unwrap_or_else(|| panic!("no PrimaryEndpoint: {g:?}"));
    assert_eq!(e.address(), Some("127.0.0.1"), "{g:?}");
    u16::try_from(e.port().expect("PrimaryEndpoint port")).expect("port")
}

pub fn reader_port(g: &ReplicationGroup) -> u16 {
    let e = g.node_groups()[0].reader_endpoint().unwrap_or_else(|| panic!("no ReaderEndpoint: {g:?}"));
    assert_eq!(e.address(), Some("127.0.0.1"), "{g:?}");
    u16::try_from(e.port().expect("ReaderEndpoint port")).expect("port")
}

/// Polls until Describe shows a primary other than `old` (and the group available again).
pub async fn wait_new_primary(client: &Client, id: &str, old: &str) -> ReplicationGroup {
    poll(&format!("{id} failed over away from {old}"), SETTLE, || async {
        let g = describe(client, id).await;
        let first = members(&g).first().and_then(|m| m.cache_cluster_id()).unwrap_or_default().to_string();
        let roles: Vec<_> = members(&g).iter().map(|m| (m.cache_cluster_id(), m.current_role())).collect();
        if first != old && g.status() == Some("available") {
            Ok(g)
        } else {
            Err(format!("status {:?} members {roles:?}", g.status()))
        }
    })
    .await
}

/// Every event of `source` (type `kind`) in the last hour, oldest first.
pub async fn events_of(client: &Client, kind: SourceType, source: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_events()
            .source_type(kind.clone())
            .source_identifier(source)
            .duration(60)
            .set_marker(marker)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeEvents {source}: {e:?}"));
        all.extend(out.events().iter().cloned());
        marker = out.marker;
        if marker.is_none() {
            break;
        }
    }
    all.sort_by_key(|e| e.date().map(|d| (d.secs(), d.subsec_nanos())));
    all.into_iter().map(|e| e.message().unwrap_or_default().to_string()).collect()
}

/// Polls until the events of `source` include `expected` (at least `times` times).
pub async fn wait_event(client: &Client, kind: SourceType, source: &str, expected: &str, times: usize) -> Vec<String> {
    poll(&format!("event {expected:?} ×{times} of {source}"), SETTLE, || async {
        let events = events_of(client, kind.clone(), source).await;
        if events.iter().filter(|e| *e == expected).count() >= times { Ok(events) } else { Err(format!("{events:?}")) }
    })
    .await
}

pub fn failover_event(old: &str, new: &str) -> String {
    format!("Failover from primary node {old} to replica node {new} completed")
}

/// Every replication group and cache cluster the server lists (ids).
pub async fn everything(client: &Client) -> (Vec<String>, Vec<String>) {
    let groups = client.describe_replication_groups().send().await.expect("DescribeReplicationGroups");
    let clusters = client.describe_cache_clusters().send().await.expect("DescribeCacheClusters");
    (
        groups.replication_groups().iter().filter_map(|g| g.replication_group_id().map(str::to_string)).collect(),
        clusters.cache_clusters().iter().filter_map(|c| c.cache_cluster_id().map(str::to_string)).collect(),
    )
}
