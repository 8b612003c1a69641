-- A replication group's members by index rather than by reading every cluster of the
-- region: the group a cluster belongs to, as its document says (a virtual column, so the
-- document stays the one place it is written).
ALTER TABLE cache_clusters ADD COLUMN replication_group_id TEXT
    GENERATED ALWAYS AS (json_extract(data, '$.replication_group_id')) VIRTUAL;
CREATE INDEX cache_clusters_by_group ON cache_clusters (region, account, replication_group_id, id);
