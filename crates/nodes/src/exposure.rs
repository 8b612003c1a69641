//! How nodes and the emulator's own endpoints are reached from elsewhere: where they listen
//! and the host name clients are told (`--node-listen`, `--advertise-host`).
//!
//! Every node always listens on its own loopback address as well: the runtime, replicas,
//! the cluster bus, endpoint proxies and bridges reach each other there, whatever clients
//! are told. So inside the emulator a node is known by its port alone, and an advertised
//! name in a redis answer (`MOVED`, `CLUSTER SLOTS`) stands for loopback
//! ([`internal_address`]).

use std::net::{Ipv4Addr, SocketAddr};

/// The host clients on this machine are told when nothing else is advertised.
pub const LOOPBACK_HOST: &str = "127.0.0.1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// Where nodes and endpoint proxies listen for clients: loopback (the default), one
    /// address, or `0.0.0.0` for every interface.
    pub listen: Ipv4Addr,
    /// The host every endpoint clients see names: API output, Memcached auto discovery,
    /// redis cluster redirections and slot maps, TLS certificates.
    pub host: String,
    /// The host's IPv4 address where it has one (the host itself, or what its name
    /// resolved to at start-up), for the IP column of Memcached auto discovery.
    pub ip: Option<Ipv4Addr>,
}

impl Default for Exposure {
    fn default() -> Self {
        Self { listen: Ipv4Addr::LOCALHOST, host: LOOPBACK_HOST.to_string(), ip: Some(Ipv4Addr::LOCALHOST) }
    }
}

impl Exposure {
    /// Nodes listening on `listen`, advertised as `host` (resolved once, here).
    pub fn new(listen: Ipv4Addr, host: String) -> Self {
        let ip = host.parse().ok().or_else(|| resolve(&host));
        Self { listen, host, ip }
    }

    /// Whether clients are told of anything but this machine's loopback.
    pub fn is_advertised(&self) -> bool {
        self.host != LOOPBACK_HOST
    }

    /// The addresses a node whose own address is `own` binds: its own (which the runtime
    /// and other nodes use) and the one clients reach, once.
    pub fn bind_addresses(&self, own: Ipv4Addr) -> Vec<Ipv4Addr> {
        if self.listen.is_unspecified() || self.listen == own { vec![self.listen] } else { vec![self.listen, own] }
    }
}

fn resolve(host: &str) -> Option<Ipv4Addr> {
    use std::net::ToSocketAddrs as _;
    let addresses = (host, 0).to_socket_addrs().ok()?;
    addresses.into_iter().find_map(|a| match a {
        SocketAddr::V4(v4) => Some(*v4.ip()),
        SocketAddr::V6(_) => None,
    })
}

/// Where the emulator itself reaches a node one of its nodes names as `host:port` (in
/// `MOVED`, `ASK` or `CLUSTER SLOTS`): a loopback address as it is, anything else (the
/// advertised host, by name or address) on loopback, where every node listens too.
pub fn internal_address(text: &str) -> Option<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>()
        && address.ip().is_loopback()
    {
        return Some(address);
    }
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_bind_their_own_address_and_the_listen_address_once() {
        let own = Ipv4Addr::LOCALHOST;
        assert_eq!(Exposure::default().bind_addresses(own), vec![own]);
        let all = Exposure::new(Ipv4Addr::UNSPECIFIED, "cache.test".into());
        assert_eq!(all.bind_addresses(own), vec![Ipv4Addr::UNSPECIFIED]);
        let one = Exposure::new(Ipv4Addr::new(10, 9, 0, 1), "10.9.0.1".into());
        assert_eq!(one.bind_addresses(own), vec![Ipv4Addr::new(10, 9, 0, 1), own]);
        assert_eq!(one.ip, Some(Ipv4Addr::new(10, 9, 0, 1)));
        assert!(one.is_advertised() && !Exposure::default().is_advertised());
    }

    #[test]
    fn an_advertised_name_in_a_redirection_stands_for_loopback() {
        assert_eq!(internal_address("127.0.0.2:7000"), Some("127.0.0.2:7000".parse().unwrap()));
        assert_eq!(internal_address("10.9.0.1:7000"), Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(internal_address("cache.test:7000"), Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(internal_address("cache.test"), None);
        assert_eq!(internal_address(":7000"), None);
    }
}
