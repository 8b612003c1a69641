-- Serverless caches. Their data lives in a replication group (and their snapshots in
-- snapshots rows) under model::names::serverless_backing ids; this is the cache's own
-- document, owned by crates/store/src/serverless.rs.

CREATE TABLE serverless_caches (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, name)
);
