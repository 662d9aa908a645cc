#!/usr/bin/env bash
# scripts/bench.sh [--quick | --smoke] [--keep] - walcast's benchmark on a private PostgreSQL and Redis.
#
#   1. throughput: a backlog of single-event transactions (shop.place_order, one COMMIT each) and one of
#      bulk transactions, each drained by pg_recvlogical (the same wal2json options, to a file) and by
#      walcast into Redis only, PostgreSQL only and both; events/s and the ratio walcast / pg_recvlogical.
#      Every run has its own slot, created before the backlog.
#   2. memory: peak RSS (VmHWM) of walcast draining one huge transaction and a big backlog (both sinks).
#   3. CPU: instructions per event of walcast (valgrind --tool=callgrind) draining single-event
#      transactions into both sinks.
#   4. latency: steady load at 1,000 and 5,000 events/s; p50/p95/p99/max from commit to visible in Redis
#      and PostgreSQL, measured by an external probe (bench/probe.c) and from commit timestamps. At
#      1,000 events/s, read your writes alongside: every event's token waited for with GET /wait (sent
#      by the inserter right after its commit on a pooled keep-alive connection, the answers read by one
#      event loop) and by a Redis subscriber (walcast:applied:<slot>), commit to the wait returning.
# The last lines are key=value figures (ratio_redis, ratio_pg, ratio_both, p99_ms_1k, p99_ms_5k,
# rw_wait_p99_ms, rw_redis_p99_ms, rss_mib_max, instr_per_event, ...). Sizes: default 100,000-event backlogs, 1,000,000 for memory, 30 s
# of load per rate (~10 min); --quick is about 5x smaller; --smoke is tiny (a check that it all works).
# --only throughput|memory|cpu|latency runs that step alone. --keep leaves the temp dir (logs, callgrind output). See BENCHMARKS.md for the figures and method.
#
# --cluster: Redis Cluster instead. One backlog of single-event transactions drained into one Redis
# (bench/redis.yaml) and into a Redis Cluster of 3 masters and 3 replicas (bench/redis-cluster.yaml, the
# keys of examples/orders/walcast-cluster.yaml), same events, one run each: events/s and the ratio
# cluster / single; then the latency at 1,000 and 5,000 events/s into the read database and the cluster
# (bench/both-cluster.yaml; the probe watches orders:status:placed on its master). Last lines:
# cluster_eps, single_eps, ratio_cluster_single, p99_ms_1k, p99_ms_5k.
set -euo pipefail

mode=full
keep=0
cluster=0
only=
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) mode=quick ;;
    --smoke) mode=smoke ;;
    --full) mode=full ;;
    --keep) keep=1 ;;
    --cluster) cluster=1 ;;
    --only) only=${2:-}; shift ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$mode" in
full)  n_single=100000 n_bulk=100000 bulk_txns=10 lat_seconds=30 lat_rates="1000 5000"
       mem_txn=1000000 mem_backlog=1000000 mem_backlog_txns=1000 instr_events=20000 ;;
quick) n_single=20000 n_bulk=20000 bulk_txns=10 lat_seconds=10 lat_rates="1000 5000"
       mem_txn=200000 mem_backlog=200000 mem_backlog_txns=200 instr_events=5000 ;;
smoke) n_single=300 n_bulk=300 bulk_txns=3 lat_seconds=2 lat_rates="1000 5000"
       mem_txn=3000 mem_backlog=3000 mem_backlog_txns=30 instr_events=200 ;;
esac

