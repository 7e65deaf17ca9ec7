#!/usr/bin/env bash
# The whole test suite: unit, integration (real RocksDB directories, real
# redis-server and Prometheus processes on loopback ports), CLI, doctests
# (README included), then every example once. Arguments go to `cargo test`
# (a filter, `--test NAME`); with arguments the examples are not run.
#
# It runs in the release profile, the one the README's load run and the benches build
# too: RocksDB's C++ (the longest part of any build) is then compiled once
# for all of them. Our own crate keeps debug assertions and overflow checks
# here (a package override: RocksDB's artifact is not affected by it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/env.sh
profile=(--release --locked
  --config 'profile.release.package.objdatakey.debug-assertions=true'
  --config 'profile.release.package.objdatakey.overflow-checks=true')
cargo test "${profile[@]}" "$@"
if [ "$#" -eq 0 ]; then
  for ex in examples/*.rs; do
    name="$(basename "$ex" .rs)"
    echo "== example $name"
    OBJDATAKEY_EXAMPLE_ONESHOT=1 cargo run "${profile[@]}" --quiet --example "$name"
  done
fi
