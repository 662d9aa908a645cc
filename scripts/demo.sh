#!/usr/bin/env bash
# scripts/demo.sh [--orders N] [--seed S] [--cluster] [--keep] - the order example end to end on this machine.
#
# Installs what is missing (scripts/install-deps.sh demo), builds walcast, starts a private PostgreSQL 15
# (write and read databases) and Redis in a temp dir, loads examples/orders, creates the slot, runs
# `walcast run` in the background, drives N random order commands (CALL shop.run_workload), then shows
# a customer's orders from both projections, the lifetime-value leaderboard and the end-to-end lag, and
# runs examples/orders/check.sh. Everything it started is stopped on exit (--keep leaves the temp dir).
# --cluster: the Redis projections go to a Redis Cluster of 3 masters and 3 replicas
# (examples/orders/walcast-cluster.yaml: each customer's keys under the customer's {hash tag}).
set -euo pipefail

orders=3000
seed=0.5
keep=0
cluster=0
while [ $# -gt 0 ]; do
    case "$1" in
    --orders) orders=${2:?--orders needs a number}; shift 2 ;;
    --orders=*) orders=${1#--orders=}; shift ;;
    --seed) seed=${2:?--seed needs a number in [-1, 1]}; shift 2 ;;
    --keep) keep=1; shift ;;
    --cluster) cluster=1; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$orders" in '' | *[!0-9]*) echo "demo: --orders wants a positive integer" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '\n== %s\n' "$*"; }
now_ms() { date +%s%3N; }

# ---- 1. packages: only the missing ones (scripts/install-deps.sh: no recommends, no system cluster) ----
"$root/scripts/install-deps.sh" demo

# ---- 2. build ----
say "building"
cmake -B build >/dev/null
cmake --build build --target walcast -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
walcast=$root/build/walcast
config=$root/examples/orders/walcast.yaml
[ "$cluster" = 1 ] && config=$root/examples/orders/walcast-cluster.yaml

# ---- 3. private servers; cleanup on any exit ----
dir=$(mktemp -d /tmp/walcast-demo.XXXXXX)
walcast_pid=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$walcast_pid" ] && kill -0 "$walcast_pid" 2>/dev/null; then
        kill -TERM "$walcast_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$walcast_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$walcast_pid" 2>/dev/null || true
        wait "$walcast_pid" 2>/dev/null || true
    fi
    "$root/scripts/services.sh" stop "$dir" || true
    if [ "$keep" = 1 ]; then
        echo "demo: kept $dir (walcast.log, pg.log, redis/)"
    else
        rm -rf "$dir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$cluster" = 1 ]; then
    say "starting PostgreSQL, Redis and a Redis Cluster (3 masters, 3 replicas) in $dir"
    "$root/scripts/services.sh" start "$dir" --cluster
else
    say "starting PostgreSQL and Redis in $dir"
    "$root/scripts/services.sh" start "$dir"
fi
# shellcheck disable=SC1091
. "$dir/env"
redis_db=0
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/orders.env" <<EOF
export WALCAST_SOURCE_DSN="host=127.0.0.1 port=$PGPORT dbname=shop user=walcast"
export WALCAST_SOURCE_SLOT=walcast_orders
export WALCAST_SINKS_READDB_DSN="host=127.0.0.1 port=$PGPORT dbname=shop_read user=walcast"
export WALCAST_SINKS_CACHE_DSN="redis://127.0.0.1:$WALCAST_TEST_REDIS_PORT/$redis_db"
export WALCAST_METRICS_LISTEN=127.0.0.1:$metrics_port
EOF
# In a cluster every node is a seed.
[ "$cluster" = 1 ] && echo "export WALCAST_SINKS_CACHE_DSN=\"redis://$WALCAST_TEST_REDIS_CLUSTER\"" >>"$dir/orders.env"
# shellcheck disable=SC1091
. "$dir/orders.env"

wsql() { psql -X -q -v ON_ERROR_STOP=1 -d shop "$@"; }
rsql() { psql -X -q -v ON_ERROR_STOP=1 -d shop_read "$@"; }
rcli() { redis-cli -p "$WALCAST_TEST_REDIS_PORT" -n "$redis_db" "$@"; }
# The keys of a customer ($1) and of an order ($1 its customer, $2 the order): tagged in the cluster.
ckey() { if [ "$cluster" = 1 ]; then echo "customer:{$1}"; else echo "customer:$1"; fi; }
okey() { if [ "$cluster" = 1 ]; then echo "order:{$1}:$2"; else echo "order:$2"; fi; }
if [ "$cluster" = 1 ]; then
    first=${WALCAST_TEST_REDIS_CLUSTER%%,*}
    # -c: redis-cli follows the cluster to each key's master.
    rcli() { redis-cli -c -h "${first%:*}" -p "${first##*:}" "$@"; }
fi

say "loading examples/orders (databases shop and shop_read)"
createdb shop
createdb shop_read
wsql -f examples/orders/write.sql
rsql -f examples/orders/read.sql

say "creating the slot and starting walcast run (log: $dir/walcast.log)"
"$walcast" slot create -c "$config"
"$walcast" run -c "$config" >"$dir/walcast.log" 2>&1 &
walcast_pid=$!
sleep 0.5
kill -0 "$walcast_pid" 2>/dev/null || { cat "$dir/walcast.log" >&2; echo "demo: walcast run exited" >&2; exit 1; }

