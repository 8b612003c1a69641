//! RESP framing for the bridge: a buffered connection that parses whole values out of what
//! it has read. The replication stream needs the exact byte length of every command (a
//! replica's offset is a byte count), and pipelines of thousands of replies want no
//! allocation per reply beyond the reply itself; [`crate::resp`]'s reader gives neither.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::NodeError;
use crate::resp::Reply;

/// Redis's own `proto-max-bulk-len`: a DUMP of a big key may come close.
const MAX_BULK: usize = 512 * 1024 * 1024;
const MAX_ARRAY: usize = 16 * 1024 * 1024;
/// A reply line longer than this is no RESP.
const MAX_LINE: usize = 64 * 1024;
/// Replies nest a few levels (COMMAND INFO's subcommands); deeper means a confused peer.
const MAX_DEPTH: usize = 32;
const READ_CHUNK: usize = 64 * 1024;

/// Any byte stream a bridge speaks RESP over: TCP, TLS, a unix socket.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A connection with its read buffer; `pos` marks what has been consumed.
pub(crate) struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(stream: S) -> Self {
        Self { stream, buf: Vec::with_capacity(READ_CHUNK), pos: 0 }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads what the peer sent next into the buffer; the end of the stream is an error.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub(crate) async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")),
            n => Ok(n),
        }
    }

    /// What has been read and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// The next value if the buffer holds all of it, with its length in bytes.
    pub(crate) fn try_value(&mut self) -> Result<Option<(Reply, usize)>, NodeError> {
        let parsed = parse(self.buffered(), 0)?;
        if let Some((_, n)) = &parsed {
            self.consume(*n);
        }
        Ok(parsed)
    }

    /// The next value, reading as much as it takes.
    pub(crate) async fn value(&mut self) -> Result<Reply, NodeError> {
        loop {
            if let Some((value, _)) = self.try_value()? {
                return Ok(value);
            }
            self.read_more().await?;
        }
    }

    /// The next line without its line end, reading as much as it takes.
    pub(crate) async fn line(&mut self) -> Result<Vec<u8>, NodeError> {
        loop {
            if let Some(end) = self.buffered().iter().position(|&b| b == b'\n') {
                let line = self.buffered()[..end].strip_suffix(b"\r").unwrap_or(&self.buffered()[..end]).to_vec();
                self.consume(end + 1);
                return Ok(line);
            }
            if self.buffered().len() > MAX_LINE {
                return Err(NodeError::Protocol("line too long".into()));
            }
            self.read_more().await?;
        }
    }
}

/// Parses one value from the start of `buf`: `None` until all of it is there.
fn parse(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, NodeError> {
    let Some(newline) = buf.iter().take(MAX_LINE).position(|&b| b == b'\n') else {
        if buf.len() >= MAX_LINE {
            return Err(NodeError::Protocol("RESP line too long".into()));
        }
        return Ok(None);
    };
    let Some((&kind, rest)) = buf[..newline].split_first() else {
        return Err(NodeError::Protocol("empty RESP line".into()));
    };
    let line = rest.strip_suffix(b"\r").unwrap_or(rest);
    let after = newline + 1;
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), after))),
        b'-' => Ok(Some((Reply::Error(text()), after))),
        b':' => Ok(Some((Reply::Integer(number(line)?), after))),
        b'$' => {
            let Ok(len) = usize::try_from(number(line)?) else { return Ok(Some((Reply::Bulk(None), after))) };
            if len > MAX_BULK {
                return Err(NodeError::Protocol(format!("bulk string of {len} bytes")));
            }
            let end = after + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((Reply::Bulk(Some(buf[after..end].to_vec())), end + 2)))
        }
        b'*' => {
            let Ok(len) = usize::try_from(number(line)?) else { return Ok(Some((Reply::Array(None), after))) };
            if len > MAX_ARRAY || depth >= MAX_DEPTH {
                return Err(NodeError::Protocol(format!("array of {len} elements at depth {depth}")));
            }
            let mut items = Vec::with_capacity(len.min(1024));
            let mut at = after;
            for _ in 0..len {
                let Some((item, n)) = parse(&buf[at..], depth + 1)? else { return Ok(None) };
                items.push(item);
                at += n;
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(NodeError::Protocol(format!("unexpected RESP line {:?}", String::from_utf8_lossy(&buf[..newline])))),
    }
}

fn number(line: &[u8]) -> Result<i64, NodeError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| NodeError::Protocol(format!("bad RESP number {:?}", String::from_utf8_lossy(line))))
}

/// A command's arguments, from a RESP array of bulk strings.
pub(crate) fn into_args(value: Reply) -> Option<Vec<Vec<u8>>> {
    let Reply::Array(Some(items)) = value else { return None };
    items
        .into_iter()
        .map(|item| match item {
            Reply::Bulk(Some(bytes)) => Some(bytes),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_values_and_waits_for_the_rest() {
        let bytes = b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n+OK\r\n";
        let (value, n) = parse(bytes, 0).expect("parse").expect("complete");
        assert_eq!(n, 20);
        assert_eq!(into_args(value), Some(vec![b"SET".to_vec(), b"k".to_vec()]));
        assert_eq!(parse(&bytes[n..], 0).expect("parse"), Some((Reply::Simple("OK".into()), 5)));
        for cut in 0..n {
            assert_eq!(parse(&bytes[..cut], 0).expect("parse"), None, "cut at {cut}");
        }
        assert_eq!(parse(b"$-1\r\n", 0).expect("parse"), Some((Reply::Bulk(None), 5)));
        assert!(parse(b"?\r\n", 0).is_err());
    }
}
