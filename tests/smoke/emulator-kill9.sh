#!/usr/bin/env bash
# Crash test of the emulator itself: kill -9 it while it runs a Redis node, check that the
# node process dies with it (no orphan), then start it again on the same state dir and
# check the cluster comes back available on the same endpoint. Then kill -9 it again in
# the middle of work — a sharded group being created, a failover, a snapshot — at several
# moments, and check that each restart leaves every resource settled, every node running
# once, and no process behind.
#   cargo build -p server && tests/smoke/emulator-kill9.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=$(free_port)
ENDPOINT=http://127.0.0.1:$PORT
STATE=$(mktemp -d)
LOG=$STATE/server.log
SERVER_PID=""
start() {
    "$BIN" serve --listen "127.0.0.1:$PORT" --state-dir "$STATE" >>"$LOG" 2>&1 &
    SERVER_PID=$!
}
cleanup() {
    local status=$?
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    [[ $status -ne 0 ]] && tail -n 40 "$LOG" >&2
    rm -rf "$STATE"
    exit "$status"
}
trap cleanup EXIT
ec() { aws --endpoint-url "$ENDPOINT" elasticache "$@"; }
healthy() { python3 -c "import urllib.request,sys; urllib.request.urlopen('$ENDPOINT/_emulator/health', timeout=1)"; }
available() { [[ $(ec describe-cache-clusters --cache-cluster-id crash --query 'CacheClusters[0].CacheClusterStatus' --output text) == available ]]; }
node_field() {
    python3 - "$ENDPOINT/_emulator/nodes" "$1" <<'PY'
import json, sys, urllib.request
nodes = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
print(next(n[sys.argv[2]] for n in nodes if n["cache_cluster_id"] == "crash"))
PY
}
answers() { python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
}
alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! kill -0 "$1" 2>/dev/null; }

start
until_true "emulator ready" healthy
ec create-cache-cluster --cache-cluster-id crash --engine redis --cache-node-type cache.t3.micro >/dev/null
until_true "cluster available" available
NODE_PID=$(node_field pid)
NODE_PORT=$(node_field port)
alive "$NODE_PID" || fail "node process $NODE_PID not running"
pass "node $NODE_PID answers on port $NODE_PORT"

kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
until_true "node process $NODE_PID to die with the emulator" dead "$NODE_PID"
pass "no orphan after kill -9 of the emulator"

start
until_true "emulator ready again" healthy
until_true "cluster available again" available
until_true "node answering on port $NODE_PORT again" answers "$NODE_PORT"
[[ $(node_field port) == "$NODE_PORT" ]] || fail "node moved from port $NODE_PORT"
pass "after restart the node is back on port $NODE_PORT"

# ---------------------------------------------------------------------------------------------
# kill -9 in the middle of work

