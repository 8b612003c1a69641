-- Reserved cache nodes (PurchaseReservedCacheNodesOffering). Each document is owned by
-- crates/store/src/reserved_nodes.rs; `name` is the ReservedCacheNodeId. A reservation is
-- never deleted: AWS keeps it, `retired`, after its term.

CREATE TABLE reserved_cache_nodes (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, name)
);
