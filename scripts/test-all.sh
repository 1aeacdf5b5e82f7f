#!/usr/bin/env bash
# Runs Petrel's whole test suite on a fresh machine: checks formatting and lints, builds the
# workspace once, then runs every test (unit, property, integration) one crate after another.
# Installs what the tests need first. Every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup toolchain)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy || true
cargo --version

step "format"
timeout 300 cargo fmt --all -- --check

step "lints"
timeout 1800 cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "build tests"
timeout 1800 cargo test --workspace --locked --no-run

step "build binaries"
timeout 1800 cargo build --workspace --locked --bins

step "rust tests"
timeout 2400 cargo test --workspace --locked -- --test-threads 2

step "cluster simulator"
# Five whole nodes on a simulated network under seeded faults (release build: the bulk run
# takes minutes, not hours). The regression seeds first, then PETREL_SIM_SEEDS seeds of 10 000
# steps (1 000 by default, about 7 minutes on 2 cores) with records in memory, then
# PETREL_SIM_DEVICE_SEEDS (300, about 2 minutes) on devices; a failing seed replays with
# `--seed N` (and `--storage device`).
timeout 900 cargo test --release --locked -p petrel-cluster --features sim --test regress_sim_seeds
timeout 1200 cargo run --release --locked -q -p petrel-cluster --features sim --bin sim -- \
  --seeds "${PETREL_SIM_SEEDS:-1000}" --steps 10000
# The same with records on devices kept across crashes, whole-cluster crashes included.
timeout 900 cargo run --release --locked -q -p petrel-cluster --features sim --bin sim -- \
  --seeds "${PETREL_SIM_DEVICE_SEEDS:-300}" --steps 10000 --storage device

step "fuzz"
# Each target for a bounded time from its corpus in fuzz/corpus (new finds are kept there).
# cargo-fuzz and the nightly toolchain it needs are installed when missing.
if ! cargo fuzz --help >/dev/null 2>&1; then
  timeout 900 cargo install cargo-fuzz --locked -q
fi
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
for target in message command fabric heartbeat; do
  mkdir -p "fuzz/corpus/$target"
  (cd fuzz && timeout 600 cargo +nightly fuzz run -s none "$target" "corpus/$target" -- \
    -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=2048 -max_len=4096)
done

step "official python client"
# A virtualenv of our own with the official client from PyPI.
venv=tests/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv "$venv"; }
fi
timeout 600 "$venv/bin/pip" install -q --disable-pip-version-check aerospike pytest prometheus_client pyyaml
PETREL_BIN="$PWD/target/debug/petreld" timeout 600 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python

step "container"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  PYTHON="$PWD/$venv/bin/python" timeout 900 bash docker/test.sh
  # A network split between containers, and its heal (reuses the image test.sh built).
  TAG=petrel:test PYTHON="$PWD/$venv/bin/python" timeout 600 bash docker/split-test.sh
  # The Compose cluster scaled 3 -> 5 -> 3 under load.
  TAG=petrel:test PYTHON="$PWD/$venv/bin/python" timeout 900 bash docker/scale-test.sh
else
  echo "docker is required for the container test" >&2
  exit 1
fi
