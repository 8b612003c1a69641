//! Ports for nodes and endpoints that outlive a restart of the emulator.
//!
//! A port the kernel hands out for port 0 comes from the ephemeral range, which every
//! outgoing connection on the machine draws its local port from too: while the emulator is
//! down, any client connection may take a stopped node's port, and the node comes back
//! elsewhere. Ports are therefore taken below that range, at random, and checked free.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The lowest port given out.
const LOWEST: u16 = 10_000;
/// Tries at a random port before falling back on the kernel's choice.
const TRIES: usize = 64;

/// The first port of the kernel's ephemeral range (`ip_local_port_range`), 32768 when it
/// cannot be read.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A port nothing listens on at `address` right now, below the ephemeral range when there
/// is room there; the kernel's choice otherwise.
pub fn free_port(address: Ipv4Addr) -> std::io::Result<u16> {
    let end = ephemeral_start();
    if end > LOWEST {
        let span = u64::from(end - LOWEST);
        for _ in 0..TRIES {
            let port = LOWEST + (random() % span) as u16;
            if TcpListener::bind(SocketAddr::from((address, port))).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind(SocketAddr::from((address, 0)))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_free() {
        let end = ephemeral_start();
        for _ in 0..20 {
            let port = free_port(Ipv4Addr::LOCALHOST).expect("a port");
            if end > LOWEST {
                assert!((LOWEST..end).contains(&port), "{port} outside {LOWEST}..{end}");
            }
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("free");
        }
    }
}
