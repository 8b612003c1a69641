//! The few bytes of RESP (the Redis protocol) the runtime speaks itself: PING, AUTH,
//! CONFIG GET/SET, and the replication commands sent through `Runtime::command` (INFO,
//! REPLICAOF). Deliberately tiny — a full client would be a dependency for a handful of
//! commands.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::NodeError;

/// Replies are tiny for the commands sent here; anything huge means a confused peer.
const MAX_BULK: usize = 16 * 1024 * 1024;
const MAX_ARRAY: usize = 1024 * 1024;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for simple strings and bulk strings.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

/// Encodes one command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The value of `name` in the text of an INFO reply (`name:value` lines, `#` headers).
pub fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then_some(value.trim())
    })
}

/// Sends one command and reads its reply.
pub async fn command<S, A>(stream: &mut S, args: &[A]) -> Result<Reply, NodeError>
where
    S: AsyncBufRead + AsyncWrite + Unpin + Send,
    A: AsRef<[u8]>,
{
    stream.write_all(&encode(args)).await?;
    stream.flush().await?;
    read_reply(stream).await
}

/// Reads one reply.
pub fn read_reply<'a, R>(reader: &'a mut R) -> Pin<Box<dyn Future<Output = Result<Reply, NodeError>> + Send + 'a>>
where
    R: AsyncBufRead + Unpin + Send,
{
    Box::pin(async move {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(NodeError::Protocol("connection closed".into()));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (kind, rest) = text.split_at_checked(1).unwrap_or(("", ""));
        let parse_len =
            |rest: &str| rest.parse::<i64>().map_err(|_| NodeError::Protocol(format!("bad length {rest:?}")));
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Integer(parse_len(rest)?)),
            "$" => {
                let len = parse_len(rest)?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_BULK {
                    return Err(NodeError::Protocol(format!("bulk string of {len} bytes")));
                }
                let mut data = vec![0; len + 2];
                reader.read_exact(&mut data).await?;
                data.truncate(len);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let len = parse_len(rest)?;
                if len < 0 {
                    return Ok(Reply::Array(None));
                }
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_ARRAY {
                    return Err(NodeError::Protocol(format!("array of {len} elements")));
                }
                let mut items = Vec::with_capacity(len.min(1024));
                for _ in 0..len {
                    items.push(read_reply(reader).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(NodeError::Protocol(format!("unexpected reply line {text:?}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_info_fields() {
        let text = "# Memory\r\nused_memory:2742360\r\nused_memory_overhead:2986708\r\nrole:master\r\n";
        assert_eq!(info_field(text, "used_memory"), Some("2742360"));
        assert_eq!(info_field(text, "role"), Some("master"));
        assert_eq!(info_field(text, "used"), None, "whole names only");
    }

    #[test]
    fn encodes_bulk_array() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(encode(&["SET", ""]), b"*2\r\n$3\r\nSET\r\n$0\r\n\r\n");
    }

    #[tokio::test]
    async fn reads_nested_replies() {
        let mut input: &[u8] = b"*3\r\n$3\r\nabc\r\n:5\r\n*1\r\n+OK\r\n";
        let reply = read_reply(&mut input).await.expect("reply");
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Integer(5),
                Reply::Array(Some(vec![Reply::Simple("OK".into())])),
            ]))
        );
        let mut input: &[u8] = b"-ERR nope\r\n";
        assert_eq!(read_reply(&mut input).await.expect("reply"), Reply::Error("ERR nope".into()));
    }
}
