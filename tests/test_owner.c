/*
 * test_owner.c - one owner per sink: two engines started at once, a standby started while the first one
 * rebuilds, a second slot pointed at the same sinks (refused, then handed over with `walcast sink
 * release`), and a slot held for a moment by a backend that is not a walsender.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orders_env.h"
#include "run_env.h"

#define REDIS_DB 3

static const char config[] = "source:\n"
                             "  slot: placeholder\n"
                             "engine:\n"
                             "  heartbeat_interval_ms: 0\n"
                             "  retry_base_ms: 50\n"
                             "  retry_max_ms: 500\n"
                             "sinks:\n"
                             "  readdb:\n"
                             "    type: postgres\n"
                             "    rebuild: TRUNCATE applied\n"
                             "  cache:\n"
                             "    type: redis\n"
                             "    rebuild: flushdb\n"
                             "projections:\n"
                             "  pg:\n"
                             "    sink: readdb\n"
                             "    on:\n"
                             "      Hit:\n"
                             "        - sql: >-\n"
                             "            INSERT INTO applied (event_id, n) VALUES ($1::bigint, $2::bigint)\n"
                             "            ON CONFLICT (event_id) DO UPDATE SET n = applied.n + EXCLUDED.n\n"
                             "          params: [event_id, payload.n]\n"
                             "  r:\n"
                             "    sink: cache\n"
                             "    on:\n"
                             "      Hit:\n"
                             "        - [INCRBY, hits, \"{payload.n}\"]\n"
                             "        - [HINCRBY, seen, \"{event_id}\", 1]\n";

static void setup(struct renv *e)
{
    renv_setup(e, REDIS_DB, NULL);
    wct_sql(e->read, "CREATE TABLE applied (event_id bigint PRIMARY KEY, n bigint NOT NULL)");
    wct_sql(e->src,
            "CREATE PROCEDURE hits(k int) LANGUAGE plpgsql AS $$ BEGIN FOR i IN 1 .. k LOOP "
            "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) VALUES ('h', i, "
            "'Hit', jsonb_build_object('n', 1 + i % 3)); COMMIT; PERFORM pg_sleep(0.002); END LOOP; END $$");
    renv_config(e, config);
}

/* n events in one transaction (a history to rebuild from). */
static void history(struct renv *e, int n)
{
    renv_src(
        e,
        "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) SELECT 'h', g, 'Hit', "
        "jsonb_build_object('n', 1 + g %% 3) FROM generate_series(1, %d) g",
        n);
}

/* A writer session committing k events one by one, in the background. */
static pid_t writer(struct renv *e, int k)
{
    char *cmd = xprintf("psql -X -q -v ON_ERROR_STOP=1 '%s' -c 'CALL hits(%d)'", e->src, k);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    return pid;
}

static void join(pid_t pid)
{
    cr_assert_eq(renv_wait_exit(pid, 60000), 0, "the writer finished");
}

/* Every event applied exactly once in both sinks: the sums, and no event counted twice. */
static void expect_exact(struct renv *e, const char *when)
{
    char *want =
        wct_sql_value(e->src, "SELECT coalesce(sum((payload->>'n')::int), 0) || ' ' || count(*) FROM "
                              "domain_events");
    char *pg = wct_sql_value(e->read, "SELECT coalesce(sum(n), 0) || ' ' || count(*) FROM applied");
    char *hits = renv_redis(e, "GET hits"), *seen = renv_redis(e, "HLEN seen");
    char *twice = renv_redis(e, "EVAL %s 0",
                             "local t = redis.call('HVALS', 'seen') local d = 0 for _, v in ipairs(t) do "
                             "if tonumber(v) > 1 then d = d + 1 end end return d");
    char *redis = xprintf("%s %s", hits ? hits : "0", seen ? seen : "0");
    cr_assert_str_eq(pg, want, "read database %s: sum of n and events", when);
    cr_assert_str_eq(redis, want, "redis %s: sum of n and events", when);
    cr_assert_str_eq(twice, "0", "redis %s: no event applied twice", when);
    free(want);
    free(pg);
    free(hits);
    free(seen);
    free(twice);
    free(redis);
}

