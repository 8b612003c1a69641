#!/usr/bin/env bash
# Installs the cache engines the emulator runs, when they are missing: Debian's
# redis-server and memcached, and Valkey from bookworm-backports. Safe to run again; needs
# root or sudo only when installing.
#
# What it changes on the machine (README, "The two commands"):
# - installs the packages redis-server, memcached and (on bookworm) valkey-tools, and stops
#   and disables the system-wide services the first two start;
# - adds /etc/apt/sources.list.d/bookworm-backports.sources when no bookworm-backports source
#   is configured;
# - links /usr/local/bin/valkey-server to /usr/bin/valkey-check-rdb (see below).
set -euo pipefail

. "$(dirname "$0")/apt.sh"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  apt_install "${missing[@]}"
  # The packages start system-wide services; the emulator runs its own processes.
  for service in redis-server memcached; do
    $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
  done
fi

# Valkey. Bookworm itself has none; bookworm-backports has valkey-tools 8.0.1, whose
# valkey-check-rdb is the whole server: like redis, it runs as the server unless called by a
# check-* name. The valkey-server package would only add that link plus a system daemon on
# port 6379, so the tools package and a link of our own do the job without the daemon.
command -v valkey-server >/dev/null 2>&1 && exit 0
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [ "$codename" != bookworm ]; then
  echo "valkey: not installed (only Debian bookworm is handled); valkey nodes run on redis-server" >&2
  exit 0
fi
if ! command -v valkey-check-rdb >/dev/null 2>&1; then
  if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "adding the bookworm-backports apt source" >&2
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' 'Components: main' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
      $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  fi
  echo "installing valkey-tools from bookworm-backports" >&2
  $sudo apt-get update -qq
  apt_install -t bookworm-backports valkey-tools
fi
$sudo ln -sf "$(command -v valkey-check-rdb)" /usr/local/bin/valkey-server
