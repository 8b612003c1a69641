"""The client half of advertise-host.sh, run in its own network namespace: everything it
knows of the emulator is the advertised host name. Through the API it creates a
replication group and a cluster-mode group, connects through the endpoints it is handed,
follows MOVED, survives a failover of each, and checks that no 127.0.0.1 reaches it; then
a serverless cache, over TLS verified against the emulator's CA for the advertised name.

    python3 advertise_client.py http://elasticache:4566 elasticache
"""

import json
import socket
import ssl
import sys
import time
import urllib.request

import boto3

API, HOST = sys.argv[1], sys.argv[2]
ec = boto3.client("elasticache", endpoint_url=API, region_name="us-east-1")
WAIT = {"Delay": 1, "MaxAttempts": 60}


def ok(message):
    print(f"ok: {message}", flush=True)


def no_loopback(what, value):
    text = json.dumps(value, default=str)
    assert "127.0.0.1" not in text, f"{what} names 127.0.0.1: {text}"


def endpoints_of(value):
    """Every {Address, Port} object anywhere in an API answer."""
    if isinstance(value, dict):
        if "Address" in value and "Port" in value:
            yield value
        for v in value.values():
            yield from endpoints_of(v)
    elif isinstance(value, list):
        for v in value:
            yield from endpoints_of(v)


def check_answer(what, answer):
    answer = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
    no_loopback(what, answer)
    addresses = {e["Address"] for e in endpoints_of(answer)}
    assert addresses == {HOST}, f"{what}: endpoints name {addresses}, not {HOST}"


class Redis:
    """A RESP2 connection, enough for SET, GET and CLUSTER SLOTS."""

    def __init__(self, host, port, tls=None):
        self.socket = socket.create_connection((host, port), timeout=5)
        if tls:
            self.socket = tls.wrap_socket(self.socket, server_hostname=host)
        self.replies = self.socket.makefile("rb")

    def __call__(self, *args):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.socket.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return self.read()

    def read(self):
        line = self.replies.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if rest == "-1":
                return None
            data = self.replies.read(int(rest) + 2)
            return data[:-2].decode()
        if kind == b"*":
            return None if rest == "-1" else [self.read() for _ in range(int(rest))]
        raise AssertionError(f"unexpected reply {line!r}")

    def close(self):
        self.socket.close()


class RedisError(str):
    pass


def cluster_command(connections, start, *args):
    """Sends a command to `start`, following MOVED and ASK (which must name the host)."""
    address = start
    for _ in range(5):
        if address not in connections:
            connections[address] = Redis(*address)
        reply = connections[address](*args)
        if isinstance(reply, RedisError) and reply.split()[0] in ("MOVED", "ASK"):
            host, port = reply.split()[2].rsplit(":", 1)
            assert host == HOST, f"redirection to {host}, not {HOST}: {reply}"
            address = (host, int(port))
            if reply.startswith("ASK"):
                connections.setdefault(address, Redis(*address))("ASKING")
            continue
        if isinstance(reply, RedisError) and reply.split()[0] in ("TRYAGAIN", "CLUSTERDOWN"):
            time.sleep(0.05)
            continue
        return reply, address
    raise AssertionError(f"{args[0]}: too many redirections")


def until(what, check, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.05)


def replication_group():
    ec.create_replication_group(
        ReplicationGroupId="far",
        ReplicationGroupDescription="reached from another namespace",
        Engine="redis",
        CacheNodeType="cache.t3.micro",
        NumCacheClusters=2,
        AutomaticFailoverEnabled=True,
        MultiAZEnabled=True,
    )
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="far", WaiterConfig=WAIT)
    group = ec.describe_replication_groups(ReplicationGroupId="far")
    check_answer("DescribeReplicationGroups", group)
    check_answer("DescribeCacheClusters", ec.describe_cache_clusters(ShowCacheNodeInfo=True))
    node_group = group["ReplicationGroups"][0]["NodeGroups"][0]
    primary = (node_group["PrimaryEndpoint"]["Address"], node_group["PrimaryEndpoint"]["Port"])
    reader = (node_group["ReaderEndpoint"]["Address"], node_group["ReaderEndpoint"]["Port"])
    writer = Redis(*primary)
    assert writer("SET", "far-key", "before") == "OK"
    ok(f"wrote through the primary endpoint {primary[0]}:{primary[1]}")

    old = next(m["CacheClusterId"] for m in node_group["NodeGroupMembers"] if m["CurrentRole"] == "primary")
    ec.test_failover(ReplicationGroupId="far", NodeGroupId="0001")
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="far", WaiterConfig=WAIT)
    after = ec.describe_replication_groups(ReplicationGroupId="far")
    check_answer("DescribeReplicationGroups after the failover", after)
    members = after["ReplicationGroups"][0]["NodeGroups"][0]["NodeGroupMembers"]
    new = next(m["CacheClusterId"] for m in members if m["CurrentRole"] == "primary")
    assert new != old, f"{old} is still the primary"

    def written_after_failover():
        connection = Redis(*primary)
        try:
            return connection("SET", "far-key", "after") == "OK" and connection("GET", "far-key") == "after"
        finally:
            connection.close()

    until("a write through the primary endpoint after the failover", written_after_failover)
    until("the reader endpoint reads the write", lambda: Redis(*reader)("GET", "far-key") == "after")
    ok(f"failed over from {old} to {new}; the endpoints followed")


