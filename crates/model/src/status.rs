//! Statuses as AWS spells them, the source types events are recorded under, and transit
//! encryption modes.

/// Cache clusters, their nodes, and replication groups.
pub mod cluster {
    pub const CREATING: &str = "creating";
    pub const AVAILABLE: &str = "available";
    pub const MODIFYING: &str = "modifying";
    pub const DELETING: &str = "deleting";
    pub const REBOOTING: &str = "rebooting cache cluster nodes";
    pub const SNAPSHOTTING: &str = "snapshotting";
    /// A replication group whose primary replicates from a customer's server (StartMigration).
    pub const MIGRATING: &str = "migrating";
    /// A node could not start; nothing is retried, the resource can only be deleted (as on
    /// AWS, e.g. for lack of capacity).
    pub const CREATE_FAILED: &str = "create-failed";
    /// The snapshot a new cluster restores could not be loaded; like `create-failed`.
    pub const RESTORE_FAILED: &str = "restore-failed";
    /// A node would not start with its parameter group's values. The emulator keeps
    /// trying (with a back-off): reverting the parameters brings the cluster back, as AWS
    /// documents.
    pub const INCOMPATIBLE_PARAMETERS: &str = "incompatible-parameters";
    /// What DeleteCacheCluster and DeleteReplicationGroup accept.
    pub const DELETABLE: &[&str] = &[AVAILABLE, CREATE_FAILED, RESTORE_FAILED, INCOMPATIBLE_PARAMETERS];
    /// Creation ended without a cluster: nothing is retried, it can only be deleted.
    pub const FAILED_CREATION: &[&str] = &[CREATE_FAILED, RESTORE_FAILED];
    /// Statuses the emulator moves on from by itself.
    pub const TRANSITIONAL: &[&str] = &[CREATING, MODIFYING, DELETING, REBOOTING, SNAPSHOTTING];
    /// A node being rebooted (node status).
    pub const NODE_REBOOTING: &str = "rebooting";
    /// Parameter statuses of a node.
    pub const IN_SYNC: &str = "in-sync";
    pub const APPLYING: &str = "applying";
    pub const PENDING_REBOOT: &str = "pending-reboot";
}

/// Snapshots.
pub mod snapshot {
    pub const CREATING: &str = "creating";
    pub const AVAILABLE: &str = "available";
    pub const EXPORTING: &str = "exporting";
    pub const DELETING: &str = "deleting";
    /// The source's data could not be saved (its node stayed unreachable); the source is
    /// available again, and the snapshot can only be deleted.
    pub const FAILED: &str = "failed";
    /// Statuses the emulator moves on from by itself.
    pub const TRANSITIONAL: &[&str] = &[CREATING, EXPORTING, DELETING];
}

/// Users and user groups.
pub mod user {
    pub const CREATING: &str = "creating";
    pub const ACTIVE: &str = "active";
    pub const MODIFYING: &str = "modifying";
    pub const DELETING: &str = "deleting";
}

/// Global datastores and their members (the Terraform provider's status constants and
/// AWS's CLI examples).
pub mod global {
    pub const CREATING: &str = "creating";
    pub const AVAILABLE: &str = "available";
    /// Only the primary is left: as settled as `available`.
    pub const PRIMARY_ONLY: &str = "primary-only";
    pub const MODIFYING: &str = "modifying";
    pub const DELETING: &str = "deleting";
    /// Statuses a change can start from.
    pub const SETTLED: &[&str] = &[AVAILABLE, PRIMARY_ONLY];

    pub mod member {
        pub const ASSOCIATING: &str = "associating";
        pub const ASSOCIATED: &str = "associated";
    }
}

/// The `SourceType` of events, as DescribeEvents names them.
pub mod source {
    pub const CACHE_CLUSTER: &str = "cache-cluster";
    pub const REPLICATION_GROUP: &str = "replication-group";
}

/// Transit encryption modes.
pub mod transit {
    /// TLS and plaintext both accepted (by the endpoints; nodes stay plaintext).
    pub const PREFERRED: &str = "preferred";
    /// TLS only, nodes included.
    pub const REQUIRED: &str = "required";
}
