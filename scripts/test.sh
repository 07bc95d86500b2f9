#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the pinned Prefect server the tests
# start (scripts/prefect-env.sh), the brokers, tansu, Azurite and the browser the UI test
# drives, then format check, clippy, a bounded fuzz campaign
# (scripts/fuzz.sh), and every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/prefect-env.sh
bash scripts/brokers-env.sh
bash scripts/kafka-env.sh
bash scripts/azure-env.sh
bash scripts/browser-env.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== fuzz (bounded; FUZZ_SECONDS per target)"
bash scripts/fuzz.sh
echo "== cargo test"
cargo test --workspace --all-features --locked
