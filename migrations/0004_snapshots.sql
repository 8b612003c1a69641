-- Snapshots: the metadata of RDB files kept under <state dir>/snapshots/. The document is
-- owned by crates/store/src/snapshots.rs.

CREATE TABLE snapshots (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, name)
);
