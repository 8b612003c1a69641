//! A tiny RESP client ([`RedisClient`]) over one TCP connection, for redis-server nodes and the
//! endpoint proxies in front of them: enough for PING/SET/GET/CONFIG, replication probes
//! (ROLE, INFO, WAIT) and raw commands.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::CLIENT_TIMEOUT;

/// A RESP value as Redis answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The text of a simple or non-nil bulk string.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A tiny Redis client over one TCP connection.
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

    /// Reads the next reply the server sends unasked (after `MONITOR`, say).
    pub async fn next_reply(&mut self) -> anyhow::Result<Resp> {
        tokio::time::timeout(CLIENT_TIMEOUT, read_resp(&mut self.stream)).await.context("no reply in time")?
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

    /// `DBSIZE`: how many keys the server holds.
    pub async fn dbsize(&mut self) -> anyhow::Result<usize> {
        match self.command(&["DBSIZE"]).await? {
            Resp::Integer(n) => Ok(usize::try_from(n)?),
            other => bail!("DBSIZE answered {other:?}"),
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

    /// `WAIT numreplicas timeout` → how many replicas acknowledged.
    pub async fn wait(&mut self, replicas: u32, timeout_ms: u32) -> anyhow::Result<i64> {
        match self.command(&["WAIT", &replicas.to_string(), &timeout_ms.to_string()]).await? {
            Resp::Integer(n) => Ok(n),
            other => bail!("WAIT answered {other:?}"),
        }
    }

    /// First element of `ROLE`: "master" or "slave".
    pub async fn role(&mut self) -> anyhow::Result<String> {
        match self.command(&["ROLE"]).await? {
            Resp::Array(Some(items)) if !items.is_empty() => items[0].text().context("ROLE kind not text"),
            other => bail!("ROLE answered {other:?}"),
        }
    }

    /// `INFO section` as key → value.
    pub async fn info(&mut self, section: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let reply = self.command(&["INFO", section]).await?;
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
