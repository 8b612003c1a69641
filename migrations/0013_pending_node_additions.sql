-- The node count a cluster will have once its change waiting for the maintenance window is
-- applied (a virtual column, so the document stays the one place it is written), indexed
-- only where such a change waits: the node quota counts every cluster's pending additions
-- without reading every cluster.
ALTER TABLE cache_clusters ADD COLUMN pending_num_nodes INTEGER
    GENERATED ALWAYS AS (json_extract(data, '$.pending.num_nodes')) VIRTUAL;
CREATE INDEX cache_clusters_with_pending_nodes ON cache_clusters (region, account)
    WHERE pending_num_nodes IS NOT NULL;
