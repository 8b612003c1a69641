# The two commands of the README, and a few more for the people working on the emulator.

.PHONY: run test bench codegen lint

# Start the emulator on 127.0.0.1:4566 (installs the cache engines first).
run:
	scripts/install-engines.sh
	cargo run --release -p server --bin elasticache-local -- serve

# Run the whole test suite (installs the cache engines and the smoke scripts' tools first):
# unit, protocol, node runtime with real engines, end-to-end (real server, real SDK, real
# nodes) and the smoke scripts (aws-cli, kill -9 of the emulator, export to an S3 server,
# boto3's and aws-cli's waiters, endpoints reached from another network namespace, the
# Python wheel and its pytest plugin).
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

# Print the benchmark figures (release build).
bench:
	cargo build --release -p server -p e2e
	target/release/bench

# Regenerate crates/protocol/src/generated from api-specs/.
codegen:
	cargo run -p codegen

lint:
	cargo clippy --workspace --all-targets -- -D warnings
