#!/bin/sh
# Creates the replication group the example application uses (docker/compose.yaml mounts
# this directory as the image's init dir). The emulator runs it once its API listens, with
# AWS_ENDPOINT_URL set; plain curl against the Query API needs nothing else in the image.
set -eu
curl -sSf "$AWS_ENDPOINT_URL/" \
    --data-urlencode Action=CreateReplicationGroup \
    --data-urlencode Version=2015-02-02 \
    --data-urlencode ReplicationGroupId=app-cache \
    --data-urlencode "ReplicationGroupDescription=the example application's cache" \
    --data-urlencode Engine=redis \
    --data-urlencode CacheNodeType=cache.t3.micro \
    --data-urlencode NumCacheClusters=2 \
    --data-urlencode AutomaticFailoverEnabled=true \
    --data-urlencode MultiAZEnabled=true \
    >/dev/null
echo "created replication group app-cache"
