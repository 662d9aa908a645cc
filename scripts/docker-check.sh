#!/usr/bin/env bash
# scripts/docker-check.sh [--no-build] - build the container image and run the order example through it.
#
# For changes to the Dockerfile: builds `walcast` with `docker build --network host`, starts the private
# servers (scripts/services.sh) on loopback ports, loads examples/orders, then runs `walcast slot create`
# and `walcast run` inside the image (host network, the example configuration mounted read-only, DSNs
# from the environment), drives 500 order commands and compares the projections with check.sh. Needs a
# running Docker engine; not part of scripts/test.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
docker=${DOCKER:-docker}
[ "${1:-}" = --no-build ] || "$docker" build --network host -t walcast . >/dev/null

dir=$(mktemp -d /tmp/walcast-docker.XXXXXX)
chmod 755 "$dir"
name=walcast-check-$$
cleanup() {
    "$docker" rm -f "$name" >/dev/null 2>&1 || true
    scripts/services.sh stop "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
scripts/services.sh start "$dir" >/dev/null
# shellcheck disable=SC1091
. "$dir/env"
createdb shop && createdb shop_read
psql -X -q -v ON_ERROR_STOP=1 -d shop -f examples/orders/write.sql >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d shop_read -f examples/orders/read.sql >/dev/null
envs=(-e "WALCAST_SOURCE_DSN=host=127.0.0.1 port=$PGPORT dbname=shop user=walcast"
    -e "WALCAST_SINKS_READDB_DSN=host=127.0.0.1 port=$PGPORT dbname=shop_read user=walcast"
    -e "WALCAST_SINKS_CACHE_DSN=redis://127.0.0.1:$WALCAST_TEST_REDIS_PORT/0")
mount=(-v "$root/examples/orders/walcast.yaml:/etc/walcast/walcast.yaml:ro")
"$docker" run --rm --network host "${envs[@]}" "${mount[@]}" walcast slot create -c /etc/walcast/walcast.yaml
"$docker" run -d --name "$name" --network host "${envs[@]}" "${mount[@]}" walcast >/dev/null
psql -X -q -d shop -c "CALL shop.run_workload(500, 0.3)"
last=$(psql -X -At -d shop -c "SELECT max(id) FROM shop.orders")
for _ in $(seq 1 300); do
    [ "$(psql -X -At -d shop_read -c "SELECT count(*) FROM order_summary WHERE order_id = $last")" = 1 ] && break
    sleep 0.1
done
sleep 0.5 # the Redis sink commits beside the PostgreSQL one
CHECK_WRITE_DSN="host=127.0.0.1 port=$PGPORT dbname=shop user=postgres" \
    CHECK_READ_DSN="host=127.0.0.1 port=$PGPORT dbname=shop_read user=postgres" \
    CHECK_REDIS_URL="redis://127.0.0.1:$WALCAST_TEST_REDIS_PORT/0" examples/orders/check.sh
"$docker" stop -t 10 "$name" >/dev/null
"$docker" logs "$name" 2>&1 | tail -3
echo "docker-check: ok (image walcast, user $("$docker" run --rm --entrypoint id walcast -un))"
