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
#   scripts/services.sh stop-redis DIR                         stop Redis only (an outage; AOF kept) ...
#   scripts/services.sh start-redis DIR                        ... and bring it back
#
# Both PostgreSQL instances trust every local connection except the role walcast_pw
# (WALCAST_TEST_PASSWORD_ROLE), which must give its password (scram-sha-256): the tests of a wrong
# password create it with one.
#
# Redis Cluster (3 masters, 3 replicas; AOF with appendfsync always like the single Redis):
#   scripts/services.sh start DIR --cluster       all of the above and the cluster (started side by side)
#   scripts/services.sh start-cluster DIR         the cluster alone, its variables appended to DIR/env
#   scripts/services.sh cluster-kill DIR PORT [--no-wait]
#         kill -9 the node on PORT; a master's replica takes over: wait (up to 30 s) until it has and
#         every live node says cluster_state:ok, print "killed PORT, PORT2 took over" (--no-wait: return
#         at once, the failover still to come)
#   scripts/services.sh cluster-lose DIR PORT
#         a failover that loses acknowledged writes: the replica of the master on PORT blocks (DEBUG SLEEP,
#         WALCAST_REDIS_CLUSTER_LOSE_SECONDS, default 4 s), the master drops its link to it (CLIENT KILL TYPE
#         replica) and takes writes for 2 s more, then it is killed (kill -9) and its replica, once awake,
#         takes over without them; waits as cluster-kill does
#   scripts/services.sh cluster-restart DIR PORT  start a killed node again (a former master comes back as
#         a replica of its successor); wait until it is connected and its replication link is up
#   scripts/services.sh cluster-reshard DIR N [FROM_PORT TO_PORT]
#         move N slots (the lowest of FROM's) live from master FROM to master TO with redis-cli --cluster
#         reshard (keys are migrated; clients see MOVED/ASK); default FROM is the master with the most
#         slots, TO the one with the fewest
#   scripts/services.sh cluster-masters DIR       print "PORT NSLOTS" for each live master
#   scripts/services.sh cluster-wait DIR          wait until every live node says cluster_state:ok
#
# DIR/env for the cluster: WALCAST_TEST_REDIS_CLUSTER="127.0.0.1:P1,...,127.0.0.1:P6" (every node, any
# is a seed) and WALCAST_TEST_REDIS_CLUSTER_URL="redis://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3". The
# nodes live in DIR/cluster/node-1..6 (nodes.conf, AOF, log, pid); ports (and the cluster bus ports, set
# by cluster-port so that none goes past 65535) are free loopback ports. cluster-node-timeout is 1500 ms
# (WALCAST_REDIS_CLUSTER_NODE_TIMEOUT) so that a failover takes about 2-3 s, and
# cluster-replica-validity-factor 0 so that a replica always takes over, however long its link was down.
#
# DIR/env: PGHOST, PGPORT, ... and WALCAST_TEST_PG_DSN name the source instance; WALCAST_TEST_READ_PG_PORT
# and WALCAST_TEST_READ_PG_DSN the read instance (WALCAST_TEST_READ_PGDATA its data directory). The read
# instance is a copy of the freshly initialized cluster (faster than a second initdb) on its own port;
# both start in parallel. fsync is on (as in production, for bench.sh) unless WALCAST_PG_FSYNC=off, which
# scripts/test.sh sets: the tests crash processes, not the machine.
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the "postgres" user (created when
# missing). Nothing system-wide is touched: the data directory, sockets and logs all live under DIR.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
usage="usage: $0 start|stop|restart-pg|restart-read-pg|stop-pg|start-pg|restart-redis|stop-redis|start-redis|start-cluster|cluster-kill|cluster-lose|cluster-restart|cluster-reshard|cluster-masters|cluster-wait DIR [ARGS]"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "$usage" >&2; exit 2; }

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

