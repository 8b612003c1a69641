#!/usr/bin/env bash
# Ready on the first poll, through boto3's and aws-cli's waiters (botocore's waiter model:
# a poll at once, then 15 s sleeps): each waiter below must succeed on its first poll.
# boto3's polls are counted by a botocore event hook; aws-cli's by the server's /metrics.
#   cargo build --workspace && tests/smoke/waiters.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v aws >/dev/null || { echo "aws-cli not found" >&2; exit 2; }
python3 -c 'import boto3' 2>/dev/null || { echo "boto3 not found" >&2; exit 2; }

PORT=$(free_port)
ENDPOINT=http://127.0.0.1:$PORT
LOG=$(mktemp)
"$BIN" serve --listen "127.0.0.1:$PORT" --ephemeral >"$LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
    local status=$?
    kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    [[ $status -ne 0 ]] && tail -n 40 "$LOG" >&2
    rm -f "$LOG"
    exit "$status"
}
trap cleanup EXIT
healthy() { python3 -c "import urllib.request; urllib.request.urlopen('$ENDPOINT/_emulator/health', timeout=1)"; }
until_true "emulator ready" healthy

python3 - "$ENDPOINT" <<'PY'
import sys
import boto3

client = boto3.client("elasticache", endpoint_url=sys.argv[1])
polls = []
client.meta.events.register("before-call.elasticache.*", lambda model, **_: polls.append(model.name))

def wait(waiter, **kwargs):
    """Runs a waiter and checks it polled exactly once (it would sleep 15 s before a second)."""
    polls.clear()
    client.get_waiter(waiter).wait(WaiterConfig={"Delay": 15, "MaxAttempts": 40}, **kwargs)
    assert len(polls) == 1, f"{waiter} polled {len(polls)} times: {polls}"
    print(f"ok: boto3 {waiter} succeeded on its first poll")

node = {"CacheNodeType": "cache.t3.micro"}
out = client.create_cache_cluster(CacheClusterId="b3-redis", Engine="redis", **node)
assert out["CacheCluster"]["CacheClusterStatus"] == "creating", out
wait("cache_cluster_available", CacheClusterId="b3-redis")
client.create_cache_cluster(CacheClusterId="b3-mc", Engine="memcached", NumCacheNodes=2, **node)
wait("cache_cluster_available", CacheClusterId="b3-mc")
client.create_replication_group(ReplicationGroupId="b3-cmd", ReplicationGroupDescription="d",
                                NumCacheClusters=3, AutomaticFailoverEnabled=True, **node)
wait("replication_group_available", ReplicationGroupId="b3-cmd")
client.create_replication_group(ReplicationGroupId="b3-cme", ReplicationGroupDescription="d",
                                NumNodeGroups=2, ReplicasPerNodeGroup=1, AutomaticFailoverEnabled=True,
                                CacheParameterGroupName="default.redis7.cluster.on", **node)
wait("replication_group_available", ReplicationGroupId="b3-cme")

for cluster in ["b3-redis", "b3-mc"]:
    client.delete_cache_cluster(CacheClusterId=cluster)
    wait("cache_cluster_deleted", CacheClusterId=cluster)
for group in ["b3-cmd", "b3-cme"]:
    client.delete_replication_group(ReplicationGroupId=group)
    wait("replication_group_deleted", ReplicationGroupId=group)
PY

ec() { aws --endpoint-url "$ENDPOINT" elasticache "$@"; }
# Describe calls of one action the server has answered so far.
answered() {
    python3 - "$ENDPOINT/metrics" "$1" <<'PY'
import sys, urllib.request
prefix = 'elasticache_local_api_requests_total{action="%s",' % sys.argv[2]
text = urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()
print(sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)))
PY
}
# cli_wait ACTION waiter args...: `aws elasticache wait` must poll ACTION exactly once.
cli_wait() {
    local action=$1 before after
    shift
    before=$(answered "$action")
    ec wait "$@"
    after=$(answered "$action")
    [[ $((after - before)) -eq 1 ]] || fail "aws elasticache wait $1 polled $((after - before)) times"
    pass "aws-cli wait $1 succeeded on its first poll"
}
ec create-cache-cluster --cache-cluster-id cli-redis --engine redis --cache-node-type cache.t3.micro >/dev/null
cli_wait DescribeCacheClusters cache-cluster-available --cache-cluster-id cli-redis
ec create-replication-group --replication-group-id cli-cmd --replication-group-description d \
    --cache-node-type cache.t3.micro --num-cache-clusters 2 >/dev/null
cli_wait DescribeReplicationGroups replication-group-available --replication-group-id cli-cmd
ec delete-cache-cluster --cache-cluster-id cli-redis >/dev/null
cli_wait DescribeCacheClusters cache-cluster-deleted --cache-cluster-id cli-redis
ec delete-replication-group --replication-group-id cli-cmd >/dev/null
cli_wait DescribeReplicationGroups replication-group-deleted --replication-group-id cli-cmd
echo "waiters smoke test passed"
