//! Redis Cluster, as the reconciler drives it: hash slots, a node's parsed view of the
//! cluster (`CLUSTER NODES`), and moving one slot's keys from one primary to another the
//! way `redis-cli --cluster reshard` does, so clients keep reading every key throughout.
//!
//! # Layout
//! - [`key_slot`]: the slot a key hashes to (CRC16, with `{hash tags}`).
//! - [`ClusterNode`], [`parse_nodes`]: one line of `CLUSTER NODES`.
//! - [`Session`]: one connection for many commands (a migration sends thousands).
//! - [`migrate_slots`]: IMPORTING/MIGRATING, MIGRATE in batches, then SETSLOT NODE.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::NodeError;
use crate::resp::{self, Reply};

/// Redis Cluster's number of hash slots.
pub const SLOTS: u16 = 16384;
/// Keys moved per MIGRATE.
const MIGRATE_BATCH: usize = 500;
/// How long one command of a session may take (a MIGRATE of a batch of big keys included).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The slot of a key: only the part between the first `{` and the next `}` counts when it
/// is not empty, so related keys can share a slot.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// One node as another node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub address: Option<SocketAddr>,
    /// The line of the node that answered.
    pub myself: bool,
    pub primary: bool,
    /// A replica's primary.
    pub primary_id: Option<String>,
    /// Flagged `fail` (agreed failed) or `fail?` (suspected).
    pub failing: bool,
    /// Slot ranges owned, inclusive (migration markers left out).
    pub slots: Vec<(u16, u16)>,
    /// The configuration epoch: of the node for a primary, of its primary for a replica.
    pub epoch: u64,
}

/// Parses a `CLUSTER NODES` reply: `<id> <ip:port@cport> <flags> <primary> <ping> <pong>
/// <epoch> <link> <slot>...` per line.
pub fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let flags: Vec<&str> = fields[2].split(',').collect();
            let address = fields[1].split(['@', ',']).next().and_then(|a| a.parse().ok());
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((from, to)) => Some((from.parse().ok()?, to.parse().ok()?)),
                    None => s.parse().ok().map(|slot| (slot, slot)),
                })
                .collect();
            Some(ClusterNode {
                id: fields[0].to_string(),
                address,
                myself: flags.contains(&"myself"),
                primary: flags.contains(&"master"),
                primary_id: (fields[3] != "-").then(|| fields[3].to_string()),
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                slots,
                epoch: fields[6].parse().unwrap_or(0),
            })
        })
        .collect()
}

/// A connection to one node for a run of commands.
pub struct Session {
    stream: BufReader<UnixStream>,
}

impl Session {
    pub(crate) fn new(stream: BufReader<UnixStream>) -> Self {
        Self { stream }
    }

    /// The connection itself, for a caller with its own framing (the replication bridge's
    /// pipelines). Nothing is lost from the buffer: every reply read so far was consumed.
    pub(crate) fn into_stream(self) -> UnixStream {
        self.stream.into_inner()
    }

    /// Sends one command; an error reply is an error here.
    pub async fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, NodeError> {
        match tokio::time::timeout(SESSION_TIMEOUT, resp::command(&mut self.stream, args)).await {
            Ok(Ok(Reply::Error(error))) => Err(NodeError::Protocol(error)),
            Ok(result) => result,
            Err(_) => Err(NodeError::TimedOut { after: SESSION_TIMEOUT }),
        }
    }

    /// Sends `commands` at once and reads their replies in order (one round trip, and the
    /// node saves its cluster configuration once for the lot); any error reply is an error.
    pub async fn pipeline(&mut self, commands: &[Vec<String>]) -> Result<Vec<Reply>, NodeError> {
        let exchange = async {
            let bytes: Vec<u8> = commands.iter().flat_map(|args| resp::encode(args)).collect();
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in commands {
                replies.push(resp::read_reply(&mut self.stream).await?);
            }
            Ok::<_, NodeError>(replies)
        };
        let replies = tokio::time::timeout(SESSION_TIMEOUT, exchange)
            .await
            .map_err(|_| NodeError::TimedOut { after: SESSION_TIMEOUT })??;
        match replies.iter().find_map(|r| match r {
            Reply::Error(e) => Some(e.clone()),
            _ => None,
        }) {
            Some(error) => Err(NodeError::Protocol(error)),
            None => Ok(replies),
        }
    }

