/*
 * test_replay.c - rebuilds: the outbox is replayed in an order that agrees with commit order (an identity
 * column of a UUID-keyed outbox, or a refusal that explains the fix), and a rebuilt event is the event the
 * stream delivered (same values for every column type).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders_env.h"
#include "run_env.h"

#define REDIS_DB 4

static const char uuid_outbox[] =
    "CREATE TABLE domain_events (event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
    "position bigint GENERATED ALWAYS AS IDENTITY, aggregate_type text NOT NULL DEFAULT 'order', "
    "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
    "occurred_at timestamptz NOT NULL DEFAULT now());"
    /* An order is confirmed right after it is placed, by the next transaction of the same session. */
    "CREATE PROCEDURE place_and_confirm(first int, n int) LANGUAGE plpgsql AS $$ BEGIN "
    "FOR i IN first .. first + n - 1 LOOP "
    "INSERT INTO domain_events (aggregate_id, event_type, payload) VALUES (i, 'OrderPlaced', "
    "jsonb_build_object('order_id', i)); COMMIT; "
    "INSERT INTO domain_events (aggregate_id, event_type, payload) VALUES (i, 'OrderConfirmed', "
    "jsonb_build_object('order_id', i)); COMMIT; END LOOP; END $$";

static const char orders_config[] =
    "source:\n"
    "  slot: placeholder\n"
    "  outbox:\n"
    "%s"
    "engine:\n"
    "  heartbeat_interval_ms: 0\n"
    "  batch_max_events: 100\n"
    "sinks:\n"
    "  readdb:\n"
    "    type: postgres\n"
    "%s"
    "  cache:\n"
    "    type: redis\n"
    "%s"
    "projections:\n"
    "  pg:\n"
    "    sink: readdb\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - sql: INSERT INTO orders (id, status) VALUES ($1::bigint, 'pending') ON CONFLICT (id) DO "
    "NOTHING\n"
    "          params: [payload.order_id]\n"
    "      OrderConfirmed:\n"
    "        - sql: UPDATE orders SET status = 'confirmed' WHERE id = $1::bigint\n"
    "          params: [payload.order_id]\n"
    "  r:\n"
    "    sink: cache\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - [HSET, \"order:{payload.order_id}\", status, pending]\n"
    "      OrderConfirmed:\n"
    "        - [HSET, \"order:{payload.order_id}\", status, confirmed]\n";

#define PG_REBUILD "    rebuild: TRUNCATE orders\n"
#define REDIS_REBUILD "    rebuild: flushdb\n"

static void orders_setup(struct renv *e)
{
    renv_setup(e, REDIS_DB, uuid_outbox);
    wct_sql(e->read, "CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL)");
}

/* Four sessions at once, each placing and at once confirming n orders. */
static void writers(struct renv *e, int first, int n)
{
    char *cmd =
        xprintf("for k in 0 1 2 3; do psql -X -q -v ON_ERROR_STOP=1 '%s' -c \"CALL place_and_confirm(%d + "
                "$k * %d, %d)\" & done; wait",
                e->src, first, n, n);
    cr_assert_eq(wct_run(cmd, NULL), 0, "%s", cmd);
    free(cmd);
}

static void expect_all_confirmed(struct renv *e, int orders, const char *when)
{
    char *v = wct_sql_value(
        e->read, "SELECT count(*) FILTER (WHERE status = 'confirmed') || '/' || count(*) FROM orders");
    char *want = xprintf("%d/%d", orders, orders);
    cr_assert_str_eq(v, want, "every order confirmed in the read database %s", when);
    free(v);
    v = renv_redis(
        e, "EVAL %s 0",
        "local n, c = 0, 0 for _, k in ipairs(redis.call('KEYS', 'order:*')) do n = n + 1 "
        "if redis.call('HGET', k, 'status') == 'confirmed' then c = c + 1 end end return c .. '/' .. n");
    cr_assert_str_eq(v, want, "every order confirmed in Redis %s", when);
    free(v);
    free(want);
}

