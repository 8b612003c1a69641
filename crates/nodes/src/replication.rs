//! What a redis/valkey node says about its replication: [`ReplicationInfo`], parsed from
//! `INFO replication`. The reconciler reads it to pick a failover target (the replica with
//! the highest offset) and to tell when a new replica has caught up.
//!
//! # Layout
//! - [`Role`]: primary or replica.
//! - [`ReplicationInfo`]: the fields a replication group needs, and [`ReplicationInfo::parse`].

use std::net::Ipv4Addr;

use crate::NodeError;

/// A node's role in its replication group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `role:master`.
    Primary,
    /// `role:slave`.
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsed `INFO replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationInfo {
    pub role: Role,
    /// The primary a replica follows (`master_host`/`master_port`); `None` for a primary,
    /// or when the host is not an IPv4 address (nodes here are only ever given addresses).
    pub primary: Option<(Ipv4Addr, u16)>,
    /// Replica: `master_link_status:up`. Primary: always `true`.
    pub link_up: bool,
    /// Primary: `master_repl_offset`. Replica: `slave_repl_offset`, or `master_repl_offset`
    /// when the engine does not report the former.
    pub offset: u64,
    /// `connected_slaves`: replicas attached to this node.
    pub connected_replicas: usize,
    /// Replica: its link to the primary has been up since the process started. A replica
    /// that restarted from its own files, or is in its first sync, reports
    /// `master_link_down_since_seconds:-1` (redis 7, valkey 8): its data is not the primary's.
    /// Primary: always `true`.
    pub linked_since_start: bool,
}

impl ReplicationInfo {
    /// Parses the text of an `INFO replication` reply (`field:value` lines, `#` headers).
    pub fn parse(text: &str) -> Result<Self, NodeError> {
        let field = |name: &str| crate::resp::info_field(text, name);
        let number = |name: &str| field(name).and_then(|value| value.parse::<u64>().ok());

        // Valkey has kept the redis names in INFO; the new ones are accepted in case a
        // future release switches.
        let role = match field("role") {
            Some("master" | "primary") => Role::Primary,
            Some("slave" | "replica") => Role::Replica,
            other => return Err(NodeError::Protocol(format!("INFO replication without a known role: {other:?}"))),
        };
        let connected_replicas = number("connected_slaves").and_then(|n| usize::try_from(n).ok()).unwrap_or_default();
        let info = match role {
            Role::Primary => ReplicationInfo {
                role,
                primary: None,
                link_up: true,
                offset: number("master_repl_offset").unwrap_or_default(),
                connected_replicas,
                linked_since_start: true,
            },
            Role::Replica => {
                let host = field("master_host").and_then(|host| match host {
                    "localhost" => Some(Ipv4Addr::LOCALHOST),
                    host => host.parse::<Ipv4Addr>().ok(),
                });
                let port = field("master_port").and_then(|port| port.parse::<u16>().ok());
                let link_up = field("master_link_status") == Some("up");
                ReplicationInfo {
                    role,
                    primary: host.zip(port),
                    link_up,
                    linked_since_start: link_up || field("master_link_down_since_seconds") != Some("-1"),
                    offset: number("slave_repl_offset")
                        .or_else(|| number("replica_repl_offset"))
                        .or_else(|| number("master_repl_offset"))
                        .unwrap_or_default(),
                    connected_replicas,
                }
            }
        };
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_primary() {
        let text = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
            slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\n\
            master_failover_state:no-failover\r\nmaster_replid:abc\r\nmaster_repl_offset:42\r\n";
        assert_eq!(
            ReplicationInfo::parse(text).expect("parse"),
            ReplicationInfo {
                role: Role::Primary,
                primary: None,
                link_up: true,
                offset: 42,
                connected_replicas: 2,
                linked_since_start: true,
            }
        );
    }

    #[test]
    fn parses_a_replica() {
        let text = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.2\r\nmaster_port:6380\r\n\
            master_link_status:down\r\nslave_repl_offset:17\r\nmaster_link_down_since_seconds:3\r\n\
            connected_slaves:0\r\nmaster_repl_offset:99\r\n";
        assert_eq!(
            ReplicationInfo::parse(text).expect("parse"),
            ReplicationInfo {
                role: Role::Replica,
                primary: Some((Ipv4Addr::new(127, 0, 0, 2), 6380)),
                link_up: false,
                offset: 17,
                connected_replicas: 0,
                linked_since_start: true,
            }
        );
        // Restarted from its own files (or in its first sync) and not linked since: redis
        // reports the link down since "-1", whatever offset its files gave it.
        let text = "role:slave\nmaster_link_status:down\nslave_repl_offset:1\nmaster_link_down_since_seconds:-1\n";
        let info = ReplicationInfo::parse(text).expect("parse");
        assert_eq!((info.link_up, info.linked_since_start), (false, false));
        // Without slave_repl_offset the replica's own master_repl_offset stands in.
        let text = "role:slave\nmaster_host:localhost\nmaster_port:1\nmaster_link_status:up\nmaster_repl_offset:5\n";
        let info = ReplicationInfo::parse(text).expect("parse");
        assert_eq!((info.primary, info.link_up, info.offset), (Some((Ipv4Addr::LOCALHOST, 1)), true, 5));
    }

    #[test]
    fn rejects_text_without_a_role() {
        assert!(matches!(ReplicationInfo::parse("-ERR nope"), Err(NodeError::Protocol(_))));
        assert!(matches!(ReplicationInfo::parse("role:sentinel"), Err(NodeError::Protocol(_))));
    }
}
