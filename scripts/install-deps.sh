#!/usr/bin/env bash
# Install what walcast needs to build and test, only what is missing (Debian bookworm).
set -euo pipefail
pkgs=(cmake gcc make pkg-config libpq-dev libjansson-dev libhiredis-dev libfyaml-dev libmicrohttpd-dev
    libcriterion-dev postgresql-15 postgresql-15-wal2json postgresql-client-15 redis-server valgrind python3
    prometheus)
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
# The tests need prometheus's promtool only (to check /metrics and the alert rules), never its daemon, and
# they run their own PostgreSQL and Redis: no service a package brings may start during the install.
# policy-rc.d (man invoke-rc.d) is how Debian says so; one already there (containers) stays as it is.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
trap '[ "$own_policy" != 1 ] || rm -f "$policy"' EXIT
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# Nor at the next boot: the package enables its unit.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
