# Sourced by the scripts: one target directory that outlives clones, so
# RocksDB's C++ (minutes to compile) is built once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/objdatakey-target}"
