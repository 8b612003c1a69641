//! The subcommands for people at a terminal, each a client of a running emulator's admin
//! API: `status`, `nodes`, `outage`.
//!
//! # Layout
//! - this module: the `--endpoint` argument and a small HTTP/1.1 client (plain HTTP, as
//!   the emulator serves it) over the hyper the server is built on.
//! - `status`: the resources and nodes of every region, as tables.
//! - `nodes`, `outage`: thin wrappers over the node actions and zone outages.

pub mod nodes;
pub mod outage;
pub mod status;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The exit status of a command the server could not be asked, or refused.
pub const EXIT_ERROR: i32 = 1;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4566";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Node actions wait for the node; nothing the admin API does takes longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const BODY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct EndpointArg {
    /// URL of the emulator; defaults to $AWS_ENDPOINT_URL_ELASTICACHE, then
    /// $AWS_ENDPOINT_URL, then http://127.0.0.1:4566.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
}

impl EndpointArg {
    /// The endpoint asked for, or the one the AWS environment points clients at.
    pub fn resolve(&self) -> Result<Endpoint, String> {
        let from_env = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        let url = self
            .endpoint
            .clone()
            .or_else(|| from_env("AWS_ENDPOINT_URL_ELASTICACHE"))
            .or_else(|| from_env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Endpoint::parse(&url)
    }
}

/// Where the emulator listens: `http://host[:port][/]`, or just `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As given, for messages.
    pub url: String,
    /// `host:port`, for connecting and the Host header.
    authority: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("https://") {
            return Err(format!("{url}: the emulator serves plain HTTP; use an http:// endpoint"));
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || rest.contains("://") {
            return Err(format!("{url}: not an http://host:port endpoint"));
        }
        // A port follows the last ':' unless that ':' is inside an IPv6 literal.
        let has_port = authority.rsplit_once(':').is_some_and(|(_, tail)| !tail.contains(']'));
        let authority = if has_port { authority.to_string() } else { format!("{authority}:80") };
        Ok(Self { url: url.trim_end_matches('/').to_string(), authority })
    }

    /// `GET path` → (status, body as JSON; a body that is no JSON comes back as a string).
    pub async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        self.request(Method::GET, path).await
    }

    pub async fn request(&self, method: Method, path: &str) -> Result<(u16, Value), String> {
        let unreachable = |e: &dyn std::fmt::Display| format!("cannot reach the emulator at {}: {e}", self.url);
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&self.authority)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(unreachable(&e)),
            Err(_) => return Err(unreachable(&format!("no connection within {CONNECT_TIMEOUT:?}"))),
        };
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::HOST, &self.authority)
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(Body::new(response.into_body()), BODY_LIMIT_BYTES).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        let (status, body) = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(format!("{method} {}{path}: {e}", self.url)),
            Err(_) => return Err(format!("{method} {}{path}: no answer within {REQUEST_TIMEOUT:?}", self.url)),
        };
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_string()));
        Ok((status, body))
    }
}

/// What an error answer of the admin API says: its `message`, else its body.
pub fn server_message(status: u16, body: &Value) -> String {
    match body {
        Value::Object(map) => match map.get("message").and_then(Value::as_str) {
            Some(message) => message.to_string(),
            None => format!("HTTP {status}: {body}"),
        },
        Value::String(text) if !text.is_empty() => format!("HTTP {status}: {text}"),
        _ => format!("HTTP {status}"),
    }
}

/// One path segment, percent-encoded (ids and zone names hardly need it; a typo might).
pub fn segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_as_clients_write_them() {
        let parsed = |url: &str| Endpoint::parse(url).map(|e| (e.url, e.authority));
        assert_eq!(parsed("http://127.0.0.1:4566/"), Ok(("http://127.0.0.1:4566".into(), "127.0.0.1:4566".into())));
        assert_eq!(parsed("localhost:4566"), Ok(("localhost:4566".into(), "localhost:4566".into())));
        assert_eq!(parsed("http://emulator"), Ok(("http://emulator".into(), "emulator:80".into())));
        assert_eq!(parsed("http://[::1]:4566"), Ok(("http://[::1]:4566".into(), "[::1]:4566".into())));
        assert_eq!(parsed("http://[::1]"), Ok(("http://[::1]".into(), "[::1]:80".into())));
        assert!(parsed("https://127.0.0.1:4566").is_err());
        assert!(parsed("ftp://x").is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("my-cluster.0001"), "my-cluster.0001");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