# For experiments: other latency rates, and how many keep-alive connections the probe opens for /wait up
# front at 1,000/s (more when all are busy).
lat_rates=${WALCAST_BENCH_LAT_RATES:-$lat_rates}
lat_waiters=${WALCAST_BENCH_WAITERS:-16}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# ---- what is missing, then build walcast and the helpers ----
scripts/install-deps.sh bench
say "building walcast (build-bench, RelWithDebInfo) and bench/drain.c, bench/probe.c"
cmake -B build-bench -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-bench --target walcast -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
walcast=$root/build-bench/walcast
dir=$(mktemp -d /tmp/walcast-bench.XXXXXX)
chmod 755 "$dir"
pgflags=$(pkg-config --cflags libpq 2>/dev/null || echo "-I$(pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)")
for p in drain probe; do
    # shellcheck disable=SC2086
    cc -O2 -g -Wall -o "$dir/$p" "bench/$p.c" $pgflags -lpq -lhiredis -lpthread
done

# ---- private servers; cleanup on any exit ----
walcast_pid=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$walcast_pid" ] && kill -0 "$walcast_pid" 2>/dev/null; then
        kill -TERM "$walcast_pid" 2>/dev/null || true
        wait "$walcast_pid" 2>/dev/null || true
    fi
    "$root/scripts/services.sh" stop "$dir" >/dev/null 2>&1 || true
    if [ "$keep" = 1 ]; then
        echo "bench: kept $dir" >&2
    else
        rm -rf "$dir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting PostgreSQL and Redis in $dir"
if [ "$cluster" = 1 ]; then
    "$root/scripts/services.sh" start "$dir" --cluster >&2
else
    "$root/scripts/services.sh" start "$dir" >&2
fi
# shellcheck disable=SC1091
. "$dir/env"
rport=$WALCAST_TEST_REDIS_PORT
export WALCAST_SOURCE_DSN="host=127.0.0.1 port=$PGPORT dbname=shop user=walcast"
export WALCAST_SINKS_READDB_DSN="host=127.0.0.1 port=$PGPORT dbname=shop_read user=walcast"
export WALCAST_SINKS_CACHE_DSN="redis://127.0.0.1:$rport/0"
write_dsn="host=127.0.0.1 port=$PGPORT dbname=shop user=postgres"
read_dsn="host=127.0.0.1 port=$PGPORT dbname=shop_read user=postgres"

wsql() { psql -X -q -At -v ON_ERROR_STOP=1 -d shop "$@"; }
rsql() { psql -X -q -At -v ON_ERROR_STOP=1 -d shop_read "$@"; }
rcli() { redis-cli -p "$rport" "$@"; }

createdb shop
createdb shop_read
wsql -f examples/orders/write.sql >/dev/null
rsql -f examples/orders/read.sql >/dev/null
wsql -f bench/bench.sql >/dev/null

results=$dir/results
: >"$results"
put() { echo "$1=$2" >>"$results"; echo "  $1=$2" >&2; }
get() { awk -F= -v k="$1" '$1 == k { v = $2 } END { print v }' "$results"; }
# div A B [FORMAT]: A / B, where A and B may be arithmetic expressions ("nan" when either is empty or B is 0).
div() {
    case "$1,$2" in ,* | *, | *nan*) echo nan; return ;; esac
    awk "BEGIN { a = $1; b = $2; if (b > 0) printf \"${3:-%.3f}\", a / b; else print \"nan\" }"
}

# Empty projections and cursors: every run starts from nothing, so every projection write is an insert.
# Redis also rewrites its (now empty) AOF: otherwise the AOF the previous runs grew would pass
# auto-aof-rewrite-min-size (64 MB) during the next drain, and a rewrite forked in the middle of it
# would take CPU from whichever run it lands in. One drain of 100,000 events appends ~40 MB.
reset_sinks() {
    # walcast's own tables are emptied, not dropped: read.sql creates them, and walcast's role may not.
    rsql -c "SET client_min_messages = warning" \
        -c "TRUNCATE order_summary, customer_ltv, walcast_cursor, walcast_dead_letters, walcast_owner"
    rcli FLUSHALL >/dev/null
    rcli BGREWRITEAOF >/dev/null
    for _ in $(seq 1 600); do
        rcli INFO persistence | grep -q '^aof_rewrite_in_progress:0' &&
            rcli INFO persistence | grep -q '^aof_rewrite_scheduled:0' && break
        sleep 0.1
    done
}
# After writing a backlog: VACUUM ANALYZE the write side, so that autovacuum has nothing to do on it
# during the drains (on 2 vCPUs it would take a core from whichever drain it lands in), then CHECKPOINT.
quiesce() { wsql -c "VACUUM ANALYZE" -c "CHECKPOINT"; }
new_slot() { wsql -c "SELECT pg_create_logical_replication_slot('$1', 'wal2json')" >/dev/null; }
drop_slot() { wsql -c "SELECT pg_drop_replication_slot('$1')" >/dev/null; }
# Backlog NAME: after_lsn and last_idx (see bench/bench.sql) and the flushed WAL end for pg_recvlogical.
mark() { wsql -F ' ' -c "SELECT after_lsn, last_idx, pg_current_wal_lsn() FROM bench.marks WHERE name = '$1'"; }