# The node processes of this state dir (a node runs in its own directory under it).
node_pids() {
    for pid in $(pgrep -x redis-server; pgrep -x valkey-server; pgrep -x memcached); do
        [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$STATE"/* ]] && echo "$pid"
    done | sort
}
settled() {
    python3 - "$ENDPOINT" <<'PY'
import json, subprocess, sys, urllib.request
endpoint = sys.argv[1]
def ec(*args):
    out = subprocess.run(["aws", "--endpoint-url", endpoint, "elasticache", *args, "--output", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)
clusters = ec("describe-cache-clusters")["CacheClusters"]
groups = ec("describe-replication-groups")["ReplicationGroups"]
snapshots = ec("describe-snapshots")["Snapshots"]
states = [c["CacheClusterStatus"] for c in clusters] + [g["Status"] for g in groups]
states += [s["SnapshotStatus"] for s in snapshots]
sys.exit(0 if states and all(s == "available" for s in states) else 1)
PY
}
# Every node the store knows runs exactly once, and nothing else runs but the warm nodes
# (cluster-enabled redis and valkey nodes kept ready for new primaries, see /_emulator/health).
nodes_match() {
    python3 - "$ENDPOINT" "$(node_pids | tr '\n' ' ')" <<'PY'
import json, sys, urllib.request
nodes = json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/nodes", timeout=2))
warm = json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/health", timeout=2)).get("warm_nodes", [])
expected = sorted(str(n["pid"]) for n in nodes + warm if n["pid"])
running = sorted(sys.argv[2].split())
sys.exit(0 if len(expected) == len(nodes) + len(warm) and expected == running else 1)
PY
}
no_node_process() { [[ -z $(node_pids) ]]; } # listed again on every call (until_true retries it)
crash_and_restart() {
    kill -9 "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    until_true "every node process to die with the emulator" no_node_process
    start
    until_true "emulator ready again" healthy
    until_true "every resource settled after the restart" settled
    until_true "every node running exactly once" nodes_match
}

ec create-replication-group --replication-group-id fo --replication-group-description smoke \
    --cache-node-type cache.t3.micro --num-cache-clusters 2 --automatic-failover-enabled >/dev/null
until_true "group fo available" settled
round=0
for delay in 0 0.05 0.3; do
    round=$((round + 1))
    primary=$(ec describe-replication-groups --replication-group-id fo \
        --query 'ReplicationGroups[0].NodeGroups[0].NodeGroupMembers[?CurrentRole==`primary`].CacheClusterId' --output text)
    ec create-replication-group --replication-group-id "sharded-$round" --replication-group-description smoke \
        --cache-node-type cache.t3.micro --num-node-groups 2 --replicas-per-node-group 1 >/dev/null
    ec create-snapshot --replication-group-id fo --snapshot-name "snap-$round" >/dev/null
    python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('$ENDPOINT/_emulator/nodes/$primary/0001/kill', method='POST'), timeout=2)"
    sleep "$delay"
    crash_and_restart
    pass "kill -9 ${delay}s into a create, a failover and a snapshot: all settled, $(node_pids | wc -l) nodes, no strays"
done

# After all that, the group's nodes agree with Describe: one primary, one replica of it.
python3 - "$ENDPOINT" <<'PY' || fail "group fo's nodes disagree with Describe"
import json, socket, subprocess, sys
out = subprocess.run(["aws", "--endpoint-url", sys.argv[1], "elasticache", "describe-replication-groups",
                      "--replication-group-id", "fo", "--output", "json"], check=True, capture_output=True, text=True)
members = json.loads(out.stdout)["ReplicationGroups"][0]["NodeGroups"][0]["NodeGroupMembers"]
for m in members:
    s = socket.create_connection(("127.0.0.1", m["ReadEndpoint"]["Port"]), timeout=2)
    s.sendall(b"ROLE\r\n")
    role = s.recv(256).split(b"\r\n")[2].decode()
    expected = {"primary": "master", "replica": "slave"}[m["CurrentRole"]]
    assert role == expected, (m["CacheClusterId"], role, expected)
PY
pass "group fo's nodes agree with Describe after the crashes"

# ---------------------------------------------------------------------------------------------
# Acknowledged writes survive a kill -9 of the emulator: a plain cluster, a replication group
# (through its primary endpoint) and a cluster-mode group (through its configuration endpoint).
KEYS=500
write_keys() { # port prefix [-c]
    for i in $(seq "$KEYS"); do echo "SET $2:$i v$i"; done | redis-cli -p "$1" ${3:-} >/dev/null
}
count_keys() { # port prefix [-c]
    for i in $(seq "$KEYS"); do echo "GET $2:$i"; done | redis-cli -p "$1" ${3:-} | grep -c '^v' || true
}
all_keys_answer() { # port prefix [-c]
    [[ $(count_keys "$@") -eq $KEYS ]]
}
FO_PORT=$(ec describe-replication-groups --replication-group-id fo \
    --query 'ReplicationGroups[0].NodeGroups[0].PrimaryEndpoint.Port' --output text)
SHARDED_PORT=$(ec describe-replication-groups --replication-group-id sharded-3 \
    --query 'ReplicationGroups[0].ConfigurationEndpoint.Port' --output text)
write_keys "$NODE_PORT" plain
write_keys "$FO_PORT" group
write_keys "$SHARDED_PORT" sharded -c
crash_and_restart
# Once every resource says available, every key answers at the first try: a cluster-mode
# member is available only once Redis Cluster serves its slots again (no CLUSTERDOWN).
for check in "$NODE_PORT plain" "$FO_PORT group" "$SHARDED_PORT sharded -c"; do
    read -r port prefix flag <<<"$check"
    all_keys_answer "$port" "$prefix" $flag || fail "$prefix keys not all answering once available after the crash"
done
pass "every acknowledged write ($KEYS each to a cluster, a group and a cluster-mode group) survived kill -9"
