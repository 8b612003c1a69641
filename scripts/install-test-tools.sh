#!/usr/bin/env bash
# Installs what the smoke scripts drive besides the emulator, when missing: the real
# aws-cli, boto3 (the waiters smoke test), moto_server as an S3-compatible server for
# snapshot exports, maturin to build the Python wheel (python/) and, where Python has no
# ensurepip for `python3 -m venv`, virtualenv (all from pip).
# Safe to run again.
set -euo pipefail

# The dashboard's browser tests (tests/tests/dashboard) drive a real headless Chromium:
# Debian's package, from apt (as root, or through sudo).
. "$(dirname "$0")/apt.sh"
apt_install_for chromium chromium

packages=()
command -v aws >/dev/null 2>&1 || packages+=(awscli)
command -v moto_server >/dev/null 2>&1 || packages+=("moto[s3,server]")
python3 -c 'import boto3' >/dev/null 2>&1 || packages+=(boto3)
command -v maturin >/dev/null 2>&1 || packages+=("maturin>=1.5,<2")
python3 -c 'import ensurepip' >/dev/null 2>&1 || python3 -c 'import virtualenv' >/dev/null 2>&1 ||
    packages+=(virtualenv)
[ ${#packages[@]} -eq 0 ] && exit 0
echo "installing ${packages[*]}" >&2
python3 -m pip install --quiet "${packages[@]}"
