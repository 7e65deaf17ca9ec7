#!/usr/bin/env bash
# Installs what building and testing objdatakey needs on Debian/Ubuntu:
# libclang (bindgen for rust-rocksdb), a C++ compiler (RocksDB's C++),
# redis-server + redis-cli (Redis backend tests), prometheus + promtool
# (exporter tests), python3 + venv (tests/python_compat.rs builds a venv with
# rocksdict from PyPI). Idempotent: does nothing when all are present.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in libclang-dev clang g++ make pkg-config redis-server redis-tools prometheus openssl python3 python3-venv; do
  have_pkg "$pkg" || need+=("$pkg")
done

if [ "${#need[@]}" -gt 0 ]; then
  echo "install-deps: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install a Rust toolchain (1.88 or newer) first" >&2
  exit 1
fi
for tool in redis-server redis-cli prometheus promtool clang; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-deps: $tool still missing after install" >&2; exit 1; }
done