static int both_applied(struct renv *e)
{
    return renv_wait_applied(e, "readdb", 60000) && renv_wait_applied(e, "cache", 60000);
}

Test(owner, two_engines_started_at_once_build_the_sinks_once, .timeout = 180)
{
    struct renv e;
    setup(&e);
    history(&e, 20000);
    pid_t a = renv_start(&e, NULL), b = renv_start(&e, NULL);
    pid_t w = writer(&e, 300);
    /* One of them has the lease; the other says the slot is in use and exits 4. */
    long long deadline = now_ms() + 30000;
    int ra = -2, rb = -2;
    while (now_ms() < deadline && renv_running(a) && renv_running(b))
        sleep_ms(20);
    if (!renv_running(a))
        ra = renv_wait_exit(a, 1000);
    else
        rb = renv_wait_exit(b, 1000);
    cr_assert(ra == 4 || rb == 4, "the second engine exits 4 (%d, %d):\n%s", ra, rb, renv_log(&e));
    pid_t winner = ra == 4 ? b : a;
    join(w);
    cr_assert(both_applied(&e), "%s", renv_log(&e));
    expect_exact(&e, "after two engines started at once");
    char *log = renv_log(&e);
    cr_assert(strstr(log, "is in use by another engine") || strstr(log, "is active for PID"), "%s", log);
    free(log);
    cr_assert_eq(renv_stop(winner, SIGTERM, 5000), 0);
    renv_drop_slot(&e, e.slot);
}

Test(owner, a_standby_started_during_a_rebuild_waits_and_takes_over, .timeout = 180)
{
    struct renv e;
    setup(&e);
    history(&e, getenv("WALCAST_TEST_SANITIZED") ? 30000 : 60000);
    pid_t a = renv_start(&e, NULL);
    cr_assert(renv_wait_log(&e, "rebuilding its projections", 20000), "%s", renv_log(&e));
    char *alog = e.log;
    e.log = xprintf("%s/standby.log", e.dir);
    pid_t b = renv_start(&e, "--standby");
    pid_t w = writer(&e, 200);
    cr_assert(renv_wait_log(&e, "standby:", 10000), "the standby waits:\n%s", renv_log(&e));
    /* The first engine dies in the middle of its rebuild (or just after): the standby takes over. */
    kill(a, SIGKILL);
    renv_wait_exit(a, 5000);
    cr_assert(renv_wait_log(&e, "streaming slot", 60000), "the standby took over:\n%s", renv_log(&e));
    join(w);
    cr_assert(both_applied(&e), "%s", renv_log(&e));
    expect_exact(&e, "after a standby took over from an engine killed while it rebuilt");
    cr_assert_eq(renv_stop(b, SIGTERM, 5000), 0);
    free(alog);
    renv_drop_slot(&e, e.slot);
}

