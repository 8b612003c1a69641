-- The last version each table's writes were stamped with. Taking the next version from
-- MAX(version) handed a deleted row's version out again: a write stamped with it was below
-- what the reconciler had read up to, and it never saw the write.
CREATE TABLE write_versions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO write_versions (name, version)
    SELECT 'cache_clusters', IFNULL(MAX(version), 0) FROM cache_clusters;
INSERT INTO write_versions (name, version)
    SELECT 'replication_groups', IFNULL(MAX(version), 0) FROM replication_groups;