# pg_recvlogical SLOT ENDPOS EVENTS: drains to a file; puts the events/s.
recv_options=(-o format-version=2 -o include-transaction=true -o include-lsn=true -o include-timestamp=true
    -o add-tables=public.domain_events -o actions=insert -o add-msg-prefixes=walcast)
run_recv() {
    local slot=$1 endpos=$2 events=$3 key=$4 t0 t1 got
    t0=$(date +%s%N)
    pg_recvlogical -d "$write_dsn" -S "$slot" --start "${recv_options[@]}" --endpos="$endpos" -f "$dir/$slot.json"
    t1=$(date +%s%N)
    got=$(grep -c '"action":"I"' "$dir/$slot.json" || true)
    [ "$got" = "$events" ] || die "pg_recvlogical on $slot got $got events, expected $events"
    rm -f "$dir/$slot.json"
    put "${key}_ms" "$(( (t1 - t0) / 1000000 ))"
    put "${key}_eps" "$(div "$events" "$(( t1 - t0 )) / 1e9" %.0f)"
}

# walcast SLOT CONFIG(redis|pg|both) AFTER LAST_IDX EVENTS KEY [wrapper...]: drain, put events/s and RSS.
run_walcast() {
    local slot=$1 cfg=$2 after=$3 idx=$4 events=$5 key=$6
    shift 6
    local sinks=()
    case "$cfg" in
    redis) sinks=(--redis "127.0.0.1:$rport") ;;
    pg) sinks=(--pg "$read_dsn") ;;
    both) sinks=(--pg "$read_dsn" --redis "127.0.0.1:$rport") ;;
    esac
    reset_sinks
    WALCAST_SOURCE_SLOT=$slot "$dir/drain" --slot "$slot" --after "$after" --last-idx "$idx" "${sinks[@]}" \
        --timeout 1800 --log "$dir/walcast-$slot.log" -- "$@" "$walcast" run -c "bench/$cfg.yaml" \
        >"$dir/drain-$slot.out" || { cat "$dir/drain-$slot.out" "$dir/walcast-$slot.log" >&2; die "drain of $slot failed"; }
    local ms rss cpu
    ms=$(awk -F= '$1 == "elapsed_ms" { print $2 }' "$dir/drain-$slot.out")
    rss=$(awk -F= '$1 == "rss_kib" { print $2 }' "$dir/drain-$slot.out")
    cpu=$(awk -F= '$1 == "cpu_ms" { print $2 }' "$dir/drain-$slot.out")
    # The projections hold every event: one order_summary row / one order hash per event.
    if [ "$cfg" != redis ]; then
        [ "$(rsql -c "SELECT count(*) FROM order_summary")" = "$events" ] || die "$slot: order_summary incomplete"
    fi
    if [ "$cfg" != pg ]; then
        [ "$(rcli ZCARD orders:status:placed)" = "$events" ] || die "$slot: Redis projection incomplete"
    fi
    put "${key}_ms" "$ms"
    put "${key}_eps" "$(div "$events" "$ms / 1000" %.0f)"
    put "${key}_rss_mib" "$(div "$rss" 1024 %.1f)"
    put "${key}_cpu_us_per_event" "$(div "$cpu * 1000" "$events" %.1f)"
}