# free_ports N [EXCLUDE...]: N distinct free loopback ports, one a line, none of EXCLUDE.
free_ports() {
    python3 - "$@" <<'EOF' 2>/dev/null || for _ in $(seq 1 "$1"); do echo $((20000 + RANDOM % 20000)); done
import socket, sys
n, exclude, socks = int(sys.argv[1]), set(sys.argv[2:]), []
while len(socks) < n:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if str(s.getsockname()[1]) in exclude:
        s.close()
        continue
    socks.append(s)  # held open until all are chosen: no port twice
for s in socks:
    print(s.getsockname()[1])
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
    local cluster_pid=
    if [ "$with_cluster" = 1 ]; then
        # The cluster starts beside PostgreSQL's initdb (it takes about 2 s, mostly redis-cli's waits).
        start_cluster "$pgport" "$readport" "$redisport" >"$dir/cluster-start.log" 2>&1 &
        cluster_pid=$!
    fi
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
track_commit_timestamp = ${WALCAST_PG_TRACK_COMMIT_TS:-on}
wal_sender_timeout = 60s
fsync = ${WALCAST_PG_FSYNC:-on}
synchronous_commit = on
shared_buffers = 128MB
max_connections = 100
logging_collector = off
EOF
    echo "host replication all 127.0.0.1/32 trust" >>"$dir/pgdata/pg_hba.conf"
    # One role that needs a password (the first matching line wins): for the tests of a wrong one.
    { printf 'host all walcast_pw 127.0.0.1/32 scram-sha-256\nhost replication walcast_pw 127.0.0.1/32 scram-sha-256\n'
      cat "$dir/pgdata/pg_hba.conf"; } >"$dir/pg_hba.tmp"
    as_pg cp "$dir/pg_hba.tmp" "$dir/pgdata/pg_hba.conf"
    rm -f "$dir/pg_hba.tmp"
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
export WALCAST_TEST_PASSWORD_ROLE=walcast_pw
EOF
    echo "services: postgresql on 127.0.0.1:$pgport, read postgresql on 127.0.0.1:$readport, redis on 127.0.0.1:$redisport ($dir)"
    if [ -n "$cluster_pid" ]; then
        wait "$cluster_pid" || { cat "$dir/cluster-start.log" >&2; exit 1; }
        cat "$dir/cluster/env" >>"$dir/env"
        cat "$dir/cluster-start.log"
    fi
}

