# What the smoke scripts share (sourced, not run): the binary under test, an AWS
# environment that nothing of the developer's own setup leaks into, free ports, and the
# pass / fail / polling helpers.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${ELASTICACHE_LOCAL_BIN:-$ROOT/target/debug/elasticache-local}
[[ -x $BIN ]] || { echo "$BIN not built: run cargo build -p server" >&2; exit 2; }

export AWS_ACCESS_KEY_ID=AKIDSMOKETEST AWS_SECRET_ACCESS_KEY=smoke-test-secret
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER="" AWS_MAX_ATTEMPTS=1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_ELASTICACHE AWS_ENDPOINT_URL_S3

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# Polls a command every 50 ms for up to 30 s.
until_true() {
    local what=$1; shift
    for _ in $(seq 1 600); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    fail "timed out waiting for: $what"
}