# ---- --cluster: one Redis against a Redis Cluster ----
cluster_bench() {
    local seed=${WALCAST_TEST_REDIS_CLUSTER%%,*} after idx endpos n=$n_single
    ccli() { redis-cli -c -h "${seed%:*}" -p "${seed##*:}" "$@"; }
    reset_cluster() { # every master empty, its AOF rewritten (as reset_sinks does for one Redis)
        local m
        for m in $("$root/scripts/services.sh" cluster-masters "$dir" | awk '{print $1}'); do
            redis-cli -p "$m" FLUSHALL >/dev/null
            redis-cli -p "$m" BGREWRITEAOF >/dev/null
        done
        sleep 1
    }
    say "throughput: one backlog of $n single-event transactions, into one Redis and into the cluster"
    new_slot tp_single_redis
    new_slot tp_cluster_redis
    wsql -c "CALL bench.single_event_txns('tp_cluster', $n)"
    quiesce
    read -r after idx endpos < <(mark tp_cluster)
    run_walcast tp_single_redis redis "$after" "$idx" "$n" single
    drop_slot tp_single_redis
    reset_cluster
    local t0 t1
    t0=$(date +%s%N)
    WALCAST_SOURCE_SLOT=tp_cluster_redis WALCAST_SINKS_CACHE_DSN="redis://$WALCAST_TEST_REDIS_CLUSTER" \
        "$dir/drain" --slot tp_cluster_redis --after "$after" --last-idx "$idx" --redis-cluster "$seed" \
        --events "$n" --timeout 1800 --log "$dir/walcast-tp_cluster_redis.log" -- \
        "$walcast" run -c bench/redis-cluster.yaml >"$dir/drain-cluster.out" ||
        { cat "$dir/drain-cluster.out" "$dir/walcast-tp_cluster_redis.log" >&2; die "drain into the cluster failed"; }
    t1=$(date +%s%N)
    local ms
    ms=$(awk -F= '$1 == "elapsed_ms" { print $2 }' "$dir/drain-cluster.out")
    [ "$(ccli ZCARD orders:status:placed)" = "$n" ] || die "the cluster's projection is incomplete"
    put cluster_ms "$ms"
    put cluster_eps "$(div "$n" "$ms / 1000" %.0f)"
    put cluster_cpu_us_per_event "$(div "$(awk -F= '$1 == "cpu_ms" { print $2 }' "$dir/drain-cluster.out") * 1000" "$n" %.1f)"
    put ratio_cluster_single "$(div "$(get cluster_eps)" "$(get single_eps)")"
    drop_slot tp_cluster_redis

    say "latency: track_commit_timestamp = on (restart), walcast run into the read database and the cluster"
    wsql -c "ALTER SYSTEM SET track_commit_timestamp = on"
    "$root/scripts/services.sh" restart-pg "$dir"
    reset_sinks
    reset_cluster
    wsql -c "SELECT pg_create_logical_replication_slot('lat', 'wal2json')" >/dev/null
    WALCAST_SOURCE_SLOT=lat WALCAST_SINKS_CACHE_DSN="redis://$WALCAST_TEST_REDIS_CLUSTER" \
        "$walcast" run -c bench/both-cluster.yaml >"$dir/walcast-lat.log" 2>&1 &
    walcast_pid=$!
    for _ in $(seq 1 100); do grep -q "streaming slot" "$dir/walcast-lat.log" && break; sleep 0.1; done
    grep -q "streaming slot" "$dir/walcast-lat.log" || { cat "$dir/walcast-lat.log" >&2; die "walcast run did not start"; }
    local first=1000000000000 rate label threads
    for rate in $lat_rates; do
        label=lat_$((rate / 1000))k
        threads=$((rate / 250))
        [ "$threads" -ge 2 ] || threads=2
        say "latency: $rate events/s for $lat_seconds s ($threads inserting connections)"
        "$dir/probe" --write "$write_dsn" --read "$read_dsn" --redis "$seed" --redis-zset orders:status:placed \
            --rate "$rate" --seconds "$lat_seconds" --first-id "$first" --threads "$threads" --label "$label" \
            >"$dir/$label.out"
        while IFS= read -r line; do put "${line%%=*}" "${line#*=}"; done <"$dir/$label.out"
        first=$((first + 1000000000))
        sleep 1
    done
    kill -TERM "$walcast_pid"
    wait "$walcast_pid" || true
    walcast_pid=
    say "figures (machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
    echo "mode=$mode cluster"
    cat "$results"
    echo "cluster_eps=$(get cluster_eps)"
    echo "single_eps=$(get single_eps)"
    echo "ratio_cluster_single=$(get ratio_cluster_single)"
    echo "p99_ms_1k=$(get lat_1k_redis_probe_p99_ms)"
    echo "p99_ms_5k=$(get lat_5k_redis_probe_p99_ms)"
}
if [ "$cluster" = 1 ]; then
    cluster_bench
    exit 0
