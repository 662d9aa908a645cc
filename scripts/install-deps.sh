#!/usr/bin/env bash
# Install what walcast needs, only what is missing, as a good guest (Debian bookworm). The one install
# script of every entry point: scripts/demo.sh, test.sh, chaos.sh, bench.sh and fuzz.sh call it.
#
#   scripts/install-deps.sh [demo|test|bench|fuzz ...]     (default: test)
#
#   demo   build tools and libraries, PostgreSQL 15 with wal2json, Redis
#   test   demo, plus Criterion, valgrind, python3 and prometheus (for promtool), and the libraries of
#          the read-your-writes example clients (python3-redis, python3-psycopg2; Go with redigo, lib/pq)
#   bench  demo, plus valgrind and python3
#   fuzz   build tools and libraries, plus clang with libFuzzer
#
# As root it runs one `apt-get update` and `apt-get install --no-install-recommends` of the missing
# packages, quietly. As another user it names them and exits 1. A Debian install of PostgreSQL creates
# and starts a system cluster (15/main, port 5432) and Redis a system server on port 6379; walcast's
# scripts use private servers in temp dirs only, so before installing, this script writes
# /etc/postgresql-common/createcluster.d/walcast.conf (create_main_cluster = false: no 15/main is made)
# and, for the length of the install only, a policy-rc.d that keeps package scripts from starting
# services. Remove that file to get Debian's default back for clusters made later.
set -euo pipefail

build=(cmake gcc make pkg-config libc6-dev libpq-dev libjansson-dev libhiredis-dev libfyaml-dev libmicrohttpd-dev)
servers=(postgresql-15 postgresql-15-wal2json postgresql-client-15 redis-server)
pkgs=()
[ $# -eq 0 ] && set -- test
for profile in "$@"; do
    case "$profile" in
    demo) pkgs+=("${build[@]}" "${servers[@]}") ;;
    test) pkgs+=("${build[@]}" "${servers[@]}" libcriterion-dev valgrind python3 prometheus python3-redis
        python3-psycopg2 golang-go golang-github-gomodule-redigo-dev golang-github-lib-pq-dev) ;;
    bench) pkgs+=("${build[@]}" "${servers[@]}" valgrind python3) ;;
    fuzz) pkgs+=("${build[@]}" clang libclang-rt-14-dev) ;;
    *) echo "install-deps: unknown profile \"$profile\" (use demo, test, bench or fuzz)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${pkgs[@]}"; do
    case " ${missing[*]} " in *" $p "*) continue ;; esac
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root, or: sudo apt-get install --no-install-recommends ${missing[*]})" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"

# No system cluster and no system services from these packages.
case " ${missing[*]} " in
*" postgresql-15 "*)
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false  # written by walcast's scripts/install-deps.sh" \
        >/etc/postgresql-common/createcluster.d/walcast.conf ;;
esac
policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# written by walcast install-deps.sh for the length of an install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/install-deps.XXXXXX)
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -30 "$log" >&2
    rm -f "$log"
    echo "install-deps: apt-get failed (the lines above are its last output)" >&2
    exit 1
fi
rm -f "$log"
# The tests need prometheus's promtool only, never its daemon; nor at the next boot (the package
# enables its unit).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
