#!/usr/bin/env bash
# Smoke test: the real aws-cli against the built `elasticache-local` binary.
#   cargo build -p server && tests/smoke/aws-cli.sh
# Exits non-zero on the first failed check; the server is stopped on every exit path.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
READY_TIMEOUT_SECONDS=${READY_TIMEOUT_SECONDS:-30}

command -v aws >/dev/null || { echo "aws-cli not found" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 2; }

PORT=$(free_port)
ENDPOINT=http://127.0.0.1:$PORT
LOG=$(mktemp)
"$BIN" serve --listen "127.0.0.1:$PORT" --ephemeral >"$LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
    local status=$?
    kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    if [[ $status -ne 0 ]]; then
        echo "--- server log ---" >&2
        tail -n 50 "$LOG" >&2 || true
    fi
    rm -f "$LOG"
    exit "$status"
}
trap cleanup EXIT


# Readiness: poll health, but give up if the server died or the deadline passed.
health_ok() {
    python3 - "$ENDPOINT/_emulator/health" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
        sys.exit(0 if json.load(r).get("status") == "ok" else 1)
except Exception:
    sys.exit(1)
PY
}
deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
until health_ok; do
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited before becoming ready"
    (( SECONDS < deadline )) || fail "server not ready after ${READY_TIMEOUT_SECONDS}s"
    sleep 0.1
done
pass "server ready on $ENDPOINT"

ec() { aws --endpoint-url "$ENDPOINT" --output json elasticache "$@"; }
# check 'python expression over d' 'description' < json
check() {
    python3 -c "
import json, sys
d = json.load(sys.stdin)
ok = $1
if not ok:
    print(json.dumps(d, indent=1)[:3000], file=sys.stderr)
sys.exit(0 if ok else 1)" || fail "$2"
    pass "$2"
}
# expect_error CODE command...: the command must fail and name CODE.
expect_error() {
    local code=$1 out
    shift
    if out=$(ec "$@" 2>&1); then fail "expected $code from $*, got success: $out"; fi
    grep -q "($code)" <<<"$out" || fail "expected $code from $*, got: $out"
    pass "$* -> $code"
}

ec create-cache-parameter-group --cache-parameter-group-name smoke-pg \
    --cache-parameter-group-family redis7 --description "smoke test" --tags Key=env,Value=smoke \
    | check 'd["CacheParameterGroup"]["CacheParameterGroupName"] == "smoke-pg" and d["CacheParameterGroup"]["ARN"] == "arn:aws:elasticache:us-east-1:000000000000:parametergroup:smoke-pg"' \
        "create-cache-parameter-group"
ARN=arn:aws:elasticache:us-east-1:000000000000:parametergroup:smoke-pg

ec describe-cache-parameter-groups --cache-parameter-group-name smoke-pg \
    | check '[(g["CacheParameterGroupName"], g["CacheParameterGroupFamily"], g["Description"]) for g in d["CacheParameterGroups"]] == [("smoke-pg", "redis7", "smoke test")]' \
        "describe-cache-parameter-groups"

ec describe-cache-parameter-groups \
    | check '{"default.redis7", "default.valkey8", "default.memcached1.6", "smoke-pg"} <= {g["CacheParameterGroupName"] for g in d["CacheParameterGroups"]}' \
        "default groups listed"

expect_error CacheParameterGroupAlreadyExists create-cache-parameter-group \
    --cache-parameter-group-name smoke-pg --cache-parameter-group-family redis7 --description dup

ec modify-cache-parameter-group --cache-parameter-group-name smoke-pg \
    --parameter-name-values ParameterName=maxmemory-policy,ParameterValue=allkeys-lru ParameterName=timeout,ParameterValue=300 \
    | check 'd["CacheParameterGroupName"] == "smoke-pg"' "modify-cache-parameter-group"

ec describe-cache-parameters --cache-parameter-group-name smoke-pg --source user \
    | check 'sorted((p["ParameterName"], p["ParameterValue"], p["Source"]) for p in d["Parameters"]) == [("maxmemory-policy", "allkeys-lru", "user"), ("timeout", "300", "user")]' \
        "describe-cache-parameters --source user"

expect_error InvalidParameterValue modify-cache-parameter-group --cache-parameter-group-name smoke-pg \
    --parameter-name-values ParameterName=maxmemory-policy,ParameterValue=sometimes

