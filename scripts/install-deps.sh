#!/usr/bin/env bash
# Install what walcast needs to build and test, only what is missing (Debian bookworm).
set -euo pipefail
pkgs=(cmake gcc make pkg-config libpq-dev libjansson-dev libhiredis-dev libfyaml-dev libcriterion-dev
    postgresql-15 postgresql-15-wal2json postgresql-client-15 redis-server valgrind python3)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a system cluster and redis: walcast uses its own private servers only.