Test(replay, uuid_outbox_replays_in_identity_order_with_concurrent_writers, .timeout = 180)
{
    struct renv e;
    orders_setup(&e);
    renv_config(&e, orders_config, "    order_by: position\n", PG_REBUILD, REDIS_REBUILD);
    writers(&e, 1, 100); /* before the first start: the initial build replays them */
    pid_t pid = renv_start(&e, NULL);
    writers(&e, 1001, 50); /* while it runs: streamed (or in the snapshot, if they were early) */
    cr_assert(renv_wait_applied(&e, "readdb", 30000) && renv_wait_applied(&e, "cache", 30000), "%s",
              renv_log(&e));
    expect_all_confirmed(&e, 600, "after the initial build and the stream");
    cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);

    /* Both sinks lose their cursors: both are rebuilt from the whole outbox. */
    free(renv_redis(&e, "FLUSHDB"));
    wct_sql(e.read, "DELETE FROM walcast_cursor");
    pid = renv_start(&e, NULL);
    cr_assert(renv_wait_applied(&e, "readdb", 30000) && renv_wait_applied(&e, "cache", 30000), "%s",
              renv_log(&e));
    expect_all_confirmed(&e, 600, "after a rebuild of both sinks");
    char *log = renv_log(&e);
    cr_assert(strstr(log, "rebuilds replay the outbox in position (bigint) order"), "%s", log);
    free(log);
    cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);
    renv_drop_slot(&e, e.slot);
}

Test(replay, without_an_order_column_a_rebuild_is_refused_with_the_fix, .timeout = 60)
{
    struct renv e;
    orders_setup(&e);
    writers(&e, 1, 5);
    renv_config(&e, orders_config, "", PG_REBUILD, REDIS_REBUILD);
    char *cmd = xprintf("timeout 10 %s run -c %s 2>&1", wct_walcast(), e.config), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 2, "refused rather than replayed in UUID order:\n%s", out);
    cr_assert(strstr(out, "cannot be replayed in commit order") && strstr(out, "is of type uuid") &&
                  strstr(out,
                         "ALTER TABLE public.domain_events ADD COLUMN position bigint GENERATED ALWAYS AS "
                         "IDENTITY") &&
                  strstr(out, "existing rows are numbered") && strstr(out, "order_by: position") &&
                  strstr(out, "order_by: occurred_at"),
              "the error explains the risk and the fix:\n%s", out);
    free(out);
    char *n = renv_redis(&e, "DBSIZE");
    cr_assert_str_eq(n, "0", "nothing was replayed into Redis");
    free(n);

    /* Without a rebuild action nothing is ever replayed: streaming needs no order. */
    renv_config(&e, orders_config, "", "", "");
    pid_t pid = renv_start(&e, NULL);
    writers(&e, 101, 5);
    cr_assert(renv_wait_applied(&e, "readdb", 20000), "%s", renv_log(&e));
    n = wct_sql_value(e.read, "SELECT count(*) FILTER (WHERE status = 'confirmed') FROM orders");
    cr_assert_str_eq(n, "40", "every order of the slot streamed, in commit order");
    free(n);
    cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);

    /* occurred_at is an explicit choice, taken with its caveat in the log. */
    free(renv_redis(&e, "FLUSHDB"));
    renv_config(&e, orders_config, "    order_by: occurred_at\n", "", REDIS_REBUILD);
    pid = renv_start(&e, NULL);
    cr_assert(renv_wait_applied(&e, "cache", 20000), "%s", renv_log(&e));
    cr_assert(renv_wait_log(&e, "the time each transaction started, not when it committed", 5000), "%s",
              renv_log(&e));
    cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);
    renv_drop_slot(&e, e.slot);
}

/* ---- rebuilt events equal streamed ones ---- */

/* One outbox per variant: the six mapped columns of various types, and rows of awkward values. */
struct variant {
    const char *ddl;         /* the outbox (columns id, atype, aid, etype, body, at; maybe position) */
    const char *order_by;    /* "" or "    order_by: ...\n" */
    const char *const *rows; /* INSERT value lists for (atype, aid, etype, body, at) */
    int nrows;
};