# The CLI follows Marker on its own; small pages must add up to the whole list.
TOTAL=$(ec describe-cache-parameters --cache-parameter-group-name smoke-pg --query 'length(Parameters)')
ec describe-cache-parameters --cache-parameter-group-name smoke-pg --page-size 20 \
    | check "len(d['Parameters']) == $TOTAL and len({p['ParameterName'] for p in d['Parameters']}) == $TOTAL and $TOTAL > 20" \
        "describe-cache-parameters paginated by the CLI ($TOTAL parameters)"

ec describe-engine-default-parameters --cache-parameter-group-family valkey8 --page-size 20 \
    | check 'len(d["EngineDefaults"]["Parameters"]) > 20 and len({p["ParameterName"] for p in d["EngineDefaults"]["Parameters"]}) == len(d["EngineDefaults"]["Parameters"])' \
        "describe-engine-default-parameters (EngineDefaults.Marker pagination)"

ec describe-engine-default-parameters --cache-parameter-group-family memcached1.6 --no-paginate \
    | check 'd["EngineDefaults"]["CacheParameterGroupFamily"] == "memcached1.6"' \
        "describe-engine-default-parameters names its family"

ec describe-cache-engine-versions --engine redis \
    | check 'd["CacheEngineVersions"] and all(v["Engine"] == "redis" for v in d["CacheEngineVersions"])' \
        "describe-cache-engine-versions --engine redis"

ec add-tags-to-resource --resource-name "$ARN" --tags Key=team,Value=cache Key=env,Value=prod \
    | check 'sorted((t["Key"], t["Value"]) for t in d["TagList"]) == [("env", "prod"), ("team", "cache")]' \
        "add-tags-to-resource"

ec list-tags-for-resource --resource-name "$ARN" \
    | check 'sorted((t["Key"], t["Value"]) for t in d["TagList"]) == [("env", "prod"), ("team", "cache")]' \
        "list-tags-for-resource"

expect_error TagNotFound remove-tags-from-resource --resource-name "$ARN" --tag-keys never-set
expect_error InvalidARN list-tags-for-resource --resource-name not-an-arn

ec reset-cache-parameter-group --cache-parameter-group-name smoke-pg --reset-all-parameters \
    | check 'd["CacheParameterGroupName"] == "smoke-pg"' "reset-cache-parameter-group"
ec describe-cache-parameters --cache-parameter-group-name smoke-pg --source user \
    | check 'd["Parameters"] == []' "no user parameters after reset"

ec create-cache-subnet-group --cache-subnet-group-name smoke-subnets --cache-subnet-group-description smoke \
    --subnet-ids subnet-0a1b2c3d subnet-0123abcd \
    | check 'sorted(s["SubnetIdentifier"] for s in d["CacheSubnetGroup"]["Subnets"]) == ["subnet-0123abcd", "subnet-0a1b2c3d"] and d["CacheSubnetGroup"]["VpcId"].startswith("vpc-")' \
        "create-cache-subnet-group"
ec delete-cache-subnet-group --cache-subnet-group-name smoke-subnets
pass "delete-cache-subnet-group"

ec delete-cache-parameter-group --cache-parameter-group-name smoke-pg
pass "delete-cache-parameter-group"
expect_error CacheParameterGroupNotFound describe-cache-parameter-groups --cache-parameter-group-name smoke-pg

# --- cache clusters: real nodes, waited for with the CLI's own waiters ---
ec create-cache-cluster --cache-cluster-id smoke-redis --engine redis --cache-node-type cache.t3.micro \
    --num-cache-nodes 1 \
    | check 'd["CacheCluster"]["CacheClusterId"] == "smoke-redis" and d["CacheCluster"]["CacheClusterStatus"] == "creating"' \
        "create-cache-cluster (redis)"
ec create-cache-cluster --cache-cluster-id smoke-mc --engine memcached --cache-node-type cache.t3.micro \
    --num-cache-nodes 2 --az-mode cross-az \
    | check 'd["CacheCluster"]["CacheClusterId"] == "smoke-mc" and d["CacheCluster"]["NumCacheNodes"] == 2' \
        "create-cache-cluster (memcached, cross-az)"
expect_error CacheClusterAlreadyExists create-cache-cluster --cache-cluster-id smoke-mc --engine memcached \
    --cache-node-type cache.t3.micro --num-cache-nodes 1
