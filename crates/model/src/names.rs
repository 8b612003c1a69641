//! How AWS names what a resource is made of.

/// The one node group of a replication group with cluster mode disabled.
pub const NODE_GROUP_ID: &str = "0001";
/// The ARN prefix of an S3 object (SnapshotArns, export targets).
pub const S3_ARN_PREFIX: &str = "arn:aws:s3:::";
/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// A cache node: `0001`, `0002`, ...
pub fn node_id(index: usize) -> String {
    format!("{index:04}")
}

/// A member of a replication group with cluster mode disabled: `<group>-001`, ...
pub fn member_id(group: &str, index: usize) -> String {
    format!("{group}-{index:03}")
}

/// A node group (shard): `0001`, `0002`, ...
pub fn node_group_id(index: usize) -> String {
    format!("{index:04}")
}

/// A member of a shard of a cluster-mode group: `<group>-<shard>-001`, ...
pub fn shard_member_id(group: &str, node_group: &str, index: usize) -> String {
    format!("{group}-{node_group}-{index:03}")
}

/// The replication group (cluster mode enabled) that holds a serverless cache's data, and
/// the snapshots of it, live in the same tables as the user's own under this prefix: no
/// identifier a user can give contains a colon, so they never collide, and every listing a
/// user sees leaves them out ([`is_serverless_backing`]).
const SERVERLESS_PREFIX: &str = "serverless:";

/// The replication group behind serverless cache `name`; also the name its snapshots are
/// stored under (`serverless_backing("my-snapshot")`).
pub fn serverless_backing(name: &str) -> String {
    format!("{SERVERLESS_PREFIX}{name}")
}

/// The serverless name behind a backing group, member or snapshot id.
pub fn serverless_name(backing: &str) -> Option<&str> {
    backing.strip_prefix(SERVERLESS_PREFIX)
}

/// Whether an id (group, member, snapshot) belongs to a serverless cache's backing.
pub fn is_serverless_backing(id: &str) -> bool {
    id.starts_with(SERVERLESS_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_aws_gives_them() {
        assert_eq!(node_id(1), "0001");
        assert_eq!(member_id("cache", 2), "cache-002");
        assert_eq!(shard_member_id("cache", &node_group_id(3), 1), "cache-0003-001");
    }

    #[test]
    fn serverless_backings_are_told_apart() {
        let group = serverless_backing("sessions");
        assert!(is_serverless_backing(&shard_member_id(&group, "0001", 1)));
        assert_eq!(serverless_name(&group), Some("sessions"));
        assert!(!is_serverless_backing("sessions"));
    }
}
