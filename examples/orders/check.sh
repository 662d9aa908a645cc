#!/usr/bin/env bash
# examples/orders/check.sh [DIR] - compare every projection of the order example with a recomputation
# from the write side (shop.orders, shop.order_items).
#
# DIR (optional): a scripts/services.sh directory; DIR/env and, when present, DIR/orders.env are sourced.
# Connections (environment):
#   CHECK_WRITE_DSN  write database, a role that can read schema shop
#                    (default: WALCAST_SOURCE_DSN with user=$PGUSER, or postgres)
#   CHECK_READ_DSN   read database (default: WALCAST_SINKS_READDB_DSN with user=$PGUSER, or postgres)
#   CHECK_REDIS_URL  redis://host:port/db (default: WALCAST_SINKS_CACHE_DSN); for the Redis Cluster of
#                    walcast-cluster.yaml its nodes, redis://host:port,host:port... (any of them: the
#                    masters are read from the cluster, each projection key where it lives)
#   CHECK_MAX_PRINT  mismatches printed per projection (default 20; all are counted)
# Prints mismatches, then "check: orders=N mismatches=M"; exits 0 only when M is 0 (1 on mismatches,
# 2 on a usage or connection error).
set -euo pipefail

if [ $# -gt 0 ]; then
    [ -d "$1" ] || { echo "usage: $0 [DIR]" >&2; exit 2; }
    # shellcheck disable=SC1091
    [ -f "$1/env" ] && . "$1/env"
    # shellcheck disable=SC1091
    [ -f "$1/orders.env" ] && . "$1/orders.env"
fi

# A keyword/value DSN gets the checking user appended (the last keyword wins in libpq); a URI is kept.
as_admin() {
    case "$1" in
    *://*) printf '%s' "$1" ;;
    *) printf '%s user=%s' "$1" "${PGUSER:-postgres}" ;;
    esac
}
write_dsn=${CHECK_WRITE_DSN:-$(as_admin "${WALCAST_SOURCE_DSN:-}")}
read_dsn=${CHECK_READ_DSN:-$(as_admin "${WALCAST_SINKS_READDB_DSN:-}")}
redis_url=${CHECK_REDIS_URL:-${WALCAST_SINKS_CACHE_DSN:-}}
max_print=${CHECK_MAX_PRINT:-20}
[ -n "$redis_url" ] || { echo "check: set CHECK_REDIS_URL or WALCAST_SINKS_CACHE_DSN" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orders-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

wq() { psql -X -q -At -F $'\t' -v ON_ERROR_STOP=1 -d "$write_dsn" -c "$1"; }
rq() { psql -X -q -At -F $'\t' -v ON_ERROR_STOP=1 -d "$read_dsn" -c "$1"; }

# A Redis Cluster (several nodes in the URL, or one that says it is a cluster node): the keys carry the
# customer's id as a hash tag (walcast-cluster.yaml), and each master is read for the keys it holds.
cluster=0
case "$redis_url" in *,*) cluster=1 ;; esac
hostports=${redis_url#redis://}
auth=
case "$hostports" in *@*) auth=${hostports%@*}; hostports=${hostports##*@} ;; esac
hostports=${hostports%%/*}
pw=${auth#*:}
# A password goes through the environment (never the command line); none: no AUTH at all.
[ -n "$pw" ] && export REDISCLI_AUTH="$pw"
if [ "$cluster" = 1 ]; then
    node() { # node HOST:PORT ARGS...: redis-cli on one node
        local hp=$1
        shift
        redis-cli -h "${hp%:*}" -p "${hp##*:}" "$@"
    }
    seed=
    for hp in ${hostports//,/ }; do
        [ "$(node "$hp" ping 2>/dev/null)" = PONG ] && { seed=$hp; break; }
    done
    [ -n "$seed" ] || { echo "check: cannot reach any node of the redis cluster" >&2; exit 2; }
    # The masters that serve slots, as host:port.
    masters=$(node "$seed" cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { split($2, a, "@"); print a[1] }')
    redis() { # a command on the master of its key (-c follows MOVED)
        redis-cli -c -h "${seed%:*}" -p "${seed##*:}" --raw "$@"
    }
    # dump PATTERN COMMAND: "key<TAB>reply as CSV" for every key matching PATTERN on every master; COMMAND
    # is run on each key (KEY stands for it).
    dump() {
        local m
        for m in $masters; do
            node "$m" --scan --pattern "$1" >"$tmp/keys"
            [ -s "$tmp/keys" ] || continue
            awk -v c="$2" '{ line = c; sub(/KEY/, $0, line); print line }' "$tmp/keys" | node "$m" --csv >"$tmp/vals"
            paste "$tmp/keys" "$tmp/vals"
        done
    }
else
    redis() { redis-cli -u "$redis_url" --raw "$@"; }
fi

redis ping >/dev/null || { echo "check: cannot reach redis" >&2; exit 2; }

# Timestamps as the events carry them; totals with two decimals.
iso="to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
# shellcheck disable=SC2059
placed_iso=$(printf "$iso" "o.placed_at")
# shellcheck disable=SC2059
updated_iso=$(printf "$iso" "o.updated_at")
ms() { printf "(extract(epoch FROM %s) * 1000)::bigint" "$1"; }

# ---- expected, from the write side: one "key<TAB>value" line per item ----
wq "SELECT o.id, concat_ws('|', o.customer_id, o.status, o.total, coalesce(i.n, 0), $placed_iso, $updated_iso)
    FROM shop.orders o
    LEFT JOIN (SELECT order_id, count(*) AS n FROM shop.order_items GROUP BY order_id) i ON i.order_id = o.id" \
    >"$tmp/summary.exp"
wq "SELECT customer_id, concat_ws('|', coalesce(sum(total) FILTER (WHERE status <> 'cancelled'), 0.00),
                                      count(*) FILTER (WHERE status <> 'cancelled'))
    FROM shop.orders GROUP BY customer_id" >"$tmp/ltv.exp"
# walcast-cluster.yaml tags each customer's keys with the customer's id: one hash slot per customer.
ckey='customer:%s'
[ "$cluster" = 1 ] && ckey='customer:{%s}'
wq "SELECT format('$ckey:orders %s', o.customer_id, o.id), $(ms o.placed_at) FROM shop.orders o" \
    >"$tmp/zcust.exp"
# The cluster example also keeps each customer's lifetime value beside the customer's orders.
[ "$cluster" = 1 ] && wq "SELECT customer_id, concat_ws('|', (coalesce(sum(total) FILTER (WHERE status <> 'cancelled'), 0) * 100)::bigint,
                                      count(*) FILTER (WHERE status <> 'cancelled'))
    FROM shop.orders GROUP BY customer_id" >"$tmp/cltv.exp"
wq "SELECT o.id, concat_ws('|', o.status, o.total, o.customer_id, $placed_iso, $updated_iso) FROM shop.orders o" \
    >"$tmp/hash.exp"
wq "SELECT format('orders:status:%s %s', o.status, o.id), $(ms o.updated_at) FROM shop.orders o" \
    >"$tmp/zstatus.exp"
# The leaderboard's score is the lifetime value in cents: an integer, compared exactly.
wq "SELECT customer_id, (coalesce(sum(total) FILTER (WHERE status <> 'cancelled'), 0) * 100)::bigint
    FROM shop.orders GROUP BY customer_id" >"$tmp/board.exp"
orders=$(wq "SELECT count(*) FROM shop.orders")

# ---- actual, from the read database ----
# shellcheck disable=SC2059
rq "SELECT order_id, concat_ws('|', customer_id, status, total, item_count,
           $(printf "$iso" placed_at), $(printf "$iso" updated_at)) FROM order_summary" >"$tmp/summary.act"
rq "SELECT customer_id, concat_ws('|', lifetime_value, orders) FROM customer_ltv" >"$tmp/ltv.act"

# ---- actual, from Redis ----
if [ "$cluster" = 1 ]; then
    # Per master: the keys of a family (SCAN), then one command per key in one pipe; CSV replies.
    csv_pairs() { # "key<TAB>"m","s",..." -> "key m<TAB>s" per pair
        awk -F'\t' -v OFS='\t' '{ n = split($2, v, ","); for (i = 1; i + 1 <= n; i += 2) {
            gsub(/"/, "", v[i]); gsub(/"/, "", v[i + 1]); print $1 " " v[i], v[i + 1] } }'
    }
    csv_fields() { # "key<TAB>"a",NULL,..." -> "key<TAB>a|(nil)|..."
        awk -F'\t' -v OFS='\t' '{ n = split($2, v, ","); s = ""; for (i = 1; i <= n; i++) {
            x = v[i]; if (x == "NULL") x = "(nil)"; gsub(/"/, "", x); s = s (i > 1 ? "|" : "") x }; print $1, s }'
    }
    dump 'customer:*:orders' 'ZRANGE KEY 0 -1 WITHSCORES' | csv_pairs >"$tmp/zcust.act"
    dump 'order:*' 'HMGET KEY status total customer_id placed_at updated' | csv_fields |
        awk -F'\t' -v OFS='\t' '{ n = split($1, k, ":"); print k[n], $2 }' >"$tmp/hash.raw"
    dump 'orders:status:*' 'ZRANGE KEY 0 -1 WITHSCORES' | csv_pairs >"$tmp/zstatus.act"
    dump 'customer:*:ltv' 'HMGET KEY cents orders' | csv_fields |
        awk -F'\t' -v OFS='\t' '{ k = $1; sub(/^customer:\{/, "", k); sub(/\}:ltv$/, "", k); print k, $2 }' \
        >"$tmp/cltv.act"
else
# One Lua call per family dumps it all (no per-key round trips).
redis EVAL "
local out = {}
for _, k in ipairs(redis.call('KEYS', 'customer:*:orders')) do
  local z = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  for i = 1, #z, 2 do out[#out + 1] = k .. ' ' .. z[i] .. '\t' .. z[i + 1] end
end
return out" 0 >"$tmp/zcust.act"
redis EVAL "
local out = {}
for _, k in ipairs(redis.call('KEYS', 'order:*')) do
  local h = redis.call('HMGET', k, 'status', 'total', 'customer_id', 'placed_at', 'updated')
  for i = 1, 5 do if not h[i] then h[i] = '(nil)' end end
  out[#out + 1] = string.sub(k, 7) .. '\t' .. table.concat(h, '|')
end
return out" 0 >"$tmp/hash.raw"
redis EVAL "
local out = {}
for _, k in ipairs(redis.call('KEYS', 'orders:status:*')) do
  local z = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  for i = 1, #z, 2 do out[#out + 1] = k .. ' ' .. z[i] .. '\t' .. z[i + 1] end
end
return out" 0 >"$tmp/zstatus.act"
fi
redis ZRANGE ltv:leaderboard 0 -1 WITHSCORES | awk -v OFS='\t' 'NR % 2 { m = $0; next } { print m, $0 }' \
    >"$tmp/board.act"

# Order totals compared with two decimals (the hash keeps each payload's total as it was written).
awk -F'\t' -v OFS='\t' '{ n = split($2, v, "|"); if (v[2] ~ /^-?[0-9.]+$/) v[2] = sprintf("%.2f", v[2])
    s = v[1]; for (i = 2; i <= n; i++) s = s "|" v[i]; print $1, s }' "$tmp/hash.raw" >"$tmp/hash.act"

# ---- compare: missing, unexpected and different keys; prints up to max_print, counts all ----
compare() { # name expected actual -> prints mismatches, adds the count to $tmp/count
    awk -F'\t' -v name="$1" -v max="$max_print" -v cnt="$tmp/count" '
        function report(msg) { if (++n <= max) print "mismatch " name ": " msg }
        FNR == NR { want[$1] = $2; next }
        {
            if (!($1 in want)) report($1 ": unexpected, value " $2)
            else if (want[$1] != $2) report($1 ": expected " want[$1] ", got " $2)
            seen[$1] = 1
        }
        END {
            for (k in want) if (!(k in seen)) report(k ": missing, expected " want[k])
            if (n > max) print "mismatch " name ": ... " n - max " more"
            print n + 0 >> cnt
        }' "$2" "$3"
}
: >"$tmp/count"
compare order_summary "$tmp/summary.exp" "$tmp/summary.act"
compare customer_ltv "$tmp/ltv.exp" "$tmp/ltv.act"
compare redis.customer_orders "$tmp/zcust.exp" "$tmp/zcust.act"
compare redis.order_hash "$tmp/hash.exp" "$tmp/hash.act"
compare redis.status_sets "$tmp/zstatus.exp" "$tmp/zstatus.act"
compare redis.ltv_leaderboard "$tmp/board.exp" "$tmp/board.act"
[ "$cluster" = 1 ] && compare redis.customer_ltv "$tmp/cltv.exp" "$tmp/cltv.act"

mismatches=$(awk '{ s += $1 } END { print s + 0 }' "$tmp/count")
echo "check: orders=$orders mismatches=$mismatches"
[ "$mismatches" -eq 0 ]