static const char *const rows_numbers[] = {
    "(true, 1.500, 'E', '{\"k\": 1, \"n\": 12.50}', '2026-01-02 03:04:05.678901+00')",
    "(false, 'NaN', 'E', '{\"k\": 2, \"big\": 1234567890123456789.0123456789}', '2026-01-02 03:04:05+00')",
    "(NULL, -0.001, 'E', '{\"k\": 3, \"s\": \"caf\\u00e9 \\\"q\\\"\"}', now())",
};
static const char *const rows_floats[] = {
    "('Infinity', '\\x00ff10', 'E', '{ \"k\" : 1, \"a\": [1, 2] }', '2026-01-02 03:04:05.5')",
    "('NaN', '', 'E', '{\"k\": 2}', '1999-12-31 23:59:59')",
    "(0.1, NULL, 'E', '{\"k\": 3, \"x\": 1e-7}', now())",
    "(-1.25e-7, '\\x41', 'E', '{\"k\": 4}', now())",
};
static const char *const rows_misc[] = {
    "('1 day 02:03:04', 7, 'E', '{\"k\": 1}', '2026-02-28')",
    "('-3 months', -32768, 'E', '{\"k\": 2, \"t\": true}', '2026-03-01')",
    "(NULL, NULL, 'E', '{\"k\": 3}', NULL)",
};
static const char *const rows_text[] = {
    "('{a,\"b c\",NULL}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'E', '{\"k\": 1}', '2026-01-02T03:04:05Z')",
    "('{}', '00000000-0000-0000-0000-000000000000', 'E', '{\"k\": 2, \"tab\": \"\\t\"}', 'not a time')",
    "(NULL, NULL, 'E', '{\"k\": 3}', '')",
};

static const struct variant variants[] = {
    {"CREATE TABLE domain_events (id bigserial PRIMARY KEY, atype boolean, aid numeric(12,3), etype text, "
     "body jsonb, at timestamptz)",
     "", rows_numbers, 3},
    {"CREATE TABLE domain_events (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), position bigint GENERATED "
     "ALWAYS AS IDENTITY, atype double precision, aid bytea, etype varchar(40), body json, at timestamp)",
     "    order_by: position\n", rows_floats, 4},
    {"CREATE TYPE ev AS ENUM ('E'); CREATE TABLE domain_events (id serial PRIMARY KEY, atype interval, "
     "aid smallint, etype ev, body text, at date)",
     "", rows_misc, 3},
    {"CREATE TABLE domain_events (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, atype text[], aid "
     "uuid, "
     "etype text, body jsonb, at text)",
     "", rows_text, 3},
};

static const char equal_config[] =
    "source:\n"
    "  slot: placeholder\n"
    "  outbox:\n"
    "%s"
    "    columns: {event_id: id, aggregate_type: atype, aggregate_id: aid, event_type: etype, payload: body, "
    "occurred_at: at}\n"
    "engine:\n"
    "  heartbeat_interval_ms: 0\n"
    "sinks:\n"
    "  readdb:\n"
    "    type: postgres\n"
    "    rebuild: TRUNCATE seen\n"
    "  cache:\n"
    "    type: redis\n"
    "    rebuild: flushdb\n"
    "projections:\n"
    "  pg:\n"
    "    sink: readdb\n"
    "    on:\n"
    "      E:\n"
    "        - sql: INSERT INTO seen VALUES ($1::int, $2, $3, $4, $5, $6, $7, $8, $9, $10)\n"
    "          params: [payload.k, event_id, aggregate_type, aggregate_id, event_type, payload, "
    "occurred_at,\n"
    "                   payload|json, commit_time, lsn]\n"
    "  r:\n"
    "    sink: cache\n"
    "    on:\n"
    "      E:\n"
    "        - [HSET, \"ev:{payload.k}\", id, \"{event_id}\", atype, \"{aggregate_type}\", aid, "
    "\"{aggregate_id}\",\n"
    "           etype, \"{event_type}\", body, \"{payload}\", at, \"{occurred_at}\", j, "
    "\"{aggregate_type|json}\"]\n";

