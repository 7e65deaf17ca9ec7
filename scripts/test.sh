#!/usr/bin/env bash
# The whole test suite: unit, integration (real RocksDB directories, real
# redis-server and Prometheus processes on loopback ports), CLI, doctests
# (README included) and the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/env.sh
cargo test --locked "$@"
