#!/usr/bin/env bash
# Installs the cache engines the emulator runs (Debian packages redis-server, memcached)
# when they are missing. Safe to run again; needs root or sudo only when installing.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system-wide services; the emulator runs its own processes.
for service in redis-server memcached; do
  $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
done