/* What the projections hold, commit_time and lsn aside (a rebuilt event's lsn is the rebuild's point). */
static char *dump(struct renv *e)
{
    char *pg = wct_sql_value(
        e->read, "SELECT string_agg(concat_ws('|', k, coalesce(id, '-'), coalesce(atype, '-'), "
                 "coalesce(aid, '-'), coalesce(etype, '-'), coalesce(body, '-'), coalesce(at, '-'), "
                 "coalesce(j, '-')), E'\\n' ORDER BY k) FROM seen");
    char *rd =
        renv_redis(e, "EVAL %s 0",
                   "local keys = redis.call('KEYS', 'ev:*') table.sort(keys) local out = {} "
                   "for _, k in ipairs(keys) do local h = redis.call('HGETALL', k) local f = {} "
                   "for i = 1, #h, 2 do f[#f + 1] = h[i] .. '=' .. h[i + 1] end table.sort(f) "
                   "out[#out + 1] = k .. ' ' .. table.concat(f, ' ') end return table.concat(out, '\\n')");
    char *all = xprintf("%s\n--\n%s", pg ? pg : "", rd ? rd : "");
    free(pg);
    free(rd);
    return all;
}

Test(replay, rebuilt_events_equal_streamed_ones_for_every_column_type, .timeout = 180)
{
    char *track = wct_sql_value(wct_pg_dsn(), "SHOW track_commit_timestamp");
    int tracked = track && strcmp(track, "on") == 0;
    free(track);
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        struct renv e;
        renv_setup(&e, REDIS_DB, variants[v].ddl);
        wct_sql(e.read, "CREATE TABLE seen (k int PRIMARY KEY, id text, atype text, aid text, etype text, "
                        "body text, at text, j text, commit_time text, lsn text)");
        renv_config(&e, equal_config, variants[v].order_by);
        pid_t pid = renv_start(&e, NULL);
        cr_assert(renv_wait_log(&e, "streaming slot", 10000), "%s", renv_log(&e));
        for (int i = 0; i < variants[v].nrows; i++)
            renv_src(&e, "INSERT INTO domain_events (atype, aid, etype, body, at) VALUES %s",
                     variants[v].rows[i]);
        cr_assert(renv_wait_applied(&e, "readdb", 20000) && renv_wait_applied(&e, "cache", 20000), "%s",
                  renv_log(&e));
        char *streamed = dump(&e);
        char *times =
            wct_sql_value(e.read, "SELECT string_agg(k || ' ' || coalesce(commit_time, '-'), ',' ORDER "
                                  "BY k) FROM seen");
        cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);
        char *n = wct_sql_value(e.read, "SELECT count(*) FROM seen");
        cr_assert_eq(atoi(n), variants[v].nrows, "variant %zu: every row streamed:\n%s", v, renv_log(&e));
        free(n);

        /* Both sinks lose their cursors: everything is rebuilt from the outbox table. */
        free(renv_redis(&e, "FLUSHDB"));
        wct_sql(e.read, "DELETE FROM walcast_cursor");
        pid = renv_start(&e, NULL);
        cr_assert(renv_wait_log(&e, "streaming slot", 10000) && renv_wait_applied(&e, "readdb", 20000) &&
                      renv_wait_applied(&e, "cache", 20000),
                  "%s", renv_log(&e));
        char *rebuilt = dump(&e);
        cr_assert_str_eq(rebuilt, streamed, "variant %zu (%s): rebuilt events equal the streamed ones", v,
                         variants[v].ddl);
        char *times2 = wct_sql_value(e.read, "SELECT string_agg(k || ' ' || coalesce(commit_time, '-'), ',' "
                                             "ORDER BY k) FROM seen");
        if (tracked)
            cr_assert_str_eq(times2, times,
                             "variant %zu: the commit time of each event, as the stream gave it", v);
        else
            cr_assert(strstr(times2, "T") == NULL, "without track_commit_timestamp it is empty: %s", times2);
        char *lsns = wct_sql_value(e.read, "SELECT count(DISTINCT lsn) FROM seen");
        cr_assert_str_eq(lsns, "1", "every rebuilt event has the rebuild's point as its lsn");
        free(lsns);
        cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);
        renv_drop_slot(&e, e.slot);
        free(times);
        free(times2);
        free(streamed);
        free(rebuilt);
    }
}
