//! Raw HTTP/1.1 (so that readiness and the admin API need no HTTP client dependency) and the
//! emulator's admin API under `/_emulator/` (node list, node actions, zone outages, resets).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestServer;

/// How long one admin call may take to answer (node actions wait for the node).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 request without a body → `(status, body)`; a chunked body comes back
/// de-chunked. Fails if the whole response takes longer than `timeout`.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    raw_request_with_body(addr, method, path, "", timeout).await
}

/// [`raw_request`] with a JSON `body`.
pub async fn raw_request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(timeout, stream.read_to_end(&mut response)).await??;
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

/// `GET path` with a 5 s bound (readiness probes).
pub async fn raw_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    raw_request(addr, "GET", path, Duration::from_secs(5)).await
}

/// `POST path` without a body (the admin API's actions), like [`raw_get`] but bounded by 30 s.
pub async fn raw_post(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    raw_request(addr, "POST", path, ADMIN_TIMEOUT).await
}

/// One admin API call → `(status, body as JSON)`; a body that is no JSON comes back as a JSON
/// string. Panics if the request itself fails.
pub async fn admin(server: &TestServer, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = raw_request(server.addr(), method, path, ADMIN_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

/// `POST path` on the admin API.
pub async fn admin_post(server: &TestServer, path: &str) -> (u16, Value) {
    admin(server, "POST", path).await
}

/// `POST path` on the admin API with a JSON body.
pub async fn admin_post_json(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = raw_request_with_body(server.addr(), "POST", path, &body.to_string(), ADMIN_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e:?}"));
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `GET /_emulator/nodes`: every node the server runs.
pub async fn admin_nodes(server: &TestServer) -> Vec<Value> {
    let (status, body) = admin(server, "GET", "/_emulator/nodes").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap_or_else(|| panic!("array expected: {body}")).clone()
}

/// The admin view of one node.
pub async fn admin_node(server: &TestServer, cluster: &str, node: &str) -> Value {
    admin_nodes(server)
        .await
        .into_iter()
        .find(|n| n["cache_cluster_id"] == cluster && n["cache_node_id"] == node)
        .unwrap_or_else(|| panic!("no admin entry for {cluster}/{node}"))
}

/// The pids of the idle warm nodes of `engine` (cluster-enabled or standalone), once there
/// are `count` of them.
pub async fn warm_pids(server: &TestServer, engine: &str, cluster_mode: bool, count: usize) -> BTreeSet<u64> {
    let what = format!("{count} warm {engine} nodes (cluster mode {cluster_mode})");
    crate::poll_until(&what, crate::SETTLE, || async {
        let (_, health) = admin(server, "GET", "/_emulator/health").await;
        let warm = health["warm_nodes"].as_array().into_iter().flatten();
        let pids: BTreeSet<u64> = warm
            .filter(|n| n["engine"] == engine && n["cluster_mode"] == cluster_mode)
            .filter_map(|n| n["pid"].as_u64())
            .collect();
        if pids.len() == count { Ok(pids) } else { Err(format!("{health}")) }
    })
    .await
}
