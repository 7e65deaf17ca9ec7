#!/usr/bin/env bash
# The README's load run on the embedded RocksDB default. Installs what it
# needs, builds the release binary, checks the keystore, then drives it with
# `objdatakey load`: a write-only run over the key space, then a read-only run
# over the same keys (every read hits), printing each summary (ops/s, latency
# p50/p95/p99/max, hit rate, errors, peak RSS).
#
# The database lives in a fresh temporary directory (removed afterwards), so
# runs do not pile up data; the config is the repository's config.yaml with
# only the RocksDB path changed. Tune with LOAD_OPS, LOAD_KEYS, LOAD_CONCURRENCY
# and LOAD_VALUE_BYTES.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/env.sh
cargo build --release --locked
bin="$CARGO_TARGET_DIR/release/objdatakey"

ops="${LOAD_OPS:-1000000}"
keys="${LOAD_KEYS:-100000}"
concurrency="${LOAD_CONCURRENCY:-64}"
value_bytes="${LOAD_VALUE_BYTES:-64}"

work="$(mktemp -d "${TMPDIR:-/tmp}/objdatakey-load.XXXXXX")"
trap 'rm -rf "$work"' EXIT
sed "s|^\(\s*path:\).*|\1 $work/rocksdb|" config.yaml > "$work/config.yaml"
grep -q "path: $work/rocksdb" "$work/config.yaml" || {
  echo "run-main-job: could not point keystore.rocksdb.path at $work" >&2
  exit 1
}

"$bin" --config "$work/config.yaml" check
common=(--config "$work/config.yaml" load --keys "$keys" --concurrency "$concurrency" --value-bytes "$value_bytes" --ttl never)
# The write run covers the whole key space, so the read run hits every time.
write_ops=$(( ops > keys ? ops : keys ))
echo
echo "== write-only: $write_ops set_cache over $keys keys"
"$bin" "${common[@]}" --ops "$write_ops" --read-ratio 0
echo
echo "== read-only: $ops get_cache over the same keys (every read hits)"
"$bin" "${common[@]}" --ops "$ops" --read-ratio 1
