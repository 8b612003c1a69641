"""What a test suite using the elasticache-local pytest plugin looks like.

    pip install elasticache-local -r requirements.txt && pytest
"""

import redis


def describe_group(ec, group_id):
    return ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0]


def primary_of(group):
    (shard,) = group["NodeGroups"]
    return next(m["CacheClusterId"] for m in shard["NodeGroupMembers"] if m["CurrentRole"] == "primary")


def connect(endpoint):
    return redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=5)


def test_failover_keeps_what_was_written(elasticache):
    ec = elasticache.client()
    ec.create_replication_group(
        ReplicationGroupId="app",
        ReplicationGroupDescription="example",
        Engine="redis",
        CacheNodeType="cache.t3.micro",
        NumCacheClusters=2,
        AutomaticFailoverEnabled=True,
        MultiAZEnabled=True,
    )
    # The emulator answers once the group has settled: the waiter's first poll succeeds.
    available = ec.get_waiter("replication_group_available")
    available.wait(ReplicationGroupId="app")
    group = describe_group(ec, "app")
    assert group["MultiAZ"] == "enabled"
    members = ec.describe_cache_clusters(ShowCacheNodeInfo=True)["CacheClusters"]
    assert len({m["PreferredAvailabilityZone"] for m in members}) == 2, "one node per zone"

    (shard,) = group["NodeGroups"]
    connect(shard["PrimaryEndpoint"]).set("greeting", "hello")
    old_primary = primary_of(group)

    ec.test_failover(ReplicationGroupId="app", NodeGroupId="0001")
    available.wait(ReplicationGroupId="app")

    group = describe_group(ec, "app")
    assert primary_of(group) != old_primary
    # The endpoints stay where they were and follow the new roles.
    assert group["NodeGroups"][0]["ReaderEndpoint"] == shard["ReaderEndpoint"]
    reader = connect(shard["ReaderEndpoint"])
    assert reader.get("greeting") == b"hello"
    assert reader.role()[0] == b"slave"
    assert connect(shard["PrimaryEndpoint"]).role()[0] == b"master"


def test_every_test_starts_empty(elasticache):
    ec = elasticache.client()
    assert ec.describe_replication_groups()["ReplicationGroups"] == []
    assert ec.describe_cache_clusters()["CacheClusters"] == []
