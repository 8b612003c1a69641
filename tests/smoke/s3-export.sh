#!/usr/bin/env bash
# Export to an S3-compatible bucket: a real S3 server (moto_server, from pip) and the real
# aws-cli. CopySnapshot --target-bucket uploads the snapshot's RDB file through
# --s3-endpoint, byte for byte (decrypted when the snapshot is encrypted at rest), and a missing
# bucket ends the export with an event saying so.
#   cargo build -p server && tests/smoke/s3-export.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
for tool in aws moto_server redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "$tool not found (scripts/install-test-tools.sh)" >&2; exit 2; }
done

S3_PORT=$(free_port)
PORT=$(free_port)
S3=http://127.0.0.1:$S3_PORT
ENDPOINT=http://127.0.0.1:$PORT
STATE=$(mktemp -d)
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$STATE/s3.log" 2>&1 &
S3_PID=$!
"$BIN" serve --listen "127.0.0.1:$PORT" --state-dir "$STATE/emulator" --s3-endpoint "$S3" >"$STATE/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
    local status=$?
    kill "$SERVER_PID" "$S3_PID" 2>/dev/null && wait "$SERVER_PID" "$S3_PID" 2>/dev/null || true
    [[ $status -ne 0 ]] && tail -n 40 "$STATE/server.log" >&2
    rm -rf "$STATE"
    exit "$status"
}
trap cleanup EXIT
ec() { aws --endpoint-url "$ENDPOINT" elasticache "$@"; }
s3() { aws --endpoint-url "$S3" s3 "$@"; }
status_is() { [[ $(ec describe-snapshots --snapshot-name "$1" --query 'Snapshots[0].SnapshotStatus' --output text) == "$2" ]]; }
cluster_available() {
    [[ $(ec describe-cache-clusters --cache-cluster-id src --query 'CacheClusters[0].CacheClusterStatus' --output text) == available ]]
}
event_says() { ec describe-events --query 'Events[].Message' --output text | grep -q "$1"; }

until_true "S3 server ready" s3 ls
until_true "emulator ready" ec describe-cache-clusters
s3 mb s3://backups >/dev/null
ec create-cache-cluster --cache-cluster-id src --engine redis --cache-node-type cache.t3.micro >/dev/null
until_true "cluster available" cluster_available
NODE_PORT=$(ec describe-cache-clusters --cache-cluster-id src --show-cache-node-info \
    --query 'CacheClusters[0].CacheNodes[0].Endpoint.Port' --output text)
for i in $(seq 1 50); do redis-cli -p "$NODE_PORT" set "key:$i" "value-$i" >/dev/null; done
ec create-snapshot --cache-cluster-id src --snapshot-name snap >/dev/null
until_true "snapshot available" status_is snap available

ec copy-snapshot --source-snapshot-name snap --target-snapshot-name nightly --target-bucket backups >/dev/null
until_true "export event" event_says "exported to bucket backups"
until_true "snapshot available after the export" status_is snap available
s3 cp s3://backups/nightly-0001.rdb "$STATE/exported.rdb" >/dev/null || fail "nightly-0001.rdb not in the bucket"
cmp -s "$STATE/exported.rdb" "$STATE/emulator/snapshots/us-east-1/000000000000/snap/0001.rdb" \
    || fail "the uploaded file differs from the snapshot's"
head -c 5 "$STATE/exported.rdb" | grep -q REDIS || fail "the uploaded file is not an RDB file"
[[ ! -e $STATE/emulator/exports/backups ]] || fail "with an S3 endpoint nothing goes to the local export directory"
pass "CopySnapshot --target-bucket uploaded the RDB file to the S3 server"

# An encrypted snapshot (at rest, under the state dir) is uploaded decrypted, as AWS exports.
ec create-snapshot --cache-cluster-id src --snapshot-name sealed --kms-key-id alias/backups >/dev/null
until_true "encrypted snapshot available" status_is sealed available
SEALED=$STATE/emulator/snapshots/us-east-1/000000000000/sealed/0001.rdb
head -c 5 "$SEALED" | grep -q REDIS && fail "the encrypted snapshot's file is a plain RDB file"
grep -aq "value-42" "$SEALED" && fail "the encrypted snapshot's file shows the data in clear"
ec copy-snapshot --source-snapshot-name sealed --target-snapshot-name sealed-out --target-bucket backups >/dev/null
until_true "encrypted export event" event_says "Snapshot sealed exported to bucket backups"
s3 cp s3://backups/sealed-out-0001.rdb "$STATE/sealed.rdb" >/dev/null || fail "sealed-out-0001.rdb not in the bucket"
head -c 5 "$STATE/sealed.rdb" | grep -q REDIS || fail "the encrypted snapshot's export is not an RDB file"
grep -aq "value-42" "$STATE/sealed.rdb" || fail "the encrypted snapshot's export lacks the data"
pass "an encrypted snapshot is uploaded as a plain RDB file"

ec copy-snapshot --source-snapshot-name snap --target-snapshot-name lost --target-bucket no-such-bucket >/dev/null
until_true "failed export event" event_says "could not be exported to bucket no-such-bucket: S3 answered 404 Not Found NoSuchBucket"
until_true "snapshot available after the failed export" status_is snap available
pass "an export to a missing bucket ends with an event saying why"
