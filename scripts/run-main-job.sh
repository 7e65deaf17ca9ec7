#!/usr/bin/env bash
# The main job on the embedded RocksDB default (the repository's config.yaml):
# checks the keystore, then round-trips a value through the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/env.sh
cargo build --release --locked
bin="$CARGO_TARGET_DIR/release/objdatakey"
"$bin" check
"$bin" set objdatakey:hello '{"greeting": "hello", "from": "objdatakey"}' --ttl 60
"$bin" get objdatakey:hello
