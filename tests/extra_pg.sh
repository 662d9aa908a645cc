#!/usr/bin/env bash
# extra_pg.sh - a PostgreSQL 15 instance of a test's own, for settings the shared one must not have
# (wal_level = replica, a small max_slot_wal_keep_size). Loopback only, trust authentication, everything
# in DIR; as root the server runs as "postgres", as scripts/services.sh does.
#
#   tests/extra_pg.sh start DIR PORT [SETTING=VALUE ...]   initdb, settings, start (waits until up)
#   tests/extra_pg.sh stop DIR                             immediate stop (DIR is left to the caller)
set -euo pipefail
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start DIR PORT [SETTING=VALUE...] | stop DIR" >&2
    exit 2
fi
pgbin=/usr/lib/postgresql/15/bin
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
    port=$3
    shift 3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir" && chmod 755 "$dir"
    as_pg "$pgbin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "fsync = off"
        echo "shared_buffers = 32MB"
        echo "max_connections = 40"
        echo "wal_level = logical"
        echo "max_replication_slots = 10"
        echo "max_wal_senders = 10"
        for s in "$@"; do echo "${s%%=*} = '${s#*=}'"; done
    } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    echo "host replication all 127.0.0.1/32 trust" | as_pg tee -a "$dir/data/pg_hba.conf" >/dev/null
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 start >/dev/null || { cat "$dir/pg.log" >&2; exit 1; }
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    ;;
*) echo "usage: $0 start DIR PORT [SETTING=VALUE...] | stop DIR" >&2; exit 2 ;;
esac
