-- Global datastores (CreateGlobalReplicationGroup). A global datastore belongs to an account,
-- not a region: it links replication groups of several regions. Each document is owned by
-- crates/store/src/global.rs; `name` is the GlobalReplicationGroupId.

CREATE TABLE global_replication_groups (
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (account, name)
);
