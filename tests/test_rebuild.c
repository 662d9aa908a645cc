/*
 * test_rebuild.c - `walcast rebuild` and `walcast verify` on the order example's PostgreSQL projections,
 * beside a running `walcast run` under load: a reader never sees a missing order or a partial sum, the
 * swapped-in projection equals its recomputation from the write side (check.sh), the live lag stays in its
 * range; kill -9 in the replay, the catch-up and the swap leaves the live tables untouched and a rerun
 * completes; verify finds drift and passes on a healthy sink; a sink that lost data is rebuilt.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../sinks/redis/cluster.h"
#include "opsutil.h"
#include "orders_env.h"

TestSuite(rebuild, .timeout = 240);

/* A reader of the live projections, as an application would poll them. */
struct reader {
    const char *dsn;
    volatile int stop;
    long long polls, max_orders, violations;
    char first_violation[300];
    /* lag probe: an order placed on the write side, timed until the read side shows it */
    const char *write_dsn;
    int redis_db; /* lag_loop: probe order:<id> in this Redis database instead of order_summary */
    long long lags[4096];
    int nlag;
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    PGconn *c = wct_pg_connect(r->dsn);

    while (!r->stop) {
        /* One statement, one snapshot: an order counted in order_summary that is not cancelled is counted
         * in customer_ltv.orders (both are written by the same sink transaction). */
        PGresult *res =
            PQexec(c, "SELECT (SELECT count(*) FROM order_summary), (SELECT count(*) FROM "
                      "order_summary WHERE status <> 'cancelled'), (SELECT coalesce(sum(orders), 0) "
                      "FROM customer_ltv)");
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            long long n = atoll(PQgetvalue(res, 0, 0)), live = atoll(PQgetvalue(res, 0, 1)),
                      ltv = atoll(PQgetvalue(res, 0, 2));
            if ((n < r->max_orders || live != ltv) && r->violations++ == 0)
                snprintf(r->first_violation, sizeof(r->first_violation),
                         "orders %lld (seen %lld before), not cancelled %lld, ltv orders %lld", n,
                         r->max_orders, live, ltv);
            if (n > r->max_orders)
                r->max_orders = n;
            r->polls++;
        } else if (r->violations++ == 0) {
            snprintf(r->first_violation, sizeof(r->first_violation), "%s", PQerrorMessage(c));
        }
        PQclear(res);
        sleep_ms(2);
    }
    PQfinish(c);
    return NULL;
}

/* Lag probes: an order placed, timed until the live projection shows it
 * (order_summary, or with redis_db set, order:<id> in that Redis database): one at a time, 2 ms after the
 * last one showed, 150-350 in a rebuild of a few seconds. (Every 50 ms gave some 30, and a p99 of 30 or
 * 100 is the single worst probe: the one that met the swap, or a stall of the shared disk.) */
static void *lag_loop(void *arg)
{
    struct reader *r = arg;
    PGconn *w = wct_pg_connect(r->write_dsn), *c = r->redis_db ? NULL : wct_pg_connect(r->dsn);
    redisContext *rc = r->redis_db ? wct_redis(r->redis_db) : NULL;

    while (!r->stop && r->nlag < 4096) {
        long long t0 = now_ms();
        char *id =
            qv(w, "SELECT shop.place_order(77, '[{\"sku\": \"LAG\", \"qty\": 1, \"unit_price\": 1.00}]')");
        char *sql = xprintf("SELECT 1 FROM order_summary WHERE order_id = %s", id);
        while (!r->stop) {
            int seen;
            if (rc != NULL) {
                redisReply *x = redisCommand(rc, "EXISTS order:%s", id);
                seen = x && x->type == REDIS_REPLY_INTEGER && x->integer == 1;
                freeReplyObject(x);
            } else {
                char *v = qv(c, "%s", sql);
                seen = v != NULL;
                free(v);
            }
            if (seen)
                break;
            sleep_ms(1);
        }
        r->lags[r->nlag++] = now_ms() - t0;
        free(sql);
        free(id);
        sleep_ms(2);
    }
    PQfinish(w);
    if (c)
        PQfinish(c);
    if (rc)
        redisFree(rc);
    return NULL;
}

static int cmp_ll(const void *a, const void *b);

/* The live lag the probes measured during a rebuild: its pct-th percentile under bound (ms). Under the
 * sanitizers every process runs several times slower: there only that the live sink kept applying. */
