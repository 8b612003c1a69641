-- Which clusters and groups changed since the reconciler last looked: each write stamps
-- its row with the next version of its table, so a pass over changes reads those rows
-- alone (by index) rather than every row.
ALTER TABLE cache_clusters ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX cache_clusters_by_version ON cache_clusters (version);
ALTER TABLE replication_groups ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX replication_groups_by_version ON replication_groups (version);