fi

# Is step $1 to run (--only)?
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

# ---- 1. throughput ----
throughput() { # KIND(single|bulk) EVENTS TXNS
    local kind=$1 events=$2 txns=$3 after idx endpos
    say "throughput: $kind backlog, $events events in $txns transactions"
    for s in recv redis pg both; do new_slot "tp_${kind}_$s"; done
    if [ "$kind" = single ]; then
        wsql -c "CALL bench.single_event_txns('tp_$kind', $events)"
    else
        wsql -c "CALL bench.bulk_txns('tp_$kind', $events, $txns)"
    fi
    quiesce
    read -r after idx endpos < <(mark "tp_$kind")
    run_recv "tp_${kind}_recv" "$endpos" "$events" "recv_$kind"
    for cfg in redis pg both; do
        run_walcast "tp_${kind}_$cfg" "$cfg" "$after" "$idx" "$events" "walcast_${cfg}_$kind"
        drop_slot "tp_${kind}_$cfg"
        put "ratio_${cfg}_$kind" "$(div "$(get "walcast_${cfg}_${kind}_eps")" "$(get "recv_${kind}_eps")")"
    done
    drop_slot "tp_${kind}_recv"
}
if want throughput; then
    throughput single "$n_single" "$n_single"
    throughput bulk "$n_bulk" "$bulk_txns"
fi

# ---- 2. memory ----
if want memory; then
say "memory: one transaction of $mem_txn rows, and $mem_backlog events in $mem_backlog_txns transactions (both sinks)"
new_slot mem_txn
wsql -c "CALL bench.bulk_txns('mem_txn', $mem_txn, 1)"
quiesce
read -r after idx _ < <(mark mem_txn)
run_walcast mem_txn both "$after" "$idx" "$mem_txn" mem_txn
drop_slot mem_txn
new_slot mem_backlog
wsql -c "CALL bench.bulk_txns('mem_backlog', $mem_backlog, $mem_backlog_txns)"
quiesce
read -r after idx _ < <(mark mem_backlog)
run_walcast mem_backlog both "$after" "$idx" "$mem_backlog" mem_backlog
drop_slot mem_backlog
reset_sinks

fi

# ---- 3. CPU: instructions per event under callgrind ----
if want cpu; then
say "CPU: instructions per event, callgrind, $instr_events single-event transactions into both sinks"
new_slot cpu
wsql -c "CALL bench.single_event_txns('cpu', $instr_events)"
quiesce
read -r after idx _ < <(mark cpu)
if command -v valgrind >/dev/null; then
    # Full batches (1,000 events) whatever the speed: under callgrind walcast runs ~50x slower, and the
    # 5 ms batch delay would otherwise cut batches of a few events, unlike a native run.
    WALCAST_ENGINE_BATCH_MAX_DELAY_MS=10000 run_walcast cpu both "$after" "$idx" "$instr_events" cpu \
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" --log-file="$dir/callgrind.log"
    total=$(awk '$1 == "totals:" || $1 == "summary:" { print $2; exit }' "$dir/callgrind.out")
    put cpu_instructions "$total"
    callgrind_annotate "$dir/callgrind.out" 2>/dev/null | sed -n '1,60p' >"$dir/callgrind.top" || true