def cluster_mode_group():
    ec.create_replication_group(
        ReplicationGroupId="far-sharded",
        ReplicationGroupDescription="sharded, reached from another namespace",
        Engine="redis",
        CacheNodeType="cache.t3.micro",
        CacheParameterGroupName="default.redis7.cluster.on",
        NumNodeGroups=2,
        ReplicasPerNodeGroup=1,
        AutomaticFailoverEnabled=True,
        MultiAZEnabled=True,
    )
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="far-sharded", WaiterConfig=WAIT)
    group = ec.describe_replication_groups(ReplicationGroupId="far-sharded")
    check_answer("DescribeReplicationGroups (cluster mode)", group)
    configuration = group["ReplicationGroups"][0]["ConfigurationEndpoint"]
    start = (configuration["Address"], configuration["Port"])

    slots = Redis(*start)("CLUSTER", "SLOTS")
    endpoints = {node[0] for shard in slots for node in shard[2:]}
    assert endpoints == {HOST}, f"CLUSTER SLOTS names {endpoints}, not {HOST}: {slots}"
    ok(f"CLUSTER SLOTS names {HOST} for every node")

    connections, keys = {}, [f"key-{i}" for i in range(200)]
    moved = 0
    for key in keys:
        reply, address = cluster_command(connections, start, "SET", key, key)
        assert reply == "OK", reply
        moved += address != start
    assert moved > 0, "no key was redirected: the test did not exercise MOVED"
    ok(f"wrote {len(keys)} keys, {moved} of them after a MOVED to {HOST}")

    ec.test_failover(ReplicationGroupId="far-sharded", NodeGroupId="0001")
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="far-sharded", WaiterConfig=WAIT)
    check_answer("DescribeReplicationGroups after the failover (cluster mode)", ec.describe_replication_groups(
        ReplicationGroupId="far-sharded"))

    def every_key_reads_back():
        for connection in connections.values():
            connection.close()
        connections.clear()
        return all(cluster_command(connections, start, "GET", key)[0] == key for key in keys)

    until("every key reads back after the failover", every_key_reads_back)
    ok("every key reads back after a failover of shard 0001, following MOVED")


def serverless_cache():
    ec.create_serverless_cache(ServerlessCacheName="far-serverless", Engine="redis")

    def available():
        cache = ec.describe_serverless_caches(ServerlessCacheName="far-serverless")["ServerlessCaches"][0]
        return cache["Status"] == "available"

    until("the serverless cache is available", available, timeout=60)
    answer = ec.describe_serverless_caches(ServerlessCacheName="far-serverless")
    check_answer("DescribeServerlessCaches", answer)
    endpoint = answer["ServerlessCaches"][0]["Endpoint"]
    tls = ssl.create_default_context(cadata=urllib.request.urlopen(f"{API}/_emulator/ca.pem", timeout=5).read().decode())
    connection = Redis(endpoint["Address"], endpoint["Port"], tls)
    slots = connection("CLUSTER", "SLOTS")
    assert {node[0] for shard in slots for node in shard[2:]} == {HOST}, f"CLUSTER SLOTS: {slots}"
    assert connection("SET", "far-serverless-key", "v") == "OK" and connection("GET", "far-serverless-key") == "v"
    ok(f"serverless endpoint {HOST}:{endpoint['Port']} verified for {HOST}; CLUSTER SLOTS names it")


replication_group()
cluster_mode_group()
serverless_cache()
