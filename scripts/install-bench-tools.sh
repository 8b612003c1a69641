#!/usr/bin/env bash
# Installs what `make bench` drives besides the emulator, when missing: wrk, the load
# generator `bench describe` measures with (Debian's package; without it the bench falls
# back to its in-process generator, whose figures are not the issue's), and moto_server,
# whose figures `bench describe` prints beside ours (from pip, as the test tools do).
# Safe to run again.
set -euo pipefail

. "$(dirname "$0")/apt.sh"
apt_install_for wrk wrk
command -v moto_server >/dev/null 2>&1 || python3 -m pip install --quiet "moto[s3,server]"