# Wait (at most $2 seconds) until order_summary holds order $1; prints the milliseconds waited.
# The read database polls itself (every 2 ms, in 1 s rounds) so the figure is not psql start-up time;
# between rounds, give up if walcast has died.
wait_for_order() {
    local id=$1 timeout=$2 t0 t1 found
    t0=$(now_ms)
    while :; do
        found=$(rsql -At -c "SET statement_timeout = '1s'" -c "DO \$\$ BEGIN
            WHILE NOT EXISTS (SELECT 1 FROM order_summary WHERE order_id = $id) LOOP
                PERFORM pg_sleep(0.002);
            END LOOP; END \$\$" -c "SELECT 1" 2>/dev/null || true)
        [ "$found" = 1 ] && break
        if ! kill -0 "$walcast_pid" 2>/dev/null; then
            echo "demo: walcast run died; its log:" >&2
            tail -20 "$dir/walcast.log" >&2
            return 1
        fi
        if [ $(($(now_ms) - t0)) -gt $((timeout * 1000)) ]; then
            echo "demo: order $id did not reach order_summary within ${timeout}s; walcast log:" >&2
            tail -20 "$dir/walcast.log" >&2
            return 1
        fi
    done
    t1=$(now_ms)
    echo $((t1 - t0))
}

say "driving $orders random commands through shop.run_workload"
t0=$(now_ms)
wsql -c "CALL shop.run_workload($orders, $seed)"
t1=$(now_ms)
last=$(wsql -At -c "SELECT max(id) FROM shop.orders")
echo "$orders commands in $((t1 - t0)) ms ($(( orders * 1000 / (t1 - t0 + 1) )) commands/s); last order $last"
catchup=$(wait_for_order "$last" 120)
echo "projection caught up ${catchup} ms after the workload's last commit (measured from the shell: psql start-up included)"

# One more order on an idle pipeline: commit -> visible in order_summary. A session on the read database
# is already polling (every 0.5 ms) when the order commits, and both sides read the server clock, so
# the figure is not psql's start-up time.
customer=$(wsql -At -c "SELECT customer_id FROM shop.orders WHERE id = $last")
rsql -At -c "SET statement_timeout = '30s'" -c "DO \$\$ BEGIN
    WHILE NOT EXISTS (SELECT 1 FROM order_summary WHERE order_id > $last) LOOP
        PERFORM pg_sleep(0.0005);
    END LOOP; END \$\$" -c "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint" >"$dir/seen" 2>/dev/null &
poller=$!
sleep 0.3
out=$(wsql -At -c "SELECT shop.place_order($customer, '[{\"sku\": \"DEMO-1\", \"qty\": 2, \"unit_price\": 19.99}]')" \
    -c "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
id=$(echo "$out" | sed -n 1p)
committed=$(echo "$out" | sed -n 2p)
wait "$poller" || true
seen=$(tail -1 "$dir/seen")
lag=$(wait_for_order "$id" 30) # also checks walcast is alive
[ -n "$seen" ] && lag=$((seen - committed))
# Redis is a separate sink: wait for it too before reading it.
for _ in $(seq 1 3000); do [ "$(rcli EXISTS "$(okey "$customer" "$id")")" = 1 ] && break; sleep 0.01; done
echo "end-to-end lag of one order (commit to order_summary): ${lag} ms"

say "customer $customer: newest orders from PostgreSQL (order_summary)"
rsql -c "SELECT order_id, status, total, item_count, placed_at FROM order_summary
         WHERE customer_id = $customer ORDER BY placed_at DESC, order_id DESC LIMIT 10"
say "customer $customer: ZREVRANGE $(ckey "$customer"):orders 0 9 WITHSCORES (score = placed_at, epoch ms)"
rcli ZREVRANGE "$(ckey "$customer"):orders" 0 9 WITHSCORES |
    awk 'NR % 2 { m = $0; next } { printf "  order %-8s score %s\n", m, $0 }'
if [ "$cluster" = 1 ]; then
    say "customer $customer: HGETALL $(ckey "$customer"):ltv (in the hash slot of the customer's orders)"
    rcli HGETALL "$(ckey "$customer"):ltv" | awk 'NR % 2 { f = $0; next } { printf "  %-6s %s\n", f, $0 }'
    say "the cluster's masters (port, hash slots)"
    "$root/scripts/services.sh" cluster-masters "$dir" | sed 's/^/  /'
fi
say "top 10 lifetime values: ZREVRANGE ltv:leaderboard 0 9 WITHSCORES (score = cents, an exact integer)"
rcli ZREVRANGE ltv:leaderboard 0 9 WITHSCORES |
    awk 'NR % 2 { m = $0; next } { v = $0 + 0; s = v < 0 ? "-" : ""; if (v < 0) v = -v
        printf "  customer %-6s %9s%d.%02d   (score %s)\n", m, s, int(v / 100), v % 100, $0 }'
say "top 10 lifetime values from PostgreSQL (customer_ltv)"
rsql -c "SELECT customer_id, lifetime_value, orders FROM customer_ltv ORDER BY lifetime_value DESC LIMIT 10"

say "walcast status (from http://$WALCAST_METRICS_LISTEN/status; /metrics, /healthz, /readyz beside it)"
"$walcast" status -c "$config"

say "examples/orders/check.sh: every projection against the write side"
"$root/examples/orders/check.sh" "$dir"
