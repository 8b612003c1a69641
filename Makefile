# The two commands of the README, and a few more for the people working on the emulator.

.PHONY: run test bench soak codegen lint

# The chaos soak's seed (one a day unless given) and length for `make soak`; `make test` runs
# two minutes of it against the debug build. A failed soak names its seed for the replay.
SOAK_SEED ?= $(shell date +%Y%m%d)
SOAK_MINUTES ?= 30

# Start the emulator on 127.0.0.1:4566 (installs the cache engines first).
run:
	scripts/install-engines.sh
	cargo run --release -p server --bin elasticache-local -- serve

# Run the whole test suite (installs the cache engines and the smoke scripts' tools first):
# unit, protocol, node runtime with real engines, end-to-end (real server, real SDK, real
# nodes) and the smoke scripts (aws-cli, kill -9 of the emulator, export to an S3 server,
# boto3's and aws-cli's waiters, endpoints reached from another network namespace, the
# Python wheel and its pytest plugin), then a two-minute chaos soak (`bench soak`).
test:
	scripts/install-engines.sh
	scripts/install-test-tools.sh
	cargo build --workspace --all-targets
	cargo test --workspace
	tests/smoke/aws-cli.sh
	tests/smoke/emulator-kill9.sh
	tests/smoke/s3-export.sh
	tests/smoke/waiters.sh
	tests/smoke/advertise-host.sh
	tests/smoke/python-wheel.sh
	target/debug/bench soak --minutes 2 --seed $(SOAK_SEED)

# Print the benchmark figures (release build; installs the engines, wrk and moto first).
bench:
	scripts/install-engines.sh
	scripts/install-bench-tools.sh
	cargo build --release -p server -p e2e
	target/release/bench

# The chaos soak against the release build: faults at random for SOAK_MINUTES, invariants
# checked after each (see tests/src/bin/bench/soak/mod.rs).
soak:
	scripts/install-engines.sh
	cargo build --release -p server -p e2e
	target/release/bench soak --minutes $(SOAK_MINUTES) --seed $(SOAK_SEED)

# Regenerate crates/protocol/src/generated from api-specs/.
codegen:
	cargo run -p codegen

lint:
	cargo clippy --workspace --all-targets -- -D warnings
