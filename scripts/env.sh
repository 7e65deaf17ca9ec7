# Sourced by the scripts: one target directory that outlives clones, so
# RocksDB's C++ (minutes to compile) is built once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/objdatakey-target}"

# Test, bench and example binaries of earlier builds (about 0.5 GB each with
# their debug info) are never reused once their hash changes, and they pile
# up until they fill the disk: drop those not rebuilt for two days (cargo
# relinks any it still needs).
if [ -d "$CARGO_TARGET_DIR/release/deps" ]; then
  find "$CARGO_TARGET_DIR/release/deps" "$CARGO_TARGET_DIR/release/examples" \
    -maxdepth 1 -type f -perm -u+x ! -name '*.so' -mtime +2 -delete 2>/dev/null || true
fi
