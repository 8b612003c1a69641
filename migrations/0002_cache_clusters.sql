-- Cache clusters and their nodes. The desired spec and observed status of each is a JSON
-- document owned by the store's record types (crates/store/src/cache_clusters.rs); the key
-- columns are what lookups and uniqueness need.

CREATE TABLE cache_clusters (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    id      TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, id)
);

CREATE TABLE cache_nodes (
    region     TEXT NOT NULL,
    account    TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (region, account, cluster_id, node_id),
    FOREIGN KEY (region, account, cluster_id)
        REFERENCES cache_clusters (region, account, id) ON DELETE CASCADE
);

-- What DescribeEvents answers: every state change writes one in the same transaction.
CREATE TABLE events (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    region            TEXT NOT NULL,
    account           TEXT NOT NULL,
    source_type       TEXT NOT NULL,
    source_identifier TEXT NOT NULL,
    message           TEXT NOT NULL,
    date_millis       INTEGER NOT NULL
);
CREATE INDEX events_by_date ON events (region, account, date_millis);
