//! The HTTP/1.1 accept loop, with bounds that a slow or hostile client cannot wear out.
//!
//! - A request's headers must arrive within [`Limits::header_read_timeout`] of the
//!   connection opening (or of the previous response), else the connection is closed; the
//!   Query endpoint bounds reading a body by [`Limits::body_read_timeout`].
//! - At most [`Limits::max_connections`] are open at once. The next one closes the oldest
//!   connection with no request in progress, so that half-sent requests held open by one
//!   client cannot starve another; only when every open connection is mid-request is the
//!   newcomer turned away.
//!
//! HTTP/1.1 only: every AWS SDK speaks it to the Query API, and protocol detection would
//! have to wait for bytes a silent client never sends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// How many connections may be open, and how long a client may take to send a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// Applied by the Query endpoint, which reads its bodies itself.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    /// A quarter of the file descriptors this process may open, up to 4,096 (more than any
    /// test suite's client pools need), leaving the rest to the store and node connections.
    fn default() -> Self {
        Limits {
            max_connections: (open_files_limit() / 4).clamp(16, 4096),
            header_read_timeout: READ_TIMEOUT,
            body_read_timeout: READ_TIMEOUT,
        }
    }
}

/// SDKs send a request's headers and body at once; ten seconds is slack for a loaded CI runner.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn open_files_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok { usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX) } else { 1024 }
}

/// A listener on `address` whose queue of connections not yet accepted holds 1,024 (the
/// standard library's 128 overflows under a burst, and each lost SYN costs its client a
/// second).
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// The open connections, oldest first, and what happened to the ones that were not served.
#[derive(Default)]
pub struct Connections {
    open: Mutex<Open>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    by_age: BTreeMap<u64, Slot>,
}

struct Slot {
    requests_in_progress: Arc<AtomicUsize>,
    /// Held only to be dropped: that closes the connection.
    _close: oneshot::Sender<()>,
}

/// One admitted connection.
struct Admitted {
    requests_in_progress: Arc<AtomicUsize>,
    /// Resolves when the connection is evicted.
    closed: oneshot::Receiver<()>,
    registration: Registration,
}

/// Takes the connection out of the registry when dropped.
struct Registration {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.lock().by_age.remove(&self.id);
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open_count(&self) -> usize {
        self.lock().by_age.len()
    }

    /// Idle connections closed to make room for a new one.
    pub fn evicted_count(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// New connections closed at once because every open one was mid-request.
    pub fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Registers a new connection, first closing the oldest idle one if `max` are open.
    /// None when every open connection has a request in progress.
    fn admit(self: &Arc<Self>, max: usize) -> Option<Admitted> {
        let mut open = self.lock();
        if open.by_age.len() >= max {
            let idle = open
                .by_age
                .iter()
                .find(|(_, slot)| slot.requests_in_progress.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id);
            let Some(idle) = idle else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            // Dropping the sender wakes the connection's task, which closes its socket.
            open.by_age.remove(&idle);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = open.next_id;
        open.next_id += 1;
        let requests_in_progress = Arc::new(AtomicUsize::new(0));
        let (close, closed) = oneshot::channel();
        open.by_age.insert(id, Slot { requests_in_progress: requests_in_progress.clone(), _close: close });
        Some(Admitted { requests_in_progress, closed, registration: Registration { id, connections: self.clone() } })
    }
}

/// Serves `app` on `listener` until `stopped` turns true, then lets every open connection
/// finish its request in progress and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    connections: Arc<Connections>,
    stopped: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    let mut stop = stopped.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(admitted) = connections.admit(limits.max_connections) {
                        tasks.spawn(serve_connection(stream, app.clone(), limits, admitted, stopped.clone()));
                    }
                }
                // Out of file descriptors, or a connection reset before it was accepted:
                // the listener itself is fine. A short pause lets descriptors free up
                // instead of spinning on the same error.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = tasks.join_next() => {}
            () = until_true(&mut stop) => break,
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    admitted: Admitted,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Admitted { requests_in_progress: in_progress, mut closed, registration: _registration } = admitted;
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let request_guard = InProgress::enter(&in_progress);
        async move {
            let response = app.oneshot(request.map(axum::body::Body::new)).await;
            drop(request_guard);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            // Evicted: dropping the connection closes the socket.
            _ = &mut closed => break,
            () = until_true(&mut stopped), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Counts a request in progress on its connection for as long as it lives.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InProgress(counter.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_registry_evicts_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let connections = Arc::new(Connections::default());
        let first = connections.admit(2).unwrap();
        let second = connections.admit(2).unwrap();
        let _busy = InProgress::enter(&first.requests_in_progress);
        let mut closed = second.closed;
        // The first is mid-request; the second, idle, makes room.
        let third = connections.admit(2).unwrap();
        assert!(closed.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Closed));
        assert_eq!((connections.open_count(), connections.evicted_count()), (2, 1));
        let _also_busy = InProgress::enter(&third.requests_in_progress);
        assert!(connections.admit(2).is_none());
        assert_eq!(connections.refused_count(), 1);
        drop(first);
        assert_eq!(connections.open_count(), 1);
    }
}