stop() {
    [ -d "$dir/pgdata" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    [ -d "$dir/pgdata-read" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pgdata-read" -m immediate -w stop >/dev/null 2>&1 || true
    if [ -f "$dir/redis/redis.pid" ]; then
        kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true
    fi
    stop_cluster
    return 0
}

redis_port() { awk '/^port/{print $2}' "$dir/redis.conf"; }
stop_redis() {
    local port
    port=$(redis_port)
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    sleep 0.2
    # The old server must have let go of the port (and its AOF) before a new one starts.
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 || break
        sleep 0.05
    done
}
start_redis() {
    local port
    port=$(redis_port)
    redis-server "$dir/redis.conf"
    # Back when it answers: it has loaded the AOF by then.
    for _ in $(seq 1 200); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.05
    done
}

# ---- Redis Cluster ----

cli() { # cli PORT ARGS...: redis-cli on a node, its output only
    local port=$1
    shift
    redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

node_dirs() { ls -d "$dir"/cluster/node-* 2>/dev/null || true; }
node_port() { awk '$1 == "port" {print $2}' "$1/redis.conf"; }
node_dir_of() { # node_dir_of PORT
    local d
    for d in $(node_dirs); do
        [ "$(node_port "$d")" = "$1" ] && { echo "$d"; return 0; }
    done
    echo "services: no redis cluster node on port $1 in $dir" >&2
    return 1
}
alive() { [ "$(cli "$1" ping)" = PONG ]; }
live_port() { # the port of a node that answers
    local d
    for d in $(node_dirs); do
        alive "$(node_port "$d")" && { node_port "$d"; return 0; }
    done
    echo "services: no redis cluster node answers in $dir" >&2
    return 1
}
# A live node that is a master: its view of the cluster is the one to read (a node just restarted may
# still hold an old view for a moment).
master_port() {
    local d port
    for d in $(node_dirs); do
        port=$(node_port "$d")
        [ "$(cli "$port" role | head -1)" = master ] && { echo "$port"; return 0; }
    done
    live_port
}
# The live masters as "ID PORT NSLOTS", from CLUSTER NODES on a live master (a failed master is left out).
masters() {
    cli "$(master_port)" cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ {
        n = 0
        for (i = 9; i <= NF; i++) {
            if ($i ~ /^\[/) continue
            split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1)
        }
        split($2, a, "@"); sub(/.*:/, "", a[1]); print $1, a[1], n }'
}
# The port of the master that serves SLOT, as a live node sees it.
slot_owner() {
    cli "$(master_port)" cluster nodes | awk -v slot="$1" '$3 ~ /master/ && $3 !~ /fail/ {
        for (i = 9; i <= NF; i++) {
            if ($i ~ /^\[/) continue
            split($i, r, "-"); if (r[2] == "") r[2] = r[1]
            if (slot + 0 >= r[1] + 0 && slot + 0 <= r[2] + 0) { split($2, a, "@"); sub(/.*:/, "", a[1]); print a[1] }
        } }'
}

# Wait (up to $1 s) until every live node says cluster_state:ok and every live replica's link is up.
cluster_wait() {
    local limit=$(($1 * 20)) d port ok
    for _ in $(seq 1 "$limit"); do
        ok=1
        for d in $(node_dirs); do
            port=$(node_port "$d")
            alive "$port" || continue
            cli "$port" cluster info | grep -q '^cluster_state:ok' || { ok=0; break; }
            if cli "$port" role | head -1 | grep -q slave; then
                cli "$port" info replication | grep -q '^master_link_status:up' || { ok=0; break; }
            fi
        done
        [ $ok = 1 ] && return 0
        sleep 0.05
    done
    echo "services: the redis cluster in $dir is not ok after $1 s" >&2
    return 1
}

start_cluster() { # start_cluster [PORT TO AVOID...]
    local ports i d port seeds="" url=""
    if [ -n "$(node_dirs)" ]; then
        echo "services: $dir/cluster exists: stop and remove it first" >&2
        return 1
    fi
    mkdir -p "$dir/cluster"
    mapfile -t ports < <(free_ports 12 "$@")
    for i in 1 2 3 4 5 6; do
        d="$dir/cluster/node-$i"
        port=${ports[$((i - 1))]}
        mkdir -p "$d"
        cat >"$d/redis.conf" <<EOF
bind 127.0.0.1
port $port
cluster-enabled yes
cluster-port ${ports[$((i + 5))]}
cluster-config-file nodes.conf
cluster-node-timeout ${WALCAST_REDIS_CLUSTER_NODE_TIMEOUT:-1500}
cluster-replica-validity-factor 0
repl-diskless-sync-delay 0
enable-debug-command local
dir $d
daemonize yes
pidfile $d/redis.pid
logfile $d/redis.log
appendonly ${WALCAST_REDIS_AOF:-yes}
appendfsync ${WALCAST_REDIS_FSYNC:-always}
save ""
EOF
        redis-server "$d/redis.conf"
        seeds="$seeds${seeds:+,}127.0.0.1:$port"
        [ "$i" -le 3 ] && url="$url${url:+,}127.0.0.1:$port"
    done
    for i in 0 1 2 3 4 5; do
        for _ in $(seq 1 100); do
            alive "${ports[$i]}" && break
            sleep 0.05
        done
    done
    # The first three become the masters (slots 0-5460, 5461-10922, 10923-16383), the others replicas.
    # shellcheck disable=SC2046
    redis-cli --cluster create $(for i in 0 1 2 3 4 5; do echo "127.0.0.1:${ports[$i]}"; done) \
        --cluster-replicas 1 --cluster-yes >"$dir/cluster/create.log" 2>&1 ||
        { cat "$dir/cluster/create.log" >&2; return 1; }
    cluster_wait 30
    cat >"$dir/cluster/env" <<EOF
export WALCAST_TEST_REDIS_CLUSTER="$seeds"
export WALCAST_TEST_REDIS_CLUSTER_URL="redis://$url"
EOF
    echo "services: redis cluster on $seeds (the first three are the masters)"
}

stop_cluster() {
    local d p pids="" left
    for d in $(node_dirs); do
        [ -f "$d/redis.pid" ] || continue
        p=$(cat "$d/redis.pid")
        kill "$p" 2>/dev/null && pids="$pids $p"
    done
    # Gone before the caller removes the directory under them.
    for _ in $(seq 1 100); do
        left=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && left=1; done
        [ $left = 0 ] && break
        sleep 0.05
    done
}

cluster_kill() { # cluster_kill PORT [--no-wait]
    local port=${1:?cluster-kill needs a PORT} d role id slot pid t0 owner
    d=$(node_dir_of "$port")
    alive "$port" || { echo "services: the redis cluster node on port $port is not running" >&2; return 1; }
    role=$(cli "$port" role | head -1)
    id=$(cli "$port" cluster myid)
    # One of its slots, to see who serves it afterwards.
    slot=$(cli "$port" cluster nodes | awk '$3 ~ /myself/ { for (i = 9; i <= NF; i++) if ($i !~ /^\[/) { split($i, r, "-"); print r[1]; exit } }')
    pid=$(cat "$d/redis.pid")
    kill -9 "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    rm -f "$d/redis.pid"
    if [ "$role" != master ] || [ "${2:-}" = --no-wait ]; then
        echo "services: killed redis cluster node 127.0.0.1:$port ($role)"
        return 0
    fi
    t0=$(date +%s%N)
    for _ in $(seq 1 600); do
        if cli "$(live_port)" cluster nodes | awk -v id="$id" '$1 == id {print $3}' | grep -qw fail; then
            owner=
            [ -n "$slot" ] && owner=$(slot_owner "$slot")
            if [ -z "$slot" ] || { [ -n "$owner" ] && [ "$owner" != "$port" ]; }; then
                cluster_wait 30
                echo "services: killed redis cluster master 127.0.0.1:$port; ${owner:+127.0.0.1:$owner took over }after $((($(date +%s%N) - t0) / 1000000)) ms"
                return 0
            fi
        fi
        sleep 0.05
    done
    echo "services: no replica took over from the redis cluster master on port $port within 30 s" >&2
    return 1
}

# Every live node sees node ID (on PORT) in the role it says it has (a master that came back as a replica
# may claim its old slots until the others' newer epoch reaches it).
roles_agree() {
    local role d p
    role=$(cli "$1" role | head -1)
    [ "$role" = slave ] || [ "$role" = master ] || return 1
    for d in $(node_dirs); do
        p=$(node_port "$d")
        alive "$p" || continue
        cli "$p" cluster nodes | awk -v id="$2" -v r="$role" '$1 == id { ok = ($3 ~ r) } END { exit !ok }' || return 1
    done
}

cluster_lose() { # cluster_lose PORT
    local port=${1:?cluster-lose needs a PORT} replica secs=${WALCAST_REDIS_CLUSTER_LOSE_SECONDS:-4}
    alive "$port" || { echo "services: the redis cluster node on port $port is not running" >&2; return 1; }
    [ "$(cli "$port" role | head -1)" = master ] || { echo "services: 127.0.0.1:$port is not a master" >&2; return 1; }
    # Its replica, as the replica itself says (ROLE: slave, the master's address; its link up): a node's
    # view of the others may lag a restart.
    local d p r
    replica=
    for d in $(node_dirs); do
        p=$(node_port "$d")
        [ "$p" != "$port" ] && alive "$p" || continue
        r=$(cli "$p" role | tr '\n' ' ')
        case "$r" in "slave 127.0.0.1 $port connected "*) replica=$p; break ;; esac
    done
    [ -n "$replica" ] || { echo "services: the master on port $port has no replica connected to it" >&2; return 1; }
    # The replica blocks (DEBUG SLEEP), then the master drops its link to it (CLIENT KILL TYPE replica): the
    # replica cannot connect again while it sleeps, and the master goes on taking writes it never sends.
    # (Blocking alone would not do: the master's writes would wait in the replica's socket buffer, and it
    # would read them when it wakes.)
    cli "$replica" debug sleep "$secs" >/dev/null &
    sleep 0.2
    cli "$port" client kill type replica >/dev/null
    sleep 2
    cluster_kill "$port" | sed 's/^services: killed/services: lost writes: killed/'
    wait
}

cluster_restart() { # cluster_restart PORT
    local port=${1:?cluster-restart needs a PORT} d
    d=$(node_dir_of "$port")
    alive "$port" && { echo "services: the redis cluster node on port $port is running" >&2; return 1; }
    redis-server "$d/redis.conf"
    # It answers PONG once it has loaded its AOF. Then it may still believe it serves the slots it served
    # when it was killed: wait until the others see it again and every node agrees on the slots.
    local id other
    for _ in $(seq 1 600); do
        alive "$port" && break
        sleep 0.05
    done
    id=$(cli "$port" cluster myid)
    for _ in $(seq 1 600); do
        for other in $(for d in $(node_dirs); do node_port "$d"; done); do
            [ "$other" != "$port" ] && alive "$other" && break
        done
        if ! cli "$other" cluster nodes | awk -v id="$id" '$1 == id {print $3}' | grep -qw fail &&
            redis-cli --cluster check "127.0.0.1:$port" >/dev/null 2>&1 && roles_agree "$port" "$id"; then
            break
        fi
        sleep 0.05
    done
    cluster_wait 30
    echo "services: restarted redis cluster node 127.0.0.1:$port ($(cli "$port" role | head -1))"
}

cluster_reshard() { # cluster_reshard N [FROM_PORT TO_PORT]
    local n=${1:?cluster-reshard needs a number of slots} from=${2:-} to=${3:-} fromid toid list
    case "$n" in '' | *[!0-9]*) echo "services: cluster-reshard wants a number of slots" >&2; return 2 ;; esac
    list=$(masters) # one view for every choice below
    [ -n "$from" ] || from=$(echo "$list" | sort -k3,3nr | awk 'NR == 1 {print $2}')
    [ -n "$to" ] || to=$(echo "$list" | awk -v f="$from" '$2 != f' | sort -k3,3n | awk 'NR == 1 {print $2}')
    fromid=$(echo "$list" | awk -v p="$from" '$2 == p {print $1}')
    toid=$(echo "$list" | awk -v p="$to" '$2 == p {print $1}')
    [ -n "$fromid" ] || { echo "services: no live redis cluster master on port $from" >&2; return 1; }
    [ -n "$toid" ] || { echo "services: no live redis cluster master on port $to" >&2; return 1; }
    redis-cli --cluster reshard "127.0.0.1:$from" --cluster-from "$fromid" --cluster-to "$toid" \
        --cluster-slots "$n" --cluster-yes >"$dir/cluster/reshard.log" 2>&1 ||
        { cat "$dir/cluster/reshard.log" >&2; return 1; }
    cluster_wait 30
    echo "services: moved $n slots from 127.0.0.1:$from to 127.0.0.1:$to"
}

case "$cmd" in
start)
    with_cluster=0
    [ "${3:-}" = --cluster ] && with_cluster=1
    start
    ;;
start-cluster)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    start_cluster
    cat "$dir/cluster/env" >>"$dir/env"
    ;;
cluster-kill) cluster_kill "${@:3}" ;;
cluster-restart) cluster_restart "${@:3}" ;;
cluster-lose) cluster_lose "${@:3}" ;;
cluster-reshard) cluster_reshard "${@:3}" ;;
cluster-masters) masters | awk '{print $2, $3}' ;;
cluster-wait) cluster_wait 30 ;;
stop) stop ;;
restart-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -l "$dir/pg.log" -m "${3:-fast}" -w -t 60 restart >/dev/null ;;
restart-read-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata-read" -l "$dir/pg-read.log" -m "${3:-fast}" -w -t 60 restart >/dev/null ;;
stop-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -m "${3:-fast}" -w -t 60 stop >/dev/null ;;
start-pg) as_pg "$pgbin/pg_ctl" -D "$dir/pgdata" -l "$dir/pg.log" -w -t 60 start >/dev/null ;;
restart-redis)
    stop_redis
    start_redis
    ;;
stop-redis) stop_redis ;;
start-redis) start_redis ;;
*) echo "$usage" >&2; exit 2 ;;
esac