    /// `CLUSTER NODES`, parsed.
    pub async fn nodes(&mut self) -> Result<Vec<ClusterNode>, NodeError> {
        match self.command(&["CLUSTER", "NODES"]).await? {
            reply @ (Reply::Bulk(_) | Reply::Simple(_)) => Ok(parse_nodes(&reply.as_text().unwrap_or_default())),
            other => Err(NodeError::Protocol(format!("CLUSTER NODES answered {other:?}"))),
        }
    }
}

/// One end of a slot migration: its session, cluster id and address.
pub struct Primary<'a> {
    pub session: &'a mut Session,
    pub id: &'a str,
    pub address: SocketAddr,
}

/// Moves `slots` with their keys from `from` to `to`; gossip tells the other nodes. Keys
/// stay readable throughout: a client asking `from` for a key already moved is sent on to
/// `to` (ASK), and no new key lands on `from` once a slot is migrating. Each step is one
/// pipeline for all the slots, so empty slots cost no round trip of their own. Returns the
/// number of keys moved.
pub async fn migrate_slots(
    slots: &[u16],
    from: Primary<'_>,
    to: Primary<'_>,
    (user, password): (&str, &str),
) -> Result<usize, NodeError> {
    let each = |words: &[&str]| -> Vec<Vec<String>> {
        slots
            .iter()
            .map(|slot| {
                let slot = slot.to_string();
                words.iter().map(|w| if *w == "{slot}" { slot.clone() } else { w.to_string() }).collect()
            })
            .collect()
    };
    to.session.pipeline(&each(&["CLUSTER", "SETSLOT", "{slot}", "IMPORTING", from.id])).await?;
    from.session.pipeline(&each(&["CLUSTER", "SETSLOT", "{slot}", "MIGRATING", to.id])).await?;
    let counts = from.session.pipeline(&each(&["CLUSTER", "COUNTKEYSINSLOT", "{slot}"])).await?;
    let batch = MIGRATE_BATCH.to_string();
    let (ip, port) = (ip(&to.address).to_string(), to.address.port().to_string());
    let mut moved = 0;
    for (slot, count) in slots.iter().zip(counts) {
        if matches!(count, Reply::Integer(0)) {
            continue;
        }
        let slot_arg = slot.to_string();
        loop {
            let keys = match from.session.command(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, &batch]).await? {
                Reply::Array(Some(keys)) => keys,
                other => return Err(NodeError::Protocol(format!("CLUSTER GETKEYSINSLOT answered {other:?}"))),
            };
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<Vec<u8>> =
                ["MIGRATE", &ip, &port, "", "0", "5000", "REPLACE"].iter().map(|a| a.as_bytes().to_vec()).collect();
            args.extend([b"AUTH2".to_vec(), user.as_bytes().to_vec(), password.as_bytes().to_vec()]);
            args.push(b"KEYS".to_vec());
            let count = keys.len();
            args.extend(keys.into_iter().filter_map(|k| match k {
                Reply::Bulk(Some(key)) => Some(key),
                _ => None,
            }));
            from.session.command(&args).await?;
            moved += count;
        }
    }
    // The new owner first: it bumps its epoch, so the change wins everywhere.
    to.session.pipeline(&each(&["CLUSTER", "SETSLOT", "{slot}", "NODE", to.id])).await?;
    from.session.pipeline(&each(&["CLUSTER", "SETSLOT", "{slot}", "NODE", to.id])).await?;
    Ok(moved)
}

fn ip(address: &SocketAddr) -> Ipv4Addr {
    match address.ip() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
    }
}

/// Folds sorted slots into inclusive ranges.
pub fn ranges(slots: impl IntoIterator<Item = u16>) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for slot in slots {
        match out.last_mut() {
            Some((_, to)) if *to + 1 == slot => *to = slot,
            _ => out.push((slot, slot)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n\
                    e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,hostname1 myself,master - 0 0 1 connected 0-5460 5462 [5463->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]\n\
                    292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail? - 0 1426238316232 3 connected\n";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert!(
            !nodes[0].primary && nodes[0].primary_id.as_deref() == Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(nodes[1].myself && nodes[1].primary);
        assert_eq!(nodes[1].slots, vec![(0, 5460), (5462, 5462)]);
        assert_eq!((nodes[0].epoch, nodes[1].epoch), (4, 1));
        assert_eq!(nodes[1].address, Some("127.0.0.1:30001".parse().expect("address")));
        assert!(nodes[2].failing && nodes[2].slots.is_empty());
    }

    #[test]
    fn folds_ranges() {
        assert_eq!(ranges([1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 7), (9, 10)]);
        assert!(ranges([]).is_empty());
    }
}