# The waiters poll every 15 s: one extra poll at most, since nodes start in milliseconds.
aws --endpoint-url "$ENDPOINT" elasticache wait cache-cluster-available --cache-cluster-id smoke-redis \
    || fail "wait cache-cluster-available smoke-redis"
pass "wait cache-cluster-available smoke-redis"
aws --endpoint-url "$ENDPOINT" elasticache wait cache-cluster-available --cache-cluster-id smoke-mc \
    || fail "wait cache-cluster-available smoke-mc"
pass "wait cache-cluster-available smoke-mc"

REDIS_PORT=$(ec describe-cache-clusters --cache-cluster-id smoke-redis --show-cache-node-info \
    --query 'CacheClusters[0].CacheNodes[0].Endpoint.Port')
python3 - "$REDIS_PORT" <<'PY' || fail "redis node answers PING/SET/GET"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"PING\r\nSET smoke yes\r\nGET smoke\r\n")
want = b"+PONG\r\n+OK\r\n$3\r\nyes\r\n"
got = b""
while len(got) < len(want):
    chunk = s.recv(1024)
    if not chunk:
        break
    got += chunk
sys.exit(0 if got == want else 1)
PY
pass "redis node answers PING/SET/GET on port $REDIS_PORT"

ec describe-cache-clusters --cache-cluster-id smoke-mc --show-cache-node-info \
    | check 'sorted(n["CacheNodeId"] for n in d["CacheClusters"][0]["CacheNodes"]) == ["0001", "0002"] and d["CacheClusters"][0]["PreferredAvailabilityZone"] == "Multiple" and d["CacheClusters"][0]["ConfigurationEndpoint"]["Port"] > 0' \
        "describe-cache-clusters --show-cache-node-info (memcached)"
MC_JSON=$(ec describe-cache-clusters --cache-cluster-id smoke-mc --show-cache-node-info)
python3 - "$MC_JSON" <<'PY' || fail "memcached auto discovery lists both nodes"
import json, socket, sys
c = json.loads(sys.argv[1])["CacheClusters"][0]
nodes = sorted(c["CacheNodes"], key=lambda n: n["CacheNodeId"])
def ask(port, request, end):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    got = b""
    while not got.endswith(end):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got
reply = ask(c["ConfigurationEndpoint"]["Port"], b"config get cluster\r\n", b"END\r\n")
header, rest = reply.split(b"\r\n", 1)
body = rest[: int(header.split()[-1])]
version, listing = body.decode().split("\n")[:2]
expected = " ".join(f'{n["Endpoint"]["Address"]}|{n["Endpoint"]["Address"]}|{n["Endpoint"]["Port"]}' for n in nodes)
ok = header.startswith(b"CONFIG cluster 0 ") and listing == expected and rest.endswith(b"\n\r\nEND\r\n") and int(version) >= 1
ok = ok and ask(nodes[1]["Endpoint"]["Port"], b"set smoke 0 0 3\r\nyes\r\n", b"\r\n") == b"STORED\r\n"
sys.exit(0 if ok else 1)
PY
pass "memcached configuration endpoint answers config get cluster"

ec delete-cache-cluster --cache-cluster-id smoke-redis \
    | check 'd["CacheCluster"]["CacheClusterStatus"] == "deleting"' "delete-cache-cluster smoke-redis"
ec delete-cache-cluster --cache-cluster-id smoke-mc >/dev/null
pass "delete-cache-cluster smoke-mc"
aws --endpoint-url "$ENDPOINT" elasticache wait cache-cluster-deleted --cache-cluster-id smoke-redis \
    || fail "wait cache-cluster-deleted smoke-redis"
aws --endpoint-url "$ENDPOINT" elasticache wait cache-cluster-deleted --cache-cluster-id smoke-mc \
    || fail "wait cache-cluster-deleted smoke-mc"
pass "wait cache-cluster-deleted"
expect_error CacheClusterNotFound describe-cache-clusters --cache-cluster-id smoke-mc
python3 -c 'import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
except ConnectionRefusedError:
    sys.exit(0)
sys.exit(1)' "$REDIS_PORT" || fail "redis port $REDIS_PORT still open after delete"
pass "deleted node's port refuses connections"

echo "aws-cli smoke test passed"
