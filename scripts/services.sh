#!/usr/bin/env bash
# Private PostgreSQL 15 (wal_level=logical, wal2json) and Redis on loopback ports in a temp dir, plus a
# second PostgreSQL 15 instance for the read database, so that the read side can be restarted (or fail)
# independently of the source, as in production where write and read databases are different servers.
#
#   scripts/services.sh start DIR   start all three, write DIR/env (source it for PG*, WALCAST_* variables)
#   scripts/services.sh stop DIR    stop all three (the directory is left for the caller to remove)
#   scripts/services.sh restart-pg DIR [fast|immediate]        the source (write) instance
#   scripts/services.sh restart-read-pg DIR [fast|immediate]   the read instance
#   scripts/services.sh stop-pg DIR [fast|immediate]           stop the source only (an outage) ...
#   scripts/services.sh start-pg DIR                           ... and bring it back
#   scripts/services.sh restart-redis DIR
#
# DIR/env: PGHOST, PGPORT, ... and WALCAST_TEST_PG_DSN name the source instance; WALCAST_TEST_READ_PG_PORT
# and WALCAST_TEST_READ_PG_DSN the read instance (WALCAST_TEST_READ_PGDATA its data directory). The read
# instance is a copy of the freshly initialized cluster (faster than a second initdb) on its own port;
# both start in parallel.
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the "postgres" user (created when
# missing). Nothing system-wide is touched: the data directory, sockets and logs all live under DIR.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|restart-pg|restart-read-pg|stop-pg|start-pg|restart-redis DIR" >&2; exit 2; }

pgbin=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[ -n "$pgbin" ] || { echo "services: PostgreSQL 15 server binaries not found (install postgresql-15)" >&2; exit 1; }

free_port() {
    python3 - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        # From a folder postgres may enter: the caller's (a project under /root) may be closed to it.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/sh postgres
        chown postgres "$dir"
        chmod 755 "$dir"
    fi
    local pgport readport redisport
    pgport=${WALCAST_PG_PORT:-$(free_port)}
    readport=${WALCAST_READ_PG_PORT:-$(free_port)}
    while [ "$readport" = "$pgport" ]; do readport=$(free_port); done
    redisport=${WALCAST_REDIS_PORT:-$(free_port)}
    as_pg "$pgbin/initdb" -D "$dir/pgdata" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_slot_wal_keep_size = 4GB
wal_sender_timeout = 60s
fsync = ${WALCAST_PG_FSYNC:-on}
synchronous_commit = on
shared_buffers = 128MB
max_connections = 100
logging_collector = off
EOF
    echo "host replication all 127.0.0.1/32 trust" >>"$dir/pgdata/pg_hba.conf"
    # The read instance: the same cluster copied, on its own port (the last "port" line wins).
    as_pg cp -a "$dir/pgdata" "$dir/pgdata-read"
    echo "port = $readport" | as_pg tee -a "$dir/pgdata-read/postgresql.conf" >/dev/null
    as_pg "$pgbin/pg_ctl" -D "$dir/pgdata-read" -l "$dir/pg-read.log" -w -t 60 start >/dev/null &
    local read_pid=$!
    as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -l "$dir/pg.log" -w -t 60 start >/dev/null ||
        { cat "$dir/pg.log" >&2; exit 1; }
    wait $read_pid || { cat "$dir/pg-read.log" >&2; exit 1; }
    mkdir -p "$dir/redis"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/redis"
    cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $redisport
dir $dir/redis
daemonize yes
pidfile $dir/redis/redis.pid
logfile $dir/redis/redis.log
appendonly ${WALCAST_REDIS_AOF:-yes}
appendfsync ${WALCAST_REDIS_FSYNC:-always}
save ""
EOF
    redis-server "$dir/redis.conf"
    for _ in $(seq 1 100); do
        redis-cli -p "$redisport" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    cat >"$dir/env" <<EOF
export PGHOST=127.0.0.1
export PGPORT=$pgport
export PGUSER=postgres
export PGDATABASE=postgres
export WALCAST_TEST_PGDATA=$dir/pgdata
export WALCAST_TEST_DIR=$dir
export WALCAST_TEST_PG_DSN="host=127.0.0.1 port=$pgport user=postgres dbname=postgres"
export WALCAST_TEST_REDIS_PORT=$redisport
export WALCAST_TEST_READ_PGDATA=$dir/pgdata-read
export WALCAST_TEST_READ_PG_PORT=$readport
export WALCAST_TEST_READ_PG_DSN="host=127.0.0.1 port=$readport user=postgres dbname=postgres"
export WALCAST_TEST_REDIS_URL="redis://127.0.0.1:$redisport/0"
EOF
    echo "services: postgresql on 127.0.0.1:$pgport, read postgresql on 127.0.0.1:$readport, redis on 127.0.0.1:$redisport ($dir)"
}

stop() {
    [ -d "$dir/pgdata" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    [ -d "$dir/pgdata-read" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pgdata-read" -m immediate -w stop >/dev/null 2>&1 || true
    if [ -f "$dir/redis/redis.pid" ]; then
        kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true
    fi
    return 0
}

case "$cmd" in
start) start ;;
stop) stop ;;
restart-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -l "$dir/pg.log" -m "${3:-fast}" -w -t 60 restart >/dev/null ;;
restart-read-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata-read" -l "$dir/pg-read.log" -m "${3:-fast}" -w -t 60 restart >/dev/null ;;
stop-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -m "${3:-fast}" -w -t 60 stop >/dev/null ;;
start-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -l "$dir/pg.log" -w -t 60 start >/dev/null ;;
restart-redis)
    port=$(awk '/^port/{print $2}' "$dir/redis.conf")
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    sleep 0.2
    # The old server must have let go of the port (and its AOF) before the new one starts.
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 || break
        sleep 0.05
    done
    redis-server "$dir/redis.conf"
    # Back when it answers: it has loaded the AOF by then.
    for _ in $(seq 1 200); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.05
    done
    ;;
*) echo "usage: $0 start|stop|restart-pg|restart-read-pg|stop-pg|start-pg|restart-redis DIR" >&2; exit 2 ;;
esac
