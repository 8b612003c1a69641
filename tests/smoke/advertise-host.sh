#!/usr/bin/env bash
# Endpoints reachable from elsewhere, and the Docker image's set-up, without Docker: two
# network namespaces joined by a veth pair stand for two containers. The emulator runs in
# the first through docker/entrypoint.sh with the Dockerfile's environment (read from it;
# only the state and init directories, paths inside the image, point at this checkout) and
# is advertised as `elasticache`, a name only the namespaces' hosts files know. In
# the second, docker/app/app.py (the compose example's application) uses the group
# docker/init/ready.d created, and advertise_client.py creates a replication group and a
# cluster-mode group, follows MOVED and survives a failover of each, never handed 127.0.0.1,
# and reaches a serverless cache over TLS verified for the advertised name.
#   cargo build -p server && tests/smoke/advertise-host.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! ip netns add "ecl-probe-$$" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces here (needs root and iproute2); CI runs this as root" >&2
    exit 0
fi
ip netns delete "ecl-probe-$$"

HOST=elasticache
SERVER_NS=ecl-server-$$
CLIENT_NS=ecl-client-$$
# A /24 of the test's own choosing, varied so that concurrent runs do not meet.
NET=10.$((200 + $$ % 50)).$(($$ / 50 % 250))
SERVER_IP=$NET.1
CLIENT_IP=$NET.2
STATE=$(mktemp -d)
LOG=$STATE/server.log
SERVER_PID=""

cleanup() {
    local status=$?
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    [[ $status -ne 0 && -f $LOG ]] && tail -n 60 "$LOG" >&2
    ip netns delete "$SERVER_NS" 2>/dev/null || true
    ip netns delete "$CLIENT_NS" 2>/dev/null || true
    rm -rf "/etc/netns/$SERVER_NS" "/etc/netns/$CLIENT_NS" "$STATE"
    exit "$status"
}
trap cleanup EXIT

ip netns add "$SERVER_NS"
ip netns add "$CLIENT_NS"
ip link add "ecl-s-$$" netns "$SERVER_NS" type veth peer name "ecl-c-$$" netns "$CLIENT_NS"
ip -n "$SERVER_NS" addr add "$SERVER_IP/24" dev "ecl-s-$$"
ip -n "$CLIENT_NS" addr add "$CLIENT_IP/24" dev "ecl-c-$$"
for ns in "$SERVER_NS" "$CLIENT_NS"; do
    ip -n "$ns" link set lo up
done
ip -n "$SERVER_NS" link set "ecl-s-$$" up
ip -n "$CLIENT_NS" link set "ecl-c-$$" up
# `ip netns exec` shows /etc/netns/<ns>/hosts as /etc/hosts: the advertised name is known
# in both namespaces (as Docker tells a container its own name and compose its peers').
for ns in "$SERVER_NS" "$CLIENT_NS"; do
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n%s %s\n' "$SERVER_IP" "$HOST" >"/etc/netns/$ns/hosts"
done
pass "namespaces $SERVER_NS ($SERVER_IP) and $CLIENT_NS ($CLIENT_IP)"

# The image's environment, from the Dockerfile's ENV lines.
docker_env=()
while read -r assignment; do
    docker_env+=("$assignment")
done < <(sed -n 's/^ENV \(ELASTICACHE_LOCAL_[A-Z_]*=.*\)$/\1/p' "$ROOT/docker/Dockerfile")
[[ ${#docker_env[@]} -ge 4 ]] || fail "found ${#docker_env[@]} ENV lines in docker/Dockerfile"
PORT=${docker_env[0]##*:}
in_client() { ip netns exec "$CLIENT_NS" "$@"; }

# Not through in_server: $! must be the emulator's pid (ip, env and the entrypoint exec it).
ip netns exec "$SERVER_NS" env "${docker_env[@]}" \
    ELASTICACHE_LOCAL_STATE_DIR="$STATE/state" \
    ELASTICACHE_LOCAL_INIT_DIR="$ROOT/docker/init/ready.d" \
    ELASTICACHE_LOCAL_ADVERTISE_HOST="$HOST" \
    PATH="$(dirname "$BIN"):$PATH" \
    "$ROOT/docker/entrypoint.sh" serve >>"$LOG" 2>&1 &
SERVER_PID=$!

API=http://$HOST:$PORT
init_state() {
    in_client python3 - "$API/_emulator/health" <<'PY'
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1], timeout=1))["init"]["state"])
PY
}
init_finished() { [[ $(init_state) == done || $(init_state) == failed ]]; }
until_true "the init scripts to finish" init_finished
[[ $(init_state) == done ]] || fail "an init script failed: $(grep -i 'init' "$LOG" | tail -n 5)"
grep -q "nodes and endpoints listen beyond loopback" "$LOG" || fail "no warning that nodes listen beyond loopback"
pass "the server in $SERVER_NS answers at $API; docker/init/ready.d ran"

in_client python3 "$ROOT/docker/app/app.py" "$API" || fail "docker/app/app.py"
pass "the compose example's app reached its group by the advertised name"

in_client env AWS_MAX_ATTEMPTS=3 python3 "$ROOT/tests/smoke/advertise_client.py" "$API" "$HOST" ||
    fail "advertise_client.py"
pass "a client in another namespace used both kinds of group and a serverless cache through the advertised host"

kill "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=""
leftover=$(for p in /proc/[0-9]*; do [[ $(readlink "$p/cwd" 2>/dev/null) == "$STATE"/* ]] && echo "${p#/proc/}"; done || true)
[[ -z $leftover ]] || fail "processes left behind by the emulator: $leftover"
pass "the emulator stopped, and its nodes with it"
