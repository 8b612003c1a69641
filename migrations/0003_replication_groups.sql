-- Replication groups. Their members are cache_clusters rows whose document names the
-- group; the group's own document is owned by crates/store/src/replication_groups.rs.

CREATE TABLE replication_groups (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    id      TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, id)
);
