//! [`ReadySignal`]: a redis-like node saying it is ready, instead of being asked until it
//! is. Started with `supervised systemd` and `NOTIFY_SOCKET` naming a unix datagram socket,
//! redis and valkey send `READY=1` there once they accept connections (systemd's
//! `sd_notify` protocol, the one their unit files use). A start then waits on that
//! message: it learns at once that the node is up, and a thousand nodes starting together
//! (the emulator's restart) are not each asked every few milliseconds while they load.

use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;

/// The socket one starting node reports to; removed when dropped.
pub(crate) struct ReadySignal {
    socket: UnixDatagram,
    path: PathBuf,
}

impl ReadySignal {
    /// Listens at `path`, replacing what a previous start left there.
    pub(crate) fn bind(path: PathBuf) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        Ok(Self { socket, path })
    }

    /// What to set `NOTIFY_SOCKET` to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns once the node has sent `READY=1` (never, if it does not: a binary built
    /// without systemd support says nothing, and its start falls back to asking).
    pub(crate) async fn ready(&self) {
        let mut message = [0u8; 1024];
        loop {
            match self.socket.recv(&mut message).await {
                Ok(length) if says_ready(&message[..length]) => return,
                Ok(_) => {}
                Err(_) => std::future::pending().await,
            }
        }
    }
}

impl Drop for ReadySignal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether one `sd_notify` message (newline-separated assignments) holds `READY=1`.
fn says_ready(message: &[u8]) -> bool {
    message.split(|b| *b == b'\n').any(|line| line == b"READY=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_1_counts() {
        assert!(says_ready(b"READY=1\n"));
        assert!(says_ready(b"STATUS=Ready to accept connections\nREADY=1"));
        assert!(!says_ready(b"STATUS=Redis is loading...\n"));
        assert!(!says_ready(b"READY=0\n"));
    }

    #[tokio::test]
    async fn a_ready_message_ends_the_wait_and_the_socket_goes_with_the_signal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.ready");
        let signal = ReadySignal::bind(path.clone()).expect("bind");
        let node = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        node.send_to(b"STATUS=Redis is loading...\n", &path).expect("send");
        node.send_to(b"STATUS=Ready to accept connections\nREADY=1\n", &path).expect("send");
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.ready()).await.expect("READY=1 heard");
        drop(signal);
        assert!(!path.exists());
    }
}
