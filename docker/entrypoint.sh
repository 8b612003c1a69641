#!/bin/sh
# The image's entrypoint: endpoints are advertised under the container's host name (what
# other containers of a compose project reach it by) unless ELASTICACHE_LOCAL_ADVERTISE_HOST
# says otherwise. tests/smoke/advertise-host.sh runs this script with the Dockerfile's
# environment, outside Docker.
set -eu
if [ -z "${ELASTICACHE_LOCAL_ADVERTISE_HOST:-}" ]; then
    ELASTICACHE_LOCAL_ADVERTISE_HOST=$(cat /proc/sys/kernel/hostname)
    export ELASTICACHE_LOCAL_ADVERTISE_HOST
fi
exec elasticache-local "$@"
