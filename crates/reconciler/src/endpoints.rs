//! The endpoints the emulator serves in front of a group's nodes: primary and reader
//! (cluster mode disabled and compatible) and configuration (cluster mode), each a proxy
//! that keeps its port and is pointed at nodes as they change role.

use std::net::{Ipv4Addr, SocketAddr};

use std::collections::HashMap;

use nodes::{Balance, ClusterConfig, ConfigEndpoint, EndpointProxy};
use store::ReplicationGroup;
use tokio::sync::watch;

use crate::error::Error;
use crate::{ClusterKey, Reconciler};

/// Every endpoint the emulator serves, by cluster or group.
#[derive(Default)]
pub(crate) struct Served {
    /// Memcached configuration endpoints, with the sender that publishes node lists.
    pub(crate) memcached: tokio::sync::Mutex<HashMap<ClusterKey, (ConfigEndpoint, watch::Sender<ClusterConfig>)>>,
    /// Primary, reader and configuration endpoints of every replication group.
    pub(crate) groups: tokio::sync::Mutex<HashMap<ClusterKey, GroupEndpoints>>,
    /// The writer and reader endpoints of every serverless cache.
    pub(crate) serverless: tokio::sync::Mutex<HashMap<ClusterKey, crate::serverless::CacheEndpoints>>,
}

impl Served {
    /// Stops every endpoint.
    pub(crate) async fn clear(&self) {
        self.memcached.lock().await.clear();
        self.groups.lock().await.clear();
        self.serverless.lock().await.clear();
    }
}

/// Starts a listener (`start` takes the port) on the recorded `port`, or on a free one the
/// first time or when the recorded one was taken while the emulator was down.
pub(crate) async fn on_recorded_port<T, Fut>(port: Option<u16>, start: impl Fn(u16) -> Fut) -> Result<T, Error>
where
    Fut: std::future::Future<Output = Result<T, nodes::NodeError>>,
{
    if let Some(port) = port
        && let Ok(started) = start(port).await
    {
        return Ok(started);
    }
    // A port of its own below the ephemeral range (see `nodes::ports`), so that it is still
    // free after a restart; taken meanwhile (a race), the next one.
    let mut last = None;
    for _ in 0..4 {
        let free = nodes::ports::free_port(Ipv4Addr::LOCALHOST).map_err(|e| Error::Node(e.into()))?;
        match start(free).await {
            Ok(started) => return Ok(started),
            Err(error) => last = Some(error),
        }
    }
    Err(Error::Node(last.unwrap_or_else(|| nodes::NodeError::Protocol("no free port".to_string()))))
}

/// An emulator-served endpoint: the proxy, and the sender that points it at nodes.
pub struct Endpoint {
    proxy: EndpointProxy,
    targets: watch::Sender<Vec<SocketAddr>>,
}

impl Endpoint {
    /// Starts on the recorded port, or a free one the first time (or when the recorded one
    /// was taken while the emulator was down).
    pub async fn start(listen: Ipv4Addr, port: Option<u16>, balance: Balance) -> Result<Self, Error> {
        let (targets, rx) = watch::channel(Vec::new());
        let proxy = on_recorded_port(port, |p| EndpointProxy::start(listen, p, rx.clone(), balance)).await?;
        Ok(Self { proxy, targets })
    }

    pub fn port(&self) -> u16 {
        self.proxy.port()
    }

    /// What new connections get: plaintext, TLS, or either (transit encryption mode).
    pub fn set_tls(&self, tls: nodes::ProxyTls) {
        self.proxy.set_tls(tls);
    }

    /// Points the endpoint at `next`; connections to nodes no longer listed are closed
    /// (unless drained). A node listed again is no longer drained.
    pub fn point_at(&self, next: Vec<SocketAddr>) {
        for target in &next {
            self.proxy.undrain(*target);
        }
        self.targets.send_if_modified(|t| replace(t, next));
    }

    /// When `target` leaves the list, its connections run on until their clients close
    /// them (see [`Endpoint::open_to`]) instead of being closed.
    pub fn drain(&self, target: SocketAddr) {
        self.proxy.drain(target);
    }

    /// How many connections are forwarded to `target` now.
    pub fn open_to(&self, target: SocketAddr) -> usize {
        self.proxy.open_to(target)
    }

    /// Takes `target` out of the list (its connections are closed), unless it is the last.
    pub fn remove(&self, target: SocketAddr) {
        self.targets.send_if_modified(|t| {
            let before = t.len();
            if before > 1 {
                t.retain(|a| *a != target);
            }
            t.len() != before
        });
    }
}

/// The endpoints of one group, each started the first time it is needed: primary and
/// reader (cluster mode disabled and compatible), configuration (cluster mode).
#[derive(Default)]
pub struct GroupEndpoints {
    pub primary: Option<Endpoint>,
    pub reader: Option<Endpoint>,
    pub configuration: Option<Endpoint>,
}

/// The endpoint in `slot`, started on `port` (or a free one) if it is not running yet.
pub async fn ensure<'a>(
    r: &Reconciler,
    slot: &'a mut Option<Endpoint>,
    port: Option<u16>,
    balance: Balance,
) -> Result<&'a Endpoint, Error> {
    if slot.is_none() {
        *slot = Some(Endpoint::start(r.runtime.exposure().listen, port, balance).await?);
    }
    slot.as_ref().ok_or(Error::Store(store::StoreError::NotFound))
}

/// Points a group's primary endpoint at `primary` and its reader endpoint at `replicas`
/// (at the primary when there are none); returns their ports. Of the nodes that leave the
/// reader endpoint, those in `serving` keep their connections until their clients close
/// them: reads on a replica re-pointed or promoted, or about to restart for a reboot, are
/// as good as ever; only a node that stopped answering has its readers cut off at once.
pub async fn point_primary_and_reader(
    r: &Reconciler,
    g: &ReplicationGroup,
    primary: Option<SocketAddr>,
    replicas: Vec<SocketAddr>,
    serving: &[SocketAddr],
) -> Result<(u16, u16), Error> {
    let mut all = r.endpoints.groups.lock().await;
    let endpoints = all.entry((g.scope.clone(), g.group.id.clone())).or_default();
    let primary_targets: Vec<SocketAddr> = primary.into_iter().collect();
    let reader_targets = if replicas.is_empty() { primary_targets.clone() } else { replicas };
    let endpoint = ensure(r, &mut endpoints.primary, g.group.primary_endpoint_port, Balance::First).await?;
    endpoint.point_at(primary_targets);
    let primary_port = endpoint.port();
    let endpoint = ensure(r, &mut endpoints.reader, g.group.reader_endpoint_port, Balance::RoundRobin).await?;
    for node in serving.iter().filter(|node| !reader_targets.contains(node)) {
        endpoint.drain(*node);
    }
    endpoint.point_at(reader_targets);
    let reader_port = endpoint.port();
    endpoints.set_tls(r.proxy_tls(g.group.security.mode()).map_err(Error::Node)?);
    Ok((primary_port, reader_port))
}

impl GroupEndpoints {
    /// Every endpoint of the group speaks what the group's transit encryption says.
    pub fn set_tls(&self, tls: nodes::ProxyTls) {
        for endpoint in [&self.primary, &self.reader, &self.configuration].into_iter().flatten() {
            endpoint.set_tls(tls.clone());
        }
    }
}

fn replace(current: &mut Vec<SocketAddr>, next: Vec<SocketAddr>) -> bool {
    let changed = *current != next;
    *current = next;
    changed
}