else
    echo "bench: valgrind not installed; instructions per event not measured" >&2
fi
drop_slot cpu
put instr_per_event "$(div "$(get cpu_instructions)" "$instr_events" %.0f)"

fi

# ---- 4. latency ----
if want latency; then
say "latency: track_commit_timestamp = on (restart), walcast run into both sinks, steady load"
wsql -c "ALTER SYSTEM SET track_commit_timestamp = on"
"$root/scripts/services.sh" restart-pg "$dir"
reset_sinks
wsql -c "SELECT pg_create_logical_replication_slot('lat', 'wal2json')" >/dev/null
# The endpoint serves GET /wait for the read-your-writes waiters.
lat_listen=127.0.0.1:$((20000 + RANDOM % 20000))
WALCAST_SOURCE_SLOT=lat WALCAST_METRICS_LISTEN=$lat_listen "$walcast" run -c bench/both.yaml >"$dir/walcast-lat.log" 2>&1 &
walcast_pid=$!
for _ in $(seq 1 100); do grep -q "streaming slot" "$dir/walcast-lat.log" && break; sleep 0.1; done
grep -q "streaming slot" "$dir/walcast-lat.log" || { cat "$dir/walcast-lat.log" >&2; die "walcast run did not start"; }
first=1000000000000
for rate in $lat_rates; do
    label=lat_$((rate / 1000))k
    threads=$((rate / 250))
    [ "$threads" -ge 2 ] || threads=2
    wait_args=()
    [ "$rate" = 1000 ] && wait_args=(--wait "$lat_listen" --slot lat --waiters "$lat_waiters")
    say "latency: $rate events/s for $lat_seconds s ($threads inserting connections${wait_args:+, waiters})"
    "$dir/probe" --write "$write_dsn" --read "$read_dsn" --redis "127.0.0.1:$rport" --rate "$rate" \
        --seconds "$lat_seconds" --first-id "$first" --threads "$threads" --label "$label" \
        "${wait_args[@]}" >"$dir/$label.out"
    while IFS= read -r line; do put "${line%%=*}" "${line#*=}"; done <"$dir/$label.out"
    first=$((first + 1000000000))
    sleep 1
done
put lat_walcast_rss_mib "$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$walcast_pid/status")"
kill -TERM "$walcast_pid"
wait "$walcast_pid" || true
walcast_pid=
fi

# ---- figures ----
say "figures (machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo))"
if [ "$keep" = 1 ] && [ -f "$dir/callgrind.top" ]; then
    echo "callgrind summary: $dir/callgrind.top (callgrind_annotate $dir/callgrind.out)" >&2
fi
{
    echo "mode=$mode"
    cat "$results"
    echo "ratio_redis=$(get ratio_redis_single)"
    echo "ratio_pg=$(get ratio_pg_single)"
    echo "ratio_both=$(get ratio_both_single)"
    echo "p99_ms_1k=$(get lat_1k_redis_probe_p99_ms)"
    echo "p99_ms_5k=$(get lat_5k_redis_probe_p99_ms)"
    echo "rw_wait_p99_ms=$(get lat_1k_rw_http_p99_ms)"
    echo "rw_redis_p99_ms=$(get lat_1k_rw_redis_p99_ms)"
    awk -v a="$(get mem_txn_rss_mib)" -v b="$(get mem_backlog_rss_mib)" 'BEGIN { printf "rss_mib_max=%.1f\n", (a > b ? a : b) }'
    echo "instr_per_event=$(get instr_per_event)"
}