static void expect_live_lag(struct reader *rd, const char *where, int pct, long long bound)
{
    qsort(rd->lags, (size_t)rd->nlag, sizeof(rd->lags[0]), cmp_ll);
    long long p50 = rd->nlag ? rd->lags[rd->nlag / 2] : -1,
              at = rd->nlag ? rd->lags[(rd->nlag * pct) / 100] : -1,
              max = rd->nlag ? rd->lags[rd->nlag - 1] : -1;
    cr_log_info(
        "live lag during the rebuild (%d probes, write commit to visible in %s): p50 %lld ms, p%d %lld "
        "ms, max %lld ms",
        rd->nlag, where, p50, pct, at, max);
    cr_expect_gt(rd->nlag, 5);
    cr_expect_lt(at, sanitized_pass() ? 2000 : bound, "live lag p%d %lld ms in %s during the rebuild", pct,
                 at, where);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* walcast rebuild/verify ARGS with the test's environment, killing itself at failpoint (NULL: none); its exit
 * status, its output in *out. The failpoint goes in the command's environment, never this process's:
 * setenv while the reader threads connect (libpq reads the environment) is a race. */
static int walcast_at(struct orders_env *e, const char *failpoint, const char *args, char **out)
{
    char *cmd = xprintf("%s%s%s'%s' %s -c '%s' 2>&1", failpoint ? "WALCAST_REBUILD_FAILPOINT=" : "",
                        failpoint ? failpoint : "", failpoint ? " " : "", wct_walcast(), args, e->config);
    int rc = wct_run(cmd, out);
    free(cmd);
    return rc;
}

static int walcast(struct orders_env *e, const char *args, char **out)
{
    return walcast_at(e, NULL, args, out);
}

/* Both live tables exist, are read by the reader role, and keep their indexes. */
static void expect_live_tables(struct orders_env *e)
{
    cr_expect_eq(qll(e->r, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN "
                           "('order_summary', 'customer_ltv')"),
                 2);
    cr_expect_eq(qll(e->r, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname IN "
                           "('order_summary_customer_placed', 'order_summary_pkey', 'customer_ltv_pkey')"),
                 3);
    cr_expect_eq(qll(e->r,
                     "SELECT count(*) FROM (SELECT has_table_privilege('reader', 'public.order_summary', "
                     "'SELECT') AND has_table_privilege('reader', 'public.customer_ltv', 'SELECT') AND NOT "
                     "has_table_privilege('reader', 'public.order_summary', 'INSERT') AS ok) x WHERE ok"),
                 1);
}

static void expect_no_leftovers(struct orders_env *e)
{
    cr_expect_eq(qll(e->r, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'walcast\\_%'"), 0);
    cr_expect_eq(qll(e->r, "SELECT count(*) FROM walcast_cursor WHERE sink LIKE '%:rebuild:%' OR sink LIKE "
                           "'%:verify:%'"),
                 0);
    cr_expect_eq(qll(e->w,
                     "SELECT count(*) FROM pg_replication_slots WHERE (slot_name LIKE 'walcast\\_rb\\_%' OR "
                     "slot_name LIKE 'walcast\\_vf\\_%') AND database = current_database()"),
                 0);
}

static void start_reader(struct reader *rd, struct orders_env *e, pthread_t *t)
{
    memset(rd, 0, sizeof(*rd));
    rd->dsn = e->read_dsn;
    rd->write_dsn = e->write_dsn;
    pthread_create(&t[0], NULL, read_loop, rd);
    pthread_create(&t[1], NULL, lag_loop, rd);
}

static void stop_reader(struct reader *rd, pthread_t *t)
{
    rd->stop = 1;
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    cr_log_info("reader: %lld polls, %lld orders at most, %lld violations %s", rd->polls, rd->max_orders,
                rd->violations, rd->first_violation);
    cr_expect_eq(rd->violations, 0, "the reader saw: %s", rd->first_violation);
    cr_expect_gt(rd->polls, 10);
}

/* Stop the paced workload, and its last CALL on the server. */
static void end_workload(struct orders_env *e, pid_t wl)
{
    stop_workload(wl);
    wait_workload_ended(e);
}

/* Outbox rows before the rebuild: enough that the replay takes a moment. */
static void preload(struct orders_env *e)
{
    pid_t wl = start_workload(e, sanitized_pass() ? 1500 : 4000, 0.42);
    finish_workload(e, wl, 120000);
    wait_caught_up(e, 60000);
}

Test(rebuild, online_under_load_then_swapped_in)
{
    struct orders_env e;
    struct reader rd;
    pthread_t t[2];
    char *out = NULL;

    setup_env(&e, 1);
    preload(&e);
    pid_t wl = start_paced_workload(&e, 1000);
    start_reader(&rd, &e, t);
    sleep_ms(300);
    long long t0 = now_ms();
    int rc = walcast(&e, "rebuild --sink readdb", &out);
    long long took = now_ms() - t0;
    cr_log_info("walcast rebuild --sink readdb (%lld ms):\n%s", took, out);
    cr_assert_eq(rc, 0, "rebuild failed (%d):\n%s", rc, out);
    cr_expect(strstr(out, "swapped in at") != NULL, "%s", out);
    cr_expect(strstr(out, "outbox rows") != NULL, "no progress line:\n%s", out);
    sleep_ms(500); /* the live engine goes on writing into the swapped-in tables */
    stop_reader(&rd, t);
    end_workload(&e, wl);
    ensure_running(&e);

    /* The bound: under 100 ms p99 at 1,000 events/s (measured 14-43 ms here over 170-340 probes;
     * once 149 ms in CI when some 100 probes made the p99 their worst). */
    expect_live_lag(&rd, "order_summary", 99, 100);

    wait_caught_up(&e, 60000);
    expect_live_tables(&e);
    expect_no_leftovers(&e);
    run_check(&e, sanitized_pass() ? 300 : 1000);
    free(out);
    teardown_env(&e);
}

/* A Redis reader: the orders in the four status sets, read in one script (one moment). An order only moves
 * between them: the count never goes down, as it would with keys half swapped or a set missing. */
struct rreader {
    int db;
    volatile int stop;
    long long polls, max, violations;
    char first_violation[200];
};

static void *rread_loop(void *arg)
{
    struct rreader *r = arg;
    redisContext *c = redisConnect("127.0.0.1", wct_redis_port());

    freeReplyObject(redisCommand(c, "SELECT %d", r->db));
    while (!r->stop) {
        redisReply *rep = redisCommand(c, "EVAL %s 0",
                                       "local n = 0 for _, s in ipairs({'placed', 'confirmed', 'shipped', "
                                       "'cancelled'}) do n = n + redis.call('ZCARD', 'orders:status:' .. s) "
                                       "end return n");
        if (rep && rep->type == REDIS_REPLY_INTEGER) {
            if (rep->integer < r->max && r->violations++ == 0)
                snprintf(r->first_violation, sizeof(r->first_violation),
                         "%lld orders in the status sets after %lld", rep->integer, r->max);
            if (rep->integer > r->max)
                r->max = rep->integer;
            r->polls++;
        } else if (r->violations++ == 0) {
            snprintf(r->first_violation, sizeof(r->first_violation), "%s", rep ? rep->str : c->errstr);
        }
        freeReplyObject(rep);
        sleep_ms(2);
    }
    redisFree(c);
    return NULL;
}

/* The rerun of a rebuild of projection killed after its replay: it resumes and swaps in; then the live
 * engine goes on writing into the swapped-in keys for a moment. */
static void rerun_resumes(struct orders_env *e, const char *projection)
{
    char *args = xprintf("rebuild --projection %s", projection), *out = NULL;
    long long t0 = now_ms();
    int rc = walcast(e, args, &out);
    cr_log_info("%s, rerun (%lld ms):\n%s", args, now_ms() - t0, out);
    cr_assert_eq(rc, 0, "the rerun failed (%d):\n%s", rc, out);
    cr_expect(strstr(out, "resuming from") != NULL, "%s", out);
    cr_expect(strstr(out, "swapped in at") != NULL, "%s", out);
    free(out);
    free(args);
    sleep_ms(300);
}

/*
 * A Redis projection rebuilt online under load, with drift in the live keys to repair (a doubled ZINCRBY,
 * a key no event wrote): killed just before its swap, the live keys are untouched and the shadow's are
 * kept; the rerun resumes, swaps the keys in with one script while a reader polls, and leaves nothing
 * behind. The keys then equal their recomputation from the write side (check.sh).
 */
Test(rebuild, redis_projection_online_under_load)
{
    struct orders_env e;
    struct rreader rd = {.db = 8};
    pthread_t t;
    char *out = NULL;

    setup_env(&e, 8);
    preload(&e);
    char *cust = rv(&e, "EVAL %s 0", "return redis.call('ZRANGE', 'ltv:leaderboard', -1, -1)[1]");
    cr_assert(cust != NULL);
    freeReplyObject(redisCommand(e.redis, "ZINCRBY ltv:leaderboard 100000 %s", cust));
    freeReplyObject(redisCommand(e.redis, "HSET order:999999999 status placed"));
    pid_t wl = start_paced_workload(&e, 1000);
    pthread_create(&t, NULL, rread_loop, &rd);
    struct reader lag = {.write_dsn = e.write_dsn, .redis_db = 8};
    pthread_t lt;
    pthread_create(&lt, NULL, lag_loop, &lag);
    sleep_ms(300);

    int rc = walcast_at(&e, "swap", "rebuild --projection cache_orders", &out);
    cr_log_info("rebuild cache_orders killed at swap:\n%s", out);
    cr_assert(rc != 0 && strstr(out, "killing myself") != NULL, "the rebuild was not killed:\n%s", out);
    free(out);
    expect_str("the stray live key, untouched", rv(&e, "HGET order:999999999 status"), "placed");
    char *shadow = rv(&e, "EVAL %s 0", "return #redis.call('KEYS', 'walcast:shadow:cache_orders:*')");
    cr_expect(shadow != NULL && atoll(shadow) > 0, "the shadow's keys were not kept: %s", shadow);
    free(shadow);

    rerun_resumes(&e, "cache_orders");
    rd.stop = 1;
    pthread_join(t, NULL);
    lag.stop = 1;
    pthread_join(lt, NULL);
    /* Redis runs the rebuild's writes and its swap script in the same thread as the live sink's commits:
     * the swap blocks the server for its tens of milliseconds (docs/operations.md), and the replay's
     * writes compete with the live ones. A probe that meets the swap waits for it, and with AOF's
     * appendfsync always a stall of the shared disk in the swap's fsync adds to it (323 ms once in CI):
     * so the bound is on the p95, which those few probes do not reach (150-260 probes here: p50 3-5 ms,
     * p95 16-25 ms, max 56-142 ms), and the swap must not stall the live sink for seconds. */
    expect_live_lag(&lag, "redis", 95, 100);
    long long worst = lag.nlag > 0 ? lag.lags[lag.nlag - 1] : 0;
    cr_expect_lt(worst, sanitized_pass() ? 10000 : 2000, "the live sink stalled %lld ms", worst);
    end_workload(&e, wl);
    cr_log_info("redis reader: %lld polls, %lld orders at most, %lld violations %s", rd.polls, rd.max,
                rd.violations, rd.first_violation);
    cr_expect_eq(rd.violations, 0, "the reader saw: %s", rd.first_violation);
    cr_expect_gt(rd.polls, 10);

    ensure_running(&e);
    wait_caught_up(&e, 60000);
    expect_nil("the stray key, after the rebuild", rv(&e, "HGET order:999999999 status"));
    expect_str("shadow keys left", rv(&e, "EVAL %s 0", "return #redis.call('KEYS', 'walcast:shadow:*')"),
               "0");
    expect_nil("the shadow's cursor", rv(&e, "HGET walcast:cursor:%s cache:rebuild:cache_orders", e.slot));
    expect_nil("the shadow's applied position",
               rv(&e, "HGET walcast:applied:%s cache:rebuild:cache_orders", e.slot));
    expect_no_leftovers(&e);
    run_check(&e, sanitized_pass() ? 300 : 1000);
    free(cust);
    teardown_env(&e);
}

/* kill -9 of the rebuild at a failpoint; the live tables must be untouched, then a rerun completes. */
static void kill_then_rerun(const char *failpoint, const char *expect_on_rerun)
{
    struct orders_env e;
    struct reader rd;
    pthread_t t[2];
    char *out = NULL;

    setup_env(&e, 2);
    preload(&e);
    pid_t wl = start_paced_workload(&e, 1000);
    start_reader(&rd, &e, t);
    long long oid_before = qll(e.r, "SELECT 'public.customer_ltv'::regclass::oid");
    int rc = walcast_at(&e, failpoint, "rebuild --projection customer_ltv", &out);
    cr_log_info("rebuild killed at %s:\n%s", failpoint, out);
    cr_assert(rc != 0, "the rebuild was not killed:\n%s", out);
    cr_expect(strstr(out, "killing myself") != NULL, "%s", out);
    free(out);
    /* Live untouched: the same table, still written by the engine. */
    cr_expect_eq(qll(e.r, "SELECT 'public.customer_ltv'::regclass::oid"), oid_before);
    wait_caught_up(&e, 60000);

    rc = walcast(&e, "rebuild --projection customer_ltv", &out);
    cr_log_info("rerun after kill at %s:\n%s", failpoint, out);
    cr_assert_eq(rc, 0, "rerun failed (%d):\n%s", rc, out);
    cr_expect(strstr(out, expect_on_rerun) != NULL, "expected \"%s\" in:\n%s", expect_on_rerun, out);
    cr_expect_neq(qll(e.r, "SELECT 'public.customer_ltv'::regclass::oid"), oid_before);
    free(out);
    stop_reader(&rd, t);
    end_workload(&e, wl);
    ensure_running(&e);
    wait_caught_up(&e, 60000);
    expect_live_tables(&e);
    expect_no_leftovers(&e);
    run_check(&e, sanitized_pass() ? 300 : 1000);
    teardown_env(&e);
}

Test(rebuild, kill_during_replay)
{
    kill_then_rerun("replay", "stopped during its replay: starting again");
}

Test(rebuild, kill_during_catch_up)
{
    kill_then_rerun("catchup", "resuming from");
}

Test(rebuild, kill_during_swap)
{
    kill_then_rerun("swap", "resuming from");
}

Test(rebuild, verify_finds_drift_and_passes_on_a_healthy_sink)
{
    struct orders_env e;
    char *out = NULL;

    setup_env(&e, 3);
    preload(&e);
    int rc = walcast(&e, "verify --sink readdb", &out);
    cr_log_info("verify, healthy:\n%s", out);
    cr_assert_eq(rc, 0, "verify failed (%d) on a healthy sink:\n%s", rc, out);
    cr_expect(strstr(out, "table \"public.order_summary\": equal to its rebuild from the outbox") != NULL,
              "%s", out);
    free(out);
    /* Redis, under load: the live keys of the projection's patterns against their rebuild. */
    pid_t wl = start_paced_workload(&e, 1000);
    sleep_ms(300);
    rc = walcast(&e, "verify --projection cache_orders", &out);
    cr_log_info("verify cache_orders, healthy, under load:\n%s", out);
    cr_assert_eq(rc, 0, "verify failed (%d) on a healthy Redis sink:\n%s", rc, out);
    cr_expect(strstr(out, "0 missing, 0 extra, 0 different") != NULL, "%s", out);
    free(out);
    end_workload(&e, wl);
    wait_caught_up(&e, 60000);

    /* A corrupted row, a missing row, and an additive projection applied twice for one customer. */
    stop_walcast(&e, SIGTERM);
    char *o1 = qv(e.r, "SELECT min(order_id) FROM order_summary"),
         *o2 = qv(e.r, "SELECT max(order_id) FROM order_summary");
    char *c1 = qv(e.r, "SELECT min(customer_id) FROM customer_ltv");
    char *sql =
        xprintf("UPDATE order_summary SET status = 'shipped?' WHERE order_id = %s; DELETE FROM order_summary "
                "WHERE order_id = %s; UPDATE customer_ltv SET lifetime_value = 2 * lifetime_value, orders = "
                "2 * orders WHERE customer_id = %s",
                o1, o2, c1);
    wct_sql(e.read_dsn, sql);
    /* Redis: a key lost, and one order's ZINCRBY applied twice. */
    char *cents =
        qv(e.w, "SELECT (total * 100)::bigint FROM shop.orders WHERE id = (SELECT max(id) FROM shop.orders "
                "WHERE status <> 'cancelled')");
    char *c3 = qv(
        e.w, "SELECT customer_id FROM shop.orders WHERE id = (SELECT max(id) FROM shop.orders WHERE status "
             "<> 'cancelled')");
    freeReplyObject(redisCommand(e.redis, "DEL order:%s", o1));
    freeReplyObject(redisCommand(e.redis, "ZINCRBY ltv:leaderboard %s %s", cents, c3));
    start_walcast(&e);
    rc = walcast(&e, "verify --sink readdb", &out);
    cr_log_info("verify, drifted:\n%s", out);
    cr_expect_eq(rc, 1, "verify did not find the drift (%d):\n%s", rc, out);
    cr_expect(strstr(out, "table \"public.order_summary\": 1 row different") != NULL, "%s", out);
    cr_expect(strstr(out, "table \"public.order_summary\": 1 row missing") != NULL, "%s", out);
    cr_expect(strstr(out, "table \"public.customer_ltv\": 1 row different") != NULL, "%s", out);
    cr_expect(strstr(out, "shipped?") != NULL, "no example of the corrupted row:\n%s", out);
    cr_expect(strstr(out, "drift found") != NULL, "%s", out);
    free(out);
    rc = walcast(&e, "verify --projection cache_orders", &out);
    cr_log_info("verify cache_orders, drifted:\n%s", out);
    cr_expect_eq(rc, 1, "verify did not find the Redis drift (%d):\n%s", rc, out);
    char *want = xprintf("missing key (in the rebuild, not in the live keys): order:%s", o1);
    cr_expect(strstr(out, want) != NULL, "expected \"%s\" in:\n%s", want, out);
    cr_expect(strstr(out, "key ltv:leaderboard differs") != NULL, "%s", out);
    cr_expect(strstr(out, "1 missing, 0 extra, 1 different") != NULL, "%s", out);
    free(want);
    free(out);
    char *left = rv(&e, "EVAL %s 0", "return #redis.call('KEYS', 'walcast:verify:*')");
    cr_expect(left == NULL || strcmp(left, "0") == 0, "shadow keys left: %s", left);
    free(left);
    free(cents);
    free(c3);
    expect_no_leftovers(&e);
    free(sql);
    free(o1);
    free(o2);
    free(c1);
    teardown_env(&e);
}

Test(rebuild, a_sink_that_lost_data_is_rebuilt)
{
    struct orders_env e;
    char *out = NULL;

    setup_env(&e, 4);
    preload(&e);
    stop_walcast(&e, SIGTERM);
    /* The read database restored from an old backup, say: its cursor and projections are gone. */
    wct_sql(e.read_dsn,
            "DELETE FROM walcast_cursor WHERE sink = 'readdb'; DELETE FROM order_summary; DELETE FROM "
            "customer_ltv");
    /* The engine stops, and names the way out. */
    char *cmd = xprintf("timeout 30 '%s' run -c '%s' 2>&1", wct_walcast(), e.config);
    int rc = wct_run(cmd, &out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "sink \"readdb\" has lost data") != NULL &&
                  strstr(out, "run \"walcast rebuild -c FILE --sink readdb\"") != NULL,
              "%s", out);
    free(out);
    free(cmd);
    rc = walcast(&e, "rebuild --projection order_summary", &out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "rebuild the whole sink with \"walcast rebuild -c") != NULL, "%s", out);
    free(out);
    /* Writes go on meanwhile: the rebuild hands over to the engine at the position it reached. */
    pid_t wl = start_paced_workload(&e, 1000);
    rc = walcast(&e, "rebuild --sink readdb", &out);
    cr_log_info("rebuild of a sink that lost data:\n%s", out);
    cr_assert_eq(rc, 0, "rebuild failed (%d):\n%s", rc, out);
    free(out);
    start_walcast(&e);
    sleep_ms(300);
    end_workload(&e, wl);
    wait_caught_up(&e, 60000);
    expect_live_tables(&e);
    expect_no_leftovers(&e);
    run_check(&e, sanitized_pass() ? 300 : 1000);
    teardown_env(&e);
}

/* docs/operations.md's worked example: a new column in order_summary, filled for history by a rebuild
 * while the engine runs under load. */
Test(rebuild, schema_migration_new_column)
{
    struct orders_env e;
    struct reader rd;
    pthread_t t[2];
    char *out = NULL;

    setup_env(&e, 5);
    preload(&e);
    /* 1. the column, nullable; 2. the projection fills it, and the engine restarts with it. */
    wct_sql(e.read_dsn, "ALTER TABLE order_summary ADD COLUMN total_cents bigint");
    char *config = xprintf("%s/walcast-v2.yaml", e.dir);
    char *sed = xprintf(
        "sed -e 's/item_count, placed_at, updated_at)/item_count, placed_at, updated_at, total_cents)/' "
        "-e 's/\\$5::timestamptz, \\$5::timestamptz)/$5::timestamptz, $5::timestamptz, $6::bigint)/' "
        "-e 's/payload.items|length, payload.placed_at]/payload.items|length, payload.placed_at, "
        "payload.total|cents]/' '%s' > '%s'",
        e.config, config);
    cr_assert_eq(wct_run(sed, NULL), 0);
    cr_assert_eq(wct_run(xprintf("grep -q 'payload.total|cents]' '%s'", config), NULL), 0,
                 "sed did not apply");
    stop_walcast(&e, SIGTERM);
    free(e.config);
    e.config = config;
    start_walcast(&e);
    pid_t wl = start_paced_workload(&e, 1000);
    start_reader(&rd, &e, t);
    sleep_ms(300);
    cr_expect_gt(qll(e.r, "SELECT count(*) FROM order_summary WHERE total_cents IS NULL"), 0);
    /* 3. the rebuild fills history and swaps the table in. */
    int rc = walcast(&e, "rebuild --projection order_summary", &out);
    cr_log_info("migration rebuild:\n%s", out);
    cr_assert_eq(rc, 0, "rebuild failed (%d):\n%s", rc, out);
    free(out);
    sleep_ms(300);
    stop_reader(&rd, t);
    end_workload(&e, wl);
    ensure_running(&e);
    wait_caught_up(&e, 60000);
    cr_expect_eq(
        qll(e.r,
            "SELECT count(*) FROM order_summary WHERE total_cents IS DISTINCT FROM (total * 100)::bigint"),
        0);
    cr_expect_gt(qll(e.r, "SELECT count(*) FROM order_summary"), sanitized_pass() ? 300 : 1000);
    /* 4. now the column can be made mandatory. */
    wct_sql(e.read_dsn, "ALTER TABLE order_summary ALTER COLUMN total_cents SET NOT NULL");
    expect_live_tables(&e);
    expect_no_leftovers(&e);
    run_check(&e, sanitized_pass() ? 300 : 1000);
    free(sed);
    teardown_env(&e);
}

/* Wait until walcast's log has a line with text (up to timeout_ms). */
static int wait_log(struct orders_env *e, const char *text, int timeout_ms)
{
    for (long long end = now_ms() + timeout_ms; now_ms() < end; sleep_ms(50))
        if (log_count(e, text) > 0)
            return 1;
    return 0;
}

/* Restart the engine with the configuration at path (a new string, taken). */
static void restart_with(struct orders_env *e, char *path)
{
    stop_walcast(e, SIGTERM);
    free(e->config);
    e->config = path;
    start_walcast(e);
}

/*
 * Restart the engine with the configuration at path (taken), in which projection of sink is new with
 * rebuild: auto, under 1,000 events/s: the engine must start its rebuild and the rebuild swap it in; then
 * the load ends and everything is applied. Returns each customer's order count from the write side
 * ("id:n,..."), what the projection must hold.
 */
static char *added_under_load(struct orders_env *e, char *path, const char *projection, const char *sink)
{
    char *started = xprintf("projection \"%s\" is new to sink \"%s\": rebuilding it (rebuild: auto)",
                            projection, sink),
         *swapped = xprintf("rebuild \"%s\": swapped in at", projection);
    pid_t wl = start_paced_workload(e, 1000);
    sleep_ms(200);
    restart_with(e, path);
    cr_assert(wait_log(e, started, 20000), "no automatic rebuild of the new projection %s", projection);
    cr_assert(wait_log(e, swapped, 60000), "the automatic rebuild of %s did not finish", projection);
    sleep_ms(300);
    end_workload(e, wl);
    wait_caught_up(e, 60000);
    free(started);
    free(swapped);
    return qv(e->w, "SELECT string_agg(customer_id || ':' || n, ',' ORDER BY customer_id) FROM (SELECT "
                    "customer_id, count(*) AS n FROM shop.orders GROUP BY 1) x");
}

/*
 * A projection whose statements changed is reported at start with the command that rebuilds it; one added
 * to a running deployment with rebuild: auto is backfilled from history while the others go on, and equals
 * its recomputation from the write side; once rebuilt it is reported no more.
 */
Test(rebuild, new_and_changed_projections)
{
    struct orders_env e;

    setup_env(&e, 6);
    preload(&e);
    /* Changed: customer_ltv's statements differ from what built its table. */
    char *changed = xprintf("%s/walcast-changed.yaml", e.dir);
    char *cmd = xprintf(
        "sed -e 's/orders = customer_ltv.orders + 1,/orders = customer_ltv.orders + 1 ,/' '%s' > '%s'",
        e.config, changed);
    cr_assert_eq(wct_run(cmd, NULL), 0);
    free(cmd);
    restart_with(&e, changed);
    cr_assert(
        wait_log(&e, "projection \"customer_ltv\" changed since it was built in sink \"readdb\"", 20000),
        "no report of the changed projection");
    cr_expect(log_count(&e, "rebuild it with \"walcast rebuild -c") > 0);
    cr_expect_eq(log_count(&e, "projection \"order_summary\""), 0);
    char *status = NULL;
    cmd = xprintf("'%s' status -c '%s' 2>&1", wct_walcast(), e.config);
    wct_run(cmd, &status);
    cr_expect(strstr(status,
                     "WARNING: projection \"customer_ltv\" changed since it was built in sink \"readdb\"") !=
                  NULL,
              "walcast status does not report the changed projection:\n%s", status);
    free(status);
    free(cmd);

    /* Added, with rebuild: auto, under load. */
    wct_sql(e.read_dsn, "CREATE TABLE order_count (customer_id bigint PRIMARY KEY, placed int NOT NULL); "
                        "ALTER TABLE order_count OWNER TO walcast; GRANT SELECT ON order_count TO reader");
    char *added = xprintf("%s/walcast-added.yaml", e.dir);
    char *text = read_text(e.config);
    char *yaml =
        xprintf("%s\n  order_count:\n    sink: readdb\n    tables: [order_count]\n    rebuild: auto\n"
                "    on:\n      OrderPlaced:\n        - sql: >-\n            INSERT INTO order_count VALUES "
                "($1::bigint, 1) ON CONFLICT (customer_id) DO UPDATE SET placed = order_count.placed + 1\n"
                "          params: [payload.customer_id]\n",
                text);
    FILE *f = fopen(added, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    free(text);
    free(yaml);
    char *want = added_under_load(&e, added, "order_count", "readdb");
    char *got =
        qv(e.r, "SELECT string_agg(customer_id || ':' || placed, ',' ORDER BY customer_id) FROM order_count");
    cr_assert_not_null(want);
    cr_expect_str_eq(got ? got : "", want, "order_count differs from its recomputation from shop.orders");
    free(want);
    free(got);

    /* Recorded: the next start reports it no more. */
    int before = log_count(&e, "projection \"order_count\" is new");
    char *again = strdup(e.config);
    restart_with(&e, again);
    wait_caught_up(&e, 60000);
    cr_expect_eq(log_count(&e, "projection \"order_count\" is new"), before);
    run_check(&e, sanitized_pass() ? 300 : 1000);
    teardown_env(&e);
}

/* Sink cache's record of its projections (hash walcast:projections:<slot>:cache): projection's fingerprint.
 */
static char *redis_record(struct orders_env *e, const char *projection)
{
    return rv(e, "HGET walcast:projections:%s:cache %s", e->slot, projection);
}

/* Write the configuration at path: the test's own, with each sed expression applied, then extra appended. */
static char *config_variant(struct orders_env *e, const char *name, const char *sed, const char *extra)
{
    char *path = xprintf("%s/%s", e->dir, name);
    char *cmd = xprintf("sed -e '%s' '%s' > '%s'", sed, e->config, path);
    cr_assert_eq(wct_run(cmd, NULL), 0, "%s", cmd);
    free(cmd);
    FILE *f = fopen(path, "a");
    cr_assert_not_null(f);
    fputs(extra, f);
    fclose(f);
    return path;
}

/*
 * The same for Redis projections, whose record is a hash in the sink's database: the first start records
 * them; a changed one is reported at start and by walcast status; one added with rebuild: auto is
 * backfilled online under load and equals its recomputation; a rebuild records what it swapped in, so that
 * neither is reported at the next start.
 */
Test(rebuild, redis_new_and_changed_projections)
{
    struct orders_env e;

    setup_env(&e, 9);
    preload(&e);
    char *fp = redis_record(&e, "cache_orders");
    cr_assert(fp != NULL && strlen(fp) == 16, "no record of cache_orders after the first start: %s", fp);

    /* Changed: the same keys, declared in another order (a definition that differs, results that do not). */
    char *changed = config_variant(&e, "walcast-rchanged.yaml",
                                   "s/keys: \\[\"customer:\\*:orders\", \"order:\\*\",/keys: "
                                   "[\"order:*\", \"customer:*:orders\",/",
                                   "");
    char *text = read_text(changed);
    cr_assert(strstr(text, "keys: [\"order:*\", \"customer:*:orders\",") != NULL, "sed did not apply:\n%s",
              text);
    free(text);
    restart_with(&e, changed);
    cr_assert(wait_log(&e, "projection \"cache_orders\" changed since it was built in sink \"cache\"", 20000),
              "no report of the changed Redis projection");
    cr_expect(log_count(&e, "its keys hold what the old definition made") > 0);
    char *status = NULL, *cmd = xprintf("'%s' status -c '%s' 2>&1", wct_walcast(), e.config);
    wct_run(cmd, &status);
    cr_expect(strstr(status, "projection \"cache_orders\" changed since it was built in sink \"cache\"") !=
                  NULL,
              "walcast status does not report the changed Redis projection:\n%s", status);
    free(status);
    free(cmd);

    /* Added with rebuild: auto, under load: placed orders per customer. */
    char *added = config_variant(
        &e, "walcast-radded.yaml", "",
        "  placed_count:\n    sink: cache\n    keys: [\"placed:count\"]\n    rebuild: auto\n    on:\n"
        "      OrderPlaced:\n        - [HINCRBY, \"placed:count\", \"{payload.customer_id}\", \"1\"]\n");
    /* (made from the changed configuration, the engine's now: cache_orders stays changed) */
    char *want = added_under_load(&e, added, "placed_count", "cache");
    char *got = rv(&e, "EVAL %s 0",
                   "local h = redis.call('HGETALL', 'placed:count') local t = {} for i = 1, #h, 2 do "
                   "t[#t + 1] = {tonumber(h[i]), h[i + 1]} end table.sort(t, function(a, b) return a[1] < "
                   "b[1] end) local o = {} for _, v in ipairs(t) do o[#o + 1] = v[1] .. ':' .. v[2] end "
                   "return table.concat(o, ',')");
    cr_assert_not_null(want);
    cr_expect_str_eq(got ? got : "", want, "placed:count differs from its recomputation from shop.orders");
    free(want);
    free(got);
    char *pfp = redis_record(&e, "placed_count");
    cr_expect(pfp != NULL && strlen(pfp) == 16, "the rebuild did not record placed_count: %s", pfp);
    free(pfp);

    /* A rebuild of the changed one records it: the next start reports neither. */
    char *out = NULL;
    cr_assert_eq(walcast(&e, "rebuild --projection cache_orders", &out), 0, "%s", out);
    free(out);
    char *fp2 = redis_record(&e, "cache_orders");
    cr_expect(fp2 != NULL && strcmp(fp2, fp) != 0, "the rebuild did not record the new definition (%s)", fp2);
    free(fp2);
    int new_before = log_count(&e, "projection \"placed_count\" is new"),
        changed_before = log_count(&e, "projection \"cache_orders\" changed");
    char *again = strdup(e.config);
    restart_with(&e, again);
    wait_caught_up(&e, 60000);
    cr_expect_eq(log_count(&e, "projection \"placed_count\" is new"), new_before);
    cr_expect_eq(log_count(&e, "projection \"cache_orders\" changed"), changed_before);
    run_check(&e, sanitized_pass() ? 300 : 1000);
    free(fp);
    teardown_env(&e);
}

static void expect_rebuild_metrics(const char *unit, const char *want);

/* A command on a node of the test cluster, which must answer +OK. */
static void node_command(const struct redis_cluster_node *node, const char *cmd)
{
    redisContext *c = redisConnect(node->host, node->port);
    char *copy = strdup(cmd), *save = NULL;
    const char *argv[8];
    int argc = 0;
    for (char *w = strtok_r(copy, " ", &save); w && argc < 8; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    free(copy);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "%s on %s:%d: %s", cmd, node->host, node->port,
              r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
}

/* On every master of the test cluster, its first hash slot on its way to the next master (on: IMPORTING
 * there, MIGRATING here, as a resharding does before it moves the keys), or STABLE again on both (off). */
static void migrating(struct orders_env *e, int on)
{
    int n = e->cl->map.nnode;
    for (int i = 0; i < n; i++) {
        const struct redis_cluster_node *node = &e->cl->map.nodes[i], *next = &e->cl->map.nodes[(i + 1) % n];
        int slot = 0;
        while (slot < REDIS_CLUSTER_SLOTS && e->cl->map.owner[slot] != i)
            slot++;
        cr_assert(slot < REDIS_CLUSTER_SLOTS && next->id[0] && node->id[0],
                  "no slot or node id for master %d", i);
        char *a = on ? xprintf("CLUSTER SETSLOT %d IMPORTING %s", slot, node->id)
                     : xprintf("CLUSTER SETSLOT %d STABLE", slot),
             *b = on ? xprintf("CLUSTER SETSLOT %d MIGRATING %s", slot, next->id)
                     : xprintf("CLUSTER SETSLOT %d STABLE", slot);
        node_command(next, a);
        node_command(node, b);
        free(a);
        free(b);
    }
}

/* Keys matching pattern on every master of the test cluster. */
static long long cluster_keys(struct orders_env *e, const char *pattern)
{
    long long n = 0;
    for (int i = 0; i < e->cl->map.nnode; i++) {
        redisContext *c = redisConnect(e->cl->map.nodes[i].host, e->cl->map.nodes[i].port);
        cr_assert(c != NULL && !c->err, "cannot reach master %s:%d", e->cl->map.nodes[i].host,
                  e->cl->map.nodes[i].port);
        redisReply *r = redisCommand(c, "EVAL %s 0 %s", "return #redis.call('KEYS', ARGV[1])", pattern);
        cr_assert(r && r->type == REDIS_REPLY_INTEGER, "KEYS on a master: %s", r ? r->str : c->errstr);
        n += r->integer;
        freeReplyObject(r);
        redisFree(c);
    }
    return n;
}

/*
 * A Redis Cluster sink's projection: verify finds drift planted in one slot (a customer's lifetime value, a
 * stray order); rebuilt online under load, slot by slot on every master, killed once after the first
 * master's swap and run again; afterwards the keys equal their recomputation (check.sh: a slot swapped
 * twice would have lost keys), nothing of the shadow is left on any master, and verify passes.
 */
Test(rebuild, redis_cluster_projection_verify_and_rebuild)
{
    struct orders_env e;
    char *out = NULL;

    setup_env_cluster(&e);
    preload(&e);
    /* The first start recorded the projection's definition (a hash on the master of its key). */
    char *fp = rv(&e, "HGET walcast:projections:%s:cache cache_orders", e.slot);
    cr_assert(fp != NULL && strlen(fp) == 16, "no record of cache_orders in the cluster: %s", fp);
    char *cust = qv(e.w, "SELECT customer_id FROM shop.orders ORDER BY id LIMIT 1");
    free(rv(&e, "HINCRBYFLOAT customer:{%s}:ltv cents 1", cust));
    free(rv(&e, "HSET order:{%s}:999999999 status placed", cust));

    int rc = walcast(&e, "verify --projection cache_orders", &out);
    cr_log_info("walcast verify on the cluster:\n%s", out);
    cr_assert_eq(rc, 1, "verify should find the planted drift (%d):\n%s", rc, out);
    char *want = xprintf("key customer:{%s}:ltv differs", cust);
    cr_expect(strstr(out, want) != NULL, "verify did not name the changed key:\n%s", out);
    free(want);
    cr_expect(strstr(out, "extra key (in the live keys, not in the rebuild): order:{") != NULL, "%s", out);
    free(out);
    cr_expect_eq(cluster_keys(&e, "walcast:verify:*"), 0, "verify left keys behind");

    /* Killed in its replay: the engine's metrics show it (rows replayed from the shadow's floor). */
    rc = walcast_at(&e, "replay", "rebuild --projection cache_orders", &out);
    cr_assert(rc != 0 && strstr(out, "killing myself") != NULL, "the rebuild was not killed:\n%s", out);
    free(out);
    expect_rebuild_metrics("cache_orders", "killed");

    pid_t wl = start_paced_workload(&e, 1000);
    sleep_ms(300);
    /* Started again, then killed with one master's slots swapped and the others' not: the rerun swaps
     * only those. */
    rc = walcast_at(&e, "cluster-swap", "rebuild --projection cache_orders", &out);
    cr_log_info("walcast rebuild on the cluster, killed between masters:\n%s", out);
    cr_assert(rc != 0 && strstr(out, "killing myself") != NULL, "the rebuild was not killed:\n%s", out);
    free(out);
    /* A resharding under way (a slot of every master migrating): refused before anything is swapped. */
    migrating(&e, 1);
    rc = walcast(&e, "rebuild --projection cache_orders", &out);
    migrating(&e, 0);
    cr_log_info("walcast rebuild on the cluster during a resharding:\n%s", out);
    cr_expect(rc != 0 && strstr(out, "is migrating (a resharding)") != NULL,
              "the rebuild should refuse a migrating slot (%d):\n%s", rc, out);
    free(out);
    rerun_resumes(&e, "cache_orders");
    end_workload(&e, wl);
    ensure_running(&e);
    wait_caught_up(&e, 60000);
    cr_expect_eq(cluster_keys(&e, "walcast:shadow:*"), 0, "the shadow's keys are left");
    expect_nil("the planted order, after the rebuild", rv(&e, "HGET order:{%s}:999999999 status", cust));
    run_check(&e, sanitized_pass() ? 300 : 1000);
    rc = walcast(&e, "verify --projection cache_orders", &out);
    cr_expect_eq(rc, 0, "verify after the rebuild (%d):\n%s", rc, out);
    free(out);
    expect_str("the record after the rebuild",
               rv(&e, "HGET walcast:projections:%s:cache cache_orders", e.slot), fp);

    /* Changed (its key patterns in another order): reported at the next start. */
    char *changed = config_variant(&e, "walcast-cchanged.yaml",
                                   "s/keys: \\[\"customer:{\\*}:orders\", \"order:{\\*}:\\*\",/keys: "
                                   "[\"order:{*}:*\", \"customer:{*}:orders\",/",
                                   "");
    char *text = read_text(changed);
    cr_assert(strstr(text, "keys: [\"order:{*}:*\", \"customer:{*}:orders\",") != NULL,
              "sed did not apply:\n%s", text);
    free(text);
    restart_with(&e, changed);
    cr_expect(wait_log(&e, "projection \"cache_orders\" changed since it was built in sink \"cache\"", 20000),
              "no report of the changed projection of the cluster sink");
    free(fp);
    free(cust);
    teardown_env(&e);
}

/* --discard drops what a killed rebuild left; what cannot be rebuilt is refused with the reason. */
/* The engine's /metrics, polled until the rebuild series of unit order_summary match want: "killed" (its
 * slot inactive, rows replayed) or "gone" (no series). The poller reads every 300 ms here. */
static void expect_rebuild_metrics(const char *unit, const char *want)
{
    char label[200];
    snprintf(label, sizeof(label), "unit=\"%s\"", unit);
    const char *listen = getenv("WALCAST_METRICS_LISTEN");
    long long deadline = now_ms() + 15000;
    char *text = NULL;
    for (;;) {
        int status = 0;
        free(text);
        text = ops_http(listen, "/metrics", 2000, &status);
        double active = text ? ops_metric(text, "walcast_rebuild_active", label) : -2,
               rows = text ? ops_metric(text, "walcast_rebuild_replayed_rows", label) : -2,
               kept =
                   text ? ops_metric(text, "walcast_rebuild_retained_wal_bytes", "command=\"rebuild\"") : -2;
        int ok = strcmp(want, "gone") == 0 ? text && active == -1 && rows == -1
                                           : active == 0 && rows >= 1 && rows <= 1000 && kept >= 0;
        if (ok)
            break;
        if (now_ms() > deadline)
            cr_assert_fail("rebuild metrics not %s: active %g, replayed rows %g, retained %g:\n%s", want,
                           active, rows, kept, text ? text : "(no answer)");
        sleep_ms(100);
    }
    cr_log_info("rebuild metrics (%s): %s", want,
                strstr(text, "walcast_rebuild_active{") ? "series" : "none");
    free(text);
}

Test(rebuild, discard_and_refusals)
{
    struct orders_env e;
    char *out = NULL;

    setenv("WALCAST_METRICS_SLOT_POLL_INTERVAL_MS", "300", 1);
    setup_env(&e, 7);
    preload(&e);
    /* Killed in the replay: the engine's /metrics shows the rebuild stopped, its rows, its slot's WAL. */
    int rc = walcast_at(&e, "replay", "rebuild --projection order_summary", &out);
    cr_assert(rc != 0, "%s", out);
    free(out);
    expect_rebuild_metrics("order_summary", "killed");
    cr_expect_eq(qll(e.r, "SELECT count(*) FROM pg_namespace WHERE nspname = 'walcast_shadow_order_summary'"),
                 1);
    cr_expect_eq(qll(e.w, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE "
                          "'walcast\\_rb\\_order\\_summary\\_%' "
                          "AND database = current_database()"),
                 1);
    /* verify has its own shadow: it runs, and leaves the unfinished rebuild alone */
    rc = walcast(&e, "verify --projection order_summary", &out);
    cr_expect_eq(rc, 0, "%s", out);
    free(out);
    cr_expect_eq(qll(e.r, "SELECT count(*) FROM pg_namespace WHERE nspname = 'walcast_shadow_order_summary'"),
                 1);
    rc = walcast(&e, "rebuild --projection order_summary --discard", &out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "discarded") != NULL, "%s", out);
    free(out);
    expect_no_leftovers(&e);
    expect_rebuild_metrics("order_summary", "gone");

    struct {
        const char *args, *msg;
    } bad[] = {
        {"verify --projection nope", "projection \"nope\" is not in the configuration"},
        {"rebuild", "rebuild needs --projection NAME or --sink NAME (one of them)"},
        {"rebuild --projection order_summary --sink readdb", "(one of them)"},
        {"verify --projection order_summary --discard", "option \"--discard\" does not apply"},
    };
    /* One rebuild of a projection at a time: a second one is refused (exit 4, as a slot in use). */
    char *lock =
        xprintf("SELECT pg_advisory_lock(hashtextextended('walcast rebuild %s/order_summary', 0))", e.slot);
    free(qv(e.r, "%s", lock));
    rc = walcast(&e, "rebuild --projection order_summary", &out);
    cr_expect_eq(rc, 4, "%s", out);
    cr_expect(strstr(out, "a rebuild of \"order_summary\" is already running on sink \"readdb\"") != NULL,
              "%s", out);
    free(out);
    free(qv(e.r, "SELECT pg_advisory_unlock_all()"));
    free(lock);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rc = walcast(&e, bad[i].args, &out);
        cr_expect_eq(rc, 2, "%s: exit %d: %s", bad[i].args, rc, out);
        cr_expect(strstr(out, bad[i].msg) != NULL, "%s: expected \"%s\" in: %s", bad[i].args, bad[i].msg,
                  out);
        free(out);
    }
    teardown_env(&e);
    unsetenv("WALCAST_METRICS_SLOT_POLL_INTERVAL_MS");
}
