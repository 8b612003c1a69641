#!/usr/bin/env bash
# The Python package (python/): maturin builds a wheel carrying the elasticache-local binary,
# a fresh virtualenv installs it with pytest and redis from PyPI, and the example suite
# (python/examples) runs through the pytest plugin's fixtures, on the wheel's own binary.
# The dev profile builds next to `cargo build --workspace --all-targets` in target/debug, not
# a release build's many minutes; it does not reuse all of it: maturin builds the server package
# alone, whose dependencies get fewer features than the workspace's (the tests' SDK and redis
# client add some), so about 50 units compile again, the workspace's crates among them (about
# 40 s of CPU). PROFILE=release builds what would be published.
#   cargo build --workspace && tests/smoke/python-wheel.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v maturin >/dev/null || { echo "maturin not found: scripts/install-test-tools.sh" >&2; exit 2; }
PROFILE=${PROFILE:-dev}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

start=$(date +%s%N)
(cd "$ROOT/python" && maturin build --quiet --profile "$PROFILE" --out "$WORK/wheels") >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log" >&2; fail "maturin build"; }
wheel=$(echo "$WORK"/wheels/elasticache_local-*.whl)
[[ -f $wheel ]] || fail "no wheel in $WORK/wheels"
pass "maturin build --profile $PROFILE in $(( ($(date +%s%N) - start) / 1000000 )) ms: $(basename "$wheel"), $(du -h "$wheel" | cut -f1)"

if python3 -c 'import ensurepip' 2>/dev/null; then python3 -m venv "$WORK/venv"; else python3 -m virtualenv -q "$WORK/venv"; fi
"$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "$wheel" -r "$ROOT/python/examples/requirements.txt"
[[ -x $WORK/venv/bin/elasticache-local ]] || fail "the wheel installed no elasticache-local into the venv"
"$WORK/venv/bin/elasticache-local" --version
pass "wheel installed in a fresh virtualenv"

# Run from a copy, so that pytest writes nothing into the repository; the plugin must pick
# the venv's binary, not target/debug's or one on PATH.
cp -r "$ROOT/python/examples" "$WORK/examples"
cd "$WORK/examples"
PYTHONDONTWRITEBYTECODE=1 ELASTICACHE_LOCAL_TIMING=1 "$WORK/venv/bin/pytest" -p no:cacheprovider -v . |
    tee "$WORK/pytest.log"
grep -qx "elasticache-local: $WORK/venv/bin/elasticache-local" "$WORK/pytest.log" ||
    fail "the plugin did not run the wheel's binary"
echo "python wheel smoke test passed"