Test(owner, a_second_slot_is_refused_and_the_sinks_are_handed_over_with_release, .timeout = 180)
{
    struct renv e;
    setup(&e);
    history(&e, 100);
    pid_t a = renv_start(&e, NULL);
    cr_assert(both_applied(&e), "%s", renv_log(&e));
    char *slot2 = wct_unique("eo2");
    renv_src(&e, "SELECT pg_create_logical_replication_slot('%s', 'wal2json')", slot2);

    /* A second engine of another slot, the same sinks: refused, naming the owner and the hand-over. */
    char *cmd = xprintf("timeout 20 %s run -c %s -S %s 2>&1", wct_walcast(), e.config, slot2), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 2, "refused:\n%s", out);
    char *owner = xprintf("belongs to replication slot \"%s\"", e.slot);
    char *hand = xprintf("walcast sink release -c %s --sink readdb", e.config);
    cr_assert(strstr(out, owner) && strstr(out, hand), "names the owner and the command:\n%s", out);
    free(out);
    free(owner);
    free(hand);
    pid_t w = writer(&e, 100);
    join(w);
    cr_assert(both_applied(&e), "%s", renv_log(&e));
    expect_exact(&e, "with the first engine running on after the second was refused");

    /* The hand-over: refused while the owner runs, done once it has stopped. */
    cmd = xprintf("%s sink release -c %s --sink cache 2>&1", wct_walcast(), e.config);
    st = wct_run(cmd, &out);
    cr_assert_neq(st, 0, "no release while the owner runs:\n%s", out);
    cr_assert(strstr(out, "stop the engine that owns the sink first"), "%s", out);
    free(out);
    cr_assert_eq(renv_stop(a, SIGTERM, 5000), 0);
    char *applied = renv_redis(&e, "HEXISTS walcast:applied:%s cache", e.slot);
    cr_assert(applied && strcmp(applied, "1") == 0, "the sink publishes its applied position");
    free(applied);
    st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "sink \"cache\" released") && strstr(out, "rebuilds it"), "%s", out);
    free(out);
    /* The applied position goes with the cursor: nobody waits on a released sink's old position. */
    applied = renv_redis(&e, "HEXISTS walcast:applied:%s cache", e.slot);
    cr_assert(applied && strcmp(applied, "0") == 0, "the released sink's applied position stayed");
    free(applied);
    cmd = xprintf("%s sink release -c %s --sink readdb 2>&1", wct_walcast(), e.config);
    cr_assert_eq(wct_run(cmd, NULL), 0);
    free(cmd);

    /* The new owner rebuilds both sinks from the outbox and streams on: every event once. */
    char *extra = xprintf("-S %s", slot2);
    pid_t b = renv_start(&e, extra);
    w = writer(&e, 50);
    join(w);
    char *first_slot = e.slot;
    e.slot = slot2;
    cr_assert(both_applied(&e), "%s", renv_log(&e));
    expect_exact(&e, "after the hand-over to the second slot");
    cmd = xprintf("%s sink owner -c %s -S %s 2>&1", wct_walcast(), e.config, slot2);
    cr_assert_eq(wct_run(cmd, &out), 0);
    char *now_owned = xprintf("sink \"cache\": owned by replication slot \"%s\"", slot2);
    cr_assert(strstr(out, now_owned), "%s", out);
    free(now_owned);
    free(out);
    free(cmd);
    cr_assert_eq(renv_stop(b, SIGTERM, 5000), 0);
    renv_drop_slot(&e, slot2);
    renv_drop_slot(&e, first_slot);
    free(extra);
}

/*
 * While a backend drops or advances a slot it holds it, and its active_pid is not a walsender: that is
 * a moment, not another engine. walcast waits it out (and then streams, or reports a dropped slot).
 */
Test(owner, a_slot_held_by_a_backend_for_a_moment_is_not_in_use, .timeout = 120)
{
    struct renv e;
    setup(&e);
    renv_src(&e, "CREATE TABLE filler (a int, b text)");
    renv_src(&e, "INSERT INTO filler SELECT g, repeat('x', 40) FROM generate_series(1, 400000) g");
    char *cmd =
        xprintf("psql -X -q '%s' -c \"SELECT count(*) FROM pg_logical_slot_peek_changes('%s', NULL, NULL, "
                "'format-version', '2')\" >/dev/null",
                e.src, e.slot);
    pid_t peek = fork();
    if (peek == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    char *sql = xprintf("SELECT backend_type FROM pg_stat_activity WHERE pid = (SELECT active_pid FROM "
                        "pg_replication_slots WHERE slot_name = '%s')",
                        e.slot);
    char *type = NULL;
    for (long long deadline = now_ms() + 10000; now_ms() < deadline && type == NULL; sleep_ms(5))
        type = wct_sql_value(e.src, sql);
    cr_assert_str_eq(type, "client backend", "a client backend holds the slot");
    free(type);
    free(sql);
    pid_t pid = renv_start(&e, NULL);
    cr_assert(renv_wait_log(&e, "streaming slot", 30000), "walcast waited for the slot:\n%s", renv_log(&e));
    cr_assert(renv_running(pid), "%s", renv_log(&e));
    char *log = renv_log(&e);
    cr_assert(strstr(log, "is active for PID") && strstr(log, "reconnecting"),
              "it saw the slot held, and retried:\n%s", log);
    free(log);
    renv_wait_exit(peek, 30000);
    cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);
    renv_drop_slot(&e, e.slot);
}
